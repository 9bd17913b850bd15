"""`multiworld train`: train the world model on oracle rollouts from `multiworld data`, or on
recordings of any env (`multiworld data --env`): then the grid, camera and actions come from the
recording's metadata, and the last tenth of its episodes (at least one) validates.

Runs on the CPU or a GPU (--device, --precision), with batches made in worker processes
(--workers), or data-parallel on a Ray cluster (--ray-workers); logs in log.jsonl and TensorBoard
event files (<out>/tensorboard)."""

from __future__ import annotations

import argparse
import pathlib
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the learned world model", description=__doc__)
    p.add_argument("--preset", default="default", help="tiny or default (default: %(default)s)")
    p.add_argument(
        "--data", type=pathlib.Path, nargs="+", required=True, help="one or more stores written by `multiworld data`"
    )
    p.add_argument("--out", type=pathlib.Path, required=True, help="run directory (checkpoints, log.jsonl)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget (default: the preset's)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    p.add_argument(
        "--horizon", type=int, default=None, help="free-running steps per training window (default: the preset's)"
    )
    p.add_argument(
        "--event-boost",
        type=float,
        default=None,
        help="windows holding a push or pickup are drawn 1 + this many times as often (default: the preset's)",
    )
    p.add_argument(
        "--private-state",
        action="store_true",
        help="train the private-state baseline: the model sees only one agent's action per transition "
        "(the others read NOOP), as a single-agent world model run once per agent would",
    )
    p.add_argument(
        "--stacked-frames",
        action="store_true",
        help="train the stacked-frames baseline instead (no state: every agent's next frame from all "
        "agents' last frames, poses and the joint actions; multiworld.models.stacked)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--init-from",
        type=pathlib.Path,
        default=None,
        help="start from the weights of this checkpoint directory: every tensor whose name and shape "
        "match is copied, the rest starts fresh (the model card records the chain)",
    )
    p.add_argument(
        "--trains",
        nargs="+",
        default=None,
        metavar="PREFIX",
        help="train only the parameters whose names start with these (e.g. dynamics.worth_judge.), the rest "
        "frozen (default: the preset's)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads per process (default: %(default)s)")
    p.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda or cuda:N (default: %(default)s: the GPU when there is one; asking for CUDA "
        "where there is none is an error)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="fp32, or bf16 autocast (default: bf16 on a GPU that has it, fp32 on the CPU); the checkpoint records it",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="data worker processes per training process (default: %(default)s: batches made in the training loop)",
    )
    p.add_argument(
        "--save-every",
        type=int,
        default=None,
        help="also save the training state every N steps (default: by the clock)",
    )
    p.add_argument(
        "--ray-workers",
        type=int,
        default=0,
        help="data-parallel training on this many Ray Train workers (DDP; default: one process, no Ray)",
    )
    p.add_argument(
        "--address", default=None, help="with --ray-workers: the Ray cluster (HOST:PORT or auto; default: a local one)"
    )
    p.add_argument("--use-gpu", action="store_true", help="with --ray-workers: one GPU per worker (NCCL)")
    p.add_argument(
        "--max-failures",
        type=int,
        default=3,
        help="with --ray-workers: restarts from the last checkpoint after a lost worker (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to log.jsonl)")
    p.set_defaults(func=run)


def spec_from_args(args: argparse.Namespace):
    from multiworld.models.training import TrainSpec

    return TrainSpec(
        data=[str(p) for p in args.data],
        out=str(args.out),
        preset=args.preset,
        minutes=args.minutes,
        max_steps=args.max_steps,
        lr=args.lr,
        horizon=args.horizon,
        event_boost=args.event_boost,
        save_every=args.save_every,
        private_state=args.private_state,
        stacked_frames=args.stacked_frames,
        resume=args.resume,
        init_from=None if args.init_from is None else str(args.init_from),
        trains=None if args.trains is None else tuple(args.trains),
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        precision=args.precision,
        workers=args.workers,
        progress=not args.no_progress,
        command=_command_line(),
    ).validate()


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.ray_workers < 0:
        raise ValueError(f"--ray-workers must be >= 0, got {args.ray_workers}")
    if (args.address or args.use_gpu) and not args.ray_workers:
        raise ValueError("--address and --use-gpu go with --ray-workers N (data-parallel on Ray Train)")
    if args.ray_workers and args.device != "auto":
        raise ValueError("--ray-workers places its workers itself: pass --use-gpu for GPUs, not --device")
    spec.check_out()
    if args.ray_workers:
        from multiworld.models.ray_train import fit_on_ray

        summary = fit_on_ray(spec, args.ray_workers, args.address, args.use_gpu, args.max_failures)
    else:
        from multiworld.models.training import run_training

        summary = run_training(spec)
    print(f"trained {summary['step']} steps in {summary['elapsed_seconds'] / 60:.1f} min; checkpoint in {args.out}")
    print(f"TensorBoard: tensorboard --logdir {summary['tensorboard']}")
    return 0


def _command_line() -> str | None:
    """The ``multiworld ...`` command this process runs, when it runs one (recorded with a checkpoint)."""
    return "multiworld " + " ".join(sys.argv[1:]) if sys.argv and "multiworld" in sys.argv[0] else None
