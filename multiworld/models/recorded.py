"""Training data from recorded worlds: any env the recorder takes (``multiworld data --env``).

The arena's data (:mod:`multiworld.models.data`) re-renders every target from stored symbolic
states with the oracle. A recorded world has no oracle: its targets are what was recorded, the
egocentric frames, the poses, the actions, rewards and endings, and (where the env gives a
``world_state``) its solid cells. What a recording lacks, depth and a top-down map, the batch
leaves out (``None``) and the model's objective skips. A recording's events are its paid steps:
the model's own-event channel (``pick``) marks an agent whose reward is not zero (a frag or a
suicide in Doom), ``push`` stays 0, so rewards stay tied to the model's own events as in the
arena. Grid size, camera and action count come from the recording's metadata, so the model
code holds nothing specific to one world.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import torch

from multiworld.models.data import Batch, payout_targets
from multiworld.models.heads import cell_maps

CAMERA_FIELDS = ("height", "width", "fov_degrees", "eye_height", "near")


@dataclasses.dataclass
class RecordedSet:
    """Recorded episodes of one world: row ``offsets[e] + t`` is episode e after t steps; the
    transition fields of a row (``actions``, ``rewards``, ``done``) are those of the step taken
    from it (the last row of each episode has none)."""

    world: str
    metadata: dict
    frames: np.ndarray  # (rows, N, H, W, 3) uint8
    poses: np.ndarray  # (rows, N, 3) float32, cells
    walls: np.ndarray  # (rows, S, S) uint8 solid cells (0 where the env gives none)
    actions: np.ndarray  # (rows, N) int64
    rewards: np.ndarray  # (rows, N) float32
    done: np.ndarray  # (rows,) bool
    offsets: np.ndarray  # (E,)
    lengths: np.ndarray  # (E,)
    seeds: list[int]

    @property
    def num_agents(self) -> int:
        return self.poses.shape[1]

    @property
    def grid_size(self) -> int:
        return int(self.metadata["grid_size"])

    def starts(self, horizon: int) -> np.ndarray:
        """Every row from which ``horizon`` steps stay inside its episode."""
        return np.concatenate([o + np.arange(max(0, n - horizon)) for o, n in zip(self.offsets, self.lengths)])

    def split(self, held_out: int) -> tuple[RecordedSet, RecordedSet]:
        """(the first E - held_out episodes, the last held_out), for validation."""
        if not 0 < held_out < len(self.lengths):
            raise ValueError(f"cannot hold out {held_out} of {len(self.lengths)} recorded episodes")
        cut = len(self.lengths) - held_out
        return self.episodes(range(cut)), self.episodes(range(cut, len(self.lengths)))

    def episodes(self, which) -> RecordedSet:
        which = list(which)
        rows = np.concatenate([self.offsets[e] + np.arange(self.lengths[e]) for e in which])
        lengths = self.lengths[which]
        return dataclasses.replace(
            self,
            frames=self.frames[rows],
            poses=self.poses[rows],
            walls=self.walls[rows],
            actions=self.actions[rows],
            rewards=self.rewards[rows],
            done=self.done[rows],
            offsets=np.concatenate([[0], np.cumsum(lengths)[:-1]]),
            lengths=lengths,
            seeds=[self.seeds[e] for e in which],
        )


def is_recorded(path: str | pathlib.Path) -> bool:
    """The store at ``path`` holds worlds written by the recorder (they carry world metadata)."""
    from multiworld.state import WorldStore

    with WorldStore.open(str(path), mode="r") as store:
        worlds = store.worlds()
        return bool(worlds) and "world_metadata" in store.world(worlds[0]).config


def load_recorded(paths: list[str | pathlib.Path], world: str | None = None) -> RecordedSet:
    """Every recorded episode (of ``world``) in the stores at ``paths``, as one set; the stores
    must hold one world with one metadata (grid, camera) and one agent count."""
    from multiworld.data.recorder import stored_worlds

    parts, meta, name = [], None, world
    for path, r in stored_worlds(paths):
        wid = r.world_id
        m = r.config.get("world_metadata")
        if m is None:
            raise ValueError(f"world {wid!r} in {path} was not written by the recorder (no world_metadata)")
        if name is None:
            name = r.scenario
        if r.scenario != name or r.steps < 2:
            continue
        if meta is None:
            meta = m
        elif m != meta:
            raise ValueError(f"world {wid!r} in {path} has other metadata than the first episode of {name!r}")
        if not r.has_frames:
            raise ValueError(f"world {wid!r} in {path} has no frames; the model learns from recorded views")
        t = r.steps
        states = r.states(0, t)
        acts = np.zeros((t, states.num_agents), np.int64)
        acts[:-1] = np.asarray(r.actions(1, t))
        rew = np.zeros((t, states.num_agents), np.float32)
        rew[:-1] = np.asarray(r.rewards(1, t))
        done = np.zeros(t, bool)
        done[:-1] = np.asarray(r.terminations(1, t)).all(-1)
        frames = np.stack([r.frames(i) for i in range(t)])
        parts.append((frames, states.poses, states.walls, acts, rew, done, r.seed))
    if not parts:
        which = "" if world is None else f" of {world!r}"
        raise ValueError(f"no recorded episodes{which} in {[str(p) for p in paths]}")
    lengths = np.array([len(p[0]) for p in parts])
    return RecordedSet(
        world=name,
        metadata=meta,
        frames=np.concatenate([p[0] for p in parts]),
        poses=np.concatenate([p[1] for p in parts]).astype(np.float32),
        walls=np.concatenate([p[2] for p in parts]).astype(np.uint8),
        actions=np.concatenate([p[3] for p in parts]),
        rewards=np.concatenate([p[4] for p in parts]),
        done=np.concatenate([p[5] for p in parts]),
        offsets=np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        lengths=lengths,
        seeds=[p[6] for p in parts],
    )


def model_fields(rs: RecordedSet) -> dict:
    """What the world model takes from a recording's metadata: its camera, its one world name and
    its number of actions (``WorldModelConfig`` / ``StackedFramesConfig`` fields)."""
    cam = rs.metadata["camera"]
    fov_v = cam.get("fov_vertical_degrees", cam["fov_degrees"])
    if abs(fov_v - cam["fov_degrees"]) > 1e-3 * max(1.0, cam["fov_degrees"]):
        raise ValueError(
            f"the model's camera has square pixels; {rs.world!r} was recorded with {cam['fov_degrees']:.1f} by "
            f"{fov_v:.1f} degrees at {cam['width']}x{cam['height']} (record square frames, e.g. frame_size=64)"
        )
    actions = len(rs.metadata["actions"]) if "actions" in rs.metadata else int(rs.actions.max()) + 1
    return {
        "camera": {k: float(cam[k]) if k not in ("height", "width") else int(cam[k]) for k in CAMERA_FIELDS},
        "worlds": (rs.world,),
        "actions": actions,
    }


class RecordingBatcher:
    """Batches of ``horizon``-step windows of recorded episodes (a :class:`Batch`, the same
    contract as the arena's): recorded frames as targets, no depth, no map; events are paid steps."""

    def __init__(
        self, rs: RecordedSet, batch_size: int, horizon: int, seed: int = 0, device: str = "cpu", world_index: int = 0
    ) -> None:
        self.rs, self.batch_size, self.horizon, self.device = rs, batch_size, horizon, device
        self.world_index = world_index
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.start_rows = rs.starts(horizon)
        if not len(self.start_rows):
            raise ValueError(f"no recorded episode is longer than the training horizon of {horizon} steps")

    def sample(self) -> Batch:
        return self.draw(self.rng)

    def draw(self, rng: np.random.Generator) -> Batch:
        """A batch of windows drawn with ``rng`` only (:mod:`multiworld.models.stream`)."""
        return self.batch(rng.choice(self.start_rows, size=self.batch_size))

    def batch(self, rows: np.ndarray) -> Batch:
        from multiworld.world.state import WorldState

        rs, bsz, t1, h = self.rs, len(rows), self.horizon + 1, self.horizon
        n, s = rs.num_agents, rs.grid_size
        idx = (rows[:, None] + np.arange(t1)).reshape(-1)
        tr = (rows[:, None] + np.arange(h)).reshape(-1)
        dev = self.device
        t = lambda x: torch.as_tensor(np.ascontiguousarray(x), device=dev)  # noqa: E731
        state = WorldState(
            walls=rs.walls[idx],
            floor=np.zeros((len(idx), s, s), np.uint8),
            goals=np.zeros((len(idx), s, s), bool),
            boxes=np.zeros((len(idx), 0, 2), np.int16),
            items=np.zeros((len(idx), 0, 2), np.int16),
            items_alive=np.zeros((len(idx), 0), bool),
            poses=rs.poses[idx],
            colors=np.tile(np.arange(n, dtype=np.uint8), (len(idx), 1)),
            step=np.zeros(len(idx), np.int64),
        )
        cells = {k: v.reshape(bsz, t1, s, s) for k, v in cell_maps(state, dev).items()}
        reward = t(rs.rewards[tr].reshape(bsz, h, n)).float()
        zeros = torch.zeros((bsz, h, n), device=dev)
        paid = (reward != 0).float()
        return Batch(
            views=t(rs.frames[idx]).reshape(bsz, t1, n, *rs.frames.shape[2:]).float().div_(255),
            depth=None,
            maps=None,
            poses=t(rs.poses[idx]).reshape(bsz, t1, n, 3),
            cells=cells,
            colors=torch.arange(n, device=dev).repeat(bsz, 1),
            actions=t(rs.actions[tr].reshape(bsz, h, n)),
            push=zeros,
            pick=paid,
            unusual=zeros,
            reward=reward,
            **payout_targets(reward),
            done=t(rs.done[tr].reshape(bsz, h)).float(),
            scenario=torch.full((bsz,), self.world_index, dtype=torch.long, device=dev),
        )
