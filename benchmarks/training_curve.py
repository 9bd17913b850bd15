"""Training curve of a `multiworld train` run, for a model card.

    python benchmarks/training_curve.py RUN_DIR --out CHECKPOINT_DIR

Reads RUN_DIR/log.jsonl and writes, into --out, training_curve.png (held-out PSNR of the encoded
step, or of the first predicted step for a stacked-frames run, and of the free-running rollout,
pose error and cell accuracy against minutes of training),
a copy of the log as training_log.jsonl and training_summary.json. Prints a markdown table of the
held-out evaluations for the card.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--every", type=int, default=4, help="table: every k-th evaluation")
    args = p.parse_args(argv)
    log = args.run / "log.jsonl"
    if not log.is_file():
        raise SystemExit(f"error: no training log at {log}")
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    train = [r for r in records if "eval" not in r]
    evals = [r for r in records if "eval" in r]
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(log, args.out / "training_log.jsonl")
    if (args.run / "summary.json").is_file():
        shutil.copy2(args.run / "summary.json", args.out / "training_summary.json")

    # A stacked-frames run has no encoded step and no cells: its first predicted step instead.
    stacked = bool(evals) and "first_psnr" in evals[0]["eval"]
    first, first_label = ("first_psnr", "first step") if stacked else ("render_psnr", "encoded step")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    m = [r["minutes"] for r in train]
    axes[0].plot(m, [r[first] for r in train], alpha=0.35, label=f"train, {first_label}")
    axes[0].plot(m, [r["roll_psnr"] for r in train], alpha=0.35, label="train, free rollout")
    me = [r["minutes"] for r in evals]
    axes[0].plot(me, [r["eval"][first] for r in evals], "o-", label=f"held-out, {first_label}")
    axes[0].plot(me, [r["eval"]["roll_psnr"] for r in evals], "s-", label="held-out, free rollout")
    axes[0].set_ylabel("view PSNR (dB)")
    axes[1].semilogy(me, [r["eval"]["pose_err"] for r in evals], "o-", label="pose error (held-out)")
    axes[1].set_ylabel("mean |pose error| (cells + rad)")
    if not stacked:
        axes[2].plot(me, [r["eval"]["cell_acc"] for r in evals], "o-", label="cells, encoded step")
        axes[2].plot(me, [r["eval"]["roll_cell_acc"] for r in evals], "s-", label="cells, rollout")
    axes[2].plot(me, [r["eval"]["move_ok"] for r in evals], "^-", label="agent moves within 0.02")
    axes[2].set_ylabel("accuracy (held-out)")
    for ax in axes:
        ax.set_xlabel("minutes of training")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "training_curve.png", dpi=110)

    keys = (first, "roll_psnr", "pose_err", "move_ok", "push_acc", "pick_acc")
    keys += () if stacked else ("cell_acc", "roll_cell_acc")
    print("| step | minutes | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 2))
    for r in evals[:: args.every] + ([evals[-1]] if evals and (len(evals) - 1) % args.every else []):
        print(f"| {r['step']} | {r['minutes']} | " + " | ".join(str(r["eval"][k]) for k in keys) + " |")
    print(f"wrote {args.out / 'training_curve.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
