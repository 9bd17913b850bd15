"""The video model: one agent's view rendered from the shared latent state and its camera.

The camera enters explicitly and is the only geometry given: every image column is a ray from
the agent's camera; the ray is cut where it crosses grid lines (``geometry.ray_segments``), and
each piece reads the token of the cell it lies in, together with where it enters and leaves
that cell. A network turns each piece into an opacity, a height profile (solid below a learned
top), where inside the piece it is hit, and colour coefficients over the height of the pixel;
other agents' tokens become pieces too, at the depth of the agent, read with the ray's lateral
offset from it. Pieces are composited front to back per pixel (learned visibility and
occlusion), over a ground plane whose colour is read from the token under the floor point.
Nothing says what a wall, a box, an item or an agent looks like, how tall it is, or which cells
are solid: the tokens and the networks learn it from the views.

All views of a step are rendered from one state version in one batched pass; training renders
a random subset of columns (rays are independent), which is what makes it affordable on a CPU.
"""

from __future__ import annotations

import dataclasses
import itertools

import torch
from torch import nn

from multiworld.models.geometry import Camera, column_rays, fourier, frames, gather_cells, ray_segments


@dataclasses.dataclass
class RendererConfig:
    dim: int = 32  # token width D (scene and agent tokens)
    hidden: int = 96
    floor_hidden: int = 64
    segments: int = 28  # cell pieces per ray (a 16x16 grid's rays end at its border within ~28)
    visible: int = 10  # pieces per ray composited per pixel: the nearest ones not nearly transparent
    z_bins: int = 16  # colour coefficients over the pixel's height
    bands: int = 4  # Fourier bands of in-cell positions
    depth_weight: float = 0.1


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (ReLU: the renderer runs these per ray piece and per
    floor pixel, where GELU's cost showed in profiles)."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class RayRenderer(nn.Module):
    def __init__(self, cfg: RendererConfig, cam: Camera | None = None) -> None:
        super().__init__()
        self.cfg, self.cam = cfg, cam or Camera()
        d, h, z = cfg.dim, cfg.hidden, cfg.z_bins
        seg_in = d + 2 * 2 * 2 * cfg.bands + 4 + 4
        self.out = 3 + 3 * z  # opacity, top, hit fraction, colour coefficients
        self.segment = mlp([seg_in, h, h, self.out])
        agent_in = (d - 3) + 1 + 2 * 3 + 1 + 2
        self.agent = mlp([agent_in, h, h, self.out])
        self.floor = mlp([d + 2 * 2 * cfg.bands + 1, cfg.floor_hidden, cfg.floor_hidden, 3])
        self.ceiling = mlp([1, 16, 3])
        self.occupancy = mlp([d, 32, 1])
        self.edge = nn.Parameter(torch.zeros(()))  # log sharpness of height edges, in pixel rows
        with torch.no_grad():  # start with tall, opaque, front-facing pieces
            for head in (self.segment[-1], self.agent[-1]):
                head.bias[1] = 1.6  # top = 1.2 * sigmoid(1.6) ~ 1
                head.bias[2] = -2.0  # hit near where the ray enters
            self.occupancy[-1].bias.fill_(1.0)

    def forward(
        self,
        scene: torch.Tensor,
        agents: torch.Tensor,
        columns: torch.Tensor | None = None,
        views: torch.Tensor | None = None,
        cam: Camera | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Views ``(B, V, H, C, 3)`` in [0, 1] and depth ``(B, V, H, C)``.

        scene (B, S, S, D) and agents (B, N, D) (pose x, y, heading, then latent) are one state
        version; ``views`` (V,) which agents' cameras (default all); ``columns`` (C,) which image
        columns (default all); ``cam`` another image size or field of view."""
        cam = cam or self.cam
        cfg, dev = self.cfg, scene.device
        bsz, s = scene.shape[0], scene.shape[1]
        n = agents.shape[1]
        views = torch.arange(n, device=dev) if views is None else views
        cam_poses = agents[:, views, :3]  # (B, V, 3)
        cam_x = cam.cam_x(dev)
        if columns is not None:
            cam_x = cam_x[columns]
        row_tan = cam.row_tan(dev)
        origin, d = column_rays(cam_poses, cam_x)  # (B, V, 1, 2), (B, V, C, 2)
        v, c = d.shape[1], d.shape[2]

        # Cell pieces of every ray. A per-cell occupancy (one small network over the grid) says
        # which pieces can be skipped as empty; only the nearest ``visible`` others go through
        # the piece network: a learned, data-dependent sparsity that keeps rendering cheap.
        seg = ray_segments(origin, d, s, cfg.segments)  # (B, V, C, K)
        occ_grid = self.occupancy(scene)
        occ = gather_cells(occ_grid, seg.cell[..., 0].reshape(bsz, -1), seg.cell[..., 1].reshape(bsz, -1))
        occ = occ.reshape(seg.t_in.shape) - 20.0 * (~seg.inside).float()
        key = torch.where(occ < -4.0, seg.t_in + 1e4, seg.t_in)
        pick = key.argsort(-1)[..., : cfg.visible]
        k = pick.shape[-1]
        skipped = key.gather(-1, pick) >= 1e4
        t_in, t_out = seg.t_in.gather(-1, pick), seg.t_out.gather(-1, pick)
        occ = occ.gather(-1, pick)
        p_in = seg.p_in.gather(-2, pick[..., None].expand(-1, -1, -1, -1, 2))
        p_out = seg.p_out.gather(-2, pick[..., None].expand(-1, -1, -1, -1, 2))
        cell = seg.cell.gather(-2, pick[..., None].expand(-1, -1, -1, -1, 2))
        tok = gather_cells(scene, cell[..., 0].reshape(bsz, -1), cell[..., 1].reshape(bsz, -1))
        tok = tok.reshape(bsz, v, c, k, -1)
        length = t_out - t_in
        dn = d / d.norm(dim=-1, keepdim=True)
        feats = torch.cat(
            [
                tok,
                fourier(p_in, cfg.bands),
                fourier(p_out, cfg.bands),
                p_in,
                p_out,
                length.clamp(max=2)[..., None],
                torch.log(t_in + cam.near)[..., None],
                dn[..., None, :].expand(-1, -1, -1, k, -1),
            ],
            -1,
        )
        so = self.segment(feats)
        so_alpha = occ + so[..., 0] - 20.0 * skipped.float()
        t_seg = t_in + torch.sigmoid(so[..., 2]) * length.clamp(max=2)

        # Other agents as pieces at their depth, read with the ray's lateral offset from them.
        o, fwd, right = frames(cam_poses)
        rel = agents[:, None, :, :2] - o[:, :, None, :]  # (B, V, N, 2)
        t_ag = (rel * fwd[:, :, None]).sum(-1)
        lat = (rel * right[:, :, None]).sum(-1)
        off = cam_x[None, None, :, None] * t_ag[:, :, None, :] - lat[:, :, None, :]  # (B, V, C, N)
        rel_head = agents[:, None, :, 2] - cam_poses[..., 2:3]  # (B, V, N)
        lat_feat = agents[:, None, None, :, 3:].expand(-1, v, c, -1, -1)
        afeats = torch.cat(
            [
                lat_feat,
                off[..., None].clamp(-2, 2),
                fourier(off[..., None].clamp(-2, 2), 3),
                torch.log(t_ag.clamp(min=cam.near))[:, :, None, :, None].expand(-1, -1, c, -1, -1),
                torch.stack([rel_head.sin(), rel_head.cos()], -1)[:, :, None].expand(-1, -1, c, -1, -1),
            ],
            -1,
        )
        ao = self.agent(afeats)
        own = views[:, None] == torch.arange(n, device=dev)[None, :]  # (V, N): a camera never sees itself
        hidden = own[None, :, None, :] | (t_ag[:, :, None, :] < cam.near) | (off.abs() > 1.5)
        ao_alpha = ao[..., 0] - 20.0 * hidden.float()
        t_agent = t_ag[:, :, None, :].expand(-1, -1, c, -1).clamp(min=cam.near)

        # All pieces, nearest first.
        t_hit = torch.cat([t_seg, t_agent], -1)  # (B, V, C, L)
        out = torch.cat(
            [torch.cat([so_alpha[..., None], so[..., 1:]], -1), torch.cat([ao_alpha[..., None], ao[..., 1:]], -1)], -2
        )
        # Only the nearest ``visible`` pieces that are not (nearly) transparent reach the pixel
        # stage: a learned, data-dependent sparsity that keeps the per-pixel work small.
        key = torch.where(out[..., 0] < -4.0, t_hit + 1e4, t_hit)  # agents out of the ray's way drop out
        order = key.argsort(-1)[..., : cfg.visible]
        t_hit = t_hit.gather(-1, order)
        k2 = t_hit.shape[-1]
        out = out.gather(-2, order[..., None].expand(-1, -1, -1, -1, self.out))
        opacity = torch.sigmoid(out[..., 0])
        top = 1.2 * torch.sigmoid(out[..., 1])
        coef = out[..., 3:].unflatten(-1, (cfg.z_bins, 3))  # (B, V, C, L, Z, 3)

        # Per pixel: the height each piece is seen at, its coverage and colour.
        z = cam.eye_height + row_tan[:, None] * t_hit[..., None, :]  # (B, V, C, H, L)
        px = cam.focal / t_hit[..., None, :]  # pixel rows per unit of height
        cover = torch.sigmoid((top[..., None, :] - z) * px * self.edge.exp()) * torch.sigmoid(z * px * self.edge.exp())
        below = row_tan < 0
        t_floor = torch.where(below, cam.eye_height / (-row_tan).clamp(min=1e-6), torch.full_like(row_tan, 1e4))
        in_front = t_hit[..., None, :] < t_floor[:, None]
        alpha = opacity[..., None, :] * cover * in_front
        zi = z.clamp(0, 1) * (cfg.z_bins - 1)
        i0 = zi.floor().clamp(max=cfg.z_bins - 2).long()
        w = (zi - i0)[..., None]
        # Each pixel reads the coefficients of the two height bins around it: one row lookup in
        # the flattened (bin, bin + 1) pairs of every piece (faster on a CPU than a strided gather).
        zb = cfg.z_bins - 1
        pairs = torch.cat([coef[..., :-1, :], coef[..., 1:, :]], -1).reshape(-1, 6)  # (B*V*C*L*(Z-1), 6)
        lead = torch.arange(bsz * v * c, device=dev).view(bsz, v, c, 1, 1) * k2
        rows = (lead + torch.arange(k2, device=dev)) * zb + i0  # (B, V, C, H, L)
        c01 = pairs.index_select(0, rows.reshape(-1)).view(*rows.shape, 6)
        colour = torch.sigmoid(torch.lerp(c01[..., :3], c01[..., 3:], w))  # (B, V, C, H, L, 3)
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1 - alpha + 1e-6], -1), -1)
        weight = alpha * trans[..., :-1]
        rest = trans[..., -1]  # (B, V, C, H)

        # Ground plane and sky behind all pieces. The floor network runs only where the floor
        # shows through (pieces in front leave more than 0.1% of the pixel).
        rows_below = torch.nonzero(below)[:, 0]
        tf = t_floor[rows_below]  # (Hb,)
        ground = origin[:, :, :, None, :] + d[:, :, :, None, :] * tf[:, None]  # (B, V, C, Hb, 2)
        shows = rest[..., rows_below] > 1e-3  # (B, V, C, Hb)
        world = torch.arange(bsz, device=dev).view(bsz, 1, 1, 1).expand_as(shows)[shows]
        pts = ground[shows]  # (P, 2)
        cell = pts.floor().clamp(0, s - 1)
        gtok = scene[world, cell[:, 1].long(), cell[:, 0].long()]  # (P, D)
        dist = torch.log(tf).expand(shows.shape)[shows][:, None]
        gfeat = torch.cat([gtok, fourier((pts - cell).clamp(0, 1), cfg.bands), dist], -1)
        floor_rgb = scene.new_zeros(*shows.shape, 3)
        floor_rgb[shows] = torch.sigmoid(self.floor(gfeat)).to(floor_rgb.dtype)  # (B, V, C, Hb, 3)
        sky = torch.sigmoid(self.ceiling(row_tan[~below][:, None]))  # (Ha, 3)
        bg = torch.cat([sky.expand(bsz, v, c, -1, -1), floor_rgb], 3)
        t_bg = torch.where(below, t_floor, torch.zeros_like(t_floor))

        rgb = (weight[..., None] * colour).sum(-2) + rest[..., None] * bg
        depth = (weight * t_hit[..., None, :]).sum(-1) + rest * t_bg
        return rgb.transpose(2, 3), depth.transpose(2, 3)

    def occupancy_loss(self, scene: torch.Tensor, occupied: torch.Tensor) -> torch.Tensor:
        """BCE of the per-cell occupancy (which pieces the renderer may skip as empty) against
        ``occupied`` (B, S, S): the oracle's cells that hold something visible (a training target;
        at run time the occupancy is read from the tokens alone)."""
        logit = self.occupancy(scene)[..., 0]
        return nn.functional.binary_cross_entropy_with_logits(logit, occupied.float())

    def loss(self, rgb, target, depth=None, target_depth=None) -> tuple[torch.Tensor, dict]:
        """MSE on colours (+ L1 on depth where the target has depth), and PSNR for the logs
        (tensors: no device sync until the trainer logs them)."""
        mse = (rgb - target).pow(2).mean()
        loss = mse
        logs = {"render_psnr": -10 * torch.log10(mse.detach().clamp(min=1e-10))}
        if target_depth is not None and depth is not None:
            valid = target_depth < 1e3
            dl = ((depth - target_depth).abs() * valid).sum() / valid.sum().clamp(min=1)
            loss = loss + self.cfg.depth_weight * dl
            logs["depth_l1"] = dl.detach()
        return loss, logs
