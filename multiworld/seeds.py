"""Which world seeds each use draws from: one block per use, so no world serves two purposes.

=====================  ===========================  ==============================================
block                  seeds                        used by
=====================  ===========================  ==============================================
training               [0, 1_000_000)               ``multiworld data`` (episode e uses seed + e)
policy evaluation      [1_000_000, 1_500_000)       held-out worlds of a trained policy (examples)
validation             [1_500_000, 2_000_000)       ``multiworld train``'s checkpoint selection only
model evaluation       [2_000_000, 3_000_000)       ``benchmarks/fidelity.py``, ``model_speed.py``
probes                 [10_000_000, 16_000_000)     ``multiworld bench``: 1,000,000 per benchmark
=====================  ===========================  ==============================================

So no benchmark world was seen in training or used to pick a checkpoint, and no two benchmarks
share worlds. ``tests/test_seeds.py`` fails when two blocks overlap.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SeedBlock:
    """The world seeds ``[start, stop)`` of one use."""

    name: str
    start: int
    stop: int

    def seeds(self, count: int, offset: int = 0) -> list[int]:
        """``count`` seeds from ``start + offset`` (ValueError if they leave the block)."""
        if offset < 0 or count < 0 or self.start + offset + count > self.stop:
            raise ValueError(
                f"seed range [{offset}, {offset + count}) outside the {self.name} block of {self.stop - self.start}"
            )
        return list(range(self.start + offset, self.start + offset + count))

    def __contains__(self, seed: int) -> bool:
        return self.start <= int(seed) < self.stop


TRAINING = SeedBlock("training", 0, 1_000_000)
POLICY_EVALUATION = SeedBlock("policy evaluation", 1_000_000, 1_500_000)
VALIDATION = SeedBlock("validation", 1_500_000, 2_000_000)
MODEL_EVALUATION = SeedBlock("model evaluation", 2_000_000, 3_000_000)
PROBE_SEED_BASE = 10_000_000
_PROBE_BLOCK = 1_000_000
PROBES = {
    name: SeedBlock(f"{name} probe", PROBE_SEED_BASE + i * _PROBE_BLOCK, PROBE_SEED_BASE + (i + 1) * _PROBE_BLOCK)
    for i, name in enumerate(
        ("consistency", "events", "revisit", "drift", "fidelity", "throughput", "vizdoom", "dynamics")
    )
}
BLOCKS = (TRAINING, POLICY_EVALUATION, VALIDATION, MODEL_EVALUATION, *PROBES.values())
TRAIN_SEED_LIMIT = TRAINING.stop

training_seeds = TRAINING.seeds
policy_evaluation_seeds = POLICY_EVALUATION.seeds
validation_seeds = VALIDATION.seeds
model_evaluation_seeds = MODEL_EVALUATION.seeds


def validation_world_seeds(num_agents: int, count: int) -> list[int]:
    """The held-out worlds that validate a model on ``num_agents`` agents (any scenario): ``count``
    seeds from ``1000 * num_agents`` into the validation block, one range per agent count.
    ``multiworld.models.validation`` is their only user (``tests/test_seeds.py`` checks)."""
    if count > 1000:
        raise ValueError(f"at most 1000 validation worlds per agent count, got {count}")
    return VALIDATION.seeds(count, 1000 * num_agents)


def probe_seeds(bench: str, count: int, start: int = 0) -> list[int]:
    """``count`` held-out world seeds of benchmark ``bench`` (``start`` skips the first ones)."""
    if bench not in PROBES:
        raise ValueError(f"unknown benchmark {bench!r}; known: {sorted(PROBES)}")
    return PROBES[bench].seeds(count, start)


def check_held_out(seeds) -> None:
    """Raise ValueError if any seed is not a benchmark probe seed (it could be a training seed)."""
    bad = [int(s) for s in seeds if int(s) < PROBE_SEED_BASE]
    if bad:
        raise ValueError(f"benchmark seeds must be >= {PROBE_SEED_BASE} (held out from training), got {bad[:5]}")
