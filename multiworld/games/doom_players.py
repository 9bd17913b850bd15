"""The player processes of a ViZDoom game, for :mod:`multiworld.games.vizdoom`.

Every player is a ``DoomGame`` in its own process (a fresh interpreter,
``multiworld.games._doom_player``, talking small raw-bytes messages over a ``SOCK_SEQPACKET``
socket pair; scripts need no ``__main__`` guard), in its own process group with its engine. Its
frames come through shared memory (:mod:`doom_frames`). The host engine listens on
127.0.0.1 on a free UDP port (a port in use is retried, ``START_ATTEMPTS`` times in all); every
packet between the engines passes through the parent's switch (:mod:`doom_relay`).

- :class:`_Players`: one game's processes in agent order: send a command, wait for a reply
  (``timeout`` seconds) while forwarding the game's packets, and end them all (``shutdown``:
  ask, then kill each process group).
- :class:`PlayerProcesses`: the env's side (a mixin of ``VizDoomParallelEnv``): the engine's
  arguments, starting a game, parsing a player's reply into its frame, pose and counters,
  running tics in lockstep (``_exchange``), and stopping the game.

**Determinism.** Each tic is a round (``_Players.round``): the host first; once the host's tic
command has reached every joiner, the joiners. So every joiner builds its command for tic t+1
while tic t runs, on every tic of every run (why, and why the order is forced: :mod:`doom_relay`). The
host's command is built in the tic it is for, so the parent hands the host each action one tic
late: every player's action takes effect on the tic after the one it is given in, the same for
all players and all runs. Every reply carries the map's tic, and players whose tics differ raise
:class:`PlayerProcessError` (they would be out of lockstep).

``close()``, garbage collection (a ``weakref.finalize``) and interpreter exit end every player
process and its engine; if one player process dies, reports an error or stops answering for
``timeout`` seconds, the call raises :class:`PlayerProcessError` naming it and ends the others.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref

import numpy as np

from multiworld.games import _doom_player as player
from multiworld.games.doom_frames import FrameBlocks, engine_segments, unlink_segments
from multiworld.games.doom_relay import Relay
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


def _end_process(proc, conn: socket.socket) -> None:
    """Ask, then make sure: the player's whole process group (it and its engine) is killed."""
    try:
        conn.send(player.COMMAND.pack(b"Q", 0, 0))
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
    """The player processes of one game, in agent order (agent i is Doom's player number i), the
    switch their engines' packets pass through, and their frames' shared-memory blocks."""

    def __init__(
        self, procs: list, conns: list, names: list[str], timeout: float, logs: list, relay: Relay, frames: FrameBlocks
    ) -> None:
        self.procs, self.conns, self.names, self.timeout, self.logs = procs, conns, names, timeout, logs
        self.relay, self.frames = relay, frames
        self.relay_fds = relay.fileno_map()
        self.engine_segments: list[str] = []  # ViZDoom's own, removed after the processes end
        self.host_action = 0  # the host's action of the last tic (its actions go in one tic late)
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
            self.conns[i].send(data)
        except (OSError, ValueError) as exc:
            raise self.error(i, f"its pipe is closed ({exc})") from None

    def _died(self, i: int) -> PlayerProcessError:
        proc = self.procs[i]
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        return self.error(i, f"the process died (exit code {proc.returncode}){self._log_tail(i)}")

    def wait(self, done, i: int, want: list[int] | None = None, timeout: float | None = None) -> dict[int, bytes]:
        """Forward the game's packets until ``done()`` holds and every player in ``want`` has sent
        a message; those messages by player. Player ``i`` is the one waited for (named on a timeout).

        One ``select`` covers the switch's sockets and the players': the loop is the parent's
        whole cost per tic, so it stays small. A player that dies meanwhile is named (in lockstep a
        live player waits for a dead peer's tics, so whichever died is the cause); ``timeout``
        seconds without ``done()`` raise."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        relay_fds = self.relay_fds
        pending = {self.conns[j].fileno(): j for j in want or []}
        got: dict[int, bytes] = {}
        check = time.monotonic() + 1.0
        while pending or not done():
            now = time.monotonic()
            if now >= check:
                check = now + 1.0
                for j, other in enumerate(self.procs):
                    if other.poll() is not None:
                        raise self.error(j, f"the process died (exit code {other.returncode}){self._log_tail(j)}")
            if now >= deadline:
                raise self.error(min(pending.values(), default=i), f"no answer within {timeout:.0f} s")
            try:
                readable, _, _ = select.select([*relay_fds, *pending], [], [], max(0.0, min(deadline, check) - now))
            except (OSError, ValueError) as exc:
                raise self.error(i, f"its pipe failed ({exc})") from None
            for fd in readable:
                g = relay_fds.get(fd)
                if g is not None:
                    self.relay.forward(g)
                    continue
                j = pending.pop(fd)
                try:
                    msg = self.conns[j].recv(player.MAX_MESSAGE)
                except OSError:
                    msg = b""
                if not msg:
                    raise self._died(j)
                if msg[:1] == b"E":
                    raise self.error(j, "it failed: " + msg[1:].decode("utf-8", "replace").strip())
                got[j] = msg
        return got

    def recv(self, i: int, timeout: float | None = None) -> bytes:
        """Player ``i``'s next message (forwarding the game's packets meanwhile)."""
        return self.wait(lambda: True, i, [i], timeout)[i]

    def recv_all(self, n: int) -> list[bytes]:
        """The next message of each of the first ``n`` players, in agent order."""
        got = self.wait(lambda: True, 0, list(range(n)))
        return [got[i] for i in range(n)]

    def round(self, cmd: bytes, values: list[int]) -> list[bytes]:
        """One tic: the host first, then (once its tic command has reached every joiner) the
        joiners; every player's reply in agent order. ``values[0]`` is the host's action of this
        tic; it is handed over one tic late (``host_action``) like every joiner's."""
        delivered = self.relay.delivered
        before = delivered[:]
        self.send(0, cmd, self.host_action)
        self.host_action = values[0]
        self.wait(lambda: all(d > b for d, b in zip(delivered, before)), 0)
        for i in range(1, len(values)):
            self.send(i, cmd, values[i])
        return self.recv_all(len(values))

    def error(self, i: int, why: str) -> PlayerProcessError:
        return PlayerProcessError(f"ViZDoom player {self.names[i]} (pid {self.procs[i].pid}): {why}")

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Read again: a launch that failed before the ids were read leaves segments too.
        self.engine_segments = sorted({*self.engine_segments, *engine_segments(self.pids)})
        for proc, conn in zip(self.procs, self.conns):
            _end_process(proc, conn)
        for log in self.logs:
            log.close()
        self.relay.close()
        self.frames.close()
        unlink_segments(self.engine_segments)


