"""The benchmark suite: each benchmark splits into tasks, runs them, writes JSON, markdown, plots.

``run_benchmark(name, settings, runner, out)`` is what ``multiworld bench NAME`` calls. Every
benchmark compares the three :data:`~multiworld.bench.variants.VARIANTS` and writes
``out/NAME.json`` with the headline numbers at top level per variant (``{"shared": {...},
"private": {...}, "oracle": {...}}``), the details, and the config, commit and machine.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from multiworld.bench import report
from multiworld.bench.consistency import ConsistencyTask, run_consistency_task, summarize_consistency
from multiworld.bench.drift import DriftTask, run_drift_task, summarize_drift
from multiworld.bench.events import EventTask, run_event_task, summarize_events
from multiworld.bench.revisit import RevisitTask, run_revisit_task, summarize_revisit
from multiworld.bench.runner import Runner
from multiworld.bench.seeds import check_held_out, probe_seeds
from multiworld.bench.variants import VARIANTS, SimSpec

BENCHMARKS = ("consistency", "fidelity", "events", "revisit", "drift", "throughput")
FIDELITY_HORIZONS = (1, 10, 100)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does (``quick`` or ``full``)."""

    consistency_agents: tuple[int, ...]
    consistency_worlds: int  # per task; one task per agent count and chunk
    consistency_chunks: int
    consistency_steps: int
    event_agents: tuple[int, ...]
    event_seeds: int  # per agent count; each seed gives up to one push and one pickup probe
    event_chunk: int
    revisit_agents: int
    revisit_worlds: int
    revisit_moves: tuple[tuple[str, int], ...]
    drift_agents: int
    drift_worlds: int
    drift_steps: int
    fidelity_worlds: int
    throughput_agents: tuple[int, ...]
    throughput_steps: int


