"""`multiworld rollout`: run many envs across a Ray cluster and record every world to one store."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rollout",
        help="distributed rollouts on a Ray cluster, recorded to a store",
        description="Run --episodes episodes on --workers Ray workers (each with --envs-per-worker batched envs); "
        "every worker writes its own worlds (ep00000, ep00001, ...) into the store --out.",
    )
    p.add_argument("--address", default="local", help="'local' (start Ray here), 'auto' or HOST:PORT of a cluster")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--envs-per-worker", type=int, default=1)
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--policy", default="random", help="random | scripted")
    p.add_argument("--backend", default="oracle", help="oracle | model")
    p.add_argument("--checkpoint", default=None, help="model backend: checkpoint directory (default: shipped)")
    p.add_argument("--scenario", default="forage-v0")
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--max-cycles", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--no-frames", action="store_true", help="do not record the agents' views")
    p.add_argument("--world-prefix", default="", help="prefix of the world ids in the store")
    p.add_argument("--max-retries", type=int, default=3, help="times a batch is retried after its worker died")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--out", required=True, help="the store: a directory or an fsspec URL (s3://...)")
    p.add_argument(
        "--storage-options",
        default=None,
        help='fsspec options of --out as JSON, e.g. \'{"endpoint_url": "http://..."}\'',
    )
    p.add_argument("--summary", default=None, help="summary JSON path (default: <out>.summary.json for local stores)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multiworld.runtime.rollout import RolloutConfig, format_summary, run_rollout, write_summary

    try:
        storage_options = json.loads(args.storage_options) if args.storage_options else None
    except json.JSONDecodeError as e:
        raise ValueError(f"--storage-options is not valid JSON: {e}") from None
    cfg = RolloutConfig(
        out=args.out,
        storage_options=storage_options,
        episodes=args.episodes,
        workers=args.workers,
        envs_per_worker=args.envs_per_worker,
        policy=args.policy,
        backend=args.backend,
        checkpoint=args.checkpoint,
        scenario=args.scenario,
        agents=args.agents,
        max_cycles=args.max_cycles,
        seed=args.seed,
        height=args.height,
        width=args.width,
        record_frames=not args.no_frames,
        world_prefix=args.world_prefix,
        max_retries=args.max_retries,
        num_cpus_per_worker=args.cpus_per_worker,
    ).validate()
    try:
        summary = run_rollout(cfg, address=args.address, progress=not args.no_progress)
    except ConnectionError as e:
        print(f"multiworld rollout: error: {e}", file=sys.stderr)
        return 3
    path = args.summary or (None if "://" in args.out else args.out.rstrip("/") + ".summary.json")
    if path:
        write_summary(summary, path)
    print(format_summary(summary))
    if path:
        print(f"summary: {path}")
    return 1 if summary["failed_episodes"] else 0
