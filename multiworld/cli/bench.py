"""`multiworld bench`: the benchmark suite (cross-view consistency, fidelity, events, revisit, drift, throughput).

Each benchmark compares the variants below and any external simulators (--simulator), and
writes DIR/NAME.json, DIR/NAME.md and DIR/NAME_*.png; `all` also writes DIR/summary.{json,md}.
Headline figures carry 95% bootstrap intervals over the probe worlds.
"""

from __future__ import annotations

import argparse
import pathlib
import time

from multiworld.world.scenarios import SCENARIOS


def add_parser(sub: argparse._SubParsersAction) -> None:
    from multiworld.bench.suite import BENCHMARKS

    p = sub.add_parser(
        "bench",
        help="run the benchmark suite (the shared state against baselines, bounds and the oracle)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def format_help() -> str:  # the registered variants, imported for the help only (they load torch)
        from multiworld.bench.variants import registered

        variants = registered()
        p.description = __doc__ + "\nvariants:\n" + "\n".join(f"  {n:12} {v.label}" for n, v in variants.items())
        return argparse.ArgumentParser.format_help(p)

    p.format_help = format_help
    p.add_argument(
        "benchmark",
        choices=[*BENCHMARKS, "all", "vizdoom"],
        help="which benchmark to run (vizdoom: the Doom model against the game, multiworld.bench.doom)",
    )
    p.add_argument(
        "--backend", default="model", choices=["model", "oracle"], help="backend under test (default: %(default)s)"
    )
    p.add_argument("--checkpoint", default=None, help="model checkpoint directory (default: the shipped checkpoint)")
    p.add_argument(
        "--private-checkpoint",
        default=None,
        help="weights of the private-state baseline (default: the shipped private-state checkpoint, "
        "or --checkpoint's weights run privately when --checkpoint is given)",
    )
    p.add_argument(
        "--stacked-checkpoint",
        default=None,
        help="weights of the stacked-frames baseline (default: the shipped one; its mean frame is the `mean` bound)",
    )
    p.add_argument(
        "--simulator",
        action="append",
        default=[],
        metavar="[NAME=]MODULE:FACTORY",
        type=_external,
        help="also benchmark an external simulator: FACTORY(scenario=, num_agents=, num_worlds=) returns an "
        "object with the Simulator contract (benchmarks/README.md); MODULE may be a .py file; repeatable",
    )
    p.add_argument(
        "--variants",
        default=None,
        help="comma-separated subset of the variants to run (those listed above, or a --simulator's NAME; "
        "default: all; the oracle always runs)",
    )
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-results"), help="output directory")
    p.add_argument("--quick", action="store_true", help="a small version (a few minutes on a 2-core CPU)")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); runs tasks on the cluster")
    p.add_argument("--scenario", default="roam-v0", choices=sorted(SCENARIOS))
    p.add_argument(
        "--init",
        default="views",
        choices=["views", "map"],
        help="what the learned variants start from: every agent's first view and pose (views, the headline: "
        "every variant gets the same information) or also the top-down map (map: only the variants that can "
        "read it run, in a table of their own) (default: %(default)s)",
    )
    p.add_argument("--device", default="cpu", help="torch device of the model backend (default: %(default)s)")
    p.add_argument(
        "--threads", type=_positive, default=None, help="torch CPU threads in this process (default: torch's)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument(
        "--env-kwargs",
        default=None,
        metavar="JSON",
        help="vizdoom only: the game's parallel_env arguments (default: those the shipped checkpoint was "
        "recorded with, multiworld.bench.doom.DOOM_ENV)",
    )
    p.set_defaults(func=run)


