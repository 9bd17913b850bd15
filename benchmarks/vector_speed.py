"""Agent-frames/s of the model backend's vector env: does batching worlds buy speed?

    python benchmarks/vector_speed.py [--worlds 1 4 16 32] [--threads 1 2] [--steps 60]

``multiworld.vector_env(backend="model")``, forage-v0, 4 agents per world, 64x64 RGB, random
actions, autoreset on, the shipped checkpoint at its default precision (bf16 renders on CPUs with
bf16 instructions). Each row: E worlds stepped ``--steps`` times after 5 warm-up steps. The
oracle's vector env is measured beside it in the same run (the ratio is what to read on a shared
machine). Writes benchmarks/results/vector_speed.{json,md}.
Issue target: >= 1,000 agent-frames/s with 16 worlds x 4 agents on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from common import markdown_table, write_results
from tqdm import tqdm

import multiworld
from multiworld.world.state import NUM_ACTIONS


def measure(backend: str, worlds: int, threads: int, steps: int, agents: int = 4) -> dict:
    torch.set_num_threads(threads)
    env = multiworld.vector_env(num_envs=worlds, num_agents=agents, backend=backend, max_cycles=100, seed=2_000_000)
    env.reset(seed=2_000_000)
    rng = np.random.default_rng(0)
    n = NUM_ACTIONS
    for _ in range(5):
        env.step(rng.integers(0, n, (worlds, agents)))
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, n, (worlds, agents)))
    total = time.perf_counter() - t0
    env.close()
    return {
        "backend": backend,
        "worlds": worlds,
        "agents": agents,
        "threads": threads,
        "precision": getattr(env.sim, "precision", "-"),
        "env_steps_per_s": round(steps * worlds / total, 1),
        "agent_frames_per_s": round(steps * worlds * agents / total, 1),
        "ms_per_batch_step": round(1000 * total / steps, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worlds", type=int, nargs="+", default=[1, 4, 16, 32])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args(argv)
    jobs = [("model", e, t) for t in args.threads for e in args.worlds] + [("oracle", 16, max(args.threads))]
    rows = []
    for backend, e, t in tqdm(jobs, desc="vector speed"):
        rows.append(measure(backend, e, t, args.steps))
        print(rows[-1], file=sys.stderr)
    payload = {"scenario": "forage-v0", "image": [64, 64], "results": rows, "load_average_at_end": os.getloadavg()}
    payload["target"] = {"agent_frames_per_s_16x4": 1000}
    note = (
        "vector_env, forage-v0, 4 agents per world, 64x64 RGB, random actions; load average at the end "
        f"{[round(x, 1) for x in os.getloadavg()]} (2 cores).\n\n"
    )
    path = write_results("vector_speed", payload, note + markdown_table(rows), checkpoints={"model": None})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
