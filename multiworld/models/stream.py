"""The training data stream: batches made in worker processes (``torch.utils.data``).

Batch ``i`` of shard ``s`` (a data-parallel rank) is drawn by the sampler from its own numpy
generator, ``PCG64([seed, s, i])``, whichever process makes it. So the stream is a function of
(seed, shard, position) alone: N DataLoader workers split it by ``get_worker_info()`` (worker w
makes batches w, w + N, w + 2N, ... and the loader hands them out in order), any number of
workers gives the same batches, and a resumed run continues the stream from its saved position
with no generator state to carry (the position *is* the state of every batcher RNG).

A sampler is anything with ``draw(rng)`` (:class:`~multiworld.models.data.SequenceBatcher`,
:class:`~multiworld.models.recorded.RecordingBatcher`), ``draw_at(rng, index)`` (one that picks
by position, :class:`Interleaved`), or ``sample()`` drawing only from its ``rng`` attribute.
Batches are made on the CPU; :func:`to_device` moves them (from pinned memory on CUDA).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info


def draw(sampler: Any, rng: np.random.Generator, index: int) -> Any:
    """Batch ``index`` of ``sampler`` drawn with ``rng`` (see the module docstring)."""
    if hasattr(sampler, "draw_at"):
        return sampler.draw_at(rng, index)
    if hasattr(sampler, "draw"):
        return sampler.draw(rng)
    if hasattr(sampler, "rng") and hasattr(sampler, "sample"):  # a sampler that draws only from self.rng
        sampler.rng = rng
        return sampler.sample()
    raise TypeError(
        f"{type(sampler).__name__} cannot feed the data stream: give it draw(rng) (a batch drawn with rng "
        "only) or draw_at(rng, index), so that batch i is the same in any worker process"
    )


class Interleaved:
    """Batch i from ``first`` when ``i % (every + 1) == 0``, else from ``then``: a rendered batch,
    then ``every`` cheap ones. ``prepare`` is applied to ``first``'s batches."""

    def __init__(self, first: Any, then: Any, every: int, prepare: Callable[[Any], Any] | None = None) -> None:
        if every < 0:
            raise ValueError(f"every must be >= 0, got {every}")
        self.first, self.then, self.every, self.prepare = first, then, every, prepare

    def draw_at(self, rng: np.random.Generator, index: int) -> Any:
        if self.every and index % (self.every + 1):
            return draw(self.then, rng, index)
        batch = draw(self.first, rng, index)
        return batch if self.prepare is None else self.prepare(batch)


@dataclasses.dataclass
class Drawn:
    """One batch of the stream and its position (pinned by the loader's pin-memory thread on CUDA)."""

    index: int
    batch: Any

    def pin_memory(self) -> Drawn:
        return Drawn(self.index, map_tensors(self.batch, lambda t: t.pin_memory()))


class BatchStream(IterableDataset):
    """The endless batch stream of one shard from position ``start`` (see the module docstring)."""

    def __init__(self, sampler: Any, seed: int, shard: int = 0, start: int = 0) -> None:
        super().__init__()
        if seed < 0 or shard < 0 or start < 0:
            raise ValueError(f"seed, shard and start must be >= 0, got {seed}, {shard}, {start}")
        self.sampler, self.seed, self.shard, self.start = sampler, int(seed), int(shard), int(start)

    def generator(self, index: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64([self.seed, self.shard, int(index)]))

    def at(self, index: int) -> Any:
        """Batch ``index`` of this shard (the same in any process)."""
        return draw(self.sampler, self.generator(index), index)

    def from_position(self, start: int) -> BatchStream:
        return BatchStream(self.sampler, self.seed, self.shard, start)

    def __iter__(self) -> Iterator[Drawn]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        index = self.start + worker
        while True:
            yield Drawn(index, self.at(index))
            index += workers


def make_loader(stream: BatchStream, workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ``stream``: ``workers`` processes (0: made in this process), two batches
    in flight per worker, pinned memory when asked (CUDA). The loader draws its worker seeds from
    its own generator, so creating it leaves the global torch RNG (the model's noise) untouched."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=2 if workers else None,
        generator=torch.Generator().manual_seed(stream.seed),
    )


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``obj`` (a tensor, or dataclasses, dicts, lists and tuples of them) with ``fn`` applied to every tensor."""
    if torch.is_tensor(obj):
        return fn(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: map_tensors(getattr(obj, f.name), fn) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **fields)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj``'s tensors on ``device`` (asynchronous copies from pinned memory)."""
    if device.type == "cpu":
        return obj
    return map_tensors(obj, lambda t: t.to(device, non_blocking=True))


def batch_digest(obj: Any) -> str:
    """sha256 of every tensor of ``obj`` (names, dtypes, shapes and bytes, in field order): two
    batches with the same digest are the same batch."""
    h = hashlib.sha256()

    def visit(x: Any, name: str) -> None:
        if torch.is_tensor(x):
            t = x.detach().cpu().contiguous().reshape(-1)
            h.update(f"{name}:{t.dtype}:{tuple(x.shape)};".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        elif dataclasses.is_dataclass(x) and not isinstance(x, type):
            for f in dataclasses.fields(x):
                visit(getattr(x, f.name), f"{name}.{f.name}")
        elif isinstance(x, dict):
            for k in sorted(x):
                visit(x[k], f"{name}.{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                visit(v, f"{name}[{i}]")
        elif x is not None:
            h.update(f"{name}={x!r};".encode())

    visit(obj, "")
    return h.hexdigest()
