"""First-person raycasting, vectorized over worlds x agents x columns in torch.

Walls (and boxes, drawn as solid cubes) come from intersecting every ray with every grid
line at once, with no per-step loop; items and other agents are billboard sprites whose
pixels are depth-tested against the walls and each other with one ``scatter_reduce``.
Every pixel gets an index into a colour atlas (see ``textures``) and colours are gathered
once at the end. Besides RGB the renderer can return, per pixel, the depth, the entity
seen and the world point seen: ground-truth correspondences between agents' views.

Camera: ``multiworld.world.camera.Camera`` (shared with the learned model), at (x, y,
eye_height), looking along the heading, no pitch or roll. Depth is the distance along the view
axis, so a wall at depth d spans ``focal / d`` pixel rows per unit of height, with
``focal = (width / 2) / tan(fov / 2)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import NamedTuple

import numpy as np
import torch

from multiworld.world.camera import Camera
from multiworld.world.state import MAX_AGENTS, WorldState
from multiworld.world.textures import BOX_MATERIAL, GOAL_PATTERN, SHADES, TEXELS, build_atlas

# Entity ids in the per-pixel entity buffer.
ENTITY_FLOOR = 1
ENTITY_CEILING = 2
ENTITY_BASE = 16


def entity_offsets(size: int, num_boxes: int, num_items: int) -> dict[str, int]:
    """First entity id of each kind: walls by cell (row * size + col), boxes, items, agents by colour."""
    wall = ENTITY_BASE
    box = wall + size * size
    item = box + num_boxes
    agent = item + num_items
    return {"wall": wall, "box": box, "item": item, "agent": agent, "end": agent + MAX_AGENTS}


SMALL_BATCH_PIXELS = 1 << 16


@contextlib.contextmanager
def single_thread():
    """Run torch CPU ops on one thread inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass(frozen=True)
class RenderConfig(Camera):
    """The oracle renderer's settings: the agents' :class:`~multiworld.world.camera.Camera` (its
    fields, validated there; ``.camera`` is the camera alone) and the sizes of the sprites."""

    agent_height: float = 0.8
    agent_half_width: float = 0.2
    item_height: float = 0.3
    item_half_width: float = 0.15


@dataclasses.dataclass
class Views:
    """Rendered egocentric views of every agent in every world.

    rgb:    (B, N, H, W, 3) uint8
    depth:  (B, N, H, W)    float32 distance along the view axis (buffers only)
    entity: (B, N, H, W)    int32 entity id seen (see ``entity_offsets``; buffers only)
    points: (B, N, H, W, 3) float32 world point seen, (x, y, z) (buffers only)
    """

    rgb: torch.Tensor
    depth: torch.Tensor | None = None
    entity: torch.Tensor | None = None
    points: torch.Tensor | None = None


