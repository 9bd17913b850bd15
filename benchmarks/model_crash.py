"""Crash trials of a model run: ``kill -9`` at random moments of ``multiworld run --backend model``.

A clean run first records the reference store. Each trial starts the same run (same scenario,
agents, steps and seed: the run is deterministic), draws a row uniformly from the run's steps,
waits until the store has committed it (watching the commit marker), then SIGKILLs the run after
a further delay drawn uniformly over one step's time: the kill lands anywhere in the run, inside
a step (model, render, append, commit) as often as between steps, whatever the machine's load.
After the kill:

1. the store opens;
2. every committed row of every world, and every world attribute but the creation time, equals
   the reference's (tokens, poses, boxes, items, actions, rewards, flags, events, frames);
3. the last world is resumed through the env from its last committed row
   (``reset(options={"from": ...})``) and the reference's actions replayed: views, rewards, events,
   scene tokens and the symbolic readout equal the reference's rows step for step, and the
   continued rows appended to the crashed world make it equal to the reference world.

Writes ``benchmarks/results/model_crash.{json,md}``::

    OMP_NUM_THREADS=1 python benchmarks/model_crash.py [--trials 20] [--agents 4] [--steps 150]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from multiworld.state import WorldStore

IGNORED_ATTRS = {"created", "committed_steps"}


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    scenario: str = "forage-v0"
    agents: int = 4
    steps: int = 150
    seed: int = 0

    def command(self, out: pathlib.Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "multiworld.cli",
            "run",
            "--backend",
            "model",
            "--scenario",
            self.scenario,
            "--agents",
            str(self.agents),
            "--steps",
            str(self.steps),
            "--seed",
            str(self.seed),
            "--out",
            str(out),
            "--no-video",
        ]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _first_world(out: pathlib.Path) -> pathlib.Path:
    """The group document of the run's first world: it exists once row 0 is committed."""
    return out / "world.zarr" / "worlds" / "ep000" / "zarr.json"


def _committed(path: pathlib.Path) -> int:
    """The committed rows of a world, from its group document (replaced atomically: never torn)."""
    try:
        return int(json.loads(path.read_text())["attributes"]["committed_steps"])
    except (OSError, ValueError, KeyError):
        return 0


def _wait_for(path: pathlib.Path, proc: subprocess.Popen, rows: int = 1, timeout: float = 600.0) -> float:
    """Wait until the world of group document ``path`` has ``rows`` committed rows (or the run ended)."""
    start = time.monotonic()
    while _committed(path) < rows:
        if proc.poll() is not None:
            if rows <= 1:
                raise RuntimeError(f"the run exited ({proc.returncode}) before committing its first world")
            break
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{path} did not reach {rows} rows in {timeout:g} s")
        time.sleep(0.001)
    return time.monotonic()


def read_world(reader) -> dict:
    """Every committed row and attribute of a stored world."""
    n = reader.steps
    rows = {name: reader.read(name, 0, n) for name in reader.arrays if name not in reader.static}
    attrs = {k: v for k, v in reader.attrs.items() if k not in IGNORED_ATTRS}
    return {"steps": n, "rows": rows, "static": reader.static, "attrs": attrs}


def reference_run(out: pathlib.Path, cfg: TrialConfig) -> dict:
    """The clean run: its worlds and how long its steps took (the window the kills are drawn from)."""
    out = pathlib.Path(out)
    proc = subprocess.Popen(cfg.command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    first = _wait_for(_first_world(out), proc)
    _, err = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"the reference run failed: {err.decode()[-2000:]}")
    stepping = time.monotonic() - first
    with WorldStore.open(str(out / "world.zarr"), mode="r") as store:
        worlds = {w: read_world(store.world(w)) for w in store.worlds()}
    rows = sum(w["steps"] for w in worlds.values())
    return {"worlds": worlds, "stepping_seconds": stepping, "step_seconds": stepping / max(rows - 1, 1)}


