"""The ray runtime: same views as local, version checks, restarts of killed actors, bad options."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

import multiworld
from multiworld.runtime.factory import make_simulator
from multiworld.runtime.ray_options import (
    RayOptions,
    VersionMismatchError,
    WorldActorLostError,
    ray_options,
    validate_options,
)
from multiworld.state import WorldStore
from multiworld.world.render import RenderConfig

RENDER = RenderConfig(height=24, width=24)
pytestmark = pytest.mark.usefixtures("ray_session")


def _pair(num_agents: int, num_worlds: int = 1, **opts):
    spec = dict(num_agents=num_agents, num_worlds=num_worlds, render=RENDER)
    local = make_simulator("oracle", "local", "forage-v0", **spec)
    remote = make_simulator("oracle", "ray", "forage-v0", **spec, ray_options=opts)
    return local, remote


def _same(a, b) -> None:
    assert np.array_equal(a.rgb, b.rgb)
    assert np.array_equal(a.version, b.version)
    assert np.array_equal(a.poses, b.poses)
    assert np.array_equal(a.rewards, b.rewards)
    assert np.array_equal(a.terminated, b.terminated)
    assert a.events == b.events


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)


def test_ray_matches_local_bit_for_bit_and_rejects_stale_views():
    local, remote = _pair(5, agents_per_actor=2)  # actors of 2, 2 and 1 agents
    try:
        assert len(remote.actors) == 3
        _same(local.reset([11]), remote.reset([11]))
        rng = np.random.default_rng(0)
        for _ in range(12):
            actions = rng.integers(0, 8, (1, 5))
            _same(local.step(actions), remote.step(actions))
        assert remote.world_state().equals(local.world_state())
        # A stale actor (renders the previous version) makes the step fail loudly.
        import ray

        ray.get(remote.actors[1].set_stale.remote(1))
        with pytest.raises(VersionMismatchError, match=r"agent actor 1 .* version \[12\].*version \[13\]"):
            remote.step(np.zeros((1, 5), np.int64))
    finally:
        remote.close()


def test_parallel_env_with_ray_runtime_and_options():
    with ray_options(agents_per_actor=1):
        env = multiworld.parallel_env("push-v0", num_agents=2, runtime="ray", height=16, width=16, max_cycles=3)
    ref = multiworld.parallel_env("push-v0", num_agents=2, height=16, width=16, max_cycles=3)
    try:
        assert len(env.sim.actors) == 2
        obs, infos = env.reset(seed=4)
        obs_ref, _ = ref.reset(seed=4)
        for t in range(3):
            assert all(np.array_equal(obs[a], obs_ref[a]) for a in env.possible_agents)
            assert infos["agent_0"]["version"] == t
            if t == 2:  # no store: the restarted actor gets its recent frames from the world actor
                _kill(env.sim.actor_pids()["agents"][0])
            actions = {a: t % 8 for a in env.agents}
            obs, _, _, trunc, infos = env.step(actions)
            obs_ref, *_ = ref.step(actions)
        assert all(np.array_equal(obs[a], obs_ref[a]) for a in env.possible_agents)
        assert all(trunc.values()) and env.agents == []
        assert env.sim.restarts["agent"] == 1
        import ray

        recent = ray.get(env.sim.actors[0].recent_frames.remote())
        assert [int(v[0]) for v, _ in recent] == [0, 1, 2, 3]
        assert np.array_equal(recent[-1][1][0, 0], obs["agent_0"])
    finally:
        env.close()


def test_killed_agent_actor_restarts_and_store_has_every_step_once(tmp_path):
    url = str(tmp_path / "store")
    local, remote = _pair(3, agents_per_actor=2, store=url, record_frames=True, history=3)
    try:
        rng = np.random.default_rng(1)
        first = local.reset([7])
        frames = [first.rgb]
        _same(first, remote.reset([7]))
        actions = rng.integers(0, 8, (8, 1, 3))
        for t in range(8):
            if t == 4:
                _kill(remote.actor_pids()["agents"][1])  # the actor of agent 2, mid-episode
            a, b = local.step(actions[t]), remote.step(actions[t])
            _same(a, b)
            frames.append(a.rgb)
        assert remote.restarts == {"agent": 1, "world": 0}
        import ray

        recent = ray.get(remote.actors[1].recent_frames.remote())  # restored from the store, then extended
        assert [int(v[0]) for v, _ in recent] == [6, 7, 8]
        assert all(np.array_equal(rgb, frames[int(v[0])][:, 2:]) for v, rgb in recent)
    finally:
        remote.close()
    reader = WorldStore.open(url, "r").world("ep00000")
    assert reader.steps == 9
    assert reader.read("step").tolist() == list(range(9))
    assert all(np.array_equal(reader.frames(t), frames[t][0]) for t in range(9))
    assert np.array_equal(reader.actions(1, 9), actions[:, 0])


def test_killed_world_actor_resumes_from_the_store(tmp_path):
    url = str(tmp_path / "store")
    local, remote = _pair(2, num_worlds=2, agents_per_actor=2, store=url)  # two worlds: ep00000-b0, -b1
    try:
        _same(local.reset([3, 4]), remote.reset([3, 4]))
        for t in range(6):
            if t == 3:
                _kill(remote.actor_pids()["world"])
            actions = np.array([[t % 8, (t + 3) % 8], [(t + 1) % 8, t % 8]])
            _same(local.step(actions), remote.step(actions))
        assert remote.restarts["world"] == 1
    finally:
        remote.close()
    store = WorldStore.open(url, "r")
    for b in range(2):
        reader = store.world(f"ep00000-b{b}")
        assert reader.read("step").tolist() == list(range(7))
        assert reader.state(6).equals(local.world_state().select(b))


def test_killed_world_actor_without_store_is_a_clear_error():
    remote = make_simulator("oracle", "ray", "roam-v0", num_agents=1, render=RENDER)
    try:
        remote.reset([0])
        _kill(remote.actor_pids()["world"])
        with pytest.raises(WorldActorLostError, match="no store"):
            remote.step(np.zeros((1, 1), np.int64))
    finally:
        remote.close()


@pytest.mark.parametrize(
    "opts, match",
    [
        ({"agents_per_actor": 0}, "agents_per_actor"),
        ({"agents_per_actor": -2}, "agents_per_actor"),
        ({"agents_per_actor": 1.5}, "agents_per_actor"),
        ({"agents_per_actor": True}, "agents_per_actor"),
        ({"num_gpus": -1}, "num_gpus"),
        ({"num_gpus": "one"}, "num_gpus"),
        ({"record_frames": True}, "store"),
    ],
)
def test_bad_options_are_rejected_before_anything_starts(opts, match):
    with pytest.raises(ValueError, match=match):
        validate_options(RayOptions(**opts), 4)


def test_more_gpus_than_the_cluster_has_is_rejected_before_actors_start():
    with pytest.raises(ValueError, match="GPUs"):
        make_simulator("oracle", "ray", "roam-v0", num_agents=2, render=RENDER, ray_options={"num_gpus": 1})
    with pytest.raises(TypeError):
        with ray_options(agents_per_actr=2):
            pass


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny, untrained world model (enough to run the model backend)."""
    from tests.helpers.model import save_tiny_checkpoint

    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny"))


