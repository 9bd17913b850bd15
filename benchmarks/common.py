"""Shared by the benchmark scripts: machine and commit info, and writing results."""

from __future__ import annotations

import datetime
import functools
import json
import pathlib

from multiworld.bench.report import commit, machine
from multiworld.bench.report import markdown_table as _markdown_table

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def write_results(name: str, payload: dict, table: str) -> pathlib.Path:
    """Write ``results/NAME.json`` (payload + machine, commit, time) and ``results/NAME.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(), "commit": commit(), "time": datetime.datetime.now(datetime.UTC).isoformat()}
    (RESULTS / f"{name}.json").write_text(json.dumps({**meta, **payload}, indent=2))
    m = meta["machine"]
    header = f"# {name}\n\ncommit `{meta['commit']}`, {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}\n\n"
    (RESULTS / f"{name}.md").write_text(header + table + "\n")
    return RESULTS / f"{name}.json"


markdown_table = functools.partial(_markdown_table, cell=str)  # the scripts round their numbers themselves
