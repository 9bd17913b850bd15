"""A small store to look at: an oracle run, its twin recorded without frames, and a fork of it.

Used by the viewer's tests, its screenshot script and as a quick demo::

    python -m multiworld.viewer.demo runs/viewer-demo.zarr && multiworld view runs/viewer-demo.zarr

Worlds (same scenario and seed):

* ``WORLD``: the scripted policy's run, every agent's view recorded;
* ``TWIN``: the same run (same seed, same actions) recorded without frames, so the viewer
  renders its views from the stored states;
* ``FORK``: ``WORLD`` forked at ``FORK_STEP`` (nothing copied), then continued with random actions.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

WORLD, TWIN, FORK = "scripted", "scripted-noframes", "scripted.fork"
FORK_STEP = 40


def _record(store, world_id: str, scenario: str, agents: int, seed: int, steps: int, frames: bool) -> None:
    from multiworld.agents.policies import make_policy
    from multiworld.runtime.factory import make_simulator
    from multiworld.runtime.recording import EpisodeRecorder

    sim = make_simulator("oracle", "local", scenario, num_agents=agents)
    policy = make_policy("scripted", seed=seed)
    config = {"agents": agents, "backend": "oracle", "policy": "scripted", "runtime": "local"}
    recorder = EpisodeRecorder(store, world_id, sim, scenario=scenario, seed=seed, config=config, frames=frames)
    try:
        recorder.start(sim.reset([seed]))
        for t in range(steps):
            actions = policy.act(sim.world_state())
            obs = sim.step(actions)
            recorder.step(obs, actions, truncated=t == steps - 1 and not obs.terminated[0])
            if obs.terminated[0]:
                break
    finally:
        recorder.close()
        sim.close()


def _continue_fork(store, world_id: str, scenario: str, agents: int, steps: int, seed: int) -> None:
    """Append ``steps`` oracle steps of random actions to a fork (its first rows are its parent's)."""
    from multiworld.runtime.factory import make_simulator

    reader = store.world(world_id)
    sim = make_simulator("oracle", "local", scenario, num_agents=agents)
    rng = np.random.default_rng(seed)
    try:
        sim.reset([reader.seed], start=reader.state(reader.last_step))
        with store.writer(world_id) as writer:
            for t in range(steps):
                actions = rng.integers(0, 8, (1, agents))
                obs = sim.step(actions)
                last = t == steps - 1
                writer.append(
                    sim.world_state().select(0),
                    actions[0],
                    obs.rewards[0],
                    np.full(agents, bool(obs.terminated[0])),
                    np.full(agents, last and not obs.terminated[0]),
                    events=obs.events[0],
                    frames=obs.rgb[0],
                )
                if obs.terminated[0]:
                    break
    finally:
        sim.close()


def build_demo_store(
    path: str | pathlib.Path,
    *,
    scenario: str = "forage-v0",
    agents: int = 4,
    seed: int = 3,
    steps: int = 120,
    fork_step: int = FORK_STEP,
    fork_steps: int = 50,
) -> str:
    """Write the demo store at ``path`` (replacing a demo store there); returns its path."""
    from multiworld.state import WorldStore

    with WorldStore.open(path, mode="w") as store:
        _record(store, WORLD, scenario, agents, seed, steps, frames=True)
        _record(store, TWIN, scenario, agents, seed, steps, frames=False)
        store.fork(WORLD, min(fork_step, store.world(WORLD).last_step), FORK)
        _continue_fork(store, FORK, scenario, agents, fork_steps, seed + 1)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="store path to write (replaced if it is a multiworld store)")
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args(argv)
    print(build_demo_store(args.out, steps=args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
