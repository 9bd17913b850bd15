"""Training data: oracle rollouts recorded in the world-state store, and teacher-forcing batches.

Recording: batches of worlds run by the oracle with a mix of random and scripted policies; each
world is one store world (row t = state after t steps). Frames are optional in the store: the
trainer re-renders every target view (plus depth) from the stored states with the oracle renderer,
which is exact and faster than reading frames back.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import torch
from tqdm import tqdm

from multiworld.models.scene import cell_maps
from multiworld.world.arena import ArenaConfig, generate
from multiworld.world.dynamics import step as world_step
from multiworld.world.render import Raycaster, RenderConfig
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import NUM_ACTIONS, Action, WorldState


class PolicyMix:
    """Per world, either the scripted or the random policy (chosen once per episode)."""

    def __init__(self, num_worlds: int, scripted_fraction: float, seed: int) -> None:
        from multiworld.agents.policies import make_policy

        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.scripted = make_policy("scripted", seed=seed)
        self.random = make_policy("random", seed=seed + 1)
        self.use_scripted = self.rng.random(num_worlds) < scripted_fraction

    def act(self, state: WorldState) -> np.ndarray:
        a = self.random.act(state)
        if self.use_scripted.any():
            a = np.where(self.use_scripted[:, None], self.scripted.act(state), a)
        return a


def record_rollouts(
    out: str | pathlib.Path,
    scenario: str,
    num_agents: int,
    episodes: int,
    steps: int,
    seed: int = 0,
    frames: bool = True,
    scripted_fraction: float = 0.5,
    batch: int = 16,
    progress: bool = True,
) -> int:
    """Record ``episodes`` oracle episodes of ``steps`` steps into the store at ``out``; returns rows written.

    Episode e uses world seed ``seed + e`` and is stored as world ``{scenario}-n{N}-s{seed+e}``."""
    from multiworld.state import WorldStore

    sc = get_scenario(scenario)
    arena = sc.arena_config(num_agents=num_agents)
    renderer = Raycaster(RenderConfig()) if frames else None
    rows = 0
    names = [f"agent_{i}" for i in range(num_agents)]
    with WorldStore.open(str(out), mode="a") as store:
        bar = tqdm(total=episodes * steps, desc=f"data {scenario} x{num_agents}", unit="step", disable=not progress)
        for first in range(0, episodes, batch):
            seeds = list(range(seed + first, seed + min(episodes, first + batch)))
            state = generate(arena, seeds)
            policy = PolicyMix(len(seeds), scripted_fraction, seed=seed * 7919 + first)
            kw = {"frame_shape": (64, 64)} if frames else {}
            rgb = renderer.render(state).rgb.numpy() if frames else None
            writers = []
            for w, s in enumerate(seeds):
                extra = {"frames": rgb[w]} if frames else {}
                writers.append(
                    store.create_world(
                        f"{scenario}-n{num_agents}-s{s}",
                        state.select(w),
                        scenario=scenario,
                        seed=s,
                        config={"arena": dataclasses.asdict(arena), "policy_scripted": bool(policy.use_scripted[w])},
                        agents=names,
                        **kw,
                        **extra,
                    )
                )
            for t in range(steps):
                actions = policy.act(state)
                after, events = world_step(state, actions, arena)
                rewards = sc.reward(state, after, events)
                done = sc.terminated(after)
                rgb = renderer.render(after).rgb.numpy() if frames else None
                for w, writer in enumerate(writers):
                    extra = {"frames": rgb[w]} if frames else {}
                    writer.append(
                        after.select(w),
                        actions[w],
                        rewards[w],
                        np.repeat(done[w], num_agents),
                        np.zeros(num_agents, bool),
                        events=events.as_dicts(w, names),
                        commit=(t + 1) % 50 == 0 or t == steps - 1,
                        **extra,
                    )
                state = after
                rows += len(seeds)
                bar.update(len(seeds))
            for writer in writers:
                writer.close()
        bar.close()
    return rows


@dataclasses.dataclass
class TransitionSet:
    """All transitions of one store group with the same arena: states (B=rows) and the actions after them."""

    arena: ArenaConfig
    states: WorldState  # every row that has a successor
    actions: np.ndarray  # (rows, N) the actions applied to each of those rows

    def __len__(self) -> int:
        return len(self.actions)


def load_transitions(paths: list[str | pathlib.Path], max_worlds: int | None = None) -> list[TransitionSet]:
    """Transitions of every world in the stores at ``paths``, grouped by (scenario, number of agents)."""
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
                key = (r.scenario, states.num_agents)
                groups.setdefault(key, []).append(
                    (states.select(slice(0, r.steps - 1)), np.asarray(r.actions(1, r.steps)))
                )
    out = []
    for (scenario, n), parts in sorted(groups.items()):
        arena = get_scenario(scenario).arena_config(num_agents=n)
        out.append(
            TransitionSet(arena, WorldState.concat([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        )
    if not out:
        raise ValueError(f"no transitions found in {[str(p) for p in paths]}")
    return out


def random_transitions(scenario: str, num_agents: int, worlds: int, steps: int, seed: int) -> TransitionSet:
    """Transitions made on the fly (no store): for tests and quick experiments."""
    from multiworld.agents.policies import make_policy

    arena = get_scenario(scenario).arena_config(num_agents=num_agents)
    state = generate(arena, list(range(seed, seed + worlds)))
    policy = make_policy("scripted", seed=seed)
    states, actions = [], []
    for _ in range(steps):
        a = policy.act(state)
        states.append(state)
        actions.append(a)
        state, _ = world_step(state, a, arena)
    return TransitionSet(arena, WorldState.concat(states), np.concatenate(actions))


def private_inputs(actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The actions a private-state model is given: per transition one random owner keeps its own
    action and every other agent reads NOOP (a private model cannot know them). ``(B, N) -> (B, N)``."""
    actions = np.asarray(actions, np.int64)
    owner = rng.integers(0, actions.shape[1], size=actions.shape[0])
    own = np.arange(actions.shape[1])[None, :] == owner[:, None]
    return np.where(own, actions, int(Action.NOOP))


