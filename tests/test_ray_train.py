"""`multiworld train --ray-workers`: data-parallel training on Ray Train (2 CPU workers, gloo).

The run goes in a process of its own with its own local Ray instance (RAY_TMPDIR in a fresh
temp dir, stopped and checked for leftovers afterwards), so the test session's Ray is untouched.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from multiworld.cli import main
from tests.helpers.ray_processes import pids_mentioning, stop_processes

ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
ENV.pop("RAY_ADDRESS", None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "data.zarr"
    assert main(["data", "--episodes", "2", "--steps", "12", "--agents", "2", "--out", str(path)]) == 0
    return path


def test_a_killed_worker_restarts_from_the_last_checkpoint_and_the_run_finishes(data, tmp_path):
    """Rank 1 SIGKILLs itself at step 6 (the state was saved at step 4): Ray Train restarts the
    group, both ranks resume at step 4, the run reaches step 10, and its checkpoint is the same
    format a single process writes and runs in the env's model backend."""
    from multiworld.env.parallel import parallel_env
    from multiworld.models.checkpoint import load_checkpoint

    out, marker = tmp_path / "run", tmp_path / "killed"
    temp_dir = tempfile.mkdtemp(prefix="mwrt", dir="/tmp")  # short: unix socket paths are limited
    script = pathlib.Path(__file__).parent / "helpers" / "ray_train_run.py"
    try:
        run = subprocess.run(
            [sys.executable, str(script), str(data), str(out), str(marker)],
            env={**ENV, "RAY_TMPDIR": temp_dir},
            capture_output=True,
            text=True,
            timeout=500,
        )
    finally:
        stop_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert pids_mentioning(temp_dir) == []
    assert run.returncode == 0, run.stderr[-3000:]
    assert marker.read_text() == "rank 1 killed itself at step 6\n"  # the worker was killed mid-run
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["step"] == 10 and summary["ray"]["workers"] == 2
    assert json.loads((out / "last" / "trainer.json").read_text())["world_size"] == 2
    config = json.loads((out / "config.json").read_text())
    assert {"format", "format_version", "weights_sha256", "model", "training"} <= set(config)
    assert config["training"]["world_size"] == 2 and config["training"]["precision"] == "fp32"
    load_checkpoint(out)  # weights and config belong together
    env = parallel_env("forage-v0", num_agents=2, backend="model", checkpoint=str(out))
    obs, _ = env.reset(seed=11)
    obs, *_ = env.step({a: 1 for a in env.agents})
    assert obs["agent_0"].shape == (64, 64, 3)
