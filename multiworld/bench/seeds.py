"""Which world seeds the benchmarks use: held out from every seed the training data uses.

Training data (``multiworld data``) uses world seeds ``seed + episode`` below
:data:`TRAIN_SEED_LIMIT`; every benchmark draws its seeds at or above :data:`PROBE_SEED_BASE`,
each benchmark from its own block, so no probe world was ever seen in training and no two
benchmarks share worlds.
"""

from __future__ import annotations

TRAIN_SEED_LIMIT = 1_000_000
PROBE_SEED_BASE = 10_000_000
_BLOCK = 1_000_000
BLOCKS = {"consistency": 0, "events": 1, "revisit": 2, "drift": 3, "fidelity": 4, "throughput": 5}


def probe_seeds(bench: str, count: int, start: int = 0) -> list[int]:
    """``count`` held-out world seeds of benchmark ``bench`` (``start`` skips the first ones)."""
    if bench not in BLOCKS:
        raise ValueError(f"unknown benchmark {bench!r}; known: {sorted(BLOCKS)}")
    if start < 0 or count < 0 or start + count > _BLOCK:
        raise ValueError(f"seed range [{start}, {start + count}) outside a benchmark's block of {_BLOCK}")
    base = PROBE_SEED_BASE + BLOCKS[bench] * _BLOCK + start
    return list(range(base, base + count))


def check_held_out(seeds) -> None:
    """Raise ValueError if any seed could be a training seed."""
    bad = [int(s) for s in seeds if int(s) < PROBE_SEED_BASE]
    if bad:
        raise ValueError(f"benchmark seeds must be >= {PROBE_SEED_BASE} (held out from training), got {bad[:5]}")
