"""Staged training states (``multiworld.models.staging``): the arrangements are ones the arena plays
out, and the worth judgement's labels are what a push would really pay there."""

import numpy as np
import pytest

from multiworld.models.dynamics import OWN_VALUES
from multiworld.models.onestep import OneStepConfig, OneStepSampler
from multiworld.models.staging import poses_facing, stage_boxes
from multiworld.models.transitions import push_worth
from multiworld.world.arena import generate
from multiworld.world.dynamics import cells_ahead, push_possible, push_worth_at
from multiworld.world.dynamics import step as world_step
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import Action

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_a_push_from_behind_a_staged_box_pays_what_the_staging_says():
    """An agent put behind each staged box, facing its goal, pushes it in the oracle: onto the goal
    (+1) or off it (-1); the input state is left as it was."""
    arena = get_scenario("push-v0").arena_config(num_agents=3)
    state = generate(arena, np.arange(600, 640))
    before = state.copy()
    staged_state, staged = stage_boxes(state, arena, np.random.default_rng(0), share=1.0, off=0.4)
    for field in ("boxes", "poses", "goals"):
        np.testing.assert_array_equal(getattr(state, field), getattr(before, field))
    done = staged[:, 0] >= 0
    assert done.sum() >= 30, "a box is staged in most worlds when share is 1"
    paid = []
    for w in np.flatnonzero(done):
        s = staged_state.copy()
        x, y, side = staged[w]
        assert ((s.boxes[w] == (y, x)).all(-1)).sum() == 1, "exactly one box in the staged cell"
        step = np.array([[0, 1], [1, 0], [0, -1], [-1, 0]])[side]  # (row, col)
        s.poses[w, 0] = (x - step[1] + 0.5, y - step[0] + 0.5, side * np.pi / 2)
        a = np.zeros((s.num_worlds, s.num_agents), np.int64)
        a[w, 0] = Action.INTERACT
        _, ev = world_step(s, a, arena)
        assert ev.pushed[w, 0] >= 0, f"world {w}: the staged box is pushed"
        paid.append(OWN_VALUES[int(push_worth(s, ev)[w, 0])])
    assert set(paid) == {1.0, -1.0}, "boxes staged both before goals and on them"


def test_poses_facing_stand_behind_the_cell_and_face_it():
    rng = np.random.default_rng(1)
    cells = np.array([[5.0, 7.0]] * 400)
    side = rng.integers(4, size=400)
    back = rng.integers(1, 3, size=400)
    poses = poses_facing(cells, side, back, rng)
    step = np.stack([np.cos(side * np.pi / 2), np.sin(side * np.pi / 2)], -1).round()
    np.testing.assert_array_equal(np.floor(poses[:, :2]), cells - back[:, None] * step)
    off = np.angle(np.exp(1j * (poses[:, 2] - side * np.pi / 2)))
    assert np.abs(off).max() <= 1.22 + 1e-9 and np.abs(poses[:, 2]).max() <= np.pi


def test_worth_labels_are_zero_where_no_push_is_possible_and_hold_both_signs():
    """The worth label at a pose is what a push from it pays: 0 where no box can be pushed (a pose
    before an empty goal pays nothing), and the staged worlds give both +1 and -1 with boxes there."""
    arena = get_scenario("push-v0").arena_config(num_agents=2)
    cfg = OneStepConfig(chunk=8, actions=1, chunks=1, warmup=0, agents=(2,), scenarios=("push-v0",))
    sampler = OneStepSampler(cfg, seed=3)
    state, staged = stage_boxes(generate(arena, np.arange(700, 708)), arena, sampler.rng, share=1.0)
    out = sampler._reach_points(state, arena, staged)
    worth = np.asarray(OWN_VALUES)[out["worth_at"]]
    poses = out["worth_pose"].astype(np.float64)
    possible = push_possible(state, poses, arena)
    assert set(np.unique(worth)) == {-1.0, 0.0, 1.0}
    assert (worth[~possible] == 0).all()
    np.testing.assert_array_equal(worth[possible], push_worth_at(state, poses)[possible])
    assert (push_worth_at(state, poses)[~possible] != 0).any(), "poses before empty goals were drawn"