QUICK = Sizes(
    consistency_agents=(2, 4, 8),
    consistency_worlds=2,
    consistency_chunks=1,
    consistency_steps=30,
    event_agents=(2, 4),
    event_seeds=12,
    event_chunk=12,
    revisit_agents=4,
    revisit_worlds=6,
    revisit_moves=(("turn", 3), ("turn", 6), ("turn", 12), ("walk", 2), ("walk", 4)),
    drift_agents=4,
    drift_worlds=2,
    drift_steps=100,
    fidelity_worlds=4,
    throughput_agents=(1, 4),
    throughput_steps=10,
)
FULL = Sizes(
    consistency_agents=(2, 4, 8),
    consistency_worlds=4,
    consistency_chunks=2,
    consistency_steps=100,
    event_agents=(2, 4, 8),
    event_seeds=24,
    event_chunk=8,
    revisit_agents=4,
    revisit_worlds=16,
    revisit_moves=(("turn", 3), ("turn", 6), ("turn", 12), ("walk", 2), ("walk", 4), ("walk", 8)),
    drift_agents=4,
    drift_worlds=4,
    drift_steps=1000,
    fidelity_worlds=8,
    throughput_agents=(1, 2, 4, 8, 16),
    throughput_steps=20,
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to benchmark and how much: ``sizes`` defaults to :data:`QUICK` or :data:`FULL`."""

    spec: SimSpec
    quick: bool = False
    variants: tuple[str, ...] = VARIANTS
    sizes: Sizes | None = None

    def __post_init__(self) -> None:
        if self.sizes is None:
            object.__setattr__(self, "sizes", QUICK if self.quick else FULL)

    def config(self) -> dict:
        return {
            **dataclasses.asdict(self.spec),
            "weights": self.spec.describe(),
            "quick": self.quick,
            "variants": list(self.variants),
        }


def _chunks(seeds: list[int], size: int) -> list[tuple[int, ...]]:
    return [tuple(seeds[i : i + size]) for i in range(0, len(seeds), size)]


def _headline_rows(results: dict, metrics: list[tuple[str, str]], variants) -> list[dict]:
    return [{"metric": label, **{v: results[v].get(key) for v in variants}} for key, label in metrics]


# -- cross-view consistency (+ event propagation, the other cross-view metric) --------------------


def _consistency_tasks(st: Settings) -> list[ConsistencyTask]:
    z = st.sizes
    tasks = []
    for n in z.consistency_agents:
        seeds = probe_seeds("consistency", z.consistency_worlds * z.consistency_chunks, start=1000 * n)
        for chunk in _chunks(seeds, z.consistency_worlds):
            tasks.append(ConsistencyTask(st.spec, n, chunk, z.consistency_steps, st.variants))
    return tasks


def _event_tasks(st: Settings, agents: tuple[int, ...], seeds_per_n: int) -> list[EventTask]:
    tasks = []
    for n in agents:
        seeds = probe_seeds("events", seeds_per_n, start=1000 * n)
        tasks += [EventTask(st.spec, n, chunk, variants=st.variants) for chunk in _chunks(seeds, st.sizes.event_chunk)]
    return tasks


def bench_consistency(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    tasks = _consistency_tasks(st)
    raw = runner.map(run_consistency_task, tasks, desc="consistency rollouts")
    overall = summarize_consistency(raw, st.variants)
    by_agents = {}
    for n in st.sizes.consistency_agents:
        sel = [r for t, r in zip(tasks, raw, strict=True) if t.num_agents == n]
        by_agents[str(n)] = summarize_consistency(sel, st.variants)
    event_agents = st.sizes.event_agents[:2]
    ev_raw = runner.map(run_event_task, _event_tasks(st, event_agents, st.sizes.event_seeds), desc="event probes")
    events = summarize_events(ev_raw, st.variants)

    results = {}
    for v in st.variants:
        results[v] = {
            "consistency_ratio": overall[v]["consistency_ratio"],
            "consistency_ratio_own_state": overall[v].get("consistency_ratio_own_state"),
            "disagreement": overall[v]["disagreement"],
            "event_propagation": events[v]["event_propagation"],
            "event_propagation_simple": events[v]["event_propagation_simple"],
            "event_propagation_by_kind": events[v]["by_kind"],
            "consistency_ratio_by_agents": {n: s[v]["consistency_ratio"] for n, s in by_agents.items()},
            "event_propagation_by_agents": events[v]["by_agents"],
            "consistency_ratio_by_step": overall[v]["ratio_by_step"],
        }
    results["details"] = {"matched_pairs": overall["matched_pairs"], "event_probes": events["num_probes"]}
    config = {**st.config(), "agents": list(st.sizes.consistency_agents), "steps": st.sizes.consistency_steps}
    report.write_json(out, "consistency", results, config)

    rows = _headline_rows(
        results,
        [("consistency_ratio", "consistency ratio (1 = oracle)"), ("event_propagation", "event propagation")],
        st.variants,
    )
    agent_rows = [
        {"agents": n, **{f"{v} ratio": results[v]["consistency_ratio_by_agents"][n] for v in st.variants}}
        for n in by_agents
    ]
    report.write_markdown(
        out,
        "consistency",
        "Cross-view consistency and event propagation",
        [
            ("Headline", report.markdown_table(rows)),
            ("Consistency ratio by number of agents", report.markdown_table(agent_rows)),
        ],
        config,
    )
    steps = list(range(st.sizes.consistency_steps + 1))
    report.plot_lines(
        out / "consistency_vs_horizon.png",
        {v: (steps, results[v]["consistency_ratio_by_step"]) for v in st.variants},
        "step since reset",
        "consistency ratio (disagreement / oracle's)",
        "Cross-view consistency by horizon",
        hline=1.0,
    )
    ns = [int(n) for n in by_agents]
    report.plot_lines(
        out / "consistency_vs_agents.png",
        {v: (ns, [results[v]["consistency_ratio_by_agents"][str(n)] for n in ns]) for v in st.variants},
        "agents per world",
        "consistency ratio",
        "Cross-view consistency by number of agents",
        hline=1.0,
    )
    return results


# -- event propagation ---------------------------------------------------------------------------


def bench_events(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    raw = runner.map(run_event_task, _event_tasks(st, st.sizes.event_agents, st.sizes.event_seeds), desc="event probes")
    s = summarize_events(raw, st.variants)
    results = {v: s[v] for v in st.variants}
    results["details"] = {"num_probes": s["num_probes"], "probes": [p for r in raw for p in r["probes"]]}
    config = {**st.config(), "agents": list(st.sizes.event_agents), "seeds_per_agent_count": st.sizes.event_seeds}
    report.write_json(out, "events", results, config)
    rows = [
        {
            "probes": kind,
            **{v: (s[v]["event_propagation"] if kind == "all" else s[v]["by_kind"][kind]) for v in st.variants},
        }
        for kind in ("all", "push", "pickup")
    ]
    rows.append({"probes": "all, simple criterion", **{v: s[v]["event_propagation_simple"] for v in st.variants}})
    report.write_markdown(
        out,
        "events",
        "Event propagation",
        [(f"Rate over {s['num_probes']} probes", report.markdown_table(rows))],
        config,
    )
    ns = sorted(int(n) for n in s[st.variants[0]]["by_agents"])
    report.plot_lines(
        out / "events_vs_agents.png",
        {v: (ns, [s[v]["by_agents"][str(n)] for n in ns]) for v in st.variants},
        "agents per world",
        "event propagation rate",
        "Event propagation by number of agents",
    )
    return results


# -- fidelity and drift (lockstep rollouts) ------------------------------------------------------


def _drift_like(st: Settings, runner: Runner, block: str, worlds: int, agents: int, record, with_state: bool):
    seeds = probe_seeds(block, worlds)
    tasks = [DriftTask(st.spec, agents, chunk, tuple(record), st.variants, with_state) for chunk in _chunks(seeds, 2)]
    return summarize_drift(runner.map(run_drift_task, tasks, desc=f"{block} rollouts"), st.variants)


@dataclasses.dataclass(frozen=True)
class ModelCardTask:
    spec: SimSpec
    seeds: tuple[int, ...]
    num_agents: int = 4

    def __post_init__(self) -> None:
        check_held_out(self.seeds)


def run_model_card_task(task: ModelCardTask) -> dict:
    """:func:`multiworld.bench.fidelity.evaluate_fidelity` on the model of ``task.spec``."""
    from multiworld.bench.fidelity import evaluate_fidelity

    sim = task.spec.build("shared", task.num_agents, 1)
    return evaluate_fidelity(
        sim.model,
        task.spec.scenario,
        task.num_agents,
        list(task.seeds),
        horizons=FIDELITY_HORIZONS,
        accuracy_horizons=FIDELITY_HORIZONS,
    )


def bench_fidelity(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    """PSNR and SSIM of every variant's views against the oracle's, and the model card's decoded-state
    accuracy (:func:`multiworld.bench.fidelity.symbolic_accuracy`), at horizons 1, 10, 100."""
    s = _drift_like(st, runner, "fidelity", st.sizes.fidelity_worlds, 4, FIDELITY_HORIZONS, with_state=True)
    results = {}
    for v in st.variants:
        by = s[v]["by_step"]
        metrics = ("psnr", "psnr_of_mean_mse", "ssim", "accuracy")
        results[v] = {f"{m}@{h}": by[str(h)][m] for m in metrics for h in FIDELITY_HORIZONS}
    if st.spec.backend == "model":
        # The model card's own report (multiworld.bench.fidelity), on the same held-out worlds.
        task = ModelCardTask(st.spec, tuple(probe_seeds("fidelity", st.sizes.fidelity_worlds)))
        results["details"] = {"model_card": runner.map(run_model_card_task, [task], desc="model card fidelity")[0]}
    config = {**st.config(), "horizons": list(FIDELITY_HORIZONS), "worlds": st.sizes.fidelity_worlds, "agents": 4}
    report.write_json(out, "fidelity", results, config)
    keys = [(f"psnr@{h}", f"PSNR (dB) at step {h}") for h in FIDELITY_HORIZONS]
    keys += [(f"psnr_of_mean_mse@{h}", f"PSNR of the mean MSE (dB) at step {h}") for h in FIDELITY_HORIZONS]
    keys += [(f"ssim@{h}", f"SSIM at step {h}") for h in FIDELITY_HORIZONS]
    keys += [(f"accuracy@{h}", f"decoded-state accuracy at step {h}") for h in FIDELITY_HORIZONS]
    report.write_markdown(
        out,
        "fidelity",
        "View fidelity by horizon",
        [("Generated vs oracle views", report.markdown_table(_headline_rows(results, keys, st.variants)))],
        config,
    )
    hs = list(FIDELITY_HORIZONS)
    report.plot_lines(
        out / "fidelity_vs_horizon.png",
        {v: (hs, [results[v][f"psnr@{h}"] for h in hs]) for v in st.variants},
        "horizon (steps)",
        "PSNR (dB, capped at 100)",
        "View fidelity by horizon",
        logx=True,
    )
    return results


def bench_drift(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    z = st.sizes
    record = sorted({s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if s <= z.drift_steps} | {z.drift_steps})
    s = _drift_like(st, runner, "drift", z.drift_worlds, z.drift_agents, record, with_state=True)
    last = str(record[-1])
    results = {
        v: {**{f"{k}@{last}": x for k, x in s[v]["by_step"][last].items() if k != "worlds"}, "by_step": s[v]["by_step"]}
        for v in st.variants
    }
    config = {**st.config(), "steps": z.drift_steps, "worlds": z.drift_worlds, "agents": z.drift_agents}
    report.write_json(out, "drift", results, config)
    metrics = [
        "psnr",
        "psnr_of_mean_mse",
        "accuracy",
        "cell_accuracy",
        "agent_accuracy",
        "box_recall",
        "item_recall",
        "agent_cells",
    ]
    rows = [{"metric": f"{m} @ step {last}", **{v: results[v][f"{m}@{last}"] for v in st.variants}} for m in metrics]
    step_rows = [
        {
            "step": step,
            **{
                f"{v} {m}": s[v]["by_step"][str(step)][m]
                for v in st.variants
                for m in ("psnr", "accuracy", "agent_accuracy")
            },
        }
        for step in record
    ]
    report.write_markdown(
        out,
        "drift",
        "Drift of views and decoded state",
        [("At the last step", report.markdown_table(rows)), ("By step", report.markdown_table(step_rows))],
        config,
    )
    for metric, label in (
        ("psnr", "view PSNR (dB, capped at 100)"),
        ("accuracy", "decoded-state accuracy"),
        ("agent_accuracy", "agent accuracy (cell and heading bin)"),
        ("box_recall", "box recall"),
    ):
        report.plot_lines(
            out / f"drift_{metric}.png",
            {v: (record, [s[v]["by_step"][str(t)].get(metric) for t in record]) for v in st.variants},
            "step",
            label,
            f"Drift: {label}",
            logx=True,
        )
    return results


# -- revisit -------------------------------------------------------------------------------------


def bench_revisit(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    z = st.sizes
    seeds = tuple(probe_seeds("revisit", z.revisit_worlds))
    tasks = [RevisitTask(st.spec, z.revisit_agents, seeds, mode, k, st.variants) for mode, k in z.revisit_moves]
    raw = runner.map(run_revisit_task, tasks, desc="revisit")
    s = summarize_revisit(list(zip(tasks, raw, strict=True)), st.variants)
    results = {v: s[v] for v in st.variants}
    for v in st.variants:
        turns = s[v].get("turn", {})
        if turns:
            k = max(turns, key=int)
            results[v]["revisit_psnr_turn_max"] = turns[k]["revisit_psnr"]
    results["details"] = {"valid_worlds": s["valid_worlds"]}
    config = {
        **st.config(),
        "agents": z.revisit_agents,
        "worlds": z.revisit_worlds,
        "moves": [list(m) for m in z.revisit_moves],
    }
    report.write_json(out, "revisit", results, config)
    rows = [
        {"move": f"{mode} x{k} and back", **{f"{v} revisit": s[v][mode][str(k)]["revisit_psnr"] for v in st.variants},
         **{f"{v} vs oracle": s[v][mode][str(k)]["return_psnr"] for v in st.variants}}
        for mode, k in z.revisit_moves
    ]  # fmt: skip
    report.write_markdown(
        out,
        "revisit",
        "Revisit: views of the same place before and after (PSNR, dB)",
        [("By move", report.markdown_table(rows))],
        config,
    )
    for mode in sorted({m for m, _ in z.revisit_moves}):
        ks = [k for m, k in z.revisit_moves if m == mode]
        report.plot_lines(
            out / f"revisit_{mode}.png",
            {v: (ks, [s[v][mode][str(k)]["revisit_psnr"] for k in ks]) for v in st.variants},
            f"{mode} steps away (then back)",
            "PSNR before vs after (dB, capped at 100)",
            f"Revisit ({mode})",
        )
    return results


# -- throughput ----------------------------------------------------------------------------------


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


def bench_throughput(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    z = st.sizes
    tasks = [ThroughputTask(st.spec, v, n, 1, z.throughput_steps) for v in st.variants for n in z.throughput_agents]
    raw = runner.map(run_throughput_task, tasks, desc="throughput")
    results = {v: {"agent_frames_per_s_by_agents": {}} for v in st.variants}
    for t, r in zip(tasks, raw, strict=True):
        results[t.variant]["agent_frames_per_s_by_agents"][str(t.num_agents)] = round(r["agent_frames_per_s"], 1)
    for v in st.variants:
        by = results[v]["agent_frames_per_s_by_agents"]
        results[v]["agent_frames_per_s"] = by[max(by, key=int)]
    config = {
        **st.config(),
        "agents": list(z.throughput_agents),
        "worlds": 1,
        "steps": z.throughput_steps,
        "runtime": "local",
    }
    report.write_json(out, "throughput", results, config)
    rows = [
        {"agents": n, **{v: results[v]["agent_frames_per_s_by_agents"][str(n)] for v in st.variants}}
        for n in z.throughput_agents
    ]
    report.write_markdown(
        out,
        "throughput",
        "Throughput (agent-frames/s, one world, local runtime)",
        [("By number of agents", report.markdown_table(rows))],
        config,
    )
    ns = list(z.throughput_agents)
    report.plot_lines(
        out / "throughput_vs_agents.png",
        {v: (ns, [results[v]["agent_frames_per_s_by_agents"][str(n)] for n in ns]) for v in st.variants},
        "agents per world",
        "agent-frames/s",
        "Throughput by number of agents",
    )
    return results


BENCH_FNS = {
    "consistency": bench_consistency,
    "fidelity": bench_fidelity,
    "events": bench_events,
    "revisit": bench_revisit,
    "drift": bench_drift,
    "throughput": bench_throughput,
}

# (benchmark, key in its results, label) of the headline table.
HEADLINE = [
    ("consistency", "consistency_ratio", "cross-view consistency ratio (1 = as consistent as the oracle)"),
    ("consistency", "consistency_ratio_own_state", "cross-view consistency ratio in the simulator's own state"),
    ("consistency", "event_propagation", "event propagation (cross-view)"),
    ("events", "event_propagation", "event propagation (events suite)"),
    *[
        ("fidelity", f"psnr@{h}", f"view PSNR at step {h} (dB, mean over views, capped at 100)")
        for h in FIDELITY_HORIZONS
    ],
    *[("fidelity", f"psnr_of_mean_mse@{h}", f"view PSNR of the mean MSE at step {h} (dB)") for h in FIDELITY_HORIZONS],
    ("fidelity", "ssim@100", "view SSIM at step 100"),
    ("revisit", "revisit_psnr_turn_max", "revisit PSNR, turn 180 deg and back (dB)"),
    ("throughput", "agent_frames_per_s", "agent-frames/s (one world, most agents)"),
]


def run_benchmark(name: str, st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    """Run one benchmark (or ``"all"``) and write its files into ``out``; return its results."""
    if name == "all":
        return run_all(st, runner, out)
    if name not in BENCH_FNS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {[*BENCHMARKS, 'all']}")
    return BENCH_FNS[name](st, runner, out)


def run_all(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    """Every benchmark, then ``summary.json`` / ``summary.md``: the headline table shared vs private vs oracle."""
    results = {name: BENCH_FNS[name](st, runner, out) for name in BENCHMARKS}
    rows = []
    for bench, key, label in HEADLINE:
        rows.append({"metric": label, **{v: results[bench][v].get(key) for v in st.variants}})
    drift = results["drift"]
    for key in [
        k
        for k in drift[st.variants[0]]
        if k.startswith(("accuracy@", "agent_accuracy@", "box_recall@", "psnr@", "psnr_of_mean_mse@"))
    ]:
        rows.append(
            {"metric": f"drift: {key.replace('@', ' at step ')}", **{v: drift[v].get(key) for v in st.variants}}
        )
    summary = {v: {r["metric"]: r[v] for r in rows} for v in st.variants}
    report.write_json(out, "summary", summary, st.config())
    report.write_markdown(
        out,
        "summary",
        "Benchmark summary: shared vs private state vs oracle",
        [("Headline", report.markdown_table(rows))],
        st.config(),
    )
    return results
