"""Dynamics against the oracle: does the learned world keep the arena's rules over an episode?

The world model (the ``shared`` variant's checkpoint) and the oracle take the same joint actions
from the same held-out worlds (4 agents, ``init="map"``):

- **Free-running** (the model alone after reset), under random, mostly-forward and scripted
  actions: agent-steps outside the map and inside a solid cell (a wall, or a box where the
  oracle has one), agents in the oracle's cell at steps 10 / 100 / 200, the decoded state's
  cell agreement by step, and events and payouts.
- **Teacher-forced** (one step from the oracle's state: the model is re-encoded from the oracle's
  observations before every step): the displacement within 0.05 cells of the oracle's on every
  agent-step and on the blocked ones (moves a wall, box, map edge or agent shortened), and events.
- **Events**: precision and recall of pushes and pickups matched by step, agent and kind.
- **Payouts** per scenario (forage-v0, push-v0) under the scripted policy: the model's total
  against the oracle's, and the correlation of per-agent returns.
- **Pushes** judged by the oracle's push rule (:mod:`multiworld.bench.pushes`): staged pushers
  that INTERACT again and again, and every push the model fires free-running, on its own world.
- **Payouts closed-loop** (:mod:`multiworld.bench.closed_loop`): the scripted policy reading each
  simulator's own world, as a team trained inside the model meets it; pickups and pushes the
  oracle's rule makes on the model's world that the model did not.

Headline intervals: 95% bootstrap over probe worlds. Writes ``dynamics.json`` / ``dynamics.md``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from multiworld.bench import closed_loop, pushes, report, stats
from multiworld.bench.rollout import paired_simulators
from multiworld.bench.runner import Runner, Settings
from multiworld.bench.state_accuracy import symbolic_accuracy
from multiworld.bench.variants import SimSpec
from multiworld.seeds import check_held_out, probe_seeds
from multiworld.world.dynamics import solid_cells

POLICIES = ("random", "forward", "scripted")
TOLERANCE = 0.05  # cells: a displacement this close to the oracle's is right
CELL_STEPS = (10, 100, 200)
BOXED = ("forage-v0", "push-v0")  # the scenarios with boxes, where pushes are judged
PUSH_SEED_OFFSET = 100_000  # the push tasks' worlds, after the dynamics tasks'
CLOSED_SEED_OFFSET = 200_000  # the closed-loop payouts' worlds, after the push tasks'


@dataclasses.dataclass(frozen=True)
class Sizes:
    agents: int
    worlds: int
    steps: int  # free-running steps per world
    teacher_steps: int  # teacher-forced steps per world
    scenarios: tuple[str, ...] = ("roam-v0", "forage-v0", "push-v0")


QUICK = Sizes(agents=4, worlds=4, steps=60, teacher_steps=30)
FULL = Sizes(agents=4, worlds=16, steps=200, teacher_steps=100)


@dataclasses.dataclass(frozen=True)
class DynamicsTask:
    spec: SimSpec
    scenario: str
    policy: str
    num_agents: int
    seeds: tuple[int, ...]
    steps: int
    teacher: bool  # teacher-forced (one step from the oracle's state) or free-running

    def __post_init__(self) -> None:
        check_held_out(self.seeds)


def _advance(sim, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[dict]]]:
    """One step without rendering any view: the poses (B, N, 3), rewards and events."""
    rewards, _, events = sim.advance(actions)
    latent = getattr(sim, "latent", None)
    poses = latent.poses.float().cpu().numpy() if latent is not None else sim.world_state().poses
    return np.asarray(poses, np.float64), rewards, events


def _event_keys(events: list[list[dict]], t: int) -> set[tuple]:
    return {(w, t, e["agent"], e["type"]) for w, evs in enumerate(events) for e in evs}


def run_dynamics_task(task: DynamicsTask) -> dict:
    """Per-world sums of every count the summary needs (lists over worlds, JSON-ready)."""
    from multiworld.agents.policies import make_policy

    oracle, model = paired_simulators(task.spec, task.scenario, task.num_agents, len(task.seeds))
    b, n = len(task.seeds), task.num_agents
    zeros = lambda: np.zeros(b)  # noqa: E731
    c = {k: zeros() for k in ("agent_steps", "outside", "solid", "ok", "blocked", "blocked_ok")}
    c.update({k: zeros() for k in ("tp", "model_events", "oracle_events")})
    same_cell = {t: zeros() for t in CELL_STEPS if t <= task.steps}
    cell_acc = {}
    returns = {"model": np.zeros((b, n)), "oracle": np.zeros((b, n))}
    try:
        seeds = list(task.seeds)
        oracle.reset(seeds)
        model.reset(seeds)
        actor = make_policy(task.policy, seed=int(task.seeds[0]))
        for t in range(1, task.steps + 1):
            before = oracle.world_state()
            if task.teacher:
                model.reset_state(seeds, start=before)
            actions = actor.act(before)
            o_poses, o_rewards, o_events = _advance(oracle, actions)
            m_poses, m_rewards, m_events = _advance(model, actions)
            after = oracle.world_state()
            m_xy, o_xy = m_poses[..., :2], o_poses[..., :2]
            c["agent_steps"] += n
            size = after.size
            outside = ((m_xy < 0) | (m_xy >= size)).any(-1)
            c["outside"] += outside.sum(1)
            cell = np.clip(np.floor(m_xy).astype(np.int64), 0, size - 1)
            solid = solid_cells(after)[np.arange(b)[:, None], cell[..., 1], cell[..., 0]]
            c["solid"] += (solid & ~outside).sum(1)
            ok = np.abs(m_xy - o_xy).max(-1) <= TOLERANCE
            c["ok"] += ok.sum(1)
            asked = _asked_move(before, actions, task)
            blocked = np.abs((o_xy - before.poses[..., :2]) - asked).max(-1) > 1e-4
            c["blocked"] += blocked.sum(1)
            c["blocked_ok"] += (blocked & ok).sum(1)
            if t in same_cell:
                same_cell[t] += (np.floor(m_xy) == np.floor(o_xy)).all(-1).sum(1)
            if not task.teacher and t in CELL_STEPS and hasattr(model, "decoded_state"):
                cell_acc[t] = symbolic_accuracy(model.decoded_state(), after)["cell_accuracy"]
            mk, ok_ = _event_keys(m_events, t), _event_keys(o_events, t)
            for w in range(b):
                c["tp"][w] += sum(1 for k in mk & ok_ if k[0] == w)
                c["model_events"][w] += sum(1 for k in mk if k[0] == w)
                c["oracle_events"][w] += sum(1 for k in ok_ if k[0] == w)
            returns["model"] += m_rewards
            returns["oracle"] += o_rewards
    finally:
        oracle.close()
        model.close()
    out = {k: v.tolist() for k, v in c.items()}
    out["same_cell"] = {str(t): v.tolist() for t, v in same_cell.items()}
    out["cell_accuracy"] = {str(t): v for t, v in cell_acc.items()}
    out["returns"] = {k: v.tolist() for k, v in returns.items()}
    return {"scenario": task.scenario, "policy": task.policy, "teacher": task.teacher, "agents": n, **out}


def push_tasks(st: Settings, z: Sizes) -> list[pushes.PushTask]:
    """Staged pushers in push-v0, and free-running random and scripted actions in the scenarios with
    boxes (worlds of their own: the seeds after the dynamics tasks')."""
    out = [pushes.PushTask(st.spec, "staged", "push-v0", "staged", z.agents, _seeds(z, 0), pushes.STAGED_REPEATS)]
    for i, (scenario, policy) in enumerate((s, p) for s in BOXED for p in ("random", "scripted")):
        out.append(pushes.PushTask(st.spec, "free", scenario, policy, z.agents, _seeds(z, 1 + i), z.steps))
    return out


def _seeds(z: Sizes, block: int, offset: int = PUSH_SEED_OFFSET) -> tuple[int, ...]:
    return tuple(probe_seeds("dynamics", z.worlds, offset + block * z.worlds))


def closed_loop_tasks(st: Settings, z: Sizes) -> list[closed_loop.ClosedLoopTask]:
    """The scripted policy reading each simulator's own world, in the scenarios that pay."""
    return [
        closed_loop.ClosedLoopTask(st.spec, scenario, z.agents, _seeds(z, i, CLOSED_SEED_OFFSET), z.steps)
        for i, scenario in enumerate(closed_loop.SCENARIOS)
        if scenario in z.scenarios
    ]


def _push_tables(p: dict) -> str:
    staged, free = [], []
    for key, v in p.items():
        kind, *rest = key.split("/")
        row = {"policy": rest[0], "scenario": rest[1]} if kind == "free" else {"scenario": rest[0]}
        row |= {n: x for n, x in v.items() if not n.endswith("_ci")}
        for name in ("rule_share", "rule_recall"):
            if name in row:
                row[name] = report.with_ci(v[name], v[f"{name}_ci"])
        (staged if kind == "staged" else free).append(row)
    return (
        f"Staged pushers: the agent right behind a box before a goal INTERACTs {pushes.STAGED_REPEATS} times "
        "(worlds: where one was staged; boxes_as_oracle: worlds whose decoded boxes end where the oracle's are)\n\n"
        + report.markdown_table(staged)
        + "\n\nPushes free-running, judged on the model's own decoded world before the step (possible: fired "
        "where the oracle's step from that world pushes; rule_pushes: every push the rule makes there, fired or "
        "not; rule_share: possible / fired; rule_recall: possible / rule_pushes; paid / oracle_paid: what the "
        "model and the oracle paid; paid_false: at steps whose fired pushes the rule makes none of)\n\n"
        + report.markdown_table(free)
    )


def _asked_move(before, actions: np.ndarray, task: DynamicsTask) -> np.ndarray:
    """The move each action asks for (the teacher's free move), to tell blocked moves apart."""
    from multiworld.world.dynamics import intended_move
    from multiworld.world.scenarios import get_scenario

    arena = get_scenario(task.scenario).arena_config(num_agents=task.num_agents)
    return intended_move(before.poses, actions, arena)[1]


def tasks(st: Settings, z: Sizes) -> list[DynamicsTask]:
    out, offset = [], 0
    for scenario in z.scenarios:
        for policy in POLICIES:
            for teacher in (False, True):
                seeds = tuple(probe_seeds("dynamics", z.worlds, offset))
                offset += z.worlds
                steps = z.teacher_steps if teacher else z.steps
                out.append(DynamicsTask(st.spec, scenario, policy, z.agents, seeds, steps, teacher))
    return out


def _rate(rows: list[dict], num: str, den: str) -> tuple[float | None, list]:
    a = np.concatenate([r[num] for r in rows]) if rows else np.zeros(0)
    d = np.concatenate([r[den] for r in rows]) if rows else np.zeros(0)
    if not len(d) or d.sum() == 0:
        return None, [None, None]
    value = round(float(a.sum() / d.sum()), 4)
    return value, stats.interval(stats.ratio_of_sums(a, d), stats.resamples(len(d)))


def summarize(raw: list[dict]) -> dict:
    pick = lambda **kw: [r for r in raw if all(r[k] == v for k, v in kw.items())]  # noqa: E731
    s: dict = {}
    for mode, teacher in (("free", False), ("teacher", True)):
        for policy in (*POLICIES, "all"):
            rows = pick(teacher=teacher) if policy == "all" else pick(teacher=teacher, policy=policy)
            m = {}
            for key, num, den in (
                ("outside", "outside", "agent_steps"),
                ("in_solid", "solid", "agent_steps"),
                ("displacement_ok", "ok", "agent_steps"),
                ("blocked_ok", "blocked_ok", "blocked"),
                ("event_precision", "tp", "model_events"),
                ("event_recall", "tp", "oracle_events"),
            ):
                m[key], m[f"{key}_ci"] = _rate(rows, num, den)
            if not teacher:
                for t in CELL_STEPS:
                    hits = [r for r in rows if str(t) in r["same_cell"]]
                    if hits:
                        a = np.concatenate([r["same_cell"][str(t)] for r in hits])
                        total = np.full(len(a), hits[0]["agents"], float)
                        m[f"same_cell_{t}"] = round(float(a.sum() / total.sum()), 4)
                        m[f"same_cell_{t}_ci"] = stats.interval(stats.ratio_of_sums(a, total), stats.resamples(len(a)))
                    accs = [r["cell_accuracy"][str(t)] for r in rows if str(t) in r["cell_accuracy"]]
                    if accs:
                        m[f"cell_accuracy_{t}"] = round(float(np.mean(accs)), 4)
            s[f"{mode}_{policy}"] = m
    s["payouts"] = _payouts(pick, teacher=False)
    s["payouts_teacher"] = _payouts(pick, teacher=True)  # one step from the oracle's state each step
    return s


def _payouts(pick, teacher: bool) -> dict:
    """Model and oracle totals and the per-agent return correlation, per scenario and policy."""
    payouts = {}
    for scenario in ("forage-v0", "push-v0"):
        for policy in ("scripted", "random"):
            rows = pick(teacher=teacher, policy=policy, scenario=scenario)
            if not rows:
                continue
            mod = np.concatenate([np.asarray(r["returns"]["model"]) for r in rows])
            ora = np.concatenate([np.asarray(r["returns"]["oracle"]) for r in rows])
            corr = np.corrcoef(mod.ravel(), ora.ravel())[0, 1] if mod.std() > 0 and ora.std() > 0 else float("nan")
            payouts[f"{scenario}/{policy}"] = {
                "model_total": round(float(mod.sum()), 3),
                "oracle_total": round(float(ora.sum()), 3),
                "ratio": round(float(mod.sum() / ora.sum()), 4) if ora.sum() else None,
                "return_correlation": None if not np.isfinite(corr) else round(float(corr), 4),
            }
    return payouts


def run(st: Settings, z: Sizes, runner: Runner, out: pathlib.Path) -> dict:
    """Free-running and teacher-forced dynamics of the shared model against the oracle: ``dynamics.*``."""
    raw = runner.map(run_dynamics_task, tasks(st, z), desc="dynamics")
    s = summarize(raw)
    push_raw = runner.map(pushes.run_push_task, push_tasks(st, z), desc="pushes")
    s["pushes"] = pushes.summarize(push_raw)
    closed_raw = runner.map(closed_loop.run_closed_loop_task, closed_loop_tasks(st, z), desc="closed-loop")
    s["closed_loop"] = closed_loop.summarize(closed_raw)
    vs = st.variants
    results = {v: {} for v in vs}
    results["shared"] = s
    results["oracle"] = {"outside": 0.0, "in_solid": 0.0, "displacement_ok": 1.0, "event_precision": 1.0}
    results["details"] = {"tasks": raw, "push_tasks": push_raw, "closed_loop_tasks": closed_raw}
    config = {**st.config(), **dataclasses.asdict(z), "policies": list(POLICIES), "tolerance": TOLERANCE}
    report.write_json(out, "dynamics", results, config)
    keys = ("outside", "in_solid", "displacement_ok", "blocked_ok", "event_precision", "event_recall")
    rows = []
    for mode in ("free", "teacher"):
        for policy in (*POLICIES, "all"):
            m = s[f"{mode}_{policy}"]
            rows.append({"mode": mode, "policy": policy, **{k: report.with_ci(m[k], m[f"{k}_ci"]) for k in keys}})
    cells = [{"policy": p, **{f"step {t}": s[f"free_{p}"].get(f"same_cell_{t}") for t in CELL_STEPS}} for p in POLICIES]
    pay = [{"scenario / policy": k, **v} for k, v in s["payouts"].items()]
    pay_teacher = [{"scenario / policy": k, **v} for k, v in s["payouts_teacher"].items()]
    report.write_markdown(
        out,
        "dynamics",
        "Dynamics against the oracle (shared model)",
        [
            ("Rates over agent-steps [95% bootstrap interval over worlds]", report.markdown_table(rows)),
            ("Agents in the oracle's cell, free-running", report.markdown_table(cells)),
            ("Payouts, free-running", report.markdown_table(pay)),
            ("Payouts, teacher-forced (each step from the oracle's state)", report.markdown_table(pay_teacher)),
            ("Pushes judged by the oracle's push rule (multiworld.bench.pushes)", _push_tables(s["pushes"])),
            (
                closed_loop.TITLE,
                closed_loop.LEGEND + "\n\n" + report.markdown_table(closed_loop.table_rows(s["closed_loop"])),
            ),
        ],
        config,
    )
    return results


def headline(results: dict, variants) -> list[tuple[str, str]]:
    return []
