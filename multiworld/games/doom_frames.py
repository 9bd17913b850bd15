"""The players' frames in shared memory, between the parent (:mod:`doom_players`) and each player
process (:mod:`_doom_player`).

One block per player holds its processed frame: rgb ``(h, w, 3)``, then depth ``(h, w)``, uint8.
The player writes it before replying to a command and again only after the next command, so the
parent reads it in between without a lock. The parent creates every block
(``multiprocessing.shared_memory``), each player maps its own by name (:func:`map_block`) before
its first message, and the parent then unlinks every name (:meth:`FrameBlocks.unlink`): while the
game runs no segment is left by name, and the memory goes with its last mapping (``close()``,
garbage collection, a process's death, a SIGKILLed parent included).
"""

from __future__ import annotations

import mmap
import os
from multiprocessing import shared_memory

import numpy as np


def views(buf, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(h, w, 3)`` rgb and ``(h, w)`` depth uint8 arrays over a block's buffer."""
    return np.ndarray((h, w, 3), np.uint8, buf, 0), np.ndarray((h, w), np.uint8, buf, h * w * 3)


def map_block(name: str, h: int, w: int) -> tuple[mmap.mmap, np.ndarray, np.ndarray]:
    """The player's side: block ``name`` mapped read-write, and its rgb and depth views.

    Opened by hand: ``SharedMemory(name)`` would (before Python 3.13) start a resource tracker of
    the player's own, which unlinks the parent's block when the player exits."""
    import _posixshmem

    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        block = mmap.mmap(fd, h * w * 4)
    finally:
        os.close(fd)
    return (block, *views(block, h, w))


class FrameBlocks:
    """The parent's side: one block per player, in launch order until ``reorder`` puts them in agent order."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.blocks: list[shared_memory.SharedMemory] = []
        self.frames: list[tuple[np.ndarray, np.ndarray]] = []  # views of each block, agent order

    @property
    def names(self) -> list[str]:
        return [block.name for block in self.blocks]

    def new(self) -> str:
        """A new player's block; its name, for the player's spec."""
        self.blocks.append(shared_memory.SharedMemory(create=True, size=self.h * self.w * 4))
        return self.blocks[-1].name

    def unlink(self) -> None:
        """Remove every block's name (once every player has mapped its block)."""
        for block in self.blocks:
            try:
                block.unlink()
            except FileNotFoundError:  # already unlinked
                pass

    def reorder(self, order) -> None:
        self.blocks = [self.blocks[k] for k in order]
        self.frames = [views(block.buf, self.h, self.w) for block in self.blocks]

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of player ``i``'s frame (the caller keeps observations across steps)."""
        rgb, depth = self.frames[i]
        return rgb.copy(), depth.copy()

    def close(self) -> None:
        self.frames = []  # the views go first: a block with views over it cannot be closed
        self.unlink()
        for block in self.blocks:
            block.close()


# The engines' own segments. ViZDoom's controller and engine share memory and message queues named
# by the engine's instance id (``+viz_instance_id`` on its command line); ``DoomGame.close()``
# removes them, but a killed player or engine leaves them in /dev/shm. The parent reads the ids
# while the game runs and removes whatever is left after ending the processes.
ENGINE_SEGMENTS = ("ViZDoomSM", "ViZDoomMQCtr", "ViZDoomMQDoom")


def engine_segments(pgids: list[int]) -> list[str]:
    """Names of the segments of the ViZDoom engines in the process groups ``pgids`` (Linux's
    /proc; elsewhere none)."""
    ids = []
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().split(")")[-1].split()[2]) not in pgids:
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().decode("utf-8", "replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
        ids += [args[k + 1] for k, a in enumerate(args[:-1]) if a == "+viz_instance_id"]
    return [prefix + i for i in sorted(set(ids)) for prefix in ENGINE_SEGMENTS]


def unlink_segments(names: list[str]) -> None:
    """Remove the named POSIX shared-memory segments that still exist."""
    import _posixshmem

    for name in names:
        try:
            _posixshmem.shm_unlink("/" + name)
        except OSError:  # gone already (closed cleanly)
            pass
