"""The `multiworld` command: run, inspect, replay, --help everywhere, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from multiworld.cli import COMMANDS, build_parser, main
from multiworld.state import WorldStore


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    argv = ["run", "--backend", "oracle", "--scenario", "forage-v0", "--agents", "3", "--steps", "40"]
    assert main([*argv, "--seed", "5", "--out", str(out), "--video-format", "gif"]) == 0
    return out


def test_every_command_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: multiworld " + name in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "multiworld.cli", "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout and "inspect" in out.stdout


def test_run_writes_video_summary_and_store(oracle_run):
    summary = json.loads((oracle_run / "summary.json").read_text())
    assert summary["steps"] == 40 and summary["agents"] == 3 and summary["scenario"] == "forage-v0"
    assert sum(ep["steps"] for ep in summary["episodes"]) == 40
    assert (oracle_run / "video.gif").stat().st_size > 0
    with WorldStore.open(oracle_run / "world.zarr", mode="r") as store:
        world = store.world(summary["episodes"][0]["world"])
        assert world.steps == summary["episodes"][0]["steps"] + 1  # row 0 is the reset state
        assert world.seed == 5 and world.scenario == "forage-v0"
        assert world.frames(1).shape == (3, 64, 64, 3)


def test_recorded_run_replays_exactly_from_its_actions(oracle_run):
    from multiworld.world.dynamics import step
    from multiworld.world.scenarios import get_scenario

    with WorldStore.open(oracle_run / "world.zarr", mode="r") as store:
        world = store.world("ep000")
        cfg = get_scenario(world.scenario).arena_config(num_agents=3)
        state, actions = world.state(0), world.actions()
        for t in range(1, world.steps):
            state, _ = step(state, actions[t][None], cfg)
            assert state.equals(world.state(t))


def test_inspect_json_lists_worlds_with_committed_steps(oracle_run, capsys):
    assert main(["inspect", str(oracle_run / "world.zarr"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [w["id"] for w in info["worlds"]] == ["ep000"]
    assert info["worlds"][0]["steps"] == 41 and info["worlds"][0]["scenario"] == "forage-v0"
    assert main(["inspect", str(oracle_run / "world.zarr")]) == 0
    assert "41 committed steps" in capsys.readouterr().out


def test_replay_rebuilds_the_video(oracle_run, tmp_path):
    assert main(["replay", str(oracle_run / "world.zarr"), "--world", "ep000", "--out", str(tmp_path / "r.gif")]) == 0
    assert (tmp_path / "r.gif").stat().st_size > 0


def test_run_without_video_or_store(tmp_path):
    assert (
        main(["run", "--backend", "oracle", "--steps", "5", "--out", str(tmp_path), "--no-video", "--no-record"]) == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_second_run_appends_a_new_world_and_keeps_the_first(oracle_run, tmp_path):
    store_url = str(tmp_path / "s.zarr")
    for seed in (1, 2):
        argv = ["run", "--backend", "oracle", "--steps", "4", "--seed", str(seed), "--no-video"]
        assert main([*argv, "--out", str(tmp_path), "--store", store_url]) == 0
    with WorldStore.open(store_url, mode="r") as store:
        assert store.worlds() == ["ep000", "ep001"]
        assert [store.world(w).seed for w in store.worlds()] == [1, 2]
        assert np.array_equal(store.world("ep000").poses().shape, (5, 4, 3))


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--agents", "0"],
        ["run", "--scenario", "nope-v0"],
        ["run", "--steps", "-3"],
        ["run", "--policy", "smart"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_bad_values_are_one_line_errors(tmp_path, capsys):
    assert main(["run", "--backend", "dream", "--steps", "2", "--out", str(tmp_path)]) == 2
    assert "dream" in capsys.readouterr().err
    assert main(["run", "--agents", "17", "--steps", "2", "--out", str(tmp_path), "--backend", "oracle"]) == 2
    assert "num_agents" in capsys.readouterr().err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("not a store")
    assert main(["inspect", str(tmp_path / "junk")]) == 2
    assert "not a multiworld store" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "junk"), "--world", "x", "--out", str(tmp_path / "v.avi")]) == 2


def test_training_data_refuses_held_out_seeds(tmp_path, capsys):
    """Training seeds lie below 1,000,000 (multiworld.seeds): `data` never records a held-out world."""
    store = tmp_path / "d.zarr"
    assert main(["data", "--seed", "999999", "--episodes", "2", "--out", str(store)]) == 2
    assert "[999999, 1000001)" in capsys.readouterr().err and not store.exists()
    assert main(["data", "--seed", "-1", "--episodes", "1", "--out", str(store)]) == 2
