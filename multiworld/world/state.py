"""The oracle arena's symbolic state: batched numpy arrays, one leading axis per world.

Everything the dynamics and the renderer need lives in :class:`WorldState`; there is no
hidden state elsewhere, so a state can be copied, stored, compared and restored exactly.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

# Cell codes of ``WorldState.walls``: 0 is open floor, 1..NUM_WALL_MATERIALS are wall materials.
FLOOR = 0
NUM_WALL_MATERIALS = 4
NUM_FLOOR_PATTERNS = 4
MAX_AGENTS = 16


def agent_names(n: int) -> list[str]:
    """``["agent_0", ..., "agent_{n-1}"]``: the names of a world's agents in every layer."""
    return [f"agent_{i}" for i in range(n)]


class Action(enum.IntEnum):
    """The 8 discrete actions every agent chooses from at every step."""

    NOOP = 0
    FORWARD = 1
    BACK = 2
    TURN_LEFT = 3
    TURN_RIGHT = 4
    STRAFE_LEFT = 5
    STRAFE_RIGHT = 6
    INTERACT = 7


NUM_ACTIONS = len(Action)


@dataclasses.dataclass
class WorldState:
    """Symbolic state of B worlds with N agents, M boxes and K items each.

    Coordinates: x to the east, y to the south, in cell units; cell (i, j) covers
    ``x in [j, j+1), y in [i, i+1)``. Heading 0 looks along +x, pi/2 along +y.

    walls:       (B, S, S) uint8   0 floor, 1..4 wall material
    floor:       (B, S, S) uint8   floor pattern id, 0..3 (makes places recognisable)
    goals:       (B, S, S) bool    goal tiles (push scenario)
    boxes:       (B, M, 2) int16   box cells as (row, col)
    items:       (B, K, 2) int16   item cells as (row, col)
    items_alive: (B, K)    bool    False once picked up
    poses:       (B, N, 3) float32 agent (x, y, heading in [-pi, pi))
    colors:      (B, N)    uint8   agent body colour id, distinct within a world; it travels
                                   with the agent, so permuting agents permutes everything
    step:        (B,)      int64   steps taken since reset
    """

    walls: np.ndarray
    floor: np.ndarray
    goals: np.ndarray
    boxes: np.ndarray
    items: np.ndarray
    items_alive: np.ndarray
    poses: np.ndarray
    colors: np.ndarray
    step: np.ndarray

    @property
    def num_worlds(self) -> int:
        return self.walls.shape[0]

    @property
    def size(self) -> int:
        return self.walls.shape[1]

    @property
    def num_agents(self) -> int:
        return self.poses.shape[1]

    def copy(self) -> WorldState:
        return WorldState(**{f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)})

    def arrays(self) -> dict[str, np.ndarray]:
        """Field name -> array, in declaration order (the form the store records)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> WorldState:
        missing = {f.name for f in dataclasses.fields(cls)} - set(arrays)
        if missing:
            raise ValueError(f"world state is missing arrays: {sorted(missing)}")
        return cls(**{f.name: np.asarray(arrays[f.name], dtype=FIELD_DTYPES[f.name]) for f in dataclasses.fields(cls)})

    def select(self, index) -> WorldState:
        """Worlds ``index`` (an int keeps the batch axis with length 1, or a slice/array)."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1)
        return WorldState(**{k: v[index].copy() for k, v in self.arrays().items()})

    def replace_worlds(self, mask: np.ndarray, other: WorldState) -> WorldState:
        """A copy with the worlds where ``mask`` (B,) is True taken, in order, from ``other``."""
        mask = np.asarray(mask, bool)
        if mask.shape != (self.num_worlds,) or other.num_worlds != int(mask.sum()):
            raise ValueError(
                f"replace_worlds: mask of shape {mask.shape} selecting {int(mask.sum())} worlds "
                f"does not fit {self.num_worlds} worlds and {other.num_worlds} replacements"
            )
        out = self.copy()
        for name, arr in out.arrays().items():
            arr[mask] = getattr(other, name)
        return out

    def permute_agents(self, perm: np.ndarray) -> WorldState:
        """The same worlds with agents reordered: new agent i is old agent ``perm[i]``."""
        out = self.copy()
        out.poses = self.poses[:, perm].copy()
        out.colors = self.colors[:, perm].copy()
        return out

    def equals(self, other: WorldState) -> bool:
        return all(np.array_equal(a, b) for a, b in zip(self.arrays().values(), other.arrays().values(), strict=True))

    @staticmethod
    def concat(states: list[WorldState]) -> WorldState:
        return WorldState(
            **{f.name: np.concatenate([getattr(s, f.name) for s in states]) for f in dataclasses.fields(WorldState)}
        )


FIELD_DTYPES: dict[str, type] = {
    "walls": np.uint8,
    "floor": np.uint8,
    "goals": np.bool_,
    "boxes": np.int16,
    "items": np.int16,
    "items_alive": np.bool_,
    "poses": np.float32,
    "colors": np.uint8,
    "step": np.int64,
}