class Raycaster:
    """Renders every agent's view of a batch of worlds in one call."""

    def __init__(
        self, cfg: RenderConfig | None = None, device: str | torch.device = "cpu", compile: bool = False
    ) -> None:
        self.cfg = cfg = cfg or RenderConfig()
        self.device = torch.device(device)
        atlas = build_atlas(cfg.height)
        self.atlas = atlas
        w, h = cfg.width, cfg.height
        self._cols = torch.arange(w, device=self.device, dtype=torch.float32)
        # Ray direction of column w = forward + right * cam_x[w] (forward component 1: depth = t).
        self._cam_x = cfg.cam_x(self.device)
        rows = torch.arange(h, device=self.device, dtype=torch.float32)
        self._row_tan = cfg.row_tan(self.device)  # tangent of the elevation of each pixel row
        self._rows = rows
        # Atlas colours packed as RGBA bytes in one int32 each, so a pixel's colour is one gather.
        rgba = np.concatenate([atlas.colours, np.full((len(atlas.colours), 1), 255, np.uint8)], axis=1)
        self._packed = torch.as_tensor(rgba.view(np.int32)[:, 0].copy(), device=self.device)
        # Wall texel row at depth d is T * (1 - z) with z = eye + tan * d, i.e. v0 + slope * d.
        self._consts = _Constants(
            v0=torch.full((h, 1), (1 - cfg.eye_height) * TEXELS, device=self.device),
            v_slope=(-self._row_tan * TEXELS)[:, None],
            floor_dist=(cfg.eye_height / -self._row_tan[h // 2 :])[:, None],
            ceil_idx=(self.atlas.ceiling + rows[: h // 2].long())[:, None],
            wall_base=self.atlas.wall,
            packed=self._packed,
        )
        tr, tc = np.mgrid[0:TEXELS, 0:TEXELS]
        self._floor_texel = torch.as_tensor((tr * TEXELS + tc)[:, None, :], device=self.device)  # (T, 1, T)
        # The per-pixel stage is elementwise work that torch.compile fuses into one loop (~10x
        # faster on CPU); compiling costs ~25 s per (worlds, agents) shape, so it is opt-in.
        self._background = torch.compile(_background, dynamic=False) if compile else _background
        self._floor_cache: tuple | None = None

    @torch.no_grad()
    def render(self, state: WorldState, buffers: bool = False) -> Views:
        """Every agent's view of every world in ``state``; with ``buffers``, depth, entity and points too."""
        pixels = state.num_worlds * state.num_agents * self.cfg.height * self.cfg.width
        if self.device.type == "cpu" and pixels < SMALL_BATCH_PIXELS:
            # Small batches run faster on one thread: torch's parallel regions cost more than
            # they save on a few thousand elements, and far more when the other cores are busy.
            with single_thread():
                return self._render(state, buffers)
        return self._render(state, buffers)

    def _render(self, state: WorldState, buffers: bool) -> Views:
        cfg, dev = self.cfg, self.device
        bsz, n, s = state.num_worlds, state.num_agents, state.size
        h, w = cfg.height, cfg.width
        poses = torch.as_tensor(state.poses, device=dev)
        cx, cy, heading = poses[..., 0:1], poses[..., 1:2], poses[..., 2:3]  # (B, N, 1)
        fx, fy = torch.cos(heading), torch.sin(heading)
        rx, ry = -fy, fx  # right vector (y points south)
        dx = fx + rx * self._cam_x  # (B, N, W)
        dy = fy + ry * self._cam_x

        grid = torch.as_tensor(state.walls, device=dev).long()
        boxes = torch.as_tensor(state.boxes, device=dev).long()
        bidx = torch.arange(bsz, device=dev)[:, None].expand(bsz, boxes.shape[1])
        grid[bidx, boxes[..., 0], boxes[..., 1]] = BOX_MATERIAL
        world_off = (torch.arange(bsz, device=dev) * s * s)[:, None, None]
        colour, d, cell, material = self._background(
            cx, cy, dx, dy, grid.reshape(-1), world_off, self._floor_texels(state), self._consts, s
        )

        out_depth = out_entity = None
        if buffers:
            texel_v = torch.addcmul(self._consts.v0, self._consts.v_slope, d[..., None, :])
            is_wall = (texel_v >= 0) & (texel_v < TEXELS)  # as in _background
            tan = self._row_tan[:, None]
            bg_depth = torch.where(tan > 0, (1 - cfg.eye_height) / tan, cfg.eye_height / -tan).expand(h, w)
            out_depth = torch.where(is_wall, d[..., None, :].expand(-1, -1, h, -1), bg_depth)
            wall_entity = torch.where(material == BOX_MATERIAL - 1, self._box_entity(state, cell, world_off), 0)
            wall_entity = torch.where(wall_entity > 0, wall_entity, ENTITY_BASE + cell - world_off)
            bg_entity = torch.where(tan > 0, ENTITY_CEILING, ENTITY_FLOOR).expand(h, w)
            out_entity = torch.where(is_wall, wall_entity[..., None, :].expand(-1, -1, h, -1), bg_entity)

        self._draw_sprites(state, colour, d, out_depth, out_entity)
        # Colours are packed RGBA, one int32 per pixel: view them as bytes and drop alpha.
        views = Views(rgb=colour.view(torch.uint8).view(bsz, n, h, w, 4)[..., :3])
        if buffers:
            wx = cx[..., None] + dx[..., None, :] * out_depth
            wy = cy[..., None] + dy[..., None, :] * out_depth
            wz = cfg.eye_height + self._row_tan[:, None] * out_depth
            views.depth, views.entity = out_depth, out_entity.int()
            views.points = torch.stack([wx, wy, wz], dim=-1)
        return views

    def _floor_texels(self, state: WorldState) -> torch.Tensor:
        """(B, S*T * S*T) atlas index of every floor texel, rows of texels in world y order.

        Floors never change during an episode, so the last result is kept and reused.
        """
        key = (state.floor.shape, state.floor.tobytes(), state.goals.tobytes())
        if self._floor_cache is not None and self._floor_cache[0] == key:
            return self._floor_cache[1]
        texels = self._build_floor_texels(state)
        self._floor_cache = (key, texels)
        return texels

    def _build_floor_texels(self, state: WorldState) -> torch.Tensor:
        pattern = torch.as_tensor(np.where(state.goals, GOAL_PATTERN, state.floor), device=self.device).long()
        tex = self.atlas.floor + pattern[:, :, None, :, None] * (TEXELS * TEXELS) + self._floor_texel  # (B,S,T,S,T)
        return tex.reshape(pattern.shape[0], -1)

    def _box_entity(self, state: WorldState, cell: torch.Tensor, world_off: torch.Tensor) -> torch.Tensor:
        bsz, m, s = state.num_worlds, state.boxes.shape[1], state.size
        table = torch.zeros(bsz * s * s, dtype=torch.long, device=self.device)
        offs = entity_offsets(s, m, state.items.shape[1])
        boxes = torch.as_tensor(state.boxes, device=self.device).long()
        flat = (torch.arange(bsz, device=self.device)[:, None] * s * s + boxes[..., 0] * s + boxes[..., 1]).reshape(-1)
        table[flat] = (offs["box"] + torch.arange(m, device=self.device)).repeat(bsz)
        return table[cell]

    def sprite_scene(self, cameras: WorldState) -> WorldState:
        """The world whose agents and items are drawn as sprites: by default the cameras' own.

        Agent sprite i is never drawn in camera i's view (an agent does not see its own body).
        """
        return cameras

    def _draw_sprites(self, cameras: WorldState, image, wall_depth, out_depth, out_entity) -> None:
        """Paint item and agent billboards into ``image`` (packed colours) and the buffers, in place.

        Sprites are few and small on screen, so this stage works on sparse lists of sprite
        columns and pixels, in numpy (whose per-call cost on small arrays is a fraction of
        torch's); only the final scatter touches the image.
        """
        cfg = self.cfg
        scene = self.sprite_scene(cameras)
        bsz, n = cameras.num_worlds, cameras.num_agents
        n_s, k = scene.num_agents, scene.items.shape[1]
        h, w, f = cfg.height, cfg.width, cfg.focal
        num = n_s + k
        if num == 0:
            return
        offs = entity_offsets(scene.size, scene.boxes.shape[1], k)
        # Sprites of each world: agents first, then items. (B, P, ...)
        pos = np.concatenate([scene.poses[..., :2], scene.items[..., ::-1].astype(np.float32) + 0.5], axis=1)
        is_agent = np.arange(num) < n_s
        valid = np.concatenate([np.ones((bsz, n_s), bool), scene.items_alive], axis=1)
        heading = scene.poses[..., 2]
        half = np.where(is_agent, cfg.agent_half_width, cfg.item_half_width).astype(np.float32)
        top = np.where(is_agent, cfg.agent_height, cfg.item_height).astype(np.float32)

        cam = cameras.poses[:, :, None, :]  # (B, N, 1, 3)
        fx, fy = np.cos(cam[..., 2]), np.sin(cam[..., 2])
        relx, rely = pos[:, None, :, 0] - cam[..., 0], pos[:, None, :, 1] - cam[..., 1]  # (B, N, P)
        depth = relx * fx + rely * fy
        lateral = rely * fx - relx * fy  # along the right vector (-sin, cos)
        ok = valid[:, None, :] & ~np.eye(n, num, dtype=bool) & (depth > cfg.near)
        safe = np.where(ok, depth, np.float32(1))
        centre = w / 2 + f * lateral / safe
        half_px = f * half / safe
        row_top = h / 2 - f * (top - cfg.eye_height) / safe
        row_bot = h / 2 + f * cfg.eye_height / safe

        # Visible sprite columns: covered by the sprite and in front of that column's wall.
        col_c = np.arange(w, dtype=np.float32) + 0.5
        wall = wall_depth.cpu().numpy()
        covered = (np.abs(col_c - centre[..., None]) < half_px[..., None]) & ok[..., None]  # (B, N, P, W)
        covered &= safe[..., None] < wall[:, :, None, :]
        b_i, n_i, p_i, w_i = np.nonzero(covered)
        if b_i.size == 0:
            return
        # Expand to pixels: rows between the sprite's top and bottom.
        r_c = np.arange(h, dtype=np.float32) + 0.5
        top_i, bot_i = row_top[b_i, n_i, p_i], row_bot[b_i, n_i, p_i]
        c_i, r_i = np.nonzero((r_c >= top_i[:, None]) & (r_c < bot_i[:, None]))  # (C, H) -> pixels
        b_i, n_i, p_i, w_i = b_i[c_i], n_i[c_i], p_i[c_i], w_i[c_i]
        sd = safe[b_i, n_i, p_i]
        su = (col_c[w_i] - centre[b_i, n_i, p_i]) / half_px[b_i, n_i, p_i]  # -1..1 across
        height = (r_c[r_i] - top_i[c_i]) / (bot_i[c_i] - top_i[c_i])  # 0 at the top
        agent_px = is_agent[p_i]
        # Items are diamonds: keep pixels with |u| + |v| <= 1.
        keep = agent_px | ((np.abs(su) + np.abs(2 * height - 1)) <= 1)
        shade = np.clip(((su + 1) / 2 * SHADES).astype(np.int64), 0, SHADES - 1)
        # An agent facing the viewer shows a white visor band near its top.
        seen_heading = heading[b_i, np.minimum(p_i, n_s - 1)]
        facing = np.cos(seen_heading) * fx[b_i, n_i, 0] + np.sin(seen_heading) * fy[b_i, n_i, 0] < 0
        visor = agent_px & facing & (height > 0.12) & (height < 0.25) & (np.abs(su) < 0.6)
        colour_id = scene.colors[b_i, np.minimum(p_i, n_s - 1)].astype(np.int64)
        sprite_idx = np.where(agent_px, self.atlas.agent + colour_id * SHADES + shade, self.atlas.item + shade)
        sprite_idx = np.where(visor, self.atlas.eye, sprite_idx)

        b_i, n_i, p_i, r_i, w_i, sd, sprite_idx = (x[keep] for x in (b_i, n_i, p_i, r_i, w_i, sd, sprite_idx))
        pix = ((b_i * n + n_i) * h + r_i) * w + w_i
        # Nearest sprite per pixel: sort by depth (stable: ties keep sprite order, so the result
        # never depends on anything but the scene), then take each pixel's first entry.
        order = np.argsort(sd, kind="stable")
        _, first = np.unique(pix[order], return_index=True)
        won = order[first]
        dev = self.device
        target = torch.from_numpy(pix[won]).to(dev)
        image.view(-1)[target] = self._packed[torch.from_numpy(sprite_idx[won]).to(dev)]
        if out_depth is not None:
            out_depth.view(-1)[target] = torch.from_numpy(sd[won].astype(np.float32)).to(dev)
            p_won = p_i[won]
            ent = np.where(
                p_won < n_s,
                offs["agent"] + scene.colors[b_i[won], np.minimum(p_won, n_s - 1)].astype(np.int64),
                offs["item"] + p_won - n_s,
            )
            out_entity.view(-1)[target] = torch.from_numpy(ent.astype(np.int64)).to(dev)


class _Constants(NamedTuple):
    v0: torch.Tensor  # (H, 1) wall texel row at depth 0
    v_slope: torch.Tensor  # (H, 1) change of wall texel row per unit depth
    floor_dist: torch.Tensor  # (H/2, 1) depth of the floor seen by each bottom-half row
    ceil_idx: torch.Tensor  # (H/2, 1) atlas index of the ceiling colour of each top-half row
    wall_base: int
    packed: torch.Tensor  # (A,) int32 atlas colours as RGBA bytes


def _background(cx, cy, dx, dy, flat_grid, world_off, floor_img, c: _Constants, s: int):
    """Walls, floor and ceiling of every pixel: packed colour (B, N, H, W) int32, and the wall columns
    (depth, flat cell index and material of the first solid cell along each column's ray)."""
    d, cell, side, u = _cast(cx, cy, dx, dy, flat_grid, world_off, s)
    material = flat_grid[cell] - 1  # (B, N, W), 0-based; the box is the last material
    texel_u = (u * TEXELS).long().clamp(0, TEXELS - 1)
    col_base = c.wall_base + ((material * 2 + side) * TEXELS + texel_u) * TEXELS  # atlas is column-major
    # Texel row of the wall point each pixel sees; inside [0, T) exactly where the wall is.
    texel_v = torch.addcmul(c.v0, c.v_slope, d[..., None, :])  # (B, N, H, W)
    is_wall = (texel_v >= 0) & (texel_v < TEXELS)
    wall_idx = texel_v.clamp(0, TEXELS - 0.5).long() + col_base[..., None, :]

    # Floor texels under each bottom-half pixel, read from a texel image of the world's floor.
    span = s * TEXELS
    tx = torch.addcmul(cx[..., None] * TEXELS, dx[..., None, :] * TEXELS, c.floor_dist).long().clamp(0, span - 1)
    ty = torch.addcmul(cy[..., None] * TEXELS, dy[..., None, :] * TEXELS, c.floor_dist).long().clamp(0, span - 1)
    bsz = floor_img.shape[0]
    floor_idx = floor_img.gather(1, (ty * span + tx).view(bsz, -1)).view(tx.shape)
    ceiling = c.ceil_idx.expand(tx.shape[0], tx.shape[1], -1, tx.shape[3])
    idx = torch.where(is_wall, wall_idx, torch.cat([ceiling, floor_idx], dim=2))
    return c.packed[idx], d, cell, material


def _cast(cx, cy, dx, dy, flat_grid, world_off, s: int):
    """First solid cell along each ray (B, N, W): depth, flat cell index, face side (1 = y-line), u.

    Every ray is intersected with all S+1 grid lines of each axis at once; the nearest line
    crossing into a solid cell wins.
    """
    lines = torch.arange(s + 1, device=cx.device, dtype=torch.float32)
    results = []
    for axis in (0, 1):
        # x-lines (axis 0) are crossed along x and located along y; y-lines the other way.
        o, do, p, dp = (cx, dx, cy, dy) if axis == 0 else (cy, dy, cx, dx)
        safe = torch.where(do.abs() < 1e-9, torch.full_like(do, 1e-9), do)
        t = (lines - o[..., None]) / safe[..., None]  # (B, N, W, S+1)
        entered = torch.where(safe[..., None] > 0, lines, lines - 1).long()  # cell index across the line
        along = p[..., None] + t * dp[..., None]
        cross = along.floor().long()
        inside = (t > 1e-6) & (entered >= 0) & (entered < s) & (cross >= 0) & (cross < s)
        row, col = (cross, entered) if axis == 0 else (entered, cross)
        cell = world_off[..., None] + row.clamp(0, s - 1) * s + col.clamp(0, s - 1)
        t = t.masked_fill(~(inside & (flat_grid[cell] > 0)), math.inf)
        tmin, k = t.min(dim=-1)
        hit_cell = cell.gather(-1, k[..., None])[..., 0]
        a = along.gather(-1, k[..., None])[..., 0]
        results.append((tmin, hit_cell, a - a.floor()))
    (tx, cx_, ux), (ty, cy_, uy) = results
    y_closer = ty < tx
    return (
        torch.where(y_closer, ty, tx),
        torch.where(y_closer, cy_, cx_),
        y_closer.long(),
        torch.where(y_closer, uy, ux),
    )


def project(points: np.ndarray, pose: np.ndarray, cfg: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project world points ``(..., 3)`` into the camera at ``pose`` (x, y, heading).

    Returns (row, col, depth): continuous pixel coordinates (pixel (r, c) covers [r, r+1) x
    [c, c+1), so its centre is (r + 0.5, c + 0.5)) and the depth along the view axis. The
    inverse of the renderer's per-pixel ``points`` buffer: used to find where a point one
    agent sees appears in another agent's view.
    """
    x, y, heading = (float(v) for v in pose)
    fx, fy = np.cos(heading), np.sin(heading)
    rel_x, rel_y = points[..., 0] - x, points[..., 1] - y
    depth = rel_x * fx + rel_y * fy
    lateral = rel_x * -fy + rel_y * fx
    safe = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
    col = cfg.width / 2 + cfg.focal * lateral / safe
    row = cfg.height / 2 - cfg.focal * (points[..., 2] - cfg.eye_height) / safe
    return row, col, depth
