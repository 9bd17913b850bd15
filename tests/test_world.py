"""The oracle arena: determinism, order-free dynamics, collisions, pushes, pickups, bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiworld.world.arena import ArenaConfig, generate
from multiworld.world.dynamics import solid_cells, step
from multiworld.world.render import Raycaster
from multiworld.world.scenarios import SCENARIOS, get_scenario
from multiworld.world.state import NUM_ACTIONS, Action, WorldState
from tests.helpers.world import open_room

CFG = ArenaConfig(num_agents=4)


def test_same_seed_same_world_different_seed_different_world():
    a, b, c = generate(CFG, [7]), generate(CFG, [7]), generate(CFG, [8])
    assert a.equals(b)
    assert not a.equals(c)


def test_every_scenario_generates_valid_worlds():
    for name, scenario in SCENARIOS.items():
        state = generate(scenario.arena_config(num_agents=16), range(5))
        assert state.poses.shape == (5, 16, 3), name
        assert _agents_clear(state, scenario.arena.agent_radius)
        for b in range(5):
            assert len(np.unique(state.colors[b])) == 16


def test_500_steps_are_bit_identical():
    """Two runs from the same seed and actions give bit-identical frames and states."""
    renderer = Raycaster()

    def run() -> tuple[list[str], WorldState]:
        state, rng, digests = generate(CFG, [3]), np.random.default_rng(0), []
        for _ in range(500):
            state, _ = step(state, rng.integers(0, NUM_ACTIONS, (1, 4)), CFG)
            digests.append(hashlib.sha256(renderer.render(state).rgb.numpy().tobytes()).hexdigest())
        return digests, state

    (d1, s1), (d2, s2) = run(), run()
    assert d1 == d2
    assert s1.equals(s2)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    num_agents=st.integers(2, 8),
    data=st.data(),
)
def test_permuting_agents_permutes_the_outcome_and_nothing_else(seed, num_agents, data):
    cfg = ArenaConfig(num_agents=num_agents, num_boxes=4, num_items=8)
    perm = np.array(data.draw(st.permutations(range(num_agents))))
    rng = np.random.default_rng(seed)
    state = generate(cfg, [seed])
    permuted = state.permute_agents(perm)
    renderer = Raycaster()
    for _ in range(30):
        # Bias towards interactions: plenty of INTERACT and FORWARD.
        actions = rng.choice([0, 1, 1, 2, 3, 4, 5, 6, 7, 7, 7], size=(1, num_agents))
        state, ev = step(state, actions, cfg)
        permuted, ev_p = step(permuted, actions[:, perm], cfg)
        assert permuted.equals(state.permute_agents(perm))
        for field in ("pushed", "push_from", "push_to", "picked"):
            np.testing.assert_array_equal(getattr(ev_p, field), getattr(ev, field)[:, perm])
    np.testing.assert_array_equal(renderer.render(permuted).rgb, renderer.render(state).rgb[:, perm])


def _agents_clear(state: WorldState, r: float) -> bool:
    """No agent's square touches a wall or box, and no two agents overlap."""
    solid = solid_cells(state)
    xy = state.poses[..., :2]
    for b in range(state.num_worlds):
        for x, y in xy[b]:
            for dx in (-r, r):
                for dy in (-r, r):
                    if solid[b, int(np.floor(y + dy)), int(np.floor(x + dx))]:
                        return False
        diff = np.abs(xy[b][:, None] - xy[b][None])
        overlap = np.all(diff < 2 * r, axis=-1) & ~np.eye(state.num_agents, dtype=bool)
        if overlap.any():
            return False
    return True


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_agent_ever_inside_a_wall_a_box_or_another_agent(scenario):
    cfg = get_scenario(scenario).arena_config(num_agents=8)
    state = generate(cfg, range(8))
    rng = np.random.default_rng(1)
    for _ in range(400):
        # Mostly forward and interact, so agents press against walls, boxes and each other.
        state, _ = step(state, rng.choice([1, 1, 1, 3, 4, 5, 6, 7, 7], size=(8, 8)), cfg)
        assert _agents_clear(state, cfg.agent_radius)


def test_forward_moves_by_speed_along_heading_and_turns_are_exact():
    cfg = ArenaConfig(num_agents=1, num_boxes=0, num_items=0)
    state = open_room(poses=[(2.5, 2.5, 0.0)])
    state, _ = step(state, [[Action.FORWARD]], cfg)
    np.testing.assert_allclose(state.poses[0, 0], [2.5 + cfg.move_speed, 2.5, 0.0], atol=1e-6)
    state, _ = step(state, [[Action.TURN_RIGHT]], cfg)
    np.testing.assert_allclose(state.poses[0, 0, 2], np.deg2rad(cfg.turn_degrees), atol=1e-6)
    state, _ = step(state, [[Action.STRAFE_LEFT]], cfg)  # heading 15 degrees: left is up-right
    h = np.deg2rad(cfg.turn_degrees)
    expected = [2.5 + cfg.move_speed + cfg.move_speed * np.sin(h), 2.5 - cfg.move_speed * np.cos(h)]
    np.testing.assert_allclose(state.poses[0, 0, :2], expected, atol=1e-5)


def test_walls_stop_agents():
    cfg = ArenaConfig(num_agents=1, num_boxes=0, num_items=0)
    state = open_room(poses=[(1.5, 2.5, np.pi)])  # facing the west wall
    for _ in range(10):
        state, _ = step(state, [[Action.FORWARD]], cfg)
    assert state.poses[0, 0, 0] >= 1.0 + cfg.agent_radius


