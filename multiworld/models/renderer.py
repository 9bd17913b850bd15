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
        dev = scene.device
        views = torch.arange(agents.shape[1], device=dev) if views is None else views
        cam_x = cam.cam_x(dev)
        if columns is not None:
            cam_x = cam_x[columns]
        origin, d, t_hit, out = self.pieces(scene, agents, views, cam_x, cam)
        bsz, v, c, k = t_hit.shape
        rgb, depth, rest = self.composite(t_hit.reshape(-1, k), out.reshape(bsz * v * c, k, -1), cam)
        rgb, depth, rest = rgb.view(bsz, v, c, -1, 3), depth.view(bsz, v, c, -1), rest.view(bsz, v, c, -1)
        bg, t_bg = self.background(scene, origin, d, rest, cam)
        rgb = rgb + rest[..., None] * bg
        depth = depth + rest * t_bg
        return rgb.transpose(2, 3), depth.transpose(2, 3)

    def pieces(
        self, scene: torch.Tensor, agents: torch.Tensor, views: torch.Tensor, cam_x: torch.Tensor, cam: Camera
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pieces every pixel composites: ray origins (B, V, 1, 2) and directions (B, V, C, 2),
        and per ray the ``visible`` nearest pieces that are not nearly transparent: depth
        ``t_hit`` (B, V, C, L) and the piece network's outputs ``out`` (B, V, C, L, 3 + 3 Z)
        (opacity logit, top, hit fraction, colour coefficients)."""
        cfg, dev = self.cfg, scene.device
        bsz, s = scene.shape[0], scene.shape[1]
        n = agents.shape[1]
        cam_poses = agents[:, views, :3]  # (B, V, 3)
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
        p_in = seg.p_in.gather(-2, pick[..., None].expand(-1, -1, -1, -1, 2)).reshape(-1, 2)
        p_out = seg.p_out.gather(-2, pick[..., None].expand(-1, -1, -1, -1, 2)).reshape(-1, 2)
        cell = seg.cell.gather(-2, pick[..., None].expand(-1, -1, -1, -1, 2)).reshape(-1, 2)
        length = t_out - t_in
        dn = d / d.norm(dim=-1, keepdim=True)
        # The piece network reads only the pieces the occupancy keeps; the skipped ones (empty
        # cells, or past the grid) are transparent.
        keep = (~skipped).reshape(-1).nonzero().squeeze(1)  # (M,)
        world = keep // (v * c * k)
        p_in, p_out = p_in[keep], p_out[keep]
        at = (world * s + cell[keep, 0]) * s + cell[keep, 1]
        feats = torch.cat(
            [
                scene.reshape(bsz * s * s, -1)[at],
                fourier(p_in, cfg.bands),
                fourier(p_out, cfg.bands),
                p_in,
                p_out,
                length.reshape(-1)[keep].clamp(max=2)[:, None],
                torch.log(t_in.reshape(-1)[keep] + cam.near)[:, None],
                dn.reshape(-1, 2)[keep // k],
            ],
            -1,
        )
        so = self.segment(feats)
        so = scatter_rows(so, keep, bsz * v * c * k).view(bsz, v, c, k, -1)
        so_alpha = occ + so[..., 0]
        t_seg = t_in + torch.sigmoid(so[..., 2]) * length.clamp(max=2)

        # Other agents as pieces at their depth, read with the ray's lateral offset from them.
        # The agent network reads only the agents a ray can meet: a camera never sees itself,
        # nor agents behind its near plane or more than 1.5 cells to the side of the ray.
        o, fwd, right = frames(cam_poses)
        rel = agents[:, None, :, :2] - o[:, :, None, :]  # (B, V, N, 2)
        t_ag = (rel * fwd[:, :, None]).sum(-1)
        lat = (rel * right[:, :, None]).sum(-1)
        off = cam_x[None, None, :, None] * t_ag[:, :, None, :] - lat[:, :, None, :]  # (B, V, C, N)
        rel_head = agents[:, None, :, 2] - cam_poses[..., 2:3]  # (B, V, N)
        own = views[:, None] == torch.arange(n, device=dev)[None, :]  # (V, N)
        hidden = own[None, :, None, :] | (t_ag[:, :, None, :] < cam.near) | (off.abs() > 1.5)
        seen = (~hidden).reshape(-1).nonzero().squeeze(1)  # (M',) over (B, V, C, N)
        ai, ray = seen % n, seen // n
        bi, vi = ray // (v * c), (ray // c) % v
        off_s = off.reshape(-1)[seen, None].clamp(-2, 2)
        head = rel_head[bi, vi, ai]
        afeats = torch.cat(
            [
                agents[bi, ai, 3:],
                off_s,
                fourier(off_s, 3),
                torch.log(t_ag[bi, vi, ai].clamp(min=cam.near))[:, None],
                torch.stack([head.sin(), head.cos()], -1),
            ],
            -1,
        )
        ao = self.agent(afeats)
        ao = scatter_rows(ao, seen, bsz * v * c * n).view(bsz, v, c, n, -1)
        ao_alpha = ao[..., 0]
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
        out = out.gather(-2, order[..., None].expand(-1, -1, -1, -1, self.out))
        return origin, d, t_hit, out

    def composite(self, t_hit: torch.Tensor, out: torch.Tensor, cam: Camera):
        """Front-to-back compositing of R rays' pieces ``t_hit`` (R, L), ``out`` (R, L, 3 + 3 Z)
        in every pixel row: colour (R, H, 3) and depth (R, H) of the pieces, and the
        transmittance ``rest`` (R, H) that reaches the ground plane or sky behind them."""
        return composite_pieces(t_hit, out, cam.row_tan(t_hit.device), self.edge.exp(), cam, self.cfg.z_bins)

    def background(self, scene, origin, d, rest, cam: Camera) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour (B, V, C, H, 3) and depth (H,) of the ground plane and the sky behind the
        pieces. The floor's colour counts only where the floor shows through (the pieces in front
        leave more than 0.1% of the pixel, ``rest`` (B, V, C, H)): the floor network reads only
        those pixels (the others are black, as if computed and masked)."""
        cfg = self.cfg
        s = scene.shape[1]
        row_tan = cam.row_tan(scene.device)
        t_floor = floor_depth(row_tan, cam)
        ha = cam.height // 2  # rows above the horizon (row_tan > 0): the upper half
        tf = t_floor[ha:]  # (Hb,)
        bsz, v, c = rest.shape[:3]
        hb = tf.shape[0]
        shown = (rest[..., ha:] > 1e-3).reshape(-1).nonzero().squeeze(1)  # (M,) over (B, V, C, Hb)
        ray, row = shown // hb, shown % hb
        world = ray // (v * c)
        ground = origin.reshape(-1, 2)[ray // c] + d.reshape(-1, 2)[ray] * tf[row, None]  # (M, 2)
        cell = ground.floor().clamp(0, s - 1)
        at = (world * s + cell[:, 1].long()) * s + cell[:, 0].long()
        gtok = scene.reshape(bsz * s * s, -1)[at]  # (M, D)
        gfeat = torch.cat([gtok, fourier((ground - cell).clamp(0, 1), cfg.bands), torch.log(tf)[row, None]], -1)
        floor_rgb = torch.sigmoid(self.floor(gfeat)).to(scene.dtype)
        floor_rgb = floor_rgb.new_zeros(bsz * v * c * hb, 3).index_copy(0, shown, floor_rgb)
        floor_rgb = floor_rgb.view(bsz, v, c, hb, 3)
        sky = torch.sigmoid(self.ceiling(row_tan[:ha, None])).to(scene.dtype)  # (Ha, 3)
        bg = torch.cat([sky.expand(*floor_rgb.shape[:3], -1, -1), floor_rgb], 3)
        t_bg = torch.where(row_tan < 0, t_floor, torch.zeros_like(t_floor))
        return bg, t_bg

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


def scatter_rows(rows: torch.Tensor, index: torch.Tensor, total: int) -> torch.Tensor:
    """Piece-network outputs ``rows`` (M, O) of the pieces ``index`` (M,) placed among ``total``
    pieces; every other piece reads as fully transparent (opacity logit -1e4, zeros elsewhere)."""
    out = rows.new_zeros(total, rows.shape[1])
    out[:, 0] = -1e4
    return out.index_copy(0, index, rows)


def floor_depth(row_tan: torch.Tensor, cam: Camera) -> torch.Tensor:
    """(H,) depth at which each pixel row meets the ground plane (1e4 for rows above the horizon)."""
    below = row_tan < 0
    return torch.where(below, cam.eye_height / (-row_tan).clamp(min=1e-6), torch.full_like(row_tan, 1e4))


def composite_pieces(
    t_hit: torch.Tensor, out: torch.Tensor, row_tan: torch.Tensor, gain: torch.Tensor, cam: Camera, z_bins: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pixel row: the height each piece is seen at, its coverage and colour, composited front
    to back over the L pieces (t_hit (R, L) nearest first, out (R, L, 3 + 3 Z)).

    Returns colour (R, H, 3), depth (R, H) and the transmittance left behind the pieces (R, H).

    The per-pixel work of a piece (coverage, the colour read from its height bins: five sigmoids
    and six gathers) is done only for the pieces the renderer did not skip (opacity logit above
    -1e3; the skipped, -1e4, are exactly transparent: about 60% of the slots in a typical view).
    Front-to-back compositing then runs over every slot with multiplies and adds alone, in the
    same order as a pass over all slots would: the image is the same."""
    out = out.float()
    t_floor = floor_depth(row_tan, cam)
    r, slots = t_hit.shape
    h = row_tan.shape[0]
    real = (out[..., 0] > -1e3).reshape(-1).nonzero().squeeze(1)  # (M,) over (R, L)
    t = t_hit.reshape(-1)[real, None]  # (M, 1)
    o = out.reshape(r * slots, -1)[real]  # (M, 3 + 3 Z)
    z = cam.eye_height + row_tan * t  # (M, H)
    px = cam.focal / t  # pixel rows per unit of height
    top = 1.2 * torch.sigmoid(o[:, 1:2])
    cover = torch.sigmoid((top - z) * px * gain) * torch.sigmoid(z * px * gain)
    alpha = torch.sigmoid(o[:, :1]) * cover * (t < t_floor)
    # Each pixel reads the colour coefficients of the two height bins around it.
    zi = z.clamp(0, 1) * (z_bins - 1)
    i0 = zi.floor().clamp(max=z_bins - 2)
    frac, i0 = zi - i0, i0.long()
    coef = o[:, 3:].unflatten(-1, (z_bins, 3))
    colour = [
        torch.sigmoid(torch.lerp(coef[..., ch].gather(1, i0), coef[..., ch].gather(1, i0 + 1), frac)) for ch in range(3)
    ]
    # Every slot again, the skipped ones transparent.
    alpha = alpha.new_zeros(r * slots, h).index_copy(0, real, alpha).view(r, slots, h)
    colour = [alpha.new_zeros(r * slots, h).index_copy(0, real, c).view(r, slots, h) for c in colour]
    trans = t_hit.new_ones(r, h)
    rgb = [t_hit.new_zeros(r, h) for _ in range(3)]
    depth = t_hit.new_zeros(r, h)
    for i in range(slots):
        weight = alpha[:, i] * trans
        for ch in range(3):
            rgb[ch] = rgb[ch] + weight * colour[ch][:, i]
        depth = depth + weight * t_hit[:, i, None]
        trans = trans * (1 - alpha[:, i] + 1e-6)
    return torch.stack(rgb, -1), depth, trans


FREEZE_FROM_VIEWS = 16


def compile_renderer(renderer: RayRenderer, freeze: bool = False):
    """``renderer``'s forward compiled by Inductor for inference, as one graph.

    The counts of kept pieces (cell pieces the occupancy keeps, agents a ray can meet, pieces not
    skipped at compositing) and of floor pixels that show are the only sizes that depend on the
    data; they enter the graph as data-dependent sizes, so every step of a batch of the same
    shape runs the same compiled code. ``freeze``: for batches of at least ``FREEZE_FROM_VIEWS``
    views the weights are frozen into it (Inductor's ``freezing``: linear layers prepacked for
    oneDNN with their ReLU fused; 16 worlds x 4 agents at 64x64 in bf16 render about 25% faster,
    fp32 and single worlds slower), so the compiled render serves inference only and does not see
    later changes to the weights. Compiling takes tens of
    seconds to minutes on a CPU (cached on disk afterwards); the compiled render agrees with the
    eager one to float rounding (fusion reorders arithmetic), not bit for bit."""
    import torch._dynamo

    compiled = torch.compile(renderer, fullgraph=True, dynamic=False)

    def render(scene: torch.Tensor, agents: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        # Frozen weights pay off from about 16 views a step (a graph is compiled per batch shape).
        frozen = freeze and scene.shape[0] * agents.shape[1] >= FREEZE_FROM_VIEWS
        with (
            # One graph per batch shape, precision and image size: a process may render many.
            torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True, recompile_limit=64),
            torch._inductor.config.patch(freezing=frozen),
        ):
            return compiled(scene, agents, **kwargs)

    return render
