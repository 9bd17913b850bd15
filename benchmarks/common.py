"""Shared by the benchmark scripts: machine and commit info, and writing results."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess

import torch

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=RESULTS.parent
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=RESULTS.parent)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(name: str, payload: dict, table: str) -> pathlib.Path:
    """Write ``results/NAME.json`` (payload + machine, commit, time) and ``results/NAME.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(), "commit": commit(), "time": datetime.datetime.now(datetime.UTC).isoformat()}
    (RESULTS / f"{name}.json").write_text(json.dumps({**meta, **payload}, indent=2))
    m = meta["machine"]
    header = f"# {name}\n\ncommit `{meta['commit']}`, {m['platform']}, {m['cpus']} CPUs, torch {m['torch']}\n\n"
    (RESULTS / f"{name}.md").write_text(header + table + "\n")
    return RESULTS / f"{name}.json"


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
