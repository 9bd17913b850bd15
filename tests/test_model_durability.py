"""Model worlds as durable as oracle worlds: exact resume from any stored row, the checkpoint that
wrote a world checked on resume, and kill -9 crash trials of ``multiworld run --backend model``
(the full 20 trials: ``benchmarks/model_crash.py``)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest
import torch

import multiworld
from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from multiworld.runtime.recording import EpisodeRecorder
from multiworld.state import WorldStore

STEPS = 10
# A world per scenario whose decoded static scene (walls, floor, goals) has drifted from the one
# read out at reset by the later resume points: resuming must keep the reset's. (Picked for the
# shipped checkpoint; with no push or pickup at those points, since a reset reports no events.)
SEEDS = {"roam-v0": 12, "forage-v0": 0, "push-v0": 6}


def _snapshot(env, out) -> dict:
    sim = env.unwrapped.sim
    return {
        "out": out,
        "state": env.state().copy(),
        "world_state": env.world_state().copy(),
        "drifted": not np.array_equal(sim.decoded_state().walls, sim.world_state().walls)
        or not np.array_equal(sim.decoded_state().floor, sim.world_state().floor),
    }


def assert_same(a, b, where: str) -> None:
    """Deep, exact equality of env outputs (dicts, tuples, arrays, tensors, world states, numbers)."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif hasattr(a, "equals"):
        assert a.equals(b), where
    else:
        assert a == b, where


def record_live(url: str, scenario: str, seed: int, steps: int = STEPS, **kwargs):
    """Run the model backend in the parallel env, recording the world (views not asked for) and
    every output of every step; returns the snapshots and the joint actions."""
    env = multiworld.parallel_env(scenario, num_agents=2, backend="model", **kwargs)
    rng = np.random.default_rng(seed)
    snaps, actions = [_snapshot(env, env.reset(seed=seed))], []
    with WorldStore.open(url, mode="w") as store:
        rec = EpisodeRecorder(store, "w", env.sim, scenario=scenario, seed=seed, config={}, frames=False)
        rec.start(env._last)
        for _ in range(steps):
            act = {a: int(rng.integers(0, 8)) for a in env.agents}
            snaps.append(_snapshot(env, env.step(act)))
            actions.append(act)
            rec.step(env._last, np.array([[act[a] for a in env.possible_agents]]))
            if not env.agents:
                break
        rec.close()
    return snaps, actions


@pytest.mark.parametrize("scenario", sorted(SEEDS))
def test_resume_is_exact_at_any_stored_row(tmp_path, scenario):
    """Resume at three rows, replay the stored actions: observations, rewards, flags, infos, state()
    and world_state() equal the live run's, step for step."""
    url = str(tmp_path / "w.zarr")
    snaps, actions = record_live(url, scenario, SEEDS[scenario])
    n = len(snaps) - 1
    assert n == STEPS, f"the episode ended after {n} steps"
    reader = WorldStore.open(url, mode="r").world("w")
    assert not reader.has_frames  # views not asked for, and not needed to resume
    points = (0, n // 2, n - 1)
    assert any(snaps[t]["drifted"] for t in points[1:]), "no resume point tests the static scene"
    env = multiworld.parallel_env(scenario, num_agents=2, backend="model")
    for t0 in points:  # one env resumed three times: nothing of an earlier resume may leak into the next
        obs, infos = env.reset(options={"from": {"store": url, "world": "w", "step": t0}})
        live = snaps[t0]
        assert_same((obs, infos), (live["out"][0], live["out"][-1]), f"reset at {t0}")
        for key in ("state", "world_state"):
            assert_same(_snapshot(env, None)[key], live[key], f"reset at {t0}: {key}")
        for t in range(t0 + 1, n + 1):
            got = _snapshot(env, env.step(actions[t - 1]))
            for key in ("out", "state", "world_state"):
                assert_same(got[key], snaps[t][key], f"resumed at {t0}, step {t}: {key}")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> pathlib.Path:
    from tests.helpers.model import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny")


def test_a_stored_model_world_names_its_checkpoint_and_refuses_another(tmp_path, tiny_checkpoint):
    url = str(tmp_path / "w.zarr")
    env = multiworld.parallel_env("forage-v0", num_agents=2, backend="model", checkpoint=str(tiny_checkpoint))
    env.reset(seed=3)
    with WorldStore.open(url, mode="w") as store:
        rec = EpisodeRecorder(store, "w", env.sim, scenario="forage-v0", seed=3, config={})
        rec.start(env._last)
        env.step({})  # every agent NOOP
        rec.step(env._last, np.zeros((1, 2), np.int64))
        rec.close()
        # a world whose tokens come with no record of the weights that wrote them
        state, tokens = env.world_state(), env.sim.tokens()
        store.create_world(
            "anonymous", state, scenario="forage-v0", seed=3, tokens_shape=tokens.shape[1:], tokens=tokens[0]
        ).close()
    tiny = json.loads((tiny_checkpoint / "config.json").read_text())["weights_sha256"]
    shipped = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())["weights_sha256"]
    reader = WorldStore.open(url, mode="r").world("w")
    assert reader.checkpoint_hash == tiny == env.sim.checkpoint_sha256
    assert reader.attrs["model"] == {
        "init": "map",
        "precision": env.sim.precision,  # bf16 on CPUs that compute it natively, else fp32
    }
    assert env.sim.precision in ("fp32", "bf16")

    other = multiworld.parallel_env("forage-v0", num_agents=2, backend="model")  # the shipped checkpoint
    with pytest.raises(CheckpointError) as err:
        other.reset(options={"from": {"store": url, "world": "w", "step": 1}})
    assert tiny in str(err.value) and shipped in str(err.value) and "'default'" in str(err.value)
    with pytest.raises(CheckpointError, match="records no checkpoint sha256") as err:
        other.reset(options={"from": {"store": url, "world": "anonymous", "step": 0}})
    assert shipped in str(err.value)
    # the oracle reads only the stored symbolic state: any model world resumes there
    oracle = multiworld.parallel_env("forage-v0", num_agents=2)
    oracle.reset(options={"from": {"store": url, "world": "w", "step": 1}})
    # the checkpoint that wrote it resumes it
    same = multiworld.parallel_env("forage-v0", num_agents=2, backend="model", checkpoint=str(tiny_checkpoint))
    same.reset(options={"from": {"store": url, "world": "w", "step": 1}})
    assert np.array_equal(same.unwrapped.sim.tokens()[0], reader.tokens(1))

    # weights missing: a clear error before anything runs
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"incomplete: model\.safetensors is missing"):
        multiworld.parallel_env("forage-v0", num_agents=2, backend="model", checkpoint=str(broken))


