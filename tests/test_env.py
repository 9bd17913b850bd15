"""The PettingZoo env's own rules: seeds, spaces, infos, missing agents, bad input, render, factory."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gymnasium import spaces

import multiworld
from multiworld.agents.policies import ScriptedPolicy
from multiworld.env.common import depth_to_uint8
from multiworld.runtime.factory import (
    BACKENDS,
    RUNTIMES,
    UnavailableError,
    available_backends,
    available_runtimes,
    make_simulator,
    register_backend,
    unavailable,
)
from multiworld.world.arena import generate
from multiworld.world.render import RenderConfig
from multiworld.world.state import Action

SMALL = dict(height=16, width=16)


def make(scenario="forage-v0", num_agents=3, **kw):
    return multiworld.parallel_env(scenario, num_agents=num_agents, **{**SMALL, **kw})


def assert_same_step(a, b):
    """Two step (or reset) results are bit-identical."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], np.ndarray):
                assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), k
            elif isinstance(x[k], dict):
                assert x[k].keys() == y[k].keys()
                for kk in x[k]:
                    assert np.array_equal(np.asarray(x[k][kk]), np.asarray(y[k][kk])), (k, kk)
            else:
                assert x[k] == y[k], k


# --- construction, exports, spaces


def test_exports_and_callable_env_package():
    import multiworld.env  # binds the subpackage over the lazy attribute

    aec = multiworld.env("push-v0", num_agents=2, **SMALL)
    aec.reset(seed=0)
    assert aec.agents == ["agent_0", "agent_1"]
    assert multiworld.raw_env("roam-v0", num_agents=1, **SMALL).unwrapped.scenario.name == "roam-v0"
    assert multiworld.make_simulator is make_simulator


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scenario="nope-v0"), "unknown scenario"),
        (dict(backend="nope"), "valid backends"),
        (dict(runtime="nope"), "valid runtimes"),
        (dict(obs_type="rgbx"), "obs_type"),
        (dict(render_mode="ansi"), "render_mode"),
        (dict(max_cycles=0), "max_cycles"),
        (dict(num_agents=0), "num_agents"),
        (dict(num_agents=17), "num_agents"),
        (dict(height=15), "image size"),
        (dict(not_an_arena_field=1), "neither ArenaConfig fields"),
        (dict(size=3), "size must be"),
    ],
)
def test_bad_construction(kwargs, match):
    kw = dict(scenario="forage-v0", num_agents=2, **SMALL)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        multiworld.parallel_env(**kw)


def test_placeholders_are_not_available_yet():
    assert issubclass(UnavailableError, NotImplementedError) and issubclass(UnavailableError, ValueError)
    register_backend("later", unavailable("backend", "later"))
    try:
        assert "later" in BACKENDS and "later" not in available_backends()
        with pytest.raises(UnavailableError, match="the later backend is not available yet"):
            make(backend="later")
    finally:
        del BACKENDS["later"]
    # Whatever is still a placeholder today (the model backend, until it lands) fails the same way.
    for kind, registry, available in (
        ("backend", BACKENDS, available_backends()),
        ("runtime", RUNTIMES, available_runtimes()),
    ):
        for name in set(registry) - set(available):
            with pytest.raises(UnavailableError, match="not available yet"):
                make(**{kind: name})


def test_factory_registry():
    assert "oracle" in available_backends() and "local" in available_runtimes()
    with pytest.raises(ValueError, match="'oracle'"):
        make_simulator(backend="oracel")
    sim = make_simulator(scenario="roam-v0", num_agents=2, num_worlds=3, render=RenderConfig(16, 16))
    obs = sim.reset([1, 2, 3])
    assert obs.rgb.shape == (3, 2, 16, 16, 3)
    # A new backend plugs in through the registry with no env change.
    calls = []

    def traced(**spec):
        calls.append(spec["num_worlds"])
        return BACKENDS["oracle"](**spec)

    register_backend("traced", traced)
    try:
        env = make(backend="traced")
        env.reset(seed=0)
        assert calls == [1]
        assert "traced" in available_backends()
    finally:
        del BACKENDS["traced"]


