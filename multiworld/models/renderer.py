"""The renderer (video model): scene tokens + camera pose -> egocentric frame, all views in one pass.

Geometry is explicit and analytic, appearance is learned:
- every image column is a ray from the camera (pose known, grid world-aligned); the ray is
  marched through the token grid by intersecting it with all grid lines at once, and a learned
  occupancy read from each crossed cell's token (the codec's wall/box heads) picks the first
  solid cell: hit distance, face side and texture coordinate u follow analytically;
- a wall pixel's colour is a learned texture: material weights read from the hit token
  (softmax over ``wall_banks`` learned texel banks) at the texel (side, v, u) of the pixel;
- floor pixels read the token of the cell under them (analytic floor point), with learned
  floor banks; the ceiling is a learned per-row colour;
- agents and items are sprites with analytic projection, depth-tested against the walls and
  composited far to near; their appearance (albedo, shading, visor, item shape) is learned.

Inputs per view come from the shared state only: tokens of the world, agent states (pose,
colour id), so every agent's view of a step is rendered from the same state version.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from multiworld.models.dynamics import gather_cells
from multiworld.world.state import MAX_AGENTS

TEXELS = 8


@dataclasses.dataclass
class RendererConfig:
    dim: int = 32  # scene token channels (must match the codec)
    height: int = 64
    width: int = 64
    fov_degrees: float = 90.0
    eye_height: float = 0.5
    agent_height: float = 0.8
    agent_half_width: float = 0.2
    item_height: float = 0.3
    item_half_width: float = 0.15
    near: float = 0.05
    wall_banks: int = 8
    floor_banks: int = 8
    sprite_bins: int = 40
    max_items: int = 16  # item sprites per world (cells with the highest item probability)

    @property
    def focal(self) -> float:
        return (self.width / 2) / math.tan(math.radians(self.fov_degrees) / 2)


def _take(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """x (..., L) at indices k (...) of the last axis."""
    return x.gather(-1, k[..., None])[..., 0]


class ColumnRenderer(nn.Module):
    def __init__(self, cfg: RendererConfig) -> None:
        super().__init__()
        self.cfg = cfg
        t2, nb = TEXELS * TEXELS, cfg.sprite_bins
        self.wall_mix = nn.Linear(cfg.dim, cfg.wall_banks)
        self.floor_mix = nn.Linear(cfg.dim, cfg.floor_banks)
        # Diverse initial banks break the symmetry between materials (near-equal banks let two
        # materials share one bank for a long time).
        self.wall_bank = nn.Parameter(torch.rand(cfg.wall_banks, 1, 3).expand(-1, 2 * t2, -1) * 0.8 + 0.1)
        self.floor_bank = nn.Parameter(torch.rand(cfg.floor_banks, 1, 3).expand(-1, t2, -1) * 0.8 + 0.1)
        self.ceiling = nn.Parameter(torch.full((cfg.height // 2, 3), 0.3))
        self.agent_albedo = nn.Parameter(torch.full((MAX_AGENTS, 3), 0.5))
        self.agent_shade = nn.Parameter(torch.ones(nb))
        self.visor = nn.Parameter(torch.full((2, nb, nb), -4.0))  # (facing, height bin, u bin) logits
        self.visor_rgb = nn.Parameter(torch.full((3,), 0.9))
        self.item_rgb = nn.Parameter(torch.full((3,), 0.7))
        self.item_shade = nn.Parameter(torch.ones(nb))
        self.item_alpha = nn.Parameter(torch.zeros(nb, nb))

    def camera(self, image: tuple[int, int, float] | None, device) -> tuple:
        """Per-column and per-row ray tables for an image (height, width, fov_degrees); default: the
        trained size. Geometry is analytic, so any size works; the ceiling gradient is resampled."""
        cfg = self.cfg
        h, w, fov = image or (cfg.height, cfg.width, cfg.fov_degrees)
        f = (w / 2) / math.tan(math.radians(fov) / 2)
        cols = torch.arange(w, dtype=torch.float32, device=device)
        cam_x = (cols + 0.5 - w / 2) / f
        row_tan = (h / 2 - torch.arange(h, dtype=torch.float32, device=device) - 0.5) / f
        if h == cfg.height:
            ceiling = self.ceiling
        else:  # linear resampling of the learned per-row ceiling colours
            pos = ((torch.arange(h // 2, device=device) + 0.5) * (cfg.height / h) - 0.5).clamp(0, cfg.height // 2 - 1)
            lo = pos.floor().long()
            hi = (lo + 1).clamp(max=cfg.height // 2 - 1)
            a = (pos - lo)[:, None]
            ceiling = self.ceiling[lo] * (1 - a) + self.ceiling[hi] * a
        return h, w, f, cols, cam_x, row_tan, ceiling

    # ----- walls ------------------------------------------------------------------------------
    def _cast(self, solid: torch.Tensor, cx, cy, dx, dy):
        """First solid cell along every ray. solid (B, S, S) bool; cx.. (B, N, 1|W). -> t, row, col, side, u."""
        s = solid.shape[1]
        lines = torch.arange(s + 1, device=solid.device, dtype=torch.float32)
        best = None
        for axis in (0, 1):
            o, do, p, dp = (cx, dx, cy, dy) if axis == 0 else (cy, dy, cx, dx)
            safe = torch.where(do.abs() < 1e-9, torch.full_like(do, 1e-9), do)
            t = (lines - o[..., None]) / safe[..., None]  # (B, N, W, S+1)
            entered = torch.where(safe[..., None] > 0, lines, lines - 1).long()
            along = p[..., None] + t * dp[..., None]
            cross = along.floor().long()
            inside = (t > 1e-6) & (entered >= 0) & (entered < s) & (cross >= 0) & (cross < s)
            row, col = (cross, entered) if axis == 0 else (entered, cross)
            hit = inside & gather_cells(solid[..., None], row, col)[..., 0]
            t = torch.where(hit, t, torch.full_like(t, 1e3))
            tmin, k = t.min(-1)
            a = _take(along, k)
            cand = (tmin, _take(row, k), _take(col, k), torch.full_like(tmin, float(axis)), a - a.floor())
            if best is None:
                best = cand
            else:
                closer = cand[0] < best[0]
                best = tuple(torch.where(closer, c, b) for c, b in zip(cand, best))
        return best

    def forward(
        self,
        tokens: torch.Tensor,
        solid: torch.Tensor,
        item_logits: torch.Tensor,
        poses: torch.Tensor,
        colors: torch.Tensor,
        views: torch.Tensor | None = None,
        image: tuple[int, int, float] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Render views of agents. tokens (B, S, S, D); solid (B, S, S) bool; item_logits (B, S, S);
        poses (B, N, 3); colors (B, N) long; views (B, V) long agent indices to render (default all).
        Returns rgb (B, V, H, W, 3) float in [0, 1] and depth (B, V, H, W)."""
        cfg = self.cfg
        cam_tables = self.camera(image, tokens.device)
        h, w, _, _, cam_x, row_tan, ceiling = cam_tables
        h2 = h // 2
        bsz = tokens.shape[0]
        cam = poses if views is None else torch.gather(poses, 1, views[..., None].expand(-1, -1, 3))
        v = cam.shape[1]
        cx, cy, hd = cam[..., 0:1], cam[..., 1:2], cam[..., 2:3]
        fx, fy = torch.cos(hd), torch.sin(hd)
        rx, ry = -fy, fx
        dx, dy = fx + rx * cam_x, fy + ry * cam_x  # (B, V, W)
        d, row, col, side, u = self._cast(solid, cx, cy, dx, dy)

        z = cfg.eye_height + row_tan[:, None] * d[..., None, :]  # (B, V, H, W)
        is_wall = (z >= 0) & (z < 1)
        tv = ((1 - z).clamp(0, 0.999) * TEXELS).long()
        tu = (u * TEXELS).long().clamp(0, TEXELS - 1)
        widx = side.long()[..., None, :] * TEXELS * TEXELS + tv * TEXELS + tu[..., None, :]  # (B, V, H, W)
        wall_rgb = self._textured(self.wall_mix, self.wall_bank, tokens, row[..., None, :], col[..., None, :], widx)

        fdist = cfg.eye_height / -row_tan[h2:]  # (H/2,)
        px = cx[..., None] + dx[..., None, :] * fdist[:, None]  # (B, V, H/2, W)
        py = cy[..., None] + dy[..., None, :] * fdist[:, None]
        ix, iy = px.floor(), py.floor()
        fu = ((px - ix) * TEXELS).long().clamp(0, TEXELS - 1)
        fv = ((py - iy) * TEXELS).long().clamp(0, TEXELS - 1)
        floor_rgb = self._textured(self.floor_mix, self.floor_bank, tokens, iy.long(), ix.long(), fv * TEXELS + fu)
        ceil_rgb = ceiling[:, None, :].expand(bsz, v, h2, w, 3)
        rgb = torch.where(is_wall[..., None], wall_rgb, torch.cat([ceil_rgb, floor_rgb], 2))
        tan = row_tan[:, None]
        bg = torch.where(tan > 0, (1 - cfg.eye_height) / tan, cfg.eye_height / -tan).expand(h, w)
        depth = torch.where(is_wall, d[..., None, :].expand(-1, -1, h, -1), bg)
        camera = (cx, cy, fx, fy, rx, ry)
        return self._sprites(rgb, depth, d, tokens, item_logits, poses, colors, views, camera, cam_tables)

    @staticmethod
    def _textured(mix: nn.Linear, bank: torch.Tensor, tokens: torch.Tensor, rows, cols, texel) -> torch.Tensor:
        """Colour of pixels that see cell (rows, cols) at ``texel``: the cell's texture is its token's
        softmax mixture of the learned banks, made once per cell (not per pixel). -> (..., 3)"""
        bsz, s = tokens.shape[0], tokens.shape[1]
        tex = torch.einsum("bijm,mtc->bijtc", torch.softmax(mix(tokens), -1), bank)  # (B, S, S, T, 3)
        t = bank.shape[1]
        cell = rows.clamp(0, s - 1) * s + cols.clamp(0, s - 1)
        b = torch.arange(bsz, device=tokens.device).reshape(bsz, *([1] * (texel.dim() - 1)))
        return tex.reshape(-1, 3)[((b * s * s + cell) * t + texel).reshape(-1)].reshape(*texel.shape, 3)

    # ----- sprites ----------------------------------------------------------------------------
    def _sprites(self, rgb, depth, wall_depth, tokens, item_logits, poses, colors, views, camera, cam_tables):
        cfg, dev = self.cfg, tokens.device
        bsz, s, n = tokens.shape[0], tokens.shape[1], poses.shape[1]
        h, w, f, cols = cam_tables[:4]
        nb = cfg.sprite_bins
        cx, cy, fx, fy, rx, ry = camera
        v = cx.shape[1]
        k = min(cfg.max_items, s * s)
        top_logit, top_idx = item_logits.reshape(bsz, -1).topk(k, dim=-1)
        item_xy = torch.stack([(top_idx % s).float() + 0.5, (top_idx // s).float() + 0.5], -1)
        pos = torch.cat([poses[..., :2], item_xy], 1)  # (B, P, 2)
        p = pos.shape[1]
        is_agent = torch.arange(p, device=dev) < n
        strength = torch.cat([torch.ones(bsz, n, device=dev), torch.sigmoid(top_logit)], 1)  # (B, P)
        view_idx = torch.arange(n, device=dev).expand(bsz, n) if views is None else views
        not_self = torch.arange(p, device=dev)[None, None, :] != view_idx[..., None]  # (B, V, P)
        relx, rely = pos[:, None, :, 0] - cx, pos[:, None, :, 1] - cy
        sdepth = relx * fx + rely * fy  # (B, V, P)
        lateral = relx * rx + rely * ry
        half = torch.where(is_agent, cfg.agent_half_width, cfg.item_half_width)
        top = torch.where(is_agent, cfg.agent_height, cfg.item_height)
        ok = not_self & (sdepth > cfg.near) & (strength[:, None] > 0.05)
        safe = torch.where(ok, sdepth, torch.ones_like(sdepth))
        centre = w / 2 + f * lateral / safe
        half_px = f * half / safe
        row_top = h / 2 - f * (top - cfg.eye_height) / safe
        row_bot = h / 2 + f * cfg.eye_height / safe
        heading = torch.cat([poses[..., 2], torch.zeros(bsz, p - n, device=dev)], 1)
        facing = (torch.cos(heading)[:, None] * fx + torch.sin(heading)[:, None] * fy) < 0  # (B, V, P)
        color_ids = torch.cat([colors.long(), torch.zeros(bsz, p - n, dtype=torch.long, device=dev)], 1)
        albedo = self.agent_albedo[color_ids]  # (B, P, 3)

        # Sparse compositing: only the (view, sprite, pixel) triples a sprite covers in front of the
        # wall are touched; per pixel the nearest sprite wins (depth key packed with the entry).
        colc = cols + 0.5
        rowc = torch.arange(h, device=dev, dtype=torch.float32) + 0.5
        covered = ((colc - centre[..., None]).abs() < half_px[..., None]) & ok[..., None]  # (B, V, P, W)
        covered &= safe[..., None] < wall_depth[:, :, None, :]
        b_i, v_i, p_i, w_i = covered.nonzero(as_tuple=True)
        if b_i.numel() == 0:
            return rgb, depth
        in_rows = (rowc >= row_top[b_i, v_i, p_i, None]) & (rowc < row_bot[b_i, v_i, p_i, None])  # (C, H)
        c_i, r_i = in_rows.nonzero(as_tuple=True)
        b_i, v_i, p_i, w_i = b_i[c_i], v_i[c_i], p_i[c_i], w_i[c_i]
        sd = safe[b_i, v_i, p_i]
        su = (colc[w_i] - centre[b_i, v_i, p_i]) / half_px[b_i, v_i, p_i]
        hgt = (rowc[r_i] - row_top[b_i, v_i, p_i]) / (row_bot[b_i, v_i, p_i] - row_top[b_i, v_i, p_i])
        ub = ((su + 1) / 2 * nb).long().clamp(0, nb - 1)
        hb = (hgt * nb).long().clamp(0, nb - 1)
        agent = is_agent[p_i]
        agent_rgb = albedo[b_i, p_i] * self.agent_shade[ub][:, None]
        vis = torch.sigmoid(self.visor[facing[b_i, v_i, p_i].long(), hb, ub])[:, None]
        agent_rgb = agent_rgb * (1 - vis) + self.visor_rgb * vis
        item_rgb = self.item_rgb * self.item_shade[ub][:, None]
        item_a = torch.sigmoid(self.item_alpha[hb, ub]) * strength[b_i, p_i]
        sp_rgb = torch.where(agent[:, None], agent_rgb, item_rgb)
        alpha = torch.where(agent, torch.ones_like(item_a), item_a)
        # Nearest sprite per pixel among those that are opaque enough there.
        pix = ((b_i * v + v_i) * h + r_i) * w + w_i
        entry = torch.arange(pix.numel(), device=dev)
        key = (sd.detach() * (1 << 20)).long() * (1 << 32) + entry
        key = torch.where(alpha.detach() > 0.5, key, torch.iinfo(torch.long).max)
        best = torch.full((bsz * v * h * w,), torch.iinfo(torch.long).max, dtype=torch.long, device=dev)
        best.scatter_reduce_(0, pix, key, reduce="amin")
        best_entry = best[pix] & ((1 << 32) - 1)
        # A pixel no sprite covers opaquely still gets the (soft) nearest-covering entry for training.
        near = torch.full((bsz * v * h * w,), torch.iinfo(torch.long).max, dtype=torch.long, device=dev)
        near.scatter_reduce_(0, pix, (sd.detach() * (1 << 20)).long() * (1 << 32) + entry, reduce="amin")
        none_opaque = best[pix] == torch.iinfo(torch.long).max
        won = torch.where(none_opaque, (near[pix] & ((1 << 32) - 1)) == entry, best_entry == entry)
        pix, a, c, d_w = pix[won], alpha[won, None], sp_rgb[won], sd[won]
        flat = rgb.reshape(-1, 3)
        flat = flat.index_put((pix,), flat[pix] * (1 - a) + c * a)
        dflat = depth.reshape(-1).index_put((pix,), torch.where(a[:, 0] > 0.5, d_w, depth.reshape(-1)[pix]))
        return flat.reshape(rgb.shape), dflat.reshape(depth.shape)

    def loss(self, rgb: torch.Tensor, target: torch.Tensor, depth=None, target_depth=None) -> tuple[torch.Tensor, dict]:
        mse = F.mse_loss(rgb, target)
        logs = {"render_mse": mse.item(), "render_psnr": (10 * torch.log10(1 / mse.clamp_min(1e-10))).item()}
        loss = mse + 0.05 * F.l1_loss(rgb, target)
        if depth is not None and target_depth is not None:
            logs["depth_l1"] = F.l1_loss(depth.clamp(0, 20), target_depth.clamp(0, 20)).item()
        return loss, logs