def _store_with_attrs(url: str, sim, attrs: dict) -> None:
    """Row 0 of ``sim``'s world 0 stored as world "w" with the given attributes."""
    with WorldStore.open(url, mode="w") as store:
        tokens = sim.tokens()
        store.create_world(
            "w",
            sim.world_state(),
            scenario="roam-v0",
            seed=1,
            checkpoint_hash=sim.checkpoint_sha256,
            attrs=attrs,
            tokens_shape=tokens.shape[1:],
            tokens_dtype="float32",
            tokens=tokens[0],
        ).close()


def test_worlds_stored_before_the_generative_head_was_removed(tmp_path, tiny_checkpoint):
    """Stores written while the model had a generative head carry ``sampler_steps`` and ``noise_key``:
    a world that rendered deterministically (``sampler_steps`` 0) resumes exactly as before; one
    that ran the head is refused with a clear error."""
    env = multiworld.parallel_env("roam-v0", num_agents=2, backend="model", checkpoint=str(tiny_checkpoint))
    obs, _ = env.reset(seed=1)
    sim = env.unwrapped.sim
    old = {"model": {"init": "map", "sampler_steps": 0, "noise_key": 12345, "precision": sim.precision}}
    url = str(tmp_path / "old.zarr")
    _store_with_attrs(url, sim, old)
    resumed, _ = env.reset(options={"from": {"store": url, "world": "w", "step": 0}})
    assert_same(resumed, obs, "resumed old world")
    old["model"]["sampler_steps"] = 2
    url = str(tmp_path / "sampled.zarr")
    _store_with_attrs(url, sim, old)
    with pytest.raises(ValueError, match=r"generative head \(sampler_steps=2\), which was removed"):
        env.reset(options={"from": {"store": url, "world": "w", "step": 0}})


def _crash_module():
    path = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "model_crash.py"
    spec = importlib.util.spec_from_file_location("model_crash", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_kill_9_during_a_model_run_keeps_every_committed_step_and_resumes_exactly(tmp_path):
    """Three crash trials (benchmarks/model_crash.py runs 20): a `multiworld run --backend model` killed
    at a random moment of its steps; every committed row equals the clean run's, and a resume from
    the last committed row continues it bit for bit."""
    crash = _crash_module()
    cfg = crash.TrialConfig(agents=2, steps=40)
    reference = crash.reference_run(tmp_path / "reference", cfg)
    rng = np.random.default_rng(18)
    results = [crash.crash_trial(tmp_path / f"trial{i}", cfg, reference, rng, in_steps=True) for i in range(3)]
    for r in results:
        assert r["intact"] and r["resume_exact"], r
    assert sum(r["committed_rows"] for r in results) > 0, results
