"""Event propagation: when agent A pushes a box or picks up an item in agent B's view, does B see it?

A probe is a constructed start state (a held-out generated map with A and B placed by the
probe's seed): A stands facing a box it can push (INTERACT) or one step from an item (FORWARD
picks it up), and B looks at the box or item from 1.5-5 cells away. Every simulator starts
from the probe state and takes the joint action (A acts, everyone else NOOP), and again with A
doing NOOP. With B's generated views ``g`` (event) and ``g0`` (A did NOOP), and the oracle's
views ``post`` (event) and ``cf`` (A did NOOP):

- *correct* (the headline): the simulator's own event effect is closer to the true effect than
  no effect at all: ``MSE(g - g0, post - cf) < MSE(0, post - cf)``. A simulator that never
  draws the item or box, or never shows the event, has ``g == g0`` and fails.
- *correct_simple*: ``MSE(g, post) < MSE(g, cf)``: B's view after the event is closer to the
  oracle's post-event view than to the counterfactual one. A blurry model that never draws
  items passes this for every pickup, hence the stricter headline.

The propagation
rate is the fraction of correct probes. Probes keep only cases where the event really happens
in the oracle and changes at least ``min_pixels`` pixels of B's oracle view.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from multiworld.bench import report, stats
from multiworld.bench.metrics import mse
from multiworld.bench.runner import Runner, Settings, chunks
from multiworld.bench.variants import VARIANTS, SimSpec
from multiworld.seeds import check_held_out, probe_seeds
from multiworld.world.arena import generate
from multiworld.world.dynamics import solid_cells
from multiworld.world.dynamics import step as world_step
from multiworld.world.render import Raycaster
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import FLOOR, Action, WorldState

KINDS = ("push", "pickup")


@dataclasses.dataclass(frozen=True)
class Sizes:
    agents: tuple[int, ...]
    seeds: int  # per agent count; each seed gives up to one push and one pickup probe
    chunk: int  # seeds per task


QUICK = Sizes(agents=(2, 4), seeds=12, chunk=12)
FULL = Sizes(agents=(2, 4, 8, 16), seeds=24, chunk=8)
_DIRS = np.array([[0, 1], [1, 0], [0, -1], [-1, 0]])  # (d_row, d_col) east, south, west, north
_PICKUP_GAP = 0.6  # A starts this far from the item centre; one forward step (0.25) reaches it


@dataclasses.dataclass
class Probe:
    """A one-world start state where ``actor`` taking ``action`` makes a ``kind`` event ``observer`` sees."""

    seed: int
    kind: str
    state: WorldState
    actor: int
    observer: int
    action: int

    def actions(self) -> np.ndarray:
        a = np.full((1, self.state.num_agents), int(Action.NOOP), np.int64)
        a[0, self.actor] = self.action
        return a


def _free_cell(state: WorldState, cell, taken) -> bool:
    r, c = (int(v) for v in cell)
    s = state.size
    if not (0 < r < s - 1 and 0 < c < s - 1) or state.walls[0, r, c] != FLOOR or (r, c) in taken:
        return False
    if np.any(np.all(state.boxes[0] == (r, c), axis=-1)):
        return False
    alive = state.items[0][state.items_alive[0]]
    return not np.any(np.all(alive == (r, c), axis=-1))


def _clear_of_agents(state: WorldState, xy: np.ndarray, skip: set[int], radius: float) -> bool:
    for n in range(state.num_agents):
        if n not in skip and np.all(np.abs(state.poses[0, n, :2] - xy) < 2 * radius + 0.3):
            return False
    return True


def make_probe(
    seed: int,
    kind: str,
    num_agents: int,
    scenario: str = "roam-v0",
    renderer: Raycaster | None = None,
    min_pixels: int = 40,
    attempts: int = 300,
) -> Probe | None:
    """The probe of ``seed`` (deterministic), or None when this map offers no valid one."""
    if kind not in KINDS:
        raise ValueError(f"unknown probe kind {kind!r}; valid: {list(KINDS)}")
    arena = get_scenario(scenario).arena_config(num_agents=max(num_agents, 2))
    base = generate(arena, [seed])
    renderer = renderer or Raycaster()
    rng = np.random.Generator(np.random.PCG64(seed))
    targets = base.boxes[0] if kind == "push" else base.items[0][base.items_alive[0]]
    if len(targets) == 0:
        return None
    r_agent = arena.agent_radius
    for _ in range(attempts):
        actor, observer = (int(v) for v in rng.choice(num_agents, 2, replace=False))
        target = targets[rng.integers(len(targets))].astype(np.int64)
        d = _DIRS[rng.integers(4)]
        heading = float(np.arctan2(d[0], d[1]))
        if kind == "push":
            a_cell, dest = target - d, target + d
            if not (_free_cell(base, a_cell, set()) and _free_cell(base, dest, set())):
                continue
            a_xy = np.array([a_cell[1] + 0.5, a_cell[0] + 0.5])
            action = int(Action.INTERACT)
        else:
            centre = np.array([target[1] + 0.5, target[0] + 0.5])
            a_xy = centre - _PICKUP_GAP * d[::-1]
            a_cell = np.floor(a_xy[::-1]).astype(np.int64)
            if not _free_cell(base, a_cell, set()):
                continue
            action = int(Action.FORWARD)
        # The observer stands in a free cell 1.5-5 cells from the target, looking at it.
        offset = rng.integers(-5, 6, size=2)
        dist = float(np.hypot(*offset))
        b_cell = target + offset
        if not 1.5 <= dist <= 5 or not _free_cell(base, b_cell, {tuple(a_cell), tuple(target + d)}):
            continue
        b_xy = np.array([b_cell[1] + 0.5, b_cell[0] + 0.5])
        look = np.arctan2(target[0] + 0.5 - b_xy[1], target[1] + 0.5 - b_xy[0]) + rng.uniform(-0.35, 0.35)
        if np.all(np.abs(a_xy - b_xy) < 2 * r_agent + 0.3):
            continue
        if not (
            _clear_of_agents(base, a_xy, {actor, observer}, r_agent)
            and _clear_of_agents(base, b_xy, {actor, observer}, r_agent)
        ):
            continue
        state = base.copy()
        state.poses[0, actor] = (a_xy[0], a_xy[1], heading)
        state.poses[0, observer] = (b_xy[0], b_xy[1], np.mod(look + np.pi, 2 * np.pi) - np.pi)
        if _blocked(state, arena.agent_radius):
            continue
        probe = Probe(seed, kind, state, actor, observer, action)
        post, cf, events = _oracle_outcomes(probe, arena, renderer)
        wanted = "pushed" if kind == "push" else "picked"
        if getattr(events, wanted)[0, actor] < 0:
            continue
        if int(np.any(post != cf, axis=-1).sum()) < min_pixels:
            continue
        return probe
    return None


def _blocked(state: WorldState, radius: float) -> bool:
    """Some agent overlaps a solid cell (walls, boxes) in the constructed state."""
    solid = solid_cells(state)[0]
    for x, y, _ in state.poses[0]:
        for cx in (x - radius, x + radius):
            for cy in (y - radius, y + radius):
                if solid[int(np.floor(cy)), int(np.floor(cx))]:
                    return True
    return False


def _oracle_outcomes(probe: Probe, arena, renderer: Raycaster):
    """The observer's oracle view after the event, after the counterfactual NOOP, and the events."""
    after, events = world_step(probe.state, probe.actions(), arena)
    noop, _ = world_step(probe.state, np.zeros_like(probe.actions()), arena)
    views = renderer.render(WorldState.concat([after, noop])).rgb.numpy()
    return views[0, probe.observer], views[1, probe.observer], events


