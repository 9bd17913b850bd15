"""One generic trainer for any model whose ``forward(batch)`` returns ``(loss, logs)``.

Wall-clock budgeted (``minutes``) with a cosine learning-rate schedule over that budget, JSON-lines
log (``log.jsonl``) plus a progress bar, periodic checkpoints of the whole training state in
``last/`` (weights, optimizer moments and RNG states as safetensors, counters as JSON: no pickle),
resumable after an interruption, and the best model by validation score in ``best/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm


@dataclasses.dataclass
class TrainConfig:
    batch_size: int = 8  # sequences (worlds) per step
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
    seed: int = 0


class Trainer:
    def __init__(
        self,
        model: torch.nn.Module,
        sample: Callable[[], dict],
        cfg: TrainConfig,
        out: str | pathlib.Path,
        save_model: Callable[[torch.nn.Module, pathlib.Path, dict], None],
        evaluate: Callable[[torch.nn.Module], dict] | None = None,
        score_key: str = "score",
        progress: bool = True,
    ) -> None:
        self.model, self.sample, self.cfg, self.out = model, sample, cfg, pathlib.Path(out)
        self.save_model, self.evaluate, self.score_key, self.progress = save_model, evaluate, score_key, progress
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step, self.elapsed, self.best = 0, 0.0, -math.inf
        self.out.mkdir(parents=True, exist_ok=True)

    # ----- schedule ---------------------------------------------------------------------------
    def lr_at(self, step: int, elapsed: float) -> float:
        cfg = self.cfg
        warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
        frac = min(1.0, max(elapsed / (cfg.minutes * 60), step / cfg.max_steps))
        cos = cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * frac))
        return cfg.lr * warm * cos

    # ----- state ------------------------------------------------------------------------------
    def save_state(self) -> None:
        last = self.out / "last"
        self.save_model(self.model, last, {"step": self.step, "elapsed_seconds": round(self.elapsed, 1)})
        tensors, groups = {}, []
        index = {p: i for i, p in enumerate(self.model.parameters())}
        for p, st in self.opt.state.items():
            for k, v in st.items():
                tensors[f"{index[p]}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
        for g in self.opt.param_groups:
            groups.append({k: v for k, v in g.items() if k != "params"})
        tensors["rng.torch"] = torch.get_rng_state()
        save_file(tensors, str(last / "optimizer.safetensors.tmp"))
        (last / "optimizer.safetensors.tmp").replace(last / "optimizer.safetensors")
        state = {"step": self.step, "elapsed": self.elapsed, "best": self.best, "param_groups": groups}
        (last / "trainer.json").write_text(json.dumps(state, indent=2))

    def load_state(self, load_weights: Callable[[torch.nn.Module, pathlib.Path], None]) -> bool:
        last = self.out / "last"
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
            self.opt.state[params[int(i)]][name] = v
        for g, saved in zip(self.opt.param_groups, state["param_groups"]):
            g.update({k: v for k, v in saved.items() if k != "betas"})
        torch.set_rng_state(tensors["rng.torch"])
        self.step, self.elapsed, self.best = state["step"], state["elapsed"], state["best"]
        if self.best is None:
            self.best = -math.inf
        return True

    # ----- loop -------------------------------------------------------------------------------
    def log(self, record: dict) -> None:
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def run(self) -> dict:
        cfg = self.cfg
        budget = cfg.minutes * 60
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step", disable=not self.progress)
        start = time.perf_counter() - self.elapsed
        last_save = time.perf_counter()
        acc: dict[str, list] = {}  # metrics as the model gave them (tensors: synced only when logged)
        last_eval: dict = {}
        self.model.train()
        while self.step < cfg.max_steps and self.elapsed < budget:
            lr = self.lr_at(self.step, self.elapsed)
            for g in self.opt.param_groups:
                g["lr"] = lr
            batch = self.sample()
            loss, logs = self.model(batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.opt.step()
            self.step += 1
            self.elapsed = time.perf_counter() - start
            for k, v in logs.items():
                acc.setdefault(k, []).append(v.detach() if torch.is_tensor(v) else v)
            bar.update(1)
            if self.step % cfg.log_every == 0:
                record = {"step": self.step, "minutes": round(self.elapsed / 60, 2), "lr": lr}
                record.update({k: round(float(np.mean([float(x) for x in v])), 5) for k, v in acc.items()})
                acc.clear()
                self.log(record)
                bar.set_postfix({k: record[k] for k in ("loss", "render_psnr", "roll_psnr", "move_ok") if k in record})
            if self.evaluate is not None and (self.step % cfg.eval_every == 0):
                last_eval = self._eval()
            if time.perf_counter() - last_save > cfg.save_minutes * 60:
                self.save_state()
                last_save = time.perf_counter()
        bar.close()
        if self.evaluate is not None and self.step % cfg.eval_every != 0:
            last_eval = self._eval()
        self.save_state()
        return {"step": self.step, "elapsed_seconds": round(self.elapsed, 1), "best_score": self.best, **last_eval}

    def _eval(self) -> dict:
        self.model.eval()
        with torch.no_grad():
            metrics = self.evaluate(self.model)
        self.model.train()
        record = {"step": self.step, "minutes": round(self.elapsed / 60, 2), "eval": metrics}
        self.log(record)
        score = metrics.get(self.score_key, -math.inf)
        if score > self.best:
            self.best = score
            self.save_model(
                self.model, self.out / "best", {"step": self.step, "elapsed_seconds": round(self.elapsed, 1), **metrics}
            )
        return metrics
