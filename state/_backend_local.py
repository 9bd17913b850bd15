""":class:`LocalBackend` talks to the file system directly. Chunk writes are plain
``open/write`` (no rename): the commit protocol never reads a row past the commit
marker, so a torn chunk of an uncommitted row is harmless. Documents (``zarr.json``,
the commit marker among them) are written to a temporary file and ``os.replace``-d, so a
reader or a restarted writer sees either the old or the new document, never a torn one.
Writer exclusion uses ``fcntl.flock``, which the kernel drops when the holder dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _layout as L
from ._backend_base import Backend, Lock, ShardRequest, ShardWriter, describe_holder, holder_info
from .errors import CorruptStoreError, WorldLockedError


class LocalBackend(Backend):
    local = True

    def __init__(self, root: str | os.PathLike, *, read_only: bool, fsync: bool = False):
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        self._prefix = self.url.rstrip("/") + "/"
        self.read_only = read_only
        self.fsync = fsync
        self.tmp_dir = "locks"  # documents are staged here, then renamed into place

    def _path(self, key: str) -> str:
        return self._prefix + key if key else self.url

    def get(self, key: str) -> bytes | None:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def _write(self, path: str, data: bytes, flags: int) -> None:
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            n = os.write(fd, data)
            if n != len(data):
                view = memoryview(data)[n:]
                while view:
                    view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _fsync_dirs(self, dirs: set[str]) -> None:
        for d in dirs:
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def put_many(self, items: dict[str, bytes]) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        prefix = self._prefix
        for key, data in items.items():
            self._write(prefix + key, data, flags)
        if self.fsync:
            self._fsync_dirs({os.path.dirname(prefix + k) for k in items})

    def put_documents(self, items: dict[str, bytes]) -> None:
        tmp_prefix = f"{self._prefix}{self.tmp_dir}/{os.getpid()}-"
        dirs = set()
        for key, data in items.items():
            path = self._prefix + key
            tmp = f"{tmp_prefix}{secrets.token_hex(6)}.tmp"
            self._write(tmp, data, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                os.replace(tmp, path)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(tmp, path)
            dirs.add(os.path.dirname(path))
        if self.fsync:
            self._fsync_dirs(dirs)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))

    def delete_prefix(self, prefix: str) -> None:
        if not prefix:
            for child in list(self.root.iterdir()) if self.root.exists() else []:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            return
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self._path(prefix))

    def list_dir(self, prefix: str) -> list[str]:
        try:
            return os.listdir(self._path(prefix))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def is_empty(self) -> bool:
        if not self.root.exists():
            return True
        if not self.root.is_dir():
            return False
        return not any(self.root.iterdir())

    def lock(self, key: str, ttl: float) -> Lock:
        return _FlockLock(Path(self._path(key)))

    def shard_writer(self) -> ShardWriter:
        return _LocalShards(self)

    def read_shards(self, requests: list[ShardRequest]) -> list[list[bytes | None]]:
        out = []
        for key, spec, slots in requests:
            try:
                fd = os.open(self._prefix + key, os.O_RDONLY)
            except FileNotFoundError:
                out.append([None] * len(slots))
                continue
            try:
                out.append(_pread_rows(fd, spec, slots, key))
            finally:
                os.close(fd)
        return out

    def cleanup_tmp(self, older_than: float = 600.0) -> None:
        """Remove staging files left by crashed writers (older than ``older_than`` seconds)."""
        now = time.time()
        for name in self.list_dir(self.tmp_dir):
            if name.endswith(".tmp"):
                path = self.root / self.tmp_dir / name
                with contextlib.suppress(OSError):
                    if now - path.stat().st_mtime > older_than:
                        path.unlink()


def _pread_rows(fd: int, spec: L.ArraySpec, slots: list[int], where: str) -> list[bytes | None]:
    lo, hi = min(slots), max(slots)
    raw = os.pread(fd, 16 * (hi - lo + 1), 16 * lo)
    if len(raw) < 16 * (hi - lo + 1):
        raise CorruptStoreError(f"{where}: shard index is torn")
    index = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)[np.asarray(slots) - lo]
    offsets, sizes = index[:, 0], index[:, 1]
    first = int(offsets[0])
    # Contiguous rows (each starts where the previous ends): one read. Vectorised: shards hold
    # hundreds of rows and a whole world is read at once (its poses, its events).
    if first != L.MISSING and np.array_equal(offsets[1:], offsets[:-1] + sizes[:-1]):
        total = int(sizes.sum())
        data = os.pread(fd, total, first)
        if len(data) < total:
            raise CorruptStoreError(f"{where}: rows past the end of the shard (torn)")
        ends = np.cumsum(sizes).tolist()
        return [data[a:b] for a, b in zip([0, *ends[:-1]], ends)]
    out: list[bytes | None] = []
    for off, n in zip(offsets.tolist(), sizes.tolist()):
        if off == L.MISSING:
            out.append(None)
            continue
        data = os.pread(fd, n, off)
        if len(data) < n:
            raise CorruptStoreError(f"{where}: row past the end of the shard (torn)")
        out.append(data)
    return out


class _LocalShards(ShardWriter):
    """Rows go in place with ``pwrite``: fixed-size rows at fixed offsets, variable-size rows
    appended at the end of the shard, then the rows' index entries. No file is created or
    renamed per step (creating files is what costs on local disk), and bytes of other rows,
    committed ones included, are never touched.
    """

    MAX_OPEN = 64

    def __init__(self, backend: LocalBackend):
        self.backend = backend
        self.fds: dict[str, int] = {}
        self.ends: dict[str, int] = {}

    def _fd(self, key: str, spec: L.ArraySpec, new_dirs: set[str]) -> int:
        fd = self.fds.get(key)
        if fd is not None:
            return fd
        if len(self.fds) >= self.MAX_OPEN:
            self.close()
        path = self.backend._prefix + key
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        if size < spec.index_nbytes:
            # New, or torn by a crash during its creation, before any row of it was committed.
            os.pwrite(fd, L.empty_index(spec), 0)
            size = spec.index_nbytes
            new_dirs.add(os.path.dirname(path))
        self.fds[key] = fd
        self.ends[key] = size
        return fd

    def write(self, requests: list[tuple[str, L.ArraySpec, dict[int, bytes]]]) -> None:
        # Shard files are opened per commit (reopening a dozen files costs ~30 µs): an idle
        # writer holds no descriptor but its lock's, however many worlds a process writes.
        try:
            self._write(requests)
        finally:
            self.close()

    def _write(self, requests: list[tuple[str, L.ArraySpec, dict[int, bytes]]]) -> None:
        new_dirs: set[str] = set()
        touched = []
        for key, spec, slots in requests:
            fd = self._fd(key, spec, new_dirs)
            placed = []
            for slot in sorted(slots):
                chunk = slots[slot]
                offset = spec.fixed_offset(slot)
                if offset is None:
                    offset = self.ends[key]
                    self.ends[key] += len(chunk)
                placed.append((slot, offset, chunk))
            # data first (runs of adjacent rows in one write), then the index entries
            for offset, data in _runs([(off, chunk) for _, off, chunk in placed]):
                os.pwrite(fd, data, offset)
            entries = [(16 * slot, np.array([off, len(chunk)], dtype="<u8").tobytes()) for slot, off, chunk in placed]
            for offset, data in _runs(entries):
                os.pwrite(fd, data, offset)
            touched.append(fd)
        if self.backend.fsync:
            for fd in set(touched):
                os.fsync(fd)
            self.backend._fsync_dirs(new_dirs)

    def close(self) -> None:
        fds, self.fds = self.fds, {}
        self.ends = {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)


def _runs(pieces: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Merge ``(offset, bytes)`` pieces that are adjacent in the file (input sorted by offset)."""
    out: list[tuple[int, list[bytes], int]] = []
    for offset, data in pieces:
        if out and out[-1][0] + out[-1][2] == offset:
            out[-1][1].append(data)
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + len(data))
        else:
            out.append((offset, [data], len(data)))
    return [(offset, b"".join(parts)) for offset, parts, _ in out]


class _FlockLock(Lock):
    """An ``flock`` on ``locks/<world>.lock``; the file holds the holder's pid/host/time for messages.

    The kernel releases the lock when the holder exits, however it exits (kill -9 included),
    so a dead writer never leaves a stale lock behind on local disk. Not for NFS.
    """

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise WorldLockedError(
                    f"world is being written by {describe_holder(_read_json(path))} (lock {path}); one writer per world"
                ) from None
            # The lock file may have been unlinked (world deleted) between open and flock.
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:  # pragma: no cover - needs a delete racing five times
            raise WorldLockedError(f"could not take lock {path}")
        self.fd: int | None = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_info(secrets.token_hex(8))).encode(), 0)

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # drops the flock


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
