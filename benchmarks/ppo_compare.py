"""PPO trained inside the world model against PPO trained in the oracle, over seeds.

    python benchmarks/ppo_compare.py [--seeds 0 1 2]

Reads the runs `examples/ppo_shared.py` wrote for each seed (seed 0 without a suffix, seed s
with `_s{s}`): `results/ppo_forage_model_40*.json` (`--backend model`) and
`results/ppo_forage_40*.json` (`--backend oracle`), the same updates and evaluation worlds.
Writes `results/ppo_forage_compare.{json,md}`: per seed the oracle's score of each policy
(sampled and greedy) and the model-trained policy's score inside the model; the ratio of the
means (the issue's target: >= 75% on forage-v0) and a 95% bootstrap interval over seeds of the
paired difference (model-trained minus oracle-trained). Both runs of a seed must record the same
checkpoint-free config apart from the backend.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from multiworld.bench import stats
from multiworld.bench.provenance import stamp

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def _load(stem: str, seed: int) -> dict:
    path = RESULTS / f"{stem}{'' if seed == 0 else f'_s{seed}'}.json"
    if not path.exists():
        fix = f"run examples/ppo_shared.py with --seed {seed} --out {path.with_suffix('')}"
        raise SystemExit(f"{path} is missing: {fix}")
    data = json.loads(path.read_text())
    if data.get("partial"):
        raise SystemExit(f"{path} is a partial run (training did not finish); rerun it")
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    rows = []
    for seed in args.seeds:
        model, oracle = _load("ppo_forage_model_40", seed), _load("ppo_forage_40", seed)
        ev_m, ev_o = model["evaluation"], oracle["evaluation"]
        rows.append(
            {
                "seed": seed,
                "model_trained": {k: ev_m[k]["mean_return_per_agent"] for k in ("sampled", "greedy")},
                "oracle_trained": {k: ev_o[k]["mean_return_per_agent"] for k in ("sampled", "greedy")},
                "model_trained_in_model": ev_m["sampled_in_model"]["mean_return_per_agent"],
                "train_seconds": {"model": model["train_seconds"], "oracle": oracle["train_seconds"]},
                "checkpoint_sha256": model["provenance"]["checkpoints"]["model"]["sha256"],
                "commits": [model["provenance"]["commit"], oracle["provenance"]["commit"]],
            }
        )
    idx = stats.resamples(len(rows))
    summary = {}
    for mode in ("sampled", "greedy"):
        m = np.array([r["model_trained"][mode] for r in rows])
        o = np.array([r["oracle_trained"][mode] for r in rows])
        summary[mode] = {
            "model_trained_mean": round(float(m.mean()), 4),
            "oracle_trained_mean": round(float(o.mean()), 4),
            "ratio_of_means": round(float(m.mean() / o.mean()), 4),
            "paired_difference": round(float((m - o).mean()), 4),
            "paired_difference_ci": stats.interval(stats.mean_of(m - o), idx),
        }
    inside = np.array([r["model_trained_in_model"] for r in rows])
    own = np.array([r["model_trained"]["sampled"] for r in rows])
    summary["model_pays_over_oracle"] = round(float(inside.mean() / own.mean()), 4)
    out = {"benchmark": "ppo_forage_compare", "seeds": rows, "summary": summary, "provenance": stamp()}
    (RESULTS / "ppo_forage_compare.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# PPO inside the model against PPO in the oracle (forage-v0, 40 updates each)",
        "",
        f"commit `{out['provenance']['commit'][:7]}`; runs from commit(s) "
        + ", ".join(sorted({c[:7] for r in rows for c in r["commits"]})),
        "",
        "| seed | model-trained sampled / greedy | oracle-trained sampled / greedy | model-trained, inside the model |",
        "|---|---|---|---|",
    ]
    for r in rows:
        mt, ot = r["model_trained"], r["oracle_trained"]
        lines.append(
            f"| {r['seed']} | {mt['sampled']:.3f} / {mt['greedy']:.3f} | {ot['sampled']:.3f} / {ot['greedy']:.3f} "
            f"| {r['model_trained_in_model']:.3f} |"
        )
    lines.append("")
    for mode in ("sampled", "greedy"):
        s = summary[mode]
        lo, hi = s["paired_difference_ci"]
        lines.append(
            f"- {mode}: model-trained {s['model_trained_mean']:.3f}, oracle-trained {s['oracle_trained_mean']:.3f}, "
            f"ratio {s['ratio_of_means']:.3f}; paired difference {s['paired_difference']:.3f} [{lo}, {hi}]"
        )
    pays = summary["model_pays_over_oracle"]
    lines.append(f"- the model pays the model-trained policies {pays:.3f} of what the oracle pays")
    (RESULTS / "ppo_forage_compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