def test_interact_pushes_the_box_in_front_one_cell():
    cfg = ArenaConfig(num_agents=1, num_boxes=1, num_items=0)
    state = open_room(poses=[(2.5, 3.5, 0.05)], boxes=[(3, 3)])  # box east of the agent
    state, ev = step(state, [[Action.INTERACT]], cfg)
    assert state.boxes[0, 0].tolist() == [3, 4]
    assert ev.pushed[0, 0] == 0 and ev.push_from[0, 0].tolist() == [3, 3] and ev.push_to[0, 0].tolist() == [3, 4]
    assert ev.as_dicts(0, ["agent_0"]) == [{"type": "push", "agent": "agent_0", "box": 0, "from": [3, 3], "to": [3, 4]}]


def test_push_into_a_wall_box_or_item_does_nothing():
    cfg = ArenaConfig(num_agents=1, num_boxes=2, num_items=1)
    for boxes, items in (([(3, 6), (1, 1)], [(5, 5)]), ([(3, 3), (3, 4)], [(5, 5)]), ([(3, 3), (1, 1)], [(3, 4)])):
        agent_x = boxes[0][1] - 0.5
        state = open_room(poses=[(agent_x, 3.5, 0.0)], boxes=boxes, items=items)
        after, ev = step(state, [[Action.INTERACT]], cfg)
        assert after.boxes.tolist() == state.boxes.tolist()
        assert ev.pushed[0, 0] == -1


def test_conflicting_pushes_cancel_without_looking_at_agent_order():
    cfg = ArenaConfig(num_agents=2, num_boxes=1, num_items=0)
    # Two agents push the same box from west and north.
    state = open_room(poses=[(2.5, 3.5, 0.0), (3.5, 2.5, np.pi / 2)], boxes=[(3, 3)])
    after, ev = step(state, [[Action.INTERACT, Action.INTERACT]], cfg)
    assert after.boxes.tolist() == state.boxes.tolist() and (ev.pushed == -1).all()
    # Two boxes pushed into the same cell (4, 4): one from the west, one from the north.
    cfg = ArenaConfig(num_agents=2, num_boxes=2, num_items=0)
    state = open_room(poses=[(2.5, 4.5, 0.0), (4.5, 2.5, np.pi / 2)], boxes=[(4, 3), (3, 4)])
    after, ev = step(state, [[Action.INTERACT, Action.INTERACT]], cfg)
    assert after.boxes.tolist() == state.boxes.tolist() and (ev.pushed == -1).all()


def test_walking_onto_an_item_picks_it_up_once():
    scenario = get_scenario("forage-v0")
    cfg = ArenaConfig(num_agents=2, num_boxes=0, num_items=1)
    state = open_room(poses=[(2.5, 3.5, 0.0), (5.5, 5.5, 0.0)], items=[(3, 3)])
    before = state
    for _ in range(4):
        state, ev = step(before, [[Action.FORWARD, Action.NOOP]], cfg)
        if ev.picked[0, 0] >= 0:
            break
        before = state
    assert ev.picked[0].tolist() == [0, -1]
    assert not state.items_alive[0, 0]
    assert scenario.reward(before, state, ev)[0].tolist() == [1.0, 0.0]
    assert scenario.terminated(state)[0]


def test_item_equidistant_from_two_agents_stays():
    cfg = ArenaConfig(num_agents=2, num_boxes=0, num_items=1)
    # Mirror-image agents step onto the item from west and east at the same time.
    state = open_room(poses=[(3.2, 3.5, 0.0), (3.8, 3.5, np.pi)], items=[(3, 3)])
    after, ev = step(state, [[Action.NOOP, Action.NOOP]], cfg)
    assert after.items_alive[0, 0] and (ev.picked == -1).all()


def test_push_scenario_rewards_boxes_on_goals_for_everyone():
    scenario = get_scenario("push-v0")
    cfg = ArenaConfig(num_agents=2, num_boxes=1, num_items=0, num_goals=1)
    state = open_room(poses=[(2.5, 3.5, 0.0), (6.5, 6.5, 0.0)], boxes=[(3, 3)])
    state.goals[0, 3, 4] = True
    after, ev = step(state, [[Action.INTERACT, Action.NOOP]], cfg)
    assert scenario.reward(state, after, ev)[0].tolist() == [1.0, 1.0]
    assert scenario.terminated(after)[0]


@pytest.mark.parametrize(
    "actions, message",
    [
        (np.zeros((1, 3), np.int64), "shape"),
        (np.zeros((2, 4), np.int64), "shape"),
        (np.full((1, 4), 8), "out of range"),
        (np.full((1, 4), -1), "out of range"),
        (np.full((1, 4), 1.0), "integers"),
        (np.full((1, 4), np.nan), "integers"),
        (np.ones((1, 4), bool), "integers"),
    ],
)
def test_invalid_actions_raise_a_clear_value_error(actions, message):
    state = generate(CFG, [0])
    with pytest.raises(ValueError, match=message):
        step(state, actions, CFG)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_agents": 0}, "num_agents"),
        ({"num_agents": 17}, "num_agents"),
        ({"size": 4}, "size"),
        ({"num_items": 500}, "fit"),
    ],
)
def test_invalid_arena_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArenaConfig(**kwargs)


def test_unknown_scenario_names_the_registered_ones():
    with pytest.raises(ValueError, match="forage-v0"):
        get_scenario("forage-v9")