@pytest.mark.parametrize("obs_type, shape", [("rgb", (16, 16, 3)), ("rgbd", (16, 16, 4))])
def test_image_spaces(obs_type, shape):
    env = make(obs_type=obs_type)
    for agent in env.possible_agents:
        space = env.observation_space(agent)
        assert space is env.observation_space(agent)
        assert env.action_space(agent) is env.action_space(agent)
        assert space == spaces.Box(0, 255, shape, np.uint8)
        assert env.action_space(agent) == spaces.Discrete(8)
    obs, _ = env.reset(seed=0)
    assert all(env.observation_space(a).contains(obs[a]) for a in env.agents)
    with pytest.raises(ValueError, match="unknown agent"):
        env.observation_space("agent_9")


def test_dict_observations_and_pose():
    env = make(obs_type="dict")
    obs, infos = env.reset(seed=4)
    space = env.observation_space("agent_0")
    assert isinstance(space, spaces.Dict) and set(space.spaces) == {"rgb", "pose"}
    for a in env.agents:
        assert space.contains(obs[a])
        assert obs[a]["pose"].dtype == np.float32 and obs[a]["pose"].shape == (3,)
        np.testing.assert_array_equal(obs[a]["pose"], infos[a]["pose"])


def test_rgbd_depth_channel_matches_simulator_depth():
    env = make(obs_type="rgbd")
    obs, _ = env.reset(seed=2)
    sim = make_simulator(scenario="forage-v0", num_agents=3, render=RenderConfig(16, 16), depth=True)
    ref = sim.reset([2])
    for i, a in enumerate(env.agents):
        np.testing.assert_array_equal(obs[a][..., :3], ref.rgb[0, i])
        np.testing.assert_array_equal(obs[a][..., 3], depth_to_uint8(ref.depth[0, i], env.max_depth))
    assert env.depth_scale == pytest.approx(16 * np.sqrt(2) / 255)


def test_state_and_render(tmp_path):
    env = make(render_mode="rgb_array")
    with pytest.raises(RuntimeError, match="reset"):
        env.render()
    with pytest.raises(RuntimeError, match="reset"):
        env.state()
    env.reset(seed=0)
    state = env.state()
    assert env.state_space.contains(state) and state.shape == (128, 128, 3)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    # human: PNGs on disk, no display needed; {frame} keeps every frame
    human = make(render_mode="human", render_path=tmp_path / "f_{frame}.png")
    human.reset(seed=0)
    human.step({})
    assert human.render() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f_000000.png", "f_000001.png", "f_000002.png"]
    assert make().render() is None  # no render_mode: nothing


# --- seeds


def test_seed_gives_the_simulators_world():
    env = make("push-v0")
    obs, _ = env.reset(seed=123)
    ref = make_simulator(scenario="push-v0", num_agents=3, render=RenderConfig(16, 16)).reset([123])
    for i, a in enumerate(env.agents):
        np.testing.assert_array_equal(obs[a], ref.rgb[0, i])
    assert env.world_seed == 123
    assert env.world_state().equals(generate(env.arena, [123]))


def test_unseeded_resets_follow_the_last_seeded_one():
    e1, e2 = make(), make()
    assert_same_step(e1.reset(seed=7), e2.reset(seed=7))
    a, b = e1.reset(), e2.reset()
    assert_same_step(a, b)
    assert e1.world_seed == e2.world_seed != 7
    other = make()
    other.reset(seed=8)
    other.reset()
    assert other.world_seed != e1.world_seed
    with pytest.raises(ValueError, match="seed"):
        e1.reset(seed=-1)
    with pytest.raises(ValueError, match="seed"):
        e1.reset(seed=1.5)


def test_start_state_option():
    env = make("roam-v0")
    start = generate(env.arena, [99])
    obs, _ = env.reset(seed=0, options={"start_state": start})
    assert env.world_state().equals(start)
    ref = make("roam-v0").reset(seed=99)[0]
    np.testing.assert_array_equal(obs["agent_1"], ref["agent_1"])
    with pytest.raises(ValueError, match="start_state"):
        env.reset(options={"start_state": "not a state"})


# --- stepping rules


