"""`multiworld data`: record oracle rollouts (random/scripted policy mix) into a world-state store.

With ``--env MODULE:FACTORY`` it records any PettingZoo parallel env instead (a seeded random
policy; the contract is in ``multiworld.data.recorder``), e.g. ViZDoom:
``multiworld data --env multiworld.games.vizdoom:parallel_env --env-kwargs '{"num_agents": 4}'``.
"""

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
    p.add_argument(
        "--env",
        metavar="MODULE:FACTORY",
        help="record this PettingZoo parallel env instead of the oracle (contract: multiworld.data.recorder)",
    )
    p.add_argument("--env-kwargs", metavar="JSON", help="keyword arguments of the --env factory, a JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multiworld.models.data import record_rollouts
    from multiworld.seeds import TRAIN_SEED_LIMIT

    if args.episodes < 1 or args.steps < 1:
        raise ValueError("--episodes and --steps must be >= 1")
    if args.seed < 0 or args.seed + args.episodes > TRAIN_SEED_LIMIT:
        raise ValueError(
            f"training world seeds must lie in [0, {TRAIN_SEED_LIMIT}) so benchmarks stay held out; "
            f"--seed {args.seed} with --episodes {args.episodes} uses [{args.seed}, {args.seed + args.episodes})"
        )
    if args.env is not None:
        return _record_env(args)
    if args.env_kwargs is not None:
        raise ValueError("--env-kwargs needs --env MODULE:FACTORY")
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


def _record_env(args: argparse.Namespace) -> int:
    from multiworld.data.recorder import load_factory, parse_env_kwargs, record_env

    factory = load_factory(args.env)
    kwargs = parse_env_kwargs(args.env_kwargs)
    rows = record_env(
        factory, args.out, args.episodes, args.steps, seed=args.seed, env_kwargs=kwargs, spec=args.env, progress=True
    )
    print(f"wrote {args.episodes} episodes ({rows} steps) of {args.env} to {args.out}")
    return 0
