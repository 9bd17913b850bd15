"""One ViZDoom player, run in its own process by :mod:`multiworld.games.vizdoom`.

The parent starts it as ``python -m multiworld.games._doom_player FD`` (a plain subprocess, so
nothing of the parent's ``__main__`` is re-imported) in its own process group, with one end of
a ``SOCK_SEQPACKET`` socket pair as file descriptor FD (every message one packet). Everything
on it is raw bytes or JSON (never pickle): the spec first (JSON, parent -> player), then one
command per tic and a small reply. The processed frame goes into the shared-memory block the
spec names (rgb ``(h, w, 3)`` then depth ``(h, w)``, uint8), written before the reply.

Commands (parent -> player), ``struct "<cii"``: ``b"T"`` one tic of an action (reply ``b"K"``),
``b"S"`` the last tic of a step (reply with the frame), ``b"R"`` new episode with a seed,
``b"Q"`` quit; the parent orders each tic's commands, the host's first, so that every run plays
the same game (:mod:`multiworld.games.doom_relay`). Replies: ``b"I" + JSON`` once after
``init()``; ``b"O" + header`` per step or reset (the frame in the block); ``b"E" + message`` on
an error (then the player exits).

The ViZDoom engine process that ``DoomGame.init()`` launches inherits the player's process
group, so the parent ends both with one ``killpg``; a watchdog thread ends the group if the
parent dies.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import struct
import threading
import time
import traceback

import numpy as np

from multiworld.games.doom_frames import map_block

COMMAND = struct.Struct("<cii")
MAX_MESSAGE = 1 << 16  # the largest message either side sends (an error's traceback is cut to fit)
# x, y, z, angle (degrees), frags, deaths, health, dead, episode finished, the map's tic (the
# parent checks that every player is on the same one)
HEADER = struct.Struct("<dddddddddd")

# Button order of every action vector; TURN_LEFT_RIGHT_DELTA is in degrees per tic.
BUTTONS = ("MOVE_FORWARD", "MOVE_BACKWARD", "MOVE_LEFT", "MOVE_RIGHT", "ATTACK", "TURN_LEFT_RIGHT_DELTA")


def action_table(turn_degrees_per_tic: float) -> list[list[float]]:
    """Button vectors of the 8 discrete actions: noop, forward, back, turn left, turn right,
    strafe left, strafe right, attack (the arena's order; its ``interact`` is Doom's attack)."""
    t = float(turn_degrees_per_tic)
    return [
        [0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, -t],
        [0, 0, 0, 0, 0, t],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 1, 0],
    ]


def area_matrix(src: int, dst: int) -> np.ndarray:
    """``(dst, src)`` float32 weights of a ``src -> dst`` area resampling: output pixel k is the
    mean of the source interval ``[k src/dst, (k+1) src/dst)``, partial pixels by their overlap."""
    edges = np.arange(dst + 1) * (src / dst)
    lo = np.arange(src)[None, :]
    overlap = np.minimum(edges[1:, None], lo + 1) - np.maximum(edges[:-1, None], lo)
    return (np.clip(overlap, 0.0, None) * (dst / src)).astype(np.float32)


class FrameProcessor:
    """Crop to square pixels and area-resample to ``size`` x ``size`` (or pass the native frame).

    The resampling is two matrix products (rows, then columns). An area matrix ``src -> dst`` is
    block diagonal: ``gcd(src, dst)`` copies of the ``src/g -> dst/g`` matrix (the pixel edges
    meet at every block's edge), so each product runs on the blocks: at 120x160 -> 64x64 about
    half the full matrices' time (0.07 against 0.13 ms a frame with the depth, on a loaded core),
    the same pixels (the skipped weights are zeros). It runs in every player's process at every
    step."""

    def __init__(self, native_h: int, native_w: int, size: int | None, crop_w: int) -> None:
        self.size = size
        if size is None:
            return
        self.c0 = (native_w - crop_w) // 2
        self.c1 = self.c0 + crop_w
        self.h, self.w = native_h, crop_w
        self.row_blocks, self.col_blocks = math.gcd(native_h, size), math.gcd(crop_w, size)
        self.rows = area_matrix(native_h // self.row_blocks, size // self.row_blocks)  # (size/g, H/g)
        self.cols = np.ascontiguousarray(area_matrix(crop_w // self.col_blocks, size // self.col_blocks).T)
        # Depth: the nearest source pixel to each output pixel's centre (averaging depths across
        # an edge would invent surfaces).
        dy = np.minimum(((np.arange(size) + 0.5) * native_h / size).astype(np.int64), native_h - 1)
        dx = self.c0 + np.minimum(((np.arange(size) + 0.5) * crop_w / size).astype(np.int64), crop_w - 1)
        self.flat = (dy[:, None] * native_w + dx[None, :]).ravel()  # into the flattened depth

    def __call__(
        self, rgb: np.ndarray, depth: np.ndarray, out: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(size, size, 3)`` rgb and ``(size, size)`` depth, uint8 (written into ``out``, C-contiguous, if given)."""
        if out is None:
            n = self.size
            shape = rgb.shape[:2] if n is None else (n, n)
            out = (np.empty((*shape, 3), np.uint8), np.empty(shape, np.uint8))
        if self.size is None:
            out[0][...], out[1][...] = rgb, depth
            return out
        n, h, w, gr, gc = self.size, self.h, self.w, self.row_blocks, self.col_blocks
        img = rgb[:, self.c0 : self.c1].astype(np.float32).reshape(gr, h // gr, w * 3)
        tall = np.matmul(self.rows, img)  # (gr, n/gr, w*3): rows resampled, block by block
        # (n, 3, w) in blocks of w/gc columns, one block a row of the product: columns resampled
        res = (tall.reshape(n, w, 3).transpose(0, 2, 1).reshape(n * 3 * gc, w // gc) @ self.cols).reshape(n, 3, n)
        np.copyto(out[0], np.clip(np.rint(res.transpose(0, 2, 1)), 0, 255), casting="unsafe")
        np.take(depth.reshape(-1), self.flat, out=out[1].reshape(-1))
        return out


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGKILL)


def player_main(conn: socket.socket) -> None:
    """Run one player: read the spec (JSON, see ``VizDoomParallelEnv._launch``), then serve commands."""
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    game = None
    try:
        spec = json.loads(conn.recv(MAX_MESSAGE).decode())
        # Mapped before the first message: the parent then unlinks its name.
        _block, rgb_out, depth_out = map_block(spec["frame_block"], *spec["frame_shape"])
        import vizdoom as vzd

        game = vzd.DoomGame()
        game.set_doom_scenario_path(spec["wad"])
        game.set_doom_map(spec["map"])
        game.set_screen_resolution(getattr(vzd.ScreenResolution, spec["resolution"]))
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_depth_buffer_enabled(True)
        for name in ("hud", "minimal_hud", "weapon", "crosshair", "messages", "screen_flashes"):
            getattr(game, f"set_render_{name}")(False)
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        game.set_console_enabled(False)
        game.set_mode(vzd.Mode.PLAYER)
        game.set_episode_timeout(0)
        # In a netgame the engine waits for its timer before every tic even in the synchronous
        # mode, so the timer's rate caps the game's speed (the default, 35, is real time).
        game.add_game_args(f"-ticrate {int(spec['ticrate'])}")
        game.set_available_buttons([getattr(vzd.Button, b) for b in BUTTONS])
        game.set_available_game_variables([])
        game.set_seed(int(spec["seed"]))
        game.add_game_args(spec["args"])
        game.init()
        gv = vzd.GameVariable
        variables = (gv.POSITION_X, gv.POSITION_Y, gv.POSITION_Z, gv.ANGLE, gv.FRAGCOUNT, gv.DEATHCOUNT, gv.HEALTH)
        # Joiners get their player numbers in the order they connect; the parent puts the
        # processes in player-number order. Every player has the same default colour, so which
        # process got which number shows in no frame.
        number = int(game.get_game_variable(gv.PLAYER_NUMBER))
        conn.send(b"I" + json.dumps({"player_number": number, "pid": os.getpid()}).encode())
        actions = action_table(spec["turn_degrees"] / spec["frame_skip"])
        process = FrameProcessor(
            game.get_screen_height(), game.get_screen_width(), spec["frame_size"], spec["crop_width"]
        )

        def reply() -> None:
            finished = game.is_episode_finished()
            state = None if finished else game.get_state()
            if state is not None:  # else the block keeps the last frame
                process(state.screen_buffer, state.depth_buffer, (rgb_out, depth_out))
            values = [game.get_game_variable(v) for v in variables]
            values += [float(game.is_player_dead()), float(finished), float(game.get_episode_time())]
            conn.send(b"O" + HEADER.pack(*values))

        reply()
        while True:
            data = conn.recv(MAX_MESSAGE)
            if not data:  # the parent closed its end
                break
            cmd, a, _ = COMMAND.unpack(data)
            if cmd == b"T" or cmd == b"S":
                # One tic per command, every player in step: several tics in one call (make_action
                # with a skip) drift out of lockstep in a netgame and hang; the parent's one command
                # per tic, answered by every player, keeps them in step. Only "S" (the last tic
                # of an env step) updates the state, renders and sends the frame.
                if not game.is_episode_finished():
                    game.set_action(actions[a])
                    game.advance_action(1, cmd == b"S")
                if cmd == b"S":
                    reply()
                else:
                    conn.send(b"K")
            elif cmd == b"R":
                game.set_seed(int(a))
                game.new_episode()
                reply()
            elif cmd == b"Q":
                break
            else:
                raise ValueError(f"unknown command {cmd!r}")
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass
    except BaseException as exc:  # report anything to the parent, then exit
        try:
            text = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}".encode()
            conn.send(b"E" + text[: MAX_MESSAGE - 1])
        except (OSError, ValueError):
            pass
    finally:
        if game is not None:
            try:
                game.close()
            except Exception:
                pass
        conn.close()


if __name__ == "__main__":
    import sys

    player_main(socket.socket(fileno=int(sys.argv[1])))
