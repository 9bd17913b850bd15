"""`benchmarks/checkpoint_speed.py`: two checkpoints timed in one run (its figures are never asserted
here: speed lives in benchmarks). The paired rounds, the ratio's interval and reading a checkpoint
out of git history."""

from __future__ import annotations

import pytest

from tests.helpers.scripts import capture_results, load_script

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def script():
    return load_script("checkpoint_speed")


def test_a_run_against_the_default_of_git_history_writes_paired_rounds(script, monkeypatch):
    written = capture_results(script, monkeypatch)
    assert script.main(["--against", "git:HEAD", "--rounds", "2", "--steps", "1"]) == 0
    payload = written["payload"]
    assert payload["against"] == "git:HEAD" and written["name"] == "checkpoint_speed"
    (row,) = payload["results"]
    assert row["path"] == "eager"
    for part in script.PARTS:
        assert row[f"{part}_ms"] > 0 and row[f"{part}_ratio"] > 0 and len(row[f"{part}_ratio_ci"]) == 2
        assert [len(payload["per_round"][0][who][part]) for who in ("checkpoint", "against")] == [2, 2]
    assert "ratio" in written["table"]


def test_an_unknown_revision_names_the_problem(script, tmp_path):
    with pytest.raises(SystemExit, match="no default checkpoint there"):
        script.from_history("no-such-revision", tmp_path)
