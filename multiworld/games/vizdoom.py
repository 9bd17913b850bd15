"""ViZDoom multiplayer deathmatch as a PettingZoo env: a second world for the same code.

This module holds the env (``VizDoomParallelEnv``: arguments, spaces, reset, step, observations,
infos, rewards, render, the recorder contract's ``world_metadata()``), its AEC version and the
factories. The player processes are :mod:`multiworld.games.doom_players` and the views of the
whole world (depth, poses, symbolic state, camera, top-down map) :mod:`multiworld.games.doom_views`,
both mixins of the env; their names are importable from here too.

``parallel_env(num_agents=4, map="cig_map01", ...)`` and ``env(...)`` (AEC). Every player is a
``DoomGame`` in its own process (a fresh interpreter, ``multiworld.games._doom_player``, talking
raw bytes over a socket pair; scripts need no ``__main__`` guard): the host and
the joiners meet on 127.0.0.1 on a free UDP port (a port in use is retried), and play in
lockstep (``Mode.PLAYER``: the game advances only when every player has acted).

- **Maps** (``MAPS``): ``cig_map01`` (default; the CIG deathmatch map, rocket launchers, 25
  spawn spots), ``cig_map02``, ``multi_duel``, ``multi_deathmatch`` (a small room whose script
  ends the episode at the first frag: every agent is terminated then). All ship in the wheel.
- **Actions** ``Discrete(8)``, the arena's order: noop, forward, back, turn left, turn right,
  strafe left, strafe right, attack. Each is held for ``frame_skip`` tics (default 4, 35 tics
  per second); a turn is ``turn_degrees`` per step. A live agent missing from the action dict
  takes noop; bad actions raise ValueError before anything moves (as in the arena).
- **Observations:** ``obs_type="rgb"`` uint8 ``(S, S, 3)`` with ``frame_size=S`` (default 64):
  the centre of the native 160x120 frame cropped to square pixels (ZDoom stretches the view
  1.2x vertically) and area-resampled, a pinhole camera with a 64.0-degree field of view both
  ways. ``frame_size=None`` gives the native frame (90 degrees across, 64.0 up and down).
  ``"rgbd"`` adds ViZDoom's 8-bit depth buffer as a 4th channel (``depth_scale`` cells per
  level; calibrated on walls, see ``DEPTH_UNITS_PER_LEVEL_480``); ``"dict"`` is
  ``{"rgb", "pose"}``.
- **Poses** are in the model's world frame: x, y in cells of a ``grid_size`` x ``grid_size``
  grid laid over the map's bounds (x east, y south), heading in radians in [-pi, pi), 0 along
  +x. ``world_metadata()`` gives the bounds, grid, cell size and camera (the recorder's
  contract, ``multiworld.data.recorder``).
- **Infos** per agent, fixed-shape numbers: ``pose`` float32 (x, y, heading), ``eye_z``
  float32 (eye height in cells), ``frags``, ``deaths``, ``health``, ``dead`` (0/1) ints.
- **Rewards:** the change of the agent's frag count (+1 a kill, -1 a suicide). Dead players
  respawn by themselves (``sv_forcerespawn``) about a second later, far from the others.
- **Episode starts:** a player enters the map in a teleport fog that fills its view for about
  1.5 s. ``reset`` returns the first frames after it has left every player's view
  (``SPAWN_FOG_TICS`` noop tics, then 4 more at a time while a view still shows the fog, at most
  ``SPAWN_FOG_MAX_TICS``), so every recording, benchmark and model episode starts from views of
  the map. A respawn during an episode shows the fog, as in the game.
- **Episodes** end by truncation at ``max_cycles`` steps (or, on ``multi_deathmatch``, by the
  map's exit). ``reset(seed=s)`` starts a fresh game (new player processes, a few seconds)
  with Doom's RNG seeded with ``s``: a netgame seeds its RNG only when the game starts.
  ``reset()`` without a seed starts the next episode of the running game (fast; the map
  restarts and Doom's RNG carries on).
- **Processes** (``multiworld.games.doom_players``): ``close()``, garbage collection and
  interpreter exit end every player process and its engine; if one player process dies, the next
  call raises :class:`PlayerProcessError` naming it and ends the others (a player that stops
  answering for ``timeout`` seconds gets the same). ``reset()`` after that starts a new game.
- ``backend="model"``: the learned world model of Doom (``multiworld.games.doom_model``):
  reset starts the real game for the first frames and poses, then every step is the model;
  ``checkpoint=`` picks another trained checkpoint than the shipped ``checkpoints/vizdoom``.
"""

