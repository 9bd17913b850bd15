"""Speed of the model backend in the local runtime: env-steps/s and time per component.

    python benchmarks/model_speed.py [--checkpoint DIR] [--agents 4] [--steps 200]

One world of N agents at 64x64; every step renders all agents' views in one batched pass.
Components: state update (the learned state-update model), render (all views, the video model),
readout (decoder heads -> the symbolic scene, for infos, ``state()`` and probes), and the whole
Simulator.step (what an env sees); reset (encoding the observations) is timed apart.
Writes benchmarks/results/model_speed.json and model_speed.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from common import markdown_table, write_results
from tqdm import tqdm

from multiworld.seeds import model_evaluation_seeds
from multiworld.sim.model import ModelSimulator


def measure(checkpoint, agents: int, steps: int, threads: int) -> dict:
    from multiworld.sim.model import decode_state

    torch.set_num_threads(threads)
    sim = ModelSimulator("forage-v0", agents, checkpoint=checkpoint)
    model = sim.model
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for seed in model_evaluation_seeds(5):
        sim.reset([seed])
    t_reset = (time.perf_counter() - t0) / 5
    for _ in range(10):  # warm-up
        sim.step(rng.integers(0, 8, (1, agents)))
    t_update = t_render = t_decode = 0.0
    latent, scen, ref = sim.latent, sim._scen, sim.readout
    with torch.no_grad():
        for _ in range(steps):
            a = torch.as_tensor(rng.integers(0, 8, (1, agents)))
            t0 = time.perf_counter()
            latent, _ = model.step(latent, a, scen)
            t1 = time.perf_counter()
            model.render(latent)
            t2 = time.perf_counter()
            ref = decode_state(model, latent, ref)
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
        "env_steps_per_s": round(steps / total, 1),
        "agent_frames_per_s": round(steps * agents / total, 1),
        "ms_per_step": ms(total),
        "ms_state_update": ms(t_update),
        "ms_render": ms(t_render),
        "ms_readout": ms(t_decode),
        "ms_reset": round(1000 * t_reset, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)
    rows = []
    for agents, threads in tqdm(((4, 1), (4, 2), (8, 1)), desc="model speed"):
        r = measure(args.checkpoint, agents, args.steps, threads)
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
    path = write_results("model_speed", payload, note + markdown_table(rows), checkpoints={"model": args.checkpoint})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
