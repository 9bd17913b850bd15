"""A training run from its spec: data, model, validation and the trainer, in one process.

:class:`TrainSpec` is what ``multiworld train`` takes (picklable); :func:`run_training` is the
single-process run. Data-parallel runs (:mod:`multiworld.models.ray_train`) call the same
function in every rank with a :class:`~multiworld.models.distributed.Distributed`: the
distributed parts wrap this run, they never fork it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import shutil
import signal
from typing import Any

import torch

from multiworld.models.distributed import Distributed
from multiworld.models.trainer import TrainConfig


@dataclasses.dataclass
class TrainSpec:
    """A training run. ``None`` overrides keep the preset's value. ``crash_at`` is a test hook:
    ``(rank, step, marker)``: that rank kills itself (SIGKILL) at that step, once (the marker file
    records that it did)."""

    data: list[str]
    out: str
    preset: str = "default"
    minutes: float | None = None
    max_steps: int | None = None
    lr: float | None = None
    horizon: int | None = None
    event_boost: float | None = None
    save_every: int | None = None
    private_state: bool = False
    stacked_frames: bool = False
    resume: bool = False
    init_from: str | None = None
    trains: tuple[str, ...] | None = None  # parameter name prefixes to train, the rest frozen
    seed: int = 0
    threads: int = 2
    device: str = "auto"
    precision: str | None = None
    workers: int = 0
    progress: bool = True
    command: str | None = None
    crash_at: tuple[int, int, str] | None = None

    def validate(self) -> TrainSpec:
        if self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0, got {self.workers}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"--horizon must be >= 1, got {self.horizon}")
        if self.event_boost is not None and not self.event_boost >= 0:
            raise ValueError(f"--event-boost must be >= 0, got {self.event_boost}")
        if self.save_every is not None and self.save_every < 0:
            raise ValueError(f"--save-every must be >= 0, got {self.save_every}")
        if self.private_state and self.stacked_frames:
            raise ValueError("--private-state and --stacked-frames are different baselines; choose one")
        from multiworld.models.device import resolve_device, training_precision

        training_precision(resolve_device(self.device), self.precision)  # fails now, not after loading the data
        return self

    def check_out(self) -> None:
        out = pathlib.Path(self.out)
        if out.exists() and (out / "last").exists() and not self.resume:
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


@dataclasses.dataclass
class Job:
    """Everything a run trains with, built from a :class:`TrainSpec` (the same in every rank)."""

    spec: TrainSpec
    train: TrainConfig
    model: torch.nn.Module
    stream: Any  # BatchStream
    batcher: Any  # the first-level sampler (the stacked baseline's mean frame reads it)
    validation: list
    info: dict
    data_info: dict
    warm: dict | None


def train_config(spec: TrainSpec, preset) -> TrainConfig:
    """The preset's trainer settings with the spec's overrides."""
    tcfg = preset.train
    if spec.stacked_frames:
        if preset.stacked_lr is not None:
            tcfg.lr = preset.stacked_lr
        if preset.stacked_horizon is not None:
            tcfg.horizon = preset.stacked_horizon
        if preset.stacked_event_boost is not None:
            tcfg.event_boost = preset.stacked_event_boost
    for name in ("minutes", "max_steps", "lr", "horizon", "event_boost", "save_every"):
        if getattr(spec, name) is not None:
            setattr(tcfg, name, getattr(spec, name))
    tcfg.seed = spec.seed
    return tcfg


def build_job(spec: TrainSpec) -> Job:
    from multiworld.models import validation
    from multiworld.models.data import SequenceBatcher, data_payouts_seen, load_sequences, scenario_rewards
    from multiworld.models.presets import get_preset
    from multiworld.models.recorded import RecordingBatcher, is_recorded, load_recorded, model_fields
    from multiworld.models.stacked import StackedFramesModel
    from multiworld.models.stream import BatchStream, Interleaved
    from multiworld.models.world_model import WorldModel, scenario_id

    spec.validate()
    preset = get_preset(spec.preset)
    tcfg = train_config(spec, preset)
    private, stacked = spec.private_state, spec.stacked_frames
    kinds = {is_recorded(p) for p in spec.data}
    if len(kinds) > 1:
        raise ValueError("--data mixes arena stores and recordings of another env; train on one kind")
    if kinds == {True}:  # a recorded world: everything world-specific comes from its metadata
        if private:
            raise ValueError("--private-state needs the arena's data (its NOOP action); train it on `multiworld data`")
        recorded = load_recorded(spec.data)
        train_rs, val_rs = recorded.split(max(1, len(recorded.lengths) // 10))
        fields = model_fields(recorded)
        preset.model.camera, preset.model.worlds = fields["camera"], fields["worlds"]
        preset.model.dynamics.actions = preset.stacked.actions = fields["actions"]
        preset.stacked.worlds, preset.stacked.image = fields["worlds"], fields["camera"]["width"]
        batcher = sampler = RecordingBatcher(train_rs, tcfg.batch_size, tcfg.horizon, seed=spec.seed)
        val_sets = validation.recorded_sets(val_rs, tcfg.horizon)
        data_info = {
            "world": recorded.world,
            "episodes": len(train_rs.lengths),
            "transitions": int((train_rs.lengths - 1).sum()),
            "validation_seeds": val_rs.seeds,
        }
    else:
        sets = load_sequences(spec.data)
        batcher = sampler = SequenceBatcher(
            sets,
            tcfg.batch_size,
            tcfg.horizon,
            seed=spec.seed,
            private_state=private,
            event_boost=tcfg.event_boost,
            unusual_events=not stacked and preset.model.unusual_weight > 0,
        )
        prepare = None
        if preset.transitions.every and not (stacked or private):
            # A rendered batch (with the teacher's move targets), then `every` transition batches.
            from multiworld.models.transitions import TransitionSampler, with_move_targets

            prepare = with_move_targets
            transitions = TransitionSampler(preset.transitions, seed=spec.seed)
            sampler = Interleaved(batcher, transitions, preset.transitions.every, prepare=prepare)
        if preset.onestep is not None and not (stacked or private):
            # One-step batches from a pool of encoded states (its encodings are cached: workers=0).
            from multiworld.models.onestep import OneStepSampler

            sampler = OneStepSampler(preset.onestep, seed=spec.seed)
        val_sets = validation.arena_sets(sets, tcfg.horizon, private, batcher.typical, prepare)
        data_info = {
            "episodes": int(sum(len(s.lengths) for s in sets)),
            "transitions": int(sum(int((s.lengths - 1).sum()) for s in sets)),
            "validation": {v.name: v.seeds for v in val_sets},
        }
    model = StackedFramesModel(preset.stacked) if stacked else WorldModel(preset.model)
    warm = warm_start(model, pathlib.Path(spec.init_from)) if spec.init_from is not None and not spec.resume else None
    trains = tuple(spec.trains) if spec.trains else preset.trains
    if trains is not None and not stacked:  # a phase that trains only some parts (the rest frozen)
        names = [name for name, _ in model.named_parameters()]
        unknown = [t for t in spec.trains or () if not any(n.startswith(t) for n in names)]
        if unknown:
            tops = sorted({".".join(n.split(".")[:2]) + "." for n in names})
            raise ValueError(f"--trains {' '.join(unknown)}: no parameter of this model starts so; its parts: {tops}")
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(trains))
    # Second-edition models only (``payout_mask``): the payout classes each scenario's data pays
    # are the only ones they pay. The third edition learns payouts with no mask.
    if not stacked and preset.model.dynamics.payout_mask:
        rewards = (
            [(0, recorded.rewards)]
            if kinds == {True}
            else [(scenario_id(s.scenario), scenario_rewards(s)) for s in sets]
        )
        model.dynamics.payouts_seen.copy_(data_payouts_seen(rewards, preset.model.dynamics.scenarios))
        data_info["payouts_seen"] = model.dynamics.payouts_seen.int().tolist()
    info = {
        "command": spec.command,
        "preset": spec.preset,
        "private_state": private,
        "stacked_frames": stacked,
        "data": [str(p) for p in spec.data],
        "init_from": warm,
        "trains": None if trains is None else list(trains),
        **data_info,
        "train": dataclasses.asdict(tcfg),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__},
    }
    stream = BatchStream(sampler, seed=spec.seed)
    return Job(spec, tcfg, model, stream, batcher, val_sets, info, data_info, warm)


def run_training(
    spec: TrainSpec, dist: Distributed | None = None, resume_from: str | pathlib.Path | None = None
) -> dict:
    """Train as ``spec`` says in this process (one rank of ``dist``); returns the summary.
    ``resume_from``: a saved training state to continue (a launcher's checkpoint), else ``out/last``
    when ``spec.resume``."""
    from multiworld.models import validation
    from multiworld.models.checkpoint import load_checkpoint, save_checkpoint
    from multiworld.models.trainer import Trainer

    dist = dist or Distributed()
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    job = build_job(spec)
    out, info, model = pathlib.Path(spec.out), job.info, job.model
    if dist.rank > 0:  # the same initial weights (DDP also broadcasts them), each rank its own noise
        torch.manual_seed(spec.seed * 1_000_003 + dist.rank)

    def save(m, path, metrics):
        save_checkpoint(m, path, metrics, extra={"training": info})

    def load_weights(m, path):
        m.load_state_dict(load_checkpoint(path).state_dict())

    trainer = Trainer(
        model,
        job.stream,
        job.train,
        out,
        save,
        lambda m: validation.evaluate(m, job.validation),
        progress=spec.progress,
        device=spec.device,
        precision=spec.precision,
        workers=spec.workers,
        dist=dist,
        on_step=_crash_hook(spec.crash_at),
    )
    # What the checkpoint records of where and how it was trained.
    info.update(device=str(trainer.device), precision=trainer.precision, workers=spec.workers)
    info["world_size"] = dist.world_size
    source = resume_from if resume_from is not None else (out / "last" if spec.resume else None)
    if source is not None and trainer.load_state(load_weights, source):
        if dist.is_main:
            print(f"resumed {out} at step {trainer.step} ({trainer.elapsed / 60:.1f} min)")
    else:
        if spec.stacked_frames:  # the `mean` bound of the benchmarks: the training data's mean frame
            model.mean_frame.copy_(mean_frame(job.batcher))
        if dist.is_main:
            (out / "run.json").write_text(json.dumps(info, indent=2))
    summary = trainer.run()
    summary["tensorboard"] = str(out / "tensorboard")
    if dist.is_main:
        # The run's shippable checkpoint is the best one by validation score, copied to the run's root.
        best = out / "best" if (out / "best").exists() else out / "last"
        for name in ("model.safetensors", "config.json", "metrics.json"):
            if (best / name).exists():
                shutil.copy2(best / name, out / name)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _crash_hook(crash_at):
    if crash_at is None:
        return None
    rank, step, marker = crash_at

    def hook(trainer) -> None:
        if trainer.dist.rank == rank and trainer.step == step and not os.path.exists(marker):
            pathlib.Path(marker).write_text(f"rank {rank} killed itself at step {step}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def warm_start(model, path: pathlib.Path) -> dict:
    """Copy into ``model`` every tensor of the checkpoint at ``path`` whose name and shape match;
    returns what was copied and what started fresh (recorded in run.json)."""
    from safetensors.torch import load_file

    from multiworld.models.checkpoint import read_config, sha256_file
    from multiworld.models.stacked import KIND as STACKED_KIND
    from multiworld.models.stacked import StackedFramesModel

    config = read_config(path)
    if sha256_file(path / "model.safetensors") != config.get("weights_sha256"):
        raise ValueError(f"--init-from {path}: model.safetensors does not match its config.json")
    if (config["model"].get("kind") == STACKED_KIND) != isinstance(model, StackedFramesModel):
        raise ValueError(f"--init-from {path}: a stacked-frames and a latent world model do not share weights")
    tensors = load_file(str(path / "model.safetensors"))
    own = model.state_dict()
    copied = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(copied, strict=False)
    fresh = sorted(k for k in own if k not in copied)
    return {"checkpoint": str(path), "weights_sha256": config["weights_sha256"], "copied": len(copied), "fresh": fresh}


def mean_frame(batcher, batches: int = 32):
    """The mean view (H, W, 3) in [0, 1] over ``batches`` batches of the training sequences."""
    total, count = 0.0, 0
    for _ in range(batches):
        views = batcher.sample()["views"]
        total = total + views.sum(dim=(0, 1, 2))
        count += views.shape[0] * views.shape[1] * views.shape[2]
    return (total / count).float()
