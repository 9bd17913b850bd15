"""The store on a real S3 API: moto's server on 127.0.0.1, reached through s3fs/fsspec."""

from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest

from multiworld.state import (
    NotAStoreError,
    StepOutOfRangeError,
    StoreNotFoundError,
    WorldLockedError,
    WorldStore,
)
from multiworld.state import synthetic as syn

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

SHAPES = syn.Shapes(size=5, agents=2, boxes=1, items=2, tokens=(2, 4), frame_hw=(4, 4))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        mp.setenv(k, v)
    mp.delenv("AWS_PROFILE", raising=False)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    import s3fs

    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "test", "secret": "test"}
    # moto keeps one in-memory backend per process, shared by every server it starts: clear
    # what other tests' servers left behind.
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/reset", method="POST"))
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    fs.mkdir("bucket")
    yield options, fs
    server.stop()
    mp.undo()


def _row(seed, t):
    row = syn.step_row(seed, t, SHAPES)
    return row.pop("state"), row


def _check(reader, seed, rows):
    rows = list(rows)
    syn.assert_rows(reader, [syn.expected(seed, t, SHAPES) for t in rows], start=rows[0])


def test_write_commit_reopen_fork_on_s3(s3):
    options, fs = s3
    url = "s3://bucket/store"
    store = WorldStore.open(url, mode="w", storage_options=options)
    w = store.create_world(
        "w0",
        syn.initial_state(5, SHAPES),
        scenario="push",
        seed=5,
        **SHAPES.world_kwargs(),
        **syn.initial_extras(5, SHAPES),
    )
    for t in range(1, 5):
        state, row = _row(5, t)
        w.append(state, **row, commit=t % 2 == 0)
    state, row = _row(5, 5)
    w.append(state, **row, commit=False)  # never committed: invisible after reopening
    # one writer per world: the lease object refuses a second writer
    other = WorldStore.open(url, mode="r+", storage_options=options)
    with pytest.raises(WorldLockedError, match="lease"):
        other.writer("w0")
    w.close(commit=False)
    store.close()

    store = WorldStore.open(url, mode="r+", storage_options=options)
    assert store.worlds() == ["w0"]
    r = store.world("w0")
    assert r.steps == 5
    _check(r, 5, range(5))
    with pytest.raises(StepOutOfRangeError):
        store.fork("w0", 5)
    child = store.fork("w0", 2, "child")
    cw = store.writer(child)
    for t in range(3, 6):
        state, row = _row(9, t)
        cw.append(state, **row)
    cw.close()
    # the prefix was not copied: the child's arrays hold chunks for its own rows only
    keys = fs.find("bucket/store/worlds/child/poses")
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == ["c.3.0.0", "c.4.0.0", "c.5.0.0", "zarr.json"]
    store.close()

    ro = WorldStore.open(url, mode="r", storage_options=options)
    c = ro.world("child")
    assert c.steps == 6 and c.lineage() == [("w0", 2), ("child", 5)]
    _check(c, 5, range(3))
    np.testing.assert_array_equal(c.poses(3, 6), np.stack([_row(9, t)[0]["poses"] for t in range(3, 6)]))
    # the writer lease was released on close
    WorldStore.open(url, mode="r+", storage_options=options).writer("w0").close()


def test_bad_locations_on_s3(s3):
    options, fs = s3
    with pytest.raises(StoreNotFoundError):
        WorldStore.open("s3://bucket/nothing-here", mode="r", storage_options=options)
    fs.pipe("bucket/other/data.csv", b"a,b\n1,2\n")
    with pytest.raises(NotAStoreError):
        WorldStore.open("s3://bucket/other", mode="w", storage_options=options)
    assert fs.cat("bucket/other/data.csv") == b"a,b\n1,2\n"
