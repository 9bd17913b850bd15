"""Cross-view consistency and event propagation: shared state vs private state vs oracle.

A thin wrapper of ``multiworld bench consistency`` that writes into benchmarks/results/:

    python benchmarks/consistency.py [--quick] [--backend model|oracle] [--checkpoint DIR] [--address auto]
"""

from __future__ import annotations

import pathlib
import sys

from multiworld.cli import main

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    sys.exit(main(["bench", "consistency", "--out", str(RESULTS), *sys.argv[1:]]))
