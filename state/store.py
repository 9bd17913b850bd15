"""The world-state store: one Zarr v3 group per world, one row per step, a commit marker, forks.

See ``SCHEMA.md`` (installed next to this module) for the on-disk layout and the protocols.

Usage::

    store = WorldStore.open("runs/store", mode="a")
    with store.create_world("w0", state, scenario="push", seed=0, config={}) as writer:
        for _ in range(100):
            state, rewards, terms, truncs = ...
            writer.append(state, actions, rewards, terms, truncs, events=[...])
    child = store.fork("w0", step=50)
    reader = store.world(child)
    reader.state(50)  # == store.world("w0").state(50), read from the parent

This module is the facade: reading is in ``reader.py``, writing in ``writer.py``, input checks
in ``validate.py``, a world's metadata in ``_world.py``. The names those modules took from here
are re-exported (the ``import x as x`` lines), so imports from ``multiworld.state.store`` still work.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from multiworld.world.state import FIELD_DTYPES as FIELD_DTYPES
from multiworld.world.state import WorldState

from . import _layout as L
from ._backend import Backend, LocalBackend, open_backend
from ._backend import Lock as Lock
from ._backend import ShardWriter as ShardWriter
from ._world import DEFAULT_SHARD_ROWS, _lock_key, _now_iso, _package_version, _World, _world_key
from ._world import MIN_CAPACITY as MIN_CAPACITY
from ._world import _grow as _grow
from .errors import (
    CorruptStoreError,
    InvalidWorldIdError,
    NotAStoreError,
    ReadOnlyError,
    SchemaVersionError,
    StoreError,
    StoreNotFoundError,
    WorldExistsError,
    WorldInUseError,
    WorldNotFoundError,
)
from .errors import StepOutOfRangeError as StepOutOfRangeError
from .errors import ValidationError as ValidationError
from .reader import WorldReader
from .validate import _MANAGED_ATTRS as _MANAGED_ATTRS
from .validate import _RESERVED_IDS, _WORLD_ID, check_world_id, new_world
from .validate import _STATE_NDIM as _STATE_NDIM
from .validate import _as_int as _as_int
from .validate import _coerce as _coerce
from .validate import _dims as _dims
from .validate import _json_attr as _json_attr
from .validate import _msgpack_default as _msgpack_default
from .validate import _pack_events as _pack_events
from .validate import _per_agent as _per_agent
from .validate import _unbatch_state as _unbatch_state
from .validate import _unpack_events as _unpack_events
from .validate import _validate_row as _validate_row
from .writer import WorldWriter, fork_world, write_new_world
from .writer import _Chunk as _Chunk
from .writer import _encode_row as _encode_row
from .writer import _release as _release
from .writer import _write_chunks as _write_chunks

__all__ = ["WorldReader", "WorldStore", "WorldWriter", "check_world_id"]


class WorldStore:
    """A multiworld store: ``WorldStore.open(url, mode)``; see the module docstring and SCHEMA.md."""

    def __init__(self, backend: Backend, mode: str, lease_ttl: float):
        self._backend = backend
        self.mode = mode
        self.lease_ttl = lease_ttl
        self._closed = False
        self._specs: dict[tuple[str, Any], dict[str, L.ArraySpec]] = {}
        self.shard_rows = 1

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        url: str | os.PathLike,
        mode: str = "r",
        *,
        storage_options: Mapping[str, Any] | None = None,
        fsync: bool = False,
        lease_ttl: float = 120.0,
        shard_rows: int | None = None,
    ) -> WorldStore:
        """Open (or create) the store at ``url``.

        ``url``: a local path, ``file://path``, ``memory://name`` (process-local) or any fsspec
        URL such as ``s3://bucket/prefix`` (``storage_options`` go to fsspec).
        ``mode``: ``"r"`` read-only, ``"r+"`` read/write an existing store, ``"a"`` create if
        absent, ``"w"`` create, replacing an existing multiworld store (never anything else).
        ``fsync``: local disk only; fsync chunks and the marker on commit (survives power loss,
        slower). ``lease_ttl``: object stores only; seconds a writer's lease lasts unrenewed.
        ``shard_rows``: rows per stored object of the per-step arrays of worlds created from
        now on (default 256 on local disk, where rows are written into shards in place, and 1,
        a plain chunk per row, on object stores, which cannot write part of an object).
        """
        if mode not in ("r", "r+", "a", "w"):
            raise ValueError(f"mode must be 'r', 'r+', 'a' or 'w', not {mode!r}")
        if shard_rows is not None and (
            isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1
        ):
            raise ValueError(f"shard_rows must be a positive int, not {shard_rows!r}")
        backend = open_backend(url, read_only=mode == "r", storage_options=dict(storage_options or {}), fsync=fsync)
        store = cls(backend, mode, lease_ttl)
        store.shard_rows = shard_rows or (DEFAULT_SHARD_ROWS if backend.local else 1)
        try:
            store._open()
        except BaseException:
            backend.close()
            raise
        return store

    def _open(self) -> None:
        backend, mode = self._backend, self.mode
        if isinstance(backend, LocalBackend) and backend.root.exists() and not backend.root.is_dir():
            raise NotAStoreError(f"{backend.url} is a file, not a multiworld store")
        root = backend.get("zarr.json")
        if root is None:
            if backend.is_empty() or self._interrupted_creation():
                if mode in ("r", "r+"):
                    raise StoreNotFoundError(f"no multiworld store at {backend.url}")
                self._initialise()
                return
            raise NotAStoreError(f"{backend.url} is not empty and is not a multiworld store (no root zarr.json)")
        self.attrs = self._check_root(root)
        if mode == "w":
            self._check_no_live_writers()
            backend.clear()
            self._initialise()
        elif mode != "r":
            # Repair sub-groups lost to a crash during creation.
            missing = {k: L.group_document({}) for k in ("worlds/zarr.json", "locks/zarr.json") if not backend.get(k)}
            if missing:
                backend.put_documents(missing)
            if isinstance(backend, LocalBackend):
                backend.cleanup_tmp()

    def _interrupted_creation(self) -> bool:
        """Only what an interrupted (or concurrent) ``_initialise`` leaves: ``locks/``, ``worlds/``, no world."""
        backend = self._backend
        if not set(backend.list_dir("")) <= {"locks", "worlds"}:
            return False
        return set(backend.list_dir("worlds")) <= {"zarr.json"} and all(
            n == "zarr.json" or n.endswith(".tmp") for n in backend.list_dir("locks")
        )

    def _check_root(self, data: bytes) -> dict[str, Any]:
        doc = L.parse_document(data, f"{self._backend.url}/zarr.json")
        attrs = doc.get("attributes") or {}
        if doc.get("node_type") != "group" or attrs.get("format") != L.FORMAT:
            raise NotAStoreError(f"{self._backend.url} holds Zarr data that is not a multiworld store")
        version = attrs.get("multiworld_schema_version")
        if not isinstance(version, int) or version < 1:
            raise NotAStoreError(f"{self._backend.url}: invalid multiworld_schema_version {version!r}")
        if version > L.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self._backend.url} uses store schema v{version}; this multiworld ({_package_version()}) "
                f"supports up to v{L.SCHEMA_VERSION}: upgrade multiworld"
            )
        return attrs

    def _initialise(self) -> None:
        self.attrs = {
            "format": L.FORMAT,
            "multiworld_schema_version": L.SCHEMA_VERSION,
            "multiworld_version": _package_version(),
            "created": _now_iso(),
        }
        # The root document first: an interrupted creation is then still recognised (and repaired).
        self._backend.put_document("zarr.json", L.group_document(self.attrs))
        self._backend.put_documents(
            {
                "worlds/zarr.json": L.group_document({}),
                "locks/zarr.json": L.group_document({"description": "writer locks/leases; not Zarr nodes"}),
            }
        )

    def _check_no_live_writers(self) -> None:
        for name in self._backend.list_dir("locks"):
            if name.endswith(".lock"):
                self._backend.lock(f"locks/{name}", self.lease_ttl).release()

    # ------------------------------------------------------------------ basics
    @property
    def url(self) -> str:
        return self._backend.url

    @property
    def read_only(self) -> bool:
        return self._backend.read_only

    @property
    def schema_version(self) -> int:
        return int(self.attrs["multiworld_schema_version"])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __enter__(self) -> WorldStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WorldStore({self.url!r}, mode={self.mode!r})"

    def __contains__(self, world_id: object) -> bool:
        try:
            self._load(check_world_id(world_id), arrays=False)
        except (WorldNotFoundError, InvalidWorldIdError):
            return False
        return True

    def _writable(self, what: str) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        if self._backend.read_only:
            raise ReadOnlyError(f"cannot {what}: store {self.url} was opened read-only (mode='r')")

    # ------------------------------------------------------------------ metadata
    def _world_attrs(self, world_id: str) -> dict[str, Any] | None:
        data = self._backend.get(_world_key(world_id))
        if data is None:
            return None
        attrs = L.parse_document(data, f"world {world_id}").get("attributes") or {}
        return attrs if "committed_steps" in attrs else None  # no marker yet: creation in progress

    def _load(self, world_id: str, arrays: bool = True, capacities: bool = False) -> _World:
        attrs = self._world_attrs(world_id)
        if attrs is None:
            raise WorldNotFoundError(f"no world {world_id!r} in store {self.url}")
        specs: dict[str, L.ArraySpec] = {}
        capacity: dict[str, int] = {}
        # Array layouts never change during a world's life (only shapes grow): cache them per
        # (world, creation time), which also tells a deleted-and-recreated world apart.
        cache_key = (world_id, attrs.get("created"))
        if arrays and (capacities or cache_key not in self._specs):
            names = [*L.STEP_ARRAYS, *L.OPTIONAL_STEP_ARRAYS, *L.STATIC_FIELDS]
            docs = self._backend.get_many([_world_key(world_id, f"{n}/zarr.json") for n in names])
            for name, data in zip(names, docs):
                if data is None:
                    if name in L.OPTIONAL_STEP_ARRAYS:
                        continue
                    raise CorruptStoreError(f"world {world_id!r} is missing array {name!r}")
                meta = L.parse_document(data, f"world {world_id} array {name}")
                per_step = name not in L.STATIC_FIELDS
                specs[name] = L.spec_from_metadata(name, meta, per_step)
                capacity[name] = int(meta["shape"][0])
            self._specs[cache_key] = specs
        elif arrays:
            specs = self._specs[cache_key]
        return _World(world_id, attrs, specs, capacity)

    def worlds(self) -> list[str]:
        """Ids of the committed worlds, sorted (listed from ``worlds/``, not from an index)."""
        names = sorted(n for n in self._backend.list_dir("worlds") if _WORLD_ID.fullmatch(n) and n not in _RESERVED_IDS)
        docs = self._backend.get_many([_world_key(n) for n in names])
        out = []
        for name, data in zip(names, docs):
            if data is not None and "committed_steps" in (L.parse_document(data, name).get("attributes") or {}):
                out.append(name)
        return out

    def _children(self, world_id: str) -> dict[str, int]:
        """Worlds forked directly from ``world_id`` -> the fork step."""
        names = [n for n in self.worlds() if n != world_id]
        out = {}
        for name, data in zip(names, self._backend.get_many([_world_key(n) for n in names])):
            if data is None:
                continue
            parent = (L.parse_document(data, name).get("attributes") or {}).get("parent")
            if parent and parent.get("world") == world_id:
                out[name] = int(parent["step"])
        return out

    # ------------------------------------------------------------------ worlds
    def world(self, world_id: str) -> WorldReader:
        """A reader of ``world_id`` (a snapshot of its committed rows; ``refresh()`` to follow)."""
        return WorldReader(self, self._load(check_world_id(world_id)))

    def writer(self, world_id: str) -> WorldWriter:
        """The (exclusive) writer of an existing world, appending after its committed rows."""
        self._writable(f"write world {world_id!r}")
        check_world_id(world_id)
        if self._world_attrs(world_id) is None:
            raise WorldNotFoundError(f"no world {world_id!r} in store {self.url}")
        lock = self._backend.lock(_lock_key(world_id), self.lease_ttl)
        try:
            world = self._load(world_id, capacities=True)
        except BaseException:
            lock.release()
            raise
        return WorldWriter(self, world, lock)

    def create_world(
        self,
        world_id: str,
        initial: WorldState | Mapping[str, Any],
        *,
        scenario: str,
        seed: int | None,
        config: Mapping[str, Any] | None = None,
        agents: Sequence[str] | None = None,
        checkpoint_hash: str | None = None,
        tokens_shape: Sequence[int] | None = None,
        tokens_dtype: str | np.dtype = "float16",
        frame_shape: Sequence[int] | None = None,
        events: Iterable[Any] | None = None,
        tokens: Any = None,
        frames: Any = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> WorldWriter:
        """Create ``world_id`` with ``initial`` (row 0, the reset state), commit it, return its writer.

        ``initial``: a WorldState with B=1 or a dict of its fields (batch axis optional).
        ``tokens_shape``/``tokens_dtype``: add a per-step ``tokens`` array (float16 or float32).
        ``frame_shape``: ``(H, W)`` (or ``(N, H, W, 3)``) adds per-step ``frames`` (N,H,W,3) uint8.
        ``attrs``: further JSON attributes of the world (e.g. the model backend's ``model``); the
        names the store manages itself (section 3 of SCHEMA.md) are refused.
        """
        self._writable(f"create world {world_id!r}")
        check_world_id(world_id)
        if self._world_attrs(world_id) is not None:
            raise WorldExistsError(f"world {world_id!r} already exists in {self.url}")
        world, static, row0 = new_world(
            world_id,
            initial,
            scenario=scenario,
            seed=seed,
            config=config,
            agents=agents,
            checkpoint_hash=checkpoint_hash,
            tokens_shape=tokens_shape,
            tokens_dtype=tokens_dtype,
            frame_shape=frame_shape,
            events=events,
            tokens=tokens,
            frames=frames,
            attrs=attrs,
            shard_rows=self.shard_rows,
        )
        return write_new_world(self, world, static, row0)

    def fork(self, world_id: str, step: int, new_world_id: str | None = None) -> str:
        """Fork ``world_id`` at row ``step``: a new world whose rows ``0..step`` are the parent's.

        Nothing is copied but the small static arrays: the child records ``parent`` =
        ``{"world": world_id, "step": step}`` and reads rows ``<= step`` through the parent
        chain; its own arrays receive rows ``step+1, ...`` from ``store.writer(new_id)``.
        The parent may keep being written meanwhile (its committed rows never change, and
        rewinding it below ``step`` is refused while the child exists). Returns the new id.
        """
        return fork_world(self, world_id, step, new_world_id)

    def rewind(self, world_id: str, step: int) -> None:
        """Make row ``step`` the last committed row of ``world_id`` (later appends overwrite the rest)."""
        with self.writer(world_id) as w:
            w.rewind(step)

    def delete_world(self, world_id: str) -> None:
        """Delete a world (refused while forks read from it)."""
        self._writable(f"delete world {world_id!r}")
        check_world_id(world_id)
        if self._world_attrs(world_id) is None:
            raise WorldNotFoundError(f"no world {world_id!r} in store {self.url}")
        lock = self._backend.lock(_lock_key(world_id), self.lease_ttl)
        try:
            children = self._children(world_id)
            if children:
                raise WorldInUseError(f"cannot delete {world_id!r}: forks {sorted(children)} read from it")
            self._backend.delete(_world_key(world_id))  # invisible from here on
            self._backend.delete_prefix(f"worlds/{world_id}")
        finally:
            lock.release()
