"""Cross-view consistency: do two agents' generated views agree where they see the same point?

At every step of a lockstep rollout the oracle's buffers (rendered from the oracle's state at
that step) give the pixel pairs of two agents that see the same world point
(:mod:`~multiworld.bench.correspondence`). For each simulator, the disagreement is the mean
absolute RGB difference its views give those pairs; the consistency ratio divides it by the
oracle's own disagreement at the same pairs (nonzero: the two pixels sample the point's texture
at slightly different places). 1.0 = as consistent as the ground truth; larger is worse.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from multiworld.bench.correspondence import disagreement, find_matches
from multiworld.bench.rollout import lockstep
from multiworld.bench.seeds import check_held_out
from multiworld.bench.variants import VARIANTS, SimSpec


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

    Returns ``{"matches": [T+1], "sums": {variant: [T+1]}, "own": {variant: [T+1, 2]}}``, sums over
    worlds and pairs. ``own`` is the same measurement at the simulator's *own* agent poses
    (``Observation.poses``): matches from the oracle's buffers rendered at those poses, and the
    (simulator, oracle-at-those-poses) disagreement sums. It separates view consistency from
    pose drift (an agent the simulator moved elsewhere sees other points)."""
    matches = np.zeros(task.steps + 1, np.int64)
    sums = {v: np.zeros(task.steps + 1) for v in task.variants}
    own = {v: np.zeros((task.steps + 1, 2)) for v in task.variants}

    def hook(t, oracle, ref, sims, obs):
        truth = oracle.world_state()
        views = oracle.renderer.render(truth, buffers=True)
        m = find_matches(truth, views, oracle.renderer.cfg)
        matches[t] = len(m)
        base = disagreement(ref.rgb, m)[0]
        for v in task.variants:
            rgb = ref.rgb if v == "oracle" else obs[v].rgb
            sums[v][t] = disagreement(rgb, m)[0]
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
        if all("own" in r for r in results):
            own = np.sum([r["own"][v] for r in results], axis=0)
            gen, base = own[:, 0].sum(), own[:, 1].sum()
            out[v]["consistency_ratio_own_state"] = float(gen / base) if base > 0 else float("nan")
    out["matched_pairs"] = int(matches.sum())
    return out
