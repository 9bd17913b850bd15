"""Distributed rollouts on a Ray cluster, every world recorded into one store.

On a cluster (after `ray start --head` on one machine and `ray start --address=HEAD:6379` on
the others), from any machine of it:

    python examples/cluster_rollout.py --address auto --workers 16 --episodes 256 --out s3://bucket/runs/forage

or on this machine alone:

    python examples/cluster_rollout.py --workers 2 --episodes 8 --out runs/forage-store

The same as `multiworld rollout`; this script shows the Python API: a picklable
:class:`RolloutConfig` that every worker builds its own simulator, policy and store writer
from, :func:`run_rollout` returning the summary, and reading the recorded worlds back.
"""

from __future__ import annotations

import argparse
import json

from multiworld.runtime.rollout import RolloutConfig, format_summary, run_rollout
from multiworld.state import WorldStore


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", default="local", help="'local', 'auto' or HOST:PORT")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--envs-per-worker", type=int, default=2)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--policy", default="scripted")
    p.add_argument("--scenario", default="push-v0")
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--max-cycles", type=int, default=50)
    p.add_argument("--out", default="runs/cluster-rollout")
    args = p.parse_args()

    cfg = RolloutConfig(
        out=args.out,
        episodes=args.episodes,
        workers=args.workers,
        envs_per_worker=args.envs_per_worker,
        policy=args.policy,
        scenario=args.scenario,
        agents=args.agents,
        max_cycles=args.max_cycles,
    )
    summary = run_rollout(cfg, address=args.address)
    print(format_summary(summary))
    print("episodes per node:", json.dumps(summary["nodes"], indent=1))

    store = WorldStore.open(args.out, "r")
    first = store.world("ep00000")
    print(
        f"{len(store.worlds())} worlds in {args.out}; ep00000: {first.steps} rows, return {first.rewards().sum():.1f}"
    )


if __name__ == "__main__":
    main()
