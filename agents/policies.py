"""Policies that act on the batched symbolic state: ``act(state: WorldState) -> (B, N) int64``.

- :class:`RandomPolicy`: uniform random actions.
- :class:`ScriptedPolicy`: purposeful behaviour that makes pickups, pushes and agents seeing each
  other frequent (for data collection and demos): each agent pursues an *item* (walks the
  shortest grid path to the nearest alive item) or a *box* (walks to a cell beside a box from
  which the push is possible, faces the box and INTERACTs; in scenarios with goals it prefers
  pushes toward free goal tiles), switching between the two now and then; sometimes it turns
  to look at the nearest other agent for a few steps; and it takes a random action with
  probability ``epsilon`` (which also gets it unstuck).

Both are deterministic for a seed (given the same sequence of states). Use :func:`make_policy`.
"""

from __future__ import annotations

import collections
import math

import numpy as np

from multiworld.world.state import FLOOR, NUM_ACTIONS, Action, WorldState

_DIRS = ((0, 1), (1, 0), (0, -1), (-1, 0))  # (d_row, d_col): east, south, west, north
_ITEM, _BOX = 0, 1


class RandomPolicy:
    """Uniformly random actions."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def act(self, state: WorldState) -> np.ndarray:
        return self.rng.integers(0, NUM_ACTIONS, size=(state.num_worlds, state.num_agents), dtype=np.int64)


class ScriptedPolicy:
    """Goal-directed agents: pick up items, push boxes, glance at each other (see module docstring).

    epsilon:     probability of a uniformly random action
    look_prob:   per-step probability of starting to look at the nearest other agent
    look_steps:  how many steps a look lasts
    box_prob:    probability of choosing the box task when items are also available
    mode_steps:  a task is kept this many steps before it is chosen again
    """

    def __init__(
        self,
        seed: int = 0,
        epsilon: float = 0.1,
        look_prob: float = 0.03,
        look_steps: int = 8,
        box_prob: float = 0.35,
        mode_steps: int = 40,
    ) -> None:
        self.seed = seed
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.epsilon, self.look_prob, self.look_steps = epsilon, look_prob, look_steps
        self.box_prob, self.mode_steps = box_prob, mode_steps
        self._shape: tuple[int, int] | None = None

    def _ensure(self, b: int, n: int) -> None:
        if self._shape != (b, n):
            self._shape = (b, n)
            self.mode = np.full((b, n), _ITEM, np.int64)
            self.mode_left = np.zeros((b, n), np.int64)
            self.look_left = np.zeros((b, n), np.int64)

    def act(self, state: WorldState) -> np.ndarray:
        bsz, n = state.num_worlds, state.num_agents
        self._ensure(bsz, n)
        # A fixed set of draws per call keeps the stream aligned whatever the agents do.
        u_eps = self.rng.random((bsz, n))
        u_look = self.rng.random((bsz, n))
        u_mode = self.rng.random((bsz, n))
        random_actions = self.rng.integers(0, NUM_ACTIONS, size=(bsz, n), dtype=np.int64)
        actions = np.zeros((bsz, n), np.int64)
        for b in range(bsz):
            world = _World(state, b)
            for i in range(n):
                actions[b, i] = self._act_one(world, b, i, u_look[b, i], u_mode[b, i])
        return np.where(u_eps < self.epsilon, random_actions, actions)

    def _act_one(self, world: _World, b: int, i: int, u_look: float, u_mode: float) -> int:
        x, y, heading = (float(v) for v in world.poses[i])
        if self.look_left[b, i] > 0 or (u_look < self.look_prob and world.num_agents > 1):
            self.look_left[b, i] = (self.look_left[b, i] or self.look_steps) - 1
            others = np.delete(world.poses[:, :2], i, axis=0)
            j = int(np.argmin(np.hypot(others[:, 0] - x, others[:, 1] - y)))
            diff = _angle_diff(math.atan2(others[j, 1] - y, others[j, 0] - x), heading)
            return _turn_toward(diff) if abs(diff) > math.radians(10) else int(Action.NOOP)

        self.mode_left[b, i] -= 1
        if self.mode_left[b, i] <= 0:
            self.mode[b, i] = _BOX if u_mode < self.box_prob else _ITEM
            self.mode_left[b, i] = self.mode_steps
        has_items, has_boxes = world.items_alive.any(), len(world.boxes) > 0
        mode = self.mode[b, i]
        if mode == _ITEM and not has_items:
            mode = _BOX
        if mode == _BOX and not has_boxes:
            mode = _ITEM

        start = (math.floor(y), math.floor(x))
        dist, parent = world.bfs(start)
        if mode == _ITEM and has_items:
            cells = [tuple(int(v) for v in c) for c, alive in zip(world.items, world.items_alive) if alive]
            reachable = [c for c in cells if c in dist]
            if reachable:
                target = min(reachable, key=lambda c: (dist[c], c))
                return _steer(x, y, heading, _waypoint(start, target, parent))
        if mode == _BOX or not has_items:
            best = world.best_push(dist)
            if best is not None:
                approach, (dr, dc) = best
                if approach == start:
                    diff = _angle_diff(math.atan2(dr, dc), heading)
                    return _turn_toward(diff) if abs(diff) > math.radians(20) else int(Action.INTERACT)
                return _steer(x, y, heading, _waypoint(start, approach, parent))
        return int(Action.FORWARD) if u_mode < 0.7 else int(Action.TURN_LEFT)


class _World:
    """One world's arrays and grid helpers for the scripted policy."""

    def __init__(self, state: WorldState, b: int) -> None:
        self.poses = state.poses[b]
        self.num_agents = state.num_agents
        self.boxes = [tuple(int(v) for v in c) for c in state.boxes[b]]
        self.items = state.items[b]
        self.items_alive = state.items_alive[b]
        self.walls = state.walls[b]
        self.goals = state.goals[b]
        self.size = state.size
        self.blocked = self.walls != FLOOR
        for r, c in self.boxes:
            self.blocked[r, c] = True
        box_set = set(self.boxes)
        self.free_goals = [
            tuple(int(v) for v in g) for g in np.argwhere(self.goals) if tuple(int(v) for v in g) not in box_set
        ]

    def bfs(self, start: tuple[int, int]) -> tuple[dict, dict]:
        """Grid distances and parents from ``start`` over open cells (4-neighbour moves)."""
        dist, parent = {start: 0}, {start: None}
        queue = collections.deque([start])
        blocked, s = self.blocked, self.size
        while queue:
            r, c = cell = queue.popleft()
            for dr, dc in _DIRS:
                nxt = (r + dr, c + dc)
                if 0 <= nxt[0] < s and 0 <= nxt[1] < s and not blocked[nxt] and nxt not in dist:
                    dist[nxt] = dist[cell] + 1
                    parent[nxt] = cell
                    queue.append(nxt)
        return dist, parent

    def _goal_distance(self, cell: tuple[int, int]) -> int:
        return min(abs(cell[0] - g[0]) + abs(cell[1] - g[1]) for g in self.free_goals)

    def best_push(self, dist: dict) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """(approach cell, direction) of the best reachable push, or None."""
        goal_cells = set(zip(*np.nonzero(self.goals)))
        items = {tuple(int(v) for v in c) for c, alive in zip(self.items, self.items_alive) if alive}
        candidates = [bx for bx in self.boxes if bx not in goal_cells] or self.boxes
        best, best_score = None, math.inf
        for r, c in candidates:
            for dr, dc in _DIRS:
                approach, dest = (r - dr, c - dc), (r + dr, c + dc)
                if approach not in dist or not (0 <= dest[0] < self.size and 0 <= dest[1] < self.size):
                    continue
                if self.blocked[dest] or dest in items:
                    continue
                score = float(dist[approach])
                if self.free_goals:
                    score += 3.0 * (self._goal_distance(dest) - self._goal_distance((r, c)))
                if score < best_score:
                    best, best_score = (approach, (dr, dc)), score
        return best


