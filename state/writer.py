"""Writing worlds: :class:`WorldWriter` (append, commit, rewind), and creating new and forked worlds.

Chunks of a commit are written first, then the commit marker (the world's ``zarr.json``),
so nothing of a commit is visible before all of it is (SCHEMA.md, section 6).
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from multiworld.world.state import WorldState

from . import _layout as L
from ._backend_base import Backend, Lock, ShardWriter
from ._handle import StoreHandle
from ._world import MIN_CAPACITY, _grow, _lock_key, _now_iso, _World, _world_key
from .errors import CorruptStoreError, StepOutOfRangeError, StoreError, WorldExistsError, WorldInUseError
from .reader import WorldReader
from .validate import _as_int, _unbatch_state, _validate_row, check_world_id

_Chunk = tuple[L.ArraySpec, int, bytes]  # (array, row, encoded chunk)


def _encode_row(world: _World, values: dict[str, Any], row: int) -> list[_Chunk]:
    return [(s, row, s.encode(values[s.name])) for s in world.step_specs if not s.empty]


def _write_chunks(backend: Backend, shards: ShardWriter, world_id: str, chunks: list[_Chunk]) -> None:
    """Write row chunks: one object per row, or in place into shards (rows of one shard together)."""
    objects: dict[str, bytes] = {}
    by_shard: dict[str, tuple[L.ArraySpec, dict[int, bytes]]] = {}
    for spec, row, data in chunks:
        key = _world_key(world_id, f"{spec.name}/{spec.chunk_key(row)}")
        if spec.sharded:
            by_shard.setdefault(key, (spec, {}))[1][row % spec.shard_rows] = data
        else:
            objects[key] = data
    if objects:
        backend.put_many(objects)
    if by_shard:
        shards.write([(key, spec, slots) for key, (spec, slots) in by_shard.items()])


def write_new_world(
    store: StoreHandle, world: _World, static: dict[str, np.ndarray], row0: dict[str, Any]
) -> WorldWriter:
    """Write a validated new world (``validate.new_world``), commit its row 0, return its writer."""
    backend, world_id, specs, attrs = store._backend, world.world_id, world.specs, world.attrs
    # Everything is validated: take the lock, then write arrays, row 0, and the marker last.
    lock = backend.lock(_lock_key(world_id), store.lease_ttl)
    try:
        if store._world_attrs(world_id) is not None:
            raise WorldExistsError(f"world {world_id!r} already exists in {store.url}")
        backend.delete_prefix(f"worlds/{world_id}")  # debris of an interrupted creation
        capacity = {s.name: MIN_CAPACITY for s in world.step_specs}
        docs = {
            _world_key(world_id, f"{s.name}/zarr.json"): L.array_document(s, capacity.get(s.name))
            for s in specs.values()
        }
        chunks = {
            _world_key(world_id, f"{n}/{specs[n].chunk_key()}"): specs[n].encode(v)
            for n, v in static.items()
            if not specs[n].empty
        }
        backend.put_documents(docs)
        backend.put_many(chunks)
        shards = backend.shard_writer()
        try:
            _write_chunks(backend, shards, world_id, _encode_row(world, row0, 0))
            attrs["committed_steps"] = 1
            backend.put_document(_world_key(world_id), L.group_document(attrs))
        except BaseException:
            shards.close()
            raise
        world.capacity = capacity
        return WorldWriter(store, world, lock, static=static, shards=shards)
    except BaseException:
        lock.release()
        raise


def fork_world(store: StoreHandle, world_id: str, step: int, new_world_id: str | None) -> str:
    """``WorldStore.fork``: a new world whose rows ``0..step`` are read from ``world_id``."""
    backend = store._backend
    store._writable(f"fork world {world_id!r}")
    parent = store._load(check_world_id(world_id))
    step = _as_int("step", step)
    if not 0 <= step < parent.committed:
        raise StepOutOfRangeError(
            f"cannot fork {world_id!r} at step {step}: it has {parent.committed} committed rows "
            f"(steps 0..{parent.committed - 1})"
        )
    if new_world_id is None:
        new_world_id = f"{world_id}.fork{step}-{secrets.token_hex(3)}"
        if len(new_world_id) > 128:
            new_world_id = f"fork{step}-{secrets.token_hex(8)}"
    check_world_id(new_world_id)
    if store._world_attrs(new_world_id) is not None:
        raise WorldExistsError(f"world {new_world_id!r} already exists in {store.url}")
    lock = backend.lock(_lock_key(new_world_id), store.lease_ttl)
    try:
        if store._world_attrs(new_world_id) is not None:
            raise WorldExistsError(f"world {new_world_id!r} already exists in {store.url}")
        backend.delete_prefix(f"worlds/{new_world_id}")
        statics = [s for s in parent.specs.values() if not s.per_step and not s.empty]
        data = backend.get_many([_world_key(world_id, f"{s.name}/{s.chunk_key()}") for s in statics])
        if any(d is None for d in data):
            raise CorruptStoreError(f"world {world_id!r} is missing static chunks")
        backend.put_documents(
            {
                _world_key(new_world_id, f"{s.name}/zarr.json"): L.array_document(s, step + 1 if s.per_step else None)
                for s in parent.specs.values()
            }
        )
        backend.put_many({_world_key(new_world_id, f"{s.name}/{s.chunk_key()}"): d for s, d in zip(statics, data)})
        attrs = {k: v for k, v in parent.attrs.items() if k not in ("committed_steps", "created", "rewinds")}
        attrs.update(parent={"world": world_id, "step": step}, created=_now_iso(), rewinds=0)
        attrs["committed_steps"] = step + 1
        backend.put_document(_world_key(new_world_id), L.group_document(attrs))
        # A rewind of the parent racing this fork: one of the two sides always notices.
        now = store._world_attrs(world_id)
        if now is None or now.get("rewinds", 0) != parent.attrs.get("rewinds", 0):
            backend.delete(_world_key(new_world_id))
            backend.delete_prefix(f"worlds/{new_world_id}")
            raise WorldInUseError(f"world {world_id!r} was rewound or deleted during the fork; retry")
    finally:
        lock.release()
    return new_world_id


def _release(lock: Lock, shards: ShardWriter) -> None:
    try:
        shards.close()
    finally:
        lock.release()


class WorldWriter:
    """The exclusive writer of one world: ``append`` rows, ``commit`` them, ``rewind``, ``close``.

    Rows appended with ``commit=False`` are held in memory until :meth:`commit`, which
    writes their chunks and then the commit marker; nothing is visible before that.
    """

    def __init__(
        self,
        store: StoreHandle,
        world: _World,
        lock: Lock,
        static: dict[str, np.ndarray] | None = None,
        shards: ShardWriter | None = None,
    ):
        self._store = store
        self._backend = store._backend
        self._world = world
        self._lock = lock
        self._next = world.committed
        self._pending: list[_Chunk] = []
        self._pending_rows = 0
        self._shards = shards or self._backend.shard_writer()
        self._release = weakref.finalize(self, _release, lock, self._shards)
        self._static = static if static is not None else WorldReader(store, world).static
        self._closed = False

    # ------------------------------------------------------------------ attributes
    @property
    def world_id(self) -> str:
        return self._world.world_id

    @property
    def steps(self) -> int:
        """Committed rows."""
        return self._world.committed

    @property
    def next_step(self) -> int:
        """The row the next ``append`` writes (committed rows + pending rows)."""
        return self._next

    @property
    def pending(self) -> int:
        return self._pending_rows

    @property
    def agents(self) -> list[str]:
        return list(self._world.attrs["agents"])

    @property
    def closed(self) -> bool:
        return self._closed

    def reader(self) -> WorldReader:
        return WorldReader(self._store, self._store._load(self.world_id))

    def __repr__(self) -> str:
        return f"WorldWriter({self.world_id!r}, steps={self.steps}, pending={self.pending})"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the writer of world {self.world_id!r} is closed")

    # ------------------------------------------------------------------ writing
    def append(
        self,
        state: WorldState | Mapping[str, Any],
        actions: Any,
        rewards: Any,
        terminations: Any,
        truncations: Any,
        events: Iterable[Any] | None = None,
        tokens: Any = None,
        frames: Any = None,
        *,
        commit: bool = True,
    ) -> int:
        """Append the row produced by one joint step; returns its step index.

        ``state``: WorldState (B=1) or dict with at least poses, boxes, items_alive (step
        defaults to the row index; static fields, if given, must equal the world's).
        ``actions``/``rewards``/``terminations``/``truncations``: (N,) arrays or {agent: value}.
        Everything is validated before anything is written. ``commit=False`` defers the
        write until :meth:`commit` (several steps then cost one commit).
        """
        self._check_open()
        fields = _unbatch_state(state, "state")
        values = _validate_row(
            self._world,
            self._static,
            fields,
            actions=actions,
            rewards=rewards,
            terminations=terminations,
            truncations=truncations,
            events=events,
            tokens=tokens,
            frames=frames,
            row=self._next,
        )
        row = self._next
        self._pending += _encode_row(self._world, values, row)
        self._pending_rows += 1
        self._next += 1
        if commit:
            self.commit()
        return row

    def commit(self) -> int:
        """Write pending rows, then the commit marker; returns the committed row count."""
        self._check_open()
        self._lock.renew()
        if not self._pending_rows:
            return self.steps
        target = self._next
        self._ensure_capacity(target)
        _write_chunks(self._backend, self._shards, self.world_id, self._pending)
        attrs = dict(self._world.attrs, committed_steps=target)
        self._backend.put_document(_world_key(self.world_id), L.group_document(attrs))  # the commit point
        self._world.attrs = attrs
        self._pending.clear()
        self._pending_rows = 0
        return target

    def discard(self) -> None:
        """Drop rows appended since the last commit."""
        self._pending.clear()
        self._pending_rows = 0
        self._next = self.steps

    def _ensure_capacity(self, rows: int) -> None:
        grown = {
            spec: _grow(self._world.capacity.get(spec.name, 0), rows)
            for spec in self._world.step_specs
            if self._world.capacity.get(spec.name, 0) < rows
        }
        if grown:
            self._backend.put_documents(
                {_world_key(self.world_id, f"{s.name}/zarr.json"): L.array_document(s, c) for s, c in grown.items()}
            )
            self._world.capacity.update({s.name: c for s, c in grown.items()})

    def _trim(self) -> None:
        """Shrink array shapes to the committed rows, so plain Zarr readers see exact lengths."""
        rows = self.steps
        docs = {
            _world_key(self.world_id, f"{s.name}/zarr.json"): L.array_document(s, rows)
            for s in self._world.step_specs
            if self._world.capacity.get(s.name) != rows
        }
        if docs:
            self._backend.put_documents(docs)
            for s in self._world.step_specs:
                self._world.capacity[s.name] = rows

    def rewind(self, step: int) -> None:
        """Make ``step`` the last committed row; pending rows are dropped, later appends overwrite.

        Refused (WorldInUseError) while a fork reads rows after ``step`` from this world.
        """
        self._check_open()
        step = _as_int("step", step)
        if not 0 <= step < self.steps:
            raise StepOutOfRangeError(
                f"cannot rewind {self.world_id!r} to step {step}: committed rows are 0..{self.steps - 1}"
            )
        self._lock.renew()

        def blocking() -> list[str]:
            return sorted(c for c, s in self._store._children(self.world_id).items() if s > step)

        if blocked := blocking():
            raise WorldInUseError(f"cannot rewind {self.world_id!r} to step {step}: forks {blocked} read later rows")
        self.discard()
        old = self._world.attrs
        attrs = dict(old, committed_steps=step + 1, rewinds=int(old.get("rewinds", 0)) + 1)
        parent = attrs.get("parent")
        if parent and step < int(parent["step"]):
            attrs["parent"] = dict(parent, step=step)  # rows step+1.. are now this world's own
        self._backend.put_document(_world_key(self.world_id), L.group_document(attrs))
        self._world.attrs = attrs
        if blocked := blocking():  # a fork created meanwhile: put the rows back (the fork notices too)
            attrs = dict(old, rewinds=int(attrs["rewinds"]) + 1)
            self._backend.put_document(_world_key(self.world_id), L.group_document(attrs))
            self._world.attrs = attrs
            raise WorldInUseError(f"cannot rewind {self.world_id!r} to step {step}: forks {blocked} read later rows")
        self._next = step + 1

    def close(self, commit: bool = True) -> None:
        """Commit pending rows (unless ``commit=False``), trim array shapes, release the lock."""
        if self._closed:
            return
        try:
            if commit and self._pending_rows:
                self.commit()
            self._trim()
        finally:
            self._closed = True
            self._pending.clear()
            self._release()

    def __enter__(self) -> WorldWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(commit=exc_type is None)
