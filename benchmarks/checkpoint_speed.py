"""Two checkpoints' state update and render timed in one run, interleaved: what a change of weights
or of the model's parts costs, as a ratio that machine load and compile luck do not move.

    python benchmarks/checkpoint_speed.py --against DIR|git:REV [--checkpoint DIR] [--compiled] [--rounds 12]

``git:REV``: the default checkpoint as commit REV shipped it (read from this repository's history).

One world of 4 agents (forage-v0, 64x64), 1 thread, each checkpoint in its own simulator, warmed up
(compiled first when ``--compiled``: the render and the state update). Rounds alternate the two
(which goes first alternates too); a round times ``--steps`` steps of each, the per-step median of
each part per round. The ratio (checkpoint / against) of the medians over rounds, with a 95%
bootstrap interval over rounds, paired by round. Writes benchmarks/results/checkpoint_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import torch
from common import markdown_table, timed_update_and_render, write_results
from tqdm import tqdm

from multiworld.bench import stats
from multiworld.seeds import model_evaluation_seeds
from multiworld.sim.model import ModelSimulator

PARTS = ("state_update", "render")


def from_history(rev: str, out: pathlib.Path) -> pathlib.Path:
    """The default checkpoint's weights and config at commit ``rev``, written into ``out``."""
    root = pathlib.Path(__file__).resolve().parents[1]
    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        blob = subprocess.run(
            ["git", "show", f"{rev}:multiworld/checkpoints/default/{name}"], cwd=root, capture_output=True
        )
        if blob.returncode:
            raise SystemExit(f"--against git:{rev}: no default checkpoint there ({blob.stderr.decode().strip()})")
        (out / name).write_bytes(blob.stdout)
    return out


def _simulator(checkpoint: str | None, compiled: bool) -> ModelSimulator:
    sim = ModelSimulator("forage-v0", 4, checkpoint=checkpoint, compile_render=compiled, compile_update=compiled)
    sim.reset(model_evaluation_seeds(1))
    rng = np.random.default_rng(0)
    for _ in range(10):  # warm-up (and the compile)
        sim.step(rng.integers(0, 8, (1, 4)))
    return sim


def _round(sim: ModelSimulator, steps: int, rng: np.random.Generator) -> dict[str, float]:
    """Per-step median ms of each part over ``steps`` steps."""
    times: dict[str, list[float]] = {k: [] for k in PARTS}
    for _ in range(steps):
        update, render = timed_update_and_render(sim, torch.as_tensor(rng.integers(0, 8, (1, 4))))
        times["state_update"].append(update)
        times["render"].append(render)
    return {k: 1000 * float(np.median(v)) for k, v in times.items()}


def measure(checkpoint: str | None, against: str, compiled: bool, rounds: int, steps: int) -> dict:
    torch.set_num_threads(1)
    sims = {"checkpoint": _simulator(checkpoint, compiled), "against": _simulator(against, compiled)}
    per = {name: {k: [] for k in PARTS} for name in sims}
    rng = np.random.default_rng(1)
    for r in tqdm(range(rounds), desc="compiled" if compiled else "eager"):
        for name in sorted(sims, reverse=bool(r % 2)):
            for k, v in _round(sims[name], steps, rng).items():
                per[name][k].append(v)
    idx = stats.resamples(rounds)
    row: dict = {"path": "compiled" if compiled else "eager"}
    for k in PARTS:
        a, b = np.asarray(per["checkpoint"][k]), np.asarray(per["against"][k])
        row[f"{k}_ms"] = round(float(np.median(a)), 3)
        row[f"{k}_ms_against"] = round(float(np.median(b)), 3)
        row[f"{k}_ratio"] = round(float(np.median(a) / np.median(b)), 4)
        row[f"{k}_ratio_ci"] = stats.interval(lambda i, a=a, b=b: float(np.median(a[i]) / np.median(b[i])), idx)
    return {"row": row, "rounds": {name: per[name] for name in sims}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    p.add_argument("--against", required=True, help="the checkpoint directory to compare with")
    p.add_argument("--compiled", action="store_true", help="also the compiled render and state update")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--steps", type=int, default=40, help="steps of each checkpoint per round")
    args = p.parse_args(argv)
    if args.rounds < 2 or args.steps < 1:
        p.error("--rounds must be >= 2 and --steps >= 1")
    tmp = tempfile.TemporaryDirectory()
    against = args.against
    if against.startswith("git:"):
        against = str(from_history(against[4:], pathlib.Path(tmp.name) / "against"))
    results = [
        measure(args.checkpoint, against, c, args.rounds, args.steps) for c in (False, *([True] * args.compiled))
    ]
    rows = [r["row"] for r in results]
    table_rows = [
        {
            "path": r["path"],
            **{
                k: f"{r[f'{k}_ms']} / {r[f'{k}_ms_against']} ms, ratio {r[f'{k}_ratio']} "
                f"[{r[f'{k}_ratio_ci'][0]:.3f}, {r[f'{k}_ratio_ci'][1]:.3f}]"
                for k in PARTS
            },
        }
        for r in rows
    ]
    payload = {
        "checkpoint": args.checkpoint or "shipped default",
        "against": args.against,
        "agents": 4,
        "image": [64, 64],
        "threads": 1,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "results": rows,
        "per_round": [r["rounds"] for r in results],
    }
    note = (
        "One world of 4 agents, forage-v0, 64x64, 1 thread; per step, checkpoint / against (median over "
        f"{args.rounds} interleaved rounds of {args.steps} steps), ratio [95% bootstrap over rounds].\n\n"
    )
    path = write_results(
        "checkpoint_speed",
        payload,
        note + markdown_table(table_rows),
        checkpoints={"model": args.checkpoint, "against": against},
    )
    tmp.cleanup()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
