"""`benchmarks/checkpoint_speed.py`: two checkpoints timed in one run (its figures are never asserted
here: speed lives in benchmarks). The paired rounds, the ratio's interval and reading a checkpoint
out of git history."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py
SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "checkpoint_speed.py"


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("checkpoint_speed", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_a_run_against_the_default_of_git_history_writes_paired_rounds(script, monkeypatch):
    written = {}
    monkeypatch.setattr(
        script,
        "write_results",
        lambda name, payload, table, checkpoints: (
            written.update(name=name, payload=payload, table=table, checkpoints=checkpoints) or pathlib.Path(name)
        ),
    )
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
