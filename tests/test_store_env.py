"""The env and the store together: record, fork, restore, replay bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import multiworld
from multiworld.runtime.factory import available_backends, make_simulator
from multiworld.runtime.recording import EpisodeRecorder
from multiworld.state import WorldStore

STEPS, FORK_AT = 30, 12


def record(url: str, backend: str, scenario: str = "forage-v0", agents: int = 3, seed: int = 4) -> None:
    sim = make_simulator(backend, "local", scenario=scenario, num_agents=agents)
    rng = np.random.default_rng(seed)
    with WorldStore.open(url, mode="w") as store:
        rec = EpisodeRecorder(store, "original", sim, scenario=scenario, seed=seed, config={"backend": backend})
        rec.start(sim.reset([seed]))
        for _ in range(STEPS):
            actions = rng.integers(0, 8, (1, agents))
            rec.step(sim.step(actions), actions)
        rec.close()


@pytest.mark.parametrize("backend", available_backends())
def test_replaying_a_fork_reproduces_the_original_steps_bit_for_bit(tmp_path, backend):
    url = str(tmp_path / "store.zarr")
    record(url, backend)
    with WorldStore.open(url, mode="a") as store:
        child = store.fork("original", FORK_AT)
        original = store.world("original")
        frames = [original.frames(t) for t in range(original.steps)]
        actions, rewards = original.actions(), original.rewards()

    env = multiworld.parallel_env(scenario="forage-v0", num_agents=3, backend=backend)
    obs, infos = env.reset(options={"from": {"store": url, "world": child, "step": FORK_AT}})
    agents = env.possible_agents
    assert all(np.array_equal(obs[a], frames[FORK_AT][i]) for i, a in enumerate(agents))
    assert infos[agents[0]]["version"] == FORK_AT
    for t in range(FORK_AT + 1, STEPS + 1):
        obs, rew, *_ = env.step({a: int(actions[t][i]) for i, a in enumerate(agents)})
        for i, a in enumerate(agents):
            assert np.array_equal(obs[a], frames[t][i]), (t, a)
            assert rew[a] == rewards[t][i]


def test_restoring_from_a_mismatched_world_is_a_clear_error(tmp_path):
    url = str(tmp_path / "store.zarr")
    record(url, "oracle", agents=3)
    wrong_agents = multiworld.parallel_env(scenario="forage-v0", num_agents=4, backend="oracle")
    with pytest.raises(ValueError, match="3 agents"):
        wrong_agents.reset(options={"from": {"store": url, "world": "original", "step": 3}})
    wrong_scenario = multiworld.parallel_env(scenario="push-v0", num_agents=3, backend="oracle")
    with pytest.raises(ValueError, match="forage-v0"):
        wrong_scenario.reset(options={"from": {"store": url, "world": "original", "step": 3}})
    env = multiworld.parallel_env(scenario="forage-v0", num_agents=3, backend="oracle")
    with pytest.raises(ValueError, match="step"):
        env.reset(options={"from": {"store": url, "world": "original", "step": STEPS + 5}})
    with pytest.raises(ValueError, match="keys"):
        env.reset(options={"from": {"store": url}})
    with pytest.raises(FileNotFoundError):
        env.reset(options={"from": {"store": str(tmp_path / "nothing"), "world": "x", "step": 0}})
