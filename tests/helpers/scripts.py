"""Loading a benchmark script (``benchmarks/NAME.py``) as a module, its results writer replaced."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str):
    """``benchmarks/NAME.py`` as a module (its ``common`` import resolved from ``benchmarks/``)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def capture_results(module, monkeypatch) -> dict:
    """Replace ``module.write_results`` with one that keeps what it was given; returns that dict."""
    written: dict = {}

    def write(name, payload, table, checkpoints=None):
        written.update(name=name, payload=payload, table=table, checkpoints=checkpoints)
        return pathlib.Path(f"{name}.json")

    monkeypatch.setattr(module, "write_results", write)
    return written
