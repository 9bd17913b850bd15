"""ViZDoom multiplayer deathmatch as a PettingZoo env: a second world for the same code.

This module holds the game env (``VizDoomParallelEnv``: its reset, step and rewards), its AEC
version and the factories, which pick the backend. What the game and the model backends share
(arguments, spaces, observations, infos, render, the recorder contract's ``world_metadata()``)
is :mod:`multiworld.games.doom_env`; the player processes are :mod:`multiworld.games.doom_players`
and the views of the whole world (depth, poses, symbolic state, camera, top-down map)
:mod:`multiworld.games.doom_views`, both mixins of the env; their names are importable from here too.

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
- **Observations:** ``obs_type="rgb"`` uint8 ``(S, S, 3)`` with ``frame_size=S`` (default
  ``"auto"``: 64 in the game, the checkpoint's in the model): the centre of the native 160x120
  frame cropped to square pixels (ZDoom stretches the view 1.2x vertically) and area-resampled,
  a pinhole camera with a 64.0-degree field of view both ways. ``frame_size=None`` gives the
  native frame (90 degrees across, 64.0 up and down).
  ``"rgbd"`` adds ViZDoom's 8-bit depth buffer as a 4th channel (``depth_scale`` cells per
  level; calibrated on walls, see ``DEPTH_UNITS_PER_LEVEL_480``); ``"dict"`` is
  ``{"rgb", "pose"}``.
- **Poses** are in the model's world frame: x, y in cells of a ``grid_size`` x ``grid_size``
  grid (``grid_size=None``: 32 in the game, the checkpoint's in the model) laid over the map's
  bounds (x east, y south), heading in radians in [-pi, pi), 0 along +x. ``world_metadata()``
  gives the bounds, grid, cell size and camera (the recorder's contract, ``multiworld.data.recorder``).
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
  ``frame_size`` and ``grid_size`` default to the checkpoint's; other explicit values are an error
  that names the checkpoint's.
"""

from __future__ import annotations

from pettingzoo.utils.conversions import parallel_to_aec_wrapper
from pettingzoo.utils.wrappers import OrderEnforcingWrapper

from multiworld.env.common import check_action
from multiworld.games.doom_env import (  # noqa: F401 (re-exported)
    ACTION_NAMES,
    AUTO,
    MAPS,
    NUM_ACTIONS,
    RESOLUTIONS,
    DoomEnvBase,
)
from multiworld.games.doom_model import VizDoomModelEnv
from multiworld.games.doom_players import (  # noqa: F401 (re-exported)
    DEFAULT_TIMEOUT,
    INSTALL_HINT,
    START_ATTEMPTS,
    TICRATE,
    PlayerProcessError,
    PlayerProcesses,
    _end_process,
    _Players,
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

GAME_FRAME_SIZE = 64  # the game backend's frame_size="auto"
GAME_GRID_SIZE = 32  # the game backend's grid_size=None


class VizDoomParallelEnv(DoomEnvBase):
    """N players in one ViZDoom deathmatch, the game itself; see the module docstring for the rules.
    Keyword arguments as :class:`~multiworld.games.doom_env.DoomEnvBase`, plus ``backend="game"``."""

    def __init__(self, backend: str = "game", **kwargs) -> None:
        if backend == "model":
            raise ValueError('backend="model" is built by parallel_env(backend="model") or env(backend="model")')
        if backend != "game":
            raise ValueError(f'unknown backend {backend!r}; valid: "game", "model"')
        super().__init__(**kwargs)
        self._init_kwargs["backend"] = backend

    def _sizes(self, map: str, frame_size: int | str | None, grid_size: int | None) -> tuple[int | None, int | None]:
        auto = isinstance(frame_size, str) and frame_size == AUTO
        return (GAME_FRAME_SIZE if auto else frame_size), (GAME_GRID_SIZE if grid_size is None else grid_size)

    def reset(self, seed: int | None = None, options: dict | None = None):
        self._reset_game(seed)
        observations, infos = self._observations(self.agents), self._infos(self.agents)
        if self.render_mode == "human":
            self.render()
        return observations, infos

    def _joint_actions(self, actions) -> list[int]:
        if self._obs is None or self._players is None:
            raise RuntimeError("call reset() before step()")
        return self._checked_actions(actions)

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


def parallel_env(**kwargs) -> DoomEnvBase:
    """A PettingZoo ParallelEnv of a ViZDoom deathmatch (keyword arguments: see the module docstring);
    ``backend="model"`` builds the learned Doom (``multiworld.games.doom_model``)."""
    if kwargs.get("backend") == "model":
        return VizDoomModelEnv(**kwargs)
    return VizDoomParallelEnv(**kwargs)


def raw_env(**kwargs) -> VizDoomAECEnv:
    return VizDoomAECEnv(**kwargs)


def env(**kwargs) -> OrderEnforcingWrapper:
    """The AEC env (keyword arguments as :func:`parallel_env`)."""
    return OrderEnforcingWrapper(raw_env(**kwargs))
