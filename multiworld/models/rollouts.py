"""Recording oracle rollouts for training: batches of worlds run by the oracle with a mix of
random and scripted policies, each world one store world (row t = state after t steps)."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
from tqdm import tqdm

from multiworld.world.arena import generate
from multiworld.world.dynamics import step as world_step
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import WorldState, agent_names


class PolicyMix:
    """Per world, either the scripted or the random policy (chosen once per episode)."""

    def __init__(self, num_worlds: int, scripted_fraction: float, seed: int) -> None:
        from multiworld.agents.policies import make_policy

        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.scripted = make_policy("scripted", seed=seed)
        self.random = make_policy("random", seed=seed + 1)
        self.use_scripted = self.rng.random(num_worlds) < scripted_fraction

    def act(self, state: WorldState) -> np.ndarray:
        a = self.random.act(state)
        if self.use_scripted.any():
            a = np.where(self.use_scripted[:, None], self.scripted.act(state), a)
        return a


def record_rollouts(
    out: str | pathlib.Path,
    scenario: str,
    num_agents: int,
    episodes: int,
    steps: int,
    seed: int = 0,
    frames: bool = True,
    scripted_fraction: float = 0.5,
    batch: int = 16,
    progress: bool = True,
) -> int:
    """Record ``episodes`` oracle episodes of ``steps`` steps into the store at ``out``; returns rows written.

    Episode e uses world seed ``seed + e`` and is stored as world ``{scenario}-n{N}-s{seed+e}``."""
    from multiworld.state import WorldStore

    sc = get_scenario(scenario)
    arena = sc.arena_config(num_agents=num_agents)
    renderer = Raycaster(RenderConfig()) if frames else None
    rows = 0
    names = agent_names(num_agents)
    with WorldStore.open(str(out), mode="a") as store:
        bar = tqdm(total=episodes * steps, desc=f"data {scenario} x{num_agents}", unit="step", disable=not progress)
        for first in range(0, episodes, batch):
            seeds = list(range(seed + first, seed + min(episodes, first + batch)))
            state = generate(arena, seeds)
            policy = PolicyMix(len(seeds), scripted_fraction, seed=seed * 7919 + first)
            kw = {"frame_shape": (64, 64)} if frames else {}
            rgb = renderer.render(state).rgb.numpy() if frames else None
            writers = []
            for w, s in enumerate(seeds):
                extra = {"frames": rgb[w]} if frames else {}
                writers.append(
                    store.create_world(
                        f"{scenario}-n{num_agents}-s{s}",
                        state.select(w),
                        scenario=scenario,
                        seed=s,
                        config={"arena": dataclasses.asdict(arena), "policy_scripted": bool(policy.use_scripted[w])},
                        agents=names,
                        **kw,
                        **extra,
                    )
                )
            for t in range(steps):
                actions = policy.act(state)
                after, events = world_step(state, actions, arena)
                rewards = sc.reward(state, after, events)
                done = sc.terminated(after)
                rgb = renderer.render(after).rgb.numpy() if frames else None
                for w, writer in enumerate(writers):
                    extra = {"frames": rgb[w]} if frames else {}
                    writer.append(
                        after.select(w),
                        actions[w],
                        rewards[w],
                        np.repeat(done[w], num_agents),
                        np.zeros(num_agents, bool),
                        events=events.as_dicts(w, names),
                        commit=(t + 1) % 50 == 0 or t == steps - 1,
                        **extra,
                    )
                state = after
                rows += len(seeds)
                bar.update(len(seeds))
            for writer in writers:
                writer.close()
        bar.close()
    return rows
