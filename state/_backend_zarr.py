""":class:`ZarrStoreBackend` wraps a zarr 3 ``Store`` (``MemoryStore``, ``FsspecStore`` for
s3:// and friends). An object PUT is atomic, so every write is all-or-nothing; writes of
one commit are issued concurrently and awaited before the marker is written. Writer
exclusion is a lease object with an expiry (object stores offer no lock through fsspec).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import Any

from ._backend_base import HOST, Backend, Lock, describe_holder, holder_info, pid_alive
from .errors import CorruptStoreError, WorldLockedError


class ZarrStoreBackend(Backend):
    """A zarr 3 ``Store``; I/O of one call is gathered on zarr's event loop."""

    def __init__(self, store: Any, url: str, *, read_only: bool, concurrency: int = 32):
        from zarr.abc.store import SupportsGetSync, SupportsSetSync
        from zarr.core.buffer import default_buffer_prototype

        self.store = store
        self.url = url
        self.read_only = read_only
        self._proto = default_buffer_prototype()
        self._sync_get = isinstance(store, SupportsGetSync)
        self._sync_set = isinstance(store, SupportsSetSync)
        self._limit = concurrency

    def _run(self, coro):
        from zarr.core.sync import sync

        return sync(coro)

    async def _gather(self, coros):
        sem = asyncio.Semaphore(self._limit)

        async def one(c):
            async with sem:
                return await c

        return await asyncio.gather(*(one(c) for c in coros))

    def _buf(self, data: bytes):
        return self._proto.buffer.from_bytes(data)

    def get(self, key: str) -> bytes | None:
        return self.get_many([key])[0]

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        if self._sync_get:
            bufs = [self.store.get_sync(k, prototype=self._proto) for k in keys]
        else:
            bufs = self._run(self._gather([self.store.get(k, prototype=self._proto) for k in keys]))
        return [None if b is None else b.to_bytes() for b in bufs]

    def put_many(self, items: dict[str, bytes]) -> None:
        if not items:
            return
        if self._sync_set:
            for k, v in items.items():
                self.store.set_sync(k, self._buf(v))
        else:
            self._run(self._gather([self.store.set(k, self._buf(v)) for k, v in items.items()]))

    def put_documents(self, items: dict[str, bytes]) -> None:
        self.put_many(items)  # an object PUT is atomic

    def delete(self, key: str) -> None:
        self._run(self.store.delete(key))

    def delete_prefix(self, prefix: str) -> None:
        self._invalidate(prefix)
        self._run(self.store.delete_dir(prefix))
        self._invalidate(prefix)

    def _invalidate(self, prefix: str) -> None:
        fs = getattr(self.store, "fs", None)
        if fs is not None:
            path = f"{self.store.path}/{prefix}".rstrip("/")
            with contextlib.suppress(Exception):
                fs.invalidate_cache(path)

    def list_dir(self, prefix: str) -> list[str]:
        self._invalidate(prefix)

        async def collect():
            return [k async for k in self.store.list_dir(prefix)]

        names = self._run(collect())
        return sorted({n.split("/", 1)[0] for n in names if n})

    def is_empty(self) -> bool:
        self._invalidate("")
        return self._run(self.store.is_empty(""))

    def lock(self, key: str, ttl: float) -> Lock:
        return _LeaseLock(self, key, ttl)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.store.close()


class _LeaseLock(Lock):
    """A lease document ``{"token", "pid", "host", "time", "expires"}`` at ``locks/<world>.lock``.

    Taken when absent, expired, or left by a dead process of this host; renewed on commit
    once a third of its ``ttl`` has passed. Object stores reached through fsspec offer no
    compare-and-swap, so two writers starting within the same instant could both read an
    empty slot: after writing, the lease is read back and the loser gets WorldLockedError,
    which narrows but does not close that window. Expiry relies on synchronised clocks.
    """

    def __init__(self, backend: ZarrStoreBackend, key: str, ttl: float):
        self.backend, self.key, self.ttl = backend, key, float(ttl)
        self.token = secrets.token_hex(12)
        current = self._current()
        if current is not None and self._live(current):
            raise WorldLockedError(
                f"world is being written by {describe_holder(current)} (lease {backend.url}/{key}, "
                f"expires in {float(current.get('expires', 0)) - time.time():.0f} s); one writer per world"
            )
        self._write()
        back = self._current()
        if back is None or back.get("token") != self.token:
            raise WorldLockedError(f"lost the race for lease {backend.url}/{key} to {describe_holder(back)}")
        self.held = True

    def _current(self) -> dict[str, Any] | None:
        data = self.backend.get(self.key)
        if not data:
            return None
        try:
            info = json.loads(data)
        except ValueError:
            raise CorruptStoreError(f"unreadable lease {self.key}") from None
        return info if isinstance(info, dict) else None

    def _live(self, info: dict[str, Any]) -> bool:
        if float(info.get("expires", 0)) < time.time():
            return False
        if info.get("host") == HOST and isinstance(info.get("pid"), int):
            return pid_alive(info["pid"], info.get("pid_start"))
        return True

    def _write(self) -> None:
        info = holder_info(self.token)
        info["expires"] = info["time"] + self.ttl
        self.renewed = info["time"]
        self.backend.put_document(self.key, json.dumps(info).encode())

    def renew(self) -> None:
        if time.time() - self.renewed < self.ttl / 3:
            return
        current = self._current()
        if current is None or current.get("token") != self.token:
            raise WorldLockedError(f"lease {self.key} was lost to {describe_holder(current)}")
        self._write()

    def release(self) -> None:
        if not getattr(self, "held", False):
            return
        self.held = False
        with contextlib.suppress(Exception):
            current = self._current()
            if current is not None and current.get("token") == self.token:
                self.backend.delete(self.key)
