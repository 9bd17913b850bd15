"""Fidelity of the learned world model against the oracle, free-running, same actions to both.

Both start from the same world of each held-out seed: the oracle from its scene, the model from
its observations at reset (``init="map"``: every agent's view and pose plus the top-down map;
``init="views"``: the views and poses only). A policy acting on the *oracle's* state picks the
joint actions, which are fed to both. The model runs with no oracle in the loop.

Metrics:
- ``psnr[h]`` / ``ssim[h]``: mean over worlds and agents of the per-frame PSNR (dB, 8-bit RGB) and
  SSIM between the model's view and the oracle's view after ``h`` steps (its deterministic render,
  keyed ``"deterministic"``).
- ``sharpness[h]``: the fine detail of the model's views relative to the oracle's (mean squared
  neighbour difference, :func:`multiworld.bench.metrics.sharpness`; 1 = as sharp, below = blurred).
- ``accuracy[h]`` (decoded symbolic-state accuracy): the fraction of correct entries among all
  S x S cells and all N agents of every world. A cell is correct when its decoded class tuple
  (wall material or floor, floor pattern, goal, box present, item present) equals the oracle's;
  an agent is correct when its decoded cell (floor(y), floor(x)) and heading bin (8 bins of 45
  degrees) equal the oracle's. ``cell_accuracy`` and ``agent_accuracy`` are reported apart.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import numpy as np

from multiworld.bench import drift, report, stats
from multiworld.bench.metrics import sharpness, ssim
from multiworld.bench.runner import Runner, Settings
from multiworld.bench.state_accuracy import symbolic_accuracy
from multiworld.bench.variants import SimSpec
from multiworld.seeds import check_held_out, probe_seeds
from multiworld.world.arena import generate
from multiworld.world.dynamics import step as world_step
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import get_scenario

HORIZONS = (1, 10, 100)  # of the benchmark


@dataclasses.dataclass(frozen=True)
class Sizes:
    worlds: int
    agents: tuple[int, ...]  # the headline is at 4 agents


QUICK = Sizes(worlds=4, agents=(4,))
FULL = Sizes(worlds=8, agents=(2, 4, 8, 16))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-frame PSNR of uint8/float images (..., H, W, 3) in 0..255."""
    a = np.asarray(a, np.float64).reshape(-1, *a.shape[-3:])
    b = np.asarray(b, np.float64).reshape(-1, *b.shape[-3:])
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def evaluate_fidelity(
    model,
    scenario: str,
    num_agents: int,
    seeds: list[int],
    horizons: tuple[int, ...] = (1, 10, 100),
    accuracy_horizons: tuple[int, ...] = (1, 10, 100, 1000),
    policy: str = "scripted",
    init: str = "map",
    policy_seed: int = 0,
) -> dict:
    """Run model and oracle side by side on ``seeds`` (one world each); see the module docstring.

    ``model``: a loaded world model or a checkpoint path."""
    from multiworld.agents.policies import make_policy
    from multiworld.sim.model import ModelSimulator

    sc = get_scenario(scenario)
    arena = sc.arena_config(num_agents=num_agents)
    oracle = generate(arena, seeds)
    raycaster = Raycaster(RenderConfig())
    loaded = not isinstance(model, (str, type(None))) and hasattr(model, "renderer")
    kw = {"model": model} if loaded else {"checkpoint": model}
    sim = ModelSimulator(scenario, num_agents, len(seeds), init=init, **kw)
    sim.reset(list(seeds))
    pol = make_policy(policy, seed=policy_seed)
    last = max(max(horizons, default=0), max(accuracy_horizons, default=0))
    out: dict = {"scenario": scenario, "agents": num_agents, "worlds": len(seeds), "policy": policy, "init": init}
    # by render: the deterministic one (the only one since the generative head was removed)
    out["psnr"], out["ssim"], out["sharpness"] = {"deterministic": {}}, {"deterministic": {}}, {"deterministic": {}}
    out["accuracy"], out["cell_accuracy"], out["agent_accuracy"] = {}, {}, {}
    t0 = time.perf_counter()
    for t in range(1, last + 1):
        actions = pol.act(oracle)
        oracle, _ = world_step(oracle, actions, arena)
        frames = sim.step(actions).rgb
        if t in horizons:
            truth = raycaster.render(oracle).rgb.numpy()
            out["psnr"]["deterministic"][str(t)] = round(psnr(frames, truth), 3)
            out["ssim"]["deterministic"][str(t)] = round(float(np.mean(ssim(frames, truth))), 4)
            out["sharpness"]["deterministic"][str(t)] = round(float(np.mean(sharpness(frames, truth))), 4)
        if t in accuracy_horizons:
            acc = symbolic_accuracy(sim.decoded_state(), oracle)
            for k, v in acc.items():
                out[k][str(t)] = round(v, 5)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


