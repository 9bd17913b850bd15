"""Training data: recorded oracle episodes (:mod:`multiworld.models.rollouts` writes them) and
sequence batches.

Frames are optional in the store: the trainer re-renders every target view (plus depth) and
top-down map from the stored states with the oracle, which is exact and faster than reading
frames back. This is data preparation: the oracle is the teacher here and never part of the
model at run time. :class:`SequenceBatcher` draws a batch from a numpy generator it is given
(:meth:`~SequenceBatcher.draw`), so :mod:`multiworld.models.stream` can give batch i of the
stream its own generator in whichever worker process makes it.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import torch

from multiworld.models.heads import cell_maps
from multiworld.models.rollouts import PolicyMix, record_rollouts  # noqa: F401 (re-exported)
from multiworld.models.world_model import scenario_id
from multiworld.world.arena import ArenaConfig, generate
from multiworld.world.dynamics import step as world_step
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import NUM_ACTIONS, Action, WorldState
from multiworld.world.topdown import top_down


@dataclasses.dataclass
class SequenceSet:
    """Recorded episodes of one scenario and agent count: ``states`` row ``offsets[e] + t`` is
    episode e after t steps, ``actions`` the same row is the joint action taken from it."""

    scenario: str
    arena: ArenaConfig
    states: WorldState
    actions: np.ndarray  # (rows, N); the last row of each episode is unused
    offsets: np.ndarray  # (E,) first row of each episode
    lengths: np.ndarray  # (E,) rows of each episode

    def starts(self, horizon: int) -> np.ndarray:
        """Every row from which ``horizon`` steps stay inside its episode."""
        return np.concatenate([o + np.arange(max(0, n - horizon)) for o, n in zip(self.offsets, self.lengths)])


def _group(parts: dict[tuple, list]) -> list[SequenceSet]:
    out = []
    for (scenario, n), eps in sorted(parts.items()):
        lengths = np.array([e[0].num_worlds for e in eps])
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        out.append(
            SequenceSet(
                scenario,
                get_scenario(scenario).arena_config(num_agents=n),
                WorldState.concat([e[0] for e in eps]),
                np.concatenate([e[1] for e in eps]),
                offsets,
                lengths,
            )
        )
    return out


def load_sequences(paths: list[str | pathlib.Path], max_worlds: int | None = None) -> list[SequenceSet]:
    """Episodes of every world in the stores at ``paths``, grouped by (scenario, number of agents)."""
    from multiworld.state import WorldStore

    groups: dict[tuple, list] = {}
    for path in paths:
        if not pathlib.Path(path).exists() and "://" not in str(path):
            raise FileNotFoundError(f"no data store at {path}")
        with WorldStore.open(str(path), mode="r") as store:
            for wid in store.worlds()[:max_worlds]:
                r = store.world(wid)
                if r.steps < 2:
                    continue
                states = r.states(0, r.steps)
                acts = np.zeros((r.steps, states.num_agents), np.int64)
                acts[:-1] = np.asarray(r.actions(1, r.steps))
                scenario_id(r.scenario)  # a scenario the model cannot be conditioned on is an error now
                groups.setdefault((r.scenario, states.num_agents), []).append((states, acts))
    if not groups:
        raise ValueError(f"no episodes found in {[str(p) for p in paths]}")
    return _group(groups)


def make_sequences(scenario: str, num_agents: int, worlds: int, steps: int, seed: int) -> SequenceSet:
    """Episodes made on the fly by the oracle with the scripted policy (no store): validation and tests."""
    arena = get_scenario(scenario).arena_config(num_agents=num_agents)
    state = generate(arena, list(range(seed, seed + worlds)))
    policy = PolicyMix(worlds, 0.5, seed=seed)
    states, actions = [state], []
    for _ in range(steps):
        a = policy.act(state)
        actions.append(a)
        state, _ = world_step(state, a, arena)
        states.append(state)
    actions.append(np.zeros_like(actions[-1]))
    eps = [
        (WorldState.concat([s.select(w) for s in states]), np.stack([a[w] for a in actions]).astype(np.int64))
        for w in range(worlds)
    ]
    return _group({(scenario, num_agents): eps})[0]


def private_inputs(actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The actions a private-state model is given: per sequence one random owner keeps its own
    actions and every other agent reads NOOP (a private model cannot know them).
    ``(B, T, N) -> (B, T, N)`` (or ``(B, N) -> (B, N)``)."""
    actions = np.asarray(actions, np.int64)
    owner = rng.integers(0, actions.shape[-1], size=actions.shape[0])
    own = np.arange(actions.shape[-1]) == owner.reshape((-1,) + (1,) * (actions.ndim - 1))
    return np.where(own, actions, int(Action.NOOP))


