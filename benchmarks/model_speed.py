"""Speed of the model backend in the local runtime: env-steps/s and time per component.

    python benchmarks/model_speed.py [--checkpoint DIR] [--steps 200] [--compiled]
    python benchmarks/model_speed.py --profile [--worlds 1 16] [--compiled]

One world of N agents at 64x64; every step renders all agents' views in one batched pass, at the
simulator's precision (bf16 autocast on CPUs with bf16 instructions) under inference mode, as the
simulator does. Components: state update (the learned state-update model), render (all views, the
video model), readout (decoder heads -> the symbolic scene, for infos, ``state()`` and probes),
and the whole Simulator.step (what an env sees); reset (encoding the observations) is timed apart.
``--compiled`` also measures the compiled render and state update (``compile_render=True,
compile_update=True``), under ``"compiled"`` beside ``"results"`` (the eager rows).
Writes benchmarks/results/model_speed.json and model_speed.md.

``--profile`` writes nothing: it prints where a vector env step's time goes (torch.profiler, wall
time per step) for E worlds x 4 agents: the renderer's stages (pieces: rays, cell pieces, the piece
and agent networks; composite: the per-pixel pass; background: floor and sky), the state update,
the readout, the events, and the rest of the step (numpy conversion, env bookkeeping, Python).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from common import markdown_table, timed_update_and_render, write_results
from tqdm import tqdm

from multiworld.seeds import model_evaluation_seeds
from multiworld.sim.model import ModelSimulator


def measure(checkpoint, agents: int, steps: int, threads: int, compiled: bool = False) -> dict:
    from multiworld.sim.model import decode_state

    torch.set_num_threads(threads)
    sim = ModelSimulator("forage-v0", agents, checkpoint=checkpoint, compile_render=compiled, compile_update=compiled)
    model = sim.model
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for seed in model_evaluation_seeds(5):
        sim.reset([seed])
    t_reset = (time.perf_counter() - t0) / 5
    for _ in range(10):  # warm-up
        sim.step(rng.integers(0, 8, (1, agents)))
    t_update = t_render = t_decode = 0.0
    ref = sim.readout
    for _ in range(steps):
        update, render = timed_update_and_render(sim, torch.as_tensor(rng.integers(0, 8, (1, agents))))
        t2 = time.perf_counter()
        ref = decode_state(model, sim.latent, ref)
        t_update, t_render, t_decode = t_update + update, t_render + render, t_decode + time.perf_counter() - t2
    sim.reset([2_000_001])
    t0 = time.perf_counter()
    for _ in range(steps):
        sim.step(rng.integers(0, 8, (1, agents)))
    total = time.perf_counter() - t0
    ms = lambda x: round(1000 * x / steps, 2)  # noqa: E731
    row = {
        "agents": agents,
        "threads": threads,
        "precision": sim.precision,
        "env_steps_per_s": round(steps / total, 1),
        "agent_frames_per_s": round(steps * agents / total, 1),
        "ms_per_step": ms(total),
        "ms_state_update": ms(t_update),
        "ms_render": ms(t_render),
        "ms_readout": ms(t_decode),
        "ms_reset": round(1000 * t_reset, 2),
    }
    if compiled:
        row["render"] = row["update"] = "compiled"
    return row


def _labelled(name: str, fn):
    def run(*args, **kwargs):
        with torch.profiler.record_function(name):
            return fn(*args, **kwargs)

    return run


def profile_step(worlds: int, compiled: bool, steps: int) -> list[dict]:
    """Wall ms per vector env step of every labelled stage (E worlds x 4 agents, 64x64)."""
    import multiworld
    import multiworld.sim.model as sim_module

    env = multiworld.vector_env(
        num_envs=worlds, num_agents=4, backend="model", compile_render=compiled, compile_update=compiled
    )
    env.reset(seed=2_000_000)
    sim = env.sim
    stages = {"state update": (sim, "_update"), "render": (sim, "_render")}
    stages |= {"readout": (sim_module, "decode_state"), "events": (sim_module, "event_dicts")}
    if not compiled:  # a compiled render is one graph: its stages are not separate calls
        stages |= {f"render: {m}": (sim.model.renderer, m) for m in ("pieces", "composite", "background")}
    saved = {k: getattr(obj, attr) for k, (obj, attr) in stages.items()}
    for k, (obj, attr) in stages.items():
        setattr(obj, attr, _labelled(k, saved[k]))
    rng = np.random.default_rng(0)
    try:
        for _ in range(3):
            env.step(rng.integers(0, 8, (worlds, 4)))
        with torch.profiler.profile() as prof:
            t0 = time.perf_counter()
            with torch.profiler.record_function("step"):
                for _ in range(steps):
                    env.step(rng.integers(0, 8, (worlds, 4)))
            wall = time.perf_counter() - t0
    finally:
        for k, (obj, attr) in stages.items():
            setattr(obj, attr, saved[k])
    totals = {e.key: e.cpu_time_total / 1000 / steps for e in prof.key_averages() if e.key in {*stages, "step"}}
    rows = [{"stage": k, "ms_per_step": round(totals.get(k, 0.0), 2)} for k in ("step", *stages)]
    named = sum(totals.get(k, 0.0) for k in ("state update", "render", "readout", "events"))
    rows.append({"stage": "rest of the step", "ms_per_step": round(totals["step"] - named, 2)})
    path = "compiled" if compiled else "eager"
    threads = torch.get_num_threads()
    head = f"{worlds} worlds x 4 agents, 64x64, {sim.precision}, {path} render and update, {threads} threads"
    print(f"\n{head}: {1000 * wall / steps:.1f} ms per step while profiled\n" + markdown_table(rows))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--compiled", action="store_true", help="also measure the compiled render and state update")
    p.add_argument("--profile", action="store_true", help="print where a vector env step's time goes; no results")
    p.add_argument("--worlds", type=int, nargs="+", default=[1, 16], help="worlds per vector env for --profile")
    p.add_argument("--threads", type=int, default=1, help="torch threads for --profile")
    args = p.parse_args(argv)
    if args.profile:
        torch.set_num_threads(args.threads)
        for worlds in args.worlds:
            for compiled in (False, True) if args.compiled else (False,):
                profile_step(worlds, compiled, max(5, 80 // worlds))
        return 0
    jobs = [(4, 1, False), (4, 2, False), (8, 1, False)] + ([(4, 1, True)] if args.compiled else [])
    rows, compiled_rows = [], []
    for agents, threads, compiled in tqdm(jobs, desc="model speed"):
        r = measure(args.checkpoint, agents, args.steps, threads, compiled)
        print(r, file=sys.stderr)
        (compiled_rows if compiled else rows).append(r)
    payload = {
        "checkpoint": args.checkpoint or "shipped default",
        "runtime": "local",
        "image": [64, 64],
        "results": rows,
        "compiled": compiled_rows,
        "target": {"env_steps_per_s_4_agents": 30},
    }
    note = "One world, forage-v0, 64x64 views, all agents rendered in one batched pass. ms = per env step.\n\n"
    table = note + markdown_table(rows)
    if compiled_rows:
        table += "\n\nWith the compiled render and state update:\n\n" + markdown_table(compiled_rows)
    path = write_results("model_speed", payload, table, checkpoints={"model": args.checkpoint})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
