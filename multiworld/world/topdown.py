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
    """(B, S*cell_px, S*cell_px, 3) uint8 images, north up."""
    bsz, s = state.num_worlds, state.size
    out = np.empty((bsz, s * cell_px, s * cell_px, 3), np.uint8)
    yy, xx = (np.mgrid[0 : s * cell_px, 0 : s * cell_px] + 0.5) / cell_px  # pixel centres in cell units
    for b in range(bsz):
        pattern = np.where(state.goals[b], GOAL_PATTERN, state.floor[b])
        cells = np.where(state.walls[b, ..., None] > 0, WALL_COLOURS[state.walls[b]], FLOOR_COLOURS[pattern])
        for r, c in state.boxes[b]:
            cells[r, c] = WALL_COLOURS[BOX_MATERIAL]
        img = np.repeat(np.repeat(cells, cell_px, axis=0), cell_px, axis=1)
        for (r, c), alive in zip(state.items[b], state.items_alive[b]):
            if alive:
                img[(np.abs(xx - c - 0.5) + np.abs(yy - r - 0.5)) < 0.3] = (255, 200, 0)
        for (x, y, h), colour in zip(state.poses[b], state.colors[b]):
            img[(xx - x) ** 2 + (yy - y) ** 2 < 0.3**2] = AGENT_COLOURS[colour]
            # heading: a short white line from the body centre
            t = np.linspace(0.0, 0.55, 4 * cell_px)
            px = np.clip(((x + t * np.cos(h)) * cell_px).astype(int), 0, s * cell_px - 1)
            py = np.clip(((y + t * np.sin(h)) * cell_px).astype(int), 0, s * cell_px - 1)
            img[py, px] = 255
        out[b] = np.clip(img, 0, 255).astype(np.uint8)
    return out


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
