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
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import secrets
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from multiworld.world.state import FIELD_DTYPES, WorldState

from . import _layout as L
from ._backend import Backend, LocalBackend, Lock, ShardWriter, open_backend
from .errors import (
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
    WorldNotFoundError,
)

__all__ = ["WorldReader", "WorldStore", "WorldWriter", "check_world_id"]

_WORLD_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_RESERVED_IDS = {"zarr.json"}
_STATE_NDIM = {
    "walls": 2,
    "floor": 2,
    "goals": 2,
    "boxes": 2,
    "items": 2,
    "items_alive": 1,
    "poses": 2,
    "colors": 1,
    "step": 0,
}
# World attributes the store writes itself; ``create_world(attrs=...)`` may add any others.
_MANAGED_ATTRS = {
    "scenario",
    "seed",
    "config",
    "checkpoint_hash",
    "parent",
    "agents",
    "created",
    "multiworld_version",
    "rewinds",
    "committed_steps",
}
MIN_CAPACITY = 64
DEFAULT_SHARD_ROWS = 256


def _package_version() -> str:
    try:
        from multiworld import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - partial installs
        return "unknown"


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def check_world_id(world_id: Any) -> str:
    """Return ``world_id`` if it is a safe world id (``[A-Za-z0-9_.-]``, 1-128 chars, no leading dot)."""
    if not isinstance(world_id, str) or not _WORLD_ID.fullmatch(world_id) or world_id in _RESERVED_IDS:
        raise InvalidWorldIdError(
            f"invalid world id {world_id!r}: use 1-128 characters from [A-Za-z0-9_.-], not starting with '.'"
        )
    return world_id


def _grow(capacity: int, needed: int) -> int:
    cap = max(capacity, MIN_CAPACITY)
    while cap < needed:
        cap = cap * 2 if cap < 4096 else cap + 4096
    return cap


