"""The viewer's JSON and image API over one store, independent of HTTP.

Every method takes the raw text that came from the URL (world ids, steps) and validates it
before touching the store: a bad id or step raises :class:`ApiError` with a 4xx status and a
message naming the problem; a store that went missing or is corrupt raises a 5xx one with the
store's own message. Nothing here writes to the store except :meth:`Viewer.fork`, and that
only when the viewer was opened writable.

Argument checks and errors are in :mod:`multiworld.viewer.params`, the per-world summaries and
the cache in :mod:`multiworld.viewer.summaries`; the names that moved there are re-exported here.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from multiworld.state import CorruptStoreError as CorruptStoreError
from multiworld.state import InvalidWorldIdError as InvalidWorldIdError
from multiworld.state import (
    StepOutOfRangeError,
    StoreError,
    WorldInUseError,
    WorldNotFoundError,
    WorldReader,
    WorldStore,
)
from multiworld.state import StoreNotFoundError as StoreNotFoundError
from multiworld.state import check_world_id as check_world_id
from multiworld.viewer.maps import MapPainter
from multiworld.viewer.params import _STEP as _STEP
from multiworld.viewer.params import ApiError, _store_error, is_local_url, parse_step, parse_world_id
from multiworld.viewer.png import encode_png
from multiworld.viewer.summaries import _LRU, _events, _hex, _marks, _shared_rows, _track
from multiworld.viewer.summaries import MARK_KINDS as MARK_KINDS
from multiworld.viewer.summaries import _kind as _kind
from multiworld.viewer.views import Checkpoints, ViewSource, backend_of, psnr

MAX_PSNR_RANGE = 256  # steps per PSNR request (the page asks range after range)
MAP_CELL_PX = 8


class Viewer:
    """The API of one store. ``read_only=None``: read-only for object stores, forks allowed on
    local directories. ``checkpoints``: extra world-model checkpoint directories (for model
    worlds recorded without frames). Opening a missing, foreign or newer store raises the
    store's error (:class:`~multiworld.state.StoreError`)."""

    def __init__(
        self,
        url: str,
        *,
        read_only: bool | None = None,
        checkpoints: Sequence[str] = (),
        storage_options: Mapping[str, Any] | None = None,
        cache_images: int = 2048,
    ):
        self.url = str(url)
        self.storage_options = dict(storage_options or {})
        self.read_only = (not is_local_url(self.url)) if read_only is None else bool(read_only)
        self.store = WorldStore.open(self.url, mode="r", storage_options=self.storage_options)
        self.checkpoints = Checkpoints(checkpoints)
        self._readers: dict[str, WorldReader] = {}
        self._sources: dict[tuple[str, Any], ViewSource] = {}
        self._summaries = _LRU(64)
        self._images = _LRU(cache_images)
        self._lock = threading.Lock()
        self._fork_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ helpers
    def check(self) -> None:
        """Re-open the store's root (it may have been removed or replaced since the start)."""
        WorldStore.open(self.url, mode="r", storage_options=self.storage_options).close()

    def _reader(self, world_id: str, step: int | None = None, refresh: bool = False) -> WorldReader:
        """The cached reader of ``world_id``, refreshed when asked or when ``step`` lies beyond its
        snapshot (a world still being written); ApiError 404 for an unknown world or step."""
        world_id = parse_world_id(world_id)
        try:
            with self._lock:
                reader = self._readers.get(world_id)
            if reader is None:
                reader = self.store.world(world_id)
            elif refresh or (step is not None and step >= reader.steps):
                reader = self.store.world(world_id)
            with self._lock:
                self._readers[world_id] = reader
        except WorldNotFoundError:
            raise ApiError(404, f"no world {world_id!r} in store {self.url}") from None
        except StoreError as e:
            raise _store_error(e) from None
        if step is not None and not 0 <= step < reader.steps:
            raise ApiError(404, f"step {step} is outside world {world_id!r}'s committed steps 0..{reader.steps - 1}")
        return reader

    def _source(self, reader: WorldReader) -> ViewSource:
        key = (reader.world_id, reader.attrs.get("created"))
        with self._lock:
            source = self._sources.get(key)
        if source is None or source.reader.steps < reader.steps:
            source = ViewSource(reader, self.checkpoints)
            with self._lock:
                self._sources[key] = source
        return source

    def _info(self, reader: WorldReader) -> dict[str, Any]:
        attrs = reader.attrs
        digest = reader.checkpoint_hash
        path = self.checkpoints.find(digest) if digest else None
        source = self._source(reader)
        return {
            "id": reader.world_id,
            "scenario": reader.scenario,
            "seed": reader.seed,
            "steps": reader.steps,
            "agents": len(reader.agents),
            "backend": backend_of(reader),
            "checkpoint": digest,
            "checkpoint_name": None if path is None else path.name,
            "parent": reader.parent,
            "created": attrs.get("created"),
            "views": source.kind,
            "views_note": source.note,
        }

    # ------------------------------------------------------------------ store
    def store_info(self) -> dict[str, Any]:
        """Every world (newest first) with scenario, seed, steps, backend, checkpoint and parent."""
        try:
            self.check()
            ids = self.store.worlds()
            worlds = []
            for world_id in ids:
                try:
                    worlds.append(self._info(self._reader(world_id, refresh=True)))
                except ApiError as e:
                    if e.status != 404:  # a world deleted while listing is simply gone
                        raise
        except StoreError as e:
            raise _store_error(e) from None
        worlds.sort(key=lambda w: (w["created"] or "", w["id"]), reverse=True)
        return {
            "store": self.url,
            "schema_version": self.store.schema_version,
            "read_only": self.read_only,
            "scenarios": sorted({w["scenario"] for w in worlds}),
            "worlds": worlds,
        }

    # ------------------------------------------------------------------ one world
    def _cached(self, kind: str, reader: WorldReader, make):
        """``make(reader)`` cached per world version (creation, rewinds, committed steps)."""
        attrs = reader.attrs
        key = (kind, reader.world_id, attrs.get("created"), attrs.get("rewinds"), reader.steps)
        value = self._summaries.get(key)
        if value is None:
            try:
                value = make(reader)
            except StoreError as e:
                raise _store_error(e) from None
            self._summaries.put(key, value)
        return value

    def world(self, world_id: str) -> dict[str, Any]:
        """A world's description: its info, lineage, forks, agents and their colours, image sizes,
        config, and the worlds worth comparing it with. Light: the per-step data comes from
        :meth:`track` (poses, returns), :meth:`marks` and :meth:`events`."""
        return self._cached("world", self._reader(world_id, refresh=True), self._describe)

    def _describe(self, reader: WorldReader) -> dict[str, Any]:
        from multiworld.world.textures import AGENT_COLOURS

        agents = reader.agents
        static = reader.static
        source = self._source(reader)
        children, compare = [], []
        parent = reader.parent
        if parent:
            compare.append({"id": parent["world"], "relation": "parent", "step": parent["step"]})
        for other_id in self.store.worlds():
            if other_id == reader.world_id:
                continue
            try:
                other = self._reader(other_id)
            except ApiError:
                continue
            p = other.parent
            if p and p["world"] == reader.world_id:
                children.append({"id": other_id, "step": p["step"]})
                compare.append({"id": other_id, "relation": "fork", "step": p["step"]})
            elif (
                (not parent or other_id != parent["world"])
                and other.seed == reader.seed
                and other.scenario == reader.scenario
                and len(other.agents) == len(agents)
            ):
                compare.append({"id": other_id, "relation": f"same seed, {backend_of(other)}", "step": 0})
        size = int(static["walls"].shape[0])
        return {
            **self._info(reader),
            "agent_names": agents,
            "colors": [_hex(AGENT_COLOURS[int(c) % len(AGENT_COLOURS)]) for c in static["colors"]],
            "size": size,
            "frame": {"height": source.height, "width": source.width},
            "map_px": size * MAP_CELL_PX,
            "lineage": [list(x) for x in reader.lineage()],
            "children": children,
            "compare": compare,
            "config": reader.config,
        }

    def track(self, world_id: str) -> bytes:
        """Every step's poses and every agent's return so far, little-endian binary for the page:
        ``u32 steps, u32 agents``, then float32 poses ``(steps, agents, 3)`` (x, y, heading; cells,
        radians), then float32 returns ``(agents, steps)`` (cumulative rewards)."""
        return self._cached("track", self._reader(world_id, refresh=True), _track)

    def marks(self, world_id: str) -> dict[str, Any]:
        """The timeline's marks: for each kind (push, pickup, reward, end, other) the steps that have
        one, and how many events of each kind the world holds. ``reward`` marks steps where an
        agent's reward is not zero; ``end`` steps where an agent terminated or was truncated."""
        return self._cached("marks", self._reader(world_id, refresh=True), _marks)

    def events(self, world_id: str, start: str | int, stop: str | int) -> dict[str, Any]:
        """The events of steps ``[start, stop)`` (at most 1000 steps), each with its ``step``: the
        store's events as recorded, then a ``reward`` event per step with non-zero rewards and an
        ``end`` event per step where agents terminated or were truncated."""
        lo, hi = parse_step(start), parse_step(stop)
        reader = self._reader(world_id)
        if not lo < hi:
            raise ApiError(400, f"empty step range [{lo}, {hi})")
        if hi - lo > 1000:
            raise ApiError(400, f"at most 1000 steps of events per request, asked for {hi - lo}")
        if hi > reader.steps:
            reader = self._reader(world_id, hi - 1)
        try:
            return {"start": lo, "stop": hi, "events": _events(reader, lo, hi)}
        except StoreError as e:
            raise _store_error(e) from None

    # ------------------------------------------------------------------ images
    def views_png(self, world_id: str, step: str | int) -> bytes:
        """Every agent's view at ``step``, side by side in one PNG ``(H, N*W, 3)``."""
        t = parse_step(step)
        reader = self._reader(world_id, t)
        key = ("views", reader.world_id, reader.attrs.get("created"), t)
        png = self._images.get(key)
        if png is None:
            views = self._views(reader, t, t + 1)[0]
            n, h, w, _ = views.shape
            png = encode_png(np.ascontiguousarray(views.transpose(1, 0, 2, 3)).reshape(h, n * w, 3), level=1)
            self._images.put(key, png)
        return png

    def map_png(self, world_id: str, step: str | int) -> bytes:
        """The top-down map at ``step`` (walls, floor, goals, boxes, items, agents; north up): the
        pixels of ``multiworld.world.topdown.top_down`` at 8 pixels per cell."""
        t = parse_step(step)
        reader = self._reader(world_id, t)
        key = ("map", reader.world_id, reader.attrs.get("created"), t)
        png = self._images.get(key)
        if png is None:
            try:
                painter = self._painter(reader)
                rows = reader.read_many(["poses", "boxes", "items_alive"], t, t + 1)
            except StoreError as e:
                raise _store_error(e) from None
            png = encode_png(painter.paint(rows["poses"][0], rows["boxes"][0], rows["items_alive"][0]), level=1)
            self._images.put(key, png)
        return png

    def _painter(self, reader: WorldReader) -> MapPainter:
        key = ("painter", reader.world_id, reader.attrs.get("created"))
        painter = self._summaries.get(key)
        if painter is None:
            painter = MapPainter(reader.static, MAP_CELL_PX)
            self._summaries.put(key, painter)
        return painter

    def _views(self, reader: WorldReader, start: int, stop: int) -> np.ndarray:
        source = self._source(reader)
        try:
            return source.views_range(start, stop)
        except LookupError as e:
            raise ApiError(404, str(e).strip("'\"")) from None
        except StoreError as e:
            raise _store_error(e) from None

    # ------------------------------------------------------------------ two worlds
    def compare(self, a: str, b: str) -> dict[str, Any]:
        """How worlds ``a`` and ``b`` line up: the steps both have, the first step they may differ
        at (after their shared rows), where their actions first differ, and whether their views
        can be compared."""
        ra, rb = self._reader(a, refresh=True), self._reader(b, refresh=True)
        if ra.world_id == rb.world_id:
            raise ApiError(400, "compare needs two different worlds")
        key = tuple(("compare", r.world_id, r.attrs.get("created"), r.attrs.get("rewinds"), r.steps) for r in (ra, rb))
        cached = self._summaries.get(key)
        if cached is None:
            cached = self._compare(ra, rb)
            self._summaries.put(key, cached)
        return cached

    def _compare(self, ra: WorldReader, rb: WorldReader) -> dict[str, Any]:
        try:
            shared = _shared_rows(ra.lineage(), rb.lineage())
            stop = min(ra.steps, rb.steps)
            acts_a, acts_b = ra.actions(0, stop), rb.actions(0, stop)
        except StoreError as e:
            raise _store_error(e) from None
        same_shape = acts_a.shape == acts_b.shape
        differ = np.flatnonzero((acts_a != acts_b).any(axis=1)) if same_shape else np.array([0])
        sa, sb = self._source(ra), self._source(rb)
        problem = None
        if len(ra.agents) != len(rb.agents):
            problem = f"{ra.world_id} has {len(ra.agents)} agents, {rb.world_id} has {len(rb.agents)}"
        elif (sa.height, sa.width) != (sb.height, sb.width):
            problem = f"views of {sa.height}x{sa.width} and {sb.height}x{sb.width} pixels"
        elif sa.kind is None or sb.kind is None:
            problem = sa.note if sa.kind is None else sb.note
        return {
            "a": self._info(ra),
            "b": self._info(rb),
            "shared_steps": shared,
            "start": max(0, shared - 1),
            "stop": stop,
            "actions_differ_at": int(differ[0]) if len(differ) else None,
            "psnr_problem": problem,
        }

    def psnr(self, a: str, b: str, start: str | int, stop: str | int) -> dict[str, Any]:
        """Per-step PSNR (dB, of the mean squared error over all agents' views; 100 = identical)
        between worlds ``a`` and ``b`` for steps ``[start, stop)``, at most 256 steps at a time."""
        lo, hi = parse_step(start), parse_step(stop)
        ra, rb = self._reader(a), self._reader(b)
        if ra.world_id == rb.world_id:
            raise ApiError(400, "compare needs two different worlds")
        common = min(ra.steps, rb.steps)
        if not lo < hi <= common:
            raise ApiError(404, f"steps [{lo}, {hi}) are not inside the {common} steps both worlds have")
        if hi - lo > MAX_PSNR_RANGE:
            raise ApiError(400, f"at most {MAX_PSNR_RANGE} steps per PSNR request, asked for {hi - lo}")
        info = self.compare(a, b)
        if info["psnr_problem"]:
            raise ApiError(409, f"cannot compare the views: {info['psnr_problem']}")
        shared = info["shared_steps"]
        values = np.full(hi - lo, 100.0)
        todo = max(lo, shared)  # rows both read from the same world are the same rows
        if todo < hi:
            values[todo - lo :] = psnr(self._views(ra, todo, hi), self._views(rb, todo, hi))
        return {"start": lo, "stop": hi, "psnr": np.round(values, 3).tolist()}

    # ------------------------------------------------------------------ fork
    def fork(self, world_id: str, step: str | int) -> dict[str, Any]:
        """Fork ``world_id`` at ``step`` (the store's fork: nothing is copied); the new world's id."""
        if self.read_only:
            raise ApiError(403, f"store {self.url} is served read-only: forking is disabled")
        t = parse_step(step)
        reader = self._reader(world_id, t)
        try:
            with self._fork_lock, WorldStore.open(self.url, mode="r+", storage_options=self.storage_options) as store:
                new_id = store.fork(reader.world_id, t)
        except (WorldInUseError, StepOutOfRangeError) as e:
            raise ApiError(409, str(e)) from None
        except PermissionError as e:
            raise ApiError(403, f"cannot fork: {e}") from None
        except StoreError as e:
            raise _store_error(e) from None
        return {"id": new_id, "parent": reader.world_id, "step": t}
