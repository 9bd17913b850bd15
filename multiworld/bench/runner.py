"""Run a benchmark's independent work items here or on a Ray cluster, with a progress bar.

A work item is a small picklable dataclass and the work function a module-level function that
builds everything it needs from it, so the same function runs in-process or as a Ray task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


class Runner:
    """``Runner()`` runs locally; ``Runner(address)`` connects to a Ray cluster (``"auto"``, ``"ray://host:10001"``)."""

    def __init__(self, address: str | None = None, progress: bool = True) -> None:
        self.address, self.progress = address, progress
        if address:
            import ray

            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)

    def map(self, fn: Callable[[T], R], items: Sequence[T], desc: str) -> list[R]:
        """``[fn(x) for x in items]``, in order; as one Ray task per item when connected to a cluster."""
        if not self.address:
            return [fn(x) for x in tqdm(items, desc=desc, disable=not self.progress, leave=False)]
        import ray

        remote = ray.remote(num_cpus=1)(fn)
        refs = [remote.remote(x) for x in items]
        pending = list(refs)
        with tqdm(total=len(refs), desc=desc, disable=not self.progress, leave=False) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(done))
        return ray.get(refs)
