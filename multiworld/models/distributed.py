"""Data-parallel training: one process per rank, each running the single-process loop.

nanoGPT's shape: whoever starts the processes (Ray Train's ``TorchTrainer``, or a test with
``torch.multiprocessing``) sets up the process group; :class:`Distributed` is all the trainer
knows of it. The model is wrapped in DDP (gradients averaged over ranks in the backward pass),
rank 0 decides when to stop and save (wall-clock decisions broadcast, so every rank takes the
same number of steps at the same learning rate) and writes every checkpoint and log. A single
process is ``Distributed()``: rank 0 of 1, every method a no-op.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import torch


@dataclasses.dataclass
class Distributed:
    """This process's place in the run. ``on_save(path)`` runs on every rank after each save of
    the training state (``path``: the saved directory on rank 0, None elsewhere): Ray Train
    reports the checkpoint there."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    on_save: Callable[[pathlib.Path | None], None] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_process_group(cls, local_rank: int = 0, on_save=None) -> Distributed:
        """This rank of the initialised ``torch.distributed`` process group (one process if none)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return cls(on_save=on_save)
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, on_save)

    def _device(self) -> torch.device:
        import torch.distributed as dist

        return (
            torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        )

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` for the forward and backward passes: DDP over the ranks, or itself alone.
        Unused parameters are allowed: recordings without maps or depth leave their branches idle."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None
        )
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def agree(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (one small broadcast)."""
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.broadcast(t, src=0)
        return t.cpu().tolist()

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape and dtype on all ranks), in rank order, on the CPU."""
        if self.world_size == 1:
            return [tensor]
        import torch.distributed as dist

        dev = self._device()
        parts = [torch.empty_like(tensor, device=dev) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.to(dev))
        return [p.cpu() for p in parts]

    def saved(self, path: pathlib.Path | None) -> None:
        if self.on_save is not None:
            self.on_save(path)
