"""The benchmark suite: each benchmark splits into tasks, runs them, writes JSON, markdown, plots.

``run_benchmark(name, settings, runner, out)`` is what ``multiworld bench NAME`` calls. Every
benchmark compares the :data:`~multiworld.bench.variants.VARIANTS` (the shared model, the
private-state and stacked-frames baselines, the persistence and mean bounds, the oracle) plus any
external simulators, and writes ``out/NAME.json`` with the headline numbers at top level per
variant (``{"shared": {...}, "private": {...}, ...}``), 95% bootstrap intervals over the probe
worlds (``ci``) with the paired shared-minus-variant calls (:mod:`multiworld.bench.stats`), the
details, and the config, commit and machine.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from multiworld.bench import report, stats
from multiworld.bench.consistency import ConsistencyTask, run_consistency_task, summarize_consistency, world_sums
from multiworld.bench.drift import DriftTask, run_drift_task, summarize_drift
from multiworld.bench.events import EventTask, run_event_task, summarize_events
from multiworld.bench.revisit import RevisitTask, run_revisit_task, summarize_revisit
from multiworld.bench.runner import Runner
from multiworld.bench.seeds import check_held_out, probe_seeds
from multiworld.bench.variants import SimSpec

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
    fidelity_agents: tuple[int, ...]  # the headline is at 4 agents
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
    fidelity_agents=(4,),
    throughput_agents=(1, 4),
    throughput_steps=10,
)
FULL = Sizes(
    consistency_agents=(2, 4, 8, 16),
    consistency_worlds=4,
    consistency_chunks=2,
    consistency_steps=100,
    event_agents=(2, 4, 8, 16),
    event_seeds=24,
    event_chunk=8,
    revisit_agents=4,
    revisit_worlds=16,
    revisit_moves=(("turn", 3), ("turn", 6), ("turn", 12), ("walk", 2), ("walk", 4), ("walk", 8)),
    drift_agents=4,
    drift_worlds=4,
    drift_steps=1000,
    fidelity_worlds=8,
    fidelity_agents=(2, 4, 8, 16),
    throughput_agents=(1, 2, 4, 8, 16),
    throughput_steps=20,
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to benchmark and how much: ``sizes`` defaults to :data:`QUICK` or :data:`FULL`,
    ``variants`` to every variant of ``spec`` (built-in and external; "oracle" is always run)."""

    spec: SimSpec
    quick: bool = False
    variants: tuple[str, ...] | None = None
    sizes: Sizes | None = None

    def __post_init__(self) -> None:
        if self.sizes is None:
            object.__setattr__(self, "sizes", QUICK if self.quick else FULL)
        variants = self.spec.variants if self.variants is None else tuple(self.variants)
        unknown = [v for v in variants if v not in self.spec.variants]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; valid: {list(self.spec.variants)}")
        if "oracle" not in variants:
            variants = (*variants, "oracle")  # every metric is measured against it
        object.__setattr__(self, "variants", variants)

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
    ci = {
        "consistency_ratio": consistency_ci(raw, st.variants),
        "contrast": contrast_ci(raw, st.variants),
        "event_propagation": events_ci([p for r in ev_raw for p in r["probes"]], st.variants),
    }
    raw_by_agents = {n: [r for t, r in zip(tasks, raw, strict=True) if t.num_agents == int(n)] for n in by_agents}
    ci_by_agents = {n: consistency_ci(r, st.variants) for n, r in raw_by_agents.items()}
    contrast_by_agents = {n: contrast_ci(r, st.variants) for n, r in raw_by_agents.items()}

    results = {}
    for v in st.variants:
        results[v] = {
            "consistency_ratio": overall[v]["consistency_ratio"],
            "consistency_ratio_own_state": overall[v].get("consistency_ratio_own_state"),
            "contrast": overall[v].get("contrast"),
            "disagreement": overall[v]["disagreement"],
            "event_propagation": events[v]["event_propagation"],
            "event_propagation_simple": events[v]["event_propagation_simple"],
            "event_propagation_by_kind": events[v]["by_kind"],
            "consistency_ratio_by_agents": {n: s[v]["consistency_ratio"] for n, s in by_agents.items()},
            "event_propagation_by_agents": events[v]["by_agents"],
            "consistency_ratio_by_step": overall[v]["ratio_by_step"],
            "consistency_ratio_ci_by_agents": {n: c["ci"][v] for n, c in ci_by_agents.items()},
            "contrast_by_agents": {n: s[v].get("contrast") for n, s in by_agents.items()},
            "contrast_ci_by_agents": {n: c["ci"][v] for n, c in contrast_by_agents.items()},
        }
    results["ci"] = ci
    results["details"] = {"matched_pairs": overall["matched_pairs"], "event_probes": events["num_probes"]}
    config = {**st.config(), "agents": list(st.sizes.consistency_agents), "steps": st.sizes.consistency_steps}
    report.write_json(out, "consistency", results, config)

    rows = [
        ci_row("consistency ratio (1 = oracle)", results, ci["consistency_ratio"], "consistency_ratio", st.variants),
        ci_row(
            "contrast (0 = chance, oracle = ceiling; higher is better)",
            results,
            ci["contrast"],
            "contrast",
            st.variants,
        ),
        ci_row("event propagation", results, ci["event_propagation"], "event_propagation", st.variants),
    ]
    agent_rows = [
        {
            "agents": n,
            **{v: with_ci(results[v]["consistency_ratio_by_agents"][n], ci_by_agents[n]["ci"][v]) for v in st.variants},
        }
        for n in by_agents
    ]
    contrast_rows = [
        {"agents": n, **{v: with_ci(results[v]["contrast_by_agents"][n], c["ci"][v]) for v in st.variants}}
        for n, c in contrast_by_agents.items()
    ]
    report.write_markdown(
        out,
        "consistency",
        "Cross-view consistency and event propagation",
        [
            ("Headline (mean [95% bootstrap interval over worlds])", report.markdown_table(rows)),
            ("Shared minus each variant (paired bootstrap)", calls_table(ci, st.variants)),
            ("Consistency ratio by number of agents", report.markdown_table(agent_rows)),
            ("Contrast by number of agents", report.markdown_table(contrast_rows)),
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
    report.plot_lines(
        out / "contrast_vs_agents.png",
        {v: (ns, [results[v]["contrast_by_agents"][str(n)] for n in ns]) for v in st.variants},
        "agents per world",
        "contrast (1 - D / D_shuffled)",
        "Cross-view consistency contrast by number of agents",
        hline=0.0,
    )
    return results


# -- event propagation ---------------------------------------------------------------------------


def bench_events(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    raw = runner.map(run_event_task, _event_tasks(st, st.sizes.event_agents, st.sizes.event_seeds), desc="event probes")
    s = summarize_events(raw, st.variants)
    probes = [p for r in raw for p in r["probes"]]
    results = {v: s[v] for v in st.variants}
    results["ci"] = {"event_propagation": events_ci(probes, st.variants)}
    by_n = {n: events_ci([p for p in probes if p["agents"] == n], st.variants) for n in st.sizes.event_agents}
    for v in st.variants:
        results[v]["event_propagation_ci_by_agents"] = {str(n): c["ci"][v] for n, c in by_n.items()}
    results["details"] = {"num_probes": s["num_probes"], "probes": probes}
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
    rows[0] = ci_row("all", results, results["ci"]["event_propagation"], "event_propagation", st.variants)
    rows[0] = {"probes": rows[0].pop("metric"), **rows[0]}
    agent_rows = [
        {"agents": n, **{v: with_ci(s[v]["by_agents"].get(str(n)), by_n[n]["ci"][v]) for v in st.variants}}
        for n in st.sizes.event_agents
    ]
    report.write_markdown(
        out,
        "events",
        "Event propagation",
        [
            (f"Rate over {s['num_probes']} probes [95% bootstrap interval over worlds]", report.markdown_table(rows)),
            ("Shared minus each variant (paired bootstrap)", calls_table(results["ci"], st.variants)),
            ("By number of agents", report.markdown_table(agent_rows)),
        ],
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
    accuracy (:func:`multiworld.bench.fidelity.symbolic_accuracy`), at horizons 1, 10, 100; at every
    agent count of ``sizes.fidelity_agents`` (the headline at 4 agents)."""
    z = st.sizes
    per_n = {
        n: _drift_like(st, runner, "fidelity", z.fidelity_worlds, n, FIDELITY_HORIZONS, with_state=True)
        for n in z.fidelity_agents
    }
    head_n = 4 if 4 in per_n else z.fidelity_agents[0]
    s = per_n[head_n]
    metrics = ("psnr", "psnr_of_mean_mse", "ssim", "accuracy")
    results = {}
    for v in st.variants:
        by = s[v]["by_step"]
        results[v] = {f"{m}@{h}": by[str(h)].get(m) for m in metrics for h in FIDELITY_HORIZONS}
        results[v]["psnr_by_agents"] = {
            str(n): {str(h): per_n[n][v]["by_step"][str(h)]["psnr"] for h in FIDELITY_HORIZONS} for n in per_n
        }
    results["ci"] = {f"psnr@{h}": psnr_ci(s, h, st.variants) for h in FIDELITY_HORIZONS}
    results["ci"].update({f"psnr_of_mean_mse@{h}": psnr_ci(s, h, st.variants, True) for h in FIDELITY_HORIZONS})
    ci_by_agents = {n: {h: psnr_ci(per_n[n], h, st.variants) for h in FIDELITY_HORIZONS} for n in per_n}
    mse_ci_by_agents = {n: {h: psnr_ci(per_n[n], h, st.variants, True) for h in FIDELITY_HORIZONS} for n in per_n}
    for v in st.variants:
        results[v]["psnr_ci_by_agents"] = {
            str(n): {str(h): c[h]["ci"][v] for h in FIDELITY_HORIZONS} for n, c in ci_by_agents.items()
        }
        results[v]["psnr_of_mean_mse_by_agents"] = {
            str(n): {str(h): per_n[n][v]["by_step"][str(h)]["psnr_of_mean_mse"] for h in FIDELITY_HORIZONS}
            for n in per_n
        }
        results[v]["psnr_of_mean_mse_ci_by_agents"] = {
            str(n): {str(h): c[h]["ci"][v] for h in FIDELITY_HORIZONS} for n, c in mse_ci_by_agents.items()
        }
    details = {}
    if st.spec.backend == "model":
        # The model card's own report (multiworld.bench.fidelity), on the same held-out worlds.
        task = ModelCardTask(st.spec, tuple(probe_seeds("fidelity", z.fidelity_worlds)))
        details["model_card"] = runner.map(run_model_card_task, [task], desc="model card fidelity")[0]
    results["details"] = details
    config = {
        **st.config(),
        "horizons": list(FIDELITY_HORIZONS),
        "worlds": z.fidelity_worlds,
        "agents": head_n,
        "agents_scaling": list(z.fidelity_agents),
    }
    report.write_json(out, "fidelity", results, config)
    rows = [
        ci_row(f"PSNR (dB) at step {h}", results, results["ci"][f"psnr@{h}"], f"psnr@{h}", st.variants)
        for h in FIDELITY_HORIZONS
    ]
    rows += [
        ci_row(f"PSNR of the mean MSE (dB) at step {h}", results, results["ci"][key], key, st.variants)
        for h in FIDELITY_HORIZONS
        for key in [f"psnr_of_mean_mse@{h}"]
    ]
    keys = [(f"ssim@{h}", f"SSIM at step {h}") for h in FIDELITY_HORIZONS]
    keys += [(f"accuracy@{h}", f"decoded-state accuracy at step {h}") for h in FIDELITY_HORIZONS]
    rows += _headline_rows(results, keys, st.variants)
    agent_rows = [
        {
            "agents": n,
            **{v: with_ci(per_n[n][v]["by_step"]["1"]["psnr"], ci_by_agents[n][1]["ci"][v]) for v in st.variants},
        }
        for n in per_n
    ]
    report.write_markdown(
        out,
        "fidelity",
        "View fidelity by horizon",
        [
            (f"Generated vs oracle views, {head_n} agents [95% interval over worlds]", report.markdown_table(rows)),
            ("Shared minus each variant, PSNR (paired bootstrap)", calls_table(results["ci"], st.variants)),
            ("PSNR at step 1 by number of agents", report.markdown_table(agent_rows)),
        ],
        config,
    )
    hs = list(FIDELITY_HORIZONS)
    report.plot_lines(
        out / "fidelity_vs_horizon.png",
        {v: (hs, [results[v][f"psnr_of_mean_mse@{h}"] for h in hs]) for v in st.variants if v != "oracle"},
        "horizon (steps)",
        "PSNR of the mean MSE (dB; the oracle is exact)",
        "View fidelity by horizon",
        logx=True,
    )
    ns = list(per_n)
    report.plot_lines(
        out / "fidelity_vs_agents.png",
        {v: (ns, [per_n[n][v]["by_step"]["1"]["psnr_of_mean_mse"] for n in ns]) for v in st.variants if v != "oracle"},
        "agents per world",
        "PSNR of the mean MSE at step 1 (dB)",
        "View fidelity by number of agents",
    )
    return results


# -- intervals -----------------------------------------------------------------------------------


def consistency_ci(raw: list[dict], variants) -> dict:
    """Intervals of every variant's consistency ratio over the rollouts' worlds (lower is better)."""
    ws = world_sums(raw, variants)
    ref = ws["oracle"]
    return stats.compare({v: stats.ratio_of_sums(ws[v], ref) for v in variants}, len(ref), higher_is_better=False)


def contrast_ci(raw: list[dict], variants) -> dict:
    """Intervals of every variant's consistency contrast ``1 - D / D_shuffled`` (higher is better)."""
    ws, shuf = world_sums(raw, variants), world_sums(raw, variants, "world_shuffled")

    def contrast(v):
        ratio = stats.ratio_of_sums(ws[v], shuf[v])
        return lambda i: 1.0 - ratio(i)

    return stats.compare({v: contrast(v) for v in variants}, len(ws["oracle"]))


def events_ci(probes: list[dict], variants) -> dict:
    """Intervals of every variant's event-propagation rate, resampling the probe worlds (seeds)."""
    worlds = sorted({(p["agents"], p["seed"]) for p in probes})
    if not worlds:
        return {"worlds": 0, "ci": {v: [None, None] for v in variants}, "diff": {}}
    index = {w: i for i, w in enumerate(worlds)}
    counts = np.zeros(len(worlds))
    hits = {v: np.zeros(len(worlds)) for v in variants}
    for p in probes:
        i = index[(p["agents"], p["seed"])]
        counts[i] += 1
        for v in variants:
            hits[v][i] += float(p[v]["correct"])
    return stats.compare({v: stats.rate_of(hits[v], counts) for v in variants}, len(worlds))


def psnr_ci(summary: dict, horizon: int, variants, of_mean_mse: bool = False) -> dict:
    """Intervals of every variant's mean view PSNR (or PSNR of the mean MSE) at ``horizon`` over
    the rollouts' worlds."""
    key = "mse_worlds" if of_mean_mse else "psnr_worlds"
    values = {v: np.asarray(summary[v]["by_step"][str(horizon)][key], np.float64) for v in variants}
    stat = stats.psnr_of_mean if of_mean_mse else stats.mean_of
    return stats.compare({v: stat(x) for v, x in values.items()}, len(values["oracle"]))


def with_ci(value, ci) -> str:
    """``"1.23 [1.1, 1.4]"`` for a markdown cell."""
    if value is None:
        return "n/a"
    if not ci or ci[0] is None:
        return report.fmt(value)
    return f"{report.fmt(value)} [{report.fmt(ci[0])}, {report.fmt(ci[1])}]"


def ci_row(label: str, results: dict, ci: dict, key: str, variants) -> dict:
    cells = {v: with_ci(results[v].get(key), ci["ci"][v]) for v in variants}
    return {"metric": f"{label} ({ci['worlds']} worlds)", **cells}


def calls_table(cis: dict, variants) -> str:
    """Per metric, shared minus each other variant: the paired interval and the call it allows."""
    rows = []
    for metric, c in cis.items():
        row = {"metric": metric}
        for v in variants:
            if v in c["diff"]:
                d = c["diff"][v]
                row[f"vs {v}"] = f"{d['call']} [{report.fmt(d['ci'][0])}, {report.fmt(d['ci'][1])}]"
        rows.append(row)
    return report.markdown_table(rows)


def bench_drift(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    z = st.sizes
    record = sorted({s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if s <= z.drift_steps} | {z.drift_steps})
    s = _drift_like(st, runner, "drift", z.drift_worlds, z.drift_agents, record, with_state=True)
    last = str(record[-1])
    results = {
        v: {
            **{f"{k}@{last}": x for k, x in s[v]["by_step"][last].items() if k not in ("worlds", "psnr_worlds")},
            "by_step": s[v]["by_step"],
        }
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
    rows = [
        {"metric": f"{m} @ step {last}", **{v: results[v].get(f"{m}@{last}") for v in st.variants}} for m in metrics
    ]
    step_rows = [
        {
            "step": step,
            **{
                f"{v} {m}": s[v]["by_step"][str(step)].get(m)
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
            results[v]["return_psnr_turn_max"] = turns[k]["return_psnr"]
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

# (benchmark, key in its results, label) of the headline table; a key with an interval in the
# benchmark's ``ci`` shows it.
HEADLINE = [
    ("consistency", "consistency_ratio", "cross-view consistency ratio (1 = the oracle's; lower is better)"),
    ("consistency", "consistency_ratio_own_state", "cross-view consistency ratio in the simulator's own state"),
    ("consistency", "contrast", "cross-view consistency contrast (0 = chance, oracle = ceiling; higher is better)"),
    ("consistency", "event_propagation", "event propagation (cross-view)"),
    ("events", "event_propagation", "event propagation (events suite, every agent count)"),
    *[
        ("fidelity", f"psnr@{h}", f"view PSNR at step {h} (dB, mean over views, capped at 100)")
        for h in FIDELITY_HORIZONS
    ],
    *[("fidelity", f"psnr_of_mean_mse@{h}", f"view PSNR of the mean MSE at step {h} (dB)") for h in FIDELITY_HORIZONS],
    ("fidelity", "ssim@100", "view SSIM at step 100"),
    (
        "revisit",
        "revisit_psnr_turn_max",
        "revisit PSNR, turn 180 deg and back (dB; a simulator that never changes scores 100)",
    ),
    ("revisit", "return_psnr_turn_max", "... the view after returning vs the oracle's (dB)"),
    ("throughput", "agent_frames_per_s", "agent-frames/s (one world, most agents)"),
]


def plot_scaling(path: pathlib.Path, results: dict, variants) -> None:
    """``scaling.png``: consistency ratio, contrast, event propagation and fidelity at step 1
    against the number of agents, every variant, with 95% intervals."""
    con, ev, fid = results["consistency"], results["events"], results["fidelity"]

    def series(bench: dict, value_key: str, ci_key: str, pick=lambda x: x, ci_pick=lambda x: x, skip=()):
        out = {}
        for v in variants:
            if v in skip:
                continue
            by = bench[v][value_key]
            ns = sorted(by, key=int)
            out[v] = ([int(n) for n in ns], [pick(by[n]) for n in ns], [ci_pick(bench[v][ci_key].get(n)) for n in ns])
        return out

    report.plot_scaling(
        path,
        [
            (
                "consistency ratio (lower is better)",
                series(con, "consistency_ratio_by_agents", "consistency_ratio_ci_by_agents"),
            ),
            ("consistency contrast (higher is better)", series(con, "contrast_by_agents", "contrast_ci_by_agents")),
            ("event propagation", series(ev, "by_agents", "event_propagation_ci_by_agents")),
            (
                "PSNR of the mean MSE at step 1 (dB)",
                series(
                    fid,
                    "psnr_of_mean_mse_by_agents",
                    "psnr_of_mean_mse_ci_by_agents",
                    lambda x: x["1"],
                    lambda c: (c or {}).get("1"),
                    skip=("oracle",),
                ),
            ),
        ],
        "Scaling with the number of agents (95% intervals over worlds)",
    )


def run_benchmark(name: str, st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    """Run one benchmark (or ``"all"``) and write its files into ``out``; return its results."""
    if name == "all":
        return run_all(st, runner, out)
    if name not in BENCH_FNS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {[*BENCHMARKS, 'all']}")
    return BENCH_FNS[name](st, runner, out)


def run_all(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    """Every benchmark, then ``summary.json`` / ``summary.md``: the headline table of every variant,
    with 95% intervals and the shared model's paired calls against each other variant."""
    results = {name: BENCH_FNS[name](st, runner, out) for name in BENCHMARKS}
    rows, cis, calls = [], {}, []
    for bench, key, label in HEADLINE:
        ci = results[bench].get("ci", {}).get(key)
        if ci is not None:
            rows.append(ci_row(label, results[bench], ci, key, st.variants))
            cis[label] = ci
            calls.append((label, ci))
        else:
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
    summary["ci"] = cis
    plot_scaling(out / "scaling.png", results, st.variants)
    report.write_json(out, "summary", summary, st.config())
    report.write_markdown(
        out,
        "summary",
        "Benchmark summary: every variant, with 95% bootstrap intervals over probe worlds",
        [
            ("Headline", report.markdown_table(rows)),
            ("Shared minus each variant (paired bootstrap over worlds)", calls_table(dict(calls), st.variants)),
        ],
        st.config(),
    )
    return results