@dataclasses.dataclass
class Batch:
    """B recorded sequences of T steps (T1 = T + 1 states, N agents, S x S cells), on one device.

    Row t of a state field is the world after t steps; row t of a transition field is the step
    from state t to t + 1. Indexing by name (``batch["views"]``) reads the field.

    views         (B, T1, N, H, W, 3) float32 in [0, 1]: every agent's oracle view
    depth         (B, T1, N, H, W)    float32: depth along the view axis (1e4 where nothing is hit)
    maps          (B, T1, h, w, 3)    float32 in [0, 1]: the top-down ``state()`` image
    poses         (B, T1, N, 3)       float32: x, y (cells), heading (radians)
    cells         {wall, floor, goal, box, item}: (B, T1, S, S) int64 cell classes (heads' targets)
    colors        (B, N)              int64: each agent's body colour
    actions       (B, T, N)           int64: the joint actions the model is given
    push, pick    (B, T, N)           float32 0/1: the agent's push / pickup this step
    unusual       (B, T, N)           float32 0/1: the agent's move is not its action's typical one
    reward        (B, T, N)           float32: the scenario's reward
    own_payout    (B, T, N)           int64: class of the agent's own payout (``OWN_VALUES``)
    shared_payout (B, T)              int64: class of the payout every agent shares (``SHARED_VALUES``)
    done          (B, T)              float32 0/1: the world terminated at this step
    scenario      (B,)                int64: the scenario id (the row of the model's ``worlds``)

    Recordings of other worlds (:mod:`multiworld.models.recorded`) may lack ``depth`` and
    ``maps`` (None): the model is then not asked for them.
    """

    views: torch.Tensor
    depth: torch.Tensor | None
    maps: torch.Tensor | None
    poses: torch.Tensor
    cells: dict[str, torch.Tensor]
    colors: torch.Tensor
    actions: torch.Tensor
    push: torch.Tensor
    pick: torch.Tensor
    unusual: torch.Tensor
    reward: torch.Tensor
    own_payout: torch.Tensor
    shared_payout: torch.Tensor
    done: torch.Tensor
    scenario: torch.Tensor
    free_move: torch.Tensor | None = None  # (B, T, N, 2) the teacher's free move (transitions.move_targets)
    move_outcome: torch.Tensor | None = None  # (B, T, N) int64 its outcome (index of dynamics.MOVE_OUTCOMES)

    def __getitem__(self, key: str):
        return getattr(self, key)


