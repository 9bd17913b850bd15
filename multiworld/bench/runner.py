"""What a benchmark run compares (:class:`Settings`), and running its independent work items here
or on a Ray cluster (:class:`Runner`), with a progress bar.

A work item is a small picklable dataclass and the work function a module-level function that
builds everything it needs from it, so the same function runs in-process or as a Ray task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

from multiworld.bench.variants import SimSpec

T = TypeVar("T")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to benchmark and how much: ``variants`` defaults to every variant of ``spec`` (registered
    and external; "oracle" is always run); ``sizes`` maps a benchmark's name to its ``Sizes``
    (default: the benchmark module's ``QUICK`` or ``FULL``)."""

    spec: SimSpec
    quick: bool = False
    variants: tuple[str, ...] | None = None
    sizes: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        variants = self.spec.variants if self.variants is None else tuple(self.variants)
        unknown = [v for v in variants if v not in self.spec.variants]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; valid: {list(self.spec.variants)}")
        if "oracle" not in variants:
            variants = (*variants, "oracle")  # every metric is measured against it
        if self.spec.init == "map":  # fair by construction: only variants that can be given the map
            from multiworld.bench.variants import registered

            reg = registered()
            variants = tuple(v for v in variants if v not in reg or reg[v].reads_map)
        object.__setattr__(self, "variants", variants)

    def sizes_of(self, bench) -> Any:
        """The sizes of benchmark module ``bench`` in this run."""
        name = bench.__name__.rsplit(".", 1)[-1]
        return self.sizes.get(name, bench.QUICK if self.quick else bench.FULL)

    def config(self) -> dict:
        return {
            **dataclasses.asdict(self.spec),
            "weights": self.spec.describe(),
            "quick": self.quick,
            "variants": list(self.variants),
        }


def chunks(seeds: list[int], size: int) -> list[tuple[int, ...]]:
    """``seeds`` in consecutive tuples of ``size`` (the last one shorter): one work item each."""
    return [tuple(seeds[i : i + size]) for i in range(0, len(seeds), size)]


class Runner:
    """``Runner()`` runs locally; ``Runner(address)`` connects to a Ray cluster (``"auto"``, ``"ray://host:10001"``)."""

    def __init__(self, address: str | None = None, progress: bool = True) -> None:
        self.address, self.progress = address, progress
        if address:  # the runtime's one way in: no dashboard, a local instance on 127.0.0.1 only
            from multiworld.runtime.ray_options import connect

            connect(address)

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
