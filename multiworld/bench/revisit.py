"""Revisit / permanence: an agent turns away and back, or walks away and back, in a still world.

Agent 0 takes k TURN_RIGHT then k TURN_LEFT (``turn``) or k FORWARD then k BACK (``walk``)
while every other agent does NOOP; it ends where it started (walks where the oracle does not
come back exactly, e.g. blocked by a wall, are dropped). Reported per simulator:
``revisit_psnr``, PSNR between the agent's view before leaving and after returning (the oracle
gives identical views: the cap, 100 dB), and ``return_psnr``, PSNR of the view after
returning against the oracle's view there.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from multiworld.bench import report
from multiworld.bench.metrics import psnr
from multiworld.bench.runner import Runner, Settings
from multiworld.bench.variants import VARIANTS, SimSpec
from multiworld.seeds import check_held_out, probe_seeds
from multiworld.world.state import Action

MOVES = {"turn": (Action.TURN_RIGHT, Action.TURN_LEFT), "walk": (Action.FORWARD, Action.BACK)}


@dataclasses.dataclass(frozen=True)
class Sizes:
    agents: int
    worlds: int
    moves: tuple[tuple[str, int], ...]  # (mode, k): k steps away, then k back


QUICK = Sizes(agents=4, worlds=6, moves=(("turn", 3), ("turn", 6), ("turn", 12), ("walk", 2), ("walk", 4)))
FULL = Sizes(agents=4, worlds=16, moves=(*QUICK.moves, ("walk", 8)))


@dataclasses.dataclass(frozen=True)
class RevisitTask:
    spec: SimSpec
    num_agents: int
    seeds: tuple[int, ...]
    mode: str
    k: int
    variants: tuple[str, ...] = VARIANTS

    def __post_init__(self) -> None:
        check_held_out(self.seeds)


def _plan(mode: str, k: int, worlds: int, agents: int) -> np.ndarray:
    """(2k, B, N) joint actions: agent 0 leaves and comes back, the others wait."""
    away, back = MOVES[mode]
    plan = np.full((2 * k, worlds, agents), int(Action.NOOP), np.int64)
    plan[:k, :, 0], plan[k:, :, 0] = int(away), int(back)
    return plan


def run_revisit_task(task: RevisitTask) -> dict:
    """``{"valid": V, variant: {"revisit_psnr": sum, "return_psnr": sum}}`` over valid worlds."""
    if task.mode not in MOVES:
        raise ValueError(f"unknown revisit mode {task.mode!r}; valid: {sorted(MOVES)}")
    seeds, worlds = list(task.seeds), len(task.seeds)
    plan = _plan(task.mode, task.k, worlds, task.num_agents)
    views = {}
    valid = None
    for v in ("oracle", *[x for x in task.variants if x != "oracle"]):
        sim = task.spec.build(v, task.num_agents, worlds)
        try:
            first = sim.reset(seeds)
            start_pose = first.poses[:, 0].copy()
            for a in plan:
                last = sim.step(a)
            views[v] = (first.rgb[:, 0], last.rgb[:, 0])
            if v == "oracle":
                valid = np.all(np.abs(last.poses[:, 0] - start_pose) < 1e-4, axis=-1)
        finally:
            sim.close()
    out = {"valid": int(valid.sum())}
    ref_last = views["oracle"][1]
    for v in task.variants:
        before, after = views[v]
        out[v] = {
            "revisit_psnr": float(psnr(before, after)[valid].sum()),
            "return_psnr": float(psnr(after, ref_last)[valid].sum()),
        }
    return out


def summarize_revisit(results: list[tuple[RevisitTask, dict]], variants=VARIANTS) -> dict:
    """``{variant: {"turn": {k: {...means}}, "walk": ...}, "valid": {...}}``."""
    out = {v: {} for v in variants}
    valid = {}
    for task, res in results:
        key = (task.mode, str(task.k))
        valid[key] = valid.get(key, 0) + res["valid"]
        for v in variants:
            acc = out[v].setdefault(task.mode, {}).setdefault(str(task.k), {"revisit_psnr": 0.0, "return_psnr": 0.0})
            for m in acc:
                acc[m] += res[v][m]
    for v in variants:
        for mode, by_k in out[v].items():
            for k, acc in by_k.items():
                n = valid[(mode, k)]
                for m in acc:
                    acc[m] = round(acc[m] / n, 3) if n else None
    out["valid_worlds"] = {f"{m}-{k}": n for (m, k), n in valid.items()}
    return out


def run(st: Settings, z: Sizes, runner: Runner, out: pathlib.Path) -> dict:
    """Revisit PSNR by move: ``revisit.*``."""
    seeds, vs = tuple(probe_seeds("revisit", z.worlds)), st.variants
    tasks = [RevisitTask(st.spec, z.agents, seeds, mode, k, vs) for mode, k in z.moves]
    raw = runner.map(run_revisit_task, tasks, desc="revisit")
    s = summarize_revisit(list(zip(tasks, raw, strict=True)), vs)
    results = {v: s[v] for v in vs}
    for v in vs:
        turns = s[v].get("turn", {})
        if turns:
            k = max(turns, key=int)
            results[v]["revisit_psnr_turn_max"] = turns[k]["revisit_psnr"]
            results[v]["return_psnr_turn_max"] = turns[k]["return_psnr"]
    results["details"] = {"valid_worlds": s["valid_worlds"]}
    config = {**st.config(), "agents": z.agents, "worlds": z.worlds, "moves": [list(m) for m in z.moves]}
    report.write_json(out, "revisit", results, config)
    rows = [
        {"move": f"{mode} x{k} and back", **{f"{v} revisit": s[v][mode][str(k)]["revisit_psnr"] for v in vs},
         **{f"{v} vs oracle": s[v][mode][str(k)]["return_psnr"] for v in vs}}
        for mode, k in z.moves
    ]  # fmt: skip
    title = "Revisit: views of the same place before and after (PSNR, dB)"
    report.write_markdown(out, "revisit", title, [("By move", report.markdown_table(rows))], config)
    for mode in sorted({m for m, _ in z.moves}):
        ks = [k for m, k in z.moves if m == mode]
        report.plot_lines(
            out / f"revisit_{mode}.png",
            {v: (ks, [s[v][mode][str(k)]["revisit_psnr"] for k in ks]) for v in vs},
            f"{mode} steps away (then back)",
            "PSNR before vs after (dB, capped at 100)",
            f"Revisit ({mode})",
        )
    return results


def headline(results: dict, variants) -> list[tuple[str, str]]:
    """(key, label) of this benchmark's rows in the summary table."""
    return [
        (
            "revisit_psnr_turn_max",
            "revisit PSNR, turn 180 deg and back (dB; a simulator that never changes scores 100)",
        ),
        ("return_psnr_turn_max", "... the view after returning vs the oracle's (dB)"),
    ]
