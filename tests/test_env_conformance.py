"""PettingZoo conformance of every registered scenario on every available backend.

Backends come from the factory's registry, so a newly registered backend (the learned model)
is tested here without edits. Images are small (16x16) except where the default size matters.
"""

from __future__ import annotations

import functools
import types
import warnings

import numpy as np
import pytest
from pettingzoo.test import (
    api_test,
    max_cycles_test,
    parallel_api_test,
    parallel_seed_test,
    render_test,
    seed_test,
    state_test,
)

import multiworld
from multiworld.agents.policies import RandomPolicy
from multiworld.runtime.factory import available_backends
from multiworld.scenarios import load
from multiworld.world.scenarios import SCENARIOS

SCEN = sorted(SCENARIOS)
BACKENDS = available_backends()
AGENT_COUNTS = [1, 3, 7, 16]
SMALL = dict(height=16, width=16)


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    # PettingZoo's tests report most problems as warnings: make them fail.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _module(scenario: str, backend: str, **kw) -> types.SimpleNamespace:
    """The scenario module's constructors with backend and options bound (max_cycles_test takes a module)."""
    mod = load(scenario)
    return types.SimpleNamespace(
        parallel_env=functools.partial(mod.parallel_env, backend=backend, **kw),
        env=functools.partial(mod.env, backend=backend, **kw),
    )


def test_every_scenario_has_a_module():
    for name in SCENARIOS:
        mod = load(name)
        for fn in ("parallel_env", "env", "raw_env"):
            assert callable(getattr(mod, fn)), f"{mod.__name__} lacks {fn}"
        env = mod.parallel_env(num_agents=2, **SMALL)
        assert env.scenario.name == name
        assert str(env) == "multiworld_" + name.replace("-", "_")
        assert mod.raw_env(num_agents=2, **SMALL).unwrapped.scenario.name == name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", SCEN)
@pytest.mark.parametrize("num_agents", AGENT_COUNTS)
def test_api(scenario, backend, num_agents):
    mod = _module(scenario, backend, num_agents=num_agents, **SMALL)
    parallel_api_test(mod.parallel_env(), num_cycles=12)
    api_test(mod.env(), num_cycles=6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", SCEN)
def test_seed_render_cycles_state(scenario, backend, tmp_path):
    mod = _module(scenario, backend, num_agents=3, render_path=tmp_path / "frame.png", **SMALL)
    parallel_seed_test(mod.parallel_env, num_cycles=20)
    seed_test(mod.env, num_cycles=10)
    render_test(lambda render_mode=None: mod.env(render_mode=render_mode))
    assert (tmp_path / "frame.png").is_file()
    max_cycles_test(mod)
    state_test(mod.env(), mod.parallel_env(), num_cycles=5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_size_api(backend):
    mod = _module("forage-v0", backend, num_agents=4)
    env = mod.parallel_env()
    assert env.observation_space("agent_0").shape == (64, 64, 3)
    parallel_api_test(env, num_cycles=5)


def _run(env, steps: int, seed: int):
    """Yields (obs, rewards, terminations, truncations) of ``steps`` steps of a seeded random policy."""
    policy = RandomPolicy(seed)
    obs, _ = env.reset(seed=seed)
    yield obs, None, None, None
    for _ in range(steps):
        acts = policy.act(env.world_state())[0]
        step = env.step({a: int(acts[i]) for i, a in enumerate(env.possible_agents) if a in env.agents})
        yield step[:4]
        if not env.agents:
            obs, _ = env.reset()  # unseeded: drawn from the env's RNG, still reproducible


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "scenario, num_agents, size, obs_type",
    [("forage-v0", 4, 64, "rgb"), ("push-v0", 7, 16, "rgbd"), ("roam-v0", 3, 16, "dict")],
)
def test_determinism_1000_steps(scenario, num_agents, size, obs_type, backend):
    kw = dict(num_agents=num_agents, height=size, width=size, obs_type=obs_type, backend=backend, max_cycles=400)
    env1, env2 = multiworld.parallel_env(scenario, **kw), multiworld.parallel_env(scenario, **kw)
    steps = 0
    for s1, s2 in zip(_run(env1, 1000, seed=11), _run(env2, 1000, seed=11), strict=True):
        for part1, part2 in zip(s1, s2):
            assert _same(part1, part2), f"diverged after {steps} steps"
        steps += 1
    assert steps == 1001
