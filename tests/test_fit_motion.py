"""The fit motion (``multiworld.models.motion``) and the teacher's labels it learns from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multiworld.models.dynamics import MOVE_OUTCOMES, OWN_VALUES
from multiworld.models.motion import FitMotion
from multiworld.models.transitions import candidate_fits, push_worth
from multiworld.world.arena import generate
from multiworld.world.dynamics import agents_overlap, solid_cells, square_free
from multiworld.world.dynamics import step as world_step
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import Action

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

MASKS = torch.tensor(MOVE_OUTCOMES)


def _set_bias(net: torch.nn.Sequential, value: float) -> None:
    with torch.no_grad():
        net[-1].weight.zero_()
        net[-1].bias.fill_(value)


def _motion(fits: float, clash: float, dim: int = 4) -> FitMotion:
    m = FitMotion(dim, 16, MASKS)
    _set_bias(m.fit_judge.net, fits)
    _set_bias(m.clash_net, clash)
    return m


def test_a_move_ends_at_its_first_candidate_that_fits_else_where_it_started():
    scene = torch.zeros(1, 6, 6, 4)
    xy = torch.tensor([[[2.5, 2.5], [4.5, 1.5]]])
    free = torch.tensor([[[0.25, 0.1], [0.0, -0.25]]])
    new, out = _motion(fits=5.0, clash=-5.0)(scene, xy, free)
    assert torch.allclose(new, xy + free) and out["outcome"].tolist() == [[0, 0]]
    new, out = _motion(fits=-5.0, clash=-5.0)(scene, xy, free)
    assert torch.equal(new, xy) and out["outcome"].tolist() == [[3, 3]]


def test_a_slide_that_moves_nothing_is_no_slide():
    """A move straight along y: its x part moves nothing, so it is skipped even where it 'fits'."""
    m = _motion(fits=5.0, clash=-5.0)
    with torch.no_grad():  # fit only where the candidate is the start (the whole move does not fit)
        m.fit = lambda scene, xy: torch.where((xy - 2.5).abs().amax(-1) < 1e-6, 5.0, -5.0)
    new, out = m(torch.zeros(1, 6, 6, 4), torch.tensor([[[2.5, 2.5]]]), torch.tensor([[[0.0, 0.25]]]))
    assert out["outcome"].tolist() == [[3]] and torch.equal(new, torch.tensor([[[2.5, 2.5]]]))


def test_agents_that_clash_go_back_and_only_moved_agents_do():
    xy = torch.tensor([[[2.5, 2.5], [3.0, 2.5], [1.0, 1.0]]])
    free = torch.tensor([[[0.25, 0.0], [0.0, 0.0], [0.25, 0.0]]])
    new, out = _motion(fits=5.0, clash=5.0)(torch.zeros(1, 6, 6, 4), xy, free)
    assert torch.equal(new, xy)  # every moved agent clashes with someone and goes back
    assert out["outcome"].tolist() == [[3, 3, 3]]


def test_the_fit_judgement_learns_the_oracles_footprint_from_cell_tokens():
    """A fit net reading one-hot cell tokens (floor / solid) learns the oracle's rule from labelled
    positions: held-out positions of held-out maps judged right >= 97% of the time."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    arena = get_scenario("push-v0").arena_config(num_agents=2)
    r = arena.agent_radius

    def sample(seeds):
        state = generate(arena, seeds)
        solid = solid_cells(state)
        xy = rng.uniform(0.25, state.size - 0.25, size=(len(seeds), 256, 2))
        tokens = torch.nn.functional.one_hot(torch.as_tensor(solid).long(), 2).float()
        return tokens, torch.as_tensor(xy, dtype=torch.float32), torch.as_tensor(square_free(solid, xy, r)).float()

    m = FitMotion(2, 64, MASKS)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(400):
        tokens, xy, ok = sample(rng.integers(0, 10_000, size=8))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m.fit(tokens, xy), ok)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tokens, xy, ok = sample(np.arange(50_000, 50_016))
    with torch.no_grad():
        acc = ((m.fit(tokens, xy) > 0).float() == ok).float().mean().item()
    assert acc >= 0.97, acc


def test_the_oracles_labels_match_its_own_moves():
    """Where the oracle moved an agent by its whole free move, that candidate fits; its clash
    labels are the overlap of two agents' squares."""
    from multiworld.models.transitions import move_targets

    arena = get_scenario("roam-v0").arena_config(num_agents=4)
    state = generate(arena, [3, 4, 5, 6])
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.integers(0, 8, size=(4, 4))
        after, _ = world_step(state, a, arena)
        free, outcome = move_targets(state.poses, after.poses, a, arena)
        fits = candidate_fits(state, free, arena)
        assert fits[outcome == 0][:, 0].all()
        state = after
    assert agents_overlap(np.array([0.39, -0.1]), r=0.2) and not agents_overlap(np.array([0.41, 0.0]), r=0.2)


def test_push_worth_is_plus_one_onto_a_goal_and_minus_one_off_it():
    arena = get_scenario("push-v0").arena_config(num_agents=1)
    state = generate(arena, [11])
    state.boxes[0, 0] = (4, 4)
    state.walls[0, 3:7, 3:7] = 0  # open floor around the box
    state.poses[0, 0] = (4.5, 3.5, np.pi / 2)  # in cell (row 3, col 4), facing south (+y): the box ahead
    for goal_at, worth in (((5, 4), 1.0), ((4, 4), -1.0), ((1, 1), 0.0)):
        s = state.copy()
        s.goals[:] = False
        s.goals[0, goal_at[0], goal_at[1]] = True
        s.boxes[0, 1:] = (1, 6), (6, 1)
        _, ev = world_step(s, np.array([[Action.INTERACT]]), arena)
        assert ev.pushed[0, 0] == 0, "the box ahead is pushed"
        assert OWN_VALUES[int(push_worth(s, ev)[0, 0])] == worth
    _, ev = world_step(state, np.array([[Action.TURN_LEFT]]), arena)
    assert OWN_VALUES[int(push_worth(state, ev)[0, 0])] == 0.0