def test_push_block_labels_are_the_oracles_push_rule():
    """An agent put where ``block_points`` says it blocks stops the oracle's push; elsewhere the
    push happens (a box ahead, open floor beyond, nothing else around)."""
    from multiworld.models.staging import block_points

    arena = get_scenario("push-v0").arena_config(num_agents=2)
    base = generate(arena, [5])
    base.walls[:] = 0
    base.goals[:] = False
    pts = block_points(np.random.default_rng(2), 200, base.size, arena)
    checked = {False: 0, True: 0}
    for pose, other, blocks in zip(pts["block_pose"], pts["block_xy"], pts["block"], strict=True):
        front = cells_ahead(pose[None, None].astype(np.float64))[0][0, 0]  # (row, col) ahead
        inside = ((other > 0.5) & (other < base.size - 0.5)).all() and ((front >= 1) & (front < base.size - 1)).all()
        apart = np.abs(other - pose[:2]).max() >= 2 * arena.agent_radius
        if not (inside and apart):
            continue  # not a state the arena reaches
        s = base.copy()
        s.poses[0, 0], s.poses[0, 1, :2] = pose, other
        s.boxes[0, :] = front  # one box ahead (the others on the same cell: one is pushed)
        s.boxes[0, 1:] = (0, 0)
        _, ev = world_step(s, np.array([[Action.INTERACT, Action.NOOP]]), arena)
        assert (ev.pushed[0, 0] < 0) == bool(blocks), (pose, other, blocks)
        checked[bool(blocks)] += 1
    assert checked[True] > 10 and checked[False] > 10, checked


def test_the_agent_block_judgement_learns_the_push_rule():
    """The structure can hold the rule: trained alone on the oracle's labels (seconds), it says
    whether another agent blocks a push on held-out pairs nearly always right."""
    import torch

    from multiworld.models.motion import AgentBlock
    from multiworld.models.staging import block_points

    arena = get_scenario("push-v0").arena_config(num_agents=2)
    torch.manual_seed(0)
    block = AgentBlock()
    opt = torch.optim.Adam(block.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(400):
        pts = block_points(rng, 256, 16, arena)
        logits = block.judge(torch.as_tensor(pts["block_pose"]), torch.as_tensor(pts["block_xy"]))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.as_tensor(pts["block"]).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = block_points(np.random.default_rng(99), 4000, 16, arena)
    with torch.no_grad():
        said = block.judge(torch.as_tensor(test["block_pose"]), torch.as_tensor(test["block_xy"])) > 0
    assert (said.numpy() == test["block"]).mean() > 0.97


def test_a_staged_forager_walks_onto_its_item():
    """``stage_agents`` puts an agent just out of an item's reach, facing it, where the arena lets
    it stand: walking forward it picks the item up in the oracle within three steps."""
    from multiworld.models.staging import stage_agents
    from multiworld.world.dynamics import item_in_reach, solid_cells, square_free

    arena = get_scenario("forage-v0").arena_config(num_agents=3)
    state = generate(arena, np.arange(800, 840))
    staged = stage_agents(state, arena, np.random.default_rng(1), share=1.0)
    moved = np.flatnonzero((staged.poses != state.poses).any(-1).any(-1))
    assert len(moved) >= 36
    assert square_free(solid_cells(staged), staged.poses[..., :2], arena.agent_radius).all()
    picked = 0
    for w in moved:
        i = int(np.flatnonzero((staged.poses[w] != state.poses[w]).any(-1))[0])
        assert not item_in_reach(staged.select([w]), staged.poses[w : w + 1, i : i + 1, :2], arena)[0, 0]
        s = staged.select([w])
        for _ in range(3):
            a = np.full((1, 3), int(Action.NOOP))
            a[0, i] = Action.FORWARD
            s, ev = world_step(s, a, arena)
            if ev.picked[0, i] >= 0:
                picked += 1
                break
    assert picked >= 0.8 * len(moved), (picked, len(moved))


def test_staged_pushers_make_push_v0_pay_random_actions():
    """``stage_pushers`` (the PPO example's ``--stage`` curriculum): a box before a goal and an agent
    behind it, facing it, where it can stand: random actions get push-v0's goal reward within 20
    steps in many staged worlds and in none of the same worlds unstaged; the input is left alone."""
    from multiworld.models.staging import stage_pushers
    from multiworld.world.dynamics import solid_cells, square_free

    sc = get_scenario("push-v0")
    arena = sc.arena_config(num_agents=4)
    plain = generate(arena, np.arange(1000, 1064))
    before = plain.copy()
    staged = stage_pushers(plain, arena, np.random.default_rng(0), share=1.0)
    np.testing.assert_array_equal(plain.poses, before.poses)
    np.testing.assert_array_equal(plain.boxes, before.boxes)
    assert square_free(solid_cells(staged), staged.poses[..., :2], arena.agent_radius).all()
    paid = {}
    for name, start in (("plain", plain), ("staged", staged)):
        rng, state, total = np.random.default_rng(1), start.copy(), np.zeros(64)
        for _ in range(20):
            after, ev = world_step(state, rng.integers(0, 8, size=(64, 4)), arena)
            total += sc.reward(state, after, ev).sum(-1)
            state = after
        paid[name] = int((total > 0).sum())
    assert paid["plain"] == 0 and paid["staged"] >= 10, paid
