"""Data-parallel training on Ray Train: :func:`~multiworld.models.training.run_training` in every
worker of a ``TorchTrainer`` (DDP: gloo on the CPU, NCCL on GPUs).

Ray Train starts the workers and their process group; each worker runs the single-process run
as rank r of N (its own shard of the sample stream, the same model, gradients averaged by DDP).
Rank 0 writes the run directory (checkpoints, logs, TensorBoard) exactly as a single process
does, and reports every saved training state to Ray Train, which keeps it in ``storage`` (default
``<out>/ray``; on a cluster of several machines give a path or URL every node reaches). When a
worker dies, Ray Train ends the group and starts it again (up to ``max_failures`` times); every
rank then resumes from the last reported state. A checkpoint trained this way is the same
``model.safetensors`` + ``config.json`` a single process writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil

from multiworld.models.training import TrainSpec


def _absolute(spec: TrainSpec) -> TrainSpec:
    """Ray workers run in their own working directory: every path made absolute."""

    def local(p: str) -> str:
        return p if "://" in p else str(pathlib.Path(p).resolve())

    init = None if spec.init_from is None else local(spec.init_from)
    return dataclasses.replace(spec, out=local(spec.out), data=[local(p) for p in spec.data], init_from=init)


def _train_loop(config: dict) -> None:
    """One Ray Train worker: this rank's part of the run."""
    import ray.train
    import ray.train.torch

    from multiworld.models.distributed import Distributed
    from multiworld.models.training import run_training

    spec = TrainSpec(**config["spec"])
    spec.device = str(ray.train.torch.get_device()) if config["use_gpu"] else "cpu"
    spec.progress = False
    ctx = ray.train.get_context()

    def on_save(path: pathlib.Path | None) -> None:
        # A barrier: every rank reports; rank 0 with the saved state (Ray copies it to storage).
        if path is None:
            ray.train.report({}, checkpoint=None)
            return
        step = json.loads((path / "trainer.json").read_text())["step"]
        ray.train.report({"step": step}, checkpoint=ray.train.Checkpoint.from_directory(str(path)))

    dist = Distributed.from_process_group(local_rank=ctx.get_local_rank(), on_save=on_save)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        run_training(spec, dist)
        return
    with checkpoint.as_directory() as saved:
        run_training(spec, dist, resume_from=saved)


def fit_on_ray(
    spec: TrainSpec,
    workers: int,
    address: str | None = None,
    use_gpu: bool = False,
    max_failures: int = 3,
    storage: str | None = None,
) -> dict:
    """Train ``spec`` on ``workers`` Ray Train workers (``address``: the cluster; None: RAY_ADDRESS
    or a local Ray instance); returns rank 0's summary."""
    from multiworld.runtime.ray_options import connect

    if workers < 1:
        raise ValueError(f"--ray-workers must be >= 1, got {workers}")
    if max_failures < 0:
        raise ValueError(f"--max-failures must be >= 0, got {max_failures}")
    spec = _absolute(spec.validate())
    out = pathlib.Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    local = (address or os.environ.get("RAY_ADDRESS") or "local") == "local"
    # A local instance gets the CPUs the workers ask for, even on a machine with fewer cores.
    connect(address, num_cpus=max(os.cpu_count() or 1, workers * spec.threads) if local else None)
    try:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError as e:
        raise ImportError(
            f"--ray-workers needs Ray Train's dependencies ({e}): pip install 'ray[train]' (or 'multiworld[train]')"
        ) from None

    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"spec": dataclasses.asdict(spec), "use_gpu": use_gpu},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": spec.threads}),
        run_config=RunConfig(
            name="train",
            storage_path=storage or str(out / "ray"),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    summary_path = out / "summary.json"
    if summary_path.exists():  # rank 0 ran on this machine (or --out is shared)
        summary = json.loads(summary_path.read_text())
    else:  # rank 0 wrote its run directory elsewhere: take the last reported state from storage
        with result.checkpoint.as_directory() as saved:
            for name in ("model.safetensors", "config.json", "metrics.json"):
                if (pathlib.Path(saved) / name).exists():
                    shutil.copy2(pathlib.Path(saved) / name, out / name)
            state = json.loads((pathlib.Path(saved) / "trainer.json").read_text())
        summary = {"step": state["step"], "elapsed_seconds": round(state["elapsed"], 1)}
        summary["tensorboard"] = f"{out / 'tensorboard'} on the node that ran rank 0"
    summary["ray"] = {"workers": workers, "use_gpu": use_gpu, "storage": storage or str(out / "ray")}
    return summary
