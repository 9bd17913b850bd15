"""Fidelity of the learned world model vs the oracle (held-out seeds, free-running, same actions).

    python benchmarks/fidelity.py [--checkpoint DIR] [--worlds 8] [--quick]

Writes benchmarks/results/fidelity.json and fidelity.md: view PSNR and SSIM at 1/10/100 steps
(the deterministic render), decoded symbolic-state accuracy at 1/10/100/1000 steps (definition in
multiworld.bench.fidelity), for both reset modes (init="map": views + poses + top-down map;
init="views": views + poses only), and with 8 agents (the model was trained with at most 4).
"""

from __future__ import annotations

import argparse
import sys

import torch
from common import markdown_table, write_results
from tqdm import tqdm

from multiworld.bench.fidelity import evaluate_fidelity
from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, read_config
from multiworld.seeds import model_evaluation_seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    p.add_argument("--worlds", type=int, default=4)
    p.add_argument("--steps", type=int, default=1000, help="longest horizon for the symbolic accuracy")
    p.add_argument("--quick", action="store_true", help="2 worlds, 100 steps (a smoke run)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    worlds, last = (2, 100) if args.quick else (args.worlds, args.steps)
    model = load_checkpoint(args.checkpoint)
    seeds = model_evaluation_seeds(worlds)
    acc_h = tuple(h for h in (1, 10, 100, 1000) if h <= last)
    # (scenario, agents, reset mode, policy, run to the longest accuracy horizon)
    runs = [
        ("forage-v0", 4, "map", "scripted", True),
        ("push-v0", 4, "map", "scripted", False),
        ("roam-v0", 4, "map", "scripted", False),
        ("forage-v0", 4, "map", "random", False),
        ("forage-v0", 4, "views", "scripted", False),
        ("push-v0", 4, "views", "scripted", False),
        ("forage-v0", 8, "map", "scripted", True),
        ("push-v0", 8, "map", "scripted", False),
    ]
    if args.quick:
        runs = runs[:1] + runs[4:5]
    results, rows = [], []
    for scenario, agents, init, policy, long in tqdm(runs, desc="fidelity", unit="run"):
        horizons = acc_h if long else tuple(h for h in acc_h if h <= 100)
        r = evaluate_fidelity(model, scenario, agents, seeds, (1, 10, 100), horizons, policy=policy, init=init)
        results.append(r)
        print(f"{scenario} x{agents} {policy} init={init}: psnr {r['psnr']} accuracy {r['accuracy']}", file=sys.stderr)
        for mode, by_h in r["psnr"].items():
            rows.append(
                {
                    "scenario": scenario,
                    "agents": agents,
                    "policy": policy,
                    "init": init,
                    "render": mode,
                    **{f"PSNR@{h}": by_h.get(str(h), "") for h in (1, 10, 100)},
                    **{f"SSIM@{h}": r["ssim"][mode].get(str(h), "") for h in (1, 100)},
                    **{f"sharp@{h}": r["sharpness"][mode].get(str(h), "") for h in (1, 100)},
                    **{f"acc@{h}": r["accuracy"].get(str(h), "") for h in acc_h},
                    f"cell acc@{last}": r["cell_accuracy"].get(str(last), ""),
                    f"agent acc@{last}": r["agent_accuracy"].get(str(last), ""),
                }
            )
    ck = args.checkpoint or str(DEFAULT_CHECKPOINT)
    payload = {
        "checkpoint": ck,
        "weights_sha256": read_config(args.checkpoint or DEFAULT_CHECKPOINT)["weights_sha256"],
        "seeds": seeds,
        "policy": "per row; acts on the oracle state and the same actions go to both backends",
        "targets": {"psnr@1": 26.0, "psnr@100": 22.0},
        "results": results,
    }
    note = (
        "Held-out seeds, free-running model (no oracle after reset), same actions to both backends.\n"
        "PSNR in dB (mean per frame); acc = decoded symbolic-state accuracy (cells + agents, see "
        "multiworld/bench/fidelity.py).\n"
        "init=map: the model starts from every agent's view and pose plus the top-down map; "
        "init=views: from the views and poses only.\n"
        "sharp = fine detail relative to the oracle's view (mean squared neighbour difference; 1 = as "
        "sharp, below 1 = blurred, above 1 = noisier).\n\n"
    )
    path = write_results("fidelity", payload, note + markdown_table(rows), checkpoints={"model": args.checkpoint})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