def _external(text: str) -> tuple[str, str]:
    """``NAME=MODULE:FACTORY`` or ``MODULE:FACTORY`` (named after FACTORY) -> (name, target)."""
    name, _, target = text.partition("=") if "=" in text else ("", "", text)
    if ":" not in target or target.endswith(":") or target.startswith(":"):
        raise argparse.ArgumentTypeError(f"expected [NAME=]MODULE:FACTORY, got {text!r}")
    name = name or target.rsplit(":", 1)[1]
    if not name.replace("_", "").replace("-", "").isalnum():
        raise argparse.ArgumentTypeError(f"simulator name {name!r} must be letters, digits, '-' or '_'")
    return name, target


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    import torch

    if args.benchmark == "vizdoom":
        return run_vizdoom(args)
    if args.env_kwargs is not None:
        raise ValueError("--env-kwargs applies to the vizdoom benchmark only")

    from multiworld.bench.runner import Runner, Settings
    from multiworld.bench.suite import run_benchmark
    from multiworld.bench.variants import SimSpec
    from multiworld.runtime.factory import check_names

    check_names(args.backend, "local")  # an unavailable backend fails here, in one line
    if args.checkpoint is not None and args.backend != "model":
        raise ValueError("--checkpoint applies to the model backend only")
    if args.private_checkpoint is not None and args.backend != "model":
        raise ValueError("--private-checkpoint applies to the model backend only")
    paths = (
        ("--checkpoint", args.checkpoint),
        ("--private-checkpoint", args.private_checkpoint),
        ("--stacked-checkpoint", args.stacked_checkpoint),
    )
    for flag, path in paths:
        if path is not None and not pathlib.Path(path).exists():
            raise FileNotFoundError(f"{flag} {path} does not exist")
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = SimSpec(
        backend=args.backend,
        checkpoint=args.checkpoint,
        scenario=args.scenario,
        device=args.device,
        private_checkpoint=args.private_checkpoint,
        stacked_checkpoint=args.stacked_checkpoint,
        external=tuple(args.simulator),
        init=args.init,
    )
    variants = None if args.variants is None else tuple(v.strip() for v in args.variants.split(",") if v.strip())
    settings = Settings(spec=spec, quick=args.quick, variants=variants)
    for variant in settings.variants:  # a missing or broken checkpoint or factory fails here, before any work
        spec.build(variant, 1, 1).close()
    runner = Runner(args.address, progress=not args.no_progress)
    start = time.perf_counter()
    results = run_benchmark(args.benchmark, settings, runner, args.out)
    print(f"bench {args.benchmark}: wrote {args.out}/ in {time.perf_counter() - start:.0f} s")
    for name, res in [(args.benchmark, results)] if args.benchmark != "all" else results.items():
        heads = {v: {k: x for k, x in res[v].items() if isinstance(x, (int, float))} for v in settings.variants}
        heads = {v: h for v, h in heads.items() if h}
        for v, h in heads.items():
            print(f"  {name} {v}: " + ", ".join(f"{k}={x:.4g}" for k, x in h.items()))
    return 0


def run_vizdoom(args: argparse.Namespace) -> int:
    """The Doom benchmark: 12 held-out episodes of 100 steps (``--quick``: 2 of 12)."""
    import torch

    from multiworld.bench import doom
    from multiworld.data.recorder import parse_env_kwargs

    if args.threads:
        torch.set_num_threads(args.threads)
    env_kwargs = {**doom.DOOM_ENV, **parse_env_kwargs(args.env_kwargs)}
    episodes, steps = (2, 12) if args.quick else (12, 100)
    start = time.perf_counter()
    res = doom.run(
        args.checkpoint, args.stacked_checkpoint, env_kwargs, episodes, steps, args.out, progress=not args.no_progress
    )
    print(f"bench vizdoom: wrote {args.out}/ in {time.perf_counter() - start:.0f} s")
    for t, f in res["fidelity"].items():
        print(f"  view PSNR at step {t}: " + ", ".join(f"{v} {x:.2f}" for v, x in f["psnr"].items()))
    print("  consistency contrast: " + ", ".join(f"{v} {x:.3f}" for v, x in res["contrast"]["value"].items()))
    return 0
