"""Exact simultaneous dynamics of the arena, vectorized over worlds and agents.

Every agent's action applies at once. Conflicts are settled by symmetric rules that never
look at an agent's index, so permuting the agents permutes the outcome and nothing else:
- two agents whose moves would make them overlap both stay where they were;
- two pushes of the same box, or of two boxes into the same cell, are all cancelled;
- an item within reach of two agents at exactly the same distance stays where it is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from multiworld.world.arena import ArenaConfig
from multiworld.world.state import FLOOR, NUM_ACTIONS, Action, WorldState

# Cardinal directions as (d_row, d_col) for heading quadrants 0 (east), 1 (south), 2 (west), 3 (north).
CARDINAL = np.array([[0, 1], [1, 0], [0, -1], [-1, 0]], np.int16)


@dataclasses.dataclass
class StepEvents:
    """What happened during one step, per world and agent (-1 where nothing happened).

    pushed:    (B, N)    int16 index of the box the agent pushed
    push_from: (B, N, 2) int16 the box's cell before the push
    push_to:   (B, N, 2) int16 the box's cell after the push
    picked:    (B, N)    int16 index of the item the agent picked up
    """

    pushed: np.ndarray
    push_from: np.ndarray
    push_to: np.ndarray
    picked: np.ndarray

    def as_dicts(self, world: int, agent_names: list[str]) -> list[dict]:
        """The events of one world as small JSON/msgpack-friendly dicts."""
        out = []
        for n, name in enumerate(agent_names):
            if self.pushed[world, n] >= 0:
                out.append(
                    {
                        "type": "push",
                        "agent": name,
                        "box": int(self.pushed[world, n]),
                        "from": self.push_from[world, n].tolist(),
                        "to": self.push_to[world, n].tolist(),
                    }
                )
            if self.picked[world, n] >= 0:
                out.append({"type": "pickup", "agent": name, "item": int(self.picked[world, n])})
        return out


def validate_actions(actions: np.ndarray, num_worlds: int, num_agents: int) -> np.ndarray:
    """Check shape, dtype and range; return the actions as int64 (B, N). Raises ValueError."""
    a = np.asarray(actions)
    if a.shape != (num_worlds, num_agents):
        raise ValueError(f"actions must have shape {(num_worlds, num_agents)}, got {a.shape}")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"actions must be integers in [0, {NUM_ACTIONS}), got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= NUM_ACTIONS):
        bad = a[(a < 0) | (a >= NUM_ACTIONS)][0]
        raise ValueError(f"action {int(bad)} out of range: actions must be in [0, {NUM_ACTIONS})")
    return a.astype(np.int64)


def step(state: WorldState, actions: np.ndarray, cfg: ArenaConfig) -> tuple[WorldState, StepEvents]:
    """Advance every world by one step of joint actions ``(B, N)``; ``state`` is not modified."""
    a = validate_actions(actions, state.num_worlds, state.num_agents)
    new = state.copy()
    _move_agents(new, a, cfg)
    events = _push_boxes(new, a, cfg)
    events.picked = _pick_items(new, cfg)
    new.step += 1
    return new, events


def solid_cells(state: WorldState) -> np.ndarray:
    """(B, S, S) bool: cells an agent cannot enter (walls and boxes)."""
    solid = state.walls != FLOOR
    b = np.repeat(np.arange(state.num_worlds), state.boxes.shape[1])
    solid[b, state.boxes[..., 0].ravel(), state.boxes[..., 1].ravel()] = True
    return solid


def square_free(solid: np.ndarray, xy: np.ndarray, r: float) -> np.ndarray:
    """(B, N) bool: the agent's bounding square at ``xy (B, N, 2)`` touches no solid cell.

    Positions stay inside the border walls (moves are shorter than a cell), so the corner
    cells are always valid indices.
    """
    corners = np.floor(xy[..., None, :] + np.array([[-r], [r]])).astype(np.int64)  # (B, N, 2, 2) as (x, y)
    b = np.arange(solid.shape[0])[:, None, None, None]
    hit = solid[b, corners[..., None, :, 1], corners[..., :, None, 0]]  # (B, N, 2, 2) corner cells
    return ~hit.any(axis=(2, 3))


def agents_overlap(offset: np.ndarray, r: float) -> np.ndarray:
    """``(...)`` bool: two agents ``offset (..., 2)`` apart overlap (their squares of half-side ``r``)."""
    return np.all(np.abs(offset) < 2 * r, axis=-1)


def intended_move(poses: np.ndarray, a: np.ndarray, cfg: ArenaConfig) -> tuple[np.ndarray, np.ndarray]:
    """The new heading (B, N) and the move (B, N, 2) each agent's action asks for, before
    anything stops it (float64). Training reads it as the teacher's free move."""
    poses = np.asarray(poses, np.float64)
    turn = (a == Action.TURN_RIGHT).astype(np.float64) - (a == Action.TURN_LEFT)
    heading = np.mod(poses[..., 2] + turn * np.deg2rad(cfg.turn_degrees) + np.pi, 2 * np.pi) - np.pi
    fwd = (a == Action.FORWARD).astype(np.float64) - (a == Action.BACK)
    side = (a == Action.STRAFE_RIGHT).astype(np.float64) - (a == Action.STRAFE_LEFT)
    cos, sin = np.cos(heading), np.sin(heading)
    # Forward is (cos, sin); right is (-sin, cos) because y points south.
    return heading, cfg.move_speed * np.stack([fwd * cos - side * sin, fwd * sin + side * cos], axis=-1)


