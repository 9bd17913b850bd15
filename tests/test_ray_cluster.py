"""A real two-node Ray cluster on this machine (loopback only): `multiworld rollout` and
`multiworld bench --address` use both nodes.

Everything runs in subprocesses, so the test session's own Ray instance is untouched. Ray binds
to 127.0.0.1 only with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, but its CLI then refuses to start a
second node; NODE_LAUNCHER lifts that one CLI check (nothing else changes, every address stays
on loopback). The cluster is stopped by killing the processes that carry its temp dir in their
command line or open files (`ray stop` would stop every Ray instance on the machine, other
users' included).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from tests.helpers.ray_processes import pids_mentioning, stop_processes

NODE_LAUNCHER = """
import types
import ray._private.ray_constants as rc
from ray.scripts import scripts
proxy = types.SimpleNamespace(**{k: getattr(rc, k) for k in dir(rc) if not k.startswith("__")})
proxy.ENABLE_RAY_CLUSTER = True  # the CLI's worker-node check only
scripts.ray_constants = proxy
scripts.main()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
ENV.pop("RAY_ADDRESS", None)
RUN = dict(env=ENV, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def cluster():
    """A head node and a worker node (1 CPU each) on 127.0.0.1; yields the head's address."""
    temp_dir = tempfile.mkdtemp(prefix="mwrc", dir="/tmp")  # short: unix socket paths are limited
    port = _free_port()
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    try:
        head = subprocess.run(
            [*ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", *common], **RUN
        )
        assert head.returncode == 0, head.stderr[-2000:]
        node = subprocess.run(
            [sys.executable, "-c", NODE_LAUNCHER, "start", f"--address=127.0.0.1:{port}", *common], **RUN
        )
        assert node.returncode == 0, node.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        stop_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert pids_mentioning(temp_dir) == []


def test_rollout_across_two_nodes(cluster, tmp_path):
    out = tmp_path / "store"
    summary_path = tmp_path / "summary.json"
    rollout = subprocess.run(
        [
            sys.executable, "-m", "multiworld.cli", "rollout", "--address", cluster,
            "--workers", "2", "--episodes", "4", "--agents", "2", "--max-cycles", "8",
            "--height", "16", "--width", "16", "--out", str(out), "--summary", str(summary_path), "--no-progress",
        ],
        **{**RUN, "timeout": 240},
    )  # fmt: skip
    assert rollout.returncode == 0, rollout.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["episodes"] == 4 and summary["failures"] == 0
    assert len(summary["nodes"]) == 2, summary["nodes"]  # one 1-CPU worker per node
    assert "agent-frames/s" in rollout.stdout


def test_bench_on_the_cluster_matches_the_local_run(cluster, tmp_path):
    """`multiworld bench --address` spreads the probes over the cluster's tasks and measures the same numbers."""
    results = {}
    for where, extra in (("cluster", ["--address", cluster]), ("local", [])):
        bench = subprocess.run(
            [
                sys.executable, "-m", "multiworld.cli", "bench", "events", "--quick", "--threads", "1",
                "--out", str(tmp_path / where), "--no-progress", *extra,
            ],
            **{**RUN, "timeout": 600},
        )  # fmt: skip
        assert bench.returncode == 0, bench.stderr[-3000:]
        results[where] = json.loads((tmp_path / where / "events.json").read_text())
    for variant in ("shared", "private", "oracle"):
        assert results["cluster"][variant] == results["local"][variant], variant
    assert results["cluster"]["details"] == results["local"]["details"]  # every probe, in order
    assert results["cluster"]["details"]["num_probes"] > 0


def test_rollout_survives_a_node_removed_mid_episode(tmp_path):
    """Two nodes (`ray.cluster_utils.Cluster` on loopback), a rollout worker on each; the second
    node is removed while its worker is mid-episode. The rollout finishes on the head, every world
    is stored exactly once and complete, and the retried episode equals an undisturbed run's."""
    from multiworld.state import WorldStore

    temp_dir = tempfile.mkdtemp(prefix="mwrn", dir="/tmp")  # short: unix socket paths are limited
    out, ref, hold = tmp_path / "store", tmp_path / "ref", tmp_path / "hold"
    hold.mkdir()
    script = pathlib.Path(__file__).parent / "helpers" / "two_node_rollout.py"
    try:
        run = subprocess.run(
            [sys.executable, str(script), str(out), str(ref), str(hold)],
            **{**RUN, "env": {**ENV, "RAY_TMPDIR": temp_dir}, "timeout": 400},
        )
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        stop_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert pids_mentioning(temp_dir) == []
    report = json.loads(run.stdout.strip().splitlines()[-1])
    summary = report["summary"]
    assert summary["episodes"] == 6 and summary["failed_episodes"] == []
    assert summary["failures"] == 1 and summary["retries"] == 1  # the removed node's worker, and only it
    assert {r["node_id"] for r in summary["results"]} == {report["head"]}  # all finished on the head
    assert (hold / f"holding-{report['removed']}").exists()
    store, reference = WorldStore.open(str(out), "r"), WorldStore.open(str(ref), "r")
    assert sorted(store.worlds()) == [f"ep{k:05d}" for k in range(6)]  # each world once, no debris
    for k in range(6):
        a, b = store.world(f"ep{k:05d}"), reference.world(f"ep{k:05d}")
        assert a.seed == k and a.read("step").tolist() == list(range(a.steps))
        assert a.steps == b.steps and np.array_equal(a.actions(), b.actions()) and np.array_equal(a.poses(), b.poses())
