"""The player processes of a ViZDoom game, for :mod:`multiworld.games.vizdoom`.

Every player is a ``DoomGame`` in its own process (a fresh interpreter,
``multiworld.games._doom_player``, talking raw bytes over a socket pair; scripts need no
``__main__`` guard), in its own process group with its engine. The host and the joiners meet on
127.0.0.1 on a free UDP port (a port in use is retried, ``START_ATTEMPTS`` times in all).

- :class:`_Players`: one game's processes in agent order: send a command, wait for a reply
  (``timeout`` seconds), and end them all (``shutdown``: ask, then kill each process group).
- :class:`PlayerProcesses`: the env's side (a mixin of ``VizDoomParallelEnv``): the engine's
  arguments, starting a game, parsing a player's reply into its frame, pose and counters,
  exchanging one command with every player, and stopping the game.

``close()``, garbage collection (a ``weakref.finalize``) and interpreter exit end every player
process and its engine; if one player process dies, reports an error or stops answering for
``timeout`` seconds, the call raises :class:`PlayerProcessError` naming it and ends the others.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from multiprocessing.connection import Connection

import numpy as np

from multiworld.games import _doom_player as player
from multiworld.games.doom_views import VIEW_HEIGHT

INSTALL_HINT = 'ViZDoom is not installed: pip install -e ".[vizdoom]" (or pip install vizdoom==1.3.2)'
DEFAULT_TIMEOUT = 30.0
# The engine timer's rate (tics per second): it paces a netgame's tic commands, so it caps the speed.
TICRATE = 1000
START_ATTEMPTS = 3


class PlayerProcessError(RuntimeError):
    """A player process died, reported an error, or stopped answering."""


def require_vizdoom() -> pathlib.Path:
    """The installed vizdoom package's directory, or ImportError naming the install command."""
    spec = importlib.util.find_spec("vizdoom")
    if spec is None or spec.origin is None:
        raise ImportError(INSTALL_HINT)
    return pathlib.Path(spec.origin).parent


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _end_process(proc, conn) -> None:
    """Ask, then make sure: the player's whole process group (it and its engine) is killed."""
    try:
        conn.send_bytes(player.COMMAND.pack(b"Q", 0, 0))
    except (OSError, ValueError):
        pass
    try:
        proc.wait(0.5)
    except subprocess.TimeoutExpired:
        pass
    # The engine may outlive a player that was killed: end the whole group either way.
    for kill in (lambda: os.killpg(proc.pid, signal.SIGKILL), lambda: os.kill(proc.pid, signal.SIGKILL)):
        try:
            kill()
        except OSError:
            pass
    try:
        proc.wait(5.0)
    except subprocess.TimeoutExpired:
        pass
    try:
        conn.close()
    except OSError:
        pass


class _Players:
    """The player processes of one game, in agent order (agent i is Doom's player number i)."""

    def __init__(self, procs: list, conns: list, names: list[str], timeout: float, logs: list) -> None:
        self.procs, self.conns, self.names, self.timeout, self.logs = procs, conns, names, timeout, logs
        self.closed = False

    def _log_tail(self, i: int) -> str:
        try:
            log = self.logs[i]
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 1500))
            tail = log.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError, IndexError):
            return ""
        return f"; its last output: {tail}" if tail else ""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def send(self, i: int, cmd: bytes, a: int = 0, b: int = 0) -> None:
        self.send_raw(i, player.COMMAND.pack(cmd, a, b))

    def send_raw(self, i: int, data: bytes) -> None:
        try:
            self.conns[i].send_bytes(data)
        except (OSError, ValueError) as exc:
            raise self.error(i, f"its pipe is closed ({exc})") from None

    def recv(self, i: int, timeout: float | None = None) -> bytes:
        conn, proc = self.conns[i], self.procs[i]
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            try:
                ready = conn.poll(min(max(left, 0.0), 1.0))
            except (OSError, ValueError) as exc:
                raise self.error(i, f"its pipe failed ({exc})") from None
            if ready:
                try:
                    msg = conn.recv_bytes()
                except (EOFError, OSError):
                    try:
                        proc.wait(1.0)
                    except subprocess.TimeoutExpired:
                        pass
                    raise self.error(i, f"the process died (exit code {proc.returncode}){self._log_tail(i)}") from None
                if msg[:1] == b"E":
                    raise self.error(i, "it failed: " + msg[1:].decode("utf-8", "replace").strip())
                return msg
            # In lockstep a live player waits for a dead peer's tics: name whichever player died.
            for j, other in enumerate(self.procs):
                if other.poll() is not None:
                    raise self.error(j, f"the process died (exit code {other.returncode}){self._log_tail(j)}")
            if left <= 0:
                raise self.error(i, f"no answer within {self.timeout if timeout is None else timeout:.0f} s")

    def error(self, i: int, why: str) -> PlayerProcessError:
        return PlayerProcessError(f"ViZDoom player {self.names[i]} (pid {self.procs[i].pid}): {why}")

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        for proc, conn in zip(self.procs, self.conns):
            _end_process(proc, conn)
        for log in self.logs:
            log.close()


def _shutdown(players: _Players) -> None:
    players.shutdown()