# ----------------------------------------------------------------------------- input checks
def _coerce(name: str, value: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` and ``shape`` (a leading length-1 axis is dropped).

    Kinds must match: bool for bool; any integer for integers (values must fit); float or
    integer for floats. Anything else is a ValidationError.
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise ValidationError(f"{name}: cannot convert {type(value).__name__} to an array ({exc})") from exc
    if arr.ndim == len(shape) + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != shape:
        raise ValidationError(f"{name}: expected shape {shape}, got {arr.shape}")
    kind = arr.dtype.kind
    if dtype.kind == "b":
        ok = kind == "b"
    elif dtype.kind in "iu":
        ok = kind in "iu"
        if ok and arr.size:
            info = np.iinfo(dtype)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                raise ValidationError(f"{name}: values [{lo}, {hi}] do not fit {dtype}")
    else:
        ok = kind in "fiu"
    if not ok:
        raise ValidationError(f"{name}: dtype {arr.dtype} cannot be stored as {dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _unbatch_state(state: WorldState | Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """Field -> array without the batch axis (a WorldState must hold exactly one world)."""
    if isinstance(state, WorldState):
        if state.num_worlds != 1:
            raise ValidationError(f"{where}: a WorldState with {state.num_worlds} worlds; the store takes one (B=1)")
        return {k: np.asarray(v)[0] for k, v in state.arrays().items()}
    if not isinstance(state, Mapping):
        raise ValidationError(f"{where}: expected a WorldState or a dict of arrays, got {type(state).__name__}")
    out = {}
    for k, v in state.items():
        if k not in _STATE_NDIM:
            raise ValidationError(f"{where}: unknown state field {k!r}")
        arr = np.asarray(v)
        if arr.ndim == _STATE_NDIM[k] + 1:
            if arr.shape[0] != 1:
                raise ValidationError(f"{where}: field {k!r} has a batch axis of {arr.shape[0]}; the store takes one")
            arr = arr[0]
        out[k] = arr
    return out


def _per_agent(name: str, value: Any, agents: Sequence[str]) -> Any:
    """Accept a PettingZoo-style {agent: value} dict, in the world's agent order."""
    if isinstance(value, Mapping):
        if set(value) != set(agents):
            raise ValidationError(f"{name}: keys {sorted(value)} are not the world's agents {list(agents)}")
        return [value[a] for a in agents]
    return value


def _msgpack_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _pack_events(events: Iterable[Any] | None) -> bytes:
    if events is None:
        return b""
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
        raise ValidationError(f"events: expected a list of event dicts, got {type(events).__name__}")
    events = list(events)
    if not events:
        return b""
    try:
        return msgpack.packb(events, default=_msgpack_default, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"events: not serialisable with msgpack ({exc})") from exc


def _unpack_events(data: bytes) -> list[Any]:
    if not data:
        return []
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _json_attr(name: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name}: must be JSON-serialisable ({exc})") from exc


# ----------------------------------------------------------------------------- world metadata
@dataclasses.dataclass
class _World:
    """A world's group attributes and array specifications, as read at one moment."""

    world_id: str
    attrs: dict[str, Any]
    specs: dict[str, L.ArraySpec]
    capacity: dict[str, int]

    @property
    def committed(self) -> int:
        return int(self.attrs["committed_steps"])

    @property
    def base(self) -> int:
        """Rows ``<= base`` are read from the parent chain; -1 for a root world."""
        parent = self.attrs.get("parent")
        return -1 if not parent else int(parent["step"])

    @property
    def step_specs(self) -> list[L.ArraySpec]:
        return [s for s in self.specs.values() if s.per_step]


def _world_key(world_id: str, rest: str = "zarr.json") -> str:
    return f"worlds/{world_id}/{rest}"


def _lock_key(world_id: str) -> str:
    return f"locks/{world_id}.lock"


# ----------------------------------------------------------------------------- the store
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
        fields = _unbatch_state(initial, "initial state")
        missing = [k for k in _STATE_NDIM if k != "step" and k not in fields]
        if missing:
            raise ValidationError(f"initial state is missing fields {missing}")
        walls = np.asarray(fields["walls"])
        if walls.ndim != 2 or walls.shape[0] != walls.shape[1]:
            raise ValidationError(f"walls: expected a square (S, S) grid, got shape {walls.shape}")
        size = walls.shape[0]
        num_agents = np.asarray(fields["poses"]).shape[0] if np.asarray(fields["poses"]).ndim == 2 else -1
        num_boxes = np.asarray(fields["boxes"]).shape[0] if np.asarray(fields["boxes"]).ndim == 2 else -1
        num_items = np.asarray(fields["items"]).shape[0] if np.asarray(fields["items"]).ndim == 2 else -1
        if min(num_agents, num_boxes, num_items) < 0 or num_agents == 0:
            raise ValidationError("initial state: poses must be (N, 3) with N >= 1, boxes (M, 2), items (K, 2)")
        if not isinstance(scenario, str):
            raise ValidationError(f"scenario must be a string, got {type(scenario).__name__}")
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValidationError(f"seed must be an int or None, got {type(seed).__name__}")
        if checkpoint_hash is not None and not isinstance(checkpoint_hash, str):
            raise ValidationError("checkpoint_hash must be a string or None")
        agents = [f"agent_{i}" for i in range(num_agents)] if agents is None else list(agents)
        if len(agents) != num_agents or len(set(agents)) != num_agents or not all(isinstance(a, str) for a in agents):
            raise ValidationError(f"agents must be {num_agents} distinct names, got {agents!r}")
        if tokens_shape is not None:
            tokens_shape = _dims("tokens_shape", tokens_shape)
            if not tokens_shape or min(tokens_shape) < 1:
                raise ValidationError(f"tokens_shape must be positive dimensions, got {tokens_shape}")
            tokens_dtype = np.dtype(tokens_dtype)
            if tokens_dtype not in (np.dtype("float16"), np.dtype("float32")):
                raise ValidationError(f"tokens_dtype must be float16 or float32, got {tokens_dtype}")
        if frame_shape is not None:
            fs = _dims("frame_shape", frame_shape)
            if len(fs) == 2:
                fs = (num_agents, *fs, 3)
            elif len(fs) == 3 and fs[2] == 3:
                fs = (num_agents, *fs)
            if len(fs) != 4 or fs[0] != num_agents or fs[3] != 3 or min(fs) < 1:
                raise ValidationError(
                    f"frame_shape must be (H, W) or (N, H, W, 3) with N={num_agents}, got {frame_shape}"
                )
            frame_shape = fs
        if attrs is not None and not isinstance(attrs, Mapping):
            raise ValidationError(
                f"attrs must be a mapping of attribute names to JSON values, got {type(attrs).__name__}"
            )
        extra = _json_attr("attrs", dict(attrs or {}))
        clash = sorted(set(extra) & _MANAGED_ATTRS)
        if clash:
            raise ValidationError(f"attrs: {clash} are managed by the store and cannot be set through attrs")
        attrs = {
            **extra,
            "scenario": scenario,
            "seed": None if seed is None else int(seed),
            "config": _json_attr("config", dict(config or {})),
            "checkpoint_hash": checkpoint_hash,
            "parent": None,
            "agents": agents,
            "created": _now_iso(),
            "multiworld_version": _package_version(),
            "rewinds": 0,
        }
        specs = L.world_specs(
            size=size,
            num_agents=num_agents,
            num_boxes=num_boxes,
            num_items=num_items,
            tokens_shape=tokens_shape,
            tokens_dtype=tokens_dtype if tokens_shape else None,
            frame_shape=frame_shape,
            shard_rows=self.shard_rows,
        )
        static = {n: _coerce(n, fields[n], specs[n].dtype, specs[n].shape) for n in L.STATIC_FIELDS}
        world = _World(world_id, attrs, specs, {})
        row0 = _validate_row(
            world,
            static,
            fields,
            actions=np.full(num_agents, -1, np.int16),
            rewards=np.zeros(num_agents, np.float32),
            terminations=np.zeros(num_agents, bool),
            truncations=np.zeros(num_agents, bool),
            events=events,
            tokens=tokens,
            frames=frames,
            row=0,
        )
        # Everything is validated: take the lock, then write arrays, row 0, and the marker last.
        lock = self._backend.lock(_lock_key(world_id), self.lease_ttl)
        try:
            if self._world_attrs(world_id) is not None:
                raise WorldExistsError(f"world {world_id!r} already exists in {self.url}")
            self._backend.delete_prefix(f"worlds/{world_id}")  # debris of an interrupted creation
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
            self._backend.put_documents(docs)
            self._backend.put_many(chunks)
            shards = self._backend.shard_writer()
            try:
                _write_chunks(self._backend, shards, world_id, _encode_row(world, row0, 0))
                attrs["committed_steps"] = 1
                self._backend.put_document(_world_key(world_id), L.group_document(attrs))
            except BaseException:
                shards.close()
                raise
            world.capacity = capacity
            return WorldWriter(self, world, lock, static=static, shards=shards)
        except BaseException:
            lock.release()
            raise

    def fork(self, world_id: str, step: int, new_world_id: str | None = None) -> str:
        """Fork ``world_id`` at row ``step``: a new world whose rows ``0..step`` are the parent's.

        Nothing is copied but the small static arrays: the child records ``parent`` =
        ``{"world": world_id, "step": step}`` and reads rows ``<= step`` through the parent
        chain; its own arrays receive rows ``step+1, ...`` from ``store.writer(new_id)``.
        The parent may keep being written meanwhile (its committed rows never change, and
        rewinding it below ``step`` is refused while the child exists). Returns the new id.
        """
        self._writable(f"fork world {world_id!r}")
        parent = self._load(check_world_id(world_id))
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
        if self._world_attrs(new_world_id) is not None:
            raise WorldExistsError(f"world {new_world_id!r} already exists in {self.url}")
        lock = self._backend.lock(_lock_key(new_world_id), self.lease_ttl)
        try:
            if self._world_attrs(new_world_id) is not None:
                raise WorldExistsError(f"world {new_world_id!r} already exists in {self.url}")
            self._backend.delete_prefix(f"worlds/{new_world_id}")
            statics = [s for s in parent.specs.values() if not s.per_step and not s.empty]
            data = self._backend.get_many([_world_key(world_id, f"{s.name}/{s.chunk_key()}") for s in statics])
            if any(d is None for d in data):
                raise CorruptStoreError(f"world {world_id!r} is missing static chunks")
            self._backend.put_documents(
                {
                    _world_key(new_world_id, f"{s.name}/zarr.json"): L.array_document(
                        s, step + 1 if s.per_step else None
                    )
                    for s in parent.specs.values()
                }
            )
            self._backend.put_many(
                {_world_key(new_world_id, f"{s.name}/{s.chunk_key()}"): d for s, d in zip(statics, data)}
            )
            attrs = {k: v for k, v in parent.attrs.items() if k not in ("committed_steps", "created", "rewinds")}
            attrs.update(parent={"world": world_id, "step": step}, created=_now_iso(), rewinds=0)
            attrs["committed_steps"] = step + 1
            self._backend.put_document(_world_key(new_world_id), L.group_document(attrs))
            # A rewind of the parent racing this fork: one of the two sides always notices.
            now = self._world_attrs(world_id)
            if now is None or now.get("rewinds", 0) != parent.attrs.get("rewinds", 0):
                self._backend.delete(_world_key(new_world_id))
                self._backend.delete_prefix(f"worlds/{new_world_id}")
                raise WorldInUseError(f"world {world_id!r} was rewound or deleted during the fork; retry")
        finally:
            lock.release()
        return new_world_id

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


def _dims(name: str, value: Any) -> tuple[int, ...]:
    try:
        return tuple(_as_int(name, d) for d in value)
    except TypeError:
        raise ValidationError(f"{name} must be a sequence of ints, got {value!r}") from None


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValidationError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def _validate_row(
    world: _World,
    static: dict[str, np.ndarray],
    fields: dict[str, np.ndarray],
    *,
    actions: Any,
    rewards: Any,
    terminations: Any,
    truncations: Any,
    events: Any,
    tokens: Any,
    frames: Any,
    row: int,
) -> dict[str, Any]:
    """Validate and convert one row; raises ValidationError before anything is written."""
    specs, agents = world.specs, world.attrs["agents"]
    for name in L.STATIC_FIELDS:
        if name in fields:
            value = np.asarray(fields[name])
            if value.shape != static[name].shape or not np.array_equal(value, static[name]):
                raise ValidationError(f"{name}: differs from the world's static {name} (static arrays never change)")
    out: dict[str, Any] = {}
    for name in ("poses", "boxes", "items_alive"):
        if name not in fields:
            raise ValidationError(f"state is missing field {name!r}")
        out[name] = _coerce(name, fields[name], specs[name].dtype, specs[name].shape)
    out["step"] = _coerce("step", fields.get("step", row), specs["step"].dtype, ())
    for name, value in (
        ("actions", actions),
        ("rewards", rewards),
        ("terminations", terminations),
        ("truncations", truncations),
    ):
        out[name] = _coerce(name, _per_agent(name, value, agents), specs[name].dtype, specs[name].shape)
    out["events"] = _pack_events(events)
    for name, value in (("tokens", tokens), ("frames", frames)):
        if name in specs:
            out[name] = (
                specs[name].fill_row() if value is None else _coerce(name, value, specs[name].dtype, specs[name].shape)
            )
        elif value is not None:
            raise ValidationError(f"{name}: world {world.world_id!r} was created without a {name} array")
    return out


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


# ----------------------------------------------------------------------------- reading
class WorldReader:
    """Read access to one world: a snapshot of its committed rows (``refresh()`` re-reads the marker).

    Rows are addressed by step ``t`` in ``[0, steps)``; rows of a fork up to its fork step
    come from the parent chain transparently.
    """

    def __init__(self, store: WorldStore, world: _World):
        self._store = store
        self._backend = store._backend
        self._world = world
        self._parent_reader: WorldReader | None = None
        self._static: dict[str, np.ndarray] | None = None

    def refresh(self) -> WorldReader:
        self._world = self._store._load(self.world_id)
        return self

    # ------------------------------------------------------------------ attributes
    @property
    def world_id(self) -> str:
        return self._world.world_id

    @property
    def attrs(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._world.attrs))

    @property
    def steps(self) -> int:
        """Committed rows (= committed steps); the last committed step is ``steps - 1``."""
        return self._world.committed

    @property
    def last_step(self) -> int:
        return self._world.committed - 1

    @property
    def parent(self) -> dict[str, Any] | None:
        p = self._world.attrs.get("parent")
        return dict(p) if p else None

    @property
    def agents(self) -> list[str]:
        return list(self._world.attrs["agents"])

    @property
    def scenario(self) -> str:
        return self._world.attrs["scenario"]

    @property
    def seed(self) -> int | None:
        return self._world.attrs["seed"]

    @property
    def config(self) -> dict[str, Any]:
        return self.attrs["config"]

    @property
    def checkpoint_hash(self) -> str | None:
        return self._world.attrs.get("checkpoint_hash")

    @property
    def arrays(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Array name -> (row shape for per-step arrays / shape for static ones, dtype)."""
        return {n: (s.shape, "bytes" if s.dtype is None else str(s.dtype)) for n, s in self._world.specs.items()}

    @property
    def has_tokens(self) -> bool:
        return "tokens" in self._world.specs

    @property
    def has_frames(self) -> bool:
        return "frames" in self._world.specs

    def lineage(self) -> list[tuple[str, int]]:
        """``[(world, last row read from it), ...]`` from the root world to this one."""
        chain = [(self.world_id, self.last_step)]
        reader: WorldReader = self
        while reader.parent:
            step = reader.parent["step"]
            reader = reader._parent()
            chain.append((reader.world_id, step))
        return chain[::-1]

    def __repr__(self) -> str:
        return f"WorldReader({self.world_id!r}, steps={self.steps})"

    # ------------------------------------------------------------------ rows
    def _parent(self) -> WorldReader:
        if self._parent_reader is None:
            parent = self._world.attrs["parent"]
            reader = self._store.world(parent["world"])
            if reader.steps <= int(parent["step"]):
                raise CorruptStoreError(
                    f"world {self.world_id!r} forks {parent['world']!r} at step {parent['step']} "
                    f"but that world has only {reader.steps} committed rows"
                )
            self._parent_reader = reader
        return self._parent_reader

    def _range(self, start: int, stop: int | None) -> tuple[int, int]:
        start = _as_int("start", start)
        stop = self.steps if stop is None else _as_int("stop", stop)
        if not 0 <= start <= stop <= self.steps:
            raise StepOutOfRangeError(
                f"rows [{start}, {stop}) are outside world {self.world_id!r}'s committed rows [0, {self.steps})"
            )
        return start, stop

    def _spec(self, name: str) -> L.ArraySpec:
        spec = self._world.specs.get(name)
        if spec is None or not spec.per_step:
            raise ValidationError(f"world {self.world_id!r} has no per-step array {name!r}")
        return spec

    def _rows(self, name: str, start: int, stop: int) -> list[Any] | np.ndarray:
        """Rows ``[start, stop)`` of ``name`` (assumed committed): an array, or a list of blobs for events."""
        spec = self._spec(name)
        base = self._world.base
        parts = []
        if start <= base:
            parts.append(self._parent()._rows(name, start, min(stop, base + 1)))
            start = min(stop, base + 1)
        if start < stop:
            parts.append(self._own_rows(spec, start, stop))
        if spec.codec == "vlen":
            return [x for p in parts for x in p]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty((0, *spec.shape), spec.dtype)

    def _own_rows(self, spec: L.ArraySpec, start: int, stop: int) -> list[Any] | np.ndarray:
        n = stop - start
        if spec.empty:
            return np.empty((n, *spec.shape), spec.dtype)
        if spec.sharded:
            requests: list[tuple[str, L.ArraySpec, list[int]]] = []
            rows, t = spec.shard_rows, start
            while t < stop:  # one request per shard: its rows are consecutive slots
                end = min(stop, (t // rows + 1) * rows)
                key = _world_key(self.world_id, f"{spec.name}/{spec.chunk_key(t)}")
                requests.append((key, spec, list(range(t % rows, t % rows + end - t))))
                t = end
            data = [d for part in self._backend.read_shards(requests) for d in part]
        else:
            keys = [_world_key(self.world_id, f"{spec.name}/{spec.chunk_key(t)}") for t in range(start, stop)]
            data = self._backend.get_many(keys)
        for t, d in zip(range(start, stop), data):
            if d is None:
                raise CorruptStoreError(f"world {self.world_id!r}: committed row {t} of {spec.name!r} is missing")
        where = f"world {self.world_id!r} array {spec.name!r}"
        if spec.codec == "vlen":
            return [spec.decode(d, where) for d in data]
        if spec.codec == "raw":
            joined = b"".join(data)
            if len(joined) != n * spec.row_nbytes:
                bad = next(t for t, d in zip(range(start, stop), data) if len(d) != spec.row_nbytes)
                raise CorruptStoreError(f"{where}: row {bad} has a torn chunk")
            return (
                np.frombuffer(joined, dtype=spec.dtype.newbyteorder("<")).astype(spec.dtype).reshape((n, *spec.shape))
            )
        return np.stack([spec.decode(d, where) for d in data])

    def read(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray | list[Any]:
        """Rows ``[start, stop)`` of a per-step array (``events``: a list of per-row event lists)."""
        start, stop = self._range(start, stop)
        rows = self._rows(name, start, stop)
        if name == "events":
            return [_unpack_events(b) for b in rows]
        return rows

    def read_many(self, names: Iterable[str], start: int = 0, stop: int | None = None) -> dict[str, Any]:
        return {n: self.read(n, start, stop) for n in names}

    def _row(self, name: str, t: int) -> Any:
        t = _as_int("t", t)
        if not 0 <= t < self.steps:
            raise StepOutOfRangeError(f"step {t} is outside world {self.world_id!r}'s committed rows [0, {self.steps})")
        return self._rows(name, t, t + 1)[0]

    def poses(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.read("poses", start, stop)

    def actions(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.read("actions", start, stop)

    def rewards(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.read("rewards", start, stop)

    def terminations(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.read("terminations", start, stop)

    def truncations(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.read("truncations", start, stop)

    def events(self, t: int) -> list[Any]:
        """The events of the transition into row ``t`` (msgpack-decoded; tuples come back as lists)."""
        return _unpack_events(self._row("events", t))

    def tokens(self, t: int) -> np.ndarray:
        """Scene tokens of row ``t`` (NaN where the row was appended without tokens)."""
        return self._row("tokens", t)

    def frames(self, t: int) -> np.ndarray:
        return self._row("frames", t)

    @property
    def static(self) -> dict[str, np.ndarray]:
        """walls, floor, goals, items, colors (written once at creation)."""
        if self._static is None:
            specs = [self._world.specs[n] for n in L.STATIC_FIELDS]
            keys = [_world_key(self.world_id, f"{s.name}/{s.chunk_key()}") for s in specs if not s.empty]
            data = iter(self._backend.get_many(keys))
            out = {}
            for s in specs:
                if s.empty:
                    out[s.name] = np.empty(s.shape, s.dtype)
                    continue
                d = next(data)
                if d is None:
                    raise CorruptStoreError(f"world {self.world_id!r}: static array {s.name!r} is missing")
                out[s.name] = s.decode(d, f"world {self.world_id!r} array {s.name!r}")
            self._static = out
        return {k: v.copy() for k, v in self._static.items()}

    def state(self, t: int) -> WorldState:
        """The oracle state after ``t`` steps, as a WorldState with one world (B=1)."""
        t = _as_int("t", t)
        if not 0 <= t < self.steps:
            raise StepOutOfRangeError(f"step {t} is outside world {self.world_id!r}'s committed rows [0, {self.steps})")
        return self.states(t, t + 1)

    def states(self, start: int = 0, stop: int | None = None) -> WorldState:
        """Rows ``[start, stop)`` as one WorldState with B = stop - start (static arrays repeated)."""
        start, stop = self._range(start, stop)
        n = stop - start
        arrays = {name: np.repeat(v[None], n, axis=0) for name, v in self.static.items()}
        for name in L.STATE_STEP_FIELDS:
            arrays[name] = np.asarray(self._rows(name, start, stop))
        return WorldState(**{k: np.asarray(arrays[k], dtype=FIELD_DTYPES[k]) for k in FIELD_DTYPES})


# ----------------------------------------------------------------------------- writing
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
        store: WorldStore,
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
