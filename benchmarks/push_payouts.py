"""Two checkpoints' push-v0 payouts under scripted agents, paired on the same held-out worlds: the
comparison a push judgement change needs before it ships (16 worlds are too few to tell).

    python benchmarks/push_payouts.py --candidate DIR [--checkpoint DIR] [--worlds 64] [--steps 200]

Each world is run free (the map at reset, 4 agents) by the shipped checkpoint (or ``--checkpoint``)
and by ``--candidate``, the scripted policy reading the oracle's state, as ``bench dynamics``
does; every push each model fires is judged by the oracle's step from that model's own decoded
world (:mod:`multiworld.bench.pushes`). Reports both models' totals, the oracle's, and the
per-world difference (candidate - checkpoint) with a paired 95% bootstrap interval. Writes
benchmarks/results/push_payouts.{json,md}.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from common import markdown_table, write_results

from multiworld.bench import pushes, stats
from multiworld.bench.variants import SimSpec
from multiworld.seeds import probe_seeds

SEED_OFFSET = 300_000  # in the dynamics probe block, after bench dynamics' own push worlds


def run(checkpoint: str | None, worlds: int, steps: int) -> dict:
    seeds = tuple(probe_seeds("dynamics", worlds, SEED_OFFSET))
    task = pushes.PushTask(SimSpec(checkpoint=checkpoint), "free", "push-v0", "scripted", 4, seeds, steps)
    return pushes.run_push_task(task)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    p.add_argument("--candidate", required=True, help="the checkpoint directory compared with it")
    p.add_argument("--worlds", type=int, default=64)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args(argv)
    if args.worlds < 2 or args.steps < 1:
        p.error("--worlds must be >= 2 and --steps >= 1")
    torch.set_num_threads(1)
    runs = {"checkpoint": run(args.checkpoint, args.worlds, args.steps)}
    runs["candidate"] = run(args.candidate, args.worlds, args.steps)
    rows = []
    for name, r in runs.items():
        row = {"model": name, **{k: int(np.sum(v)) for k, v in r.items() if isinstance(v, list)}}
        row["rule_share"] = round(row["possible"] / row["fired"], 4) if row["fired"] else None
        rows.append(row)
    diff = np.asarray(runs["candidate"]["paid"], float) - np.asarray(runs["checkpoint"]["paid"], float)
    ci = stats.interval(lambda i: float(diff[i].mean()), stats.resamples(args.worlds))
    payload = {
        "checkpoint": args.checkpoint or "shipped default",
        "candidate": args.candidate,
        "worlds": args.worlds,
        "steps": args.steps,
        "results": rows,
        "paid_difference_per_world": round(float(diff.mean()), 4),
        "paid_difference_ci": ci,
        "per_world": {name: r for name, r in runs.items()},
    }
    table = (
        f"push-v0, scripted agents, {args.worlds} held-out worlds x {args.steps} steps, 4 agents, the map at reset "
        "(oracle_paid, oracle_pushes: the oracle in the same worlds with the same actions).\n\n"
        + markdown_table(rows)
        + f"\n\npaid, candidate - checkpoint, per world: {payload['paid_difference_per_world']} "
        f"[{ci[0]}, {ci[1]}] (95% paired bootstrap over worlds)"
    )
    path = write_results(
        "push_payouts", payload, table, checkpoints={"model": args.checkpoint, "candidate": args.candidate}
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
