"""The world model judged over an episode: views, state and rewards for hundreds of steps.

    python benchmarks/episode.py [--checkpoint DIR] [--worlds 16] [--threads 2] [--quick]

Held-out seeds (the model-evaluation block), 4 agents, free-running model (no oracle after
reset), 64x64. The model and the oracle start from the same world and get the same joint
actions, picked by a policy acting on the oracle's state. Per world, then a 95% bootstrap
interval over worlds (``multiworld.bench.stats``):

- **views**: mean per-view PSNR (dB, 8-bit RGB) against the oracle at steps 1, 10, 100 and 200,
  random actions, ``init="map"``, worlds split over forage-v0, push-v0 and roam-v0; the same at
  step 1 with ``init="views"``.
- **state**: decoded symbolic-state accuracy (``multiworld.bench.fidelity.symbolic_accuracy``)
  at steps 100 and 1,000 (random actions, forage-v0 and push-v0 alternating).
- **rewards**: the scripted policy (so pickups and pushes happen) on forage-v0 and push-v0 for
  100 steps: every reward the model gives must be one of the scenario's values; the correlation
  over (world, agent) of model and oracle per-agent returns; pickups and pushes counted by both.

Writes benchmarks/results/episode.{json,md}. The targets (issue text): PSNR >= 27 / 24 / 22 / 20
dB at steps 1 / 10 / 100 / 200, views-only >= 24 at step 1, accuracy >= 0.97 at 100 and >= 0.90
at 1,000, returns correlation >= 0.9.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from common import markdown_table, write_results
from tqdm import tqdm

from multiworld.bench.fidelity import psnr, symbolic_accuracy
from multiworld.bench.stats import interval, mean_of, resamples
from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, read_config
from multiworld.seeds import MODEL_EVALUATION
from multiworld.sim.model import ModelSimulator
from multiworld.world.arena import generate
from multiworld.world.dynamics import step as world_step
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import get_scenario

EVAL_SEED = MODEL_EVALUATION.start  # the model-evaluation block (multiworld/seeds.py)
TARGETS = {"psnr@1": 27.0, "psnr@10": 24.0, "psnr@100": 22.0, "psnr@200": 20.0, "views_psnr@1": 24.0}
SCENARIO_VALUES = {"roam-v0": {0.0}, "forage-v0": {0.0, 1.0}, "push-v0": {-2.0, -1.0, 0.0, 1.0, 2.0}}


def run(model, scenario: str, seeds: list[int], steps: int, policy: str, init: str, views_at=(), state_at=()):
    """Model and oracle side by side on ``seeds``; per-world view PSNR at ``views_at``, decoded
    accuracy at ``state_at``, and both backends' rewards and events at every step."""
    from multiworld.agents.policies import make_policy

    arena = get_scenario(scenario).arena_config(num_agents=4)
    oracle = generate(arena, seeds)
    sim = ModelSimulator(scenario, 4, len(seeds), model=model, init=init)
    sim.reset(list(seeds))
    sc, cam = get_scenario(scenario), Raycaster(RenderConfig())
    pol = make_policy(policy, seed=seeds[0])
    out = {"psnr": {}, "accuracy": {}, "model_rewards": [], "oracle_rewards": [], "events": [0, 0]}
    for t in range(1, steps + 1):
        actions = pol.act(oracle)
        after, events = world_step(oracle, actions, arena)
        out["oracle_rewards"].append(sc.reward(oracle, after, events))
        out["events"][0] += int(((events.pushed >= 0) | (events.picked >= 0)).sum())
        oracle = after
        obs = sim.step(actions)
        out["model_rewards"].append(obs.rewards)
        out["events"][1] += sum(len(e) for e in obs.events)
        if t in views_at:
            truth = cam.render(oracle).rgb.numpy()
            out["psnr"][t] = [psnr(obs.rgb[w], truth[w]) for w in range(len(seeds))]
        if t in state_at:
            dec = sim.decoded_state()
            out["accuracy"][t] = [
                symbolic_accuracy(dec.select(w), oracle.select(w))["accuracy"] for w in range(len(seeds))
            ]
    out["model_rewards"] = np.stack(out["model_rewards"])
    out["oracle_rewards"] = np.stack(out["oracle_rewards"])
    return out


