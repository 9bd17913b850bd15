"""The seed policy: one block per use, none overlapping, and the published ranges inside theirs."""

from __future__ import annotations

import itertools

import pytest

from multiworld import seeds


def test_no_two_seed_blocks_overlap():
    for a, b in itertools.combinations(seeds.BLOCKS, 2):
        assert a.stop <= b.start or b.stop <= a.start, f"the {a.name} and {b.name} seed blocks overlap"
    assert all(0 <= b.start < b.stop for b in seeds.BLOCKS)


def test_every_use_draws_from_its_block():
    assert seeds.training_seeds(3, 999_997) == [999_997, 999_998, 999_999]
    # examples/ppo_shared.py's published held-out worlds stay 1,000,000-1,000,127.
    evaluation = seeds.policy_evaluation_seeds(128)
    assert (evaluation[0], evaluation[-1]) == (1_000_000, 1_000_127)
    assert seeds.validation_seeds(4, 1000)[0] in seeds.VALIDATION
    assert seeds.model_evaluation_seeds(2) == [2_000_000, 2_000_001]
    assert seeds.probe_seeds("drift", 2) == [13_000_000, 13_000_001]
    with pytest.raises(ValueError, match="training block"):
        seeds.training_seeds(2, 999_999)
    with pytest.raises(ValueError, match="unknown benchmark"):
        seeds.probe_seeds("nope", 1)


def test_the_old_module_still_re_exports_the_probe_seeds():
    with pytest.warns(DeprecationWarning, match="multiworld.seeds"):
        import importlib
        import sys

        sys.modules.pop("multiworld.bench.seeds", None)
        old = importlib.import_module("multiworld.bench.seeds")
    assert old.probe_seeds is seeds.probe_seeds and old.PROBE_SEED_BASE == 10_000_000
    assert old.BLOCKS["consistency"] == 0 and old.TRAIN_SEED_LIMIT == 1_000_000


def test_only_checkpoint_selection_draws_from_the_validation_block():
    """No benchmark, probe, example or policy evaluation names the validation block: only the
    seed module and the trainer's validation (`multiworld.models.validation`)."""
    import pathlib
    import re

    root = pathlib.Path(seeds.__file__).resolve().parent.parent
    pattern = re.compile(r"(?<![\"'])\bvalidation_(world_)?seeds\b(?![\"'])|\bVALIDATION\b")
    users = sorted(
        path.relative_to(root).as_posix()
        for folder in ("multiworld", "benchmarks", "examples", "agents", "state")
        for path in (root / folder).rglob("*.py")
        if pattern.search(path.read_text())
    )
    assert users == ["multiworld/models/validation.py", "multiworld/seeds.py"]
    drawn = seeds.validation_world_seeds(4, 8)
    assert all(s in seeds.VALIDATION for s in drawn) and not set(drawn) & set(seeds.policy_evaluation_seeds(128))
