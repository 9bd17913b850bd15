"""Processes of a Ray instance started by a test, found by its temp dir, and stopping them
(`ray stop` would stop every Ray instance on the machine, other users' included)."""

from __future__ import annotations

import os
import pathlib
import signal
import time


def pids_mentioning(text: str) -> list[int]:
    """Processes whose command line or open files mention ``text`` (Ray's agents rename themselves,
    e.g. ``ray::DashboardAgent``, but keep their log files in the temp dir open)."""
    pids = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
                continue
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd).startswith(text):
                    pids.append(int(proc.name))
                    break
        except OSError:
            pass
    return pids


def stop_processes(temp_dir: str) -> None:
    """SIGTERM, then SIGKILL, every process that mentions ``temp_dir``."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 1.0)):
        pids = pids_mentioning(temp_dir)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if pids:
            time.sleep(wait)
