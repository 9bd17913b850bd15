"""One generic trainer for any model whose ``forward(batch)`` returns ``(loss, logs)``.

Wall-clock budgeted (``minutes``) with a cosine learning-rate schedule over that budget, on any
device (:mod:`multiworld.models.device`: bf16 autocast, TF32 on CUDA), batches from a
:class:`~multiworld.models.stream.BatchStream` made in ``workers`` DataLoader processes, and
data-parallel over ranks when given a :class:`~multiworld.models.distributed.Distributed` (the
same loop in every rank; rank 0 logs and saves). Logs go to ``log.jsonl``, TensorBoard event
files (``tensorboard/``) and a progress bar. ``last/`` holds the whole training state (weights,
optimizer moments and every rank's torch RNG as safetensors, counters and the data stream's
position as JSON: no pickle), so an interrupted run resumes on the same sample stream; the best
model by validation score is in ``best/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from multiworld.models.device import autocast, configure, resolve_device, training_precision
from multiworld.models.distributed import Distributed
from multiworld.models.stream import BatchStream, make_loader, to_device


@dataclasses.dataclass
class TrainConfig:
    batch_size: int = 8  # sequences (worlds) per step and rank
    horizon: int = 8  # free-running steps per training sequence
    event_boost: float = 0.0  # windows with a push or pickup are drawn (1 + event_boost) times as often
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    min_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    max_steps: int = 1_000_000
    minutes: float = 60.0  # wall-clock budget (the schedule follows it)
    log_every: int = 25
    eval_every: int = 250
    save_minutes: float = 3.0
    save_every: int = 0  # also save the training state every this many steps (0: by the clock only)
    seed: int = 0


class Trainer:
    """``sample``: a :class:`BatchStream` (resumable, worker processes, data-parallel shards) or a
    callable returning a batch (made in this process; its own RNG is not restored on resume).
    ``on_step(trainer)`` runs on every rank after every step."""

    def __init__(
        self,
        model: torch.nn.Module,
        sample: BatchStream | Callable[[], Any],
        cfg: TrainConfig,
        out: str | pathlib.Path,
        save_model: Callable[[torch.nn.Module, pathlib.Path, dict], None],
        evaluate: Callable[[torch.nn.Module], dict] | None = None,
        score_key: str = "score",
        progress: bool = True,
        *,
        device: str | torch.device = "cpu",
        precision: str | None = None,
        workers: int = 0,
        dist: Distributed | None = None,
        on_step: Callable[[Trainer], None] | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        configure(self.device)
        self.precision = training_precision(self.device, precision)
        self.dist = dist or Distributed()
        if workers and not isinstance(sample, BatchStream):
            raise ValueError("worker processes need a BatchStream (multiworld.models.stream), not a sample() callable")
        if self.dist.world_size > 1 and not isinstance(sample, BatchStream):
            raise ValueError("data-parallel training needs a BatchStream: each rank draws its own shard of it")
        self.model, self.sample, self.cfg, self.out = model.to(self.device), sample, cfg, pathlib.Path(out)
        self.save_model, self.evaluate, self.score_key, self.progress = save_model, evaluate, score_key, progress
        self.workers, self.on_step, self.tensorboard = workers, on_step, tensorboard
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step, self.elapsed, self.best, self.position = 0, 0.0, -math.inf, 0
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)

    # ----- schedule ---------------------------------------------------------------------------
    def lr_at(self, step: int, elapsed: float) -> float:
        cfg = self.cfg
        warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        frac = min(1.0, max(elapsed / (cfg.minutes * 60), step / cfg.max_steps))
        cos = cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * frac))
        return cfg.lr * warm * cos

    # ----- state ------------------------------------------------------------------------------
    def _rng_states(self) -> dict[str, torch.Tensor]:
        """Every rank's torch RNG states (a collective: every rank calls it)."""
        out = {f"rng.torch.{r}": s for r, s in enumerate(self.dist.gather(torch.get_rng_state()))}
        if self.device.type == "cuda":
            cuda = self.dist.gather(torch.cuda.get_rng_state(self.device))
            out.update({f"rng.cuda.{r}": s for r, s in enumerate(cuda)})
        out["rng.torch"] = out["rng.torch.0"].clone()  # what checkpoints before the ranks held
        return out

    def save_state(self) -> None:
        """Write ``last/`` (rank 0) and tell the launcher (every rank: a collective)."""
        rngs = self._rng_states()
        last = None
        if self.dist.is_main:
            last = self.out / "last"
            self.save_model(self.model, last, {"step": self.step, "elapsed_seconds": round(self.elapsed, 1)})
            tensors, groups = dict(rngs), []
            index = {p: i for i, p in enumerate(self.model.parameters())}
            for p, st in self.opt.state.items():
                for k, v in st.items():
                    tensors[f"{index[p]}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
            for g in self.opt.param_groups:
                groups.append({k: v for k, v in g.items() if k != "params"})
            save_file(tensors, str(last / "optimizer.safetensors.tmp"))
            (last / "optimizer.safetensors.tmp").replace(last / "optimizer.safetensors")
            state = {
                "step": self.step,
                "elapsed": self.elapsed,
                "best": self.best,
                "param_groups": groups,
                "data_position": self.position,
                "world_size": self.dist.world_size,
                "precision": self.precision,
            }
            (last / "trainer.json.tmp").write_text(json.dumps(state, indent=2))
            (last / "trainer.json.tmp").replace(last / "trainer.json")
        self.dist.saved(last)

    def load_state(
        self, load_weights: Callable[[torch.nn.Module, pathlib.Path], None], path: str | pathlib.Path | None = None
    ) -> bool:
        """Restore the training state from ``path`` (default ``out/last``); False if there is none."""
        last = pathlib.Path(path) if path is not None else self.out / "last"
        if not (last / "trainer.json").is_file():
            return False
        load_weights(self.model, last)
        state = json.loads((last / "trainer.json").read_text())
        tensors = load_file(str(last / "optimizer.safetensors"))
        params = list(self.model.parameters())
        for key, v in tensors.items():
            if key.startswith("rng."):
                continue
            i, name = key.split(".", 1)
            p = params[int(i)]
            self.opt.state[p][name] = v if name == "step" else v.to(p.device)  # AdamW keeps its step on the CPU
        for g, saved in zip(self.opt.param_groups, state["param_groups"]):
            g.update({k: v for k, v in saved.items() if k != "betas"})
        self.step, self.elapsed, self.best = state["step"], state["elapsed"], state["best"]
        self.position = state.get("data_position", self.step)
        if self.best is None:
            self.best = -math.inf
        rank = self.dist.rank
        own = tensors.get(f"rng.torch.{rank}", tensors["rng.torch"] if rank == 0 else None)
        if own is not None:
            torch.set_rng_state(own)
        else:  # resumed on more ranks than were saved: a fresh stream per rank, fixed by the step
            torch.manual_seed(self.cfg.seed * 1_000_003 + rank * 7919 + self.step)
        if self.device.type == "cuda" and f"rng.cuda.{rank}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng.cuda.{rank}"], self.device)
        return True

    # ----- loop -------------------------------------------------------------------------------
    def log(self, record: dict) -> None:
        if self.dist.is_main:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _batches(self):
        """(position, batch on the CPU) from the stream at this rank's shard and position."""
        if not isinstance(self.sample, BatchStream):
            while True:
                yield None, self.sample()
        stream = BatchStream(self.sample.sampler, self.sample.seed, self.dist.rank, self.position)
        loader = make_loader(stream, self.workers, pin_memory=self.device.type == "cuda")
        for drawn in loader:
            yield drawn.index, drawn.batch

    def run(self) -> dict:
        cfg, dist, main = self.cfg, self.dist, self.dist.is_main
        budget = cfg.minutes * 60
        module = dist.wrap(self.model, self.device)
        writer = self._writer() if main and self.tensorboard else None
        bar = tqdm(
            total=cfg.max_steps, initial=self.step, desc="train", unit="step", disable=not (self.progress and main)
        )
        start = time.perf_counter() - self.elapsed
        last_save, window_start, window_wait, window_samples = time.perf_counter(), time.perf_counter(), 0.0, 0
        total_wait, total_samples, run_start = 0.0, 0, time.perf_counter()
        acc: dict[str, list] = {}  # metrics as the model gave them (tensors: synced only when logged)
        last_eval: dict = {}
        batches = self._batches()
        self.model.train()
        try:
            while self.step < cfg.max_steps and self.elapsed < budget:
                lr = self.lr_at(self.step, self.elapsed)
                for g in self.opt.param_groups:
                    g["lr"] = lr
                t_wait = time.perf_counter()
                index, batch = next(batches)
                if index is not None and index != self.position:
                    raise RuntimeError(f"data stream out of order: got batch {index}, expected {self.position}")
                batch = to_device(batch, self.device)
                waited = time.perf_counter() - t_wait
                window_wait, total_wait = window_wait + waited, total_wait + waited
                with autocast(self.device, self.precision):
                    loss, logs = module(batch)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.opt.step()
                self.step += 1
                self.position += 1
                n = _leading_dim(batch) * dist.world_size
                window_samples, total_samples = window_samples + n, total_samples + n
                for k, v in logs.items():
                    acc.setdefault(k, []).append(v.detach() if torch.is_tensor(v) else v)
                bar.update(1)
                if self.step % cfg.log_every == 0:
                    now = time.perf_counter()
                    record = {"step": self.step, "minutes": round(self.elapsed / 60, 2), "lr": lr}
                    record.update({k: round(float(np.mean([float(x) for x in v])), 5) for k, v in acc.items()})
                    record["samples_per_s"] = round(window_samples / max(now - window_start, 1e-9), 3)
                    record["data_wait_fraction"] = round(window_wait / max(now - window_start, 1e-9), 4)
                    acc.clear()
                    window_start, window_wait, window_samples = now, 0.0, 0
                    self.log(record)
                    _write_scalars(writer, record, self.step)
                    keys = ("loss", "render_psnr", "roll_psnr", "move_ok")
                    bar.set_postfix({k: record[k] for k in keys if k in record})
                if self.evaluate is not None and self.step % cfg.eval_every == 0:
                    last_eval = self._eval(writer)
                save_due = time.perf_counter() - last_save > cfg.save_minutes * 60
                save_due |= bool(cfg.save_every) and self.step % max(cfg.save_every, 1) == 0
                # Rank 0's clock decides: every rank stops, saves and schedules its lr together.
                self.elapsed, save_now = dist.agree([time.perf_counter() - start, float(save_due)])
                if save_now:
                    self.save_state()
                    last_save = time.perf_counter()
                if self.on_step is not None:
                    self.on_step(self)
        finally:
            batches.close()  # stops the worker processes
            bar.close()
        if self.evaluate is not None and self.step % cfg.eval_every != 0:
            last_eval = self._eval(writer)
        self.save_state()
        seconds = time.perf_counter() - run_start
        if writer is not None:
            writer.close()
        return {
            "step": self.step,
            "elapsed_seconds": round(self.elapsed, 1),
            "best_score": self.best,
            "samples_per_s": round(total_samples / max(seconds, 1e-9), 3),
            "data_wait_fraction": round(total_wait / max(seconds, 1e-9), 4),
            **last_eval,
        }

    def _writer(self):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.out / "tensorboard"))

    def _eval(self, writer=None) -> dict:
        if not self.dist.is_main:
            return {}
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.precision):
            metrics = self.evaluate(self.model)
        self.model.train()
        record = {"step": self.step, "minutes": round(self.elapsed / 60, 2), "eval": metrics}
        self.log(record)
        _write_scalars(writer, metrics, self.step, prefix="eval/")
        score = metrics.get(self.score_key, -math.inf)
        if score > self.best:
            self.best = score
            self.save_model(
                self.model, self.out / "best", {"step": self.step, "elapsed_seconds": round(self.elapsed, 1), **metrics}
            )
        return metrics