# -- the benchmark: every variant's views against the oracle's, by horizon and number of agents ----


@dataclasses.dataclass(frozen=True)
class ModelCardTask:
    spec: SimSpec
    seeds: tuple[int, ...]
    num_agents: int = 4

    def __post_init__(self) -> None:
        check_held_out(self.seeds)


def run_model_card_task(task: ModelCardTask) -> dict:
    """:func:`evaluate_fidelity` on the model of ``task.spec``."""
    sim = task.spec.build("shared", task.num_agents, 1)
    return evaluate_fidelity(
        sim.model, task.spec.scenario, task.num_agents, list(task.seeds), HORIZONS, accuracy_horizons=HORIZONS
    )


def psnr_ci(summary: dict, horizon: int, variants, of_mean_mse: bool = False) -> dict:
    """Intervals of every variant's mean view PSNR (or PSNR of the mean MSE) at ``horizon`` over
    the rollouts' worlds."""
    key = "mse_worlds" if of_mean_mse else "psnr_worlds"
    values = {v: np.asarray(summary[v]["by_step"][str(horizon)][key], np.float64) for v in variants}
    stat = stats.psnr_of_mean if of_mean_mse else stats.mean_of
    return stats.compare({v: stat(x) for v, x in values.items()}, len(values["oracle"]))


