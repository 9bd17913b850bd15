"""The second edition's state update: a quantised state, learned motion, rewards on the
scenario's values paid only with the model's own events."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from multiworld.models.dynamics import OWN_VALUES, SHARED_VALUES, payout_class
from multiworld.models.quantize import BOUND, STEP, on_lattice, snap
from multiworld.models.world_model import LatentState
from multiworld.sim.model import ModelSimulator
from multiworld.world.state import Action


@pytest.fixture(scope="module")
def tiny_model():
    from tests.helpers.model import tiny_world_model

    return tiny_world_model()


@pytest.fixture(scope="module")
def shipped():
    from multiworld.models.checkpoint import load_checkpoint

    return load_checkpoint()


# ----- the lattice ------------------------------------------------------------------------------
def test_snap_rounds_to_the_lattice_with_straight_through_gradients():
    x = torch.tensor([-3.0, -0.3, -0.2, 0.0, 0.12, 0.26, 1.74, 2.6], requires_grad=True)
    y = snap(x)
    assert y.tolist() == [-BOUND, -STEP, 0.0, 0.0, 0.0, STEP, 3 * STEP, BOUND]
    y.sum().backward()
    assert x.grad.tolist() == [1.0] * 8


def test_encoded_and_stepped_states_stay_on_the_lattice(tiny_model):
    sim = ModelSimulator("forage-v0", 3, 2, model=tiny_model)
    sim.reset([1, 2])
    assert on_lattice(sim.latent.scene) and on_lattice(sim.latent.agents[..., 3:])
    for a in range(4):
        sim.step(np.full((2, 3), a))
        assert on_lattice(sim.latent.scene) and on_lattice(sim.latent.agents[..., 3:])


def test_an_update_below_half_a_step_changes_no_cell(tiny_model):
    """Cells where nothing happens are fixed points: a residual smaller than half a lattice step
    snaps back, so small errors cannot accumulate over a rollout."""
    dyn = tiny_model.dynamics
    sim = ModelSimulator("roam-v0", 2, 1, model=tiny_model)
    sim.reset([5])
    scene, agents = sim.latent.scene, sim.latent.agents
    with torch.no_grad():
        last = dyn.cell[-1]
        saved = last.weight.clone(), last.bias.clone()
        last.weight.mul_(0), last.bias.fill_(0.49 * STEP)  # every touched cell gets +0.49 steps
        try:
            new_scene, _, _ = dyn(scene, agents, torch.zeros(1, 2, dtype=torch.long), sim._scen)
        finally:
            last.weight.copy_(saved[0]), last.bias.copy_(saved[1])
    # Channels at the upper bound stay there; every other channel would need +0.5 steps to move.
    assert torch.equal(new_scene, scene)


# ----- motion ---------------------------------------------------------------------------------
def test_motion_reads_the_cells_around_the_agent(tiny_model):
    """The displacement is a network of the agent's token, its cells and its action: the same
    action from the same pose over other cell tokens moves the agent differently."""
    torch.manual_seed(0)
    dyn = tiny_model.dynamics
    scene = snap(torch.randn(1, 16, 16, 16))
    agents = torch.cat([torch.tensor([[[7.5, 7.5, 0.3]]]), torch.zeros(1, 1, 13)], -1)
    fwd = torch.tensor([[int(Action.FORWARD)]])
    scen = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        _, a1, _ = dyn(scene, agents, fwd, scen)
        other = scene.clone()
        other[0, 7:9, 8:10] = snap(torch.randn(2, 2, 16))  # the cells ahead
        _, a2, _ = dyn(other, agents, fwd, scen)
        far = scene.clone()
        far[0, 0, 0] = -far[0, 0, 0]  # a cell outside the 5x5 window: no effect
        _, a3, _ = dyn(far, agents, fwd, scen)
    assert not torch.allclose(a1[..., :3], a2[..., :3])
    assert torch.equal(a1[..., :3], a3[..., :3])


def _blocked_and_open(seed: int = 2_000_000):
    """A world with agent 0 standing just in front of a wall (facing it) and agent 1 in the open,
    facing along a free row: FORWARD blocks one and moves the other in the oracle."""
    from multiworld.world.arena import generate
    from multiworld.world.dynamics import step as world_step
    from multiworld.world.scenarios import get_scenario
    from multiworld.world.state import FLOOR

    arena = get_scenario("roam-v0").arena_config(num_agents=2)
    state = generate(arena, [seed])
    walls = state.walls[0] != FLOOR
    boxes = {tuple(b) for b in state.boxes[0]}
    free = lambda r, c: not walls[r, c] and (r, c) not in boxes  # noqa: E731
    blocked = next((r, c) for r in range(1, 15) for c in range(1, 14) if free(r, c) and walls[r, c + 1])
    opened = next(
        (r, c)
        for r in range(1, 15)
        for c in range(1, 12)
        if all(free(r, c + k) for k in range(4)) and abs(r - blocked[0]) + abs(c - blocked[1]) > 3
    )
    poses = np.array([[[blocked[1] + 0.75, blocked[0] + 0.5, 0.0], [opened[1] + 0.5, opened[0] + 0.5, 0.0]]])
    state.poses = poses.astype(np.float32)
    after, _ = world_step(state, np.array([[int(Action.FORWARD)] * 2]), arena)
    oracle = after.poses[0, :, 0] - state.poses[0, :, 0]
    assert oracle[0] < 0.05 < oracle[1]  # the oracle blocks agent 0 and moves agent 1
    return state


@pytest.mark.xfail(
    strict=True,
    reason="known miss of the shipped checkpoint: its motion network moves through walls (blocked "
    "moves are ~1% of the training moves and it learned each action's typical move; model card)",
)
def test_the_learned_motion_stops_at_walls_where_the_oracle_does(shipped):
    """The shipped model: the same action (FORWARD, heading east) moves the agent in the open and
    not the one facing a wall, as in the oracle; no per-action constant could do that."""
    state = _blocked_and_open()
    sim = ModelSimulator("roam-v0", 2, 1, model=shipped)
    sim.reset([0], start=state)
    obs = sim.step(np.array([[int(Action.FORWARD)] * 2]))
    moved = obs.poses[0, :, 0] - state.poses[0, :, 0]
    assert moved[1] > 0.15 and moved[0] < 0.08, moved


# ----- rewards and endings --------------------------------------------------------------------
def test_payout_targets_split_shared_and_own_rewards():
    from multiworld.models.data import payout_targets

    r = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])
    t = payout_targets(r)
    own = torch.tensor(OWN_VALUES)[t["own_payout"]]
    shared = torch.tensor(SHARED_VALUES)[t["shared_payout"]]
    assert torch.equal(own + shared[:, None], r)
    assert shared.tolist() == [0.0, 1.0, -1.0, 0.0]
    assert payout_class(torch.tensor([5.0]), SHARED_VALUES).item() == len(SHARED_VALUES) - 1


def _rewards_follow_events(sim: ModelSimulator, actions: np.ndarray) -> None:
    sim.reset(list(range(3_000_000, 3_000_000 + sim.num_worlds)))
    for a in actions:
        obs = sim.step(a)
        lattice = {o + s for o in OWN_VALUES for s in SHARED_VALUES}
        assert set(np.unique(obs.rewards)).issubset(lattice)
        for w, events in enumerate(obs.events):
            if not events:  # nothing happened in the model's world: nothing is paid, nothing ends
                assert not obs.rewards[w].any() and not obs.terminated[w]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(0, 7), min_size=3, max_size=3), min_size=1, max_size=6))
def test_tiny_model_pays_only_lattice_values_with_events(tiny_model, acts):
    sim = ModelSimulator("push-v0", 3, 1, model=tiny_model)
    _rewards_follow_events(sim, np.array(acts)[:, None])


SCENARIO_VALUES = {"roam-v0": {0.0}, "forage-v0": {0.0, 1.0}, "push-v0": {-2.0, -1.0, 0.0, 1.0, 2.0}}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scenario=st.sampled_from(sorted(SCENARIO_VALUES)),
    seed=st.integers(0, 2**16),
    scripted=st.booleans(),
)
@example(
    scenario="roam-v0", seed=152, scripted=True
)  # paid 1.0 in roam before the payout classes were read off the data
def test_shipped_model_rewards_take_only_the_scenarios_values(shipped, scenario, seed, scripted):
    """Random or scripted action sequences on the shipped checkpoint: every reward is one of the
    scenario's values (forage and roam never pay a negative), and only steps with events pay."""
    from multiworld.agents.policies import make_policy

    sim = ModelSimulator(scenario, 4, 2, model=shipped)
    sim.reset([4_000_000 + seed, 4_100_000 + seed])
    policy = make_policy("scripted" if scripted else "random", seed=seed)
    for _ in range(30):
        obs = sim.step(policy.act(sim.world_state()))
        assert set(np.unique(obs.rewards)).issubset(SCENARIO_VALUES[scenario]), np.unique(obs.rewards)
        for w, events in enumerate(obs.events):
            if not events:
                assert not obs.rewards[w].any() and not obs.terminated[w]


