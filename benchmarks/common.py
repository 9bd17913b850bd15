"""Shared by the benchmark scripts: machine and commit info, and writing results."""

from __future__ import annotations

import datetime
import functools
import json
import pathlib
import time

from multiworld.bench.provenance import commit, machine, stamp
from multiworld.bench.report import markdown_table as _markdown_table

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def write_results(name: str, payload: dict, table: str, checkpoints: dict | None = None) -> pathlib.Path:
    """Write ``results/NAME.json`` (payload + machine, commit, time, provenance) and ``results/NAME.md``.

    ``checkpoints``: ``{role: checkpoint directory}`` of every checkpoint the benchmark ran (None as a
    directory: the shipped default), hashed into the provenance block."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    prov = stamp(checkpoints)
    meta = {"machine": machine(), "commit": commit(), "time": datetime.datetime.now(datetime.UTC).isoformat()}
    (RESULTS / f"{name}.json").write_text(json.dumps({**meta, **payload, "provenance": prov}, indent=2))
    m = meta["machine"]
    load = f"load {prov['load']['start'][0]} at the start, {prov['load']['end'][0]} at the end"
    header = f"# {name}\n\ncommit `{meta['commit']}`, {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}, {load}\n\n"
    (RESULTS / f"{name}.md").write_text(header + table + "\n")
    return RESULTS / f"{name}.json"


markdown_table = functools.partial(_markdown_table, cell=str)  # the scripts round their numbers themselves


def timed_update_and_render(sim, actions) -> tuple[float, float]:
    """One state update and one render of all views of a model simulator (eager or compiled, at its
    precision, under inference mode as the simulator renders): seconds of each."""
    import torch

    t0 = time.perf_counter()
    sim._update_latent(actions)
    t1 = time.perf_counter()
    with torch.inference_mode(), sim._autocast():
        sim._render()
    return t1 - t0, time.perf_counter() - t1
