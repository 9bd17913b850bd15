"""The recorder of any PettingZoo env (multiworld.data.recorder, `multiworld data --env`), and the
depth-based correspondences checked against the arena's oracle correspondences."""

from __future__ import annotations

import numpy as np
import pytest

import multiworld
from multiworld.agents.policies import RandomPolicy
from multiworld.bench.correspondence import find_matches
from multiworld.bench.depth_correspondence import agreement, find_depth_matches
from multiworld.cli import main
from multiworld.data.recorder import load_factory, parse_env_kwargs, read_recordings, record_env, world_metadata
from multiworld.world.render import ENTITY_CEILING, Raycaster, RenderConfig, entity_offsets


def _check(rec, n: int, steps: int, size: int) -> None:
    assert rec.frames.shape == (steps + 1, n, size, size, 3) and rec.frames.dtype == np.uint8
    assert rec.poses.shape == (steps + 1, n, 3)
    assert (rec.actions[0] == -1).all() and (rec.actions[1:] >= 0).all() and (rec.actions[1:] < 8).all()
    assert rec.rewards.shape == (steps + 1, n)
    g = rec.metadata["grid_size"]
    assert ((rec.poses[..., :2] >= 0) & (rec.poses[..., :2] <= g)).all()
    assert rec.frames[1:].std() > 0, "the frames are real views"
    for key in ("bounds", "cell_size", "units", "camera"):
        assert key in rec.metadata


def test_recorder_on_the_arena_through_the_cli(tmp_path):
    out = tmp_path / "arena"
    kwargs = '{"scenario": "forage-v0", "num_agents": 3, "height": 32, "width": 32, "obs_type": "rgbd"}'
    assert main(["data", "--env", "multiworld:parallel_env", "--env-kwargs", kwargs, "--out", str(out),
                 "--episodes", "2", "--steps", "5", "--seed", "4"]) == 0  # fmt: skip
    recs = read_recordings(out)
    assert [r.world_id for r in recs] == ["forage-v0-n3-s4", "forage-v0-n3-s5"]
    for rec in recs:
        _check(rec, 3, 5, 32)
        assert rec.metadata["camera"]["fov_degrees"] == 90.0 and rec.world == "forage-v0"
    # The arena's full symbolic state is stored too, so load_sequences reads the same store.
    from multiworld.models.data import load_sequences

    (ss,) = load_sequences([out])
    assert ss.states.poses.shape == (12, 3, 3)
    np.testing.assert_array_equal(ss.states.poses[:6], recs[0].poses)
    # the stored frames are the env's observations
    env = multiworld.parallel_env("forage-v0", num_agents=3, height=32, width=32)
    obs, _ = env.reset(seed=4)
    np.testing.assert_array_equal(recs[0].frames[0, 1], obs["agent_1"])


def test_bad_env_specs_get_clear_errors(tmp_path, capsys):
    for spec, msg in [
        ("multiworld", "MODULE:FACTORY"),
        ("no_such_module_xyz:make", "cannot import"),
        ("multiworld:no_such_factory", "no callable"),
    ]:
        with pytest.raises(ValueError, match=msg):
            load_factory(spec)
        assert main(["data", "--env", spec, "--out", str(tmp_path / "x")]) == 2
        assert msg in capsys.readouterr().err
    with pytest.raises(ValueError, match="JSON object"):
        parse_env_kwargs("[1, 2]")
    assert main(["data", "--env-kwargs", "{}", "--out", str(tmp_path / "x")]) == 2


def test_an_env_without_the_contract_is_refused(tmp_path):
    class Plain:
        possible_agents = ("a",)

        def close(self):
            pass

    with pytest.raises(ValueError, match="world_metadata"):
        world_metadata(Plain())
    with pytest.raises(ValueError, match="world_metadata"):
        record_env(Plain, tmp_path / "s", 1, 1)


def test_recorder_on_vizdoom(tmp_path):
    pytest.importorskip("vizdoom")
    from multiworld.games import vizdoom as vz

    kwargs = dict(num_agents=2, frame_skip=1, frame_size=32, obs_type="dict")
    rows = record_env(vz.parallel_env, tmp_path / "doom", 1, 4, seed=2, env_kwargs=kwargs, spec="vizdoom")
    assert rows == 4
    (rec,) = read_recordings(tmp_path / "doom", world="vizdoom-cig_map01")
    _check(rec, 2, 4, 32)
    meta = rec.metadata
    assert meta["units"] == "doom map units" and meta["grid_size"] == 32
    x0, y0, x1, y1 = meta["bounds"]
    assert meta["cell_size"] == pytest.approx(max(x1 - x0, y1 - y0) / 32)
    assert meta["camera"]["eye_height"] == pytest.approx(41 / meta["cell_size"])


def test_depth_correspondences_agree_with_the_oracle():
    """On an arena rollout, matches from depth and poses alone are the oracle's matches: every
    oracle match is found, and every extra one starts on a pixel the oracle leaves out by design
    (the ceiling, whose colour follows the image row, and billboards); from the 8-bit rgbd
    channel most are still found."""
    env = multiworld.parallel_env("roam-v0", num_agents=4, obs_type="rgbd")
    obs, _ = env.reset(seed=3)
    cfg = RenderConfig()
    renderer = Raycaster(cfg)
    policy = RandomPolicy(0)
    total = 0
    for _ in range(4):
        state = env.world_state()
        views = renderer.render(state, buffers=True)
        oracle = find_matches(state, views, cfg)
        depth = views.depth.numpy()
        shape = depth.shape[1:]
        found = find_depth_matches(depth, state.poses, cfg, far=env.max_depth)
        precision, recall = agreement(found, oracle, shape)
        assert recall == 1.0
        entity = views.entity.numpy()[found.world, found.agent_a, found.row_a, found.col_a]
        item0 = entity_offsets(state.size, state.boxes.shape[1], state.items.shape[1])["item"]
        static = (entity != ENTITY_CEILING) & (entity < item0)
        on_static = type(found)(*(getattr(found, f)[static] for f in found.__dataclass_fields__))
        assert agreement(on_static, oracle, shape)[0] == 1.0
        assert precision > 0.6
        quantized = np.stack([obs[a][..., 3] for a in env.possible_agents]) * env.depth_scale
        q = find_depth_matches(quantized, state.poses[0], cfg, abs_tolerance=env.depth_scale, far=env.max_depth)
        assert agreement(q, oracle, shape)[1] > 0.8
        total += len(oracle)
        acts = policy.act(state)[0]
        obs, *_ = env.step({a: int(acts[i]) for i, a in enumerate(env.agents)})
    assert total > 500
