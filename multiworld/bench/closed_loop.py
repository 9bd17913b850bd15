"""Payouts closed-loop, the way a learner meets the model (a section of ``bench dynamics``).

The payouts table feeds the model the oracle's actions (the scripted policy reads the oracle's
state), so an agent of the model a cell off the oracle's loses the payout it would have earned on
its own world. A team trained inside the model meets it closed-loop: its policy reads the model's
world (the env's ``state()``) and the model pays for what was done there. Here the oracle and the
model each run the scripted policy (same seed) on their own world from the same held-out worlds:
their totals and the paired per-world difference. And every step of the model is judged by the
oracle's rule on the model's own decoded world before the step:

- **items**: the items the rule picks up on that world at some step, those of them the model
  never picks up (a pickup missed where the agent stands on the item the model's world still shows;
  its policy then waits there), the model's pickups of an item it had already picked up (each
  one paid again: what a learner exploits), and its pickups after which the item is still in its
  world (``stayed_pickups``: the item's cell still decodes as an item, or the pickup fired with no
  item leaving and was put on the nearest one; either way a later pickup of it is a repeat);
- **pushes**: every push the rule makes there (``rule_pushes``), the model's (``fired``) and those
  fired where the rule pushes too (``possible``), as in :mod:`multiworld.bench.pushes`; of the
  rule's pushes the model refused, those of a **ghost** box (``ghost_refusals``: the readout shows a
  box on a cell that no longer decodes as one, where a push write left it half-moved; the others
  are the push judgement's own refusals), ``ghost_boxes``, the readout's ghost boxes summed
  over steps, and ``ghost_onsets``, the boxes that turned into ghosts, of them
  ``ghost_onsets_at_push`` inside the window a push the model fired wrote that step (the push
  write left the box half-moved) and the others without one (the cell update's messages or a
  pickup write changed its cell).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from multiworld.bench import stats
from multiworld.bench.pushes import seen_state
from multiworld.bench.rollout import paired_simulators
from multiworld.bench.variants import SimSpec
from multiworld.seeds import check_held_out

SCENARIOS = ("forage-v0", "push-v0")  # the scenarios that pay
KEYS = (
    "paid",
    "oracle_paid",
    "rule_items",
    "model_items",
    "missed_items",
    "repeat_pickups",
    "stayed_pickups",
    "rule_pushes",
    "fired",
    "possible",
    "ghost_refusals",
    "ghost_boxes",
    "ghost_onsets",
    "ghost_onsets_at_push",
)


@dataclasses.dataclass(frozen=True)
class ClosedLoopTask:
    spec: SimSpec
    scenario: str
    num_agents: int
    seeds: tuple[int, ...]
    steps: int

    def __post_init__(self) -> None:
        check_held_out(self.seeds)


def run_closed_loop_task(task: ClosedLoopTask) -> dict:
    oracle, model = paired_simulators(task.spec, task.scenario, task.num_agents, len(task.seeds))
    try:
        return run_pair(task, oracle, model)
    finally:
        oracle.close()
        model.close()


def run_pair(task: ClosedLoopTask, oracle, model) -> dict:
    """Per-world counts of ``task`` with these two simulators (``model``: the one under test)."""
    from multiworld.agents.policies import make_policy
    from multiworld.world.dynamics import step as world_step
    from multiworld.world.scenarios import get_scenario

    seeds, b = list(task.seeds), len(task.seeds)
    arena = get_scenario(task.scenario).arena_config(num_agents=task.num_agents)
    c = {k: np.zeros(b) for k in KEYS}
    rule_items: list[set[int]] = [set() for _ in range(b)]
    model_items: list[set[int]] = [set() for _ in range(b)]
    oracle.reset_state(seeds)
    model.reset_state(seeds)
    names = list(model.agent_names)
    actors = {"oracle": make_policy("scripted", seed=seeds[0]), "model": make_policy("scripted", seed=seeds[0])}
    no_ghosts = np.zeros(model.world_state().boxes.shape[:2], bool)  # a simulator without a readout
    ghosts = model.ghost_boxes if hasattr(model, "ghost_boxes") else no_ghosts.copy
    ghost = ghosts()
    for _ in range(task.steps):
        o_rewards, _, _ = oracle.advance(actors["oracle"].act(oracle.world_state()))
        c["oracle_paid"] += np.sum(o_rewards, 1)
        actions = actors["model"].act(model.world_state())
        seen = seen_state(model)
        _, rule = world_step(seen, actions, arena)  # the oracle's step on the model's world
        m_rewards, _, m_events = model.advance(actions)
        c["paid"] += np.sum(m_rewards, 1)
        c["rule_pushes"] += (rule.pushed >= 0).sum(1)
        c["ghost_boxes"] += ghost.sum(1)
        after, now = ghosts(), model.world_state()
        _count_onsets(c, ghost, after, seen.boxes, now.poses, m_events, names)
        pushers = {(w, names.index(e["agent"])) for w in range(b) for e in m_events[w] if e["type"] == "push"}
        for w, i in zip(*np.nonzero(rule.pushed >= 0), strict=True):
            c["ghost_refusals"][w] += (w, i) not in pushers and ghost[w, rule.pushed[w, i]]
        ghost = after
        for w, i in zip(*np.nonzero(rule.picked >= 0), strict=True):
            rule_items[w].add(int(rule.picked[w, i]))
        alive = now.items_alive
        for w in range(b):
            for e in m_events[w]:
                if e["type"] == "pickup":
                    c["repeat_pickups"][w] += int(e["item"]) in model_items[w]
                    c["stayed_pickups"][w] += int(e["item"]) >= 0 and bool(alive[w, int(e["item"])])
                    model_items[w].add(int(e["item"]))
                elif e["type"] == "push":
                    c["fired"][w] += 1
                    c["possible"][w] += rule.pushed[w, names.index(e["agent"])] >= 0
    c["rule_items"] = np.array([len(s) for s in rule_items], float)
    c["model_items"] = np.array([len(s) for s in model_items], float)
    c["missed_items"] = np.array([len(r - m) for r, m in zip(rule_items, model_items, strict=True)], float)
    return {"scenario": task.scenario, **{k: v.tolist() for k, v in c.items()}}


def _count_onsets(c: dict, before: np.ndarray, after: np.ndarray, boxes, poses, events, names) -> None:
    """Boxes that turned into ghosts this step (``ghost_onsets``), and of them those inside the 5 x 5
    window a fired push wrote (``ghost_onsets_at_push``: the pusher's cell after the step within two
    cells of the box's cell before it); the others came without a push write near them."""
    for w, m in zip(*np.nonzero(after & ~before), strict=True):
        c["ghost_onsets"][w] += 1
        cells = [np.floor(poses[w, names.index(e["agent"])][[1, 0]]) for e in events[w] if e["type"] == "push"]
        c["ghost_onsets_at_push"][w] += any(np.abs(cell - boxes[w, m]).max() <= 2 for cell in cells)


def summarize(raw: list[dict]) -> dict:
    """Per scenario: totals, ``ratio`` (model / oracle paid) with the paired per-world difference
    (model - oracle) and its interval, the share of the rule's items the model missed, and the
    push shares as in :func:`multiworld.bench.pushes.summarize`."""
    out = {}
    for r in raw:
        paid, oracle = np.asarray(r["paid"], float), np.asarray(r["oracle_paid"], float)
        idx = stats.resamples(len(paid))
        s: dict = {k: int(np.sum(r[k])) for k in KEYS}
        s["ratio"] = round(float(paid.sum() / oracle.sum()), 4) if oracle.sum() else None
        diff = paid - oracle
        s["paid_difference_per_world"] = round(float(diff.mean()), 4)
        s["paid_difference_ci"] = stats.interval(lambda i, d=diff: float(d[i].mean()), idx)
        for name, num, den in (
            ("missed_share", "missed_items", "rule_items"),
            ("rule_share", "possible", "fired"),
            ("rule_recall", "possible", "rule_pushes"),
        ):
            n, d = np.asarray(r[num], float), np.asarray(r[den], float)
            s[name] = round(float(n.sum() / d.sum()), 4) if d.sum() else None
        out[r["scenario"]] = s
    return out


def table_rows(summary: dict) -> list[dict]:
    rows = []
    for scenario, s in summary.items():
        lo, hi = s["paid_difference_ci"]
        rows.append(
            {
                "scenario": scenario,
                "paid": s["paid"],
                "oracle_paid": s["oracle_paid"],
                "ratio": s["ratio"],
                "difference per world": f"{s['paid_difference_per_world']} [{lo}, {hi}]",
                **{
                    k: s[k]
                    for k in (
                        "rule_items",
                        "missed_items",
                        "missed_share",
                        "repeat_pickups",
                        "stayed_pickups",
                        "fired",
                        "possible",
                        "rule_pushes",
                        "ghost_refusals",
                        "ghost_boxes",
                        "ghost_onsets",
                        "ghost_onsets_at_push",
                    )
                },
            }
        )
    return rows


TITLE = "Payouts closed-loop: each simulator's scripted policy reads its own world (multiworld.bench.closed_loop)"
LEGEND = (
    "paid / oracle_paid: the model's total when the policy reads the model's world, the oracle's when it reads "
    "the oracle's; difference per world: model - oracle [95% paired bootstrap over worlds]. Judged on the model's "
    "own decoded world before each step: rule_items, the items the oracle's rule picks up there at some step; "
    "missed_items, those the model never picks up; repeat_pickups, the model's pickups of an item it had "
    "already picked up; stayed_pickups, its pickups after which the item is still in its world; "
    "fired / possible / rule_pushes as in the pushes section; ghost_refusals, the rule's pushes the "
    "model refused whose box is a ghost (the readout's box on a cell no longer decoded as a box); ghost_boxes, "
    "ghost boxes summed over steps; ghost_onsets, boxes that turned into ghosts, of them ghost_onsets_at_push "
    "inside the window of a push the model fired that step."
)
