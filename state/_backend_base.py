"""The interface every backend implements (keys are '/'-separated paths below the store root),
and who holds a writer lock (pid, host, start time), for both kinds of lock.
"""

from __future__ import annotations

import abc
import os
import socket
import time
from typing import Any

from . import _layout as L

HOST = socket.gethostname()


def _proc_start(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks (Linux), to tell a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields and fields[0] == "Z":  # zombie: dead, just not reaped yet
        return "zombie"
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` (on this host) still runs; ``start`` guards against pid reuse."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _proc_start(pid)
    if now == "zombie":
        return False
    return not (start is not None and now is not None and now != start)


def holder_info(token: str) -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": HOST, "pid_start": _proc_start(pid), "time": time.time(), "token": token}


def describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "an unknown process"
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(float(info.get("time", 0))))
    return f"pid {info.get('pid')} on host {info.get('host')!r} since {when}"


class Lock(abc.ABC):
    """The writer lock of one world; released by :meth:`release` (idempotent)."""

    @abc.abstractmethod
    def release(self) -> None: ...

    def renew(self) -> None:  # noqa: B027 - only leases need renewal
        """Keep a lease alive (no-op for kernel locks); raises if the lock was lost."""


class Backend(abc.ABC):
    url: str
    read_only: bool
    local: bool = False

    @abc.abstractmethod
    def get(self, key: str) -> bytes | None: ...

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        return [self.get(k) for k in keys]

    @abc.abstractmethod
    def put_many(self, items: dict[str, bytes]) -> None:
        """Write chunks; each may be torn by a crash (only ever used for uncommitted rows)."""

    @abc.abstractmethod
    def put_documents(self, items: dict[str, bytes]) -> None:
        """Write documents atomically (each key is either old or new after a crash)."""

    def put_document(self, key: str, data: bytes) -> None:
        self.put_documents({key: data})

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> None: ...

    @abc.abstractmethod
    def list_dir(self, prefix: str) -> list[str]:
        """Names of the immediate children of ``prefix`` ('' for the root)."""

    @abc.abstractmethod
    def is_empty(self) -> bool: ...

    @abc.abstractmethod
    def lock(self, key: str, ttl: float) -> Lock:
        """Take the exclusive writer lock stored at ``key``; raise WorldLockedError if held."""

    def shard_writer(self) -> ShardWriter:
        """Writes rows into shards: whole-object read-modify-write here (object PUTs are atomic)."""
        return _ObjectShards(self)

    def read_shards(self, requests: list[ShardRequest]) -> list[list[bytes | None]]:
        """Chunk bytes of rows ``slots`` of each shard ``key`` (None: row never written)."""
        data = self.get_many([key for key, _, _ in requests])
        return [L.shard_chunks(d, spec, slots, key) for d, (key, spec, slots) in zip(data, requests)]

    def clear(self) -> None:
        self.delete_prefix("")

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


ShardRequest = tuple[str, L.ArraySpec, list[int]]  # (shard key, array spec, row slots in the shard)


class ShardWriter(abc.ABC):
    """Puts row chunks into shards; only the given rows' bytes and index entries change."""

    @abc.abstractmethod
    def write(self, requests: list[tuple[str, L.ArraySpec, dict[int, bytes]]]) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class _ObjectShards(ShardWriter):
    def __init__(self, backend: Backend):
        self.backend = backend

    def write(self, requests: list[tuple[str, L.ArraySpec, dict[int, bytes]]]) -> None:
        if not requests:
            return
        current = self.backend.get_many([key for key, _, _ in requests])
        self.backend.put_many(
            {key: L.patch_shard(data, spec, slots) for data, (key, spec, slots) in zip(current, requests)}
        )
