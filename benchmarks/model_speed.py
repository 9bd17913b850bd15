"""Speed of the model backend in the local runtime: env-steps/s and time per component.

    python benchmarks/model_speed.py [--checkpoint DIR] [--agents 4] [--steps 200]

One world of N agents at 64x64; every step renders all agents' views in one batched pass.
Components: state update (model.step: dynamics heads, event application, token refresh), render
(all views), decode (tokens -> symbolic scene), and the whole Simulator.step (what an env sees).
Writes benchmarks/results/model_speed.json and model_speed.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from common import markdown_table, write_results

from multiworld.runtime.model import ModelSimulator


def measure(checkpoint, agents: int, steps: int, threads: int, sampler_steps: int = 0) -> dict:
    torch.set_num_threads(threads)
    sim = ModelSimulator("forage-v0", agents, checkpoint=checkpoint, sampler_steps=sampler_steps)
    model = sim.model
    rng = np.random.default_rng(0)
    sim.reset([2_000_000])
    for _ in range(10):  # warm-up
        sim.step(rng.integers(0, 8, (1, agents)))
    t_update = t_render = t_decode = 0.0
    rs = sim.rs
    for _ in range(steps):
        a = rng.integers(0, 8, (1, agents))
        t0 = time.perf_counter()
        rs, _ = model.step(rs, a)
        t1 = time.perf_counter()
        model.render(rs, sampler_steps=sampler_steps)
        t2 = time.perf_counter()
        model.decode_state(rs.tokens, rs.symbolic)
        t3 = time.perf_counter()
        t_update, t_render, t_decode = t_update + t1 - t0, t_render + t2 - t1, t_decode + t3 - t2
    sim.reset([2_000_001])
    t0 = time.perf_counter()
    for _ in range(steps):
        sim.step(rng.integers(0, 8, (1, agents)))
    total = time.perf_counter() - t0
    ms = lambda x: round(1000 * x / steps, 2)  # noqa: E731
    return {
        "agents": agents,
        "threads": threads,
        "sampler_steps": sampler_steps,
        "env_steps_per_s": round(steps / total, 1),
        "agent_frames_per_s": round(steps * agents / total, 1),
        "ms_per_step": ms(total),
        "ms_state_update": ms(t_update),
        "ms_render": ms(t_render),
        "ms_decode": ms(t_decode),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)
    rows = []
    for agents, threads, smp in ((4, 1, 0), (4, 2, 0), (8, 1, 0), (4, 1, 4)):
        r = measure(args.checkpoint, agents, args.steps, threads, smp)
        print(r, file=sys.stderr)
        rows.append(r)
    payload = {
        "checkpoint": args.checkpoint or "shipped default",
        "runtime": "local",
        "image": [64, 64],
        "results": rows,
        "target": {"env_steps_per_s_4_agents": 30},
    }
    note = "One world, forage-v0, 64x64 views, all agents rendered in one batched pass. ms = per env step.\n\n"
    print(f"wrote {write_results('model_speed', payload, note + markdown_table(rows))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
