"""The Zarr world-state store: round trips, forks, rewinds, locking, bad input, plain-zarr interop."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import warnings

import msgpack
import numpy as np
import pytest

from multiworld.state import (
    CorruptStoreError,
    InvalidWorldIdError,
    NotAStoreError,
    ReadOnlyError,
    SchemaVersionError,
    StepOutOfRangeError,
    StoreError,
    StoreNotFoundError,
    ValidationError,
    WorldExistsError,
    WorldInUseError,
    WorldLockedError,
    WorldNotFoundError,
    WorldStore,
)
from multiworld.state import synthetic as syn
from multiworld.world.state import WorldState

SHAPES = syn.Shapes(size=6, agents=3, boxes=2, items=3, tokens=(2, 3, 4), frame_hw=(5, 4))
STEP_NAMES = ("poses", "actions", "rewards", "terminations", "truncations", "boxes", "items_alive", "step")


def make_world(store, world_id="w0", seed=0, steps=5, shapes=SHAPES, commit=True, **kwargs):
    writer = store.create_world(
        world_id,
        syn.initial_state(seed, shapes),
        scenario="push",
        seed=seed,
        config={"size": shapes.size, "nested": {"a": [1, 2]}},
        **shapes.world_kwargs(),
        **syn.initial_extras(seed, shapes),
        **kwargs,
    )
    for t in range(1, steps + 1):
        row = syn.step_row(seed, t, shapes)
        writer.append(row.pop("state"), **row, commit=commit)
    return writer


def assert_rows(reader, seed, rows, shapes=SHAPES):
    """Rows ``rows`` of ``reader`` equal the generator's rows of world ``seed``."""
    for t in rows:
        exp = syn.expected(seed, t, shapes)
        for name in STEP_NAMES:
            np.testing.assert_array_equal(reader.read(name, t, t + 1)[0], exp[name], err_msg=f"{name}[{t}]")
        assert reader.events(t) == exp["events"], t
        if shapes.tokens is not None:
            np.testing.assert_array_equal(reader.tokens(t), exp["tokens"])
        if shapes.frame_hw is not None:
            np.testing.assert_array_equal(reader.frames(t), exp["frames"])


def written_rows(array_dir) -> set[int]:
    """Rows that have a chunk stored under ``array_dir`` (a chunk file per row, or shard index entries)."""
    array_dir = pathlib.Path(array_dir)
    meta = json.loads((array_dir / "zarr.json").read_text())
    if meta["codecs"][0]["name"] != "sharding_indexed":
        return {int(f.split(".")[1]) for f in os.listdir(array_dir) if f.startswith("c.")}
    per_shard = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
    rows = set()
    for f in os.listdir(array_dir):
        if f.startswith("c."):
            index = np.frombuffer((array_dir / f).read_bytes()[: 16 * per_shard], dtype="<u8").reshape(-1, 2)
            first = int(f.split(".")[1]) * per_shard
            rows |= {first + i for i in range(per_shard) if index[i, 0] != 2**64 - 1}
    return rows


@pytest.fixture
def store(tmp_path):
    with WorldStore.open(tmp_path / "store", mode="w") as s:
        yield s