def _leading_dim(batch: Any) -> int:
    """The number of sequences in ``batch`` (the first tensor's first dimension)."""
    if torch.is_tensor(batch):
        return int(batch.shape[0])
    if dataclasses.is_dataclass(batch):
        for f in dataclasses.fields(batch):
            n = _leading_dim(getattr(batch, f.name))
            if n:
                return n
    if isinstance(batch, dict):
        for v in batch.values():
            n = _leading_dim(v)
            if n:
                return n
    return 0


def _write_scalars(writer, record: dict, step: int, prefix: str = "") -> None:
    """The numbers of ``record`` as TensorBoard scalars: losses under ``loss/``, throughput under
    ``perf/``, the rest under ``train/`` (or ``prefix``); nested dicts become ``prefix/key/...``."""
    if writer is None:
        return
    for key, value in record.items():
        if key in ("step", "minutes"):
            continue
        if isinstance(value, dict):
            _write_scalars(writer, value, step, f"{prefix}{key}/")
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if prefix:
            tag = prefix + key
        elif key == "loss" or key.startswith("loss_"):
            tag = "loss/" + key.removeprefix("loss_")
        elif key in ("samples_per_s", "data_wait_fraction"):
            tag = "perf/" + key
        elif key == "lr":
            tag = "lr"
        else:
            tag = "train/" + key
        writer.add_scalar(tag, value, step)
    writer.flush()
