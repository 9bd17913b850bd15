"""Bootstrap confidence intervals over probe worlds, and which differences they allow calling.

Every headline figure is a statistic of per-world (per-seed) numbers. Resampling the worlds with
replacement (``n_boot`` times) and taking the 2.5% and 97.5% percentiles of the statistic gives
its 95% interval. Differences between two variants are resampled *paired* (the same worlds for
both, since every variant runs on the same worlds with the same actions): a difference is called
only when its own interval excludes zero.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

N_BOOT = 2000
LEVEL = 0.95


def resamples(num_worlds: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, num_worlds) world indices drawn with replacement (the same for every variant)."""
    if num_worlds < 1:
        raise ValueError("need at least one world to bootstrap")
    return np.random.default_rng(seed).integers(0, num_worlds, size=(n_boot, num_worlds))


def interval(stat: Callable[[np.ndarray], float], idx: np.ndarray, level: float = LEVEL) -> list[float | None]:
    """``[low, high]`` of ``stat(world indices)`` over the resamples ``idx`` (None when undefined)."""
    vals = np.array([stat(i) for i in idx], np.float64)
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return [None, None]
    lo, hi = np.percentile(vals, [50 * (1 - level), 50 * (1 + level)])
    return [round(float(lo), 4), round(float(hi), 4)]


def ratio_of_sums(num: np.ndarray, den: np.ndarray) -> Callable[[np.ndarray], float]:
    """The statistic ``sum(num[i]) / sum(den[i])`` (e.g. the consistency ratio over worlds)."""

    def stat(i: np.ndarray) -> float:
        d = den[i].sum()
        return float(num[i].sum() / d) if d > 0 else float("nan")

    return stat


def mean_of(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """The statistic ``mean(values[i])`` over per-world values (NaN entries ignored)."""

    def stat(i: np.ndarray) -> float:
        v = values[i]
        v = v[np.isfinite(v)]
        return float(v.mean()) if len(v) else float("nan")

    return stat


def psnr_of_mean(mse: np.ndarray, peak: float = 255.0, cap: float = 100.0) -> Callable[[np.ndarray], float]:
    """The statistic ``PSNR(mean(mse[i]))`` in dB (capped): fidelity that views rendered exactly
    right, at the cap, cannot dominate."""

    def stat(i: np.ndarray) -> float:
        m = float(mse[i].mean())
        return cap if m <= 0 else float(min(cap, 10 * np.log10(peak**2 / m)))

    return stat


def rate_of(hits: np.ndarray, counts: np.ndarray) -> Callable[[np.ndarray], float]:
    """The statistic ``sum(hits[i]) / sum(counts[i])`` (e.g. the fraction of correct probes)."""
    return ratio_of_sums(hits, counts)


def compare(
    stats: dict[str, Callable[[np.ndarray], float]],
    num_worlds: int,
    reference: str = "shared",
    higher_is_better: bool = True,
    seed: int = 0,
) -> dict:
    """Intervals of every variant's statistic and of ``reference`` minus each other variant.

    Returns ``{"worlds", "ci": {variant: [lo, hi]}, "diff": {variant: {"ci": [lo, hi], "call":
    "better" | "worse" | "not separated"}}}`` where the call is ``reference``'s, judged on the paired
    difference's interval."""
    idx = resamples(num_worlds, seed=seed)
    out = {"worlds": int(num_worlds), "ci": {v: interval(s, idx) for v, s in stats.items()}, "diff": {}}
    if reference not in stats:
        return out
    for v, s in stats.items():
        if v == reference:
            continue
        lo, hi = interval(lambda i, s=s: stats[reference](i) - s(i), idx)
        if lo is None:
            call = "not separated"
        elif lo > 0:
            call = "better" if higher_is_better else "worse"
        elif hi < 0:
            call = "worse" if higher_is_better else "better"
        else:
            call = "not separated"
        out["diff"][v] = {"ci": [lo, hi], "call": call}
    return out