def _rows_equal(mine: dict, ref: dict, n: int) -> list[str]:
    """Names of the arrays whose first ``n`` rows differ (NaN-aware for floats)."""
    bad = []
    for name, rows in mine["rows"].items():
        want = ref["rows"][name][:n]
        if isinstance(rows, list):
            same = rows[:n] == list(want)
        else:
            same = rows.shape[0] >= n and np.array_equal(rows[:n], want, equal_nan=rows.dtype.kind == "f")
        if not same:
            bad.append(name)
    for name, value in mine["static"].items():
        if not np.array_equal(value, ref["static"][name]):
            bad.append(f"static {name}")
    if mine["attrs"] != ref["attrs"]:
        bad.append("attributes")
    return bad


def check_store(path: str, reference: dict) -> tuple[dict[str, int], list[str]]:
    """Committed rows per world, and the problems found (empty: intact)."""
    problems = []
    with WorldStore.open(path, mode="r") as store:
        committed = {}
        for w in store.worlds():
            if w not in reference["worlds"]:
                problems.append(f"world {w} is not in the reference run")
                continue
            mine = read_world(store.world(w))
            ref = reference["worlds"][w]
            committed[w] = mine["steps"]
            if mine["steps"] > ref["steps"]:
                problems.append(f"world {w} has {mine['steps']} rows, the reference {ref['steps']}")
            problems += [f"world {w}: {name} differs" for name in _rows_equal(mine, ref, mine["steps"])]
    return committed, problems


def resume_and_continue(path: str, world: str, cfg: TrialConfig, reference: dict) -> list[str]:
    """Resume ``world`` from its last committed row through the env, replay the reference's actions to
    the end of the reference world, append the continued rows; returns the differences found."""
    import multiworld

    ref = reference["worlds"][world]
    problems = []
    with WorldStore.open(path, mode="a") as store:
        last = store.world(world).steps - 1
        env = multiworld.parallel_env(cfg.scenario, num_agents=cfg.agents, backend="model", max_cycles=10**6)
        obs, _ = env.reset(options={"from": {"store": path, "world": world, "step": last}})
        sim, agents = env.unwrapped.sim, env.possible_agents
        frames = ref["rows"].get("frames")
        if frames is not None and not all(np.array_equal(obs[a], frames[last][i]) for i, a in enumerate(agents)):
            problems.append(f"views at the resumed row {last}")
        with store.writer(world) as writer:
            for t in range(last + 1, ref["steps"]):
                actions = ref["rows"]["actions"][t]
                obs, rewards, *_ = env.step({a: int(actions[i]) for i, a in enumerate(agents)})
                got = {
                    "frames": np.stack([obs[a] for a in agents]),
                    "rewards": np.array([rewards[a] for a in agents], np.float32),
                    "tokens": sim.tokens()[0],
                    "events": env.unwrapped.last_events(),
                }
                for name, value in got.items():
                    want = ref["rows"][name][t] if name in ref["rows"] else None
                    if want is not None and not (value == want if name == "events" else np.array_equal(value, want)):
                        problems.append(f"step {t}: {name}")
                state = sim.world_state()
                writer.append(
                    state,
                    actions,
                    got["rewards"],
                    ref["rows"]["terminations"][t],
                    ref["rows"]["truncations"][t],
                    events=got["events"],
                    tokens=got["tokens"],
                    frames=got["frames"] if frames is not None else None,
                )
        env.close()
    with WorldStore.open(path, mode="r") as store:
        mine = read_world(store.world(world))
    if mine["steps"] != ref["steps"]:
        problems.append(f"the continued world has {mine['steps']} rows, the reference {ref['steps']}")
    problems += [f"continued world: {name} differs" for name in _rows_equal(mine, ref, ref["steps"])]
    return problems