def summary(values, worlds: int) -> dict:
    v = np.asarray(values, np.float64)
    return {"mean": round(float(v.mean()), 3), "ci95": [round(x, 3) for x in interval(mean_of(v), resamples(worlds))]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    p.add_argument("--worlds", type=int, default=18, help="held-out worlds per measurement (split over scenarios)")
    p.add_argument("--long", type=int, default=1000, help="the longest horizon of the state accuracy")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="3 worlds, 20 steps (a smoke run)")
    p.add_argument("--out", default="episode", help="results name under benchmarks/results/")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint)
    worlds, view_steps, long = (3, (1, 10), 20) if args.quick else (args.worlds, (1, 10, 100, 200), args.long)
    scenarios = ("forage-v0", "push-v0", "roam-v0")
    groups = [scenarios[i % 3] for i in range(worlds)]
    seeds_of = {s: [EVAL_SEED + i for i in range(worlds) if groups[i] == s] for s in scenarios}
    res: dict = {"views": {}, "views_only": {}, "accuracy": {}, "rewards": {}}
    per_world = {"views": {h: [] for h in view_steps}, "views_only": [], "accuracy": {}}
    jobs = [(s, "map") for s in scenarios] + [(s, "views") for s in scenarios]
    for scenario, init in tqdm(jobs, desc="episode views", unit="run"):
        seeds = seeds_of[scenario]
        if not seeds:
            continue
        steps = max(view_steps) if init == "map" else 1
        r = run(model, scenario, seeds, steps, "random", init, views_at=view_steps if init == "map" else (1,))
        if init == "map":
            for h in view_steps:
                per_world["views"][h] += r["psnr"][h]
        else:
            per_world["views_only"] += r["psnr"][1]
    res["views"] = {str(h): summary(per_world["views"][h], worlds) for h in view_steps}
    res["views_only"] = {"1": summary(per_world["views_only"], worlds)}

    state_h = (100, long) if not args.quick else (10, long)
    acc = {h: [] for h in state_h}
    for i, scenario in enumerate(tqdm(("forage-v0", "push-v0"), desc="episode state", unit="run")):
        seeds = [EVAL_SEED + 100_000 + 2 * k + i for k in range((worlds + 1 - i) // 2)]
        r = run(model, scenario, seeds, long, "random", "map", state_at=state_h)
        for h in state_h:
            acc[h] += r["accuracy"][h]
    res["accuracy"] = {str(h): summary(v, len(v)) for h, v in acc.items()}

    rows_r = []
    for scenario in tqdm(("forage-v0", "push-v0"), desc="episode rewards", unit="run"):
        seeds = [EVAL_SEED + 200_000 + k for k in range(worlds)]
        r = run(model, scenario, seeds, 20 if args.quick else 100, "scripted", "map")
        mr, orr = r["model_rewards"], r["oracle_rewards"]
        values = sorted(float(x) for x in np.unique(mr))
        ret_m, ret_o = mr.sum(0).ravel(), orr.sum(0).ravel()
        corr = float(np.corrcoef(ret_m, ret_o)[0, 1]) if ret_m.std() > 0 and ret_o.std() > 0 else float("nan")
        res["rewards"][scenario] = {
            "worlds": worlds,
            "model_reward_values": values,
            "only_scenario_values": set(values).issubset(SCENARIO_VALUES[scenario]),
            "returns_correlation": round(corr, 3),
            "model_return_per_agent": round(float(ret_m.mean()), 3),
            "oracle_return_per_agent": round(float(ret_o.mean()), 3),
            "oracle_events": r["events"][0],
            "model_events": r["events"][1],
        }
        rows_r.append({"scenario": scenario, **res["rewards"][scenario]})

    fmt = lambda s: f"{s['mean']} [{s['ci95'][0]}, {s['ci95'][1]}]"  # noqa: E731
    rows = [{"measure": f"view PSNR @{h} (init=map, random actions)", "value": fmt(s)} for h, s in res["views"].items()]
    rows.append({"measure": "view PSNR @1 (init=views)", "value": fmt(res["views_only"]["1"])})
    rows += [{"measure": f"decoded-state accuracy @{h}", "value": fmt(s)} for h, s in res["accuracy"].items()]
    payload = {
        "checkpoint": args.checkpoint or str(DEFAULT_CHECKPOINT),
        "weights_sha256": read_config(args.checkpoint or DEFAULT_CHECKPOINT)["weights_sha256"],
        "worlds": worlds,
        "targets": TARGETS,
        "results": res,
    }
    table = markdown_table(rows) + "\n\nRewards (scripted policy, 100 steps):\n\n" + markdown_table(rows_r)
    text = __doc__.split("\n\n")[2] + "\n\n" + table
    path = write_results(args.out, payload, text, checkpoints={"model": args.checkpoint})
    print(table)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
