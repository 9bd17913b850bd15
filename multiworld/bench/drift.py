"""Drift over long rollouts, and view fidelity by horizon, from lockstep rollouts.

Every simulator takes the oracle policy's joint actions; at the recorded steps we compare
each simulator's views with the oracle's (PSNR and SSIM per agent view, averaged; and the PSNR of
the mean MSE, which views rendered exactly right, capped at 100 dB, cannot dominate) and its
decoded ``world_state()`` with the oracle's state: the model card's ``accuracy``,
``cell_accuracy`` and ``agent_accuracy`` (:func:`multiworld.bench.state_accuracy.symbolic_accuracy`)
and a per-kind breakdown (:func:`state_accuracy`). For the private baseline every private copy
is scored against the oracle (mean over copies).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from multiworld.bench import report
from multiworld.bench.metrics import PSNR_CAP, mse, psnr, ssim
from multiworld.bench.rollout import lockstep
from multiworld.bench.runner import Runner, Settings, chunks
from multiworld.bench.state_accuracy import state_accuracy, symbolic_accuracy
from multiworld.bench.variants import VARIANTS, SimSpec
from multiworld.seeds import check_held_out, probe_seeds
from multiworld.world.render import Raycaster, RenderConfig, entity_offsets

DRIFT_STEPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclasses.dataclass(frozen=True)
class Sizes:
    agents: int
    worlds: int
    steps: int


QUICK = Sizes(agents=4, worlds=2, steps=100)
FULL = Sizes(agents=4, worlds=4, steps=1000)


@dataclasses.dataclass(frozen=True)
class DriftTask:
    spec: SimSpec
    num_agents: int
    seeds: tuple[int, ...]
    record: tuple[int, ...] = DRIFT_STEPS
    variants: tuple[str, ...] = VARIANTS
    with_state: bool = True
    policy: str = "scripted"

    def __post_init__(self) -> None:
        check_held_out(self.seeds)


def _decoded(sim, num_agents: int):
    """The simulator's decoded state(s) (every cell as read out at this step, for the model) and
    how many times to repeat the oracle's worlds."""
    copies = getattr(sim, "copies", None)
    if copies is not None:
        inner = getattr(sim, "inner", None)
        return (inner.decoded_state() if hasattr(inner, "decoded_state") else copies()), num_agents
    return (sim.decoded_state() if hasattr(sim, "decoded_state") else sim.world_state()), 1


def entity_mask(sensor: Raycaster, state) -> np.ndarray:
    """(B, N, H, W) bool: the pixels of every view where the oracle sees a box, an item or an agent."""
    off = entity_offsets(state.size, state.boxes.shape[1], state.items.shape[1])
    ids = sensor.render(state, buffers=True).entity.numpy()
    return (ids >= off["box"]) & (ids < off["end"])


def run_drift_task(task: DriftTask) -> dict:
    """``{variant: {step: {"psnr", "ssim", accuracies..., "psnr_worlds"}}}`` with sums over worlds
        (and a count); ``psnr_worlds`` / ``mse_worlds`` are each world's mean view PSNR / MSE (for the
    bootstrap intervals).
        Simulators without a state to read out (``has_state`` False: the stacked-frames baseline,
        the bounds) get no accuracies."""
    record = set(task.record)
    out = {v: {} for v in task.variants}
    sensor = Raycaster(RenderConfig())

    def hook(t, oracle, ref, sims, obs):
        if t not in record:
            return
        truth = oracle.world_state()
        entity = entity_mask(sensor, truth)
        for v in task.variants:
            rgb = ref.rgb if v == "oracle" else obs[v].rgb
            row = {"worlds": truth.num_worlds}
            # Pixels where the oracle sees an item, a box or another agent: whole-view PSNR is
            # mostly walls and floor and barely notices a missing item or body.
            sq = ((np.asarray(rgb, np.float64) - np.asarray(ref.rgb, np.float64)) ** 2).mean(-1)
            row["entity_sse"] = float((sq * entity).sum())
            row["entity_pixels"] = float(entity.sum())
            row["psnr"] = float(psnr(rgb, ref.rgb).mean(axis=1).sum())
            row["mse"] = float(mse(rgb, ref.rgb).mean(axis=1).sum())
            row["ssim"] = float(ssim(rgb, ref.rgb).mean(axis=1).sum())
            row["psnr_worlds"] = [round(float(x), 4) for x in psnr(rgb, ref.rgb).mean(axis=1)]
            row["mse_worlds"] = [float(x) for x in mse(rgb, ref.rgb).mean(axis=1)]
            if task.with_state and (v == "oracle" or getattr(sims[v], "has_state", True)):
                if v == "oracle":
                    pred, rep = truth, 1
                else:
                    pred, rep = _decoded(sims[v], task.num_agents)
                reference = truth.select(np.repeat(np.arange(truth.num_worlds), rep))
                acc = {**state_accuracy(pred, reference), **symbolic_accuracy(pred, reference)}
                row.update({k: x * truth.num_worlds for k, x in acc.items()})
            out[v][str(t)] = row

    lockstep(
        task.spec, task.variants, task.num_agents, list(task.seeds), max(task.record), hook, task.policy, task.seeds[0]
    )
    return out


