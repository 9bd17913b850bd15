"""Cross-view consistency: do two agents' generated views agree where they see the same point?

At every step of a lockstep rollout the oracle's buffers (rendered from the oracle's state at
that step) give the pixel pairs of two agents that see the same world point
(:mod:`~multiworld.bench.correspondence`). For each simulator, the disagreement is the mean
absolute RGB difference its views give those pairs; the consistency ratio divides it by the
oracle's own disagreement at the same pairs (nonzero: the two pixels sample the point's texture
at slightly different places). 1.0 = as consistent as the ground truth; larger is worse.

The ratio rewards blur: a uniformly grey renderer would score 0, and the dataset's mean frame
(the ``mean`` bound) scores well. The **contrast** corrects for it: with ``D_shuffled`` the same
difference over shuffled pairs (each a-pixel paired with the o-side of a random match of the same
world, step, agent o and image row of o: the same place in o's image, another world point;
:meth:`~multiworld.bench.correspondence.Matches.shuffled`),

    contrast = 1 - D / D_shuffled

0 is chance (the two views agree at matched points no better than at other points of the same
image rows), 1 is perfect; the oracle's contrast is the ceiling. A blurred but consistent
simulator keeps a positive contrast; an image that depends only on the pixel position (the mean
frame) gets about 0.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from multiworld.bench import events, report, stats
from multiworld.bench.correspondence import disagreement, find_matches, pair_differences
from multiworld.bench.rollout import lockstep
from multiworld.bench.runner import Runner, Settings, chunks
from multiworld.bench.variants import VARIANTS, SimSpec
from multiworld.seeds import check_held_out, probe_seeds


@dataclasses.dataclass(frozen=True)
class Sizes:
    agents: tuple[int, ...]
    worlds: int  # per task; one task per agent count and chunk
    chunks: int
    steps: int
    event_agents: tuple[int, ...]  # the event probes reported beside consistency
    event_seeds: int  # per agent count
    event_chunk: int


QUICK = Sizes(agents=(2, 4, 8), worlds=2, chunks=1, steps=30, event_agents=(2, 4), event_seeds=12, event_chunk=12)
FULL = Sizes(agents=(2, 4, 8, 16), worlds=4, chunks=2, steps=100, event_agents=(2, 4), event_seeds=24, event_chunk=8)


@dataclasses.dataclass(frozen=True)
class ConsistencyTask:
    """One rollout: ``len(seeds)`` worlds of ``num_agents`` agents for ``steps`` steps."""

    spec: SimSpec
    num_agents: int
    seeds: tuple[int, ...]
    steps: int
    variants: tuple[str, ...] = VARIANTS
    policy: str = "scripted"

    def __post_init__(self) -> None:
        check_held_out(self.seeds)


def run_consistency_task(task: ConsistencyTask) -> dict:
    """Per step t = 0..steps: matches, and per variant the summed pair differences.

    Returns ``{"matches": [T+1], "sums": {variant: [T+1]}, "own": {variant: [T+1, 2]},
    "world_sums": {variant: [W]}, "world_shuffled": {variant: [W]}, "world_matches": [W]}``, sums
    over worlds and pairs (the ``world_`` ones over steps and pairs, per world, for the bootstrap
    intervals; ``world_shuffled`` over the shuffled pairs of the contrast). ``own`` is the
    same measurement at the simulator's *own* agent poses
    (``Observation.poses``): matches from the oracle's buffers rendered at those poses, and the
    (simulator, oracle-at-those-poses) disagreement sums. It separates view consistency from
    pose drift (an agent the simulator moved elsewhere sees other points)."""
    matches = np.zeros(task.steps + 1, np.int64)
    sums = {v: np.zeros(task.steps + 1) for v in task.variants}
    own = {v: np.zeros((task.steps + 1, 2)) for v in task.variants}
    worlds = len(task.seeds)
    world_sums = {v: np.zeros(worlds) for v in task.variants}
    world_matches = np.zeros(worlds, np.int64)
    world_shuffled = {v: np.zeros(worlds) for v in task.variants}
    rng = np.random.default_rng(task.seeds[0])

    def hook(t, oracle, ref, sims, obs):
        truth = oracle.world_state()
        views = oracle.renderer.render(truth, buffers=True)
        m = find_matches(truth, views, oracle.renderer.cfg)
        shuffled = m.shuffled(rng)
        matches[t] = len(m)
        world_matches[:] += np.bincount(m.world, minlength=worlds)
        base = disagreement(ref.rgb, m)[0]
        for v in task.variants:
            rgb = ref.rgb if v == "oracle" else obs[v].rgb
            d = pair_differences(rgb, m)
            sums[v][t] = float(d.sum())
            world_sums[v] += np.bincount(m.world, weights=d, minlength=worlds)
            world_shuffled[v] += np.bincount(m.world, weights=pair_differences(rgb, shuffled), minlength=worlds)
            at = truth if v == "oracle" else sims[v].world_state()
            if at.equals(truth):
                own[v][t] = sums[v][t], base
                continue
            views_at = oracle.renderer.render(at, buffers=True)
            m_at = find_matches(at, views_at, oracle.renderer.cfg)
            own[v][t] = disagreement(rgb, m_at)[0], disagreement(views_at.rgb.cpu().numpy(), m_at)[0]

    lockstep(task.spec, task.variants, task.num_agents, list(task.seeds), task.steps, hook, task.policy, task.seeds[0])
    return {
        "matches": matches.tolist(),
        "sums": {v: s.tolist() for v, s in sums.items()},
        "own": {v: s.tolist() for v, s in own.items()},
        "world_sums": {v: s.tolist() for v, s in world_sums.items()},
        "world_matches": world_matches.tolist(),
        "world_shuffled": {v: s.tolist() for v, s in world_shuffled.items()},
    }


def summarize_consistency(results: list[dict], variants=VARIANTS) -> dict:
    """Aggregate task results (same steps) into per-variant ratio, overall and per step."""
    matches = np.sum([r["matches"] for r in results], axis=0).astype(np.float64)
    sums = {v: np.sum([r["sums"][v] for r in results], axis=0) for v in variants}
    ref = sums["oracle"]
    out = {}
    for v in variants:
        with np.errstate(invalid="ignore", divide="ignore"):
            per_step = np.where(ref > 0, sums[v] / ref, np.nan)
        out[v] = {
            "consistency_ratio": float(sums[v].sum() / ref.sum()) if ref.sum() > 0 else float("nan"),
            "disagreement": float(sums[v].sum() / matches.sum()) if matches.sum() else float("nan"),
            "ratio_by_step": [None if np.isnan(x) else round(float(x), 4) for x in per_step],
        }
        if all("world_shuffled" in r for r in results):
            shuf = sum(float(np.sum(r["world_shuffled"][v])) for r in results)
            out[v]["contrast"] = float(1 - sums[v].sum() / shuf) if shuf > 0 else float("nan")
        if all("own" in r for r in results):
            own = np.sum([r["own"][v] for r in results], axis=0)
            gen, base = own[:, 0].sum(), own[:, 1].sum()
            out[v]["consistency_ratio_own_state"] = float(gen / base) if base > 0 else float("nan")
    out["matched_pairs"] = int(matches.sum())
    return out


def world_sums(results: list[dict], variants=VARIANTS, key: str = "world_sums") -> dict[str, np.ndarray]:
    """Per world (over all tasks, in order) every variant's summed pair differences (``key``
    ``"world_shuffled"``: over the shuffled pairs): the input of the bootstrap intervals."""
    return {v: np.concatenate([np.asarray(r[key][v], np.float64) for r in results]) for v in variants}


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


def run(st: Settings, z: Sizes, runner: Runner, out: pathlib.Path) -> dict:
    """Cross-view consistency (and event propagation, the other cross-view metric): ``consistency.*``."""
    vs, tasks = st.variants, []
    for n in z.agents:
        for chunk in chunks(probe_seeds("consistency", z.worlds * z.chunks, start=1000 * n), z.worlds):
            tasks.append(ConsistencyTask(st.spec, n, chunk, z.steps, vs))
    raw = runner.map(run_consistency_task, tasks, desc="consistency rollouts")
    overall = summarize_consistency(raw, vs)
    raw_by_agents = {str(n): [r for t, r in zip(tasks, raw, strict=True) if t.num_agents == n] for n in z.agents}
    by_agents = {n: summarize_consistency(r, vs) for n, r in raw_by_agents.items()}
    event_tasks = events.tasks(st, z.event_agents, z.event_seeds, z.event_chunk)
    ev_raw = runner.map(events.run_event_task, event_tasks, desc="event probes")
    ev = events.summarize_events(ev_raw, vs)
    ci = {
        "consistency_ratio": consistency_ci(raw, vs),
        "contrast": contrast_ci(raw, vs),
        "event_propagation": events.events_ci([p for r in ev_raw for p in r["probes"]], vs),
    }
    ci_by_agents = {n: consistency_ci(r, vs) for n, r in raw_by_agents.items()}
    contrast_by_agents = {n: contrast_ci(r, vs) for n, r in raw_by_agents.items()}

    results = {}
    for v in vs:
        results[v] = {
            "consistency_ratio": overall[v]["consistency_ratio"],
            "consistency_ratio_own_state": overall[v].get("consistency_ratio_own_state"),
            "contrast": overall[v].get("contrast"),
            "disagreement": overall[v]["disagreement"],
            "event_propagation": ev[v]["event_propagation"],
            "event_propagation_simple": ev[v]["event_propagation_simple"],
            "event_propagation_by_kind": ev[v]["by_kind"],
            "consistency_ratio_by_agents": {n: s[v]["consistency_ratio"] for n, s in by_agents.items()},
            "event_propagation_by_agents": ev[v]["by_agents"],
            "consistency_ratio_by_step": overall[v]["ratio_by_step"],
            "consistency_ratio_ci_by_agents": {n: c["ci"][v] for n, c in ci_by_agents.items()},
            "contrast_by_agents": {n: s[v].get("contrast") for n, s in by_agents.items()},
            "contrast_ci_by_agents": {n: c["ci"][v] for n, c in contrast_by_agents.items()},
        }
    results["ci"] = ci
    results["details"] = {"matched_pairs": overall["matched_pairs"], "event_probes": ev["num_probes"]}
    config = {**st.config(), "agents": list(z.agents), "steps": z.steps}
    report.write_json(out, "consistency", results, config)
    labels = {
        "consistency_ratio": "consistency ratio (1 = oracle)",
        "contrast": "contrast (0 = chance, oracle = ceiling; higher is better)",
        "event_propagation": "event propagation",
    }
    rows = [report.ci_row(label, results, ci[key], key, vs) for key, label in labels.items()]

    def by_n(key: str, cis: dict) -> str:
        rows = [
            {"agents": n, **{v: report.with_ci(results[v][key][n], c["ci"][v]) for v in vs}} for n, c in cis.items()
        ]
        return report.markdown_table(rows)

    report.write_markdown(
        out,
        "consistency",
        "Cross-view consistency and event propagation",
        [
            ("Headline (mean [95% bootstrap interval over worlds])", report.markdown_table(rows)),
            ("Shared minus each variant (paired bootstrap)", report.calls_table(ci, vs)),
            ("Consistency ratio by number of agents", by_n("consistency_ratio_by_agents", ci_by_agents)),
            ("Contrast by number of agents", by_n("contrast_by_agents", contrast_by_agents)),
        ],
        config,
    )
    steps = list(range(z.steps + 1))
    series = {v: (steps, results[v]["consistency_ratio_by_step"]) for v in vs}
    ylabel, title = "consistency ratio (disagreement / oracle's)", "Cross-view consistency by horizon"
    report.plot_lines(out / "consistency_vs_horizon.png", series, "step since reset", ylabel, title, hline=1.0)
    ns = list(z.agents)
    for key, path, ylabel, title, hline in (
        ("consistency_ratio", "consistency_vs_agents", "consistency ratio", "Cross-view consistency", 1.0),
        ("contrast", "contrast_vs_agents", "contrast (1 - D / D_shuffled)", "Cross-view consistency contrast", 0.0),
    ):
        series = {v: (ns, [results[v][f"{key}_by_agents"][str(n)] for n in ns]) for v in vs}
        title = f"{title} by number of agents"
        report.plot_lines(out / f"{path}.png", series, "agents per world", ylabel, title, hline=hline)
    return results


def headline(results: dict, variants) -> list[tuple[str, str]]:
    """(key, label) of this benchmark's rows in the summary table."""
    return [
        ("consistency_ratio", "cross-view consistency ratio (1 = the oracle's; lower is better)"),
        ("consistency_ratio_own_state", "cross-view consistency ratio in the simulator's own state"),
        ("contrast", "cross-view consistency contrast (0 = chance, oracle = ceiling; higher is better)"),
        ("event_propagation", "event propagation (cross-view)"),
    ]


def scaling(results: dict, variants) -> list[tuple[str, dict]]:
    """This benchmark's panels of ``scaling.png``."""
    ratio = report.by_agents(results, variants, "consistency_ratio_by_agents", "consistency_ratio_ci_by_agents")
    contrast = report.by_agents(results, variants, "contrast_by_agents", "contrast_ci_by_agents")
    return [("consistency ratio (lower is better)", ratio), ("consistency contrast (higher is better)", contrast)]