class PlayerProcesses:
    """The env's player processes: ``reset`` starts them (``_start``), ``step`` talks to them
    (``_exchange``), ``close`` ends them (``_stop``). The env starts with ``_players``,
    ``_finalizer`` and ``_obs`` None and holds the settings these read (map, resolution, frame
    size, ``timeout``, ``port``, the grid's ``doom_map``)."""

    def _game_args(self, port: int, join_ports: list[int]) -> list[str]:
        """The host's engine arguments, then each joiner's (joiner g joins the switch's ``join_ports[g]``)."""
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
        return [host] + [f"-join 127.0.0.1:{p} {common}" for p in join_ports]

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
        n = len(self.possible_agents)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        relay = Relay(port, n - 1)
        h, w = self.height, self.width
        launched = _Players([], [], [f"player {i + 1}" for i in range(n)], self.timeout, [], relay, FrameBlocks(h, w))
        finalizer = weakref.finalize(self, launched.shutdown)
        procs, conns = launched.procs, launched.conns
        try:
            for args in self._game_args(port, relay.ports):
                spec = {
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
                    "frame_block": launched.frames.new(),
                    "frame_shape": [h, w],
                }
                # SEQPACKET keeps each message whole: one send, one recv, no length prefix.
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                log = tempfile.TemporaryFile()
                launched.logs.append(log)
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
                conns.append(ours)
                launched.send_raw(len(procs) - 1, json.dumps(spec).encode())
            numbers = []
            startup = self.timeout + 30.0  # a first start also loads the engine and the map
            for i in range(len(procs)):
                msg = launched.recv(i, startup)
                if msg[:1] != b"I":
                    raise launched.error(i, f"unexpected first message {msg[:1]!r}")
                numbers.append(int(json.loads(msg[1:].decode())["player_number"]))
            launched.frames.unlink()  # every player has mapped its block (before its first message)
            launched.engine_segments = engine_segments(launched.pids)  # every engine runs (init() is done)
            if sorted(numbers) != list(range(len(procs))) or numbers[0] != 0:
                raise launched.error(0, f"player numbers {numbers} are not the host's 0, then 1..{len(procs) - 1}")
            order = np.argsort(numbers)
            launched.procs = [procs[k] for k in order]
            launched.conns = [conns[k] for k in order]
            launched.logs = [launched.logs[k] for k in order]
            launched.frames.reorder(order)
            launched.names = self.possible_agents[:]
            self._obs = [self._parse(msg, i, launched) for i, msg in enumerate(launched.recv_all(len(procs)))]
        except BaseException:
            finalizer()
            raise
        self._finalizer = finalizer
        return launched

    def _parse(self, msg: bytes, i: int, players: _Players) -> dict:
        if msg[:1] != b"O":
            raise self._players_or_none_error(i, f"unexpected message {msg[:1]!r}")
        n = player.HEADER.size
        x, y, z, angle, frags, deaths, health, dead, finished, tic = player.HEADER.unpack(msg[1 : 1 + n])
        rgb, depth = players.frames.read(i)
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
            "tic": int(tic),
        }

    def _players_or_none_error(self, i: int, why: str) -> PlayerProcessError:
        return PlayerProcessError(f"ViZDoom player {self.possible_agents[i]}: {why}")

    def _exchange(self, cmd: bytes, values: list[int], tics: int = 1) -> list[dict]:
        """Every player's parsed reply to ``cmd``: ``b"S"`` runs ``tics`` tics of one action per
        player in lockstep rounds (the last replies with the frames); ``b"R"`` starts a new
        episode (``values``: the seed)."""
        players = self._players
        if players is None:
            raise RuntimeError("call reset() first")
        try:
            if cmd == b"R":
                for i, v in enumerate(values):
                    players.send(i, cmd, v)
                replies = players.recv_all(len(values))
                players.host_action = 0  # the new episode starts from released controls
            else:
                for _ in range(tics - 1):
                    for i, reply in enumerate(players.round(b"T", values)):
                        if reply != b"K":
                            raise players.error(i, f"unexpected answer {reply[:1]!r} to a tic")
                replies = players.round(cmd, values)
            obs = [self._parse(msg, i, players) for i, msg in enumerate(replies)]
            if len({o["tic"] for o in obs}) > 1:
                raise PlayerProcessError(f"ViZDoom players out of lockstep: map tics {[o['tic'] for o in obs]}")
            return obs
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

    def frame_block_names(self) -> list[str]:
        """Names of the players' shared-memory frame blocks (already unlinked once the game runs)."""
        return [] if self._players is None else self._players.frames.names

    def engine_segment_names(self) -> list[str]:
        """Names of the ViZDoom engines' own shared-memory segments (removed by ``close()`` if left)."""
        return [] if self._players is None else self._players.engine_segments