def test_model_backend_matches_local_and_resumes_from_its_tokens(tiny_checkpoint, tmp_path):
    spec = dict(scenario="roam-v0", num_agents=3, checkpoint=tiny_checkpoint)
    local = make_simulator("model", "local", **spec)
    opts = {"agents_per_actor": 2, "store": str(tmp_path / "store")}
    remote = make_simulator("model", "ray", **spec, ray_options=opts)
    try:
        _same(local.reset([1]), remote.reset([1]))
        rng = np.random.default_rng(0)
        for t in range(4):
            if t == 2:
                _kill(remote.actor_pids()["world"])  # recovers from the stored tokens
            actions = rng.integers(0, 8, (1, 3))
            _same(local.step(actions), remote.step(actions))
        assert remote.restarts["world"] == 1
    finally:
        remote.close()
    assert WorldStore.open(opts["store"], "r").world("ep00000").has_tokens


def test_model_vector_env_autoreset_on_ray_equals_local(tmp_path):
    """The vector env's autoreset (worlds ending at different steps) on the ray runtime: the same
    observations, rewards, flags and infos as the local runtime, step for step."""
    from tests.helpers.model import save_tiny_checkpoint

    calm = str(save_tiny_checkpoint(tmp_path / "calm", seed=1))  # its ending head never fires
    kwargs = dict(num_agents=2, backend="model", checkpoint=calm, max_cycles=6, height=24, width=24)
    local = multiworld.vector_env(3, "push-v0", **kwargs)
    remote = multiworld.vector_env(3, "push-v0", runtime="ray", **kwargs)
    try:
        out_l, out_r = local.reset(seed=5), remote.reset(seed=5)
        for env in (local, remote):
            env._cycles[:] = [0, 2, 4]  # the worlds truncate at different steps: partial autoresets
        rng = np.random.default_rng(2)
        restarted = 0
        for _ in range(14):
            actions = rng.integers(0, 8, (3, 2))
            out_l, out_r = local.step(actions), remote.step(actions)
            for x, y in zip(out_l[:4], out_r[:4]):
                assert np.array_equal(x, y)
            assert set(out_l[4]) == set(out_r[4])
            assert all(np.array_equal(out_l[4][k], out_r[4][k]) for k in out_l[4])
            restarted += int(out_l[4]["reset"].any())
        assert restarted >= 4
        assert remote.world_state().equals(local.world_state())
    finally:
        remote.close()