def _waypoint(start: tuple[int, int], target: tuple[int, int], parent: dict) -> tuple[float, float]:
    """(x, y) to head for: the centre of the first cell after ``start`` on the path to ``target``."""
    cell = target
    while parent[cell] is not None and parent[cell] != start:
        cell = parent[cell]
    return cell[1] + 0.5, cell[0] + 0.5


def _angle_diff(target: float, heading: float) -> float:
    return (target - heading + math.pi) % (2 * math.pi) - math.pi


def _turn_toward(diff: float) -> int:
    # Heading grows clockwise on the map (y points south): TURN_RIGHT adds to it.
    return int(Action.TURN_RIGHT) if diff > 0 else int(Action.TURN_LEFT)


def _steer(x: float, y: float, heading: float, point: tuple[float, float]) -> int:
    diff = _angle_diff(math.atan2(point[1] - y, point[0] - x), heading)
    return _turn_toward(diff) if abs(diff) > math.radians(25) else int(Action.FORWARD)


class ForwardPolicy:
    """Mostly forward: an agent that walks until something stops it, turning now and then (the
    dynamics benchmark's probe of walls, boxes, the map's edge and other agents)."""

    # noop, forward, back, turn left, turn right, strafe left, strafe right, interact
    PROBABILITIES = (0.02, 0.62, 0.04, 0.1, 0.1, 0.04, 0.04, 0.04)

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def act(self, state: WorldState) -> np.ndarray:
        shape = (state.num_worlds, state.num_agents)
        return self.rng.choice(NUM_ACTIONS, size=shape, p=self.PROBABILITIES).astype(np.int64)


POLICIES = {"random": RandomPolicy, "scripted": ScriptedPolicy, "forward": ForwardPolicy}


def make_policy(name: str, seed: int = 0, **kwargs) -> RandomPolicy | ScriptedPolicy | ForwardPolicy:
    """``"random"``, ``"scripted"`` or ``"forward"`` policy with ``seed``; ValueError for another name."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; valid policies: {sorted(POLICIES)}") from None
    return cls(seed=seed, **kwargs)
