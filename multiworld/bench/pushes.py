"""Pushes in the learned world, judged by the oracle's push rule (a section of ``bench dynamics``).

- **Staged pushers** (push-v0): in every world one box is moved to the cell before a goal and one
  agent stands right behind it, heading within 70 degrees of it (:mod:`multiworld.models.staging`;
  the push rule's front cell turns at 45, so some of them push nothing); that agent INTERACTs
  ``STAGED_REPEATS`` times while the others wait. The oracle pays the first push only (then the box sits
  on the goal and the cell beyond is not free); a model whose push does not move the box in its
  scene pays at every INTERACT. Counts: payouts and pushes of both, and the worlds whose decoded
  boxes end in the cells where the oracle's are.
- **Pushes free-running** (random and scripted actions): every push the model fires, judged by
  the oracle's push rule on the model's own decoded world before the step: was its action
  INTERACT, was a box ahead, and would the oracle's step from that world with the same joint
  action push it (a box ahead with room beyond, nobody contending or in its way). A push the
  rule would not make is a false push; each one also writes its window of the scene (the push
  write). And every push the rule makes on that world, fired or not: the pushes the model missed;
  what the model paid (and the oracle, in its own world), and what the model paid at steps whose
  fired pushes were all false.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from multiworld.bench import stats
from multiworld.bench.rollout import paired_simulators
from multiworld.bench.variants import SimSpec
from multiworld.seeds import check_held_out
from multiworld.world.state import Action

STAGED_REPEATS = 8  # INTERACTs of the staged pusher


@dataclasses.dataclass(frozen=True)
class PushTask:
    spec: SimSpec
    kind: str  # "staged" or "free"
    scenario: str
    policy: str  # the free-running agents' policy ("random" or "scripted"); staged: "staged"
    num_agents: int
    seeds: tuple[int, ...]
    steps: int

    def __post_init__(self) -> None:
        check_held_out(self.seeds)
        if self.kind not in ("staged", "free"):
            raise ValueError(f"unknown push task kind {self.kind!r}; expected 'staged' or 'free'")


def run_push_task(task: PushTask) -> dict:
    oracle, model = paired_simulators(task.spec, task.scenario, task.num_agents, len(task.seeds))
    try:
        run = _staged if task.kind == "staged" else _free
        return {"kind": task.kind, "scenario": task.scenario, "policy": task.policy, **run(task, oracle, model)}
    finally:
        oracle.close()
        model.close()


def seen_state(sim):
    """The world as the simulator under test sees it: the model's decoded cells (the oracle's own)."""
    return sim.decoded_state() if hasattr(sim, "decoded_state") else sim.world_state()


def _box_cells(state) -> list[set[tuple[int, int]]]:
    return [{tuple(int(v) for v in b) for b in boxes} for boxes in state.boxes]


def _staged(task: PushTask, oracle, model) -> dict:
    from multiworld.models.staging import place_pushers, stage_boxes
    from multiworld.world.scenarios import get_scenario

    seeds, b = list(task.seeds), len(task.seeds)
    arena = get_scenario(task.scenario).arena_config(num_agents=task.num_agents)
    rng = np.random.default_rng(seeds[0])
    oracle.reset_state(seeds)
    state, staged = stage_boxes(oracle.world_state(), arena, rng, share=1.0, off=0.0)
    before = state.poses.copy()
    state = place_pushers(state, staged, arena, rng, back=1)
    moved = np.abs(state.poses - before).max(-1) > 0  # (B, N): the pusher, where one could stand
    used = moved.any(1)
    pusher = moved.argmax(1)
    oracle.reset_state(seeds, start=state)
    model.reset_state(seeds, start=state)
    actions = np.full((b, task.num_agents), int(Action.NOOP), np.int64)
    actions[np.arange(b), pusher] = int(Action.INTERACT)
    actions[~used] = int(Action.NOOP)
    paid = {"model": np.zeros(b), "oracle": np.zeros(b)}
    pushes = {"model": np.zeros(b), "oracle": np.zeros(b)}
    for _ in range(task.steps):
        for name, sim in (("model", model), ("oracle", oracle)):
            rewards, _, events = sim.advance(actions)
            paid[name] += np.asarray(rewards).sum(1)
            pushes[name] += [sum(e["type"] == "push" for e in evs) for evs in events]
    same_boxes = [m == o for m, o in zip(_box_cells(seen_state(model)), _box_cells(oracle.world_state()), strict=True)]
    return {
        "worlds": used.astype(int).tolist(),
        **{f"paid_{k}": (v * used).tolist() for k, v in paid.items()},
        **{f"pushes_{k}": (v * used).tolist() for k, v in pushes.items()},
        "boxes_as_oracle": (np.asarray(same_boxes) & used).astype(int).tolist(),
    }


def _free(task: PushTask, oracle, model) -> dict:
    from multiworld.agents.policies import make_policy
    from multiworld.world.dynamics import cells_ahead
    from multiworld.world.dynamics import step as world_step
    from multiworld.world.scenarios import get_scenario

    seeds, b = list(task.seeds), len(task.seeds)
    arena = get_scenario(task.scenario).arena_config(num_agents=task.num_agents)
    oracle.reset_state(seeds)
    model.reset_state(seeds)
    names = list(model.agent_names)
    actor = make_policy(task.policy, seed=int(seeds[0]))
    keys = (
        "fired",
        "interact",
        "box_ahead",
        "possible",
        "rule_pushes",
        "oracle_pushes",
        "paid",
        "paid_false",
        "oracle_paid",
    )
    c = {k: np.zeros(b) for k in keys}
    for _ in range(task.steps):
        actions = actor.act(oracle.world_state())
        seen = seen_state(model).copy()  # the model's own world before the step
        front, _ = cells_ahead(seen.poses)
        ahead = (seen.boxes[:, None, :, :] == front[:, :, None, :]).all(-1).any(-1)  # (B, N)
        _, rule = world_step(seen, actions, arena)  # the oracle's step on the model's world
        possible = rule.pushed >= 0  # (B, N)
        c["rule_pushes"] += possible.sum(1)
        m_rewards, _, m_events = model.advance(actions)
        o_rewards, _, o_events = oracle.advance(actions)
        c["oracle_paid"] += np.asarray(o_rewards).sum(1)
        for w in range(b):
            pushers = [names.index(e["agent"]) for e in m_events[w] if e["type"] == "push"]
            for i in pushers:
                c["fired"][w] += 1
                c["interact"][w] += actions[w, i] == int(Action.INTERACT)
                c["box_ahead"][w] += ahead[w, i]
                c["possible"][w] += possible[w, i]
            paid = float(np.sum(m_rewards[w]))
            c["paid"][w] += paid
            if pushers and not possible[w, pushers].any():  # what a step of false pushes only paid
                c["paid_false"][w] += paid
            c["oracle_pushes"][w] += sum(e["type"] == "push" for e in o_events[w])
    return {k: v.tolist() for k, v in c.items()}


def summarize(raw: list[dict]) -> dict:
    """Totals per task (``staged/push-v0``, ``free/POLICY/SCENARIO``); free-running, the share of
    fired pushes the rule makes (``rule_share``) and of the rule's pushes fired (``rule_recall``)."""
    out: dict = {}
    for r in raw:
        key = "staged/push-v0" if r["kind"] == "staged" else f"free/{r['policy']}/{r['scenario']}"
        out[key] = {k: int(np.sum(v)) for k, v in r.items() if isinstance(v, list)}
        if r["kind"] == "free":
            possible = np.asarray(r["possible"], float)
            for name, den in (("rule_share", "fired"), ("rule_recall", "rule_pushes")):
                d = np.asarray(r[den], float)
                if d.sum():
                    out[key][name] = round(float(possible.sum() / d.sum()), 4)
                    out[key][f"{name}_ci"] = stats.interval(stats.ratio_of_sums(possible, d), stats.resamples(len(d)))
    return out
