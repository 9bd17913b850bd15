"""Overhead of the PettingZoo env layer over the raw Simulator step.

Times ``OracleSimulator.step`` and ``MultiWorldParallelEnv.step`` on the same pre-drawn random
actions (one world, 4 agents, 64x64 RGB, forage-v0), alternating rounds so machine noise hits
both alike, and reports the median per-round ratio env/sim. Because a shared machine makes
that ratio noisy, it also times the simulator's step *inside* the env run and reports the env's
own time per step (env.step minus the sim.step it wraps), relative to the sim step: the
overhead measured within the same steps. Last, ``env_only_us_per_step`` times env.step over a
stub simulator that returns a stored Observation instantly: the env layer's cost alone, free of
render noise. Target: overhead <= 10%. Torch runs on ``--threads``
threads (default 1: steadier timings on a loaded machine).

    python benchmarks/env_overhead.py [--steps 200] [--rounds 7] [--out benchmarks/results/env_overhead.json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import numpy as np
import torch

import multiworld
from multiworld.bench.provenance import stamp
from multiworld.runtime.factory import make_simulator
from multiworld.world.render import RenderConfig


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="forage-v0")
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--steps", type=int, default=200, help="steps per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--compile", action="store_true", help="use the compiled renderer in both")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "results" / "env_overhead.json")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    n = args.agents
    sim = make_simulator(scenario=args.scenario, num_agents=n, render=RenderConfig(), compile=args.compile)
    env = multiworld.parallel_env(args.scenario, num_agents=n, max_cycles=10**9, compile=args.compile)
    names = env.possible_agents
    actions = np.random.default_rng(args.seed).integers(0, 8, size=(args.steps, 1, n))
    action_dicts = [dict(zip(names, a[0].tolist())) for a in actions]

    def run_sim() -> float:
        sim.reset([args.seed])
        t = time.perf_counter()
        for a in actions:
            if sim.step(a).terminated[0]:
                sim.reset([args.seed])
        return time.perf_counter() - t

    inner = [0.0]  # seconds spent in sim.step during env.step
    sim_step = env.sim.step

    def timed_step(actions):
        t0 = time.perf_counter()
        out = sim_step(actions)
        inner[0] += time.perf_counter() - t0
        return out

    env.sim.step = timed_step

    def run_env() -> float:
        env.reset(seed=args.seed)
        inner[0] = 0.0
        t = time.perf_counter()
        for a in action_dicts:
            env.step(a)
            if not env.agents:
                env.reset(seed=args.seed)
        return time.perf_counter() - t

    run_sim(), run_env()  # warm-up
    sim_t, env_t, own_s, own_t = [], [], [], []
    for _ in range(args.rounds):
        sim_t.append(run_sim())
        env_t.append(run_env())
        own_s.append(env_t[-1] - inner[0])
        own_t.append(own_s[-1] / inner[0])
    ratios = np.array(env_t) / np.array(sim_t)

    # The env layer alone: the simulator replaced by a stub returning a stored observation.
    stored = sim_step(actions[0])
    env.sim.step = lambda _actions: stored
    env.reset(seed=args.seed)
    only = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        for a in action_dicts:
            env.step(a)
        only.append((time.perf_counter() - t) / args.steps)
    result = {
        "benchmark": "env_overhead",
        "scenario": args.scenario,
        "agents": n,
        "image": [64, 64],
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "sim_ms_per_step": round(1e3 * float(np.median(sim_t)) / args.steps, 4),
        "env_ms_per_step": round(1e3 * float(np.median(env_t)) / args.steps, 4),
        "ratio_median": round(float(np.median(ratios)), 4),
        "overhead_percent": round(100 * (float(np.median(ratios)) - 1), 2),
        "ratios": [round(float(r), 4) for r in ratios],
        "env_own_us_per_step": round(1e6 * float(np.median(own_s)) / args.steps, 2),
        "own_overhead_percent": round(100 * float(np.median(own_t)), 2),
        "env_only_us_per_step": round(1e6 * float(np.median(only)), 2),
        "env_only_percent_of_sim_step": round(100 * float(np.median(only)) / (float(np.median(sim_t)) / args.steps), 3),
        "env_steps_per_s": round(args.steps / float(np.median(env_t)), 1),
        "compiled_renderer": args.compile,
        "torch_threads": args.threads,
        "target_overhead_percent": 10.0,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "provenance": stamp(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    keys = ("sim_ms_per_step", "env_ms_per_step", "ratio_median", "overhead_percent", "env_own_us_per_step")
    print(json.dumps({k: result[k] for k in (*keys, "own_overhead_percent", "env_only_us_per_step")}))
    return result


if __name__ == "__main__":
    main()