def test_infos_and_versions():
    env = make(info_events="dicts")
    _, infos = env.reset(seed=0)
    assert set(infos) == set(env.agents)
    assert all(i["version"] == 0 and i["events"] == [] and i["world_events"] == [] for i in infos.values())
    policy = ScriptedPolicy(seed=0)
    seen_event = False
    for t in range(1, 200):
        acts = policy.act(env.world_state())[0]
        _, rew, _, _, infos = env.step({a: int(acts[i]) for i, a in enumerate(env.agents)})
        world = env.world_state()
        for i, a in enumerate(env.possible_agents):
            info = infos[a]
            assert info["version"] == t == int(world.step[0])
            np.testing.assert_array_equal(info["pose"], world.poses[0, i])
            assert all(e["agent"] == a for e in info["events"])
            assert all(e in info["world_events"] for e in info["events"])
            assert info["world_events"] is infos["agent_0"]["world_events"]
            assert info["picked"] == sum(e["type"] == "pickup" for e in info["events"])
            assert info["pushed"] == sum(e["type"] == "push" for e in info["events"])
        world_events = infos["agent_0"]["world_events"]
        assert world_events == env.last_events()
        assert sum(len(i["events"]) for i in infos.values()) == len(world_events)
        assert infos["agent_0"]["pickup_count"] == sum(e["type"] == "pickup" for e in world_events)
        if world_events:
            seen_event = True
            picked = {e["agent"] for e in world_events if e["type"] == "pickup"}
            assert all(rew[a] == (1.0 if a in picked else 0.0) for a in env.possible_agents)
            break
    assert seen_event


NUMERIC_INFO = {"pose", "version", "pushed", "picked", "pushed_box", "picked_item", "push_count", "pickup_count"}


def numeric_infos_ok(infos: dict) -> None:
    """Every agent's infos: the numeric keys only, each a number or a fixed-shape array."""
    for info in infos.values():
        assert set(info) == NUMERIC_INFO
        assert info["pose"].shape == (3,) and info["pose"].dtype == np.float32
        for key in NUMERIC_INFO - {"pose"}:
            assert type(info[key]) is int, key


@pytest.mark.parametrize("scenario", ["push-v0", "forage-v0"])
def test_default_infos_are_numeric_and_count_events(scenario):
    env = make(scenario, num_agents=4)
    _, infos = env.reset(seed=1)
    numeric_infos_ok(infos)
    assert env.last_events() == []
    policy = ScriptedPolicy(seed=1)
    kinds = set()
    for _ in range(300):
        acts = policy.act(env.world_state())[0]
        _, _, _, _, infos = env.step({a: int(acts[i]) for i, a in enumerate(env.agents)})
        numeric_infos_ok(infos)
        events = env.last_events()
        for a, info in infos.items():
            mine = [e for e in events if e["agent"] == a]
            pushes = [e for e in mine if e["type"] == "push"]
            pickups = [e for e in mine if e["type"] == "pickup"]
            assert info["pushed"] == len(pushes) and info["picked"] == len(pickups)
            assert info["pushed_box"] == (pushes[0]["box"] if pushes else -1)
            assert info["picked_item"] == (pickups[0]["item"] if pickups else -1)
            assert info["push_count"] == sum(e["type"] == "push" for e in events)
            assert info["pickup_count"] == sum(e["type"] == "pickup" for e in events)
        kinds |= {e["type"] for e in events}
        if not env.agents:
            break
    assert ("push" if scenario == "push-v0" else "pickup") in kinds
    events = env.last_events()
    events.append("mutated")
    assert "mutated" not in env.last_events()


def test_info_events_rejects_unknown_mode():
    with pytest.raises(ValueError, match="info_events"):
        make(info_events="lists")


def test_missing_or_none_actions_are_noop():
    ref = make()
    ref.reset(seed=5)
    ref_step = ref.step({a: int(Action.NOOP) for a in ref.agents})
    for actions in ({}, {"agent_1": None}, {"agent_0": 0}):
        env = make()
        env.reset(seed=5)
        assert_same_step(env.step(actions), ref_step)
    # ...and only the missing agent idles
    e1, e2 = make(), make()
    e1.reset(seed=5), e2.reset(seed=5)
    assert_same_step(e1.step({"agent_0": 1, "agent_2": 3}), e2.step({"agent_0": 1, "agent_1": 0, "agent_2": 3}))


@pytest.mark.parametrize(
    "action",
    [
        np.int8(3),
        np.int64(7),
        np.uint8(1),
        np.array(4),
        np.array(2, np.int16),
        Action.FORWARD,
        0,
        torch.tensor(5),
        torch.tensor(6, dtype=torch.uint8),
        torch.tensor(2, dtype=torch.int32),
    ],
)
def test_accepted_action_types(action):
    e1, e2 = make(), make()
    e1.reset(seed=1), e2.reset(seed=1)
    assert_same_step(e1.step({"agent_0": action}), e2.step({"agent_0": int(action)}))


