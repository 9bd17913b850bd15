"""The world views of :mod:`multiworld.games.vizdoom` (a mixin of ``VizDoomParallelEnv``).

What the env shows of the whole world beyond each agent's observation, all in the grid's cells:
every player's depth (``depth()``, from ViZDoom's 8-bit depth buffer, calibrated on walls) and
pose (``poses()``), the world as the store's symbolic state (``world_state()``), the egocentric
camera (``camera()``, the recorder contract's), and the top-down map (``state()``) and render
frame (``frame()``). The camera's constants: ``VIEW_HEIGHT`` and ``DEPTH_UNITS_PER_LEVEL_480``.
"""

from __future__ import annotations

import math

import numpy as np

VIEW_HEIGHT = 41.0  # Doom units from the floor to the player's eye
# ViZDoom's depth buffer is 8 bits, an affine function of view-axis depth whose slope and offset
# depend on the surface kind (walls, floors, sprites) and scale with 480 / screen height. On walls
# (most of a view) a level is this many Doom units at 480 rows; measured at 160x120 against ray
# casts through the map's lines: 7.25 units per level, within one level.
DEPTH_UNITS_PER_LEVEL_480 = 7.25 * 120 / 480


# The teleport fog a player spawns in fills its view for about 52 tics (measured on cig_map01
# at 4 tics per step: cleared by the 14th step after a reset in every view, unless another
# player's fog is in sight). Reset waits SPAWN_FOG_TICS, then while a view shows the fog.
SPAWN_FOG_TICS = 56
SPAWN_FOG_MAX_TICS = 160
FOG_VISIBLE = 0.02  # fraction of a view in the fog's greens above which it counts as fogged


def fog_fraction(rgb: np.ndarray) -> float:
    """Fraction of the pixels of one uint8 ``(H, W, 3)`` view in the teleport fog's bright greens
    (cig_map01's walls and floors are browns and greys)."""
    r, g, b = (rgb[..., i].astype(np.int16) for i in range(3))
    return float(((g > 120) & (g > r + 30) & (g > b + 30)).mean())


class WorldViews:
    """Views of the whole world, read from the env's last replies (``_obs``), map and camera settings."""

    def depth(self) -> np.ndarray:
        """(N, H, W) float32 view-axis depth in cells from ViZDoom's depth buffer (walls-calibrated)."""
        if self._obs is None:
            raise RuntimeError("call reset() first")
        return np.stack([o["depth"] for o in self._obs]).astype(np.float32) * np.float32(self.depth_scale)

    def poses(self) -> np.ndarray:
        """(N, 3) float32 poses (x, y, heading) in cells."""
        if self._obs is None:
            raise RuntimeError("call reset() first")
        return np.stack([o["pose"] for o in self._obs])

    def world_state(self):
        """The world as the store's symbolic state (one world): the map's solid cells and the poses."""
        from multiworld.world.state import WorldState

        if self._obs is None:
            raise RuntimeError("call reset() first")
        n, g = len(self.possible_agents), self.grid_size
        return WorldState(
            walls=self._walls[None].copy(),
            floor=np.zeros((1, g, g), np.uint8),
            goals=np.zeros((1, g, g), bool),
            boxes=np.zeros((1, 0, 2), np.int16),
            items=np.zeros((1, 0, 2), np.int16),
            items_alive=np.zeros((1, 0), bool),
            poses=self.poses()[None],
            colors=np.arange(n, dtype=np.uint8)[None],
            step=np.array([self._cycles], np.int64),
        )

    def camera(self) -> dict:
        """The egocentric camera in the grid's units (the recorder contract's ``camera``)."""
        h, w = self.height, self.width
        if self.frame_size is None:
            fov_x, fov_y = 90.0, math.degrees(2 * math.atan(0.5 / 0.8))
        else:
            fov_x = fov_y = math.degrees(2 * math.atan((self.crop_width / 2) / (self.native_shape[1] / 2)))
        return {
            "height": h,
            "width": w,
            "fov_degrees": fov_x,
            "fov_vertical_degrees": fov_y,
            "eye_height": VIEW_HEIGHT / self.cell_size,
            "near": 1.0 / self.cell_size,
            "far": 255 * self.depth_scale,
        }

    def state(self) -> np.ndarray:
        """Top-down map: the map's solid cells and every agent, uint8 ``(8 G, 8 G, 3)``."""
        from multiworld.world.topdown import top_down

        return top_down(self.world_state())[0]

    def frame(self) -> np.ndarray:
        from multiworld.world.topdown import mosaic

        if self._obs is None:
            raise RuntimeError("call reset() before render()")
        return mosaic(np.stack([o["rgb"] for o in self._obs]), self.state())