def test_reach_labels_are_the_oracles_pickups():
    """Where the oracle's agent picked an item up, its position was in reach of one; an agent in
    reach of no item picked nothing."""
    from multiworld.world.dynamics import item_in_reach

    arena = get_scenario("forage-v0").arena_config(num_agents=4)
    state = generate(arena, [21, 22, 23, 24])
    rng = np.random.default_rng(2)
    picks = 0
    for _ in range(120):
        after, ev = world_step(state, rng.integers(0, 8, size=(4, 4)), arena)
        moved = after.copy()
        moved.items_alive = state.items_alive  # the items before this step's pickups
        reach = item_in_reach(moved, after.poses[..., :2], arena)
        assert not (ev.picked >= 0)[~reach].any()
        assert reach[ev.picked >= 0].all()
        picks += int((ev.picked >= 0).sum())
        state = after
    assert picks > 0


def test_push_labels_are_the_oracles_pushes():
    """Scripted push-v0 agents: an interacting agent pushed a box exactly where the push judgement's
    label says a push is possible (contention between two pushers aside: none in these worlds)."""
    from multiworld.agents.policies import make_policy
    from multiworld.world.dynamics import push_possible

    arena = get_scenario("push-v0").arena_config(num_agents=2)
    state = generate(arena, [31, 32, 33, 34])
    policy = make_policy("scripted", seed=0)
    pushes = 0
    for _ in range(150):
        a = policy.act(state)
        after, ev = world_step(state, a, arena)
        moved = state.copy()
        moved.poses = after.poses  # pushes happen after the moves, from the new poses
        label = push_possible(moved, after.poses, arena) & (a == Action.INTERACT)
        np.testing.assert_array_equal(label, ev.pushed >= 0)
        pushes += int((ev.pushed >= 0).sum())
        state = after
    assert pushes > 0


def test_worth_labels_are_what_the_oracles_pushes_pay():
    """Scripted push-v0 agents: for every push the oracle made, the worth judgement's label at the
    pusher's pose is what the push did to the goals (``push_worth``); and the sampled worth poses
    hold both a box onto a goal and one off it."""
    from multiworld.agents.policies import make_policy
    from multiworld.models.onestep import OneStepConfig, OneStepSampler
    from multiworld.world.dynamics import push_worth_at

    arena = get_scenario("push-v0").arena_config(num_agents=2)
    state = generate(arena, [31, 32, 33, 34])
    policy = make_policy("scripted", seed=0)
    seen = set()
    for _ in range(150):
        a = policy.act(state)
        after, ev = world_step(state, a, arena)
        pushed = ev.pushed >= 0
        want = np.asarray(OWN_VALUES)[push_worth(state, ev)]
        np.testing.assert_array_equal(push_worth_at(state, after.poses)[pushed], want[pushed])
        seen |= set(want[pushed].tolist())
        state = after
    assert 1.0 in seen, "a scripted box reached a goal"

    cfg = OneStepConfig(chunk=4, actions=1, chunks=1, warmup=0, agents=(2,), scenarios=("push-v0",))
    out = OneStepSampler(cfg, seed=0)._make_chunk().out
    classes = np.bincount(out["worth_at"].ravel(), minlength=3)
    assert out["worth_pose"].shape == (4, 2 * cfg.reach_points, 3)
    assert (classes > 0).all(), classes


def test_an_egocentric_judgement_reads_the_cell_ahead_as_the_same_input():
    """Whichever quarter an agent faces, the input slot of "one cell east" in the judgement's frame
    is the cell ahead of it in the world (the oracle's push rule's front cell)."""
    from multiworld.models.motion import PositionJudge
    from multiworld.world.dynamics import CARDINAL

    judge = PositionJudge(4, 8, window=2, egocentric=True)
    slot = [tuple(c) for c in judge.near.tolist()].index((0, 1))
    xy = torch.tensor([[[7.5, 7.5]] * 4])
    heading = torch.tensor([[0.0, np.pi / 2, np.pi, -np.pi / 2 + 0.3]])
    cells = judge.cells(xy, heading)[0, :, slot]  # (4, 2) (row, col)
    want = torch.tensor([[7, 7]]) + torch.as_tensor(CARDINAL[[0, 1, 2, 3]]).long()
    assert torch.equal(cells, want), cells
    with pytest.raises(ValueError, match="needs the heading"):
        judge.cells(xy)


def test_a_lone_foragers_pickup_is_its_own_payout_and_a_goal_push_is_shared():
    from multiworld.models.data import payout_targets, split_payouts

    one = torch.tensor([[1.0]])  # one agent picked an item up: +1
    zero_push = (torch.tensor([[1]]), torch.zeros(1, 1))
    assert OWN_VALUES[int(split_payouts(one, *zero_push)["own_payout"][0, 0])] == 1.0
    assert OWN_VALUES[int(payout_targets(one)["own_payout"][0, 0])] == 0.0  # the equal-rewards split: shared
    goal = torch.tensor([[1.0, 1.0]])  # agent 0 pushed a box onto a goal: every agent +1
    t = split_payouts(goal, torch.tensor([[2, 1]]), torch.tensor([[1.0, 0.0]]))
    assert [OWN_VALUES[int(c)] for c in t["own_payout"][0]] == [0.0, 0.0] and int(t["shared_payout"][0]) == 3