def test_payout_classes_are_read_off_the_data():
    """The model pays only the payout classes its scenario's data pays: a scenario whose data never
    pays keeps the zero class only, a scenario without data keeps every class."""
    from multiworld.models.data import data_payouts_seen
    from multiworld.models.dynamics import OWN_VALUES, SHARED_VALUES

    k = len(OWN_VALUES)
    roam = np.zeros((50, 4), np.float32)
    forage = np.zeros((50, 3), np.float32)
    forage[3, 1] = 1.0  # one agent's pickup: its own payout
    forage[7] = 1.0  # everyone paid the same: a shared payout
    seen = data_payouts_seen([(0, roam), (1, forage)], 3)
    zero_own, zero_shared, one_own, one_shared = (
        OWN_VALUES.index(0.0),
        SHARED_VALUES.index(0.0),
        OWN_VALUES.index(1.0),
        SHARED_VALUES.index(1.0),
    )
    assert seen[0].nonzero().flatten().tolist() == [zero_own, k + zero_shared]
    assert seen[1].nonzero().flatten().tolist() == sorted([zero_own, one_own, k + zero_shared, k + one_shared])
    assert seen[2].all()


def test_the_shipped_models_pay_only_what_their_data_paid(shipped):
    """roam-v0 pays nothing, forage-v0 0 or +1: the shipped weights carry that (the
    ``payouts_seen`` buffer written by ``multiworld train --payouts-only``, model card)."""
    seen = shipped.dynamics.payouts_seen
    k = len(OWN_VALUES)

    def values(row: torch.Tensor) -> set[float]:
        own = {OWN_VALUES[i] for i in row[:k].nonzero().flatten().tolist()}
        return own | {SHARED_VALUES[i] for i in row[k:].nonzero().flatten().tolist()}

    assert values(seen[0]) == {0.0} and values(seen[1]) == {0.0, 1.0}


def test_latent_state_round_trip_keeps_the_lattice(tiny_model):
    sim = ModelSimulator("forage-v0", 2, 1, model=tiny_model)
    sim.reset([9])
    sim.step(np.array([[1, 3]]))
    back = LatentState.unpack(sim.tokens(), 16)
    assert on_lattice(back.scene) and torch.equal(back.scene, sim.latent.scene)
