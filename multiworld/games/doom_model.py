"""The learned Doom: ``multiworld.games.vizdoom.parallel_env(backend="model")``.

``reset`` starts the real game for the players' first frames and poses (a few seconds; the
game env's reset returns the first frames after the spawn's teleport fog has cleared), encodes
them into the world model's shared state (``init="views"``: Doom has no map the model reads) and
ends the game's processes; from then on every ``step`` is the model: the state-update model
advances the shared state from the joint action and the renderer draws every player's view from
it. Spaces, agents, action checks, ``max_cycles`` and the observation types are the game env's.

What the model gives: views (``rgb``; ``rgbd`` with its rendered depth in the game's depth
levels; ``dict`` with the pose), ``infos[agent]["pose"]`` and ``"frags"`` (the sum of the
model's rewards this episode), rewards from its own paid events (a frag +1, a suicide -1), and
endings. Health, deaths and eye height are the game's and are not modelled.

``frame_size`` and ``grid_size`` default to the ones the checkpoint was trained with (read off its
camera: its width, and its near plane, one map unit in cells, over this map's bounds); an explicit
value that differs is an error naming the checkpoint's values.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch

from multiworld.games.doom_env import AUTO, DoomEnvBase, map_file
from multiworld.games.doom_map import load_map

CHECKPOINT = pathlib.Path(__file__).resolve().parent.parent / "checkpoints" / "vizdoom"


def checkpoint_sizes(camera: dict, bounds: tuple[float, float, float, float]) -> tuple[int | None, int]:
    """``(frame_size, grid_size)`` of a checkpoint's ``camera`` on a map with these ``bounds``.

    A square camera is ``frame_size`` = its width, another the native frame (None). The camera's
    ``near`` is one Doom unit in cells (``1 / cell_size``) and a cell is the map's longer side over
    the grid, so the grid is that side times ``near``.
    """
    frame_size = int(camera["width"]) if int(camera["height"]) == int(camera["width"]) else None
    x0, y0, x1, y1 = bounds
    return frame_size, round(max(x1 - x0, y1 - y0) * float(camera["near"]))


class VizDoomModelEnv(DoomEnvBase):
    """The learned model of a ViZDoom deathmatch (keyword arguments as the game env, plus
    ``checkpoint``, a directory, default the shipped ``checkpoints/vizdoom``, and ``device``)."""

    def __init__(
        self, checkpoint: str | pathlib.Path | None = None, device: str = "cpu", backend: str = "model", **kwargs
    ) -> None:
        from multiworld.models.checkpoint import load_checkpoint
        from multiworld.models.recorded import CAMERA_FIELDS
        from multiworld.models.stacked import StackedFramesModel

        if backend != "model":
            raise ValueError(f'VizDoomModelEnv is backend="model", got backend={backend!r}')
        self.backend = "model"
        self.device = torch.device(device)
        self.checkpoint = path = pathlib.Path(checkpoint) if checkpoint is not None else CHECKPOINT
        self.model = load_checkpoint(path, self.device)
        if isinstance(self.model, StackedFramesModel):
            raise ValueError(f"checkpoint {path} is the stacked-frames baseline; backend='model' runs a world model")
        super().__init__(**kwargs)  # its _sizes reads the checkpoint's
        self._init_kwargs = {**self._init_kwargs, "backend": "model", "checkpoint": checkpoint, "device": device}
        cfg, game_cam = self.model.cfg, self.camera()
        diff = [k for k in CAMERA_FIELDS if not np.isclose(float(game_cam[k]), float(cfg.camera[k]), rtol=1e-4)]
        if diff:  # the sizes agree: the resolution or the camera's other settings differ
            theirs, ours = ({k: cam[k] for k in diff} for cam in (cfg.camera, game_cam))
            raise ValueError(
                f"checkpoint {path} was trained with another camera ({', '.join(diff)} differ): it has {theirs}, "
                f"resolution={self.resolution!r} gives {ours}"
            )
        self._scenario = torch.tensor([cfg.worlds.index(f"vizdoom-{self.map_name}")], device=self.device)
        self.latent = None
        self._frags = np.zeros(len(self.possible_agents), np.float32)

    def _sizes(self, map: str, frame_size: int | str | None, grid_size: int | None) -> tuple[int | None, int | None]:
        """The checkpoint's ``(frame_size, grid_size)``; an explicit other value is an error naming them."""
        cfg, path, world = self.model.cfg, self.checkpoint, f"vizdoom-{map}"
        if world not in cfg.worlds:
            raise ValueError(f"checkpoint {path} was trained on {list(cfg.worlds)}, not on {world!r}")
        need = checkpoint_sizes(cfg.camera, load_map(*map_file(map), grid_size=1).bounds)
        auto = isinstance(frame_size, str) and frame_size == AUTO
        given = (need[0] if auto else frame_size, need[1] if grid_size is None else grid_size)
        if given != need:
            raise ValueError(
                f"checkpoint {path} was trained with grid_size={need[1]}, frame_size={need[0]}; pass those or "
                f"omit them (got grid_size={grid_size!r}, frame_size={frame_size!r})"
            )
        return need

    @torch.no_grad()
    def reset(self, seed: int | None = None, options: dict | None = None):
        self._reset_game(seed)
        observations, infos = self._observations(self.agents), self._infos(self.agents)
        views = torch.as_tensor(np.stack([o["rgb"] for o in self._obs]), device=self.device)[None]
        poses = torch.as_tensor(self.poses(), device=self.device)[None]
        agents = self.agents
        self._stop()  # the real game only gives the first frames and poses
        self.agents = agents
        self.latent = self.model.encode(views, poses, self.grid_size)
        self._frags[:] = 0
        if self.render_mode == "human":
            self.render()
        return observations, infos

    @torch.no_grad()
    def step(self, actions: dict):
        if self.latent is None:
            raise RuntimeError("call reset() before step()")
        joint = self._checked_actions(actions)
        act = torch.as_tensor(joint, dtype=torch.long, device=self.device)[None]
        self.latent, out = self.model.step(self.latent, act, self._scenario)
        rgb, depth = self.model.render(self.latent)
        rgb = (rgb[0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        levels = (depth[0] / self.depth_scale).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        poses = self.latent.poses[0].float().cpu().numpy()
        reward = out["reward"][0].float().cpu().numpy()
        self._frags += reward
        self._obs = [
            {"rgb": rgb[i], "depth": levels[i], "pose": poses[i].astype(np.float32)}
            for i in range(len(self.possible_agents))
        ]
        self._cycles += 1
        agents = self.agents
        terminated = bool(out["done"][0] > 0)
        truncated = self._cycles >= self.max_cycles
        names = self.possible_agents
        self._events = [{"type": "frag", "agent": a, "count": int(reward[i])} for i, a in enumerate(names) if reward[i]]
        observations = self._observations(agents)
        infos = self._infos(agents)
        rewards = {a: float(reward[self._agent_index[a]]) for a in agents}
        if terminated or truncated:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return observations, rewards, dict.fromkeys(agents, terminated), dict.fromkeys(agents, truncated), infos

    def _infos(self, agents: list[str]) -> dict:
        if self.latent is None or self._players is not None:  # reset: the game's own infos
            return super()._infos(agents)
        return {
            a: {"pose": self._obs[self._agent_index[a]]["pose"].copy(), "frags": int(self._frags[self._agent_index[a]])}
            for a in agents
        }
