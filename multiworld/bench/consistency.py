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

import numpy as np

from multiworld.bench.correspondence import disagreement, find_matches, pair_differences
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