from __future__ import annotations

import copy
import pathlib
from typing import ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec_wrapper
from pettingzoo.utils.wrappers import OrderEnforcingWrapper

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
from multiworld.games.doom_players import (  # noqa: F401 (re-exported)
    DEFAULT_TIMEOUT,
    INSTALL_HINT,
    START_ATTEMPTS,
    TICRATE,
    PlayerProcessError,
    PlayerProcesses,
    _end_process,
    _Players,
    _shutdown,
    free_udp_port,
    require_vizdoom,
)
from multiworld.games.doom_views import (  # noqa: F401 (re-exported)
    DEPTH_UNITS_PER_LEVEL_480,
    FOG_VISIBLE,
    SPAWN_FOG_MAX_TICS,
    SPAWN_FOG_TICS,
    VIEW_HEIGHT,
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


class VizDoomParallelEnv(PlayerProcesses, WorldViews, ParallelEnv):
    """N players in one ViZDoom deathmatch; see the module docstring for the rules."""

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
        frame_size: int | None = 64,
        backend: str = "game",
        max_cycles: int = 1000,
        render_mode: str | None = None,
        render_path: str | pathlib.Path | None = None,
        grid_size: int = 32,
        turn_degrees: float = 15.0,
        resolution: str = "RES_160X120",
        timeout: float = DEFAULT_TIMEOUT,
        port: int | None = None,
        game_args: str = "",
    ) -> None:
        self._init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if backend == "model":
            raise ValueError('backend="model" is built by parallel_env(backend="model") or env(backend="model")')
        if backend != "game":
            raise ValueError(f'unknown backend {backend!r}; valid: "game", "model"')
        if isinstance(num_agents, bool) or not isinstance(num_agents, (int, np.integer)) or not 2 <= num_agents <= 8:
            raise ValueError(f"num_agents must be an int in [2, 8] (ViZDoom deathmatch), got {num_agents!r}")
        if map not in MAPS:
            raise ValueError(f"unknown map {map!r}; valid: {sorted(MAPS)}")
        if isinstance(frame_skip, bool) or not isinstance(frame_skip, (int, np.integer)) or not 1 <= frame_skip <= 35:
            raise ValueError(f"frame_skip must be an int in [1, 35], got {frame_skip!r}")
        if resolution not in RESOLUTIONS:
            raise ValueError(f"unknown resolution {resolution!r}; valid: {sorted(RESOLUTIONS)}")
        native_h, native_w = RESOLUTIONS[resolution]
        if frame_size is not None and (
            isinstance(frame_size, bool)
            or not isinstance(frame_size, (int, np.integer))
            or not 8 <= frame_size <= native_h
            or frame_size % 2
        ):
            raise ValueError(f"frame_size must be None (native) or an even int in [8, {native_h}], got {frame_size!r}")
        if isinstance(grid_size, bool) or not isinstance(grid_size, (int, np.integer)) or not 4 <= grid_size <= 256:
            raise ValueError(f"grid_size must be an int in [4, 256], got {grid_size!r}")
        if isinstance(max_cycles, bool) or not isinstance(max_cycles, (int, np.integer)) or max_cycles < 1:
            raise ValueError(f"max_cycles must be a positive int, got {max_cycles!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.obs_type = check_obs_type(obs_type)
        self.render_mode = check_render_mode(render_mode)
        self.package_dir = require_vizdoom()
        wad, map_lump = MAPS[map]
        self.wad = str(self.package_dir / "scenarios" / wad)
        self.map_name, self.map_lump = map, map_lump
        self.doom_map: DoomMap = load_map(self.wad, map_lump, int(grid_size))
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

    # --- episode
    def reset(self, seed: int | None = None, options: dict | None = None):
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
        observations, infos = self._observations(self.agents), self._infos(self.agents)
        if self.render_mode == "human":
            self.render()
        return observations, infos

    def _clear_spawn_fog(self) -> None:
        """Noop tics until the spawn's teleport fog has left every player's view (frags and deaths
        count from the end of this wait: rewards are differences)."""
        noop = [0] * len(self.possible_agents)
        self._obs = self._exchange(b"S", noop, SPAWN_FOG_TICS)
        waited = SPAWN_FOG_TICS
        while waited < SPAWN_FOG_MAX_TICS and max(fog_fraction(o["rgb"]) for o in self._obs) > FOG_VISIBLE:
            self._obs = self._exchange(b"S", noop, 4)
            waited += 4

    def _joint_actions(self, actions) -> list[int]:
        if self._obs is None or self._players is None:
            raise RuntimeError("call reset() before step()")
        return self._checked_actions(actions)

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

    def step(self, actions: dict):
        joint = self._joint_actions(actions)
        before = self._obs
        self._obs = after = self._exchange(b"S", joint, self.frame_skip)
        self._cycles += 1
        agents = self.agents
        rewards, events = {}, []
        for i, a in enumerate(self.possible_agents):
            gained = after[i]["frags"] - before[i]["frags"]
            rewards[a] = float(gained)
            if gained:
                events.append({"type": "frag", "agent": a, "count": int(gained)})
            if after[i]["deaths"] > before[i]["deaths"]:
                events.append({"type": "death", "agent": a})
        self._events = events
        terminated = any(o["finished"] for o in after)
        truncated = self._cycles >= self.max_cycles
        observations, infos = self._observations(agents), self._infos(agents)
        terminations = dict.fromkeys(agents, terminated)
        truncations = dict.fromkeys(agents, truncated)
        if terminated or truncated:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

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

    # --- copies rebuild from the constructor arguments (no process is ever serialized)
    def __reduce__(self):
        return (_rebuild, (type(self), dict(self._init_kwargs)))

    def __deepcopy__(self, memo):
        return _rebuild(type(self), dict(self._init_kwargs))


def _rebuild(cls, kwargs):
    return cls(**kwargs)


class VizDoomAECEnv(parallel_to_aec_wrapper):
    """The AEC version (PettingZoo's conversion), checking each action when it is given."""

    def __init__(self, **kwargs) -> None:
        super().__init__(parallel_env(**kwargs))

    def step(self, action) -> None:
        agent = self.agent_selection
        if action is not None and not (self.terminations[agent] or self.truncations[agent]):
            check_action(agent, action)
        super().step(action)

    def render(self):
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def parallel_env(**kwargs) -> VizDoomParallelEnv:
    """A PettingZoo ParallelEnv of a ViZDoom deathmatch (keyword arguments: see the module docstring)."""
    if kwargs.get("backend") == "model":
        from multiworld.games.doom_model import VizDoomModelEnv

        return VizDoomModelEnv(**kwargs)
    return VizDoomParallelEnv(**kwargs)


def raw_env(**kwargs) -> VizDoomAECEnv:
    return VizDoomAECEnv(**kwargs)


def env(**kwargs) -> OrderEnforcingWrapper:
    """The AEC env (keyword arguments as :func:`parallel_env`)."""
    return OrderEnforcingWrapper(raw_env(**kwargs))
