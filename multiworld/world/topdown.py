"""Top-down map images of worlds: walls, floor patterns, goals, boxes, items and agents."""

from __future__ import annotations

import numpy as np

from multiworld.world.state import WorldState
from multiworld.world.textures import AGENT_COLOURS, BOX_MATERIAL, GOAL_PATTERN, build_atlas

_ATLAS = build_atlas(2)


def _mean_colour(offset: int, count: int) -> np.ndarray:
    return _ATLAS.colours[offset : offset + count].astype(np.float32).mean(axis=0)


_T2 = 64  # texels per texture
WALL_COLOURS = np.stack(
    [np.zeros(3)] + [_mean_colour(_ATLAS.wall + (m - 1) * 2 * _T2, _T2) for m in range(1, BOX_MATERIAL + 1)]
)
FLOOR_COLOURS = np.stack([_mean_colour(_ATLAS.floor + p * _T2, _T2) for p in range(GOAL_PATTERN + 1)])


def top_down(state: WorldState, cell_px: int = 8) -> np.ndarray:
    """(B, S*cell_px, S*cell_px, 3) uint8 images, north up (vectorized over worlds)."""
    bsz, s = state.num_worlds, state.size
    side = s * cell_px
    yy, xx = (np.mgrid[0:side, 0:side] + 0.5) / cell_px  # pixel centres in cell units
    pattern = np.where(state.goals, GOAL_PATTERN, state.floor)
    cells = np.where(state.walls[..., None] > 0, WALL_COLOURS[state.walls], FLOOR_COLOURS[pattern])
    if state.boxes.shape[1]:
        b = np.repeat(np.arange(bsz), state.boxes.shape[1])
        cells[b, state.boxes[..., 0].ravel(), state.boxes[..., 1].ravel()] = WALL_COLOURS[BOX_MATERIAL]
    img = np.repeat(np.repeat(cells, cell_px, axis=1), cell_px, axis=2)
    for k in range(state.items.shape[1]):
        r, c = state.items[:, k, 0, None, None], state.items[:, k, 1, None, None]
        mask = ((np.abs(xx - c - 0.5) + np.abs(yy - r - 0.5)) < 0.3) & state.items_alive[:, k, None, None]
        img[mask] = (255, 200, 0)
    t = np.linspace(0.0, 0.55, 4 * cell_px)
    worlds = np.arange(bsz)[:, None]
    for i in range(state.num_agents):
        x, y, h = (state.poses[:, i, j].astype(np.float64) for j in range(3))
        disk = (xx - x[:, None, None]) ** 2 + (yy - y[:, None, None]) ** 2 < 0.3**2
        img = np.where(disk[..., None], AGENT_COLOURS[state.colors[:, i]][:, None, None, :], img)
        # heading: a short white line from the body centre
        px = np.clip(((x[:, None] + t * np.cos(h)[:, None]) * cell_px).astype(int), 0, side - 1)
        py = np.clip(((y[:, None] + t * np.sin(h)[:, None]) * cell_px).astype(int), 0, side - 1)
        img[worlds, py, px] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


def mosaic(views: np.ndarray, map_img: np.ndarray, scale: int = 2) -> np.ndarray:
    """One image: the agents' views ``(N, H, W, 3)`` tiled in a near-square grid beside the map.

    Everything is upscaled by ``scale`` (nearest neighbour); the result's sides are multiples
    of 16 so video encoders accept it unchanged.
    """
    n, h, w, _ = views.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = views[i]
    height = max(grid.shape[0], map_img.shape[0])
    canvas = np.zeros((height, grid.shape[1] + map_img.shape[1], 3), np.uint8)
    canvas[: grid.shape[0], : grid.shape[1]] = grid
    canvas[: map_img.shape[0], grid.shape[1] :] = map_img
    canvas = np.repeat(np.repeat(canvas, scale, axis=0), scale, axis=1)
    pad_h, pad_w = -canvas.shape[0] % 16, -canvas.shape[1] % 16
    return np.pad(canvas, ((0, pad_h), (0, pad_w), (0, 0)))