def payout_targets(rewards: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reward of every agent ``(..., N)`` split into the payout every agent shares (the value
    all agents got, when they all got the same) and each agent's own payout (the rest), as class
    indices of the state-update model's reward lattice: ``own_payout`` (..., N), ``shared_payout`` (...)."""
    from multiworld.models.dynamics import OWN_VALUES, SHARED_VALUES, payout_class

    same = (rewards == rewards[..., :1]).all(-1)
    shared = torch.where(same, rewards[..., 0], torch.zeros_like(rewards[..., 0]))
    return {
        "own_payout": payout_class(rewards - shared[..., None], OWN_VALUES),
        "shared_payout": payout_class(shared, SHARED_VALUES),
    }


def split_payouts(rewards: torch.Tensor, worth: torch.Tensor, pushed: torch.Tensor) -> dict[str, torch.Tensor]:
    """The split of :func:`payout_targets` the judgement model pays by (``payout="local"`` or
    ``"judge"``): the shared payout is what the teacher's pushes were worth (``worth`` (..., N)
    classes on OWN_VALUES, ``pushed`` (..., N) 0/1), each agent's own payout the rest of its reward.
    Splitting by equal rewards instead calls a lone forager's pickup, or two pickups at one step,
    a shared payout, and the own payout of a pickup then learns 0."""
    from multiworld.models.dynamics import OWN_VALUES, SHARED_VALUES, payout_class

    values = torch.as_tensor(OWN_VALUES, dtype=rewards.dtype, device=rewards.device)
    shared = (values[worth] * pushed).sum(-1).clamp(min(SHARED_VALUES), max(SHARED_VALUES))
    return {
        "own_payout": payout_class(rewards - shared[..., None], OWN_VALUES),
        "shared_payout": payout_class(shared, SHARED_VALUES),
    }


def egocentric_motion(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(..., 3) poses before and after a step -> (..., 3) the move in the agent's new frame:
    forward, right (cells) and the turn (radians)."""
    h = after[..., 2]
    d = after[..., :2] - before[..., :2]
    turn = np.mod(after[..., 2] - before[..., 2] + np.pi, 2 * np.pi) - np.pi
    fwd = d[..., 0] * np.cos(h) + d[..., 1] * np.sin(h)
    right = -d[..., 0] * np.sin(h) + d[..., 1] * np.cos(h)
    return np.stack([fwd, right, turn], -1)


def typical_motion(sets: list[SequenceSet]) -> np.ndarray:
    """(actions, 3) the median egocentric move of every action over the recorded data: what an
    action usually does, read off the data (no rule of the arena is written here)."""
    moves, acts = [], []
    for ss in sets:
        nxt = np.concatenate([ss.offsets[1:], [len(ss.actions)]]) - 1  # last row of each episode
        keep = np.ones(len(ss.actions), bool)
        keep[nxt] = False
        rows = np.flatnonzero(keep)
        moves.append(egocentric_motion(ss.states.poses[rows], ss.states.poses[rows + 1]).reshape(-1, 3))
        acts.append(ss.actions[rows].reshape(-1))
    moves, acts = np.concatenate(moves), np.concatenate(acts)
    return np.stack([np.median(moves[acts == a], 0) if (acts == a).any() else np.zeros(3) for a in range(NUM_ACTIONS)])


def unusual_motion(before: np.ndarray, after: np.ndarray, actions: np.ndarray, typical: np.ndarray) -> np.ndarray:
    """(..., N) bool: the agent's move differs from its action's typical move by more than 0.05
    (cells or radians): a blocked or shortened move, a push, a collision between agents."""
    return (np.abs(egocentric_motion(before, after) - typical[actions]) > 0.05).any(-1)


def eventful_rows(ss: SequenceSet, typical: np.ndarray | None = None, chunk: int = 4096) -> np.ndarray:
    """(rows,) bool: the transition from each row has a push or a pickup, or (given the typical
    move of every action) an unusual move: the rare events."""
    out = np.zeros(ss.actions.shape[0], bool)
    for idx, before, after, events in _transitions(ss, np.arange(len(out)), chunk):
        rare = (events.pushed >= 0) | (events.picked >= 0)
        if typical is not None:
            rare |= unusual_motion(before.poses, after.poses, ss.actions[idx], typical)
        out[idx] = rare.any(-1)
    return out


def _transitions(ss: SequenceSet, rows: np.ndarray, chunk: int):
    """The oracle's step from each of ``rows`` of ``ss`` with its recorded joint action, ``chunk``
    rows at a time: ``(rows, before, after, events)``."""
    arrays = ss.states.arrays()
    for a in range(0, len(rows), chunk):
        idx = rows[a : a + chunk]
        before = WorldState(**{k: v[idx] for k, v in arrays.items()})
        after, events = world_step(before, ss.actions[idx], ss.arena)
        yield idx, before, after, events


def scenario_rewards(ss: SequenceSet, chunk: int = 4096) -> np.ndarray:
    """(transitions, N) float32: the scenario's reward of every transition of ``ss`` (the last
    row of each episode, which has none, left out)."""
    rows = np.setdiff1d(np.arange(ss.actions.shape[0]), ss.offsets + ss.lengths - 1)
    sc = get_scenario(ss.scenario)
    out = [np.asarray(sc.reward(b, a, e), np.float32) for _, b, a, e in _transitions(ss, rows, chunk)]
    return np.concatenate(out) if out else np.zeros((0, ss.arena.num_agents), np.float32)


def data_payouts_seen(rewards: list[tuple[int, np.ndarray]], scenarios: int) -> torch.Tensor:
    """The state-update model's ``payouts_seen`` buffer, read off the training data: ``rewards``
    holds (scenario id, (transitions, N) rewards) pairs. ``(scenarios, len(OWN_VALUES) +
    len(SHARED_VALUES))`` bool: the payout classes each scenario's data pays; a scenario without
    data keeps every class."""
    from multiworld.models.dynamics import OWN_VALUES, SHARED_VALUES

    k = len(OWN_VALUES)
    seen = torch.ones(scenarios, k + len(SHARED_VALUES), dtype=torch.bool)
    for sid in {sid for sid, r in rewards if len(r)}:
        seen[sid] = False
    for sid, r in rewards:
        if len(r):
            t = payout_targets(torch.as_tensor(r, dtype=torch.float32))
            seen[sid, t["own_payout"].unique()] = True
            seen[sid, k + t["shared_payout"].unique()] = True
    return seen


class SequenceBatcher:
    """Batches of ``horizon``-step windows of recorded episodes with everything the losses need:
    the oracle's views, depth and top-down map at every step (re-rendered from the stored states),
    poses, cell maps, joint actions, events, rewards and endings.

    ``private_state``: train the private-state baseline. Targets stay the true next states (the
    world moves on with everyone's actions), but the model's action input keeps only one random
    owner agent's actions per sequence (:func:`private_inputs`), as a single-agent world model
    trained on the same rollouts would see them."""

    def __init__(
        self,
        sets: list[SequenceSet],
        batch_size: int,
        horizon: int,
        seed: int = 0,
        device: str = "cpu",
        private_state: bool = False,
        event_boost: float = 0.0,
        unusual_events: bool = False,
        typical: np.ndarray | None = None,
    ) -> None:
        self.sets, self.batch_size, self.horizon, self.device = sets, batch_size, horizon, device
        self.private_state = private_state
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.renderer = Raycaster(RenderConfig(), device=device)
        self.starts = [s.starts(horizon) for s in sets]
        # Rare events weigh more: a window holding a push or pickup (and with ``unusual_events``
        # an unusual move) is drawn (1 + event_boost) times as often as one without.
        # ``typical``: the training data's (validation batches judge moves by the same rule).
        self.typical = typical_motion(sets) if typical is None else typical
        self.start_p = []
        for ss, st in zip(sets, self.starts):
            w = np.ones(len(st))
            if event_boost > 0 and len(st):
                rare = eventful_rows(ss, self.typical if unusual_events else None)
                ev = np.concatenate([[0], np.cumsum(rare)])
                w += event_boost * ((ev[st + horizon] - ev[st]) > 0)
            self.start_p.append(w / w.sum() if len(st) else w)
        sizes = np.array([len(s) for s in self.starts], float)
        if not sizes.sum():
            raise ValueError(f"no episode is longer than the training horizon of {horizon} steps")
        self.weights = sizes / sizes.sum()

    def sample(self) -> Batch:
        return self.draw(self.rng)

    def draw(self, rng: np.random.Generator) -> Batch:
        """A batch of windows of one (scenario, agent count) set, drawn with ``rng`` only."""
        k = int(rng.choice(len(self.sets), p=self.weights))
        rows = rng.choice(self.starts[k], size=self.batch_size, p=self.start_p[k])
        return self.batch(self.sets[k], rows, rng)

    def batch(self, ss: SequenceSet, rows: np.ndarray, rng: np.random.Generator | None = None) -> Batch:
        bsz, t1 = len(rows), self.horizon + 1
        idx = (rows[:, None] + np.arange(t1)).reshape(-1)  # (B * T1,) world-major
        states = WorldState(**{k: v[idx] for k, v in ss.states.arrays().items()})
        acts = ss.actions[(rows[:, None] + np.arange(self.horizon)).reshape(-1)]
        before_idx = (rows[:, None] + np.arange(self.horizon)).reshape(-1)
        before = WorldState(**{k: v[before_idx] for k, v in ss.states.arrays().items()})
        after, events = world_step(before, acts, ss.arena)
        sc = get_scenario(ss.scenario)
        rewards = sc.reward(before, after, events)
        done = sc.terminated(after)
        unusual = unusual_motion(before.poses, after.poses, acts, self.typical)
        views = self.renderer.render(states, buffers=True)
        maps = top_down(states)
        n = states.num_agents
        dev = self.device
        t = lambda x: torch.as_tensor(np.ascontiguousarray(x), device=dev)  # noqa: E731
        given = acts.reshape(bsz, self.horizon, n)
        if self.private_state:
            given = private_inputs(given, self.rng if rng is None else rng)
        cells = {k: v.reshape(bsz, t1, *v.shape[1:]) for k, v in cell_maps(states, dev).items()}
        return Batch(
            **{
                "views": views.rgb.reshape(bsz, t1, n, *views.rgb.shape[2:]).float().div_(255),
                "depth": views.depth.reshape(bsz, t1, n, *views.depth.shape[2:]),
                "maps": t(maps).reshape(bsz, t1, *maps.shape[1:]).float().div_(255),
                "poses": t(states.poses).reshape(bsz, t1, n, 3),
                "cells": cells,
                "colors": t(states.colors[::t1].astype(np.int64)),
                "actions": t(given),
                "push": t((events.pushed >= 0).reshape(bsz, self.horizon, n)).float(),
                "pick": t((events.picked >= 0).reshape(bsz, self.horizon, n)).float(),
                "unusual": t(unusual.reshape(bsz, self.horizon, n)).float(),
                "reward": t(rewards.reshape(bsz, self.horizon, n)).float(),
                **payout_targets(t(rewards.reshape(bsz, self.horizon, n)).float()),
                "done": t(done.reshape(bsz, self.horizon)).float(),
                "scenario": torch.full((bsz,), scenario_id(ss.scenario), dtype=torch.long, device=dev),
            }
        )
