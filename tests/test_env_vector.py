"""The batched vector env (one simulator, E worlds) and SuperSuit's vector wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import supersuit
import torch

import multiworld
from multiworld.world.arena import generate
from multiworld.world.scenarios import get_scenario

SMALL = dict(height=16, width=16)


def vec(num_envs=3, scenario="forage-v0", num_agents=2, **kw):
    return multiworld.vector_env(num_envs=num_envs, scenario=scenario, num_agents=num_agents, **{**SMALL, **kw})


def par(scenario="forage-v0", num_agents=2, **kw):
    return multiworld.parallel_env(scenario, num_agents=num_agents, **{**SMALL, **kw})


def par_obs(env, obs) -> np.ndarray:
    return np.stack([obs[a] for a in env.possible_agents])


def test_shapes_and_spaces():
    v = vec(num_envs=3, num_agents=2, obs_type="rgbd")
    obs, infos = v.reset(seed=0)
    assert obs.shape == (3, 2, 16, 16, 4) and obs.dtype == np.uint8
    assert v.observation_space.contains(obs)
    assert v.single_observation_space.shape == (16, 16, 4)
    assert infos["reset"].all() and infos["pose"].shape == (3, 2, 3) and infos["seed"].tolist() == [0, 1, 2]
    obs, rew, term, trunc, infos = v.step(v.action_space.sample())
    assert rew.shape == term.shape == trunc.shape == (3, 2)
    assert rew.dtype == np.float32 and term.dtype == trunc.dtype == np.bool_
    assert infos["version"].tolist() == [1, 1, 1] and "events" not in infos
    for key in ("pushed", "picked", "pushed_box", "picked_item"):
        assert infos[key].shape == (3, 2) and infos[key].dtype == np.int64, key
    assert infos["push_count"].shape == infos["pickup_count"].shape == (3,)
    assert len(v.last_events()) == 3
    d = vec(num_envs=2, obs_type="dict")
    obs, _ = d.reset(seed=0)
    assert obs["rgb"].shape == (2, 2, 16, 16, 3) and obs["pose"].shape == (2, 2, 3)


def test_worlds_match_parallel_envs_of_consecutive_seeds():
    v = vec(num_envs=3, scenario="push-v0", num_agents=3)
    envs = [par("push-v0", num_agents=3) for _ in range(3)]
    obs, _ = v.reset(seed=10)
    for e, env in enumerate(envs):
        np.testing.assert_array_equal(obs[e], par_obs(env, env.reset(seed=10 + e)[0]))
    rng = np.random.default_rng(0)
    for _ in range(15):
        acts = rng.integers(0, 8, size=(3, 3))
        obs, rew, *_ = v.step(acts)
        for e, env in enumerate(envs):
            o, r, *_ = env.step(dict(zip(env.possible_agents, acts[e].tolist())))
            np.testing.assert_array_equal(obs[e], par_obs(env, o))
            np.testing.assert_array_equal(rew[e], [r[a] for a in env.possible_agents])


def test_constructor_seed_is_the_first_reset_seed():
    a, b = vec(seed=5), vec()
    oa, ia = a.reset()
    ob, ib = b.reset(seed=5)
    np.testing.assert_array_equal(oa, ob)
    np.testing.assert_array_equal(ia["seed"], ib["seed"])
    oa, ia = a.reset()  # later unseeded resets draw from the RNG the seed started
    ob, ib = b.reset()
    np.testing.assert_array_equal(ia["seed"], ib["seed"])
    assert ia["seed"].tolist() != [5, 6, 7]


def test_autoreset_next_step_all_worlds():
    v = vec(num_envs=2, scenario="roam-v0", max_cycles=3)
    v.reset(seed=0)
    zeros = np.zeros((2, 2), np.int64)
    for t in range(1, 4):
        obs, rew, term, trunc, infos = v.step(zeros)
        assert trunc.all() == (t == 3) and not term.any() and not infos["reset"].any()
    final = obs.copy()
    # Next call: every world restarts (actions ignored), reward 0, flags False.
    obs, rew, term, trunc, infos = v.step(np.full((2, 2), 1))
    assert infos["reset"].all() and not trunc.any() and not rew.any()
    assert infos["episode_step"].tolist() == [0, 0] and infos["version"].tolist() == [0, 0]
    assert not np.array_equal(obs, final)
    for e in range(2):
        env = par("roam-v0")
        np.testing.assert_array_equal(obs[e], par_obs(env, env.reset(seed=int(infos["seed"][e]))[0]))
    obs, rew, term, trunc, infos = v.step(zeros)
    assert infos["episode_step"].tolist() == [1, 1] and not infos["reset"].any()


# The oracle only: the setup makes world 1 end by an exact rule (its last item is under agent_0);
# the learned model decides endings itself. The model's one-world restart path, which this env
# uses, is tested below (test_step_and_restart_...) and its whole-batch autoreset in
# test_model_vector_env_autoresets_after_truncation.
@pytest.mark.parametrize("backend", ["oracle"])
def test_autoreset_one_world_while_others_continue(backend):
    v = vec(num_envs=3, scenario="forage-v0", num_agents=2, backend=backend)
    start = generate(v.arena, [0, 1, 2])
    # World 1 has one item left, under agent_0: it ends on the first step.
    start.items_alive[1] = False
    start.items_alive[1, 0] = True
    start.items[1, 0] = np.floor(start.poses[1, 0, 1::-1]).astype(np.int16)
    v.reset(seed=0, options={"start_state": start})
    refs = []
    for e in (0, 2):
        env = par(backend=backend)
        env.reset(options={"start_state": start.select(e)})
        refs.append((e, env))
    rng = np.random.default_rng(1)

    def step_and_check(acts):
        obs, rew, term, trunc, infos = v.step(acts)
        for e, env in refs:
            o, *_ = env.step(dict(zip(env.possible_agents, acts[e].tolist())))
            np.testing.assert_array_equal(obs[e], par_obs(env, o))
        return obs, rew, term, trunc, infos

    _, rew, term, _, infos = step_and_check(rng.integers(0, 8, (3, 2)))
    assert term[:, 0].tolist() == [False, True, False] and rew[1].tolist() == [1.0, 0.0]
    assert v.last_events()[1] == [{"type": "pickup", "agent": "agent_0", "item": 0}]
    assert infos["picked"][1].tolist() == [1, 0] and infos["picked_item"][1].tolist() == [0, -1]
    assert infos["pickup_count"][1] == 1
    obs, rew, term, _, infos = step_and_check(rng.integers(0, 8, (3, 2)))
    assert infos["reset"].tolist() == [False, True, False] and infos["episode_step"].tolist() == [2, 0, 2]
    assert infos["version"].tolist() == [2, 0, 2] and not term.any() and not rew[1].any()
    fresh = par(backend=backend)
    np.testing.assert_array_equal(obs[1], par_obs(fresh, fresh.reset(seed=int(infos["seed"][1]))[0]))
    for _ in range(3):
        step_and_check(rng.integers(0, 8, (3, 2)))


def test_no_autoreset_requires_reset():
    v = vec(num_envs=2, scenario="roam-v0", max_cycles=1, autoreset=False)
    v.reset(seed=0)
    v.step(np.zeros((2, 2), int))
    with pytest.raises(RuntimeError, match="autoreset=False"):
        v.step(np.zeros((2, 2), int))
    v.reset()
    v.step(np.zeros((2, 2), int))


@pytest.mark.parametrize(
    "actions, match",
    [
        (np.zeros((3, 2), np.float32), "integer"),
        (np.zeros((3, 2), bool), "integer"),
        (torch.zeros((3, 2)), "integer"),
        (torch.zeros((3, 2), dtype=torch.bool), "integer"),
        (np.full((3, 2), 8), "out of range"),
        (np.full((3, 2), -1), "out of range"),
        (np.zeros((2, 3), int), "shape"),
        (np.zeros(6, int), "shape"),
        ([[0, 0], [0, 0], [0, 2.5]], "integer"),
    ],
)
def test_bad_actions_are_rejected_and_change_nothing(actions, match):
    v, fresh = vec(), vec()
    v.reset(seed=0), fresh.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        v.step(actions)
    good = np.arange(6).reshape(3, 2)
    a, b = v.step(good), fresh.step(good)
    for x, y in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(x, y)


def test_order_errors_and_bad_construction():
    with pytest.raises(RuntimeError, match="reset"):
        vec().step(np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="num_envs"):
        vec(num_envs=0)
    with pytest.raises(ValueError, match="valid backends"):
        vec(backend="nope")


def test_state_and_frame():
    v = vec(num_envs=2)
    v.reset(seed=0)
    assert v.state().shape == (2, 128, 128, 3)
    assert v.frame(1).dtype == np.uint8


@pytest.mark.parametrize("scenario", ["roam-v0", "forage-v0"])
def test_supersuit_vector_wrappers(scenario):
    env = multiworld.parallel_env(scenario, num_agents=3, max_cycles=4, **SMALL)
    venv = supersuit.pettingzoo_env_to_vec_env_v1(env)
    venv = supersuit.concat_vec_envs_v1(venv, num_vec_envs=2, num_cpus=0, base_class="gymnasium")
    assert venv.num_envs == 6
    obs, infos = venv.reset(seed=0)
    assert obs.shape == (6, 16, 16, 3) and obs.dtype == np.uint8 and len(infos) == 6
    for t in range(1, 7):
        obs, rew, term, trunc, infos = venv.step(np.array([venv.action_space.sample() for _ in range(6)]))
        assert obs.shape == (6, 16, 16, 3) and rew.shape == term.shape == trunc.shape == (6,)
        assert bool(trunc.all()) == (t == 4)  # all agents stay until the episode ends together
        if t == 4:
            assert all("terminal_observation" in i for i in infos)


def _sim(backend: str, num_worlds: int):
    from multiworld.runtime.factory import make_simulator
    from multiworld.sim.private import PrivateStateSimulator
    from multiworld.world.render import RenderConfig

    def make(worlds: int, kind: str = backend):
        small = RenderConfig(height=16, width=16)
        return make_simulator(kind, scenario="push-v0", num_agents=3, num_worlds=worlds, render=small)

    if backend == "private-oracle":
        return PrivateStateSimulator(lambda w: make(w, "oracle"), num_agents=3, num_worlds=num_worlds)
    return make(num_worlds)


@pytest.mark.parametrize("backend", ["oracle", "model", "private-oracle"])
def test_step_and_restart_restarts_one_world_and_leaves_the_others_alone(backend):
    """World 1 starts over mid-batch: worlds 0 and 2 go on exactly as if nothing happened (private
    copies stay private), and world 1 goes on exactly like a simulator reset to its new start."""
    batch, alone, rest = _sim(backend, 3), _sim(backend, 3), _sim(backend, 1)
    arena = get_scenario("push-v0").arena_config(num_agents=3)
    fresh = generate(arena, [100])
    restart = np.array([False, True, False])
    batch.reset([5, 6, 7]), alone.reset([5, 6, 7])
    rng = np.random.default_rng(0)
    for t in range(5):
        acts = rng.integers(0, 8, (3, 3))
        if t == 1:
            a, ref = batch.step_and_restart(acts, restart, fresh, [5, 100, 7]), alone.step(acts)
            one = rest.reset([0], start=fresh)
            assert a.version.tolist() == [2, 0, 2] and not a.rewards[1].any() and a.events[1] == []
            assert not a.terminated[1]
        else:
            a, ref = batch.step(acts), alone.step(acts)
            one = rest.step(acts[1:2]) if t > 1 else None
        keep = [0, 2]
        for field in ("rgb", "poses", "rewards", "terminated", "version"):
            np.testing.assert_array_equal(getattr(a, field)[keep], getattr(ref, field)[keep], err_msg=field)
            if one is None:
                continue
            if backend == "model" and field in ("rgb", "poses", "rewards"):
                # A world in a batch of 3 against a batch of 1: the learned model's batched matrix
                # products may round differently with the batch size (last float bit).
                mine, theirs = getattr(a, field)[1:2].astype(np.float64), getattr(one, field).astype(np.float64)
                np.testing.assert_allclose(mine, theirs, atol=1.0 if field == "rgb" else 1e-4, err_msg=field)
            else:
                np.testing.assert_array_equal(getattr(a, field)[1:2], getattr(one, field), err_msg=field)
        assert [a.events[0], a.events[2]] == [ref.events[0], ref.events[2]]
        if backend == "private-oracle":  # copy (b, i) is inner world 3 b + i
            mine, theirs = batch.copies(), alone.copies()
            assert mine.select([0, 1, 2, 6, 7, 8]).equals(theirs.select([0, 1, 2, 6, 7, 8]))
    with pytest.raises(ValueError, match="restart selects 1 worlds but start has 2"):
        batch.step_and_restart(np.zeros((3, 3), np.int64), restart, generate(arena, [1, 2]), [5, 1, 7])
    with pytest.raises(ValueError, match="bool mask"):
        batch.step_and_restart(np.zeros((3, 3), np.int64), np.array([0, 1, 0]), fresh, [5, 100, 7])


def test_oracle_step_and_restart_equals_the_generic_step_then_reset():
    from multiworld.sim.base import Simulator

    fast, generic = _sim("oracle", 3), _sim("oracle", 3)
    arena = get_scenario("push-v0").arena_config(num_agents=3)
    restart = np.array([True, False, True])
    fast.reset([1, 2, 3]), generic.reset([1, 2, 3])
    acts = np.random.default_rng(0).integers(0, 8, (3, 3))
    a = fast.step_and_restart(acts, restart, generate(arena, [8, 9]), [8, 2, 9])
    b = Simulator.step_and_restart(generic, acts, restart, generate(arena, [8, 9]), [8, 2, 9])
    for field in ("rgb", "poses", "rewards", "terminated", "version"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert a.events == b.events and fast.world_state().equals(generic.world_state())


def test_torch_actions_and_event_dicts_opt_in():
    a, b = vec(num_envs=2, num_agents=2), vec(num_envs=2, num_agents=2, info_events="dicts")
    _, ia = a.reset(seed=4)
    _, ib = b.reset(seed=4)
    assert "events" not in ia and ib["events"] == [[], []]
    acts = np.random.default_rng(0).integers(0, 8, (2, 2))
    ra, rb = a.step(torch.as_tensor(acts)), b.step(acts)
    np.testing.assert_array_equal(ra[0], rb[0])
    assert rb[4]["events"] == a.last_events() == b.last_events()
    for key in ("pushed", "picked", "pushed_box", "picked_item", "push_count", "pickup_count"):
        np.testing.assert_array_equal(ra[4][key], rb[4][key])
    with pytest.raises(ValueError, match="info_events"):
        vec(info_events="list")


def test_model_vector_env_autoresets_after_truncation():
    """The learned backend under the vector env: every world truncates at max_cycles, and the next
    step restarts them all (episode_step 0, their new seeds) with the first views of a fresh reset."""
    v = vec(num_envs=2, scenario="roam-v0", num_agents=2, backend="model", max_cycles=2)
    v.reset(seed=3)
    zeros = np.zeros((2, 2), np.int64)
    v.step(zeros)
    _, _, term, trunc, _ = v.step(zeros)
    assert trunc.all() and not term.any()
    obs, rew, term, trunc, infos = v.step(zeros)
    assert infos["reset"].all() and infos["episode_step"].tolist() == [0, 0] and not rew.any()
    fresh = vec(num_envs=2, scenario="roam-v0", num_agents=2, backend="model", max_cycles=2)
    first, _ = fresh.reset(seed=0, options={"start_state": generate(v.arena, infos["seed"].tolist())})
    np.testing.assert_array_equal(obs, first)


def test_start_worlds_rearrange_every_generated_world():
    """``start_worlds`` rearranges the worlds of seeded resets and of autoresets (with the env's rng);
    a start state given to ``reset`` is used as it is; a bad function is refused by name."""
    calls = []

    def no_items(worlds, rng):
        assert isinstance(rng, np.random.Generator)
        calls.append(worlds.num_worlds)
        worlds = worlds.copy()
        worlds.items_alive[:] = False
        return worlds

    v = vec(num_envs=3, scenario="forage-v0", max_cycles=2, start_worlds=no_items)
    v.reset(seed=5)
    assert calls == [3] and not v.world_state().items_alive.any()
    plain = generate(v.arena, [5, 6, 7])
    np.testing.assert_array_equal(v.world_state().walls, plain.walls)
    v.reset(seed=0, options={"start_state": plain})
    assert calls == [3] and v.world_state().items_alive.any(), "a given start state is not rearranged"
    for _ in range(3):  # max_cycles 2: every world ends, then all restart at once
        v.step(np.zeros((3, 2), np.int64))
    assert calls == [3, 3] and not v.world_state().items_alive.any()
    with pytest.raises(TypeError, match="start_worlds must be a function"):
        vec(start_worlds="stage")
    v = vec(num_envs=2, start_worlds=lambda worlds, rng: worlds.select([0]))
    with pytest.raises(ValueError, match="start_worlds must return a WorldState of 2 worlds"):
        v.reset(seed=0)
