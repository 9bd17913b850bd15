"""Random and scripted policies on the batched symbolic state."""

from __future__ import annotations

import numpy as np
import pytest

from multiworld.agents.policies import RandomPolicy, ScriptedPolicy, make_policy
from multiworld.runtime.factory import make_simulator
from multiworld.world.render import Raycaster, RenderConfig, entity_offsets

TINY = RenderConfig(height=8, width=8)


def test_make_policy():
    assert isinstance(make_policy("random", seed=1), RandomPolicy)
    assert isinstance(make_policy("scripted", seed=1), ScriptedPolicy)
    with pytest.raises(ValueError, match="random"):
        make_policy("greedy", seed=0)


@pytest.mark.parametrize("name", ["random", "scripted"])
def test_shapes_and_determinism(name):
    sims = [make_simulator(scenario="forage-v0", num_agents=3, num_worlds=2, render=TINY) for _ in range(2)]
    policies = [make_policy(name, seed=7) for _ in range(2)]
    for sim in sims:
        sim.reset([0, 1])
    for _ in range(40):
        acts = [p.act(sim.world_state()) for p, sim in zip(policies, sims)]
        assert acts[0].shape == (2, 3) and acts[0].dtype == np.int64
        assert ((acts[0] >= 0) & (acts[0] < 8)).all()
        np.testing.assert_array_equal(acts[0], acts[1])
        for a, sim in zip(acts, sims):
            sim.step(a)
    assert not np.array_equal(
        make_policy(name, seed=8).act(sims[0].world_state()), policies[0].act(sims[1].world_state())
    )


def _count_events(scenario: str, seed: int, steps: int = 300) -> dict:
    sim = make_simulator(scenario=scenario, num_agents=4, render=TINY)
    policy = ScriptedPolicy(seed=seed)
    sim.reset([seed])
    counts = {"push": 0, "pickup": 0, "episodes": 0}
    for _ in range(steps):
        obs = sim.step(policy.act(sim.world_state()))
        for event in obs.events[0]:
            counts[event["type"]] += 1
        if obs.terminated[0]:
            counts["episodes"] += 1
            sim.reset([seed + 1000 + counts["episodes"]])
    return counts


def test_scripted_policy_picks_up_and_pushes():
    forage = _count_events("forage-v0", seed=0)
    push = _count_events("push-v0", seed=0)
    assert forage["pickup"] > 0 and forage["push"] > 0, forage
    assert push["push"] > 0, push
    random = {"push": 0, "pickup": 0}
    sim = make_simulator(scenario="push-v0", num_agents=4, render=TINY)
    sim.reset([0])
    policy = RandomPolicy(0)
    for _ in range(300):
        for event in sim.step(policy.act(sim.world_state())).events[0]:
            random[event["type"]] += 1
    assert push["push"] > random["push"]


def test_scripted_agents_see_each_other():
    sim = make_simulator(scenario="roam-v0", num_agents=4, render=TINY)
    caster = Raycaster(RenderConfig(height=16, width=16))
    policy = ScriptedPolicy(seed=3)
    sim.reset([3])
    seen = 0
    for t in range(200):
        state = sim.world_state()
        if t % 10 == 0:
            entity = caster.render(state, buffers=True).entity.numpy()
            first_agent = entity_offsets(state.size, state.boxes.shape[1], state.items.shape[1])["agent"]
            seen += int((entity >= first_agent).any(axis=(2, 3)).sum())  # (world, viewer) pairs seeing an agent
        sim.step(policy.act(state))
    assert seen > 0
