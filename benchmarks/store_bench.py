"""World-state store benchmark: commit latency per step and read throughput for training.

    python benchmarks/store_bench.py [--steps 2000] [--dir /tmp] [--quick]

Writes benchmarks/results/store.json and benchmarks/results/store.md. Each step records the
per-step arrays of a world with N agents (poses, actions, rewards, terminations,
truncations, boxes, items_alive, step, events) plus scene tokens (16, 16, 32) float16.
Cases: the store committing every step, every 8 steps, with fsync, on memory://; and,
for comparison, the same fields written through zarr's own ``Array.__setitem__`` API
(one write per array, the marker as a group attribute), which is what the store avoids.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from multiworld.bench.provenance import commit, stamp
from multiworld.state import WorldStore
from multiworld.state import synthetic as syn

ROOT = Path(__file__).resolve().parent
SHAPES = syn.Shapes(size=16, agents=4, boxes=4, items=6, tokens=(16, 16, 32), tokens_dtype="float16")
READ_FIELDS = ("poses", "actions", "rewards", "tokens")


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import zarr

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_avg_at_start": list(os.getloadavg()),
        "git_commit": commit(),
        "zarr": zarr.__version__,
        "numpy": np.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _rows(n_distinct: int = 64) -> list[dict]:
    """Pre-generated rows (cycled), so data generation stays out of the timings."""
    return [syn.step_row(1, t, SHAPES) for t in range(1, n_distinct + 1)]


def _stats(lat: np.ndarray) -> dict:
    lat = np.asarray(lat) * 1e3
    return {
        "mean_ms": float(lat.mean()),
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "steps": len(lat),
    }


def bench_store_writes(
    url: str, steps: int, commit_every: int, fsync: bool, label: str, shard_rows: int | None = None
) -> dict:
    """Per-step latency of ``append`` (+ ``commit`` every ``commit_every`` steps)."""
    rows = _rows()
    with WorldStore.open(url, mode="w", fsync=fsync, shard_rows=shard_rows) as store:
        writer = store.create_world(
            "bench", syn.initial_state(1, SHAPES), scenario="bench", seed=1, **SHAPES.world_kwargs()
        )
        lat = np.empty(steps)
        cpu = 0.0
        for i in tqdm(range(steps), desc=label, leave=False, mininterval=0.5):
            row = dict(rows[i % len(rows)])
            state = dict(row.pop("state"), step=np.int64(i + 1))
            c0, t0 = time.process_time(), time.perf_counter()
            writer.append(state, **row, commit=(i + 1) % commit_every == 0)
            lat[i] = time.perf_counter() - t0
            cpu += time.process_time() - c0
        writer.close()
        assert store.world("bench").steps == steps + 1
    out = _stats(lat)
    out["cpu_ms"] = cpu / steps * 1e3
    out.update(case=label, commit_every=commit_every, fsync=fsync)
    if commit_every > 1:
        commits = lat[commit_every - 1 :: commit_every]
        out["commit_call_p50_ms"] = float(np.percentile(commits, 50) * 1e3)
    return out


def bench_zarr_api_writes(path: str, steps: int) -> dict:
    """Baseline: the same fields through zarr's Array API, one write per array, marker as attribute."""
    import zarr

    rows = _rows()
    shutil.rmtree(path, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = zarr.open_group(path, mode="w")
        first = rows[0]
        fields = {
            **{k: np.asarray(first["state"][k]) for k in ("poses", "boxes", "items_alive", "step")},
            **{k: np.asarray(first[k]) for k in ("actions", "rewards", "terminations", "truncations", "tokens")},
        }
        arrays = {
            k: g.create_array(k, shape=(steps, *v.shape), chunks=(1, *v.shape), dtype=v.dtype, compressors=None)
            for k, v in fields.items()
        }
        arrays["events"] = g.create_array("events", shape=(steps,), chunks=(1,), dtype=str, compressors=None)
        lat = np.empty(steps)
        cpu = 0.0
        for i in tqdm(range(steps), desc="zarr Array API", leave=False, mininterval=0.5):
            row = rows[i % len(rows)]
            c0, t0 = time.process_time(), time.perf_counter()
            for k, a in arrays.items():
                if k == "events":
                    a[i : i + 1] = np.array([json.dumps(row["events"])])
                else:
                    a[i] = row["state"][k] if k in row["state"] else row[k]
            g.attrs["committed_steps"] = i + 1
            lat[i] = time.perf_counter() - t0
            cpu += time.process_time() - c0
    out = _stats(lat)
    out["cpu_ms"] = cpu / steps * 1e3  # zarr's I/O threads included (process time)
    out.update(case="zarr Array API (baseline)", commit_every=1, fsync=False)
    return out


def bench_reads(url: str, steps: int, batch: int = 256) -> list[dict]:
    """Training-style reads of a world of ``steps`` rows (sequential batches, random states, a fork)."""
    rows = _rows()
    results = []
    with WorldStore.open(url, mode="w") as store:
        writer = store.create_world(
            "bench", syn.initial_state(1, SHAPES), scenario="bench", seed=1, **SHAPES.world_kwargs()
        )
        for i in tqdm(range(steps), desc="fill for reads", leave=False, mininterval=0.5):
            row = dict(rows[i % len(rows)])
            writer.append(dict(row.pop("state"), step=np.int64(i + 1)), **row, commit=(i + 1) % 64 == 0)
        writer.close()
        child = store.fork("bench", steps // 2, "child")
        cw = store.writer(child)
        for i in range(steps // 2 + 1, steps + 1):
            row = dict(rows[i % len(rows)])
            cw.append(dict(row.pop("state"), step=np.int64(i)), **row, commit=i % 64 == 0)
        cw.close()

    def sequential(world: str, label: str) -> dict:
        with WorldStore.open(url, mode="r") as store:
            reader = store.world(world)
            n = reader.steps
            t0 = time.perf_counter()
            for start in tqdm(range(0, n, batch), desc=label, leave=False, mininterval=0.5):
                reader.read_many(READ_FIELDS, start, min(n, start + batch))
            dt = time.perf_counter() - t0
        return {"case": label, "steps_per_s": n / dt, "rows": n, "batch": batch, "fields": list(READ_FIELDS)}

    results.append(sequential("bench", "sequential batches (poses, actions, rewards, tokens)"))
    results.append(sequential("child", "same, through a fork (half the rows from the parent)"))

    with WorldStore.open(url, mode="r") as store:
        reader = store.world("bench")
        rng = np.random.default_rng(0)
        idx = rng.integers(0, reader.steps, min(2000, reader.steps))
        t0 = time.perf_counter()
        for t in tqdm(idx, desc="random state(t)", leave=False, mininterval=0.5):
            reader.state(int(t))
        dt = time.perf_counter() - t0
        results.append({"case": "random access state(t) (WorldState, B=1)", "steps_per_s": len(idx) / dt})
        t0 = time.perf_counter()
        for t in tqdm(idx, desc="random row", leave=False, mininterval=0.5):
            reader.read_many(READ_FIELDS, int(t), int(t) + 1)
        dt = time.perf_counter() - t0
        results.append(
            {"case": "random access one row (poses, actions, rewards, tokens)", "steps_per_s": len(idx) / dt}
        )

    if "://" not in url:
        import zarr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = zarr.open_group(url, mode="r")["worlds/bench"]
            n = g.attrs["committed_steps"]
            t0 = time.perf_counter()
            for start in tqdm(range(0, n, batch), desc="plain zarr", leave=False, mininterval=0.5):
                for f in READ_FIELDS:
                    g[f][start : min(n, start + batch)]
            dt = time.perf_counter() - t0
        results.append({"case": "plain zarr.open_group, same batches (for comparison)", "steps_per_s": n / dt})
    return results


def write_markdown(report: dict, path: Path) -> None:
    m = report["machine"]
    lines = [
        "# World-state store benchmark",
        "",
        f"Machine: {m['platform']}, {m['cpu']}, {m['cpu_count']} CPUs; Python {m['python']}, zarr {m['zarr']}, "
        f"numpy {m['numpy']}; git {m['git_commit']}; {m['time']}.",
        f"Load average at start {', '.join(f'{x:.2f}' for x in m['load_avg_at_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in report['load_avg_at_end'])} (the machine is shared: expect noise).",
        "",
        f"World: {SHAPES.agents} agents, {SHAPES.boxes} boxes, {SHAPES.items} items, tokens {SHAPES.tokens} "
        f"{SHAPES.tokens_dtype}; {report['config']['steps']} steps per case. Local disk: {report['config']['dir']}.",
        "",
        "## Commit latency per step (append + commit)",
        "",
        "Wall-clock latency of each `append` (the committing ones write chunks and the marker); "
        "CPU ms is this process's CPU time per step, which load from other processes does not inflate.",
        "",
        "| case | commit every | mean ms | p50 ms | p90 ms | p99 ms | committing append p50 ms | CPU ms/step | steps |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["writes"]:
        commit_p50 = r.get("commit_call_p50_ms", r["p50_ms"])
        lines.append(
            f"| {r['case']} | {r['commit_every']} | {r['mean_ms']:.3f} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} "
            f"| {r['p99_ms']:.3f} | {commit_p50:.3f} | {r['cpu_ms']:.3f} | {r['steps']} |"
        )
    lines += ["", "## Read throughput", "", "| case | steps/s |", "| --- | ---: |"]
    for r in report["reads"]:
        lines.append(f"| {r['case']} | {r['steps_per_s']:,.0f} |")
    lines += ["", *report["notes"], ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir)")
    ap.add_argument("--out", default=str(ROOT / "results"))
    ap.add_argument("--quick", action="store_true", help="few steps, for a smoke run")
    args = ap.parse_args(argv)
    steps = 100 if args.quick else args.steps
    work = Path(tempfile.mkdtemp(prefix="mw-store-bench-", dir=args.dir))
    report = {"machine": machine_info(), "config": {"steps": steps, "dir": str(work)}}
    try:
        cases = [
            (str(work / "every1"), steps, 1, False, "store, local disk (shards of 256 rows)"),
            (str(work / "every8"), steps, 8, False, "store, local disk (shards of 256 rows)"),
            (str(work / "rowfiles"), steps, 1, False, "store, local disk, a file per row (shard_rows=1)", 1),
            (str(work / "fsync"), max(50, steps // 10), 1, True, "store, local disk, fsync=True"),
            (f"memory://bench-{os.getpid()}", steps, 1, False, "store, memory://"),
        ]
        writes = [bench_store_writes(*c) for c in tqdm(cases, desc="write cases")]
        writes.append(bench_zarr_api_writes(str(work / "zarr-api"), max(50, steps // 5)))
        reads = bench_reads(str(work / "reads"), steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.update(writes=writes, reads=reads, load_avg_at_end=list(os.getloadavg()), provenance=stamp())
    base = next(r for r in writes if r["case"].startswith("zarr"))
    one = writes[0]
    report["notes"] = [
        "Notes:",
        f"- Committing every step costs {one['p50_ms']:.2f} ms (p50) per step on local disk; zarr's own "
        f"Array API needs {base['p50_ms']:.2f} ms for the same fields (about 1 ms of event-loop and codec "
        "overhead per array write), which is why the store writes chunks and the marker itself.",
        "- On local disk rows go into shard files in place (pwrite of the row and of its index entry; "
        "no file created per step); the commit point is the marker (the world's zarr.json, written "
        "to a temp file and renamed). With `shard_rows=1` every row of every array is a new file "
        "(the object-store layout), shown for comparison.",
        "- Committing every 8 steps holds 7 rows in memory and writes 8 rows of chunks plus one marker "
        "in the committing append (its p50 in the last column).",
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "store.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, out / "store.md")
    print((out / "store.md").read_text())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
