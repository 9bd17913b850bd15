"""`multiworld data`: record oracle rollouts (random/scripted policy mix) into a world-state store."""

from __future__ import annotations

import argparse
import pathlib

from multiworld.world.scenarios import SCENARIOS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="record oracle rollouts for training", description=__doc__)
    p.add_argument("--episodes", type=int, default=64, help="episodes (worlds) to record")
    p.add_argument("--steps", type=int, default=200, help="steps per episode")
    p.add_argument("--scenario", default="roam-v0", choices=sorted(SCENARIOS))
    p.add_argument("--agents", type=int, default=4, help="agents per world, 1-16")
    p.add_argument("--out", type=pathlib.Path, required=True, help="store path (created, or appended to)")
    p.add_argument("--seed", type=int, default=0, help="world seed of the first episode (episode e uses seed+e)")
    p.add_argument("--scripted", type=float, default=0.5, help="fraction of episodes run by the scripted policy")
    p.add_argument("--no-frames", action="store_true", help="store states only (training re-renders frames exactly)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multiworld.bench.seeds import TRAIN_SEED_LIMIT
    from multiworld.models.data import record_rollouts

    if args.episodes < 1 or args.steps < 1:
        raise ValueError("--episodes and --steps must be >= 1")
    if args.seed < 0 or args.seed + args.episodes > TRAIN_SEED_LIMIT:
        raise ValueError(
            f"training world seeds must lie in [0, {TRAIN_SEED_LIMIT}) so benchmarks stay held out; "
            f"--seed {args.seed} with --episodes {args.episodes} uses [{args.seed}, {args.seed + args.episodes})"
        )
    if not 0.0 <= args.scripted <= 1.0:
        raise ValueError("--scripted must be in [0, 1]")
    rows = record_rollouts(
        args.out,
        args.scenario,
        args.agents,
        args.episodes,
        args.steps,
        seed=args.seed,
        frames=not args.no_frames,
        scripted_fraction=args.scripted,
    )
    print(f"wrote {args.episodes} episodes ({rows} steps) of {args.scenario} with {args.agents} agents to {args.out}")
    return 0