def make_probes(seeds, kinds=KINDS, num_agents: int = 2, scenario: str = "roam-v0") -> list[Probe]:
    """One probe per seed and kind where the map allows one (skipped otherwise)."""
    renderer = Raycaster()
    probes = []
    for seed in seeds:
        for kind in kinds:
            p = make_probe(int(seed), kind, num_agents, scenario, renderer)
            if p is not None:
                probes.append(p)
    return probes


@dataclasses.dataclass(frozen=True)
class EventTask:
    """Probes of ``num_agents`` agents built from ``seeds`` (one per seed and kind), run on ``variants``."""

    spec: SimSpec
    num_agents: int
    seeds: tuple[int, ...]
    kinds: tuple[str, ...] = KINDS
    variants: tuple[str, ...] = VARIANTS

    def __post_init__(self) -> None:
        check_held_out(self.seeds)


def run_event_task(task: EventTask) -> dict:
    """Per probe: seed, kind, and per variant both criteria (see the module docstring) and distances.

    Every simulator runs each probe twice in one batch: with A's action, and with A doing NOOP
    (worlds ``P..2P-1``), which gives the simulator's own event effect for the strict criterion."""
    probes = make_probes(task.seeds, task.kinds, task.num_agents, task.spec.scenario)
    if not probes:
        return {"probes": []}
    arena = get_scenario(task.spec.scenario).arena_config(num_agents=task.num_agents)
    renderer = Raycaster()
    outcomes = [_oracle_outcomes(p, arena, renderer) for p in probes]
    num = len(probes)
    start = WorldState.concat([p.state for p in probes] * 2)
    actions = np.concatenate([p.actions() for p in probes] + [np.zeros_like(p.actions()) for p in probes])
    seeds = [p.seed for p in probes] * 2
    observer = np.array([p.observer for p in probes] * 2)
    rows = [{"seed": p.seed, "kind": p.kind, "agents": task.num_agents} for p in probes]
    for v in task.variants:
        sim = task.spec.build(v, task.num_agents, 2 * num)
        try:
            sim.reset(seeds, start=start)
            view = sim.step(actions).rgb[np.arange(2 * num), observer].astype(np.float64)
        finally:
            sim.close()
        for row, g, g_noop, (post, cf, _) in zip(rows, view[:num], view[num:], outcomes, strict=True):
            post, cf = post.astype(np.float64), cf.astype(np.float64)
            d_post, d_cf = float(mse(g, post)), float(mse(g, cf))
            effect, true_effect = g - g_noop, post - cf
            d_effect, d_none = float(mse(effect, true_effect)), float(mse(true_effect, 0 * true_effect))
            row[v] = {
                "correct": bool(d_effect < d_none),
                "correct_simple": bool(d_post < d_cf),
                "mse_event": round(d_post, 3),
                "mse_no_event": round(d_cf, 3),
                "mse_effect": round(d_effect, 3),
                "mse_true_effect": round(d_none, 3),
            }
    return {"probes": rows}


