"""Hand-made world states for the arena, render and benchmark tests."""

from __future__ import annotations

import numpy as np

from multiworld.world.state import WorldState


def open_room(size: int = 8, poses=((2.5, 2.5, 0.0),), boxes=(), items=()) -> WorldState:
    """A walled empty room with the given agents, boxes (row, col) and items (row, col)."""
    walls = np.zeros((1, size, size), np.uint8)
    walls[0, 0, :] = walls[0, -1, :] = walls[0, :, 0] = walls[0, :, -1] = 1
    n = len(poses)
    return WorldState(
        walls=walls,
        floor=np.zeros((1, size, size), np.uint8),
        goals=np.zeros((1, size, size), bool),
        boxes=np.array(boxes, np.int16).reshape(1, len(boxes), 2),
        items=np.array(items, np.int16).reshape(1, len(items), 2),
        items_alive=np.ones((1, len(items)), bool),
        poses=np.array(poses, np.float32).reshape(1, n, 3),
        colors=np.arange(n, dtype=np.uint8)[None],
        step=np.zeros(1, np.int64),
    )