BAD_ACTIONS = [
    ({"agent_7": 0}, "unknown agent"),
    ({"player_0": 0}, "unknown agent"),
    ({"agent_0": 8}, "out of range"),
    ({"agent_0": -1}, "out of range"),
    ({"agent_0": 2.5}, "integer"),
    ({"agent_0": float("nan")}, "integer"),
    ({"agent_0": 3.0}, "integer"),
    ({"agent_0": np.float32(1)}, "integer"),
    ({"agent_0": np.array(1.0)}, "integer"),
    ({"agent_0": np.array([1])}, "integer"),
    ({"agent_0": True}, "integer"),
    ({"agent_0": np.bool_(False)}, "integer"),
    ({"agent_0": "1"}, "integer"),
    ({"agent_0": torch.tensor(1.0)}, "tensor of dtype torch.float32"),
    ({"agent_0": torch.tensor(True)}, "tensor of dtype torch.bool"),
    ({"agent_0": torch.tensor([1])}, "shape \\(1,\\)"),
    ({"agent_0": torch.tensor(8)}, "out of range"),
    ({"agent_0": 1, "agent_2": 99}, "out of range"),
    ([1, 2, 3], "dict"),
]


@pytest.mark.parametrize("actions, match", BAD_ACTIONS)
def test_bad_actions_are_rejected_and_change_nothing(actions, match):
    env, fresh = make(), make()
    env.reset(seed=3), fresh.reset(seed=3)
    good = {"agent_0": 1, "agent_1": 4, "agent_2": 7}
    assert_same_step(env.step(good), fresh.step(good))
    with pytest.raises(ValueError, match=match):
        env.step(actions)
    # The rejected step left no trace: the env continues exactly like one that never saw it.
    for _ in range(3):
        assert_same_step(env.step(good), fresh.step(good))
    assert env.world_state().equals(fresh.world_state())


def test_order_errors():
    env = make()
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    env = make(max_cycles=2)
    env.reset(seed=0)
    env.step({})
    obs, rew, term, trunc, infos = env.step({})
    assert all(trunc.values()) and not any(term.values())
    assert set(obs) == set(rew) == set(infos) == set(env.possible_agents)
    assert env.agents == []
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step({})
    env.reset(seed=0)
    assert env.agents == env.possible_agents


def test_termination_removes_every_agent():
    env = make("forage-v0", num_agents=2)
    start = generate(env.arena, [0])
    # One item left, under agent_1: it is picked on the first step and the scenario ends.
    start.items_alive[:] = False
    start.items_alive[0, 0] = True
    start.items[0, 0] = np.floor(start.poses[0, 1, 1::-1]).astype(np.int16)
    env.reset(seed=0, options={"start_state": start})
    _, rew, term, trunc, infos = env.step({})
    assert term == {"agent_0": True, "agent_1": True} and not any(trunc.values())
    assert rew == {"agent_0": 0.0, "agent_1": 1.0}
    assert env.last_events() == [{"type": "pickup", "agent": "agent_1", "item": 0}]
    assert infos["agent_1"]["picked"] == 1 and infos["agent_1"]["picked_item"] == 0
    assert infos["agent_0"]["picked"] == 0 and infos["agent_0"]["pickup_count"] == 1
    assert env.agents == []


def test_aec_checks_actions_on_entry():
    aec = multiworld.env("forage-v0", num_agents=2, **SMALL)
    aec.reset(seed=0)
    assert aec.agent_selection == "agent_0"
    with pytest.raises(ValueError, match="integer"):
        aec.step(2.5)
    assert aec.agent_selection == "agent_0"
    aec.step(1)
    aec.step(np.int32(2))
    assert aec.agent_selection == "agent_0"
    par = make(num_agents=2)
    par.reset(seed=0)
    par_obs = par.step({"agent_0": 1, "agent_1": 2})[0]
    np.testing.assert_array_equal(aec.observe("agent_1"), par_obs["agent_1"])


def test_copies_rebuild_a_fresh_env():
    env = make("push-v0", obs_type="rgbd", max_cycles=9)
    env.reset(seed=0)
    dup = copy.deepcopy(env)
    assert dup is not env and dup.sim is not env.sim
    assert (dup.scenario.name, dup.obs_type, dup.max_cycles, dup.agents) == ("push-v0", "rgbd", 9, [])
    assert_same_step(dup.reset(seed=4), env.reset(seed=4))