def summarize_events(results: list[dict], variants=VARIANTS) -> dict:
    """Propagation rate per variant, overall, per kind and per number of agents."""
    rows = [r for res in results for r in res["probes"]]
    out = {"num_probes": len(rows)}

    def rate(sel, v: str, key: str = "correct") -> float:
        sel = list(sel)
        return float(np.mean([r[v][key] for r in sel])) if sel else float("nan")

    for v in variants:
        out[v] = {
            "event_propagation": rate(rows, v),
            "event_propagation_simple": rate(rows, v, "correct_simple"),
            "by_kind": {k: rate((r for r in rows if r["kind"] == k), v) for k in KINDS},
            "by_agents": {
                str(n): rate((r for r in rows if r["agents"] == n), v) for n in sorted({r["agents"] for r in rows})
            },
        }
    return out


def tasks(st: Settings, agents: tuple[int, ...], seeds_per_n: int, chunk: int) -> list[EventTask]:
    """The probe batches of ``seeds_per_n`` seeds per agent count, ``chunk`` seeds each."""
    out = []
    for n in agents:
        seeds = probe_seeds("events", seeds_per_n, start=1000 * n)
        out += [EventTask(st.spec, n, c, variants=st.variants) for c in chunks(seeds, chunk)]
    return out


def events_ci(probes: list[dict], variants) -> dict:
    """Intervals of every variant's event-propagation rate, resampling the probe worlds (seeds)."""
    worlds = sorted({(p["agents"], p["seed"]) for p in probes})
    if not worlds:
        return {"worlds": 0, "ci": {v: [None, None] for v in variants}, "diff": {}}
    index = {w: i for i, w in enumerate(worlds)}
    counts = np.zeros(len(worlds))
    hits = {v: np.zeros(len(worlds)) for v in variants}
    for p in probes:
        i = index[(p["agents"], p["seed"])]
        counts[i] += 1
        for v in variants:
            hits[v][i] += float(p[v]["correct"])
    return stats.compare({v: stats.rate_of(hits[v], counts) for v in variants}, len(worlds))


