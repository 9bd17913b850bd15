"""The encoder: observations of a world to the shared latent state.

Views: every agent's egocentric frame goes through a small CNN; each grid cell's centre, at a
few heights, is projected into every agent's camera (``geometry.project``: the given camera
geometry) and the image features there are read (SimpleBEV-style lifting, no depth estimate).
Per cell the readings of all agents are pooled without order (a masked mean), so the encoder is
indifferent to how agents are numbered and how many there are; cells no agent sees stay
unknown (their seen-count is 0) and the model must cope.

Map (optional): the top-down ``state()`` image of the env, patchified to one feature per cell.

Both are fused by a small conv net into scene tokens ``(B, S, S, D)``; each agent's token is its
pose followed by a latent read from the fused features at its position (what the observations
show there: its body colour on the map, or in another agent's view).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from multiworld.models.geometry import Camera, bilinear_cells, project
from multiworld.models.quantize import quantize, unit

__all__ = ["EncoderConfig", "SceneEncoder", "unit"]


@dataclasses.dataclass
class EncoderConfig:
    dim: int = 32
    hidden: int = 64
    image_channels: int = 32
    heights: tuple[float, ...] = (0.05, 0.3, 0.6, 0.9)
    map_cells: int = 8  # map pixels per cell side the map patchifier reads


class SceneEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig, cam: Camera | None = None) -> None:
        super().__init__()
        self.cfg, self.cam = cfg, cam or Camera()
        ch, h = cfg.image_channels, cfg.hidden
        self.image = nn.Sequential(
            nn.Conv2d(3, ch, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(ch, ch, 3, padding=1),
        )
        self.lift = nn.Sequential(nn.Linear(len(cfg.heights) * ch + 2, h), nn.GELU(), nn.Linear(h, h))
        self.map_cells = cfg.map_cells
        self.map_patch = nn.Sequential(nn.Conv2d(3 * cfg.map_cells**2, h, 1), nn.GELU())
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * h + 3, h, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(h, h, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(h, h, 1),
        )
        self.to_token = nn.Conv2d(h, cfg.dim, 1)
        self.to_agent = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Linear(h, cfg.dim - 3))

    def forward(
        self,
        views: torch.Tensor,
        poses: torch.Tensor,
        size: int,
        map_image: torch.Tensor | None = None,
        use_map: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scene tokens (B, S, S, D) and agent tokens (B, N, D) from observations.

        views (B, N, H, W, 3) float in [0, 1]; poses (B, N, 3); map_image (B, h, w, 3) float in
        [0, 1] with h = w a multiple of S, or None (views only); ``use_map`` (B,) bool selects per
        world whether its map is used (training mixes both reset modes in one batch)."""
        bsz, dev = views.shape[0], views.device
        lifted, seen = self.lift_views(views, poses, size)
        if map_image is None:
            mfeat = torch.zeros(bsz, self.cfg.hidden, size, size, device=dev)
            flag = torch.zeros(bsz, 1, size, size, device=dev)
        else:
            mfeat = self.encode_map(map_image, size)
            flag = torch.ones(bsz, 1, size, size, device=dev)
            if use_map is not None:
                keep = use_map.float()[:, None, None, None]
                mfeat, flag = mfeat * keep, flag * keep
        x = torch.cat([mfeat, lifted, flag, (seen > 0).float(), torch.log1p(seen)], 1)  # (B, 2h+3, S, S)
        h = self.fuse(x)
        # Tokens are layer-normalised and snapped to a lattice (``quantize``): a fixed scale, so the
        # noise put on the state in training means something, and small errors snap back.
        tokens = quantize(self.to_token(h).permute(0, 2, 3, 1))
        at = bilinear_cells(h.permute(0, 2, 3, 1), poses[..., :2])  # (B, N, h)
        agents = torch.cat([poses, quantize(self.to_agent(at))], -1)
        return tokens, agents

    def encode_map(self, map_image: torch.Tensor, size: int) -> torch.Tensor:
        """(B, h, w, 3) -> (B, hidden, S, S): each cell's pixels, flattened, through a 1x1 conv."""
        hh, ww = map_image.shape[1:3]
        if hh != ww or hh % size:
            raise ValueError(f"map image must be square with a side that is a multiple of {size}, got {hh}x{ww}")
        p = hh // size
        x = map_image.permute(0, 3, 1, 2)
        if p != self.map_cells:  # another map resolution: resample to the one the encoder learned
            x = nn.functional.interpolate(x, size=(size * self.map_cells, size * self.map_cells), mode="area")
            p = self.map_cells
        x = nn.functional.pixel_unshuffle(x, p)  # (B, 3 p^2, S, S)
        return self.map_patch(x)

    def lift_views(self, views: torch.Tensor, poses: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image features at every cell's projections, pooled over agents: (B, h, S, S) and seen-counts (B, 1, S, S)."""
        bsz, n, hgt, wid, _ = views.shape
        cfg, dev = self.cfg, views.device
        feat = self.image(views.reshape(bsz * n, hgt, wid, 3).permute(0, 3, 1, 2))  # (BN, C, h', w')
        ij = torch.arange(size, device=dev, dtype=torch.float32) + 0.5
        yy, xx = torch.meshgrid(ij, ij, indexing="ij")
        hs = torch.tensor(cfg.heights, device=dev)
        pts = torch.stack(
            [xx[..., None].expand(-1, -1, len(hs)), yy[..., None].expand(-1, -1, len(hs)), hs.expand(size, size, -1)],
            -1,
        ).reshape(-1, 3)  # (S*S*Z, 3)
        cam = self.cam
        uv, depth, valid = project(pts.expand(bsz, n, -1, -1), poses, cam)  # (B, N, P, 2)
        samp = nn.functional.grid_sample(
            feat, uv.reshape(bsz * n, 1, -1, 2), mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (BN, C, 1, P)
        samp = samp[:, :, 0].permute(0, 2, 1).reshape(bsz, n, size * size, len(hs), -1)
        valid = valid.reshape(bsz, n, size * size, len(hs))
        depth = depth.reshape(bsz, n, size * size, len(hs))[..., 0]
        samp = samp * valid[..., None]
        any_valid = valid.any(-1).float()  # (B, N, P)
        x = torch.cat([samp.flatten(-2), torch.log(depth.clamp(min=cam.near))[..., None], any_valid[..., None]], -1)
        f = self.lift(x) * any_valid[..., None]
        seen = any_valid.sum(1)  # (B, P)
        pooled = f.sum(1) / seen.clamp(min=1)[..., None]
        return (
            pooled.permute(0, 2, 1).reshape(bsz, -1, size, size),
            seen.reshape(bsz, 1, size, size),
        )
