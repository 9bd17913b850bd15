"""Agent-frames per second of the ViZDoom env through the PettingZoo API, beside the raw game.

For 2 and 4 players, 64x64 RGB: the env (``multiworld.games.vizdoom.parallel_env``, random
actions, frame_skip 1 and 4) and, as the reference under the same load, the raw game (one
``DoomGame`` per process, ``make_action`` one tic at a time, 160x120 RGB + depth + pose read
each tic, no env; in lockstep, so its rate is its slowest player's). An agent-frame is one
observation delivered to one agent; ``of_raw`` is an env row's agent-frames/s over the raw
game's with as many players, measured just before it. Writes ``results/vizdoom/env.{json,md}``.

    python benchmarks/vizdoom_env.py [--seconds 20] [--players 2 4]   # a short run: --seconds 5 --players 4
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, write_results


def env_rate(players: int, frame_skip: int, seconds: float) -> dict:
    from multiworld.games.vizdoom import parallel_env

    env = parallel_env(num_agents=players, frame_skip=frame_skip, max_cycles=10**9)
    t0 = time.perf_counter()
    env.reset(seed=0)
    start = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    for _ in range(20):  # warm up
        env.step({a: int(rng.integers(8)) for a in env.agents})
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.step({a: int(rng.integers(8)) for a in env.agents})
        steps += 1
    dt = time.perf_counter() - t0
    env.close()
    return {
        "what": "env (PettingZoo, 64x64 RGB)",
        "players": players,
        "frame_skip": frame_skip,
        "steps_per_s": round(steps / dt, 1),
        "agent_frames_per_s": round(steps * players / dt),
        "startup_s": round(start, 2),
    }


def _raw_player(i: int, n: int, port: int, seconds: float, out) -> None:
    import tempfile

    import vizdoom as vzd

    os.chdir(tempfile.gettempdir())  # the engine writes its _vizdoom.ini into the working directory
    g = vzd.DoomGame()
    root = os.path.dirname(vzd.__file__)
    g.set_doom_scenario_path(os.path.join(root, "scenarios", "cig.wad"))
    g.set_doom_map("map01")
    g.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
    g.set_screen_format(vzd.ScreenFormat.RGB24)
    g.set_depth_buffer_enabled(True)
    g.set_window_visible(False)
    g.set_sound_enabled(False)
    g.set_mode(vzd.Mode.PLAYER)
    g.set_available_buttons([vzd.Button.MOVE_FORWARD, vzd.Button.TURN_LEFT])
    gv = vzd.GameVariable
    g.set_available_game_variables([gv.POSITION_X, gv.POSITION_Y, gv.ANGLE])
    host = f"-host {n} -port {port} -deathmatch +sv_spawnfarthest 1 -nomonsters"
    g.add_game_args(host if i == 0 else f"-join 127.0.0.1 -port {port}")
    g.init()
    frames, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        g.make_action([1, 1], 1)
        s = g.get_state()
        _ = s.screen_buffer, s.depth_buffer, s.game_variables
        frames += 1
    out.put(frames / (time.perf_counter() - t0))
    g.close()


def raw_rate(players: int, seconds: float) -> dict:
    from multiworld.games.vizdoom import free_udp_port

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_udp_port()
    procs = [ctx.Process(target=_raw_player, args=(i, players, port, seconds, q)) for i in range(players)]
    for p in procs:
        p.start()
    rates = [q.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
    # The game runs in lockstep (a tic runs once every player's command for it has arrived), so
    # it runs at most at its slowest player's rate and delivers at most players x that rate
    # agent-frames/s. The players' own rates differ by when each one's timed window fell; their
    # sum overstated the game's rate.
    return {
        "what": "raw game (160x120 RGB + depth)",
        "players": players,
        "frame_skip": 1,
        "steps_per_s": round(min(rates), 1),
        "agent_frames_per_s": round(players * min(rates)),
        "startup_s": "",
        "player_tics_per_s": [round(r, 1) for r in rates],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per configuration")
    parser.add_argument("--players", type=int, nargs="+", default=[2, 4], help="player counts to measure")
    parser.add_argument("--note", default="", help="conditions of the run, written into the results")
    args = parser.parse_args()
    if any(not 2 <= p <= 8 for p in args.players):
        parser.error(f"--players must be between 2 and 8, got {args.players}")
    rows = []
    for players in args.players:
        raw = raw_rate(players, args.seconds)
        rows.append({**raw, "of_raw": ""})
        print(rows[-1], flush=True)
        for skip in (1, 4):
            row = env_rate(players, skip, args.seconds)
            rows.append({**row, "of_raw": round(row["agent_frames_per_s"] / raw["agent_frames_per_s"], 2)})
            print(rows[-1], flush=True)
    load = os.getloadavg()
    note = f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the end. {args.note}".strip()
    shown = [{k: v for k, v in r.items() if k != "player_tics_per_s"} for r in rows]  # in the JSON only
    table = markdown_table(shown) + "\n\n" + note + "\n"
    os.makedirs(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "vizdoom"), exist_ok=True)
    write_results("vizdoom/env", {"rows": rows, "seconds": args.seconds, "players": args.players, "note": note}, table)


if __name__ == "__main__":
    main()
