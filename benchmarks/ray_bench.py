"""Ray runtime benchmark: step latency (ray vs local) and rollout throughput (1 vs 2 workers).

    python benchmarks/ray_bench.py            # -> benchmarks/results/ray.json + ray.md

Step latency: one world of forage-v0, N = 1, 4, 16 agents, 64x64 views, random actions; the
median over ``--steps`` steps after 3 warm-up steps. The ray runtime uses its default of two
agent actors (``agents_per_actor = ceil(N/2)``, one torch thread each) plus the world actor.
``local`` runs with torch's default threads (2 here), ``local_1t`` with one: on a loaded
machine two intra-op threads are much slower than one (they wait for each other).

Rollout throughput: ``multiworld rollout``'s engine with 1 and 2 workers on the same episodes
(recorded with frames to a temporary local store). "wall" counts from the moment every worker
is up (start-up, mostly importing torch, is reported apart) to the last result; "busy" divides
by the busiest worker's summed episode time, the steady state a long rollout approaches.

The machine may be shared: the load average before and after each part is recorded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, write_results

from multiworld.runtime.factory import make_simulator
from multiworld.world.render import RenderConfig


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def step_latency(runtime: str, n: int, steps: int, render: RenderConfig, threads: int | None = None) -> dict:
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    sim = make_simulator("oracle", runtime, "forage-v0", num_agents=n, render=render)
    try:
        rng = np.random.default_rng(0)
        sim.reset([0])
        times = []
        for t in range(steps + 3):
            actions = rng.integers(0, 8, (1, n))
            t0 = time.perf_counter()
            sim.step(actions)
            if t >= 3:
                times.append(time.perf_counter() - t0)
    finally:
        sim.close()
        torch.set_num_threads(before)
    return {"median_ms": round(1000 * statistics.median(times), 2), "mean_ms": round(1000 * statistics.mean(times), 2)}


def rollout(workers: int, episodes: int, agents: int, max_cycles: int, size: int, tmp: str) -> dict:
    from multiworld.runtime.rollout import RolloutConfig, run_rollout

    out = os.path.join(tmp, f"store-w{workers}")
    cfg = RolloutConfig(
        out=out, episodes=episodes, workers=workers, agents=agents, max_cycles=max_cycles, height=size, width=size
    )
    s = run_rollout(cfg, progress=False)
    busy: dict[int, float] = {}
    for r in s["results"]:
        busy[r["pid"]] = busy.get(r["pid"], 0.0) + r["seconds"]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "workers": workers,
        "episodes": s["episodes"],
        "agent_frames": s["agent_frames"],
        "startup_s": s["startup_seconds"],
        "wall_s": s["seconds"],
        "wall_frames_per_s": s["agent_frames_per_s"],
        "busy_frames_per_s": round(s["agent_frames"] / max(busy.values()), 1),
        "failures": s["failures"],
    }


def projection(r1: float) -> str:
    """The 16-node projection from ``r1``, one CPU worker's steady agent-frames/s measured here."""
    cpu = 16 * 8 * r1 * 0.9
    gpu = 16 * (20 * r1 + 7 * r1) * 0.9
    return f"""
## Projection: a 16-node GPU cluster

Measured input: one rollout worker's steady rate here, r1 = {r1:.0f} agent-frames/s (64x64 views,
4 agents, frames recorded, on a core shared with other jobs, so a lower bound for a free core).

Assumptions (stated, not measured):
- 16 nodes, each with 8 CPU cores and 1 GPU (A10/L4 class); a free core runs a worker at >= r1.
- Rollout workers share nothing (each builds its own simulator and writes its own worlds), so
  throughput is linear in workers; 10% is lost to store writes and scheduling.
- On the GPU the raycaster (pure elementwise torch over worlds x agents x columns) renders
  batched worlds (``--envs-per-worker`` 32-64) at ~20x one CPU core; the dynamics and the
  policy stay on the CPU and are not the bottleneck at that batch size.

Estimates:
- CPU only: 16 nodes x 8 workers x r1 x 0.9 = {cpu:,.0f} agent-frames/s.
- With the GPUs: 16 x (20 r1 on the GPU worker + 7 r1 on the other cores) x 0.9 = {gpu:,.0f} agent-frames/s.
- Store bandwidth: a 64x64x3 frame is 12 KB raw (~3-6 KB compressed), so {gpu:,.0f} frames/s
  is ~{gpu * 12e3 / 1e9:.1f} GB/s raw: object storage (S3, many world prefixes) sustains it, a single NFS
  server would not; record states only (``--no-frames``, frames re-rendered exactly later)
  to cut it by ~100x.
- The driver handles one small result per batch of episodes: negligible at these rates.
- The ray *runtime* (one world split over agent actors) is a latency tool for large N or the
  learned renderer, not a throughput one: on one node it adds the actor round trips measured
  above; across nodes add the network round trip (~0.2 ms in a cloud VPC) and one copy of the
  state payload per node per step (a few KB for the oracle, 16-32 KB of model tokens).
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--agents", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--rollout-agents", type=int, default=4)
    p.add_argument("--max-cycles", type=int, default=50)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    tmp = tempfile.mkdtemp(prefix="mwrb", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tmp)
    render = RenderConfig(height=args.size, width=args.size)
    latency, rollouts = [], []
    loads = {"start": load()}
    try:
        for n in args.agents:
            row = {"agents": n}
            for name, runtime, threads in (("local", "local", None), ("local_1t", "local", 1), ("ray", "ray", None)):
                r = step_latency(runtime, n, args.steps, render, threads)
                row[f"{name}_median_ms"], row[f"{name}_mean_ms"] = r["median_ms"], r["mean_ms"]
            row["ray_minus_local_1t_ms"] = round(row["ray_median_ms"] - row["local_1t_median_ms"], 2)
            row["load_1min"] = load()[0]
            latency.append(row)
            print(row, flush=True)
        loads["after_latency"] = load()
        for w in (1, 2):
            r = rollout(w, args.episodes, args.rollout_agents, args.max_cycles, args.size, tmp)
            r["load_1min"] = load()[0]
            rollouts.append(r)
            print(r, flush=True)
        loads["end"] = load()
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    speedup = {
        "wall": round(rollouts[1]["wall_frames_per_s"] / rollouts[0]["wall_frames_per_s"], 2),
        "busy": round(rollouts[1]["busy_frames_per_s"] / rollouts[0]["busy_frames_per_s"], 2),
    }
    table = (
        f"Load average (1, 5, 15 min): start {loads['start']}, end {loads['end']} on {os.cpu_count()} CPUs "
        "(shared machine: other jobs were running).\n\n"
        f"## Step latency (forage-v0, one world, {args.size}x{args.size}, median of {args.steps} steps)\n\n"
        + markdown_table(latency)
        + f"\n\n## Rollout throughput ({args.episodes} episodes x {args.max_cycles} steps, "
        f"{args.rollout_agents} agents, frames recorded)\n\n"
        + markdown_table(rollouts)
        + f"\n\nSpeed-up 2 vs 1 workers: wall {speedup['wall']}x, busy {speedup['busy']}x (target >= 1.6x).\n"
        + projection(rollouts[0]["busy_frames_per_s"])
    )
    write_results(
        "ray",
        {"args": vars(args), "load": loads, "latency": latency, "rollout": rollouts, "speedup_2_workers": speedup},
        table,
    )
    print(table)


if __name__ == "__main__":
    main()
