"""`multiworld bench dynamics`: the oracle against itself scores exactly right, and a tiny run of
the shipped model writes every figure the README and the model card read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from multiworld.bench import dynamics
from multiworld.bench.runner import Runner, Settings
from multiworld.bench.variants import SimSpec
from multiworld.models.transitions import move_targets
from multiworld.world.arena import generate
from multiworld.world.dynamics import step as world_step
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import Action

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py
TINY = dynamics.Sizes(agents=3, worlds=2, steps=12, teacher_steps=6, scenarios=("forage-v0", "push-v0"))


def test_the_oracle_against_itself_scores_exactly_right(tmp_path):
    """The measurement itself: with the oracle as the backend under test, nothing leaves the map
    or enters a wall, every displacement (blocked ones included) is right, every event is matched,
    and the payouts agree exactly."""
    st = Settings(spec=SimSpec(backend="oracle"), variants=("shared",), sizes={"dynamics": TINY})
    res = dynamics.run(st, TINY, Runner(None, progress=False), tmp_path)["shared"]
    for mode in ("free_all", "teacher_all"):
        m = res[mode]
        assert m["outside"] == 0 and m["in_solid"] == 0, m
        assert m["displacement_ok"] == 1.0 and m["blocked_ok"] in (1.0, None), m
        assert m["event_precision"] in (1.0, None) and m["event_recall"] in (1.0, None), m
    assert res["free_forward"]["blocked_ok"] == 1.0  # the forward walkers did hit things
    for key, p in (res["payouts"] | {f"teacher {k}": v for k, v in res["payouts_teacher"].items()}).items():
        assert p["model_total"] == p["oracle_total"], (key, p)
    staged = res["pushes"]["staged/push-v0"]  # the staged pusher: paid once, the box on its goal
    assert staged["worlds"] > 0 and staged["pushes_oracle"] == staged["worlds"], staged
    assert staged["paid_model"] == staged["paid_oracle"] > 0 and staged["boxes_as_oracle"] == staged["worlds"]
    for scenario in dynamics.BOXED:  # every push the oracle makes its own rule makes, and the reverse
        for policy in ("random", "scripted"):
            free = res["pushes"][f"free/{policy}/{scenario}"]
            assert free["possible"] == free["box_ahead"] == free["interact"] == free["fired"], free
            assert free["rule_pushes"] == free["fired"] == free["oracle_pushes"], free
    written = json.loads((tmp_path / "dynamics.json").read_text())
    assert "provenance" in written and (tmp_path / "dynamics.md").exists()
    assert "Staged pushers" in (tmp_path / "dynamics.md").read_text()
    for scenario, closed in res["closed_loop"].items():  # closed-loop: the same run on both sides
        assert closed["paid"] == closed["oracle_paid"] and closed["missed_items"] == 0, (scenario, closed)
    assert set(res["closed_loop"]) == set(dynamics.BOXED) and "closed-loop" in (tmp_path / "dynamics.md").read_text()


@pytest.mark.parametrize("scenario", dynamics.BOXED)
def test_every_push_of_the_oracle_is_one_its_own_rule_makes_and_the_reverse(scenario):
    """Free-running pushes judged by the oracle's step on the backend's own world: for the oracle
    itself every fired push is one the rule makes and every push the rule makes is fired."""
    from multiworld.bench import pushes
    from multiworld.seeds import probe_seeds

    seeds = tuple(probe_seeds("dynamics", 4, dynamics.PUSH_SEED_OFFSET))
    task = pushes.PushTask(SimSpec(backend="oracle"), "free", scenario, "scripted", 3, seeds, 60)
    got = {k: sum(v) for k, v in pushes.run_push_task(task).items() if isinstance(v, list)}
    assert got["fired"] > 0, got  # scripted agents do push boxes in 60 steps
    assert got["possible"] == got["box_ahead"] == got["interact"] == got["fired"], got
    assert got["rule_pushes"] == got["fired"] == got["oracle_pushes"], got
    assert got["paid_false"] == 0 and got["paid"] == got["oracle_paid"], got


def test_a_tiny_run_of_the_shipped_model_writes_every_figure(tmp_path):
    z = dynamics.Sizes(agents=2, worlds=1, steps=3, teacher_steps=2, scenarios=("push-v0",))
    st = Settings(spec=SimSpec(), variants=("shared",), sizes={"dynamics": z})
    res = dynamics.run(st, z, Runner(None, progress=False), tmp_path)["shared"]
    for mode in ("free", "teacher"):
        for policy in (*dynamics.POLICIES, "all"):
            m = res[f"{mode}_{policy}"]
            for key in ("outside", "in_solid", "displacement_ok"):
                assert 0.0 <= m[key] <= 1.0 and len(m[f"{key}_ci"]) == 2, (mode, policy, key)
    assert set(res["payouts"]) == set(res["payouts_teacher"]) == {"push-v0/scripted", "push-v0/random"}
    free = {f"free/{p}/{s}" for s in dynamics.BOXED for p in ("random", "scripted")}
    assert set(res["pushes"]) == {"staged/push-v0", *free}
    assert res["pushes"]["staged/push-v0"]["worlds"] == 1
    closed = res["closed_loop"]["push-v0"]  # the closed-loop payouts: the scenarios of the run that pay
    assert set(res["closed_loop"]) == {"push-v0"} and len(closed["paid_difference_ci"]) == 2, closed
    assert 0 <= closed["ghost_refusals"] <= closed["rule_pushes"] - closed["possible"], closed


def test_move_targets_name_the_outcome_of_every_move():
    """The teacher's outcome classes: the whole move in the open, none into a wall, a slide along
    the wall when moving diagonally into it."""
    arena = get_scenario("roam-v0").arena_config(num_agents=1)
    state = generate(arena, [3])
    state.walls[:] = 0
    state.walls[0, :, 0] = state.walls[0, :, -1] = state.walls[0, 0, :] = state.walls[0, -1, :] = 1
    state.boxes[:] = 15  # out of the way: on the border
    cases = [
        ((5.5, 5.5, 0.0), 0),  # open floor, heading east: the whole move
        ((14.79, 5.5, 0.0), 3),  # touching the east border wall, heading east: no move
        ((14.79, 5.5, np.pi / 4), 2),  # diagonal into the east wall: slides along y only
        ((5.5, 1.21, -np.pi / 4), 1),  # diagonal into the north wall: slides along x only
    ]
    for pose, expected in cases:
        state.poses[:] = np.array(pose, np.float32)
        action = np.array([[int(Action.FORWARD)]])
        after, _ = world_step(state, action, arena)
        _, outcome = move_targets(state.poses, after.poses, action, arena)
        assert int(outcome[0, 0]) == expected, (pose, outcome)


def _closed_loop_task(scenario: str, steps: int):
    from multiworld.bench import closed_loop
    from multiworld.seeds import probe_seeds

    seeds = tuple(probe_seeds("dynamics", 3, dynamics.CLOSED_SEED_OFFSET))
    return closed_loop.ClosedLoopTask(SimSpec(backend="oracle"), scenario, 3, seeds, steps)


@pytest.mark.parametrize("scenario", dynamics.BOXED)
def test_closed_loop_payouts_of_the_oracle_against_itself_agree_exactly(scenario):
    """Each simulator's scripted policy reads its own world: with the oracle on both sides the two
    runs are the same run, so everything is paid alike and the rule on its own world misses nothing."""
    from multiworld.bench import closed_loop

    raw = closed_loop.run_closed_loop_task(_closed_loop_task(scenario, 150))
    s = closed_loop.summarize([raw])[scenario]
    assert raw["paid"] == raw["oracle_paid"] and s["paid"] > 0, s  # scripted agents earn in 150 steps
    assert s["missed_items"] == s["repeat_pickups"] == s["stayed_pickups"] == 0, s
    assert s["model_items"] == s["rule_items"], s
    assert s["possible"] == s["fired"] == s["rule_pushes"], s
    assert s["ghost_refusals"] == s["ghost_boxes"] == s["ghost_onsets"] == 0, s
    if scenario == "forage-v0":
        assert s["rule_items"] > 0, s
    else:
        assert s["fired"] > 0, s
    assert s["ratio"] == 1.0 and s["paid_difference_ci"] == [0.0, 0.0], s


def _undoing(field: str, kind: str | None):
    """An oracle simulator whose steps leave ``state.<field>`` as it was; ``kind``: the events it then
    drops, with every reward (None: its events and rewards stay the oracle's)."""
    from multiworld.sim.oracle import OracleSimulator

    class Undoing(OracleSimulator):
        def _advance(self, actions):
            kept = getattr(self.state, field).copy()
            rewards, terminated, events = super()._advance(actions)
            getattr(self.state, field)[:] = kept
            if kind is None:
                return rewards, terminated, events
            return np.zeros_like(rewards), terminated, [[e for e in ev if e["type"] != kind] for ev in events]

    return Undoing


def test_closed_loop_payouts_catch_a_world_that_never_picks_up_or_picks_up_twice():
    """A backend whose items are never picked up (the rule's pickups on its own world all missed),
    one that picks every item up again at the next step and pays again, and one whose items stay
    in the world after every pickup (so each is picked again and again): the section counts every
    missed item, every repeat and every pickup the item stayed after, and the payouts fall short or
    overshoot."""
    from multiworld.bench import closed_loop
    from multiworld.sim.oracle import OracleSimulator

    NoPickups = _undoing("items_alive", "pickup")

    class Twice(OracleSimulator):
        def _advance(self, actions):
            rewards, terminated, events = super()._advance(actions)
            fresh = [[e for e in ev if e["type"] == "pickup"] for ev in events]
            for w, again in enumerate(getattr(self, "last", [])):  # last step's pickups, once more
                for e in again:
                    events[w].append(e)
                    rewards[w, self.agent_names.index(e["agent"])] += 1
            self.last = fresh
            return rewards, terminated, events

    Stays = _undoing("items_alive", None)

    task = _closed_loop_task("forage-v0", 80)
    scenario = get_scenario("forage-v0")
    sims = (cls(scenario, 3, len(task.seeds)) for cls in (OracleSimulator, NoPickups, Twice, Stays))
    oracle, broken, twice, stays = sims
    s = closed_loop.summarize([closed_loop.run_pair(task, oracle, broken)])["forage-v0"]
    assert s["rule_items"] > 0 and s["missed_items"] == s["rule_items"] and s["missed_share"] == 1.0, s
    assert s["model_items"] == 0 and s["paid"] == 0 < s["oracle_paid"], s
    assert s["paid_difference_ci"][1] < 0, s
    s = closed_loop.summarize([closed_loop.run_pair(task, oracle, twice)])["forage-v0"]
    assert s["missed_items"] == 0 and s["repeat_pickups"] == s["model_items"] > 0, s
    assert s["paid"] == s["oracle_paid"] + s["repeat_pickups"] and s["stayed_pickups"] == 0, s
    raw = closed_loop.run_pair(task, oracle, stays)
    s = closed_loop.summarize([raw])["forage-v0"]
    picks = s["model_items"] + s["repeat_pickups"]  # every pickup event, first or again
    assert s["model_items"] > 0 and s["repeat_pickups"] > 0 and s["stayed_pickups"] == picks, s
    assert s["paid"] > s["oracle_paid"], s


def test_closed_loop_payouts_count_the_pushes_refused_at_a_ghost_box():
    """A backend that never pushes and whose readout calls every box a ghost: every push the rule
    makes on its world is refused at a ghost, and every box counts as a ghost at every step. One
    whose boxes turn into ghosts when pushed (and never otherwise): every onset is at a push."""
    from multiworld.bench import closed_loop
    from multiworld.sim.oracle import OracleSimulator

    class Ghosts(_undoing("boxes", "push")):
        def ghost_boxes(self):
            return np.ones(self.state.boxes.shape[:2], bool)

    class PushedGhosts(OracleSimulator):
        def ghost_boxes(self):
            return getattr(self, "pushed", np.zeros(self.state.boxes.shape[:2], bool)).copy()

        def _advance(self, actions):
            rewards, terminated, events = super()._advance(actions)
            self.pushed = getattr(self, "pushed", np.zeros(self.state.boxes.shape[:2], bool))
            for w, ev in enumerate(events):
                for e in ev:
                    if e["type"] == "push":
                        self.pushed[w, e["box"]] = True
            return rewards, terminated, events

    task = _closed_loop_task("push-v0", 80)
    scenario = get_scenario("push-v0")
    oracle, ghosts = OracleSimulator(scenario, 3, len(task.seeds)), Ghosts(scenario, 3, len(task.seeds))
    s = closed_loop.summarize([closed_loop.run_pair(task, oracle, ghosts)])["push-v0"]
    assert s["fired"] == 0 and s["rule_pushes"] > 0 and s["ghost_refusals"] == s["rule_pushes"], s
    assert s["ghost_boxes"] == task.steps * len(task.seeds) * oracle.world_state().boxes.shape[1], s
    assert s["ghost_onsets"] == 0, s  # ghosts from the start: none turned
    s = closed_loop.summarize([closed_loop.run_pair(task, oracle, PushedGhosts(scenario, 3, len(task.seeds)))])
    s = s["push-v0"]
    assert s["ghost_onsets"] > 0 and s["ghost_onsets_at_push"] == s["ghost_onsets"], s