@pytest.fixture(params=[1, 4, None], ids=["chunk-per-row", "shards-of-4", "default-shards"])
def any_store(request, tmp_path):
    """Stores with every per-step layout: one object per row, small shards, the local default."""
    with WorldStore.open(tmp_path / "store", mode="w", shard_rows=request.param) as s:
        yield s


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("tokens_dtype,shard_rows", [("float16", None), ("float32", 4), ("float16", 1)])
def test_round_trip_every_array(tmp_path, tokens_dtype, shard_rows):
    shapes = syn.Shapes(
        size=6, agents=3, boxes=2, items=3, tokens=(2, 3, 4), tokens_dtype=tokens_dtype, frame_hw=(5, 4)
    )
    with WorldStore.open(tmp_path / "s", mode="w", shard_rows=shard_rows) as store:
        make_world(store, steps=6, shapes=shapes, checkpoint_hash="abc123").close()
    with WorldStore.open(tmp_path / "s", mode="r") as store:
        r = store.world("w0")
        assert r.steps == 7 and r.last_step == 6
        assert_rows(r, 0, range(7), shapes)
        # bulk reads keep dtypes and shapes
        assert r.poses().dtype == np.float32 and r.poses().shape == (7, 3, 3)
        assert r.actions().dtype == np.int16 and r.rewards().dtype == np.float32
        assert r.terminations().dtype == bool and r.truncations().shape == (7, 3)
        assert r.read("tokens").dtype == np.dtype(tokens_dtype) and r.read("tokens").shape == (7, 2, 3, 4)
        assert r.read("frames").dtype == np.uint8 and r.read("frames").shape == (7, 3, 5, 4, 3)
        assert r.read("step").tolist() == list(range(7))
        assert r.read("events") == [syn.expected(0, t, shapes)["events"] for t in range(7)]
        init = syn.initial_state(0, shapes)
        for name in ("walls", "floor", "goals", "items", "colors"):
            np.testing.assert_array_equal(r.static[name], init[name])
            assert r.static[name].dtype == init[name].dtype
        # row 0 convention
        assert (r.actions(0, 1) == -1).all() and (r.rewards(0, 1) == 0).all()
        assert not r.terminations(0, 1).any() and not r.truncations(0, 1).any()
        # state(t) is the oracle's WorldState with B=1
        s3 = r.state(3)
        assert isinstance(s3, WorldState) and s3.num_worlds == 1
        want = dict(init, **{k: syn.expected(0, 3, shapes)[k] for k in ("poses", "boxes", "items_alive", "step")})
        assert s3.equals(WorldState.from_arrays({k: np.asarray(v)[None] for k, v in want.items()}))
        batch = r.states(2, 5)
        assert batch.num_worlds == 3 and batch.select(1).equals(s3)
        # attributes
        a = r.attrs
        assert a["scenario"] == "push" and a["seed"] == 0 and a["checkpoint_hash"] == "abc123"
        assert a["config"] == {"size": 6, "nested": {"a": [1, 2]}} and a["parent"] is None
        assert a["agents"] == ["agent_0", "agent_1", "agent_2"] and a["committed_steps"] == 7
        assert r.has_tokens and r.has_frames and r.lineage() == [("w0", 6)]


def test_world_without_optional_arrays_and_empty_boxes(store):
    shapes = syn.Shapes(size=4, agents=1, boxes=0, items=0, tokens=None, frame_hw=None)
    make_world(store, "bare", seed=3, steps=3, shapes=shapes).close()
    r = store.world("bare")
    assert not r.has_tokens and not r.has_frames
    assert r.read("boxes").shape == (4, 0, 2) and r.read("items_alive").shape == (4, 0)
    assert_rows(r, 3, range(4), shapes)
    with pytest.raises(ValidationError, match="no per-step array 'tokens'"):
        r.tokens(0)


def test_initial_state_as_worldstate_and_dict_actions(store):
    init = syn.initial_state(1, SHAPES)
    ws = WorldState.from_arrays({k: np.asarray(v)[None] for k, v in init.items()})
    w = store.create_world("ws", ws, scenario="s", seed=None, tokens_shape=SHAPES.tokens)
    row = syn.step_row(1, 1, SHAPES)
    agents = w.agents
    w.append(
        WorldState.from_arrays(
            {
                **{k: np.asarray(v)[None] for k, v in init.items()},
                **{k: np.asarray(v)[None] for k, v in row["state"].items()},
            }
        ),
        actions={a: int(x) for a, x in zip(agents, row["actions"])},
        rewards={a: float(x) for a, x in zip(agents, row["rewards"])},
        terminations={a: bool(x) for a, x in zip(agents, row["terminations"])},
        truncations=list(row["truncations"]),
        events=[{"type": "push", "n": np.int64(3), "arr": np.arange(2)}],
    )
    w.close()
    r = store.world("ws")
    np.testing.assert_array_equal(r.actions(1, 2)[0], row["actions"])
    np.testing.assert_array_equal(r.rewards(1, 2)[0], row["rewards"])
    assert r.events(1) == [{"type": "push", "n": 3, "arr": [0, 1]}]
    assert np.isnan(r.tokens(1)).all()  # appended without tokens
    assert r.seed is None