def crash_trial(
    out: pathlib.Path, cfg: TrialConfig, reference: dict, rng: np.random.Generator, in_steps: bool = True
) -> dict:
    """One kill -9 trial (see the module docstring); ``in_steps=False`` draws the moment from the
    process start instead (uniformly over the reference's stepping time: start-up and store
    creation included)."""
    out = pathlib.Path(out)
    first_rows = reference["worlds"]["ep000"]["steps"]
    target = int(rng.integers(1, first_rows + 1))  # the first world's rows committed before the kill
    delay = float(rng.uniform(0.0, reference["step_seconds"] if in_steps else reference["stepping_seconds"]))
    proc = subprocess.Popen(cfg.command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        if in_steps:
            _wait_for(_first_world(out), proc, rows=target)
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
    path = str(out / "world.zarr")
    result = {
        "target_row": target if in_steps else None,
        "delay_seconds": round(delay, 4),
        "finished_before_kill": finished,
    }
    if not (out / "world.zarr").exists():
        return result | {"committed_rows": 0, "worlds": 0, "intact": True, "resume_exact": True, "problems": []}
    committed, problems = check_store(path, reference)
    result |= {"committed_rows": int(sum(committed.values())), "worlds": len(committed)}
    if committed and not problems:
        world = sorted(committed)[-1]
        result["resumed"] = {"world": world, "step": committed[world] - 1}
        resume_problems = resume_and_continue(path, world, cfg, reference)
    else:
        resume_problems = [] if not problems else ["not resumed: the store was not intact"]
    result |= {"intact": not problems, "resume_exact": not resume_problems, "problems": problems + resume_problems}
    return result


def main() -> None:
    from common import markdown_table, write_results

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--scenario", default="forage-v0")
    p.add_argument("--seed", type=int, default=0, help="the run's world seed (and the kill moments' RNG)")
    args = p.parse_args()
    cfg = TrialConfig(args.scenario, args.agents, args.steps, args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="model-crash-") as tmp:
        reference = reference_run(pathlib.Path(tmp) / "reference", cfg)
        ref_rows = {w: r["steps"] for w, r in reference["worlds"].items()}
        print(f"reference: {ref_rows} rows, stepping {reference['stepping_seconds']:.2f} s", flush=True)
        trials = []
        for i in range(args.trials):
            r = crash_trial(pathlib.Path(tmp) / f"trial{i:02d}", cfg, reference, rng)
            trials.append(r)
            print(f"trial {i}: {r}", flush=True)
    intact = sum(r["intact"] for r in trials)
    exact = sum(r["resume_exact"] for r in trials)
    mid = sum(0 < r["committed_rows"] < sum(ref_rows.values()) for r in trials)
    payload = {
        "config": dataclasses.asdict(cfg),
        "trials": len(trials),
        "intact": intact,
        "resume_exact": exact,
        "killed_mid_run": mid,
        "reference_rows": ref_rows,
        "reference_stepping_seconds": round(reference["stepping_seconds"], 3),
        "seconds": round(time.perf_counter() - t0, 1),
        "results": trials,
    }
    rows = [
        {
            "trial": i,
            "killed after row": r["target_row"],
            "+ delay (s)": r["delay_seconds"],
            "committed rows": r["committed_rows"],
            "resumed from": r.get("resumed", {}).get("step", "-"),
            "intact": r["intact"],
            "resume exact": r["resume_exact"],
        }
        for i, r in enumerate(trials)
    ]
    summary = (
        f"`multiworld run --backend model --scenario {cfg.scenario} --agents {cfg.agents} --steps {cfg.steps} "
        f"--seed {cfg.seed}` killed with SIGKILL at a random moment of its steps, {len(trials)} times "
        f"(once a random row is committed, after a random fraction of a step: {reference['step_seconds'] * 1000:.0f} "
        "ms per step in the clean run).\n\n"
        f"**{intact} of {len(trials)} stores intact** (every committed row equal to the clean run's), "
        f"**{exact} of {len(trials)} resumes exact** (resumed from the last committed row, the clean run's "
        f"actions replayed: views, rewards, events, tokens and readout equal its rows to the end). "
        f"{mid} kills landed mid-run.\n\n"
    )
    write_results("model_crash", payload, summary + markdown_table(rows), checkpoints={"model": None})
    print(summary)


if __name__ == "__main__":
    main()
