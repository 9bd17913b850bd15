"""One trainer step of the stacked-frames baseline, single-process or as a rank of a gloo group
(tests/test_training_scale.py: DDP equals one process on the same samples).

The baseline with ``frame_noise`` 0 is deterministic and every term of its loss is a mean over
the batch, so 2 ranks x b sequences must give the gradient of one process with the 2b."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import torch


def model():
    from multiworld.models.presets import get_preset
    from multiworld.models.stacked import StackedFramesModel

    torch.manual_seed(0)
    return StackedFramesModel(dataclasses.replace(get_preset("tiny").stacked, frame_noise=0.0))


def full_batch():
    """Four 3-step windows of two oracle worlds (training seeds), the same in every process."""
    from multiworld.models.data import SequenceBatcher, make_sequences

    ss = make_sequences("forage-v0", 2, 2, 7, seed=4242)
    return SequenceBatcher([ss], 4, 3).batch(ss, np.array([0, 4, 8, 12]))


class Halves:
    """The stream's sampler: rank r of 2 gets sequences [2r, 2r + 2); one process gets all four."""

    def __init__(self) -> None:
        self.batch = full_batch()

    def draw_at(self, rng, index):
        import torch.distributed as dist

        from multiworld.models.stream import map_tensors

        if not dist.is_initialized():
            return self.batch
        r = dist.get_rank()
        return map_tensors(self.batch, lambda t: t[2 * r : 2 * r + 2])


def one_step(rank: int, world_size: int, port: int, out: str) -> None:
    """One optimizer step; rank 0 (or the single process) saves the weights in ``out/last``."""
    import torch.distributed as dist

    from multiworld.models.checkpoint import save_checkpoint
    from multiworld.models.distributed import Distributed
    from multiworld.models.stream import BatchStream
    from multiworld.models.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    if world_size > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    cfg = TrainConfig(batch_size=4 // world_size, max_steps=1, minutes=1e6, warmup_steps=1, log_every=1)
    trainer = Trainer(
        model(),
        BatchStream(Halves(), seed=0),
        cfg,
        pathlib.Path(out),
        lambda m, path, metrics: save_checkpoint(m, path, metrics),
        progress=False,
        dist=Distributed.from_process_group(),
        tensorboard=False,
    )
    trainer.run()
    if world_size > 1:
        dist.destroy_process_group()
