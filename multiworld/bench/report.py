"""Writing benchmark results: JSON (config, numbers, provenance), a markdown table, PNG plots."""

from __future__ import annotations

import datetime
import json
import math
import pathlib

import numpy as np

from multiworld.bench.provenance import commit, machine, stamp
from multiworld.bench.variants import registered

STYLES = {"reference": {"linestyle": "--", "zorder": 3}, "bound": {"linestyle": ":", "alpha": 0.8}}  # by kind


def legend(variant: str) -> tuple[str, dict]:
    """A variant's label and line style in the plots (an external simulator: its name, plain)."""
    v = registered().get(variant)
    return (variant, {}) if v is None else (v.label, STYLES.get(v.kind, {}))


def _clean(x):
    """JSON-safe copy: NaN/inf become None, numpy scalars plain numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def write_json(out: pathlib.Path, name: str, results: dict, config: dict) -> pathlib.Path:
    """``out/NAME.json``: the results at top level, plus ``config``, ``commit``, ``machine``, ``time`` and
    ``provenance`` (:func:`multiworld.bench.provenance.stamp`, the checkpoints from ``config["weights"]``)."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "benchmark": name,
        "config": config,
        "commit": commit(),
        "machine": machine(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "provenance": stamp(weights_checkpoints(config)),
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(_clean({**results, **meta}), indent=2) + "\n")
    return path


def weights_checkpoints(config: dict) -> dict:
    """``{variant: checkpoint path}`` of every variant in ``config["weights"]`` that runs weights."""
    from multiworld.models.checkpoint import SHIPPED

    out = {}
    for variant, w in config.get("weights", {}).items():
        if w.get("weights_sha256"):
            name = w["weights"]
            out[variant] = SHIPPED / name.removeprefix("shipped:") if name.startswith("shipped:") else name
    return out


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def markdown_table(rows: list[dict], cell=fmt) -> str:
    """A markdown table with the columns of ``rows[0]``, every value written by ``cell``."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def with_ci(value, ci) -> str:
    """``"1.23 [1.1, 1.4]"`` for a markdown cell."""
    if value is None:
        return "n/a"
    if not ci or ci[0] is None:
        return fmt(value)
    return f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]"


def ci_row(label: str, results: dict, ci: dict, key: str, variants) -> dict:
    """A table row of every variant's ``results[v][key]`` with its interval from ``ci``."""
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
                row[f"vs {v}"] = f"{d['call']} [{fmt(d['ci'][0])}, {fmt(d['ci'][1])}]"
        rows.append(row)
    return markdown_table(rows)


def _weights(w: dict) -> str:
    """``shipped:private (91b7b7e6..., trained with --private-state)``, for a markdown header."""
    extra = [f"{w['weights_sha256'][:8]}..."] if w.get("weights_sha256") else []
    if w.get("trained_private_state"):
        extra.append("trained with --private-state")
    return w["weights"] + (f" ({', '.join(extra)})" if extra else "")


def write_markdown(
    out: pathlib.Path, name: str, title: str, sections: list[tuple[str, str]], config: dict
) -> pathlib.Path:
    """``out/NAME.md``: a title, the run's provenance, then (heading, body) sections."""
    m = machine()
    text = [f"# {title}", "", f"commit `{commit()}`, {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}", ""]
    text.append("config: " + ", ".join(f"{k}={v}" for k, v in config.items() if k != "weights"))
    if "weights" in config:
        text += ["", "weights: " + "; ".join(f"{v} = {_weights(w)}" for v, w in config["weights"].items())]
    for heading, body in sections:
        text += ["", f"## {heading}", "", body]
    path = out / f"{name}.md"
    path.write_text("\n".join(text) + "\n")
    return path


def plot_lines(
    path: pathlib.Path,
    series: dict[str, tuple[list, list]],
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = False,
    hline: float | None = None,
) -> pathlib.Path:
    """One PNG with a line per series ``{label: (xs, ys)}`` (None values are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    for label, (xs, ys) in series.items():
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y)]
        if pts:
            name, style = legend(label)
            ax.plot(*zip(*pts, strict=True), marker="o", markersize=3, label=name, **style)
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle=":", linewidth=1)
    if logx:
        ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def by_agents(results: dict, variants, value_key: str, ci_key: str, pick=lambda x: x, ci_pick=lambda c: c) -> dict:
    """``{variant: (agent counts, values, intervals)}`` from ``results[v][value_key]`` and
    ``results[v][ci_key]`` (both keyed by agent count): one panel of :func:`plot_scaling`."""
    out = {}
    for v in variants:
        by = results[v][value_key]
        ns = sorted(by, key=int)
        out[v] = ([int(n) for n in ns], [pick(by[n]) for n in ns], [ci_pick(results[v][ci_key].get(n)) for n in ns])
    return out


def plot_scaling(path: pathlib.Path, panels: list[tuple[str, dict[str, tuple[list, list, list]]]], title: str):
    """One PNG of side-by-side panels ``(ylabel, {variant: (xs, ys, [[lo, hi], ...])})`` against
    the number of agents, with the 95% intervals as error bars (None values skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), dpi=110, squeeze=False)
    names = list(dict.fromkeys(v for _, series in panels for v in series))
    colour = {v: f"C{i}" for i, v in enumerate(names)}  # one colour per variant in every panel
    for ax, (ylabel, series) in zip(axes[0], panels, strict=True):
        for label, (xs, ys, cis) in series.items():
            pts = [(x, y, c) for x, y, c in zip(xs, ys, cis, strict=True) if y is not None and math.isfinite(y)]
            if not pts:
                continue
            x, y, c = zip(*pts, strict=True)
            # A percentile interval need not contain the point estimate (a ratio of sums, a capped
            # PSNR): the bar then runs from the point to the interval's far end.
            lo = [max(0.0, yy - (cc[0] if cc and cc[0] is not None else yy)) for yy, cc in zip(y, c, strict=True)]
            hi = [max(0.0, (cc[1] if cc and cc[1] is not None else yy) - yy) for yy, cc in zip(y, c, strict=True)]
            name, style = legend(label)
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", markersize=3, capsize=2, color=colour[label],
                        label=name, **style)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("agents per world")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes[0]), key=lambda hl: len(hl[0]))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path