class BatchMaker:
    """Teacher-forcing batches: sampled rows, the oracle's next state and events, and target views.

    ``private_state``: train the private-state baseline. Targets stay the true next state and
    events (the world moves on with everyone's actions), but the model's action input keeps only
    one random owner agent's action per transition (:func:`private_inputs`), as a single-agent
    world model trained on the same rollouts would see them."""

    def __init__(
        self,
        sets: list[TransitionSet],
        batch_size: int,
        seed: int = 0,
        device: str = "cpu",
        dynamics_batch: int = 0,
        private_state: bool = False,
    ) -> None:
        self.sets, self.batch_size, self.device, self.dynamics_batch = sets, batch_size, device, dynamics_batch
        self.private_state = private_state
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.renderer = Raycaster(RenderConfig(), device=device)
        sizes = np.array([len(s) for s in sets], float)
        self.weights = sizes / sizes.sum()

    def sample(self) -> dict:
        ts = self.sets[int(self.rng.choice(len(self.sets), p=self.weights))]
        idx = self.rng.integers(0, len(ts), size=self.batch_size)
        batch = self._batch(ts, idx, self.renderer)
        if self.dynamics_batch:
            idx = self.rng.integers(0, len(ts), size=self.dynamics_batch)
            batch["dynamics"] = self._batch(ts, idx, None)
        return batch

    def _batch(self, ts: TransitionSet, idx: np.ndarray, renderer: Raycaster | None) -> dict:
        state = WorldState(**{k: v[idx] for k, v in ts.states.arrays().items()})
        actions = ts.actions[idx]
        given = private_inputs(actions, self.rng) if self.private_state else None
        return make_batch(state, actions, ts.arena, renderer, self.device, input_actions=given)

    def kinematics_sample(self, rows: int = 20000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(poses, next poses, actions) of many transitions, for fitting the kinematics table."""
        ps, nps, acts = [], [], []
        for ts in self.sets:
            idx = self.rng.integers(0, len(ts), size=min(rows, len(ts)))
            state = WorldState(**{k: v[idx] for k, v in ts.states.arrays().items()})
            nxt, _ = world_step(state, ts.actions[idx], ts.arena)
            ps.append(torch.as_tensor(state.poses).reshape(-1, 3))
            nps.append(torch.as_tensor(nxt.poses).reshape(-1, 3))
            acts.append(torch.as_tensor(ts.actions[idx]).reshape(-1))
        return torch.cat(ps), torch.cat(nps), torch.cat(acts)


def make_batch(
    state: WorldState,
    actions: np.ndarray,
    arena: ArenaConfig,
    renderer: Raycaster | None,
    device="cpu",
    input_actions: np.ndarray | None = None,
) -> dict:
    """Everything the world model's losses need for the transitions ``state --actions-->`` (views if ``renderer``).

    ``input_actions``: the actions the model is given, when they differ from the ones that made
    the targets (the private-state baseline); default ``actions``."""
    actions = np.asarray(actions, np.int64)
    assert actions.min() >= 0 and actions.max() < NUM_ACTIONS
    given = actions if input_actions is None else np.asarray(input_actions, np.int64)
    assert given.shape == actions.shape and given.min() >= 0 and given.max() < NUM_ACTIONS
    nxt, events = world_step(state, actions, arena)
    t = lambda x: torch.as_tensor(np.ascontiguousarray(x), device=device)  # noqa: E731
    batch = {
        "maps": cell_maps(state, device),
        "next_maps": cell_maps(nxt, device),
        "poses": t(state.poses),
        "next_poses": t(nxt.poses),
        "actions": t(given),
        "colors": t(state.colors.astype(np.int64)),
        "push": t(events.pushed >= 0),
        "pick": t(events.picked >= 0),
    }
    if renderer is not None:  # target views of the next state, and the previous frames
        views = renderer.render(nxt, buffers=True)
        batch["rgb"] = views.rgb.float().div_(255)
        batch["depth"] = views.depth
        batch["prev_rgb"] = renderer.render(state).rgb.float().div_(255)
    return batch
