"""Camera geometry: the only structure of the world model that is given by hand.

Everything here is where a ray from a camera goes, and where a point lands in a camera; none of
it knows what the world contains. The world-aligned grid has cell (i, j) covering
``x in [j, j+1), y in [i, i+1)`` (x east, y south); a camera (``multiworld.world.camera.Camera``,
the oracle's too) sits at (x, y, eye height), looks along its heading with no pitch or roll,
and image column ``w`` looks along ``forward + right * cam_x[w]`` so that the ray parameter
``t`` is depth along the view axis.
"""

from __future__ import annotations

import dataclasses
import math

import torch

# The agents' one camera, shared with the oracle's renderer (``RenderConfig`` is a ``Camera``);
# ``multiworld.models.geometry.Camera`` stays its name here.
from multiworld.world.camera import Camera


def frames(poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Origins (..., 2), forward (..., 2) and right (..., 2) unit vectors of cameras at ``poses (..., 3)``."""
    c, s = torch.cos(poses[..., 2]), torch.sin(poses[..., 2])
    return poses[..., :2], torch.stack([c, s], -1), torch.stack([-s, c], -1)


def column_rays(poses: torch.Tensor, cam_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins (..., 1, 2) and directions (..., C, 2) of columns ``cam_x (C,)``; t is depth."""
    o, fwd, right = frames(poses)
    d = fwd[..., None, :] + right[..., None, :] * cam_x[:, None]
    return o[..., None, :], d


@dataclasses.dataclass
class Segments:
    """The pieces of rays between consecutive grid-line crossings, nearest first.

    t_in, t_out: (..., K)    depth where the ray enters and leaves the piece
    cell:        (..., K, 2) (row, col) of the cell the piece lies in, clamped to the grid
    p_in, p_out: (..., K, 2) entry and exit points as (x, y) relative to that cell's corner
    inside:      (..., K)    the piece lies inside the grid
    """

    t_in: torch.Tensor
    t_out: torch.Tensor
    cell: torch.Tensor
    p_in: torch.Tensor
    p_out: torch.Tensor
    inside: torch.Tensor


def ray_segments(origin: torch.Tensor, d: torch.Tensor, size: int, k: int) -> Segments:
    """The first ``k`` cell pieces of every ray ``origin + t d`` (t >= 0) through an S x S grid.

    All crossings with the S+1 vertical and S+1 horizontal grid lines are computed at once and
    sorted (no per-cell loop); the piece between two consecutive crossings lies in one cell.
    """
    far = 4.0 * size
    lines = torch.arange(size + 1, device=d.device, dtype=d.dtype)

    def crossings(o, v):
        safe = torch.where(v.abs() < 1e-9, torch.full_like(v, 1e-9), v)
        t = (lines - o[..., None]) / safe[..., None]
        return torch.where(t > 1e-6, t, torch.full_like(t, far))

    ox, oy = origin[..., 0].expand(d.shape[:-1]), origin[..., 1].expand(d.shape[:-1])
    t = torch.cat([crossings(ox, d[..., 0]), crossings(oy, d[..., 1])], -1)
    t = torch.sort(t, -1).values[..., :k]
    zero = torch.zeros_like(t[..., :1])
    t_in = torch.cat([zero, t[..., :-1]], -1)
    t_out = t
    o = origin[..., None, :] if origin.dim() == d.dim() else origin
    mid = o + d[..., None, :] * ((t_in + t_out) / 2)[..., None]
    cell_xy = mid.floor()
    inside = (cell_xy >= 0).all(-1) & (cell_xy < size).all(-1) & (t_out < far)
    cell_xy = cell_xy.clamp(0, size - 1)
    p_in = (o + d[..., None, :] * t_in[..., None] - cell_xy).clamp(0, 1)
    p_out = (o + d[..., None, :] * t_out.clamp(max=far)[..., None] - cell_xy).clamp(0, 1)
    cell = torch.stack([cell_xy[..., 1], cell_xy[..., 0]], -1).long()
    return Segments(t_in, t_out, cell, p_in, p_out, inside)


def project(points: torch.Tensor, poses: torch.Tensor, cam: Camera) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image coordinates of world points ``(..., P, 3)`` in cameras ``(..., 3)``.

    Returns (u, v) normalised to [-1, 1] (grid_sample convention, x right, y down) as
    ``(..., P, 2)``, the depth ``(..., P)`` and whether the point is in front and in view."""
    o, fwd, right = frames(poses)
    rel = points[..., :2] - o[..., None, :]
    depth = (rel * fwd[..., None, :]).sum(-1)
    lateral = (rel * right[..., None, :]).sum(-1)
    safe = depth.clamp(min=cam.near)
    u = cam.focal * lateral / safe / (cam.width / 2)
    v = -cam.focal * (points[..., 2] - cam.eye_height) / safe / (cam.height / 2)
    valid = (depth > cam.near) & (u.abs() < 1) & (v.abs() < 1)
    return torch.stack([u, v], -1), depth, valid


def fourier(x: torch.Tensor, bands: int) -> torch.Tensor:
    """``(..., C) -> (..., 2 * C * bands)``: sin and cos of ``2 pi 2^b x`` for b < bands.

    One sine and one cosine per value; the higher bands by the double-angle formulas (as accurate
    as float32 sines of the larger arguments: within 1e-6 of them). The renderer runs this per
    ray piece and per floor pixel, where a sine and cosine per band cost more than the networks."""
    a = 2 * math.pi * x
    s, c = a.sin(), a.cos()
    sins, coss = [s], [c]
    for _ in range(bands - 1):
        s, c = 2 * s * c, (c - s) * (c + s)
        sins.append(s)
        coss.append(c)
    return torch.cat([torch.stack(sins, -1), torch.stack(coss, -1)], -1).flatten(-2)


def window_offsets(radius: int) -> torch.Tensor:
    """``((2 r + 1)^2, 2)`` (d_row, d_col) of the cells within ``radius`` of a cell, row by row."""
    r = torch.arange(-radius, radius + 1)
    return torch.stack(torch.meshgrid(r, r, indexing="ij"), -1).reshape(-1, 2)


def gather_cells(grid: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """``grid (B, S, S, C)`` read at integer cells ``row, col (B, ...)`` (clamped) -> ``(B, ..., C)``."""
    bsz, s, _, c = grid.shape
    row, col = row.clamp(0, s - 1), col.clamp(0, s - 1)
    flat = (row * s + col).reshape(bsz, -1)
    out = torch.gather(grid.reshape(bsz, s * s, c), 1, flat[..., None].expand(-1, -1, c))
    return out.reshape(*row.shape, c)


def bilinear_cells(grid: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """``grid (B, S, S, C)`` sampled bilinearly at continuous points ``xy (B, P, 2)`` (cell centres at +0.5)."""
    s = grid.shape[1]
    g = (xy / s) * 2 - 1  # x -> width axis, y -> height axis
    out = torch.nn.functional.grid_sample(
        grid.permute(0, 3, 1, 2), g[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[..., 0].permute(0, 2, 1)


def wrap_angle(a: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def agent_pairs(xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative positions (B, N, N, 3) of agent j seen from agent i (dx, dy, distance), and the j != i mask."""
    rel = (xy[:, None, :, :] - xy[:, :, None, :]).clamp(-4, 4)
    dist = rel.norm(dim=-1, keepdim=True)
    n = xy.shape[1]
    other = ~torch.eye(n, dtype=torch.bool, device=xy.device)
    return torch.cat([rel, dist], -1), other[None, :, :, None].float()