def test_uncommitted_rows_are_invisible(tmp_path):
    path = tmp_path / "s"
    store = WorldStore.open(path, mode="w")
    w = make_world(store, steps=2)
    row = syn.step_row(0, 3, SHAPES)
    w.append(row.pop("state"), **row, commit=False)
    assert w.steps == 3 and w.pending == 1 and w.next_step == 4
    other = WorldStore.open(path, mode="r")
    assert other.world("w0").steps == 3
    with pytest.raises(StepOutOfRangeError):
        other.world("w0").state(3)
    assert w.commit() == 4
    reader = other.world("w0")
    assert reader.steps == 4
    assert_rows(reader, 0, [3])
    w.close()
    # a failing block discards rows appended inside it
    with pytest.raises(RuntimeError), store.writer("w0") as w2:
        row = syn.step_row(0, 4, SHAPES)
        w2.append(row.pop("state"), **row, commit=False)
        raise RuntimeError("boom")
    assert reader.refresh().steps == 4


def test_writer_resumes_after_reopen(tmp_path):
    with WorldStore.open(tmp_path / "s", mode="w") as store:
        make_world(store, steps=3).close()
    with WorldStore.open(tmp_path / "s", mode="r+") as store:
        w = store.writer("w0")
        assert w.next_step == 4
        row = syn.step_row(0, 4, SHAPES)
        assert w.append(row.pop("state"), **row) == 4
        w.close()
    with WorldStore.open(f"file://{tmp_path / 's'}", mode="r") as store:
        assert_rows(store.world("w0"), 0, range(5))
        assert store.worlds() == ["w0"] and "w0" in store and "nope" not in store


# ----------------------------------------------------------------------------- forks and rewinds
def _child_row(t):
    row = syn.step_row(77, t, SHAPES)  # a different history than the parent's
    return row.pop("state"), row


def test_fork_shares_the_prefix_without_copying(tmp_path, any_store):
    store = any_store
    make_world(store, steps=8).close()
    child = store.fork("w0", 4)
    r = store.world(child)
    assert r.steps == 5 and r.parent == {"world": "w0", "step": 4}
    assert_rows(r, 0, range(5))
    # no row of the prefix was copied: the child's own arrays hold no chunk yet
    for name in (*STEP_NAMES, "events", "tokens", "frames"):
        files = os.listdir(tmp_path / "store" / "worlds" / child / name)
        assert files == ["zarr.json"], (name, files)
    w = store.writer(child)
    for t in range(5, 9):
        state, row = _child_row(t)
        w.append(state, **row)
    w.close()
    r = store.world(child)
    assert r.steps == 9
    assert_rows(r, 0, range(5))
    np.testing.assert_array_equal(
        r.poses(5, 9), np.stack([syn.step_row(77, t, SHAPES)["state"]["poses"] for t in range(5, 9)])
    )
    assert_rows(store.world("w0"), 0, range(9))  # parent untouched
    for name in (*STEP_NAMES, "events", "tokens", "frames"):
        assert written_rows(tmp_path / "store" / "worlds" / child / name) == {5, 6, 7, 8}, name
    # fork of a fork, reading across the chain
    grandchild = store.fork(child, 6, "gc")
    g = store.world(grandchild)
    assert g.lineage() == [("w0", 4), (child, 6), ("gc", 6)]
    np.testing.assert_array_equal(g.poses(), r.poses(0, 7))
    assert g.state(6).equals(r.state(6)) and g.state(2).equals(store.world("w0").state(2))
    assert g.read("events") == r.read("events", 0, 7)


def test_fork_while_parent_is_written(store):
    w = make_world(store, steps=3)
    child = store.fork("w0", 3, "c")
    row = syn.step_row(0, 4, SHAPES)
    w.append(row.pop("state"), **row)
    assert store.world("c").steps == 4
    assert store.world("w0").steps == 5
    with pytest.raises(WorldInUseError, match="forks"):
        w.rewind(2)
    w.rewind(3)  # the child reads rows <= 3 only
    assert store.world(child).state(3).equals(store.world("w0").state(3))
    w.close()


