"""A smoke run of examples/ppo_shared.py: two PPO updates on tiny worlds write the curve JSON and PNG."""

from __future__ import annotations

import importlib.util
import json
import pathlib

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "ppo_shared.py"


def test_ppo_shared_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("ppo_shared", EXAMPLE)
    ppo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ppo)
    out = tmp_path / "ppo"
    args = ["--updates", "2", "--minutes", "5", "--num-envs", "2", "--num-agents", "2", "--rollout", "12"]
    args += ["--view", "16", "--max-cycles", "10", "--baseline-episodes", "2", "--eval-episodes", "2"]
    result = ppo.main([*args, "--out", str(out)])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["curve"] == result["curve"] and len(saved["curve"]) == 2
    assert saved["curve"][-1]["agent_steps"] == 2 * 12 * 2 * 2
    # 12-step rollouts of 10-step episodes: episodes end (and one step per world is masked as a reset)
    assert saved["curve"][0]["episodes"] == 2
    assert set(saved["baselines"]) == {"random", "scripted"} and set(saved["evaluation"]) == {"sampled", "greedy"}
    assert saved["baselines"]["random"]["episodes"] == 2
    assert out.with_suffix(".png").stat().st_size > 1000


def test_ppo_shared_stage_curriculum_and_its_errors(capsys):
    """``--stage`` stages the worlds of the env it is given to (push-v0: boxes moved before goals;
    ``main`` gives it to the training env alone), and refuses a share outside [0, 1] or a scenario
    without goals."""
    import pytest

    spec = importlib.util.spec_from_file_location("ppo_shared", EXAMPLE)
    ppo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ppo)
    for bad, said in ((["--stage", "1.5"], "in [0, 1]"), (["--stage", "0.5", "--scenario", "forage-v0"], "no goals")):
        with pytest.raises(SystemExit):
            ppo.parse_args(bad)
        assert said in capsys.readouterr().err
    args = ppo.parse_args(["--scenario", "push-v0", "--stage", "1", "--view", "16"])
    boxes = {}
    for staged in (0.0, 1.0):
        env = ppo.make_env(args, 8, 3, staged=staged)
        env.reset(seed=3)
        boxes[staged] = env.world_state().boxes
        env.close()
    assert (boxes[0.0] != boxes[1.0]).any(-1).any(-1).sum() >= 4, "boxes moved in most staged worlds"
