"""The ViZDoom multiplayer env: PettingZoo conformance, seeds, poses, processes.

Every env here starts real player processes (2-3 players, 64x64, one tic per step): a few
seconds each, so the cycles are short. See README "Worlds beyond the arena: ViZDoom".
"""

from __future__ import annotations

import functools
import os
import signal
import time
import types
import warnings

import numpy as np
import pytest

pytest.importorskip("vizdoom")

from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, parallel_seed_test, render_test

from multiworld.games import vizdoom as vz

FAST = dict(frame_skip=1, frame_size=32, timeout=20)


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _group_members(pgids: list[int]) -> list[int]:
    """Live processes (not zombies) whose process group is one of ``pgids``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().split(")")[-1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] != "Z" and int(fields[2]) in pgids:
                out.append(int(entry))
    return out


def _wait_gone(pgids: list[int], seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _group_members(pgids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_conformance_parallel_and_aec():
    parallel_api_test(vz.parallel_env(num_agents=2, obs_type="dict", **FAST), num_cycles=6)
    aec = vz.env(num_agents=3, obs_type="rgbd", **FAST)
    api_test(aec, num_cycles=3)
    aec.close()


def test_seed_and_render():
    parallel_seed_test(functools.partial(vz.parallel_env, num_agents=2, **FAST), num_cycles=4)
    render_test(lambda render_mode=None: vz.env(num_agents=2, render_mode=render_mode, **FAST))


@pytest.mark.slow
def test_max_cycles():
    mod = types.SimpleNamespace(
        parallel_env=functools.partial(vz.parallel_env, num_agents=2, **FAST),
        env=functools.partial(vz.env, num_agents=2, **FAST),
    )
    max_cycles_test(mod)


def test_reset_is_seeded_and_poses_in_bounds():
    env = vz.parallel_env(num_agents=3, obs_type="rgbd", **FAST)
    try:
        obs1, infos1 = env.reset(seed=7)
        g = env.grid_size
        rng = np.random.default_rng(0)
        for _ in range(12):
            obs, _, _, _, infos = env.step({a: int(rng.integers(8)) for a in env.agents})
            for a in env.possible_agents:
                x, y, h = infos[a]["pose"]
                assert 0 <= x <= g and 0 <= y <= g and -np.pi <= h < np.pi, infos[a]["pose"]
                assert obs[a].shape == (32, 32, 4) and obs[a].dtype == np.uint8
                assert set(infos[a]) == {"pose", "eye_z", "frags", "deaths", "health", "dead"}
        obs_next, _ = env.reset()  # the next episode of the running game
        obs2, infos2 = env.reset(seed=7)  # a seeded reset starts the same game again
        for first in (obs1, obs_next, obs2):  # every episode starts after the spawn fog has cleared
            assert max(vz.fog_fraction(first[a][..., :3]) for a in env.possible_agents) <= vz.FOG_VISIBLE
        for a in env.possible_agents:
            np.testing.assert_array_equal(infos1[a]["pose"], infos2[a]["pose"])
            np.testing.assert_array_equal(obs1[a], obs2[a])
        meta = env.world_metadata()
        assert meta["grid_size"] == g and meta["camera"]["width"] == 32
        assert abs(meta["camera"]["fov_degrees"] - 64.01) < 0.01
    finally:
        env.close()


def test_frames_are_area_resampled():
    """The players' frame resampling: weights of every output pixel sum to one, a flat image stays
    flat, and each output pixel is the mean of its source block when the sizes divide."""
    from multiworld.games._doom_player import FrameProcessor, area_matrix

    for src, dst in ((120, 64), (100, 64), (128, 32)):
        np.testing.assert_allclose(area_matrix(src, dst).sum(1), 1.0, rtol=1e-5)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (120, 160, 3)).astype(np.uint8)
    depth = rng.integers(0, 256, (120, 160)).astype(np.uint8)
    flat, _ = FrameProcessor(120, 160, 64, 100)(np.full_like(rgb, 77), depth)
    assert (flat == 77).all()
    out, d = FrameProcessor(120, 160, 40, 100)(rgb, depth)  # 3 x 2.5 blocks: check against a slow sum
    rows = rgb[:, 30:130].astype(np.float64).reshape(40, 3, 100, 3).mean(1)  # 3 source rows each
    ref = np.repeat(rows, 2, axis=1).reshape(40, 40, 5, 3).mean(2)  # 2.5 source columns = 5 half columns
    assert np.abs(out.astype(np.float64) - ref).max() <= 0.5 + 1e-6
    assert d.shape == (40, 40)


def _play(seed: int, steps: int, episodes: int) -> list[tuple[dict, dict, dict]]:
    """(observations, rewards, infos) of every reset and step: a 3-player game from ``seed``, then
    ``episodes - 1`` unseeded resets (the next episode of the same game), random actions."""
    env = vz.parallel_env(num_agents=3, obs_type="rgbd", **FAST)
    rng = np.random.default_rng(3)
    record = []
    try:
        for episode in range(episodes):
            obs, infos = env.reset(seed=seed) if episode == 0 else env.reset()
            record.append((obs, {}, infos))
            for _ in range(steps):
                obs, rewards, _, _, infos = env.step({a: int(rng.integers(8)) for a in env.agents})
                record.append((obs, rewards, infos))
    finally:
        env.close()
    return record


def test_same_seed_and_actions_give_the_same_run():
    """Two runs with the same seed and actions agree exactly at every step, for every player
    (frames, depth, poses, counters), through an unseeded reset too: every joiner builds its tic
    command one tic ahead on every tic of every run (see multiworld.games.doom_relay)."""
    first, second = _play(11, 12, 2), _play(11, 12, 2)
    assert len(first) == len(second) == 26
    for step, ((obs1, rew1, infos1), (obs2, rew2, infos2)) in enumerate(zip(first, second)):
        assert rew1 == rew2, f"step {step}"
        for a in obs1:
            np.testing.assert_array_equal(obs1[a], obs2[a], err_msg=f"step {step}, {a}")
            np.testing.assert_array_equal(infos1[a]["pose"], infos2[a]["pose"], err_msg=f"step {step}, {a}")
            assert {k: v for k, v in infos1[a].items() if k != "pose"} == {
                k: v for k, v in infos2[a].items() if k != "pose"
            }, f"step {step}, {a}"


def test_every_players_action_lands_on_the_next_tic():
    """The host's and the joiners' actions take effect on the same tic, the one after the tic they
    are given in: with one tic a step, a turn shows in the next step's pose, for every agent alike."""
    env = vz.parallel_env(num_agents=3, **FAST)
    try:
        _, before = env.reset(seed=5)
        _, _, _, _, given = env.step(dict.fromkeys(env.agents, vz.ACTION_NAMES.index("turn_left")))
        _, _, _, _, after = env.step(dict.fromkeys(env.agents, 0))
        for a in env.possible_agents:
            h0, h1, h2 = (float(i[a]["pose"][2]) for i in (before, given, after))
            assert h1 == h0, f"{a} turned in the tic it was given its action"
            turned = abs((h2 - h1 + np.pi) % (2 * np.pi) - np.pi)
            assert abs(np.degrees(turned) - env.turn_degrees) < 0.5, f"{a} turned {np.degrees(turned):.2f} degrees"
    finally:
        env.close()


