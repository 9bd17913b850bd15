"""The same model code learns Doom: a tiny training on recorded ViZDoom steps, end to end, and
the learned Doom as a PettingZoo env (``parallel_env(backend="model")``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("vizdoom")

from pettingzoo.test import parallel_api_test

from multiworld.cli import main
from multiworld.data.recorder import record_env
from multiworld.games import vizdoom as vz
from multiworld.models.checkpoint import CheckpointError
from multiworld.models.recorded import load_recorded, model_fields

GAME = dict(num_agents=2, frame_skip=1, frame_size=32, grid_size=8, timeout=20)
# The same models run any number of players; four players 4 tics apart see more in common.
FOUR = {**GAME, "num_agents": 4, "frame_skip": 4}


@pytest.fixture(scope="module")
def doom_run(tmp_path_factory):
    """Two short recorded Doom episodes and a tiny model trained on them by the CLI."""
    root = tmp_path_factory.mktemp("doom")
    rows = record_env(vz.parallel_env, root / "doom.zarr", episodes=2, steps=6, seed=0, env_kwargs=GAME)
    assert rows == 12
    args = ["train", "--preset", "tiny", "--data", str(root / "doom.zarr"), "--out", str(root / "run")]
    assert main([*args, "--max-steps", "2", "--no-progress", "--threads", "1"]) == 0
    args = ["train", "--stacked-frames", "--preset", "tiny", "--data", str(root / "doom.zarr")]
    assert main([*args, "--out", str(root / "stacked"), "--max-steps", "2", "--no-progress", "--threads", "1"]) == 0
    return root


def test_the_model_takes_grid_camera_and_actions_from_the_recording(doom_run):
    rs = load_recorded([doom_run / "doom.zarr"])
    assert rs.frames.shape == (14, 2, 32, 32, 3) and rs.walls.shape == (14, 8, 8)
    fields = model_fields(rs)
    config = json.loads((doom_run / "run" / "config.json").read_text())["model"]
    assert config["worlds"] == ["vizdoom-cig_map01"] and config["dynamics"]["actions"] == vz.NUM_ACTIONS
    assert config["camera"] == fields["camera"] and config["camera"]["width"] == 32
    assert config["camera"]["eye_height"] == pytest.approx(41 / rs.metadata["cell_size"])
    run = json.loads((doom_run / "run" / "run.json").read_text())
    assert run["world"] == "vizdoom-cig_map01" and run["validation_seeds"] == [1]


def test_the_learned_doom_is_a_pettingzoo_env(doom_run):
    env = vz.parallel_env(backend="model", checkpoint=doom_run / "run", obs_type="dict", max_cycles=5, **GAME)
    # Two training steps do not teach the untrained ending head that Doom's recordings never
    # end early; a model that has learned it (the shipped one) gives this bias itself.
    env.model.dynamics.world_head[-1].bias.data[0] = -20.0
    try:
        parallel_api_test(env, num_cycles=3)  # (it sets max_cycles to 3)
        env.max_cycles = 5
        obs, infos = env.reset(seed=3)
        assert env._players is None, "after reset the game's processes are gone: the model runs"
        for t in range(5):
            obs, rewards, _, truncs, infos = env.step({a: t % vz.NUM_ACTIONS for a in env.agents})
        assert all(truncs.values()) and not env.agents
        for a, o in obs.items():
            assert o["rgb"].shape == (32, 32, 3) and o["rgb"].dtype == np.uint8
            assert np.isfinite(infos[a]["pose"]).all() and set(infos[a]) == {"pose", "frags"}
            assert rewards[a] in (-1.0, 0.0, 1.0)
        env.reset(seed=3)
        with pytest.raises(ValueError, match="action"):
            env.step({"agent_0": 99})
        with pytest.raises(ValueError, match="unknown agent"):
            env.step({"agent_9": 0})
    finally:
        env.close()


def test_the_documented_doom_model_call_takes_its_sizes_from_the_checkpoint():
    """README: ``vizdoom.parallel_env(num_agents=4, backend="model")`` runs the shipped checkpoint,
    trained at grid_size=16 and 64 px (the game backend's defaults are 32 and 64)."""
    env = vz.parallel_env(num_agents=4, backend="model", max_cycles=2)
    try:
        assert (env.grid_size, env.frame_size) == (16, 64)
        assert env.world_metadata()["camera"]["near"] == pytest.approx(env.model.cfg.camera["near"])
        obs, _ = env.reset(seed=0)
        assert env._players is None, "after reset the game's processes are gone: the model runs"
        for _ in range(2):
            obs, rewards, _, truncs, infos = env.step({a: 1 for a in env.agents})
        assert all(truncs.values()) and len(obs) == len(rewards) == 4
        assert all(o.shape == (64, 64, 3) and np.isfinite(infos[a]["pose"]).all() for a, o in obs.items())
    finally:
        env.close()
    game = vz.parallel_env(num_agents=2)
    assert (game.grid_size, game.frame_size) == (32, 64)


def test_a_checkpoint_of_another_world_or_camera_is_refused(doom_run, tmp_path):
    with pytest.raises(ValueError, match="not on 'vizdoom-cig_map02'"):
        vz.parallel_env(backend="model", checkpoint=doom_run / "run", **{**GAME, "map": "cig_map02"})
    need = "was trained with grid_size=8, frame_size=32; pass those or omit them"
    with pytest.raises(ValueError, match=need):
        vz.parallel_env(backend="model", checkpoint=doom_run / "run", **{**GAME, "frame_size": 64})
    with pytest.raises(ValueError, match=need):
        vz.parallel_env(backend="model", checkpoint=doom_run / "run", **{**GAME, "grid_size": 16})
    with pytest.raises(ValueError, match="grid_size=16, frame_size=64; pass those or omit them"):
        vz.parallel_env(num_agents=4, backend="model", grid_size=32)  # the game backend's default grid
    env = vz.parallel_env(backend="model", checkpoint=doom_run / "run", num_agents=2)  # sizes omitted
    assert (env.grid_size, env.frame_size) == (8, 32)
    with pytest.raises(CheckpointError, match="no world-model checkpoint"):
        vz.parallel_env(backend="model", checkpoint=tmp_path / "missing", **GAME)


def test_the_doom_benchmark_writes_its_tables(doom_run, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", "vizdoom", "--quick", "--no-progress", "--out", str(out), "--env-kwargs", json.dumps(FOUR)]
    args += ["--checkpoint", str(doom_run / "run"), "--stacked-checkpoint", str(doom_run / "stacked")]
    assert main(args) == 0
    res = json.loads((out / "model.json").read_text())["results"]
    assert res["episodes"] == 2 and set(res["fidelity"]) == {"1", "10"}
    assert set(res["fidelity"]["10"]["psnr"]) == {"shared", "stacked", "persistence", "mean"}
    contrast = res["contrast"]["value"]
    # The game's own frames agree where its depth says two players see one point: the matches are
    # real. The mean frame (the same view for everyone) is the bound of what the image layout alone
    # gives (matched pixels sit at similar heights); the game's frames must do better than it.
    assert res["matches"] > 100 and contrast["game"] > max(0.05, contrast["mean"])
    assert (out / "model.md").read_text().startswith("# vizdoom/model") and (out / "strip.png").stat().st_size > 0