def _stored(url: str) -> dict:
    """Every world of the store at ``url``: its attributes (but its creation time) and every array."""
    out = {}
    with WorldStore.open(url, "r") as store:
        for wid in store.worlds():
            reader = store.world(wid)
            arrays = {**reader.static, **{n: reader.read(n) for n in reader.arrays if n not in reader.static}}
            out[wid] = ({k: v for k, v in reader.attrs.items() if k != "created"}, arrays)
    return out


@pytest.mark.parametrize("backend", ["oracle", "model"])
def test_local_and_ray_runtimes_record_the_same_store(backend, tiny_checkpoint, tmp_path):
    """One scenario with the same seeds and actions, autoresets included, run by the local runtime (its
    simulator and the recorder) and by the ray runtime (its world actor): the same observations, and two
    stores with the same worlds, every array and every attribute equal (but the time each was created).
    The running worlds keep their store worlds; every restarted world gets a new one."""
    from multiworld.runtime.recording import WorldsRecorder
    from multiworld.world.arena import generate

    spec = dict(scenario="forage-v0", num_agents=2, num_worlds=3, render=RENDER)
    if backend == "model":
        spec["checkpoint"] = tiny_checkpoint
    urls = {"local": str(tmp_path / "local"), "ray": str(tmp_path / "ray")}
    local = make_simulator(backend, "local", **spec)
    opts = {"agents_per_actor": 1, "store": urls["ray"], "record_frames": True}
    remote = make_simulator(backend, "ray", **spec, ray_options=opts)
    store = WorldStore.open(urls["local"], "w")
    recorder = WorldsRecorder(store, local, "forage-v0", frames=True)
    seeds, rng = [1, 2, 3], np.random.default_rng(0)
    try:
        recorder.begin({b: f"ep00000-b{b}" for b in range(3)}, seeds)
        obs = local.reset(seeds)
        _same(obs, remote.reset(seeds))
        recorder.record(obs, None)
        plan = {2: [False, True, False], 4: [True, False, True]}  # the worlds that start over at step t
        for t in range(6):
            actions = rng.integers(0, 8, (3, 2))
            if t in plan:
                mask = np.array(plan[t])
                seeds = [100 * t + b if m else s for b, (m, s) in enumerate(zip(mask, seeds))]
                fresh = generate(local.arena, [seeds[b] for b in np.flatnonzero(mask)])
                recorder.begin({b: f"ep{t // 2:05d}-b{b}" for b in np.flatnonzero(mask)}, seeds)
                obs = local.step_and_restart(actions, mask, fresh, seeds)
                _same(obs, remote.step_and_restart(actions, mask, fresh, seeds))
            else:
                obs = local.step(actions)
                _same(obs, remote.step(actions))
            recorder.record(obs, actions)
        assert remote.world_state().equals(local.world_state())
    finally:
        recorder.close()
        store.close()
        remote.close()
    ours, theirs = _stored(urls["local"]), _stored(urls["ray"])
    ids = ["ep00000-b0", "ep00000-b1", "ep00000-b2", "ep00001-b1", "ep00002-b0", "ep00002-b2"]
    assert sorted(ours) == sorted(theirs) == ids
    for wid, (attrs, arrays) in ours.items():
        assert attrs == theirs[wid][0], wid
        assert arrays.keys() == theirs[wid][1].keys(), wid
        for name, value in arrays.items():
            other = theirs[wid][1][name]
            if name == "events":
                assert value == other, (wid, name)
            else:
                assert value.dtype == other.dtype and np.array_equal(value, other, equal_nan=True), (wid, name)
    assert ours["ep00000-b1"][1]["step"].tolist() == [0, 1, 2] and ours["ep00001-b1"][0]["seed"] == 201
    assert ours["ep00000-b0"][0]["checkpoint_hash"] == local.checkpoint_sha256
    assert ("tokens" in ours["ep00001-b1"][1]) == (backend == "model") and "frames" in ours["ep00001-b1"][1]
