"""What the two backends of the Doom env share: :class:`DoomEnvBase`.

The game env (``multiworld.games.vizdoom.VizDoomParallelEnv``) and the learned Doom
(``multiworld.games.doom_model.VizDoomModelEnv``) are both this class: its arguments and their
checks, spaces, the start of an episode in the real game (``_reset_game``: both backends take the
first frames and poses from the game), action checks, observations, infos, ``world_metadata()``,
render and copies. Each backend adds its own ``reset`` and ``step``. The direction is one way:
this module imports neither backend, the model imports only this one, and the game module's
``parallel_env`` picks the backend.
"""

from __future__ import annotations

import copy
import pathlib
from typing import ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from multiworld.env.common import (
    check_action,
    check_obs_type,
    check_render_mode,
    check_seed,
    default_render_path,
    draw_seeds,
    new_rng,
    write_png,
)
from multiworld.games.doom_map import DoomMap, load_map
from multiworld.games.doom_players import DEFAULT_TIMEOUT, PlayerProcesses, _Players, require_vizdoom
from multiworld.games.doom_views import (
    DEPTH_UNITS_PER_LEVEL_480,
    FOG_VISIBLE,
    SPAWN_FOG_MAX_TICS,
    SPAWN_FOG_TICS,
    WorldViews,
    fog_fraction,
)
from multiworld.world.state import agent_names

MAPS = {
    "cig_map01": ("cig.wad", "MAP01"),
    "cig_map02": ("cig.wad", "MAP02"),
    "multi_duel": ("multi_duel.wad", "MAP01"),
    "multi_deathmatch": ("multi_deathmatch.wad", "MAP01"),
}
# Native 4:3 resolutions (ZDoom's view: 90 degrees across, focal W/2 across and 0.8 H down).
RESOLUTIONS = {"RES_160X120": (120, 160), "RES_320X240": (240, 320), "RES_640X480": (480, 640)}
NUM_ACTIONS = 8
ACTION_NAMES = ("noop", "forward", "back", "turn_left", "turn_right", "strafe_left", "strafe_right", "attack")
# ``frame_size="auto"`` and ``grid_size=None``: the backend picks (the game its defaults, the
# model its checkpoint's); ``frame_size=None`` already means the native frame.
AUTO = "auto"


def map_file(map: str) -> tuple[str, str]:
    """The WAD path and map lump of a map of ``MAPS`` (the error names the valid maps)."""
    if map not in MAPS:
        raise ValueError(f"unknown map {map!r}; valid: {sorted(MAPS)}")
    wad, lump = MAPS[map]
    return str(require_vizdoom() / "scenarios" / wad), lump


def _is_int(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, np.integer))


