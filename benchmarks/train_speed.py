"""Training throughput: one process, one process with a data worker, and Ray Train workers.

    python benchmarks/train_speed.py [--preset default] [--steps 50] [--threads 1] [--ray-workers 2] [--rounds 2]

The same data (forage-v0, 4 agents, 16 oracle episodes of 48 steps, training seeds) and preset
in three set-ups, each a fresh run of ``--steps`` steps on the CPU in fp32:
``1 process`` (batches made inside the training step), ``1 process + 1 data worker``
(``--workers 1``) and ``N Ray Train workers`` (DDP over gloo, one local Ray instance, batches
made inside each rank's step). Per set-up: samples/s (all ranks) and the share of the step
spent waiting for data, both from the last logged window (after warm-up, before the final
evaluation). The set-ups take turns for ``--rounds`` rounds, so a change in the machine's load
shows as a difference between rounds rather than between set-ups.
Writes benchmarks/results/train_speed.{json,md}.
Issue target: waiting for data <= 5% of a step with one data worker.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

from common import markdown_table, write_results


def _last_window(out: pathlib.Path) -> dict:
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    windows = [r for r in log if "samples_per_s" in r]
    if not windows:
        raise RuntimeError(f"{out}: no logged training window; run more steps than the preset's log_every")
    return windows[-1]


def measure(setup: str, spec, ray_workers: int = 0, round_: int = 0) -> dict:
    from multiworld.models.ray_train import fit_on_ray
    from multiworld.models.training import run_training

    if ray_workers:
        fit_on_ray(spec, ray_workers, address="local", max_failures=0)
    else:
        run_training(spec)
    last = _last_window(pathlib.Path(spec.out))
    return {
        "round": round_,
        "setup": setup,
        "processes": max(ray_workers, 1),
        "data_workers": spec.workers,
        "threads": spec.threads,
        "steps": last["step"],
        "samples_per_s": last["samples_per_s"],
        "data_wait_percent": round(100 * last["data_wait_fraction"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    import dataclasses

    from multiworld.models.rollouts import record_rollouts
    from multiworld.models.training import TrainSpec

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ray-workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        data = root / "data.zarr"
        record_rollouts(data, "forage-v0", 4, 16, 48, seed=0, frames=False, progress=False)
        base = TrainSpec(
            data=[str(data)], out="", preset=args.preset, max_steps=args.steps, minutes=60.0, device="cpu",
            precision="fp32", threads=args.threads, progress=False,
        )  # fmt: skip
        setups = [("1 process", 0, 0), ("1 process + 1 data worker", 1, 0)]
        if args.ray_workers:
            setups.append((f"{args.ray_workers} Ray Train workers", 0, args.ray_workers))
        for r in range(args.rounds):
            for i, (name, workers, ray_workers) in enumerate(setups):
                spec = dataclasses.replace(base, out=str(root / f"run{r}-{i}"), workers=workers)
                rows.append(measure(name, spec, ray_workers, r))
                print(rows[-1], file=sys.stderr)
    payload = {
        "preset": args.preset,
        "data": "forage-v0, 4 agents, 16 episodes x 48 steps",
        "results": rows,
        "load_average_at_end": os.getloadavg(),
        "target": {"data_wait_percent_with_one_worker": 5},
    }
    note = (
        f"`multiworld train --preset {args.preset}`, CPU, fp32, {args.threads} torch thread(s) per process, "
        f"{args.steps} steps per set-up, {args.rounds} rounds; samples (sequences) per second and data wait from "
        f"the last logged window; load average at the end {[round(x, 1) for x in os.getloadavg()]} "
        f"({os.cpu_count()} CPUs).\n\n"
    )
    path = write_results("train_speed", payload, note + markdown_table(rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