class PlayerProcesses:
    """The env's player processes: ``reset`` starts them (``_start``), ``step`` talks to them
    (``_exchange``), ``close`` ends them (``_stop``). The env starts with ``_players``,
    ``_finalizer`` and ``_obs`` None and holds the settings these read (map, resolution, frame
    size, ``timeout``, ``port``, the grid's ``doom_map``)."""

    def _game_args(self, port: int) -> list[str]:
        n = len(self.possible_agents)
        connect = max(5, int(self.timeout))
        # No view bob, no client-side prediction and no interpolation between tics: frames depend
        # on the game's tics only, never on when a peer's packet arrived.
        common = f"+viz_connect_timeout {connect} +movebob 0 +cl_run 0 +cl_noprediction 1 +cl_capfps 1"
        common = f"{common} {self.game_args}".strip()
        host = (
            f"-host {n} -port {port} -netmode 0 -deathmatch -nomonsters +timelimit 0 +fraglimit 0 "
            f"+sv_forcerespawn 1 +sv_spawnfarthest 1 +sv_noautoaim 1 +sv_nocrouch 1 +sv_nojump 1 {common}"
        )
        join = f"-join 127.0.0.1 -port {port} {common}"
        return [host] + [join] * (n - 1)

    def _start(self, seed: int) -> None:
        last_error: Exception | None = None
        for attempt in range(START_ATTEMPTS):
            port = self.port if (attempt == 0 and self.port is not None) else free_udp_port()
            try:
                self._players = self._launch(port, seed)
                return
            except PlayerProcessError as exc:
                last_error = exc
        raise PlayerProcessError(f"could not start a {len(self.possible_agents)}-player game: {last_error}")

    def _launch(self, port: int, seed: int) -> _Players:
        procs, conns, specs, logs = [], [], [], []
        names = [f"player {i + 1}" for i in range(len(self.possible_agents))]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        for args in self._game_args(port):
            ours, theirs = socket.socketpair()
            specs.append(
                {
                    "wad": self.wad,
                    "map": self.map_lump,
                    "resolution": self.resolution,
                    "seed": int(seed) % (2**31),
                    "args": args,
                    "frame_skip": self.frame_skip,
                    "turn_degrees": self.turn_degrees,
                    "frame_size": self.frame_size,
                    "crop_width": self.crop_width,
                    "ticrate": TICRATE,
                }
            )
            log = tempfile.TemporaryFile()
            logs.append(log)
            with theirs:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "multiworld.games._doom_player", str(theirs.fileno())],
                    pass_fds=[theirs.fileno()],
                    process_group=0,
                    cwd=tempfile.gettempdir(),  # the engine writes its _vizdoom.ini into its working directory
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            procs.append(proc)
            conns.append(Connection(ours.detach()))
        launched = _Players(procs, conns, names, self.timeout, logs)
        finalizer = weakref.finalize(self, _shutdown, launched)
        try:
            for i, spec in enumerate(specs):
                launched.send_raw(i, json.dumps(spec).encode())
            numbers = []
            startup = self.timeout + 30.0
            for i in range(len(procs)):
                msg = launched.recv(i, startup)
                if msg[:1] != b"I":
                    raise launched.error(i, f"unexpected first message {msg[:1]!r}")
                numbers.append(int(json.loads(msg[1:].decode())["player_number"]))
            if sorted(numbers) != list(range(len(procs))):
                raise launched.error(0, f"player numbers {numbers} are not 0..{len(procs) - 1}")
            order = np.argsort(numbers)
            launched.procs = [procs[k] for k in order]
            launched.conns = [conns[k] for k in order]
            launched.names = self.possible_agents[:]
            self._obs = [self._parse(launched.recv(i), i) for i in range(len(procs))]
        except BaseException:
            finalizer()
            raise
        self._finalizer = finalizer
        return launched

    def _parse(self, msg: bytes, i: int) -> dict:
        if msg[:1] != b"O":
            raise self._players_or_none_error(i, f"unexpected message {msg[:1]!r}")
        n = player.HEADER.size
        x, y, z, angle, frags, deaths, health, dead, finished = player.HEADER.unpack(msg[1 : 1 + n])
        h, w = self.height, self.width
        rgb = np.frombuffer(msg, np.uint8, h * w * 3, 1 + n).reshape(h, w, 3)
        depth = np.frombuffer(msg, np.uint8, h * w, 1 + n + h * w * 3).reshape(h, w)
        cx, cy, heading = self.doom_map.to_cells(x, y, angle)
        return {
            "rgb": rgb,
            "depth": depth,
            "pose": np.array([cx, cy, heading], np.float32),
            "eye_z": np.float32((z + VIEW_HEIGHT) / self.cell_size),
            "frags": int(frags),
            "deaths": int(deaths),
            "health": int(health),
            "dead": int(dead),
            "finished": bool(finished),
        }

    def _players_or_none_error(self, i: int, why: str) -> PlayerProcessError:
        return PlayerProcessError(f"ViZDoom player {self.possible_agents[i]}: {why}")

    def _exchange(self, cmd: bytes, values: list[int], tics: int = 1) -> list[dict]:
        """Send ``cmd`` with one value per player; for a step, ``tics - 1`` bare tics come first."""
        players = self._players
        if players is None:
            raise RuntimeError("call reset() first")
        try:
            for _ in range(tics - 1):
                for i, v in enumerate(values):
                    players.send(i, b"T", v)
                for i in range(len(values)):
                    if players.recv(i) != b"K":
                        raise players.error(i, "unexpected answer to a tic")
            for i, v in enumerate(values):
                players.send(i, cmd, v)
            return [self._parse(players.recv(i), i) for i in range(len(values))]
        except BaseException:
            self._stop()
            raise

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._players = None
        self.agents = []

    def player_pids(self) -> list[int]:
        """Process ids of the player processes (each leads a process group with its engine)."""
        return [] if self._players is None else self._players.pids