def summarize_drift(results: list[dict], variants=VARIANTS) -> dict:
    """Means over all worlds: ``{variant: {"by_step": {step: {metric: mean}}}}``."""
    out = {}
    for v in variants:
        by_step = {}
        for step in sorted({s for r in results for s in r[v]}, key=int):
            rows = [r[v][step] for r in results if step in r[v]]
            worlds = sum(row["worlds"] for row in rows)
            per_world = ("psnr_worlds", "mse_worlds")
            keys = [k for k in rows[0] if k != "worlds" and k not in per_world]
            by_step[step] = {k: round(sum(row[k] for row in rows) / worlds, 4) for k in keys}
            for k in per_world:
                by_step[step][k] = [x for row in rows for x in row.get(k, [])]
            # PSNR of the mean MSE: not dominated by views that are exactly right (capped PSNR).
            mean_mse = sum(row["mse"] for row in rows) / worlds
            by_step[step]["psnr_of_mean_mse"] = round(
                float(min(PSNR_CAP, 10 * np.log10(255.0**2 / mean_mse))) if mean_mse > 0 else PSNR_CAP, 3
            )
            sse, pixels = (sum(row.get(k, 0.0) for row in rows) for k in ("entity_sse", "entity_pixels"))
            by_step[step]["entity_psnr"] = (
                None
                if not pixels
                else round(float(min(PSNR_CAP, 10 * np.log10(255.0**2 * pixels / sse))), 3)
                if sse > 0
                else PSNR_CAP
            )
            by_step[step]["entity_pixels_per_world"] = round(pixels / max(1, worlds), 1)
            by_step[step]["worlds"] = worlds
        out[v] = {"by_step": by_step}
    return out


def rollouts(st: Settings, runner: Runner, bench: str, worlds: int, agents: int, record, with_state: bool) -> dict:
    """:func:`summarize_drift` of lockstep rollouts on ``worlds`` probe worlds of ``bench``, two per task."""
    seeds = probe_seeds(bench, worlds)
    tasks = [DriftTask(st.spec, agents, chunk, tuple(record), st.variants, with_state) for chunk in chunks(seeds, 2)]
    return summarize_drift(runner.map(run_drift_task, tasks, desc=f"{bench} rollouts"), st.variants)


def run(st: Settings, z: Sizes, runner: Runner, out: pathlib.Path) -> dict:
    """Drift of views and decoded state over a long rollout: ``drift.*``."""
    record = sorted({s for s in DRIFT_STEPS if s <= z.steps} | {z.steps})
    vs = st.variants
    s = rollouts(st, runner, "drift", z.worlds, z.agents, record, with_state=True)
    last = str(record[-1])
    results = {
        v: {
            **{f"{k}@{last}": x for k, x in s[v]["by_step"][last].items() if k not in ("worlds", "psnr_worlds")},
            "by_step": s[v]["by_step"],
        }
        for v in vs
    }
    config = {**st.config(), "steps": z.steps, "worlds": z.worlds, "agents": z.agents}
    report.write_json(out, "drift", results, config)
    metrics = ["psnr", "psnr_of_mean_mse", "accuracy", "cell_accuracy", "agent_accuracy", "box_recall"]
    metrics += ["item_recall", "agent_cells"]
    rows = [{"metric": f"{m} @ step {last}", **{v: results[v].get(f"{m}@{last}") for v in vs}} for m in metrics]
    by_step = ("psnr", "accuracy", "agent_accuracy")
    step_rows = [
        {"step": t, **{f"{v} {m}": s[v]["by_step"][str(t)].get(m) for v in vs for m in by_step}} for t in record
    ]
    report.write_markdown(
        out,
        "drift",
        "Drift of views and decoded state",
        [("At the last step", report.markdown_table(rows)), ("By step", report.markdown_table(step_rows))],
        config,
    )
    for metric, label in (
        ("psnr", "view PSNR (dB, capped at 100)"),
        ("accuracy", "decoded-state accuracy"),
        ("agent_accuracy", "agent accuracy (cell and heading bin)"),
        ("box_recall", "box recall"),
    ):
        series = {v: (record, [s[v]["by_step"][str(t)].get(metric) for t in record]) for v in vs}
        report.plot_lines(out / f"drift_{metric}.png", series, "step", label, f"Drift: {label}", logx=True)
    return results


def headline(results: dict, variants) -> list[tuple[str, str]]:
    """(key, label) of this benchmark's rows in the summary table: the last step's headline metrics."""
    heads = ("accuracy@", "agent_accuracy@", "box_recall@", "psnr@", "psnr_of_mean_mse@")
    return [(k, f"drift: {k.replace('@', ' at step ')}") for k in results[variants[0]] if k.startswith(heads)]
