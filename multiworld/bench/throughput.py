"""Throughput: agent-frames per second of every variant, one world, by number of agents, local runtime.

Each simulator steps random joint actions (after two warm-up steps) in the worker that built it.
``benchmarks/throughput.py`` has the oracle's detailed study (batched, compiled renderer).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from multiworld.bench import report
from multiworld.bench.runner import Runner, Settings
from multiworld.bench.variants import SimSpec
from multiworld.seeds import probe_seeds


@dataclasses.dataclass(frozen=True)
class Sizes:
    agents: tuple[int, ...]
    steps: int


QUICK = Sizes(agents=(1, 4), steps=10)
FULL = Sizes(agents=(1, 2, 4, 8, 16), steps=20)


@dataclasses.dataclass(frozen=True)
class ThroughputTask:
    spec: SimSpec
    variant: str
    num_agents: int
    num_worlds: int
    steps: int


def run_throughput_task(task: ThroughputTask) -> dict:
    """Agent-frames/s of one simulator stepping random joint actions (after 2 warm-up steps)."""
    sim = task.spec.build(task.variant, task.num_agents, task.num_worlds)
    rng = np.random.default_rng(0)
    try:
        sim.reset(probe_seeds("throughput", task.num_worlds))
        acts = rng.integers(0, 8, (task.steps + 2, task.num_worlds, task.num_agents))
        for a in acts[:2]:
            sim.step(a)
        t = time.perf_counter()
        for a in acts[2:]:
            sim.step(a)
        sec = (time.perf_counter() - t) / task.steps
    finally:
        sim.close()
    return {"ms_per_step": sec * 1e3, "agent_frames_per_s": task.num_agents * task.num_worlds / sec}


def run(st: Settings, z: Sizes, runner: Runner, out: pathlib.Path) -> dict:
    """Agent-frames/s by number of agents: ``throughput.*``."""
    vs = st.variants
    tasks = [ThroughputTask(st.spec, v, n, 1, z.steps) for v in vs for n in z.agents]
    raw = runner.map(run_throughput_task, tasks, desc="throughput")
    results = {v: {"agent_frames_per_s_by_agents": {}} for v in vs}
    for t, r in zip(tasks, raw, strict=True):
        results[t.variant]["agent_frames_per_s_by_agents"][str(t.num_agents)] = round(r["agent_frames_per_s"], 1)
    for v in vs:
        by = results[v]["agent_frames_per_s_by_agents"]
        results[v]["agent_frames_per_s"] = by[max(by, key=int)]
    config = {**st.config(), "agents": list(z.agents), "worlds": 1, "steps": z.steps, "runtime": "local"}
    report.write_json(out, "throughput", results, config)
    ns = list(z.agents)
    rows = [{"agents": n, **{v: results[v]["agent_frames_per_s_by_agents"][str(n)] for v in vs}} for n in ns]
    title = "Throughput (agent-frames/s, one world, local runtime)"
    report.write_markdown(out, "throughput", title, [("By number of agents", report.markdown_table(rows))], config)
    series = {v: (ns, [results[v]["agent_frames_per_s_by_agents"][str(n)] for n in ns]) for v in vs}
    title = "Throughput by number of agents"
    report.plot_lines(out / "throughput_vs_agents.png", series, "agents per world", "agent-frames/s", title)
    return results


def headline(results: dict, variants) -> list[tuple[str, str]]:
    """(key, label) of this benchmark's rows in the summary table."""
    return [("agent_frames_per_s", "agent-frames/s (one world, most agents)")]