def run(st: Settings, z: Sizes, runner: Runner, out: pathlib.Path) -> dict:
    """PSNR and SSIM of every variant's views against the oracle's, and the decoded-state accuracy
    (:func:`symbolic_accuracy`), at horizons 1, 10, 100; at every agent count of ``z.agents`` (the
    headline at 4 agents): ``fidelity.*``."""
    vs, hs = st.variants, HORIZONS
    per_n = {n: drift.rollouts(st, runner, "fidelity", z.worlds, n, hs, with_state=True) for n in z.agents}
    head_n = 4 if 4 in per_n else z.agents[0]
    s = per_n[head_n]
    metrics = ("psnr", "psnr_of_mean_mse", "entity_psnr", "ssim", "accuracy")
    results = {v: {f"{m}@{h}": s[v]["by_step"][str(h)].get(m) for m in metrics for h in hs} for v in vs}
    ci_by_agents = {n: {h: psnr_ci(per_n[n], h, vs) for h in hs} for n in per_n}
    mse_ci_by_agents = {n: {h: psnr_ci(per_n[n], h, vs, True) for h in hs} for n in per_n}
    results["ci"] = {f"psnr@{h}": ci_by_agents[head_n][h] for h in hs}
    results["ci"].update({f"psnr_of_mean_mse@{h}": mse_ci_by_agents[head_n][h] for h in hs})
    for v in vs:
        for key, cis in (("psnr", ci_by_agents), ("psnr_of_mean_mse", mse_ci_by_agents)):
            results[v][f"{key}_by_agents"] = {
                str(n): {str(h): per_n[n][v]["by_step"][str(h)][key] for h in hs} for n in per_n
            }
            results[v][f"{key}_ci_by_agents"] = {str(n): {str(h): c[h]["ci"][v] for h in hs} for n, c in cis.items()}
    details = {}
    if st.spec.backend == "model":
        # The model card's own report (evaluate_fidelity), on the same held-out worlds.
        task = ModelCardTask(st.spec, tuple(probe_seeds("fidelity", z.worlds)))
        details["model_card"] = runner.map(run_model_card_task, [task], desc="model card fidelity")[0]
    results["details"] = details
    config = {
        **st.config(),
        "horizons": list(hs),
        "worlds": z.worlds,
        "agents": head_n,
        "agents_scaling": list(z.agents),
    }
    report.write_json(out, "fidelity", results, config)
    rows = [
        report.ci_row(f"{label} at step {h}", results, results["ci"][f"{m}@{h}"], f"{m}@{h}", vs)
        for m, label in (("psnr", "PSNR (dB)"), ("psnr_of_mean_mse", "PSNR of the mean MSE (dB)"))
        for h in hs
    ]
    keys = [(f"entity_psnr@{h}", f"PSNR over item, box and agent pixels at step {h} (dB)") for h in hs]
    keys += [(f"ssim@{h}", f"SSIM at step {h}") for h in hs]
    keys += [(f"accuracy@{h}", f"decoded-state accuracy at step {h}") for h in hs]
    rows += [{"metric": label, **{v: results[v].get(key) for v in vs}} for key, label in keys]
    agent_rows = [
        {"agents": n, **{v: report.with_ci(per_n[n][v]["by_step"]["1"]["psnr"], c[1]["ci"][v]) for v in vs}}
        for n, c in ci_by_agents.items()
    ]
    report.write_markdown(
        out,
        "fidelity",
        "View fidelity by horizon",
        [
            (f"Generated vs oracle views, {head_n} agents [95% interval over worlds]", report.markdown_table(rows)),
            ("Shared minus each variant, PSNR (paired bootstrap)", report.calls_table(results["ci"], vs)),
            ("PSNR at step 1 by number of agents", report.markdown_table(agent_rows)),
        ],
        config,
    )
    generated = [v for v in vs if v != "oracle"]  # the oracle is exact
    report.plot_lines(
        out / "fidelity_vs_horizon.png",
        {v: (list(hs), [results[v][f"psnr_of_mean_mse@{h}"] for h in hs]) for v in generated},
        "horizon (steps)",
        "PSNR of the mean MSE (dB; the oracle is exact)",
        "View fidelity by horizon",
        logx=True,
    )
    ns = list(per_n)
    report.plot_lines(
        out / "fidelity_vs_agents.png",
        {v: (ns, [per_n[n][v]["by_step"]["1"]["psnr_of_mean_mse"] for n in ns]) for v in generated},
        "agents per world",
        "PSNR of the mean MSE at step 1 (dB)",
        "View fidelity by number of agents",
    )
    return results


def headline(results: dict, variants) -> list[tuple[str, str]]:
    """(key, label) of this benchmark's rows in the summary table."""
    return [
        *[(f"psnr@{h}", f"view PSNR at step {h} (dB, mean over views, capped at 100)") for h in HORIZONS],
        *[(f"psnr_of_mean_mse@{h}", f"view PSNR of the mean MSE at step {h} (dB)") for h in HORIZONS],
        ("ssim@100", "view SSIM at step 100"),
    ]


def scaling(results: dict, variants) -> list[tuple[str, dict]]:
    """This benchmark's panel of ``scaling.png``."""
    series = report.by_agents(
        results,
        [v for v in variants if v != "oracle"],
        "psnr_of_mean_mse_by_agents",
        "psnr_of_mean_mse_ci_by_agents",
        lambda x: x["1"],
        lambda c: (c or {}).get("1"),
    )
    return [("PSNR of the mean MSE at step 1 (dB)", series)]
