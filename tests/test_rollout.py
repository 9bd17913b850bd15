"""Distributed rollouts: every episode recorded once, a killed worker replaced and its episodes retried."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from multiworld.runtime.rollout import RolloutConfig, format_summary, run_rollout
from multiworld.state import WorldStore


def _check_store(url: str, cfg: RolloutConfig) -> None:
    store = WorldStore.open(url, "r")
    assert sorted(store.worlds()) == [f"ep{k:05d}" for k in range(cfg.episodes)]
    for k in range(cfg.episodes):
        reader = store.world(f"ep{k:05d}")
        assert reader.seed == cfg.seed + k
        assert reader.read("step").tolist() == list(range(reader.steps))
        assert reader.steps == cfg.max_cycles + 1 or bool(reader.terminations(reader.steps - 1).all())
        assert reader.frames(reader.steps - 1).shape == (cfg.agents, cfg.height, cfg.width, 3)


@pytest.mark.usefixtures("ray_session")
def test_rollout_survives_a_killed_worker(tmp_path):
    url = str(tmp_path / "store")
    cfg = RolloutConfig(
        out=url, episodes=5, workers=2, envs_per_worker=2, agents=2, max_cycles=12, height=16, width=16,
        crash_at=(2, 6),  # the worker running episodes 2-3 SIGKILLs itself at step 6 of its first attempt
    )  # fmt: skip
    summary = run_rollout(cfg, progress=False)
    assert summary["episodes"] == 5 and summary["failed_episodes"] == []
    assert summary["failures"] == 1 and summary["retries"] == 1
    assert 5 <= summary["steps"] <= 5 * 12
    assert "worker failures" in format_summary(summary)
    _check_store(url, cfg)
    # The retried episodes are the same as in an undisturbed run (seeded).
    ref_url = str(tmp_path / "ref")
    run_rollout(RolloutConfig(**{**cfg.__dict__, "out": ref_url, "crash_at": None, "episodes": 4}), progress=False)
    a, b = WorldStore.open(url, "r").world("ep00002"), WorldStore.open(ref_url, "r").world("ep00002")
    assert np.array_equal(a.actions(), b.actions()) and np.array_equal(a.poses(), b.poses())


def test_bad_rollout_config_is_rejected():
    with pytest.raises(ValueError, match="workers"):
        RolloutConfig(out="x", workers=0).validate()
    with pytest.raises(ValueError, match="policy"):
        RolloutConfig(out="x", policy="greedy").validate()


def test_unreachable_address_fails_fast_naming_it(tmp_path):
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "multiworld.cli", "rollout", "--address", "127.0.0.1:1", "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert time.monotonic() - start < 30
    assert proc.returncode != 0
    assert "127.0.0.1:1" in proc.stderr


@pytest.mark.usefixtures("ray_session")
def test_rollout_to_s3(monkeypatch):
    """Workers in other processes write their worlds to one S3 store (moto's server on 127.0.0.1)."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import socket

    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        import s3fs

        options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "test", "secret": "test"}
        # moto's in-memory backend is shared by every server of this process: start clean.
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
        s3fs.S3FileSystem(**options, skip_instance_cache=True).mkdir("bucket")
        cfg = RolloutConfig(
            out="s3://bucket/rollout", storage_options=options, episodes=3, workers=2, agents=2, max_cycles=5,
            height=16, width=16,
        )  # fmt: skip
        summary = run_rollout(cfg, progress=False)
        assert summary["episodes"] == 3 and summary["failures"] == 0
        assert len({r["pid"] for r in summary["results"]}) == 2  # both workers wrote
        store = WorldStore.open(cfg.out, "r", storage_options=options)
        assert sorted(store.worlds()) == ["ep00000", "ep00001", "ep00002"]
        assert store.world("ep00002").frames(5).shape == (2, 16, 16, 3)
    finally:
        server.stop()
