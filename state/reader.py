"""Reading a world: :class:`WorldReader`, a snapshot of its committed rows (forks read through parents)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from multiworld.world.state import FIELD_DTYPES, WorldState

from . import _layout as L
from ._handle import StoreHandle
from ._world import _World, _world_key
from .errors import CorruptStoreError, StepOutOfRangeError, ValidationError
from .validate import _as_int, _unpack_events, check_world_id


class WorldReader:
    """Read access to one world: a snapshot of its committed rows (``refresh()`` re-reads the marker).

    Rows are addressed by step ``t`` in ``[0, steps)``; rows of a fork up to its fork step
    come from the parent chain transparently.
    """

    def __init__(self, store: StoreHandle, world: _World):
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
            reader = WorldReader(self._store, self._store._load(check_world_id(parent["world"])))
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
