"""Staged training states: true arena states rearranged where a rare judgement turns.

The worth judgement (``payout="judge"``) says what a push pays: +1 for a box pushed onto a goal, -1
for one pushed off. The probe policies' worlds hold few such pushes (87 pool chunks held none onto
a goal), and poses before an empty goal teach only what a push *would* pay if a box were there,
which a falsely fired push then pays (random push-v0 paid -20 where the oracle paid 0). So some
pool worlds get one of their boxes moved to where the answer is not 0: in the cell before a goal
(a push from behind pays +1) or onto a goal (a push across it pays -1), with floor for the pusher
behind it. The arrangement is one the arena itself reaches (boxes do stand before and on goals);
every label is still the oracle's, taken from the staged state.
"""

from __future__ import annotations

import numpy as np

from multiworld.world.arena import ArenaConfig
from multiworld.world.dynamics import (
    CARDINAL,
    agent_blocks_push,
    agents_overlap,
    cells_ahead,
    overlaps_cell,
    solid_cells,
    square_free,
)
from multiworld.world.state import FLOOR, WorldState


def poses_facing(cells: np.ndarray, side: np.ndarray, back: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poses ``(..., 3)`` as (x, y, heading) ``back`` cells before ``cells (..., 2)`` ((x, y) cell
    corners) on the side away from ``side`` (a heading quarter, 0..3), anywhere inside that cell,
    heading towards the cell within 70 degrees (the push rule's front cell turns at 45)."""
    facing = np.stack([np.cos(side * np.pi / 2), np.sin(side * np.pi / 2)], -1).round()
    xy = cells - back[..., None] * facing + rng.uniform(0.2, 0.8, cells.shape)
    heading = side * np.pi / 2 + rng.uniform(-1.22, 1.22, side.shape)
    return np.concatenate([xy, np.angle(np.exp(1j * heading))[..., None]], -1)


def stage_agents(state: WorldState, arena: ArenaConfig, rng: np.random.Generator, share: float = 0.5) -> WorldState:
    """Move one agent in about ``share`` of the worlds with an alive item to just outside its reach,
    on one of its four sides, facing it within 20 degrees: a step forward picks it up. The pickup
    judgement missed a third of the oracle's pickups where an agent stood beside the item before
    stepping onto it (a diagnostic, teacher-forced forage-v0, scripted: 25 of 84, every miss a forward step),
    an arrangement the random poses around items rarely draw. ``state`` is not changed."""
    state = state.copy()
    solid, r = solid_cells(state), arena.agent_radius
    for w in range(state.num_worlds):
        alive = np.flatnonzero(state.items_alive[w])
        if not len(alive) or rng.random() >= share:
            continue
        i = int(rng.integers(state.num_agents))
        others = np.delete(state.poses[w, :, :2], i, 0)
        for _ in range(16):
            centre = state.items[w, rng.choice(alive), ::-1] + 0.5  # (x, y)
            side = int(rng.integers(4))
            toward = CARDINAL[side, ::-1].astype(np.float64)  # (x, y) from the agent to the item
            xy = centre - rng.uniform(arena.pickup_radius, 0.95) * toward + rng.uniform(-0.15, 0.15) * toward[::-1]
            if square_free(solid[w : w + 1], xy[None, None], r)[0, 0] and not agents_overlap(others - xy, r).any():
                heading = np.angle(np.exp(1j * (side * np.pi / 2 + rng.uniform(-0.35, 0.35))))
                state.poses[w, i] = (xy[0], xy[1], heading)
                break
    return state


def block_points(rng: np.random.Generator, q: int, size: int, arena: ArenaConfig) -> dict[str, np.ndarray]:
    """Labelled pairs for the judgement whether another agent blocks a push (``push_agents``):
    pushers anywhere with any heading, the other agent within a cell and a half of where the box
    would go (half) or within 4 cells of the pusher; the label is the oracle's push rule."""
    pusher = np.concatenate([rng.uniform(1, size - 1, (q, 2)), rng.uniform(-np.pi, np.pi, (q, 1))], -1)
    _, dest = cells_ahead(pusher[:, None])  # (q, 1, 2) (row, col)
    near = dest[:, 0, ::-1] + 0.5 + rng.uniform(-1.5, 1.5, (q, 2))
    other = np.where(np.arange(q)[:, None] < q // 2, near, pusher[:, :2] + rng.uniform(-4, 4, (q, 2)))
    return {
        "block_pose": pusher.astype(np.float32),
        "block_xy": other.astype(np.float32),
        "block": agent_blocks_push(pusher, other, arena),
    }


def _free(state: WorldState, w: int, cell: np.ndarray, radius: float, ignore_box: int) -> bool:
    """Whether ``cell`` (row, col) of world ``w`` is floor with no other box, no alive item and no
    agent overlapping it."""
    if not _floor(state, w, cell, ignore_box) or ((state.items[w] == cell).all(-1) & state.items_alive[w]).any():
        return False
    return not overlaps_cell(state.poses[w : w + 1, :, :2], cell[None, None], radius).any()


def stage_boxes(
    state: WorldState, arena: ArenaConfig, rng: np.random.Generator, share: float = 0.5, off: float = 0.3
) -> tuple[WorldState, np.ndarray]:
    """Move one box in about ``share`` of the worlds with boxes and goals to the cell before a goal
    (or, ``off`` of those, onto a goal), the cell the push lands in and the pusher's cell open:
    ``(staged state, (C, 3) int64)`` the staged box's cell as (x, y) and the heading quarter that
    pushes it onto (off) the goal, -1 where nothing was staged. ``state`` is not changed."""
    state = state.copy()
    staged = np.full((state.num_worlds, 3), -1, np.int64)
    m = state.boxes.shape[1]
    for w in range(state.num_worlds):
        goals = np.argwhere(state.goals[w])
        if m == 0 or not len(goals) or rng.random() >= share:
            continue
        onto = rng.random() >= off
        k = int(rng.integers(m))
        for _ in range(16):
            g, side = goals[rng.integers(len(goals))], int(rng.integers(4))
            step = CARDINAL[side]
            box, pusher, dest = (g - step, g - 2 * step, g) if onto else (g, g - step, g + step)
            if not _inside(box, state.size) or state.goals[w, box[0], box[1]] == onto:
                continue  # onto: the box not yet on a goal; off: onto a goal...
            if not onto and _inside(dest, state.size) and state.goals[w, dest[0], dest[1]]:
                continue  # ...and pushed off it, not onto the next goal
            if all(_free(state, w, c, arena.agent_radius, k) for c in (box, dest)) and _floor(state, w, pusher, k):
                state.boxes[w, k] = box
                staged[w] = (box[1], box[0], side)
                break
    return state, staged


def _inside(cell: np.ndarray, size: int) -> bool:
    return bool(((cell >= 0) & (cell < size)).all())


def _floor(state: WorldState, w: int, cell: np.ndarray, ignore_box: int) -> bool:
    """Floor without another box: where a pusher can stand (agents may stand there already)."""
    if not _inside(cell, state.size) or state.walls[w, cell[0], cell[1]] != FLOOR:
        return False
    return not (np.delete(state.boxes[w], ignore_box, 0) == cell).all(-1).any()


def stage_pushers(
    state: WorldState, arena: ArenaConfig, rng: np.random.Generator, share: float = 0.5, back: int = 3
) -> WorldState:
    """Starts for a push-v0 curriculum: in about ``share`` of the worlds a box stands in the cell
    before a goal (:func:`stage_boxes`) and one agent 1 to ``back`` cells behind it, facing it within
    70 degrees, where the arena lets it stand: a few steps forward and a push pay. The arrangement is
    one the arena reaches; the rest of each world is as generated. ``state`` is not changed."""
    state, staged = stage_boxes(state, arena, rng, share, off=0.0)
    return place_pushers(state, staged, arena, rng, back)


def place_pushers(
    state: WorldState, staged: np.ndarray, arena: ArenaConfig, rng: np.random.Generator, back: int = 3
) -> WorldState:
    """One agent of every world with a staged box (``staged`` as :func:`stage_boxes` returns it) put
    1 to ``back`` cells behind the box, facing it, where it can stand; ``state`` is changed in place
    and returned."""
    solid, r = solid_cells(state), arena.agent_radius
    for w in np.flatnonzero(staged[:, 0] >= 0):
        cell, side = staged[w, :2].astype(np.float64), staged[w, 2]
        i = int(rng.integers(state.num_agents))
        others = np.delete(state.poses[w, :, :2], i, 0)
        for _ in range(16):
            pose = poses_facing(cell, np.asarray(side), np.asarray(rng.integers(1, back + 1)), rng)
            if not ((pose[:2] > 1) & (pose[:2] < state.size - 1)).all():  # the border is wall
                continue
            if (
                square_free(solid[w : w + 1], pose[None, None, :2], r)[0, 0]
                and not agents_overlap(others - pose[:2], r).any()
            ):
                state.poses[w, i] = pose
                break
    return state
