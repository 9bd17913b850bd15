"""`multiworld inspect STORE`: the worlds of a store, their committed steps, scenario and config."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="list the worlds of a store", description=__doc__)
    p.add_argument("store", help="store path or URL (file://, memory://, s3://)")
    p.add_argument("--json", action="store_true", help='print {"worlds": [{"id": ..., "steps": ..., ...}]}')
    p.set_defaults(func=inspect)


def describe(store) -> dict:
    worlds = []
    for world_id in store.worlds():
        w = store.world(world_id)
        worlds.append(
            {
                "id": world_id,
                "steps": w.steps,
                "scenario": w.scenario,
                "seed": w.seed,
                "agents": w.agents,
                "parent": w.parent,
                "checkpoint_hash": w.checkpoint_hash,
                "arrays": sorted(w.arrays),
                "config": w.config,
            }
        )
    return {"store": store.url, "schema_version": store.schema_version, "worlds": worlds}


def inspect(args: argparse.Namespace) -> int:
    from multiworld.state import WorldStore

    with WorldStore.open(args.store, mode="r") as store:
        info = describe(store)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['store']} (schema v{info['schema_version']}): {len(info['worlds'])} worlds")
    for w in info["worlds"]:
        fork = f", fork of {w['parent']['world']}@{w['parent']['step']}" if w["parent"] else ""
        print(
            f"  {w['id']}: {w['steps']} committed steps, {w['scenario']}, seed {w['seed']}, "
            f"{len(w['agents'])} agents{fork}; config {json.dumps(w['config'], sort_keys=True)}"
        )
    return 0
