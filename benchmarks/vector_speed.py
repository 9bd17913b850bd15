"""Agent-frames/s of the model backend's vector env beside the oracle's, in one run.

    python benchmarks/vector_speed.py [--worlds 1 16 64] [--sizes 32 64] [--precisions fp32 bf16]
                                      [--compiled bf16] [--threads 2] [--steps 30] [--quick]

``multiworld.vector_env``, forage-v0, E worlds x 4 agents, square RGB views rendered at the size
asked for (32x32 is what the PPO example's policy sees), random actions, autoreset on. Model rows:
the shipped checkpoint at each precision eager, and compiled (the render and the state update,
``compile_render=True, compile_update=True``) at the ``--compiled`` precisions; the oracle is measured beside every
(size, worlds) in the same run, so the ratio holds on a shared machine. Each row: setup (env,
reset, the compile of a compiled render) timed apart, 3 warm-up steps, then ``--steps`` timed
steps (a third of them, at least 10, for 64 worlds), every row in a fresh process; wall and
process CPU time (both threads) per step and the 1-minute load average at the row's start and end.

A second table: the model's views against the oracle's (mean PSNR over agents' views, 16 worlds,
the same random actions) at reset and after 1 and 10 steps, per size, precision and render path:
the fp32 eager render is the reference the others must stay within 0.5 dB of.

Writes benchmarks/results/vector_speed.{json,md} (commit, checkpoint sha256, machine and load in
the provenance block). Issue targets, 2 cores, nothing else running: >= 1,000 agent-frames/s with
16 worlds x 4 agents at 64x64, >= 3,000 at 32x32, one world of 4 agents >= 120 env-steps/s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np
import torch
from common import markdown_table, write_results
from tqdm import tqdm

import multiworld
from multiworld.bench.metrics import psnr
from multiworld.bench.provenance import checkpoint_hashes
from multiworld.models.device import default_precision
from multiworld.world.state import NUM_ACTIONS

AGENTS = 4
SEED = 2_000_000  # model evaluation seeds (multiworld.seeds)


def make_env(backend: str, worlds: int, size: int, precision: str | None, compiled: bool):
    kw = {} if backend == "oracle" else {"precision": precision, "compile_render": compiled, "compile_update": compiled}
    return multiworld.vector_env(
        num_envs=worlds, num_agents=AGENTS, backend=backend, height=size, width=size, max_cycles=100, seed=SEED, **kw
    )


def load() -> float:
    return round(os.getloadavg()[0], 2)


def measure(backend: str, worlds: int, size: int, precision: str | None, compiled: bool, steps: int) -> dict:
    load_start = load()
    t0 = time.perf_counter()
    env = make_env(backend, worlds, size, precision, compiled)
    env.reset(seed=SEED)
    setup = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    for _ in range(3):
        env.step(rng.integers(0, NUM_ACTIONS, (worlds, AGENTS)))
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        env.step(rng.integers(0, NUM_ACTIONS, (worlds, AGENTS)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    env.close()
    return {
        "backend": backend,
        "worlds": worlds,
        "agents": AGENTS,
        "image": size,
        "precision": precision or "-",
        "render": ("compiled" if compiled else "eager") if backend == "model" else "-",
        "threads": torch.get_num_threads(),
        "agent_frames_per_s": round(steps * worlds * AGENTS / wall, 1),
        "env_steps_per_s": round(steps * worlds / wall, 1),
        "ms_per_batch_step": round(1000 * wall / steps, 2),
        "cpu_ms_per_batch_step": round(1000 * cpu / steps, 2),
        "setup_s": round(setup, 1),
        "steps": steps,
        "load_start": load_start,
        "load_end": load(),
    }


def fidelity(size: int, precision: str, compiled: bool, worlds: int) -> dict:
    """Mean view PSNR of the model against the oracle at reset and after 1 and 10 random steps."""
    model = make_env("model", worlds, size, precision, compiled)
    oracle = make_env("oracle", worlds, size, None, False)
    out = {"image": size, "precision": precision, "render": "compiled" if compiled else "eager"}
    a, b = model.reset(seed=SEED + 500)[0], oracle.reset(seed=SEED + 500)[0]
    out["psnr_reset"] = round(float(psnr(a, b).mean()), 2)
    rng = np.random.default_rng(1)
    for t in range(1, 11):
        act = rng.integers(0, NUM_ACTIONS, (worlds, AGENTS))
        a, b = model.step(act)[0], oracle.step(act)[0]
        if t in (1, 10):
            out[f"psnr_step_{t}"] = round(float(psnr(a, b).mean()), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worlds", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    default_compiled = [default_precision(torch.device("cpu"))]
    p.add_argument(
        "--compiled",
        nargs="*",
        default=default_compiled,
        choices=["fp32", "bf16"],
        help=f"precisions to measure with the compiled render too (default {default_compiled}; none: no compiling)",
    )
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="16 worlds, 64x64, bf16 eager and the oracle, 10 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.worlds, args.sizes, args.precisions, args.compiled, args.steps = [16], [64], ["bf16"], [], 10
    torch.set_num_threads(args.threads)

    variants = [(prec, False) for prec in args.precisions] + [(prec, True) for prec in args.compiled]
    jobs = []
    for size in args.sizes:
        for worlds in args.worlds:
            steps = args.steps if worlds <= 16 else max(10, args.steps // 3)
            jobs.append(("oracle", worlds, size, None, False, steps))
            jobs += [("model", worlds, size, prec, compiled, steps) for prec, compiled in variants]
    rows = []
    # Every row in a process of its own: one row's compiled graphs, oneDNN caches and allocator
    # state do not slow the next (in one process, rows measured late ran up to 30% slower).
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, initializer=torch.set_num_threads, initargs=(args.threads,), maxtasksperchild=1) as pool:
        for job in tqdm(jobs, desc="vector speed"):
            rows.append(pool.apply(measure, job))
            print(rows[-1], file=sys.stderr)
        # At a world count the speed rows ran, so a compiled render reuses their compile (cached on disk).
        fid_worlds = 16 if 16 in args.worlds else args.worlds[0]
        fid_jobs = [(size, prec, compiled, fid_worlds) for size in args.sizes for prec, compiled in variants]
        fid = [pool.apply(fidelity, job) for job in fid_jobs]

    sha = checkpoint_hashes({"model": None})["model"]["sha256"]
    payload = {
        "scenario": "forage-v0",
        "checkpoint_sha256": sha,
        "seed": SEED,
        "results": rows,
        "fidelity": fid,
        "target": {"agent_frames_per_s_16x4_64": 1000, "agent_frames_per_s_16x4_32": 3000, "env_steps_per_s_1x4": 120},
    }
    note = (
        f"vector_env, forage-v0, {AGENTS} agents per world, random actions, {args.threads} torch threads; "
        f"checkpoint sha256 `{sha[:12]}`; the load (1-minute average, {os.cpu_count()} cores) at each row's "
        "start and end is in its row. cpu_ms: process CPU time per batched step over all threads.\n\n"
    )
    fid_note = (
        f"\n\nViews against the oracle's (mean PSNR over every agent's view, {fid_worlds} worlds, "
        "the same random actions; fp32 eager is the reference):\n\n"
    )
    table = note + markdown_table(rows) + fid_note + markdown_table(fid)
    path = write_results("vector_speed", payload, table, checkpoints={"model": None})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
