"""The top-down map of one stored step, fast: the same pixels as ``multiworld.world.topdown.top_down``.

``top_down`` builds every map from scratch over whole-image grids (a few ms at 128 x 128). A
world's walls, floor and goals never change, so :class:`MapPainter` keeps that background and
per step only stamps what moves, each on its own few pixels with ``top_down``'s own formulas:
box cells, item diamonds, agent disks and heading lines, in ``top_down``'s order. The viewer's
tests check the two agree pixel for pixel.
"""

from __future__ import annotations

import numpy as np

from multiworld.world.textures import AGENT_COLOURS, BOX_MATERIAL
from multiworld.world.topdown import FLOOR_COLOURS, GOAL_PATTERN, WALL_COLOURS

ITEM_COLOUR = np.array([255, 200, 0], np.uint8)


class MapPainter:
    """Maps of one world from its static arrays (walls, floor, goals, items, colors)."""

    def __init__(self, static: dict[str, np.ndarray], cell_px: int = 8):
        self.cell_px = px = cell_px
        walls, floor, goals = static["walls"], static["floor"], static["goals"]
        self.size = s = walls.shape[0]
        self.side = s * px
        pattern = np.where(goals, GOAL_PATTERN, floor)
        cells = np.where(walls[..., None] > 0, WALL_COLOURS[walls], FLOOR_COLOURS[pattern])
        self.background = np.clip(np.repeat(np.repeat(cells, px, axis=0), px, axis=1), 0, 255).astype(np.uint8)
        self.box = np.clip(WALL_COLOURS[BOX_MATERIAL], 0, 255).astype(np.uint8)
        self.items = np.asarray(static["items"]).reshape(-1, 2)
        self.colours = AGENT_COLOURS[np.asarray(static["colors"]).astype(np.int64) % len(AGENT_COLOURS)]
        # An item's diamond inside its cell; with a power-of-two cell size the local coordinates
        # are the same floats as top_down's global ones minus the cell's corner.
        local = (np.arange(px) + 0.5) / px
        self.diamond = (np.abs(local[None, :] - 0.5) + np.abs(local[:, None] - 0.5)) < 0.3
        self.heading_t = np.linspace(0.0, 0.55, 4 * px)

    def paint(self, poses: np.ndarray, boxes: np.ndarray, items_alive: np.ndarray) -> np.ndarray:
        """(side, side, 3) uint8 map of one step: ``poses`` (N, 3), ``boxes`` (M, 2), ``items_alive`` (K,)."""
        px, s, side = self.cell_px, self.size, self.side
        img = self.background.copy()
        for r, c in np.asarray(boxes).reshape(-1, 2):
            if 0 <= r < s and 0 <= c < s:
                img[r * px : (r + 1) * px, c * px : (c + 1) * px] = self.box
        for (r, c), alive in zip(self.items, np.asarray(items_alive).reshape(-1)):
            if alive and 0 <= r < s and 0 <= c < s:
                img[r * px : (r + 1) * px, c * px : (c + 1) * px][self.diamond] = ITEM_COLOUR
        for i, (x, y, h) in enumerate(np.asarray(poses, np.float64).reshape(-1, 3)):
            if np.isfinite(x) and np.isfinite(y):
                x0, x1 = max(0, int(np.floor((x - 0.3) * px)) - 1), min(side, int(np.ceil((x + 0.3) * px)) + 1)
                y0, y1 = max(0, int(np.floor((y - 0.3) * px)) - 1), min(side, int(np.ceil((y + 0.3) * px)) + 1)
                if x0 < x1 and y0 < y1:
                    xx = (np.arange(x0, x1) + 0.5) / px
                    yy = (np.arange(y0, y1) + 0.5) / px
                    disk = (xx[None, :] - x) ** 2 + (yy[:, None] - y) ** 2 < 0.3**2
                    img[y0:y1, x0:x1][disk] = self.colours[i]
            with np.errstate(invalid="ignore"):
                hx = np.clip(((x + self.heading_t * np.cos(h)) * px).astype(int), 0, side - 1)
                hy = np.clip(((y + self.heading_t * np.sin(h)) * px).astype(int), 0, side - 1)
            img[hy, hx] = 255
        return img
