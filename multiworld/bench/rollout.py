"""Lockstep rollouts: the oracle and the simulators under test take the same joint actions.

A policy acts on the oracle's (true) state and every simulator receives the same actions, so
at every step each simulator's views and decoded state can be compared with the oracle's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from multiworld.bench.variants import SimSpec
from multiworld.sim.base import Observation, Simulator
from multiworld.sim.oracle import OracleSimulator

# hook(step, oracle, oracle_obs, sims, obs): called after reset (step 0) and after every step.
StepHook = Callable[[int, OracleSimulator, Observation, dict[str, Simulator], dict[str, Observation]], None]


def lockstep(
    spec: SimSpec,
    variants: Iterable[str],
    num_agents: int,
    seeds: list[int],
    steps: int,
    hook: StepHook,
    policy: str = "scripted",
    policy_seed: int = 0,
) -> None:
    """Roll out ``variants`` (excluding "oracle", which is the reference itself) beside the oracle."""
    from multiworld.agents.policies import make_policy

    oracle = spec.build("oracle", num_agents, len(seeds))
    sims = {v: spec.build(v, num_agents, len(seeds)) for v in variants if v != "oracle"}
    try:
        ref = oracle.reset(seeds)
        obs = {v: s.reset(seeds) for v, s in sims.items()}
        hook(0, oracle, ref, sims, obs)
        actor = make_policy(policy, seed=policy_seed)
        for t in range(1, steps + 1):
            actions = actor.act(oracle.world_state())
            ref = oracle.step(actions)
            obs = {v: s.step(actions) for v, s in sims.items()}
            hook(t, oracle, ref, sims, obs)
    finally:
        for s in (oracle, *sims.values()):
            s.close()


def paired_simulators(spec: SimSpec, scenario: str, n: int, b: int) -> tuple[Simulator, Simulator]:
    """The oracle and the shared variant's simulator of ``b`` worlds of ``n`` agents in ``scenario``
    (``bench dynamics``: the model resets from the map, since its physics needs the walls no agent
    has seen yet)."""
    spec = dataclasses.replace(spec, scenario=scenario, init="map")
    return spec.build("oracle", n, b), spec.backend_simulator(n, b, spec.weights("shared"))