def run(st: Settings, z: Sizes, runner: Runner, out: pathlib.Path) -> dict:
    """Event propagation at every agent count: ``events.*``."""
    vs = st.variants
    raw = runner.map(run_event_task, tasks(st, z.agents, z.seeds, z.chunk), desc="event probes")
    s = summarize_events(raw, vs)
    probes = [p for r in raw for p in r["probes"]]
    results = {v: s[v] for v in vs}
    results["ci"] = {"event_propagation": events_ci(probes, vs)}
    by_n = {n: events_ci([p for p in probes if p["agents"] == n], vs) for n in z.agents}
    for v in vs:
        results[v]["event_propagation_ci_by_agents"] = {str(n): c["ci"][v] for n, c in by_n.items()}
    results["details"] = {"num_probes": s["num_probes"], "probes": probes}
    config = {**st.config(), "agents": list(z.agents), "seeds_per_agent_count": z.seeds}
    report.write_json(out, "events", results, config)
    first = report.ci_row("all", results, results["ci"]["event_propagation"], "event_propagation", vs)
    rows = [{"probes": first.pop("metric"), **first}]
    rows += [{"probes": kind, **{v: s[v]["by_kind"][kind] for v in vs}} for kind in KINDS]
    rows.append({"probes": "all, simple criterion", **{v: s[v]["event_propagation_simple"] for v in vs}})
    agent_rows = [
        {"agents": n, **{v: report.with_ci(s[v]["by_agents"].get(str(n)), by_n[n]["ci"][v]) for v in vs}}
        for n in z.agents
    ]
    report.write_markdown(
        out,
        "events",
        "Event propagation",
        [
            (f"Rate over {s['num_probes']} probes [95% bootstrap interval over worlds]", report.markdown_table(rows)),
            ("Shared minus each variant (paired bootstrap)", report.calls_table(results["ci"], vs)),
            ("By number of agents", report.markdown_table(agent_rows)),
        ],
        config,
    )
    ns = sorted(int(n) for n in s[vs[0]]["by_agents"])
    series = {v: (ns, [s[v]["by_agents"][str(n)] for n in ns]) for v in vs}
    title = "Event propagation by number of agents"
    report.plot_lines(out / "events_vs_agents.png", series, "agents per world", "event propagation rate", title)
    return results


def headline(results: dict, variants) -> list[tuple[str, str]]:
    """(key, label) of this benchmark's rows in the summary table."""
    return [("event_propagation", "event propagation (events suite, every agent count)")]


def scaling(results: dict, variants) -> list[tuple[str, dict]]:
    """This benchmark's panel of ``scaling.png``."""
    return [("event propagation", report.by_agents(results, variants, "by_agents", "event_propagation_ci_by_agents"))]