class DoomEnvBase(PlayerProcesses, WorldViews, ParallelEnv):
    """N players in one ViZDoom deathmatch; ``multiworld.games.vizdoom``'s docstring has the rules.

    A backend defines ``_sizes``, which resolves ``frame_size="auto"`` and ``grid_size=None``, and
    ``reset`` and ``step``.
    """

    metadata: ClassVar[dict] = {
        "name": "vizdoom_deathmatch_v0",
        "render_modes": ["human", "rgb_array"],
        "render_fps": 35 / 4,
        "is_parallelizable": True,
    }

    def __init__(
        self,
        num_agents: int = 4,
        map: str = "cig_map01",
        frame_skip: int = 4,
        obs_type: str = "rgb",
        frame_size: int | str | None = AUTO,
        max_cycles: int = 1000,
        render_mode: str | None = None,
        render_path: str | pathlib.Path | None = None,
        grid_size: int | None = None,
        turn_degrees: float = 15.0,
        resolution: str = "RES_160X120",
        timeout: float = DEFAULT_TIMEOUT,
        port: int | None = None,
        game_args: str = "",
    ) -> None:
        self._init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if not _is_int(num_agents) or not 2 <= num_agents <= 8:
            raise ValueError(f"num_agents must be an int in [2, 8] (ViZDoom deathmatch), got {num_agents!r}")
        if map not in MAPS:
            raise ValueError(f"unknown map {map!r}; valid: {sorted(MAPS)}")
        frame_size, grid_size = self._sizes(map, frame_size, grid_size)
        if not _is_int(frame_skip) or not 1 <= frame_skip <= 35:
            raise ValueError(f"frame_skip must be an int in [1, 35], got {frame_skip!r}")
        if resolution not in RESOLUTIONS:
            raise ValueError(f"unknown resolution {resolution!r}; valid: {sorted(RESOLUTIONS)}")
        native_h, native_w = RESOLUTIONS[resolution]
        if frame_size is not None and (not _is_int(frame_size) or not 8 <= frame_size <= native_h or frame_size % 2):
            raise ValueError(
                f'frame_size must be "auto", None (native) or an even int in [8, {native_h}], got {frame_size!r}'
            )
        if not _is_int(grid_size) or not 4 <= grid_size <= 256:
            raise ValueError(f"grid_size must be None (the backend's) or an int in [4, 256], got {grid_size!r}")
        if not _is_int(max_cycles) or max_cycles < 1:
            raise ValueError(f"max_cycles must be a positive int, got {max_cycles!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.obs_type = check_obs_type(obs_type)
        self.render_mode = check_render_mode(render_mode)
        self.package_dir = require_vizdoom()
        self.wad, self.map_lump = map_file(map)
        self.map_name = map
        self.doom_map: DoomMap = load_map(self.wad, self.map_lump, int(grid_size))
        self.grid_size = int(grid_size)
        self.cell_size = self.doom_map.cell_size
        self.frame_skip, self.max_cycles, self.timeout = int(frame_skip), int(max_cycles), float(timeout)
        self.turn_degrees, self.resolution, self.port, self.game_args = float(turn_degrees), resolution, port, game_args
        self.frame_size = None if frame_size is None else int(frame_size)
        self.native_shape = (native_h, native_w)
        # ZDoom's view: focal W/2 across (90 degrees), 0.8 H down (the 1.2 vertical stretch).
        self.crop_width = round(native_w / 1.6)
        self.height, self.width = (native_h, native_w) if frame_size is None else (self.frame_size,) * 2
        self.possible_agents = agent_names(int(num_agents))
        self._agent_index = {a: i for i, a in enumerate(self.possible_agents)}
        self.depth_scale = DEPTH_UNITS_PER_LEVEL_480 * (480 / native_h) / self.cell_size  # cells per depth level
        g = self.grid_size
        channels = 4 if obs_type == "rgbd" else 3
        image = spaces.Box(0, 255, (self.height, self.width, channels), np.uint8)
        if obs_type == "dict":
            pose = spaces.Box(
                np.array([0, 0, -np.pi], np.float32), np.array([g, g, np.pi], np.float32), dtype=np.float32
            )
            space = spaces.Dict({"rgb": image, "pose": pose})
        else:
            space = image
        self.observation_spaces = {a: space for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(NUM_ACTIONS) for a in self.possible_agents}
        self.state_space = spaces.Box(0, 255, (g * 8, g * 8, 3), np.uint8)
        self.metadata = {**type(self).metadata, "render_fps": 35 / self.frame_skip}
        self.render_path = (
            pathlib.Path(render_path) if render_path is not None else default_render_path(self.metadata["name"])
        )
        self._walls = self.doom_map.walls()
        self._frame_index = 0
        self._rng = new_rng(None)
        self._players: _Players | None = None
        self._finalizer = None
        self.world_seed: int | None = None
        self.agents: list[str] = []
        self._cycles = 0
        self._obs: list | None = None
        self._events: list[dict] = []

    def _sizes(self, map: str, frame_size: int | str | None, grid_size: int | None) -> tuple[int | None, int | None]:
        """``(frame_size, grid_size)`` with the backend's values for ``"auto"`` and None."""
        raise NotImplementedError

    # --- spaces (the same object on every call)
    def observation_space(self, agent: str) -> spaces.Space:
        try:
            return self.observation_spaces[agent]
        except KeyError:
            raise ValueError(f"unknown agent {agent!r}; agents are {self.possible_agents}") from None

    def action_space(self, agent: str) -> spaces.Space:
        try:
            return self.action_spaces[agent]
        except KeyError:
            raise ValueError(f"unknown agent {agent!r}; agents are {self.possible_agents}") from None

    # --- the start of an episode, in the real game (both backends)
    def _reset_game(self, seed: int | None) -> None:
        """Start an episode of the game and wait out the spawn fog; ``_obs`` holds its first replies."""
        explicit = seed is not None
        if seed is not None:
            seed = check_seed(seed)
            rng = new_rng(seed)
        else:
            rng = self._rng
            seed = draw_seeds(rng, 1)[0]
        doom_seed = int(seed) % (2**31)
        if self._players is not None and not explicit:
            self._obs = self._exchange(b"R", [doom_seed] * len(self.possible_agents))
        else:
            # A netgame seeds Doom's RNG only when the game starts (a new episode is a map change
            # and carries the RNG on), so a seeded reset starts a fresh game.
            self._stop()
            self._start(doom_seed)
        self._clear_spawn_fog()
        self._rng = rng
        self.world_seed = seed
        self._cycles = 0
        self._events = []
        self.agents = self.possible_agents[:]

    def _clear_spawn_fog(self) -> None:
        """Noop tics until the spawn's teleport fog has left every player's view (frags and deaths
        count from the end of this wait: rewards are differences)."""
        noop = [0] * len(self.possible_agents)
        self._obs = self._exchange(b"S", noop, SPAWN_FOG_TICS)
        waited = SPAWN_FOG_TICS
        while waited < SPAWN_FOG_MAX_TICS and max(fog_fraction(o["rgb"]) for o in self._obs) > FOG_VISIBLE:
            self._obs = self._exchange(b"S", noop, 4)
            waited += 4

    def _checked_actions(self, actions) -> list[int]:
        """The joint action of every possible agent (noop for the missing), or the error that names the problem."""
        if not self.agents:
            raise RuntimeError("the episode is over (every agent terminated or truncated); call reset()")
        if not isinstance(actions, dict):
            raise ValueError(f"actions must be a dict of agent name -> action, got {type(actions).__name__}")
        joint = [0] * len(self.possible_agents)
        for agent, action in actions.items():
            i = self._agent_index.get(agent)
            if i is None:
                raise ValueError(f"action for unknown agent {agent!r}; agents are {self.possible_agents}")
            if action is not None:
                joint[i] = check_action(agent, action)
        return joint

    def _observations(self, agents: list[str]) -> dict:
        out = {}
        for a in agents:
            o = self._obs[self._agent_index[a]]
            if self.obs_type == "rgb":
                out[a] = o["rgb"]
            elif self.obs_type == "rgbd":
                out[a] = np.concatenate([o["rgb"], o["depth"][..., None]], axis=-1)
            else:
                out[a] = {"rgb": o["rgb"], "pose": o["pose"].copy()}
        return out

    def _infos(self, agents: list[str]) -> dict:
        infos = {}
        for a in agents:
            o = self._obs[self._agent_index[a]]
            infos[a] = {
                "pose": o["pose"].copy(),
                "eye_z": o["eye_z"],
                "frags": o["frags"],
                "deaths": o["deaths"],
                "health": o["health"],
                "dead": o["dead"],
            }
        return infos

    def last_events(self) -> list[dict]:
        """This step's frags (``{"type": "frag", "agent", "count"}``) and deaths (``{"type": "death", "agent"}``)."""
        return copy.deepcopy(self._events)

    # --- the recorder contract (the other views of the whole world: doom_views.WorldViews)
    def world_metadata(self) -> dict:
        """The recorder contract's metadata: bounds, grid and camera (see ``multiworld.data.recorder``)."""
        return {
            "world": f"vizdoom-{self.map_name}",
            "units": "doom map units",
            "bounds": list(self.doom_map.bounds),
            "grid_size": self.grid_size,
            "cell_size": self.cell_size,
            "axes": "x east, y south (Doom's y flipped), heading 0 along +x, radians",
            "camera": self.camera(),
            "depth_scale": self.depth_scale,
            "frame_skip": self.frame_skip,
            "actions": list(ACTION_NAMES),
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        frame = self.frame()
        if self.render_mode == "rgb_array":
            return frame
        write_png(self.render_path, frame, self._frame_index)
        self._frame_index += 1
        return None

    def close(self) -> None:
        self._stop()
        self._obs = None

    # --- copies rebuild from the constructor arguments (``_init_kwargs``; no process is ever serialized)
    def __reduce__(self):
        return (_rebuild, (type(self), dict(self._init_kwargs)))

    def __deepcopy__(self, memo):
        return _rebuild(type(self), dict(self._init_kwargs))


def _rebuild(cls, kwargs):
    return cls(**kwargs)
