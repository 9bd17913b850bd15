"""The oracle stays out of the model backend's loop, checked by behaviour, not by reading imports.

After ``reset`` the oracle's renderer, dynamics, map generator, top-down map and scenario rules
are made to raise (:mod:`multiworld.runtime.oracle_guard`, which swaps the functions' code, so no
import path or alias gets around it), then the shipped model runs 50 steps of every scenario in
the parallel env, the vector env and the Ray runtime. With autoreset, a restarting world may use
what a reset uses (its views through the raycaster, its map image, a newly generated world); the
worlds that keep running may not.
"""

from __future__ import annotations

import numpy as np
import pytest

import multiworld
from multiworld.runtime import oracle_guard
from multiworld.world.scenarios import SCENARIOS

STEPS = 50


def test_the_guard_catches_every_path_to_the_oracle():
    from multiworld.sim import base, oracle
    from multiworld.world import arena, topdown
    from multiworld.world.render import Raycaster

    arena_cfg = SCENARIOS["push-v0"].arena_config(num_agents=2)
    state = arena.generate(arena_cfg, [1])
    moved = state.copy()
    moved.step[:] = 3
    raycaster = Raycaster()
    with oracle_guard.guarded(fresh=True):
        for call in (
            lambda: base.generate(arena_cfg, [1]),  # an alias imported elsewhere
            lambda: oracle.world_step(state, np.zeros((1, 2), np.int64), arena_cfg),
            lambda: raycaster.render(moved),
            lambda: topdown.top_down(moved),
            lambda: SCENARIOS["push-v0"].reward(state, state, None),
            lambda: SCENARIOS["forage-v0"].terminated(state),
        ):
            with pytest.raises(oracle_guard.OracleInTheLoopError):
                call()
        raycaster.render(state), topdown.top_down(state)  # a reset state (version 0): what a restart uses
        with oracle_guard.generating():
            arena.generate(arena_cfg, [2])
        assert dict(oracle_guard.ALLOWED) == {"render": 1, "top_down": 1, "generate": 1}
    assert not oracle_guard.armed()
    raycaster.render(moved), oracle.world_step(state, np.zeros((1, 2), np.int64), arena_cfg)


def _actions(rng, worlds: int, agents: int) -> np.ndarray:
    return rng.integers(0, 8, (worlds, agents))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_parallel_env_steps_without_the_oracle(scenario):
    env = multiworld.parallel_env(scenario, num_agents=3, backend="model", max_cycles=10 * STEPS)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    steps = 0
    while steps < STEPS:
        with oracle_guard.guarded(fresh=False):
            while env.agents and steps < STEPS:
                env.step(dict(zip(env.agents, _actions(rng, 1, 3)[0].tolist())))
                steps += 1
        if not env.agents:  # the model ended the episode: a reset, unguarded
            env.reset()


def _stagger(env) -> None:
    """Spread the worlds over their episodes (every world truncates at a different step), so
    restarts happen while other worlds keep running."""
    env._cycles[:] = np.arange(env.num_envs) * (env.max_cycles // env.num_envs)


def _run_vector(env, rng) -> int:
    """50 guarded steps of a vector env; returns the steps in which some (not all) worlds restarted."""
    done = np.zeros(env.num_envs, bool)
    partial = 0
    for _ in range(STEPS):
        assert not done.all(), "every world ended at once: the test needs staggered episodes"
        with oracle_guard.generating(done.any()):  # the env draws the restarting worlds' new maps
            _, _, term, trunc, infos = env.step(_actions(rng, env.num_envs, env.num_agents))
        partial += int(0 < infos["reset"].sum() < env.num_envs)
        done = term.any(1) | trunc.any(1)
    return partial


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_vector_env_steps_and_autoresets_without_the_oracle(scenario):
    env = multiworld.vector_env(3, scenario, num_agents=2, backend="model", max_cycles=12)
    env.reset(seed=1)
    _stagger(env)
    with oracle_guard.guarded(fresh=True):
        partial = _run_vector(env, np.random.default_rng(0))
        allowed = dict(oracle_guard.ALLOWED)
    assert partial >= 3
    assert allowed.get("render", 0) >= partial and allowed.get("generate", 0) >= partial  # restarts only


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_ray_runtime_steps_and_autoresets_without_the_oracle(scenario):
    env = multiworld.vector_env(3, scenario, num_agents=2, backend="model", runtime="ray", max_cycles=12)
    try:
        env.reset(seed=1)
        _stagger(env)
        env.sim.oracle_guard(True)  # in the world actor and every agent actor
        try:
            with oracle_guard.guarded(fresh=True):  # and in this process (the env's map generator)
                partial = _run_vector(env, np.random.default_rng(0))
        finally:
            allowed = env.sim.oracle_guard(False)
        assert partial >= 3
        assert allowed.get("render", 0) >= partial and "generate" not in allowed  # the world actor: restarts only
    finally:
        env.close()
