"""The learned world model: shapes, agent-permutation equivariance, save/load, checkpoint checks,
and the whole pipeline (data -> train -> checkpoint -> load -> env -> fidelity) on the tiny preset."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

from multiworld.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from multiworld.models.data import BatchMaker, make_batch, private_inputs, random_transitions
from multiworld.models.presets import get_preset
from multiworld.models.world_model import WorldModel
from multiworld.world.arena import generate
from multiworld.world.scenarios import get_scenario


@pytest.fixture(scope="module")
def tiny_model() -> WorldModel:
    torch.manual_seed(0)
    model = WorldModel(get_preset("tiny").model)
    ts = random_transitions("forage-v0", 3, 2, 10, seed=0)
    model.dynamics.fit_kinematics(*BatchMaker([ts], 2).kinematics_sample())
    return model.eval()


def _rollout(model: WorldModel, seeds=(3, 4), agents=3, steps=5, perm=None) -> dict:
    arena = get_scenario("forage-v0").arena_config(num_agents=agents)
    state = generate(arena, list(seeds))
    if perm is not None:
        state = state.permute_agents(perm)
    rs = model.reset(state)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 8, size=(steps, len(seeds), agents))
    if perm is not None:
        actions = actions[..., perm]
    out = {"rgb": [], "poses": []}
    for t in range(steps):
        rs, _ = model.step(rs, actions[t])
        out["rgb"].append(model.render(rs))
        out["poses"].append(torch.as_tensor(rs.symbolic.poses))
    return {k: torch.stack(v) for k, v in out.items()} | {"tokens": rs.tokens}


def test_shapes(tiny_model):
    ts = random_transitions("push-v0", 2, 2, 4, seed=1)
    batch = BatchMaker([ts], 2, dynamics_batch=3).sample()
    loss, logs = tiny_model(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"render_psnr", "move_acc", "push_acc", "pick_acc", "cell_acc", "flow_loss"} <= set(logs)
    out = _rollout(tiny_model, steps=2)
    assert out["rgb"].shape == (2, 2, 3, 64, 64, 3)
    assert out["poses"].shape == (2, 2, 3, 3)
    assert out["tokens"].shape == (2, 16, 16, tiny_model.cfg.codec.dim)


def test_one_checkpoint_serves_any_number_of_agents(tiny_model):
    for n in (1, 5, 8):
        assert _rollout(tiny_model, seeds=(9,), agents=n, steps=2)["rgb"].shape == (2, 1, n, 64, 64, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_state_update_is_permutation_equivariant(tiny_model, seed):
    """Renaming agents permutes the state-update model's outputs and changes nothing else."""
    dyn, n = tiny_model.dynamics, 5
    ts = random_transitions("forage-v0", n, 3, 3, seed=seed)
    batch = BatchMaker([ts], 3, seed=seed).sample()
    perm = np.random.default_rng(seed).permutation(n)
    with torch.no_grad():
        tok = tiny_model.codec.encode(batch["maps"])
        q = dyn.probe(tok)
        move = dyn.move_logits(q, batch["poses"], batch["actions"])
        push, pick, ev = dyn.event_outputs(q, batch["next_poses"], batch["actions"])
        p = torch.as_tensor(perm)
        move_p = dyn.move_logits(q, batch["poses"][:, p], batch["actions"][:, p])
        push_p, pick_p, ev_p = dyn.event_outputs(q, batch["next_poses"][:, p], batch["actions"][:, p])
        lat = dyn.latent_update(tok, batch["next_poses"], ev, push, pick)
        lat_p = dyn.latent_update(tok, batch["next_poses"][:, p], ev_p, push_p, pick_p)
    torch.testing.assert_close(move_p, move[:, p], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(push_p, push[:, p], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pick_p, pick[:, p], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lat_p, lat, rtol=1e-4, atol=1e-5)
    # and a free-running rollout: permuted agents give permuted poses and views
    a, b = _rollout(tiny_model, agents=n, steps=3), _rollout(tiny_model, agents=n, steps=3, perm=perm)
    torch.testing.assert_close(b["poses"], a["poses"][:, :, p])
    torch.testing.assert_close(b["rgb"], a["rgb"][:, :, p], rtol=1e-4, atol=1e-4)


def test_save_load_is_bit_identical(tiny_model, tmp_path):
    digest = save_checkpoint(tiny_model, tmp_path / "ck", {"note": "test"})
    loaded = load_checkpoint(tmp_path / "ck")
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["weights_sha256"] == digest
    a, b = _rollout(tiny_model), _rollout(loaded)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoint_mismatch_is_a_clear_error(tiny_model, tmp_path):
    ck = tmp_path / "ck"
    save_checkpoint(tiny_model, ck)
    cfg = json.loads((ck / "config.json").read_text())
    # weights replaced: the recorded hash no longer matches
    (ck / "model.safetensors").write_bytes((ck / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match=r"does not match config\.json"):
        load_checkpoint(ck)
    # a config that describes another model (hash of the right weights recorded, shapes differ)
    save_checkpoint(tiny_model, ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["model"]["codec"]["dim"] = 24
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit the config"):
        load_checkpoint(ck)
    cfg["model"]["codec"]["bogus"] = 1
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="bogus"):
        load_checkpoint(ck)
    with pytest.raises(CheckpointError, match="no world-model checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    from multiworld.runtime.factory import make_simulator

    with pytest.raises(ValueError, match="no world-model checkpoint"):
        make_simulator(backend="model", scenario="forage-v0", num_agents=2, checkpoint=tmp_path / "nowhere")


def test_tiny_pipeline_end_to_end(tmp_path):
    """data -> train (tiny) -> checkpoint -> load -> env run -> fidelity, through the CLI and the env API."""
    from multiworld.bench.fidelity import evaluate_fidelity
    from multiworld.cli import main
    from multiworld.env.parallel import parallel_env

    data, run = tmp_path / "data.zarr", tmp_path / "run"
    assert (
        main(
            ["data", "--episodes", "2", "--steps", "15", "--agents", "2", "--scenario", "forage-v0", "--out", str(data)]
        )
        == 0
    )
    args = ["train", "--preset", "tiny", "--data", str(data), "--out", str(run), "--max-steps", "6", "--no-progress"]
    assert main(args) == 0
    assert main([*args[:-3], "--max-steps", "8", "--resume", "--no-progress"]) == 0  # resumes from last/
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("eval" in r for r in log)
    assert json.loads((run / "last" / "trainer.json").read_text())["step"] == 8
    for name in ("model.safetensors", "config.json", "metrics.json"):
        assert (run / name).is_file()

    env = parallel_env("forage-v0", num_agents=2, backend="model", checkpoint=str(run))
    obs, infos = env.reset(seed=11)
    steps = 0
    while env.agents and steps < 3:  # a barely trained model may end the episode early
        obs, _, _, _, infos = env.step({a: 1 for a in env.agents})
        steps += 1
    assert obs["agent_0"].shape == (64, 64, 3) and infos["agent_0"]["version"] == steps

    result = evaluate_fidelity(
        load_checkpoint(run), "forage-v0", 2, [500], horizons=(1, 3), accuracy_horizons=(1, 5), sampler_steps=(1,)
    )
    assert set(result["psnr"]) == {"deterministic", "sampler_1"}
    assert 0.0 <= result["accuracy"]["5"] <= 1.0


def test_private_state_batches_show_one_agents_action_and_the_true_outcome():
    """`train --private-state`: per transition one owner keeps its action, the others read NOOP;
    the targets are still the world's true next state and events."""
    from multiworld.world.state import Action

    ts = random_transitions("forage-v0", 4, 3, 20, seed=7)
    given = private_inputs(ts.actions, np.random.default_rng(0))
    kept = given == ts.actions
    assert (kept | (given == int(Action.NOOP))).all()
    moving = np.full((2000, 4), int(Action.FORWARD))
    masked = private_inputs(moving, np.random.default_rng(1))
    assert ((masked == int(Action.FORWARD)).sum(1) == 1).all()  # exactly one owner per transition
    assert np.bincount(masked.argmax(1), minlength=4).min() > 400  # every agent owns about a quarter
    true = make_batch(ts.states, ts.actions, ts.arena, None)
    private = make_batch(ts.states, ts.actions, ts.arena, None, input_actions=given)
    assert torch.equal(private["actions"], torch.as_tensor(given))
    assert not torch.equal(true["actions"], private["actions"])
    for key in ("next_poses", "push", "pick"):
        assert torch.equal(true[key], private[key]), key
    for key, value in true["next_maps"].items():
        assert torch.equal(value, private["next_maps"][key]), key
    sampler = BatchMaker([ts], 2, dynamics_batch=16, private_state=True)
    batch = sampler.sample()["dynamics"]
    assert ((batch["actions"] != int(Action.NOOP)).sum(1) <= 1).all()


def test_train_private_state_records_the_flag(tmp_path):
    from multiworld.cli import main

    data, run = tmp_path / "data.zarr", tmp_path / "run"
    assert main(["data", "--episodes", "1", "--steps", "8", "--agents", "2", "--out", str(data)]) == 0
    args = ["train", "--preset", "tiny", "--private-state", "--data", str(data), "--out", str(run)]
    assert main([*args, "--max-steps", "3", "--no-progress", "--threads", "1"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["private_state"] is True
    assert load_checkpoint(run).dynamics.turn_table.abs().sum() > 0  # kinematics fitted from true transitions


def test_model_backend_is_registered():
    from multiworld.runtime.factory import available_backends

    assert "model" in available_backends()


def test_shipped_checkpoint_loads_or_is_absent():
    from multiworld.models.checkpoint import DEFAULT_CHECKPOINT

    if not (DEFAULT_CHECKPOINT / "config.json").exists():
        pytest.skip("no shipped checkpoint yet")
    model = load_checkpoint()
    assert isinstance(model, WorldModel)
    assert pathlib.Path(DEFAULT_CHECKPOINT / "MODEL_CARD.md").is_file()


def test_model_simulator_contract(tiny_model, tmp_path):
    """reset from seeds, from a stored state plus tokens, versions, and bad actions changing nothing."""
    from multiworld.runtime.model import ModelSimulator

    save_checkpoint(tiny_model, tmp_path / "ck")
    sim = ModelSimulator("forage-v0", 3, num_worlds=2, checkpoint=tmp_path / "ck", depth=True)
    obs = sim.reset([1, 2])
    assert obs.rgb.shape == (2, 3, 64, 64, 3) and obs.rgb.dtype == np.uint8 and obs.depth.shape == (2, 3, 64, 64)
    obs = sim.step(np.zeros((2, 3), np.int64))
    assert obs.version.tolist() == [1, 1] and obs.rewards.shape == (2, 3)
    state, tokens = sim.world_state().copy(), sim.tokens()
    with pytest.raises(ValueError):
        sim.step(np.full((2, 3), 8))
    assert sim.world_state().equals(state)

    other = ModelSimulator("forage-v0", 3, num_worlds=2, checkpoint=tmp_path / "ck")
    again = other.reset([0, 0], start=state, tokens=tokens)
    assert np.array_equal(again.rgb, obs.rgb) and np.array_equal(again.poses, obs.poses)
    assert again.version.tolist() == [1, 1]
    with pytest.raises(ValueError, match="tokens must have shape"):
        other.reset([0, 0], start=state, tokens=tokens[:, :4])
