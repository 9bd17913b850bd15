"""`benchmarks/push_payouts.py`: two checkpoints' push-v0 payouts paired on the same worlds. The
same weights twice differ by exactly nothing in every world (the pairing is exact)."""

from __future__ import annotations

import pytest

from multiworld.models.checkpoint import DEFAULT_CHECKPOINT
from tests.helpers.scripts import capture_results, load_script

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_the_shipped_weights_against_themselves_differ_by_nothing(monkeypatch):
    script = load_script("push_payouts")
    written = capture_results(script, monkeypatch)
    assert script.main(["--candidate", str(DEFAULT_CHECKPOINT), "--worlds", "2", "--steps", "20"]) == 0
    payload = written["payload"]
    checkpoint, candidate = payload["results"]
    assert {k: v for k, v in checkpoint.items() if k != "model"} == {k: v for k, v in candidate.items() if k != "model"}
    assert payload["paid_difference_per_world"] == 0 and payload["paid_difference_ci"] == [0.0, 0.0]
    assert checkpoint["oracle_pushes"] >= 0 and "paired bootstrap" in written["table"]


def test_bad_sizes_are_refused(monkeypatch):
    script = load_script("push_payouts")
    with pytest.raises(SystemExit):
        script.main(["--candidate", str(DEFAULT_CHECKPOINT), "--worlds", "1"])