def _move_agents(state: WorldState, a: np.ndarray, cfg: ArenaConfig) -> None:
    poses = state.poses.astype(np.float64)
    heading, delta = intended_move(poses, a, cfg)

    old = poses[..., :2]
    solid = solid_cells(state)
    r = cfg.agent_radius
    # Against walls and boxes each agent is on its own: try the full move, then slide along x or y.
    target = old.copy()
    for mask in (np.array([1.0, 1.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0])):
        cand = old + delta * mask
        ok = square_free(solid, cand, r) & np.all(target == old, axis=-1) & np.any(delta * mask != 0, axis=-1)
        target = np.where(ok[..., None], cand, target)

    # Against each other: agents whose targets would overlap stay put; repeat until stable.
    # Start positions never overlap, so this converges in at most N rounds.
    n = state.num_agents
    off_diag = ~np.eye(n, dtype=bool)
    for _ in range(n):
        clash = agents_overlap(target[:, :, None, :] - target[:, None, :, :], r) & off_diag
        moved = np.any(target != old, axis=-1)
        revert = np.any(clash, axis=2) & moved
        if not revert.any():
            break
        target = np.where(revert[..., None], old, target)

    state.poses = np.concatenate([target, heading[..., None]], axis=-1).astype(np.float32)


def _heading_quadrant(heading: np.ndarray) -> np.ndarray:
    return np.mod(np.round(heading / (np.pi / 2)).astype(np.int64), 4)


def _agent_cells(poses: np.ndarray) -> np.ndarray:
    """(B, N, 2) int (row, col) of each agent's centre."""
    return np.stack([np.floor(poses[..., 1]), np.floor(poses[..., 0])], axis=-1).astype(np.int64)