def test_rewind_then_append_overwrites(any_store):
    store = any_store
    w = make_world(store, steps=6)
    w.rewind(3)
    assert w.steps == 4 and store.world("w0").steps == 4
    for t in range(4, 7):
        state, row = _child_row(t)
        w.append(state, **row)
    r = store.world("w0")
    assert r.steps == 7 and r.attrs["rewinds"] == 1
    assert_rows(r, 0, range(4))
    np.testing.assert_array_equal(
        r.actions(4, 7), np.stack([syn.step_row(77, t, SHAPES)["actions"] for t in range(4, 7)])
    )
    with pytest.raises(StepOutOfRangeError):
        w.rewind(7)
    with pytest.raises(StepOutOfRangeError):
        w.rewind(-1)
    w.close()
    store.rewind("w0", 0)
    assert store.world("w0").steps == 1


def test_rewind_a_fork_below_its_fork_step(any_store):
    store = any_store
    make_world(store, steps=6).close()
    store.fork("w0", 4, "c")
    w = store.writer("c")
    w.rewind(2)
    assert store.world("c").parent == {"world": "w0", "step": 2} and store.world("c").steps == 3
    state, row = _child_row(3)
    w.append(state, **row)
    w.close()
    r = store.world("c")
    assert_rows(r, 0, range(3))
    np.testing.assert_array_equal(r.poses(3, 4)[0], syn.step_row(77, 3, SHAPES)["state"]["poses"])
    # the parent can now be rewound down to 2, not below
    with pytest.raises(WorldInUseError):
        store.rewind("w0", 1)
    store.rewind("w0", 2)


def test_delete_world(store):
    make_world(store, steps=2).close()
    store.fork("w0", 1, "c")
    with pytest.raises(WorldInUseError):
        store.delete_world("w0")
    store.delete_world("c")
    store.delete_world("w0")
    assert store.worlds() == []
    with pytest.raises(WorldNotFoundError):
        store.world("w0")
    make_world(store, steps=1).close()  # the id can be reused
    assert_rows(store.world("w0"), 0, range(2))


