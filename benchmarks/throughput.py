"""Oracle throughput: agent-frames/s at 64x64 (dynamics + rendering every agent's view).

One world and batched (64 worlds in one call), for N in {1, 2, 4, 8, 16}, with the eager
renderer and the compiled one (torch.compile of the per-pixel stage). Targets on a 2-core
CPU: one world with 4 agents >= 500 steps/s through the env API; batched >= 20,000
agent-frames/s.

    python benchmarks/throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from tqdm import tqdm

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import markdown_table, write_results

from multiworld.sim.oracle import OracleSimulator
from multiworld.world.render import Raycaster
from multiworld.world.scenarios import get_scenario


def time_steps(sim: OracleSimulator, steps: int, seed: int = 0) -> float:
    """Seconds per step (median of 3 repeats after warm-up)."""
    rng = np.random.default_rng(seed)
    sim.reset(list(range(sim.num_worlds)))
    actions = rng.integers(0, 8, (steps, sim.num_worlds, sim.num_agents))
    for a in actions[: max(3, steps // 10)]:
        sim.step(a)
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        for a in actions:
            sim.step(a)
        runs.append((time.perf_counter() - t) / steps)
    return float(np.median(runs))


def bench_oracle(agent_counts: list[int], batch: int, steps_single: int, steps_batched: int) -> list[dict]:
    rows = []
    scenario = get_scenario("forage-v0")
    configs = [(c, n, w) for c in (False, True) for n in agent_counts for w in (1, batch)]
    for compiled, n, worlds in tqdm(configs, desc="oracle throughput"):
        sim = OracleSimulator(scenario, n, num_worlds=worlds)
        sim.renderer = Raycaster(sim.renderer.cfg, compile=compiled)
        sec = time_steps(sim, steps_single if worlds == 1 else steps_batched)
        rows.append(
            {
                "renderer": "compiled" if compiled else "eager",
                "agents": n,
                "worlds": worlds,
                "steps_per_s": round(1 / sec, 1),
                "agent_frames_per_s": round(n * worlds / sec),
                "ms_per_step": round(sec * 1e3, 3),
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and agent counts")
    args = p.parse_args()
    counts = [1, 4, 16] if args.quick else [1, 2, 4, 8, 16]
    rows = bench_oracle(counts, batch=64, steps_single=50 if args.quick else 300, steps_batched=5 if args.quick else 20)
    payload = {"oracle": rows}
    tables = ["## Oracle simulator step (dynamics + render), 64x64\n", markdown_table(rows)]

    single4 = max(r["steps_per_s"] for r in rows if r["agents"] == 4 and r["worlds"] == 1)
    batched = max(r["agent_frames_per_s"] for r in rows if r["worlds"] > 1)
    payload["targets"] = {
        "single_world_4_agents_steps_per_s": {"measured": single4, "target": 500},
        "batched_agent_frames_per_s": {"measured": batched, "target": 20000},
    }
    tables.append(
        f"\nBest one-world 4-agent simulator step: {single4} steps/s (target through the env: >= 500).  \n"
        f"Best batched: {batched} agent-frames/s (target >= 20,000)."
    )
    import env_overhead

    env = env_overhead.main(
        ["--compile", "--steps", "100" if args.quick else "300", "--rounds", "3" if args.quick else "5"]
    )
    payload["env"] = env
    payload["targets"]["env_single_world_4_agents_steps_per_s"] = {"measured": env["env_steps_per_s"], "target": 500}
    env_rows = [
        {
            "env steps/s (1 world, 4 agents)": env["env_steps_per_s"],
            "sim ms/step": env["sim_ms_per_step"],
            "env ms/step": env["env_ms_per_step"],
            "env overhead % (median ratio)": env["overhead_percent"],
            "env own time % (same steps)": env["own_overhead_percent"],
        }
    ]
    tables += ["\n## Through the PettingZoo env (compiled renderer, 1 torch thread)\n", markdown_table(env_rows)]
    path = write_results("throughput", payload, "\n".join(tables))
    print("\n".join(tables))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