def _segments_left(names: list[str]) -> list[str]:
    """Frame blocks still named in /dev/shm or still mapped into this process."""
    with open("/proc/self/maps") as f:
        maps = f.read()
    return [n for n in names if os.path.exists(f"/dev/shm/{n}") or f"/{n}" in maps]


def test_close_and_garbage_collection_end_every_process():
    env = vz.parallel_env(num_agents=2, **FAST)
    env.reset(seed=0)
    pids, blocks, engine = env.player_pids(), env.frame_block_names(), env.engine_segment_names()
    assert len(_group_members(pids)) >= 4, "each player has its engine process in its group"
    assert len(blocks) == 2 and not any(os.path.exists(f"/dev/shm/{n}") for n in blocks), "unlinked once mapped"
    assert len(_segments_left(blocks)) == 2, "the parent maps every player's frame block"
    env.step({})
    env.close()
    assert not _wait_gone(pids)
    assert not _segments_left(blocks), "close() releases the frame blocks"
    assert engine and not _segments_left(engine), "no engine segment is left"
    env = vz.parallel_env(num_agents=2, **FAST)
    env.reset(seed=0)
    pids, blocks = env.player_pids(), env.frame_block_names()
    del env
    assert not _wait_gone(pids), "garbage collection ends the players"
    assert not _segments_left(blocks), "garbage collection releases the frame blocks"


def test_a_dead_player_gives_a_clear_error_and_no_process_is_left():
    env = vz.parallel_env(num_agents=3, **FAST)
    env.reset(seed=0)
    pids, blocks, engine = env.player_pids(), env.frame_block_names(), env.engine_segment_names()
    assert any(os.path.exists(f"/dev/shm/{n}") for n in engine), "the engines' segments are found"
    os.kill(pids[1], signal.SIGKILL)
    with pytest.raises(vz.PlayerProcessError, match="agent_1"):
        for _ in range(5):
            env.step({})
    assert not _wait_gone(pids), "the other players and every engine were ended"
    assert not _segments_left(blocks), "their frame blocks were released"
    assert not _segments_left(engine), "the killed engines' own segments were removed"
    env.reset(seed=0)  # a new game starts
    env.step({})
    env.close()


def test_bad_arguments_and_the_model_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        vz.parallel_env(backend="learned")
    with pytest.raises(ValueError, match="num_agents"):
        vz.parallel_env(num_agents=1)
    with pytest.raises(ValueError, match="unknown map"):
        vz.parallel_env(map="e1m1")
    env = vz.parallel_env(num_agents=2, **FAST)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


def test_missing_vizdoom_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vizdoom" else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install -e "\.\[vizdoom\]"'):
        vz.parallel_env(num_agents=2)


def test_a_port_in_use_is_retried():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("", 0))
        env = vz.parallel_env(num_agents=2, port=busy.getsockname()[1], **FAST)
        try:
            env.reset(seed=0)
            env.step({})
        finally:
            env.close()
