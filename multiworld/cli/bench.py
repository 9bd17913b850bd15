"""`multiworld bench`: the benchmark suite (cross-view consistency, fidelity, events, revisit, drift, throughput).

Each benchmark compares the backend under test with one shared state, the same backend with a
private state per agent (the baseline), and the oracle (the upper bound), and writes
DIR/NAME.json, DIR/NAME.md and DIR/NAME_*.png; `all` also writes DIR/summary.{json,md}.
"""

from __future__ import annotations

import argparse
import pathlib
import time

from multiworld.world.scenarios import SCENARIOS

CHOICES = ["consistency", "fidelity", "events", "revisit", "drift", "throughput", "all"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run the benchmark suite (shared vs private state vs oracle)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("benchmark", choices=CHOICES, help="which benchmark to run")
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
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench-results"), help="output directory")
    p.add_argument("--quick", action="store_true", help="a small version (a few minutes on a 2-core CPU)")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); runs tasks on the cluster")
    p.add_argument("--scenario", default="roam-v0", choices=sorted(SCENARIOS))
    p.add_argument("--device", default="cpu", help="torch device of the model backend (default: %(default)s)")
    p.add_argument(
        "--threads", type=_positive, default=None, help="torch CPU threads in this process (default: torch's)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)


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

    from multiworld.bench.runner import Runner
    from multiworld.bench.suite import Settings, run_benchmark
    from multiworld.bench.variants import SimSpec
    from multiworld.runtime.factory import check_names

    check_names(args.backend, "local")  # an unavailable backend fails here, in one line
    if args.checkpoint is not None and args.backend != "model":
        raise ValueError("--checkpoint applies to the model backend only")
    if args.private_checkpoint is not None and args.backend != "model":
        raise ValueError("--private-checkpoint applies to the model backend only")
    for flag, path in (("--checkpoint", args.checkpoint), ("--private-checkpoint", args.private_checkpoint)):
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
    )
    for variant in ("shared", "private"):  # a missing or broken checkpoint fails here, before any work
        spec.build(variant, 1, 1).close()
    settings = Settings(spec=spec, quick=args.quick)
    runner = Runner(args.address, progress=not args.no_progress)
    start = time.perf_counter()
    results = run_benchmark(args.benchmark, settings, runner, args.out)
    print(f"bench {args.benchmark}: wrote {args.out}/ in {time.perf_counter() - start:.0f} s")
    for name, res in [(args.benchmark, results)] if args.benchmark != "all" else results.items():
        heads = {v: {k: x for k, x in res[v].items() if isinstance(x, (int, float))} for v in settings.variants}
        for v, h in heads.items():
            print(f"  {name} {v}: " + ", ".join(f"{k}={x:.4g}" for k, x in h.items()))
    return 0
