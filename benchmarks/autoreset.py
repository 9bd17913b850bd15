"""What a vector env's autoreset costs: a step in which one world starts over, against a plain step.

In a vector env of E worlds some world ends every few steps, and the next step restarts it while
the others go on (next-step autoreset). ``Simulator.step_and_restart`` does that with one render;
the generic path (still the default of simulators that do not override it) steps every world and
then resets all of them from the merged state, rendering twice. For each backend this times, on
the same pre-drawn actions and alternating in rounds so machine noise hits all three alike:

- ``step``:     a plain batched step;
- ``restart``:  a step in which world 0 starts over (``step_and_restart``);
- ``generic``:  the same through the generic step-then-reset path.

It reports milliseconds per step (median over rounds) and ratios to the plain step.

    python benchmarks/autoreset.py [--worlds 16] [--agents 4] [--steps 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from common import markdown_table, write_results
from tqdm import tqdm

from multiworld.runtime.factory import make_simulator
from multiworld.sim.base import Simulator
from multiworld.world.arena import generate


def time_backend(backend: str, args: argparse.Namespace) -> dict:
    sim = make_simulator(backend, scenario=args.scenario, num_agents=args.agents, num_worlds=args.worlds)
    seeds = list(range(args.worlds))
    actions = np.random.default_rng(0).integers(0, 8, size=(args.steps, args.worlds, args.agents))
    restart = np.zeros(args.worlds, bool)
    restart[0] = True
    fresh = generate(sim.arena, [10**6])
    modes = {
        "step": sim.step,
        "restart": lambda a: sim.step_and_restart(a, restart, fresh, [10**6, *seeds[1:]]),
        "generic": lambda a: Simulator.step_and_restart(sim, a, restart, fresh, [10**6, *seeds[1:]]),
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in tqdm(range(args.rounds + 1), desc=f"autoreset {backend}", unit="round"):
        for mode, fn in modes.items():
            sim.reset(seeds)
            t = time.perf_counter()
            for a in actions:
                fn(a)
            times[mode].append((time.perf_counter() - t) / args.steps)
    sim.close()
    ms = {m: 1e3 * float(np.median(v[1:])) for m, v in times.items()}  # round 0 is the warm-up
    return {
        "ms_per_step": {m: round(x, 3) for m, x in ms.items()},
        "restart_over_step": round(ms["restart"] / ms["step"], 3),
        "generic_over_step": round(ms["generic"] / ms["step"], 3),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="forage-v0")
    p.add_argument("--worlds", type=int, default=16)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--steps", type=int, default=20, help="steps per round and mode")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    results = {backend: time_backend(backend, args) for backend in ("oracle", "model")}
    rows = [
        {
            "backend": backend,
            "plain step ms": f"{r['ms_per_step']['step']:.2f}",
            "step + 1 restart ms": f"{r['ms_per_step']['restart']:.2f}",
            "generic step-then-reset ms": f"{r['ms_per_step']['generic']:.2f}",
            "restart / step": f"{r['restart_over_step']:.2f}x",
            "generic / step": f"{r['generic_over_step']:.2f}x",
        }
        for backend, r in results.items()
    ]
    config = {k: getattr(args, k) for k in ("scenario", "worlds", "agents", "steps", "rounds", "threads")}
    caption = (
        f"{args.worlds} worlds x {args.agents} agents, {args.scenario}, 64x64, {args.threads} torch thread(s), "
        f"median of {args.rounds} rounds of {args.steps} steps"
    )
    payload = {"config": config, "load_average_1min": round(os.getloadavg()[0], 2), "results": results}
    write_results("autoreset", payload, caption + "\n\n" + markdown_table(rows), checkpoints={"model": None})
    print(markdown_table(rows))
    return results


if __name__ == "__main__":
    main()
