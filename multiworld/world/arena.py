"""Seeded procedural arenas: walls of several materials, patterned floor, boxes, items, agents."""

from __future__ import annotations

import dataclasses

import numpy as np

from multiworld.world.state import FLOOR, MAX_AGENTS, NUM_FLOOR_PATTERNS, NUM_WALL_MATERIALS, WorldState


@dataclasses.dataclass(frozen=True)
class ArenaConfig:
    """Everything that shapes a map and its physics. Scenarios are presets of this."""

    size: int = 16  # cells per side, border walls included
    num_agents: int = 4
    num_boxes: int = 3
    num_items: int = 6
    num_goals: int = 0
    wall_segments: int = 7  # interior wall segments (each 2-4 cells long)
    move_speed: float = 0.25  # cells per forward/back/strafe step
    turn_degrees: float = 15.0
    agent_radius: float = 0.2
    pickup_radius: float = 0.45

    def __post_init__(self) -> None:
        if not 1 <= self.num_agents <= MAX_AGENTS:
            raise ValueError(f"num_agents must be in [1, {MAX_AGENTS}], got {self.num_agents}")
        if self.size < 6:
            raise ValueError(f"size must be >= 6, got {self.size}")
        if min(self.num_boxes, self.num_items, self.num_goals, self.wall_segments) < 0:
            raise ValueError("counts of boxes, items, goals and wall segments must be >= 0")
        free_needed = self.num_agents + self.num_boxes + self.num_items + self.num_goals
        if free_needed > (self.size - 2) ** 2 // 2:
            raise ValueError(f"{free_needed} agents, boxes, items and goals do not fit a {self.size}x{self.size} map")
        if not 0 < self.agent_radius < 0.5:
            raise ValueError(f"agent_radius must be in (0, 0.5), got {self.agent_radius}")


def generate(cfg: ArenaConfig, seeds: list[int] | np.ndarray) -> WorldState:
    """One world per seed. The same seed gives the same world on every machine."""
    return WorldState.concat([_generate_one(cfg, int(s)) for s in seeds])


def _generate_one(cfg: ArenaConfig, seed: int) -> WorldState:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.Generator(np.random.PCG64(seed))
    s = cfg.size
    walls = np.zeros((s, s), np.uint8)
    # Border walls: one material per side so the arena's directions are recognisable.
    side = rng.permutation(NUM_WALL_MATERIALS) + 1
    walls[0, :], walls[-1, :], walls[:, 0], walls[:, -1] = side[0], side[1], side[2], side[3]
    for _ in range(cfg.wall_segments):
        length = int(rng.integers(2, 5))
        r, c = (int(v) for v in rng.integers(2, s - 2, size=2))
        dr, dc = ((0, 1), (1, 0))[int(rng.integers(2))]
        material = int(rng.integers(1, NUM_WALL_MATERIALS + 1))
        for k in range(length):
            rr, cc = r + dr * k, c + dc * k
            if 1 < rr < s - 2 and 1 < cc < s - 2:
                walls[rr, cc] = material
    _fill_unreachable(walls)

    # Floor patterns from a Voronoi partition: large recognisable regions.
    centres = rng.integers(1, s - 1, size=(NUM_FLOOR_PATTERNS, 2))
    rows, cols = np.mgrid[0:s, 0:s]
    d2 = (rows[None] - centres[:, 0, None, None]) ** 2 + (cols[None] - centres[:, 1, None, None]) ** 2
    floor = np.argmin(d2, axis=0).astype(np.uint8)

    # Boxes and goals keep off the cells next to the border so boxes can always be pushed.
    free = np.argwhere(walls == FLOOR)
    inner = free[(free.min(axis=1) >= 2) & (free.max(axis=1) <= s - 3)]
    pick = rng.choice(len(inner), size=cfg.num_boxes + cfg.num_goals, replace=False)
    boxes, goal_cells = inner[pick[: cfg.num_boxes]], inner[pick[cfg.num_boxes :]]
    taken = {tuple(c) for c in inner[pick]}
    rest = np.array([f for f in free if tuple(f) not in taken])
    pick = rng.choice(len(rest), size=cfg.num_items + cfg.num_agents, replace=False)
    items, agent_cells = rest[pick[: cfg.num_items]], rest[pick[cfg.num_items :]]
    goals = np.zeros((s, s), bool)
    goals[goal_cells[:, 0], goal_cells[:, 1]] = True

    headings = rng.uniform(-np.pi, np.pi, size=cfg.num_agents)
    poses = np.stack([agent_cells[:, 1] + 0.5, agent_cells[:, 0] + 0.5, headings], axis=1)
    colors = rng.permutation(MAX_AGENTS)[: cfg.num_agents]
    return WorldState(
        walls=walls[None],
        floor=floor[None],
        goals=goals[None],
        boxes=np.asarray(boxes, np.int16).reshape(1, cfg.num_boxes, 2),
        items=np.asarray(items, np.int16).reshape(1, cfg.num_items, 2),
        items_alive=np.ones((1, cfg.num_items), bool),
        poses=poses.astype(np.float32)[None],
        colors=colors.astype(np.uint8)[None],
        step=np.zeros(1, np.int64),
    )


def _fill_unreachable(walls: np.ndarray) -> None:
    """Turn floor cells that the largest open region cannot reach into walls (in place)."""
    s = walls.shape[0]
    label = np.full((s, s), -1, np.int32)
    sizes = []
    for start in map(tuple, np.argwhere(walls == FLOOR)):
        if label[start] >= 0:
            continue
        region, stack = len(sizes), [start]
        label[start] = region
        count = 0
        while stack:
            r, c = stack.pop()
            count += 1
            for rr, cc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if walls[rr, cc] == FLOOR and label[rr, cc] < 0:
                    label[rr, cc] = region
                    stack.append((rr, cc))
        sizes.append(count)
    keep = int(np.argmax(sizes))
    walls[(walls == FLOOR) & (label != keep)] = 1