def cells_ahead(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For agents at ``poses (B, P, 3)``: the (row, col) cell ahead of each (the push rule's front
    cell, by the heading's quarter) and the cell beyond it, ``(B, P, 2)`` each."""
    direction = CARDINAL[_heading_quadrant(poses[..., 2])]
    front = _agent_cells(poses) + direction
    return front, front + direction


def _push_open(state: WorldState, poses: np.ndarray, cfg: ArenaConfig):
    """For agents at ``poses (B, P, 3)``: the box ahead (B, P) (valid where ``hit``), whether one is
    ahead, its destination cell (B, P, 2), and whether that cell is open (floor, no box, no alive
    item, no agent of ``state`` overlapping it): the push rule without the action and without
    two pushers contending."""
    bsz = poses.shape[0]
    front, dest = cells_ahead(poses)
    hit = np.all(state.boxes[:, None, :, :] == front[:, :, None, :], axis=-1)  # (B, P, M)
    box = np.argmax(hit, axis=-1)  # (B, P), valid where hit
    s = state.size
    dest_c = np.clip(dest, 0, s - 1)
    bidx = np.arange(bsz)[:, None]

    open_floor = state.walls[bidx, dest_c[..., 0], dest_c[..., 1]] == FLOOR
    box_there = np.any(np.all(state.boxes[:, None, :, :] == dest[:, :, None, :], axis=-1), axis=-1)
    item_cells = np.where(state.items_alive[..., None], state.items, -1)
    item_there = np.any(np.all(item_cells[:, None, :, :] == dest[:, :, None, :], axis=-1), axis=-1)
    # Any agent's square overlapping the destination cell blocks it.
    overlap = overlaps_cell(state.poses[..., :2], dest, cfg.agent_radius)
    is_open = open_floor & ~box_there & ~item_there & ~overlap.any(axis=-1)
    return box, hit.any(axis=-1), dest, is_open


def overlaps_cell(xy: np.ndarray, cell: np.ndarray, r: float) -> np.ndarray:
    """``(B, P, N)``: whether the square of half-side ``r`` of each agent at ``xy (B, N, 2)`` overlaps
    each (row, col) ``cell (B, P, 2)`` (the push rule's test of a box's destination)."""
    lo, hi = xy - r, xy + r  # (B, N, 2) as (x, y)
    cell_x, cell_y = cell[..., 1][:, :, None], cell[..., 0][:, :, None]  # (B, P, 1)
    return (
        (lo[:, None, :, 0] < cell_x + 1)
        & (hi[:, None, :, 0] > cell_x)
        & (lo[:, None, :, 1] < cell_y + 1)
        & (hi[:, None, :, 1] > cell_y)
    )


def agent_blocks_push(poses: np.ndarray, other_xy: np.ndarray, cfg: ArenaConfig) -> np.ndarray:
    """``(P,)`` bool: an agent at ``other_xy (P, 2)`` stands in the cell a push from ``poses (P, 3)``
    would move the box to (the push rule's destination), so that push does not happen."""
    _, dest = cells_ahead(np.asarray(poses, np.float64)[:, None])  # (P, 1, 2): one pusher per row
    return overlaps_cell(np.asarray(other_xy, np.float64)[:, None], dest, cfg.agent_radius)[:, 0, 0]


def push_possible(state: WorldState, poses: np.ndarray, cfg: ArenaConfig) -> np.ndarray:
    """``(B, P)`` bool: an agent at ``poses (B, P, 3)`` that interacts would push a box (nobody
    else pushing the same box or to the same cell)."""
    if state.boxes.shape[1] == 0:
        return np.zeros(poses.shape[:2], bool)
    _, ahead, _, is_open = _push_open(state, np.asarray(poses, np.float64), cfg)
    return ahead & is_open


def push_worth_at(state: WorldState, poses: np.ndarray) -> np.ndarray:
    """``(B, P)`` int in {-1, 0, 1}: what a push from ``poses (B, P, 3)`` would do to the goals,
    whether or not a box is ahead (``push_possible`` says that): +1 when the cell ahead is not a
    goal and the cell beyond it is, -1 the other way round (a box pushed off a goal), else 0."""
    poses = np.asarray(poses, np.float64)
    front, dest = cells_ahead(poses)
    s = state.size
    bidx = np.arange(poses.shape[0])[:, None]

    def goal(cell: np.ndarray) -> np.ndarray:
        inside = ((cell >= 0) & (cell < s)).all(-1)
        c = np.clip(cell, 0, s - 1)
        return (state.goals[bidx, c[..., 0], c[..., 1]] & inside).astype(np.int64)

    return goal(dest) - goal(front)


def _push_boxes(state: WorldState, a: np.ndarray, cfg: ArenaConfig) -> StepEvents:
    bsz, n = a.shape
    m = state.boxes.shape[1]
    pushed = np.full((bsz, n), -1, np.int16)
    push_from = np.full((bsz, n, 2), -1, np.int16)
    push_to = np.full((bsz, n, 2), -1, np.int16)
    events = StepEvents(pushed, push_from, push_to, np.full((bsz, n), -1, np.int16))
    if m == 0 or not (a == Action.INTERACT).any():
        return events

    box, ahead, dest, is_open = _push_open(state, state.poses, cfg)
    wants = (a == Action.INTERACT) & ahead
    ok = wants & is_open

    off_diag = ~np.eye(n, dtype=bool)
    same_box = (box[:, :, None] == box[:, None, :]) & wants[:, :, None] & wants[:, None, :] & off_diag
    same_dest = np.all(dest[:, :, None] == dest[:, None, :], axis=-1) & ok[:, :, None] & ok[:, None, :] & off_diag
    ok &= ~same_box.any(axis=-1) & ~same_dest.any(axis=-1)

    wb, wn = np.nonzero(ok)
    pushed[wb, wn] = box[wb, wn]
    push_from[wb, wn] = state.boxes[wb, box[wb, wn]]
    push_to[wb, wn] = dest[wb, wn]
    state.boxes[wb, box[wb, wn]] = dest[wb, wn]
    return events


def _reach(state: WorldState, xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``(B, P, K)`` from points ``xy (B, P, 2)`` to every item's centre, and which alive
    items are within ``radius``."""
    centres = state.items[..., ::-1].astype(np.float32) + 0.5  # (B, K, 2) as (x, y)
    dist = np.linalg.norm(xy[:, :, None, :] - centres[:, None], axis=-1)
    return dist, (dist < radius) & state.items_alive[:, None, :]


def item_in_reach(state: WorldState, xy: np.ndarray, cfg: ArenaConfig) -> np.ndarray:
    """``(B, P)`` bool: an agent at ``xy (B, P, 2)`` would pick an item up (one alive within reach)."""
    if state.items.shape[1] == 0:
        return np.zeros(xy.shape[:2], bool)
    return _reach(state, xy, cfg.pickup_radius)[1].any(-1)


def _pick_items(state: WorldState, cfg: ArenaConfig) -> np.ndarray:
    bsz, n = state.poses.shape[:2]
    picked = np.full((bsz, n), -1, np.int16)
    if state.items.shape[1] == 0:
        return picked
    dist, reach = _reach(state, state.poses[..., :2], cfg.pickup_radius)
    d = np.where(reach, dist, np.inf)
    nearest = d == d.min(axis=1, keepdims=True)
    winner = reach & nearest & (np.sum(reach & nearest, axis=1, keepdims=True) == 1)  # (B, N, K)
    wb, wn, wk = np.nonzero(winner)
    picked[wb, wn] = wk  # an agent reaches at most one item: items sit a cell apart
    state.items_alive[wb, wk] = False
    return picked