def test_interrupted_creation_is_invisible_and_replaced(tmp_path, store):
    ghost = tmp_path / "store" / "worlds" / "ghost"
    (ghost / "poses").mkdir(parents=True)
    (ghost / "poses" / "c.0.0.0").write_bytes(b"torn")
    (ghost / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    assert store.worlds() == [] and "ghost" not in store
    with pytest.raises(WorldNotFoundError):
        store.world("ghost")
    make_world(store, "ghost", steps=2).close()
    assert_rows(store.world("ghost"), 0, range(3))


def test_damaged_committed_rows_are_reported(tmp_path):
    with WorldStore.open(tmp_path / "plain", mode="w", shard_rows=1) as store:
        make_world(store, steps=3).close()
        poses = tmp_path / "plain" / "worlds" / "w0" / "poses"
        (poses / "c.2.0.0").write_bytes(b"short")
        with pytest.raises(CorruptStoreError, match="row 2"):
            store.world("w0").poses()
        (poses / "c.2.0.0").unlink()
        with pytest.raises(CorruptStoreError, match="row 2 of 'poses' is missing"):
            store.world("w0").state(2)
        assert store.world("w0").state(1).num_worlds == 1
    with WorldStore.open(tmp_path / "sharded", mode="w") as store:
        make_world(store, steps=3).close()
        shard = tmp_path / "sharded" / "worlds" / "w0" / "poses" / "c.0.0.0"
        data = bytearray(shard.read_bytes())
        data[16 * 2 : 16 * 3] = b"\xff" * 16  # row 2's index entry: never written
        shard.write_bytes(bytes(data))
        with pytest.raises(CorruptStoreError, match="row 2 of 'poses' is missing"):
            store.world("w0").poses()
        shard.write_bytes(bytes(data[: 16 * 256 + 10]))  # torn shard
        with pytest.raises(CorruptStoreError, match="torn"):
            store.world("w0").poses(0, 2)


# ----------------------------------------------------------------------------- one writer per world
def test_second_writer_in_process(store):
    w = make_world(store, steps=1)
    with pytest.raises(WorldLockedError, match=f"pid {os.getpid()}"):
        store.writer("w0")
    with pytest.raises(WorldLockedError):
        store.rewind("w0", 0)
    w.close()
    store.writer("w0").close()
    with pytest.raises(StoreError, match="closed"):
        w.commit()


def test_second_writer_in_another_process(tmp_path):
    path = tmp_path / "s"
    with WorldStore.open(path, mode="w") as store:
        make_world(store, steps=1).close()
    code = textwrap.dedent(
        f"""
        import sys, time
        from multiworld.state import WorldStore
        w = WorldStore.open({str(path)!r}, mode="r+").writer("w0")
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with WorldStore.open(path, mode="r+") as store:
            with pytest.raises(WorldLockedError, match=f"pid {proc.pid}"):
                store.writer("w0")
            proc.kill()
            proc.wait(10)
            # the dead holder's lock is gone (the kernel drops flocks of dead processes)
            store.writer("w0").close()
    finally:
        proc.kill()
        proc.wait(10)


# ----------------------------------------------------------------------------- bad input
def test_not_a_store(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("precious")
    for mode in ("r", "r+", "a", "w"):
        with pytest.raises(NotAStoreError):
            WorldStore.open(d, mode=mode)
    assert (d / "notes.txt").read_text() == "precious"
    with pytest.raises(StoreNotFoundError):
        WorldStore.open(tmp_path / "missing", mode="r")
    with pytest.raises(FileNotFoundError):
        WorldStore.open(tmp_path / "missing", mode="r+")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(NotAStoreError):
        WorldStore.open(d / "notes.txt", mode="a")
    # a Zarr group that is not ours
    z = tmp_path / "z"
    z.mkdir()
    (z / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    with pytest.raises(NotAStoreError, match="not a multiworld store"):
        WorldStore.open(z, mode="w")
    with pytest.raises(ValueError, match="mode"):
        WorldStore.open(tmp_path / "x", mode="rw")
    # empty directory: fine to create in
    (tmp_path / "empty").mkdir()
    WorldStore.open(tmp_path / "empty", mode="a").close()
    # what a creation killed before writing the root leaves: still recognised, and completed
    partial = tmp_path / "partial"
    (partial / "locks").mkdir(parents=True)
    (partial / "locks" / "123-abc.tmp").write_bytes(b"{")
    with pytest.raises(StoreNotFoundError):
        WorldStore.open(partial, mode="r")
    WorldStore.open(partial, mode="a").close()
    assert WorldStore.open(partial, mode="r").worlds() == []


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s"
    WorldStore.open(path, mode="w").close()
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["multiworld_schema_version"] = 2
    (path / "zarr.json").write_text(json.dumps(doc))
    for mode in ("r", "r+", "a", "w"):
        with pytest.raises(SchemaVersionError, match="v2"):
            WorldStore.open(path, mode=mode)
    assert (path / "zarr.json").exists()


@pytest.mark.parametrize("bad", ["../x", "a/b", "/", "", ".", "..", ".hidden", "a b", "zarr.json", "x" * 129, 3, None])
def test_bad_world_ids(store, bad):
    with pytest.raises(InvalidWorldIdError):
        make_world(store, bad)
    with pytest.raises(InvalidWorldIdError):
        store.world(bad)
    assert store.worlds() == []


def _bad_steps():
    good = syn.step_row(0, 1, SHAPES)
    st = good["state"]
    cases = {
        "poses shape": dict(state={**st, "poses": st["poses"][:2]}),
        "poses strings": dict(state={**st, "poses": np.full((3, 3), "x")}),
        "boxes float": dict(state={**st, "boxes": st["boxes"].astype(np.float32)}),
        "items_alive int": dict(state={**st, "items_alive": st["items_alive"].astype(np.int8)}),
        "missing poses": dict(state={k: v for k, v in st.items() if k != "poses"}),
        "unknown field": dict(state={**st, "velocity": np.zeros(3)}),
        "walls changed": dict(state={**st, "walls": np.ones((6, 6), np.uint8)}),
        "batch of two": dict(state={**st, "poses": np.stack([st["poses"]] * 2)}),
        "actions float": dict(actions=good["actions"].astype(np.float32)),
        "actions overflow": dict(actions=np.full(3, 40000)),
        "actions shape": dict(actions=good["actions"][:2]),
        "actions dict keys": dict(actions={"agent_0": 1}),
        "rewards bool": dict(rewards=np.ones(3, bool)),
        "terminations int": dict(terminations=np.zeros(3, np.int64)),
        "truncations shape": dict(truncations=np.zeros((3, 2), bool)),
        "tokens shape": dict(tokens=np.zeros((2, 3), np.float16)),
        "frames dtype": dict(frames=np.zeros((3, 5, 4, 3), np.float32)),
        "frames shape": dict(frames=np.zeros((3, 4, 5, 3), np.uint8)),
        "events not a list": dict(events={"type": "push"}),
        "events unserialisable": dict(events=[{"f": object()}]),
    }
    return {k: {**good, **v} for k, v in cases.items()}


@pytest.mark.parametrize("case", list(_bad_steps()))
def test_bad_step_changes_nothing(tmp_path, store, case):
    w = make_world(store, steps=2)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "store" / "worlds").rglob("*"))
    bad = _bad_steps()[case]
    with pytest.raises(ValidationError):
        w.append(bad.pop("state"), **bad)
    assert w.next_step == 3 and w.pending == 0
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "store" / "worlds").rglob("*"))
    assert before == after  # not a byte written
    row = syn.step_row(0, 3, SHAPES)
    w.append(row.pop("state"), **row)  # the writer still works
    assert_rows(store.world("w0"), 0, range(4))
    w.close()


def test_bad_creation_arguments(store):
    init = syn.initial_state(0, SHAPES)
    with pytest.raises(ValidationError, match="agents"):
        store.create_world("a", init, scenario="s", seed=0, agents=["x"])
    with pytest.raises(ValidationError, match="config"):
        store.create_world("a", init, scenario="s", seed=0, config={"f": object()})
    with pytest.raises(ValidationError, match="tokens_dtype"):
        store.create_world("a", init, scenario="s", seed=0, tokens_shape=(2,), tokens_dtype="int8")
    with pytest.raises(ValidationError, match="frame_shape"):
        store.create_world("a", init, scenario="s", seed=0, frame_shape=(2, 2, 2, 2, 2))
    with pytest.raises(ValidationError, match="missing"):
        store.create_world("a", {k: v for k, v in init.items() if k != "walls"}, scenario="s", seed=0)
    with pytest.raises(ValidationError, match="tokens"):
        store.create_world("a", init, scenario="s", seed=0, tokens=np.zeros(3))
    assert store.worlds() == []
    make_world(store, "a").close()
    with pytest.raises(WorldExistsError):
        make_world(store, "a")
    with pytest.raises(WorldExistsError):
        store.fork("a", 1, "a")
    assert_rows(store.world("a"), 0, range(6))


def test_fork_and_read_out_of_range(store):
    make_world(store, steps=3).close()
    for step in (4, 10, -1):
        with pytest.raises(StepOutOfRangeError, match="committed"):
            store.fork("w0", step)
    with pytest.raises(ValidationError):
        store.fork("w0", 1.5)
    r = store.world("w0")
    for t in (4, -1):
        with pytest.raises(StepOutOfRangeError):
            r.state(t)
    with pytest.raises(StepOutOfRangeError):
        r.poses(0, 5)
    assert store.worlds() == ["w0"]


def test_read_only_and_unknown_world(tmp_path):
    path = tmp_path / "s"
    with WorldStore.open(path, mode="w") as store:
        make_world(store, steps=1).close()
    files = sorted(p for p in path.rglob("*"))
    ro = WorldStore.open(path, mode="r")
    for call in (
        lambda: ro.writer("w0"),
        lambda: make_world(ro, "w1"),
        lambda: ro.fork("w0", 0),
        lambda: ro.rewind("w0", 0),
        lambda: ro.delete_world("w0"),
    ):
        with pytest.raises(ReadOnlyError, match="read-only"):
            call()
    assert sorted(p for p in path.rglob("*")) == files
    for call in (lambda: ro.world("nope"), lambda: ro.fork("nope", 0)):
        with pytest.raises((WorldNotFoundError, ReadOnlyError)):
            call()
    with pytest.raises(WorldNotFoundError, match="nope"):
        ro.world("nope")
    with WorldStore.open(path, mode="r+") as rw:
        for call in (lambda: rw.writer("nope"), lambda: rw.fork("nope", 0), lambda: rw.rewind("nope", 0)):
            with pytest.raises(WorldNotFoundError):
                call()


def test_mode_w_replaces_only_a_store_without_writers(tmp_path):
    path = tmp_path / "s"
    store = WorldStore.open(path, mode="w")
    w = make_world(store, steps=1)
    with pytest.raises(WorldLockedError):
        WorldStore.open(path, mode="w")
    assert store.world("w0").steps == 2
    w.close()
    with WorldStore.open(path, mode="w") as fresh:
        assert fresh.worlds() == []


# ----------------------------------------------------------------------------- interop
def test_plain_zarr_reads_the_store(tmp_path):
    zarr = pytest.importorskip("zarr")
    path = tmp_path / "s"
    with WorldStore.open(path, mode="w") as store:
        make_world(store, steps=4).close()
        store.fork("w0", 2, "c")
        w = store.writer("c")
        state, row = _child_row(3)
        w.append(state, **row)
        w.close()
        r = store.world("w0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # vlen-bytes has no v3 spec yet (zarr warns)
            root = zarr.open_group(str(path), mode="r")
            assert root.attrs["format"] == "multiworld-store" and root.attrs["multiworld_schema_version"] == 1
            assert sorted(root["worlds"].group_keys()) == ["c", "w0"]
            g = root["worlds/w0"]
            n = g.attrs["committed_steps"]
            assert n == 5 and g["poses"].shape == (5, 3, 3)  # trimmed to the committed rows on close
            np.testing.assert_array_equal(g["poses"][:n], r.poses())
            for name in (*STEP_NAMES, "tokens", "frames"):
                np.testing.assert_array_equal(g[name][:n], r.read(name), err_msg=name)
                assert g[name].chunks[0] == 1
            assert [msgpack.unpackb(b) if b else [] for b in g["events"][:n]] == r.read("events")
            for name in ("walls", "floor", "goals", "items", "colors"):
                np.testing.assert_array_equal(g[name][:], r.static[name])
            # a fork's own arrays hold only rows after the fork step; earlier rows are fill values
            c = root["worlds/c"]
            assert c.attrs["parent"] == {"world": "w0", "step": 2}
            np.testing.assert_array_equal(c["poses"][3], store.world("c").poses(3, 4)[0])
            assert np.isnan(c["poses"][:3]).all() and (c["actions"][:3] == -1).all()


def test_xarray_opens_a_world(tmp_path):
    xr = pytest.importorskip("xarray")
    path = tmp_path / "s"
    with WorldStore.open(path, mode="w") as store:
        make_world(store, steps=3).close()
        r = store.world("w0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(str(path), group="worlds/w0", consolidated=False, zarr_format=3)
        ds = ds.isel(step=slice(0, ds.attrs["committed_steps"]))
        assert ds["poses"].dims == ("step", "agent", "pose")
        assert ds["step"].values.tolist() == [0, 1, 2, 3]
        np.testing.assert_array_equal(ds["poses"].values, r.poses())
        np.testing.assert_array_equal(ds["actions"].values, r.actions())  # -1 of row 0 is not masked
        np.testing.assert_array_equal(ds["walls"].values, r.static["walls"])


# ----------------------------------------------------------------------------- memory:// store
@pytest.mark.parametrize("shard_rows", [None, 4], ids=["object-per-row", "shards-read-modify-write"])
def test_memory_store_round_trip_and_lease(shard_rows):
    url = f"memory://test-{os.getpid()}-{id(object())}"
    store = WorldStore.open(url, mode="w", shard_rows=shard_rows)
    w = make_world(store, steps=3)
    with pytest.raises(WorldLockedError):
        store.writer("w0")
    c = store.fork("w0", 1)
    w.close()
    again = WorldStore.open(url, mode="r")
    assert sorted(again.worlds()) == sorted(["w0", c])
    assert_rows(again.world("w0"), 0, range(4))
    assert_rows(again.world(c), 0, range(2))
    with pytest.raises(ReadOnlyError):
        again.writer("w0")
    w = store.writer("w0")
    w.rewind(1)
    for t in range(2, 7):  # overwrite rows 2, 3 and cross a shard boundary
        row = syn.step_row(0, t, SHAPES)
        w.append(row.pop("state"), **row, commit=t % 2 == 0)
    w.close()
    assert_rows(WorldStore.open(url, mode="r").world("w0"), 0, range(7))
    assert_rows(WorldStore.open(url, mode="r").world(c), 0, range(2))
    with WorldStore.open(url, mode="w") as fresh:  # replaces the memory store
        assert fresh.worlds() == []
