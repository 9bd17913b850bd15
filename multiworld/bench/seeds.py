"""Moved to :mod:`multiworld.seeds` (every seed block in one module); this re-export goes after one release."""

from __future__ import annotations

import warnings

from multiworld.seeds import PROBE_SEED_BASE, PROBES, TRAIN_SEED_LIMIT, check_held_out, probe_seeds

__all__ = ["BLOCKS", "PROBE_SEED_BASE", "TRAIN_SEED_LIMIT", "check_held_out", "probe_seeds"]
BLOCKS = {name: i for i, name in enumerate(PROBES)}
warnings.warn("multiworld.bench.seeds moved to multiworld.seeds", DeprecationWarning, stacklevel=2)
