"""Regenerate the README's figures from a committed tree: every benchmark whose results it cites.

    make figures                       # all of them, in the order below (about 2.5 h on 2 cores)
    make figures FIGURES="store ray"   # some of them, by name
    python benchmarks/figures.py --list

Runs with the package installed from this tree (``make``'s editable install) and refuses to
start from a tree with uncommitted changes to tracked files (the results directory
aside: it is what this writes), so every results file names a commit that holds the code that
wrote it (``multiworld.bench.provenance``). Benchmarks run one after another with nothing else on
the machine, as the README's figures assume; a benchmark that fails is reported and the rest run.
After each one this checks that its JSON files name this commit. ``tests/test_readme_figures.py``
checks the README against the files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

import multiworld
from multiworld.bench.provenance import tree_state

ROOT = pathlib.Path(__file__).resolve().parents[1]

PY = sys.executable
CLI = [PY, "-m", "multiworld.cli"]


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    argv: list[str]
    writes: tuple[str, ...]  # JSON files under benchmarks/results/ that carry the provenance
    minutes: float  # about, on the 2-core machine with nothing else running


SUITE = ("consistency", "events", "fidelity", "revisit", "drift", "throughput", "summary")
RESULTS = "benchmarks/results/"
PPO_MODEL = ["--backend", "model", "--minutes", "29", "--threads", "1", "--out", RESULTS + "ppo_forage_model"]
PPO_40 = ["--updates", "40", "--minutes", "60", "--threads", "1", "--backend"]
JOBS = [
    Job("throughput", [PY, "benchmarks/throughput.py"], ("throughput.json", "env_overhead.json"), 6),
    Job("store", [PY, "benchmarks/store_bench.py"], ("store.json",), 1),
    Job("autoreset", [PY, "benchmarks/autoreset.py"], ("autoreset.json",), 1),
    Job("model_speed", [PY, "benchmarks/model_speed.py"], ("model_speed.json",), 1),
    Job("vector_speed", [PY, "benchmarks/vector_speed.py"], ("vector_speed.json",), 4),
    Job(
        "checkpoint_speed",
        [PY, "benchmarks/checkpoint_speed.py", "--against", "git:19fd5ae", "--compiled"],
        ("checkpoint_speed.json",),
        3,
    ),
    Job("model_crash", [PY, "benchmarks/model_crash.py"], ("model_crash.json",), 6),
    Job("viewer", [PY, "benchmarks/viewer_bench.py"], ("viewer.json",), 3),
    Job("ray", [PY, "benchmarks/ray_bench.py"], ("ray.json",), 2),
    Job("vizdoom_env", [PY, "benchmarks/vizdoom_env.py"], ("vizdoom/env.json",), 3),
    Job("episode", [PY, "benchmarks/episode.py"], ("episode.json",), 10),
    Job("fidelity", [PY, "benchmarks/fidelity.py"], ("fidelity.json",), 10),
    Job("vizdoom_model", [*CLI, "bench", "vizdoom", "--out", RESULTS + "vizdoom"], ("vizdoom/model.json",), 10),
    Job(
        "suite",
        [*CLI, "bench", "all", "--out", RESULTS + "suite", "--address", "local", "--no-progress"],
        tuple(f"suite/{n}.json" for n in SUITE),
        15,
    ),
    Job(
        "dynamics",
        [*CLI, "bench", "dynamics", "--out", RESULTS + "dynamics", "--threads", "1", "--no-progress"],
        ("dynamics/dynamics.json",),
        7,
    ),
    Job("ppo", [PY, "examples/ppo_shared.py", "--minutes", "29", "--threads", "2"], ("ppo_forage.json",), 31),
    # The same budget in updates (40 = 81,920 agent-steps), inside the model and in the oracle.
    Job(
        "ppo_model_40",
        [PY, "examples/ppo_shared.py", *PPO_40, "model", "--compile-render", "--out", RESULTS + "ppo_forage_model_40"],
        ("ppo_forage_model_40.json",),
        14,
    ),
    Job(
        "ppo_40",
        [PY, "examples/ppo_shared.py", *PPO_40, "oracle", "--out", RESULTS + "ppo_forage_40"],
        ("ppo_forage_40.json",),
        8,
    ),
    *(
        Job(
            f"ppo_{backend}_40_s{seed}",
            [PY, "examples/ppo_shared.py", *PPO_40, backend, *extra, "--seed", str(seed), "--out", RESULTS + stem],
            (stem.rsplit("/", 1)[-1] + ".json",),
            minutes,
        )
        for seed in (1, 2)
        for backend, extra, stem, minutes in (
            ("model", ["--compile-render"], f"ppo_forage_model_40_s{seed}", 14),
            ("oracle", [], f"ppo_forage_40_s{seed}", 8),
        )
    ),
    Job("ppo_compare", [PY, "benchmarks/ppo_compare.py"], ("ppo_forage_compare.json",), 1),
    Job("ppo_model", [PY, "examples/ppo_shared.py", *PPO_MODEL], ("ppo_forage_model.json",), 31),
    Job(
        "rllib",
        [PY, "examples/rllib_ppo.py", "--iters", "30", "--agents", "2", "--out", RESULTS + "rllib_ppo.json"],
        ("rllib_ppo.json",),
        5,
    ),
]


def check_written(job: Job, commit: str) -> list[str]:
    """What is wrong with the JSON files ``job`` should have written at ``commit`` (empty: nothing)."""
    problems = []
    for rel in job.writes:
        path = ROOT / "benchmarks" / "results" / rel
        try:
            prov = json.loads(path.read_text())["provenance"]
        except (OSError, ValueError, KeyError) as e:
            problems.append(f"{rel}: no provenance block ({type(e).__name__}: {e})")
            continue
        if prov.get("commit") != commit or prov.get("dirty") is not False:
            problems.append(f"{rel}: written at {prov.get('commit')} (dirty {prov.get('dirty')}), not at {commit}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all); see --list")
    p.add_argument("--list", action="store_true", help="list the benchmarks and what they write, then exit")
    args = p.parse_args(argv)
    by_name = {j.name: j for j in JOBS}
    if args.list:
        for j in JOBS:
            print(f"{j.name:14} ~{j.minutes:>4g} min  {' '.join(j.argv[1:])}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {list(by_name)}")
    jobs = [by_name[n] for n in args.names] or JOBS
    package = pathlib.Path(multiworld.__file__).resolve()
    if not package.is_relative_to(ROOT):
        print(f"error: python imports multiworld from {package.parent}, not from this tree {ROOT}", file=sys.stderr)
        return 2
    state = tree_state(ROOT)
    if state["commit"] is None:
        print(f"error: {ROOT} is not a git work tree; figures must name the commit that wrote them", file=sys.stderr)
        return 2
    if state["dirty"]:
        more = len(state["changed"]) - 20
        shown = "\n  ".join(state["changed"][:20] + ([f"... and {more} more"] if more > 0 else []))
        print(
            "error: uncommitted changes to tracked files; figures must come from a committed tree, so commit "
            f"or stash these first (or run from a clean `git worktree add`):\n  {shown}",
            file=sys.stderr,
        )
        return 2
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    failed = {}
    for job in jobs:
        print(f"== {job.name} (about {job.minutes:g} min): {' '.join(job.argv[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(job.argv, cwd=ROOT, env=env).returncode
        problems = [f"exit status {rc}"] if rc else check_written(job, state["commit"])
        if tree_state(ROOT)["dirty"]:
            problems.append("the tree has uncommitted changes now (a benchmark wrote outside benchmarks/results/?)")
        print(f"== {job.name}: {'; '.join(problems) or 'ok'} ({(time.perf_counter() - t0) / 60:.1f} min)", flush=True)
        if problems:
            failed[job.name] = problems
    if failed:
        print(f"failed: {json.dumps(failed, indent=1)}", file=sys.stderr)
        return 1
    print(f"all {len(jobs)} written at {state['commit'][:7]}; commit benchmarks/results/ and update the README")
    return 0


if __name__ == "__main__":
    sys.exit(main())
