"""The benchmark suite: the benchmarks, and running one or all of them.

``run_benchmark(name, settings, runner, out)`` is what ``multiworld bench NAME`` calls. Every
benchmark is one module of :mod:`multiworld.bench` that owns its sizes (``Sizes``, ``QUICK``,
``FULL``), its tasks and their summary, and ``run(settings, sizes, runner, out)``, which writes
``out/NAME.json`` with the headline numbers at top level per variant (``{"shared": {...},
"private": {...}, ...}``), 95% bootstrap intervals over the probe worlds (``ci``) with the paired
shared-minus-variant calls (:mod:`multiworld.bench.stats`), the details, and the config, commit
and machine; plus ``out/NAME.md`` and its plots. Its ``headline(results, variants)`` gives its
rows of the summary table, and ``scaling(results, variants)`` (if any) its panels of
``scaling.png``. Every benchmark compares the registered variants
(:func:`multiworld.bench.variants.registered`) plus any external simulators.
"""

from __future__ import annotations

import importlib
import pathlib
from types import ModuleType

from multiworld.bench import report
from multiworld.bench.runner import Runner, Settings

BENCHMARKS = (
    "consistency",
    "fidelity",
    "events",
    "revisit",
    "drift",
    "throughput",
    "dynamics",
)  # modules of multiworld.bench
SUMMARY = ("consistency", "events", "fidelity", "revisit", "throughput", "drift")  # the summary table's order


def benchmark(name: str) -> ModuleType:
    """The module of benchmark ``name`` (imported on first use: ``multiworld --help`` stays light)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {[*BENCHMARKS, 'all']}")
    return importlib.import_module(f"multiworld.bench.{name}")


def run_benchmark(name: str, st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    """Run one benchmark (or ``"all"``) and write its files into ``out``; return its results."""
    if name == "all":
        return run_all(st, runner, out)
    module = benchmark(name)
    return module.run(st, st.sizes_of(module), runner, out)


def run_all(st: Settings, runner: Runner, out: pathlib.Path) -> dict:
    """Every benchmark, then ``summary.json`` / ``summary.md``: the headline table of every variant,
    with 95% intervals and the shared model's paired calls against each other variant, and
    ``scaling.png``: every variant against the number of agents."""
    results = {name: run_benchmark(name, st, runner, out) for name in BENCHMARKS}
    rows, cis, panels = [], {}, []
    for name in SUMMARY:
        res, module = results[name], benchmark(name)
        for key, label in module.headline(res, st.variants):
            ci = res.get("ci", {}).get(key)
            if ci is not None:
                rows.append(report.ci_row(label, res, ci, key, st.variants))
                cis[label] = ci
            else:
                rows.append({"metric": label, **{v: res[v].get(key) for v in st.variants}})
        if hasattr(module, "scaling"):
            panels += module.scaling(res, st.variants)
    summary = {v: {r["metric"]: r[v] for r in rows} for v in st.variants}
    summary["ci"] = cis
    report.plot_scaling(out / "scaling.png", panels, "Scaling with the number of agents (95% intervals over worlds)")
    report.write_json(out, "summary", summary, st.config())
    report.write_markdown(
        out,
        "summary",
        "Benchmark summary: every variant, with 95% bootstrap intervals over probe worlds",
        [
            ("Headline", report.markdown_table(rows)),
            ("Shared minus each variant (paired bootstrap over worlds)", report.calls_table(cis, st.variants)),
        ],
        st.config(),
    )
    return results
