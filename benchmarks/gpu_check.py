"""The GPU check, ready to run on a CUDA machine: training and inference speed in bf16.

    python benchmarks/gpu_check.py [--steps 200] [--worlds 16 256] [--workers 2]

1. Training: ``--steps`` steps of the default preset (bf16 autocast, TF32, batches from
   ``--workers`` data processes) on oracle data recorded first (forage-v0, 4 agents, training
   seeds): steps/s, samples/s, the share of time spent waiting for data, and whether the loss
   fell (the last logged loss below the first).
2. Inference: the model backend's vector env on the GPU (the shipped checkpoint, bf16 renders,
   eager and compiled), random actions: agent-frames/s at each ``--worlds`` x 4 agents.

Writes benchmarks/results/gpu_check.{json,md}. On a machine without CUDA it says so and exits 0
with nothing measured. ``tests/test_training_scale.py`` runs both checks on the CPU.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch


def train_check(
    device: str, preset: str, steps: int, workers: int, precision: str, root: pathlib.Path, episodes: int = 16
) -> dict:
    """``steps`` training steps of ``preset`` on ``device`` after recording ``episodes`` episodes."""
    from multiworld.models.rollouts import record_rollouts
    from multiworld.models.training import TrainSpec, run_training

    data = root / "data.zarr"
    if not data.exists():
        record_rollouts(data, "forage-v0", 4, episodes, 48, seed=0, frames=False, progress=False)
    spec = TrainSpec(
        data=[str(data)],
        out=str(root / f"run-{device.replace(':', '')}-{precision}"),
        preset=preset,
        max_steps=steps,
        minutes=60.0,
        device=device,
        precision=precision,
        workers=workers,
        threads=2,
        progress=False,
    )
    t0 = time.perf_counter()
    summary = run_training(spec)
    seconds = time.perf_counter() - t0
    log = [json.loads(line) for line in (pathlib.Path(spec.out) / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    return {
        "device": device,
        "preset": preset,
        "precision": precision,
        "workers": workers,
        "steps": summary["step"],
        "steps_per_s": round(summary["step"] / summary["elapsed_seconds"], 3) if summary["elapsed_seconds"] else None,
        "samples_per_s": summary["samples_per_s"],
        "data_wait_fraction": summary["data_wait_fraction"],
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "loss_fell": (losses[-1] < losses[0]) if len(losses) > 1 else None,
        "seconds_with_setup": round(seconds, 1),
    }


def env_check(
    device: str, worlds: int, agents: int = 4, steps: int = 50, checkpoint=None, compile_render: bool = False
) -> dict:
    """Agent-frames/s of the model backend's vector env with ``worlds`` x ``agents`` on ``device``
    (eager, or the render and state update compiled: the compile is done in the warm-up steps)."""
    import multiworld
    from multiworld.world.state import NUM_ACTIONS

    kw = {"compile_render": compile_render, "compile_update": compile_render}
    kw |= {} if checkpoint is None else {"checkpoint": str(checkpoint)}
    env = multiworld.vector_env(
        num_envs=worlds, num_agents=agents, backend="model", device=device, max_cycles=100, seed=2_000_000, **kw
    )
    env.reset(seed=2_000_000)
    rng = np.random.default_rng(0)
    for _ in range(3):
        env.step(rng.integers(0, NUM_ACTIONS, (worlds, agents)))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, NUM_ACTIONS, (worlds, agents)))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    precision = getattr(env.sim, "precision", None)
    env.close()
    return {
        "device": device,
        "worlds": worlds,
        "agents": agents,
        "precision": precision,
        "render": "compiled" if compile_render else "eager",
        "agent_frames_per_s": round(steps * worlds * agents / total, 1),
        "ms_per_batch_step": round(1000 * total / steps, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--worlds", type=int, nargs="+", default=[16, 256])
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        print(
            f"gpu_check: no CUDA device on this machine (torch {torch.__version__}, {build}); nothing measured. "
            "Run it on a machine with an NVIDIA GPU and a CUDA build of torch."
        )
        return 0
    from common import markdown_table, write_results

    from multiworld.models.checkpoint import DEFAULT_CHECKPOINT
    from multiworld.models.device import bf16_supported

    device = "cuda"
    precision = "bf16" if bf16_supported(torch.device(device)) else "fp32"
    with tempfile.TemporaryDirectory() as tmp:
        train = train_check(device, "default", args.steps, args.workers, precision, pathlib.Path(tmp))
    print(train, file=sys.stderr)
    envs = [env_check(device, w, compile_render=c) for w in args.worlds for c in (False, True)]
    payload = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "train": train,
        "env": envs,
    }
    note = (
        f"{payload['gpu']}, torch {torch.__version__} (CUDA {torch.version.cuda}). Training: {train['steps']} steps "
        f"of the default preset in {precision}, {train['samples_per_s']} samples/s, "
        f"{100 * train['data_wait_fraction']:.1f}% of the time waiting for data, loss "
        f"{train['first_loss']} -> {train['last_loss']}.\n\n"
    )
    path = write_results("gpu_check", payload, note + markdown_table(envs), checkpoints={"model": DEFAULT_CHECKPOINT})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
