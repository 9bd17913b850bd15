"""The learned world model: shapes, agent-permutation equivariance, a state of tensors only,
save/load, checkpoint checks, and the whole pipeline (data -> train -> checkpoint -> load -> env ->
fidelity) on the tiny preset. No oracle at run time: test_oracle_guard.py, by behaviour."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multiworld.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from multiworld.models.data import SequenceBatcher, make_sequences, private_inputs
from multiworld.models.world_model import LatentState, WorldModel
from multiworld.sim.model import ModelSimulator


@pytest.fixture(scope="module")
def tiny_model() -> WorldModel:
    from tests.helpers.model import tiny_world_model

    return tiny_world_model()


@pytest.fixture(scope="module")
def tiny_ck(tiny_model, tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("ck") / "tiny"
    save_checkpoint(tiny_model, path)
    return path


def _rollout(model, seeds=(3, 4), agents=3, steps=4, perm=None, scenario="forage-v0") -> dict:
    sim = ModelSimulator(scenario, agents, len(seeds), model=model)
    start = None
    if perm is not None:
        from multiworld.world.arena import generate

        start = generate(sim.arena, list(seeds)).permute_agents(perm)
    obs = sim.reset(list(seeds), start=start)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 8, size=(steps, len(seeds), agents))
    if perm is not None:
        actions = actions[..., perm]
    out = {"rgb": [obs.rgb], "poses": [obs.poses], "rewards": []}
    for t in range(steps):
        obs = sim.step(actions[t])
        out["rgb"].append(obs.rgb)
        out["poses"].append(obs.poses)
        out["rewards"].append(obs.rewards)
    return {k: np.stack(v) for k, v in out.items()} | {"tokens": sim.tokens()}


def test_training_batch_and_shapes(tiny_model):
    ss = make_sequences("push-v0", 2, 2, 6, seed=1_000_000)
    batch = SequenceBatcher([ss], 2, 3).sample()
    assert batch["views"].shape == (2, 4, 2, 64, 64, 3) and batch["maps"].shape == (2, 4, 128, 128, 3)
    tiny_model.train()
    loss, logs = tiny_model(batch)
    tiny_model.eval()
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in tiny_model.renderer.parameters())
    assert {"render_psnr", "roll_psnr", "pose_err", "push_acc", "pick_acc", "cell_acc"} <= set(logs)
    tiny_model.zero_grad(set_to_none=True)
    out = _rollout(tiny_model, steps=2)
    assert out["rgb"].shape == (3, 2, 3, 64, 64, 3) and out["rgb"].dtype == np.uint8
    assert out["poses"].shape == (3, 2, 3, 3)
    assert out["tokens"].shape == (2, 16 * 16 + 3, tiny_model.cfg.dim)


def test_one_checkpoint_serves_any_number_of_agents(tiny_model):
    for n in (1, 5, 8):
        assert _rollout(tiny_model, seeds=(9,), agents=n, steps=2)["rgb"].shape == (3, 1, n, 64, 64, 3)


@settings(max_examples=8, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_state_update_and_renderer_are_permutation_equivariant(tiny_model, n, seed):
    """Renaming agents permutes the state-update model's and the renderer's outputs, and leaves
    the scene tokens unchanged (property test over random states, actions and permutations)."""
    g = torch.Generator().manual_seed(seed)
    d = tiny_model.cfg.dim
    scene = torch.randn(2, 16, 16, d, generator=g)
    agents = torch.randn(2, n, d, generator=g)
    agents[..., :2] = torch.rand(2, n, 2, generator=g) * 12 + 2
    agents[..., 2] = (torch.rand(2, n, generator=g) * 2 - 1) * np.pi
    actions = torch.randint(0, 8, (2, n), generator=g)
    scen = torch.tensor([1, 2])
    p = torch.as_tensor(np.random.default_rng(seed).permutation(n))
    with torch.no_grad():
        s1, a1, o1 = tiny_model.dynamics(scene, agents, actions, scen)
        s2, a2, o2 = tiny_model.dynamics(scene, agents[:, p], actions[:, p], scen)
        torch.testing.assert_close(s2, s1, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a2, a1[:, p], rtol=1e-4, atol=1e-5)
        for k in ("push", "pick", "reward"):
            torch.testing.assert_close(o2[k], o1[k][:, p], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(o2["done"], o1["done"], rtol=1e-4, atol=1e-5)
        r1, d1 = tiny_model.renderer(scene, agents)
        r2, d2 = tiny_model.renderer(scene, agents[:, p])
        torch.testing.assert_close(r2, r1[:, p], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(d2, d1[:, p], rtol=1e-4, atol=1e-4)
        views = torch.rand(2, n, 64, 64, 3, generator=g)
        e1 = tiny_model.encode(views, agents[..., :3], 16, torch.rand(2, 128, 128, 3, generator=g))
        e2 = tiny_model.encode(views[:, p], agents[:, p, :3], 16, None)
        e3 = tiny_model.encode(views, agents[..., :3], 16, None)
        torch.testing.assert_close(e2.scene, e3.scene, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(e2.agents, e3.agents[:, p], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(e1.scene, e3.scene)  # the map is used when given


def test_free_rollout_permutes_with_the_agents(tiny_model):
    perm = np.array([2, 0, 1])
    a, b = _rollout(tiny_model, agents=3, steps=3), _rollout(tiny_model, agents=3, steps=3, perm=perm)
    np.testing.assert_allclose(b["poses"], a["poses"][:, :, perm], atol=1e-4)
    assert np.abs(b["rgb"].astype(int) - a["rgb"][:, :, perm].astype(int)).max() <= 1


def test_rollout_state_is_tensors_only(tiny_model):
    """The model backend's rollout state is the latent state: tensors, no symbolic copy."""
    sim = ModelSimulator("push-v0", 2, 1, model=tiny_model)
    sim.reset([5])
    sim.step(np.array([[1, 7]]))
    assert isinstance(sim.latent, LatentState)
    for f in dataclasses.fields(sim.latent):
        assert isinstance(getattr(sim.latent, f.name), torch.Tensor), f.name
    packed = sim.tokens()
    restored = LatentState.unpack(packed, 16)
    assert torch.equal(restored.scene, sim.latent.scene) and torch.equal(restored.agents, sim.latent.agents)


# That the oracle stays out of the model's loop is checked by behaviour, not by reading imports:
# tests/test_oracle_guard.py makes the oracle raise after reset and runs the model backend.


def test_save_load_is_bit_identical(tiny_model, tmp_path):
    digest = save_checkpoint(tiny_model, tmp_path / "ck", {"note": "test"})
    loaded = load_checkpoint(tmp_path / "ck")
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["weights_sha256"] == digest
    a, b = _rollout(tiny_model), _rollout(loaded)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_checkpoint_mismatch_is_a_clear_error(tiny_model, tmp_path):
    ck = tmp_path / "ck"
    save_checkpoint(tiny_model, ck)
    (ck / "model.safetensors").write_bytes((ck / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match=r"does not match config\.json"):
        load_checkpoint(ck)
    save_checkpoint(tiny_model, ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["model"]["renderer"]["hidden"] = 24  # another model: the recorded hash is right, shapes differ
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit the config"):
        load_checkpoint(ck)
    cfg["model"]["renderer"]["bogus"] = 1
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="bogus"):
        load_checkpoint(ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["format_version"] = 1  # the retired hand-built model's checkpoints
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="format version 1 is not supported"):
        load_checkpoint(ck)
    with pytest.raises(CheckpointError, match="no world-model checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    from multiworld.runtime.factory import make_simulator

    with pytest.raises(ValueError, match="no world-model checkpoint"):
        make_simulator(backend="model", scenario="forage-v0", num_agents=2, checkpoint=tmp_path / "nowhere")


def _with_generative_head(tiny_model, ck: pathlib.Path, extra: dict[str, torch.Tensor]) -> None:
    """``tiny_model``'s checkpoint with ``extra`` tensors added to its weights, and the config keys
    of the removed generative head, as checkpoints written before its removal have them (nor had
    they the payout classes read off the data: loading allows every class, as the tiny model does)."""
    from safetensors.torch import save_file

    from multiworld.models.checkpoint import FORMAT, sha256_file

    save_checkpoint(tiny_model, ck)
    assert tiny_model.dynamics.payouts_seen.all()
    tensors = {k: v.contiguous() for k, v in tiny_model.state_dict().items() if k != "dynamics.payouts_seen"} | extra
    save_file(tensors, str(ck / "model.safetensors"), metadata={"format": FORMAT})
    cfg = json.loads((ck / "config.json").read_text())
    cfg["weights_sha256"] = sha256_file(ck / "model.safetensors")
    cfg["model"]["refiner"] = {"channels": 8, "layers": 3, "noise": 0.1, "steps": 4, "train_views": 16}
    cfg["model"]["refiner_views"] = 2
    (ck / "config.json").write_text(json.dumps(cfg))


def test_a_checkpoint_with_the_removed_generative_head_loads_without_it(tiny_model, tmp_path):
    """Checkpoints written before the generative head was removed (the shipped ones) load: its
    ``refiner`` config keys and ``refiner.*`` weights are dropped and the model computes what it did.
    The file's sha256 still names the weights, so worlds its runs stored stay resumable."""
    from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, read_config, weights_sha256
    from multiworld.models.world_model import WorldModel

    ck = tmp_path / "old"
    head = {"refiner.net.0.weight": torch.zeros(8, 10, 3, 3), "refiner.net.0.bias": torch.zeros(8)}
    _with_generative_head(tiny_model, ck, head)
    loaded = load_checkpoint(ck)
    assert not any(k.startswith("refiner") for k in loaded.state_dict())
    a, b = _rollout(tiny_model), _rollout(loaded)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    digest = read_config(ck)["weights_sha256"]
    assert weights_sha256(loaded) == digest
    assert ModelSimulator("forage-v0", 2, model=loaded).checkpoint_sha256 == digest
    with torch.no_grad():  # changed weights are no longer the file's
        next(loaded.parameters()).add_(1.0)
    assert weights_sha256(loaded) not in (digest, weights_sha256(tiny_model))

    assert loaded.dynamics.payouts_seen.all()

    shipped = read_config(DEFAULT_CHECKPOINT)  # trained after the head was removed (see test_model_reference.py)
    assert "refiner" not in shipped["model"]
    model = load_checkpoint(DEFAULT_CHECKPOINT)
    assert isinstance(model, WorldModel) and not hasattr(model, "refiner")
    assert weights_sha256(model) == shipped["weights_sha256"]


def test_a_checkpoint_with_an_unknown_tensor_is_refused(tiny_model, tmp_path):
    """Only the removed head's ``refiner.*`` weights are dropped: any other extra tensor is an error."""
    ck = tmp_path / "extra"
    _with_generative_head(tiny_model, ck, {"decoder.extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"do not fit the config.*decoder\.extra\.weight"):
        load_checkpoint(ck)
    _with_generative_head(tiny_model, ck, {"refinery.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"refinery\.weight"):
        load_checkpoint(ck)


def test_unknown_scenario_and_init_are_clear_errors(tiny_model):
    with pytest.raises(ValueError, match="init must be one of"):
        ModelSimulator("forage-v0", 2, model=tiny_model, init="dreams")
    from multiworld.world.scenarios import SCENARIOS, Scenario

    other = Scenario(
        "maze-v9",
        "not trained",
        SCENARIOS["roam-v0"].arena,
        SCENARIOS["roam-v0"].reward,
        SCENARIOS["roam-v0"].terminated,
    )
    with pytest.raises(ValueError, match="was not trained on scenario 'maze-v9'"):
        ModelSimulator(other, 2, model=tiny_model)


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

    for init in ("map", "views"):
        env = parallel_env("forage-v0", num_agents=2, backend="model", checkpoint=str(run), init=init)
        obs, infos = env.reset(seed=11)
        steps = 0
        while env.agents and steps < 3:  # a barely trained model may end the episode early
            obs, _, _, _, infos = env.step({a: 1 for a in env.agents})
            steps += 1
        assert obs["agent_0"].shape == (64, 64, 3) and infos["agent_0"]["version"] == steps

    result = evaluate_fidelity(load_checkpoint(run), "forage-v0", 2, [500], horizons=(1, 3), accuracy_horizons=(1, 5))
    assert set(result["psnr"]) == {"deterministic"} and set(result["ssim"]) == set(result["psnr"])
    assert 0.0 <= result["accuracy"]["5"] <= 1.0


def test_private_state_batches_show_one_agents_actions_and_the_true_outcome():
    """`train --private-state`: per sequence one owner keeps its actions, the others read NOOP;
    the targets are still the world's true states and events."""
    from multiworld.world.state import Action

    moving = np.full((2000, 3, 4), int(Action.FORWARD))
    masked = private_inputs(moving, np.random.default_rng(1))
    assert ((masked == int(Action.FORWARD)).sum(-1) == 1).all()  # exactly one owner per step
    assert (masked.argmax(-1) == masked[:, :1].argmax(-1)).all()  # and the same owner for the sequence
    assert np.bincount(masked[:, 0].argmax(-1), minlength=4).min() > 400  # every agent owns about a quarter
    ss = make_sequences("forage-v0", 4, 3, 12, seed=1_000_007)
    rows = np.array([0, 13, 26])
    true = SequenceBatcher([ss], 3, 6, seed=0).batch(ss, rows)
    private = SequenceBatcher([ss], 3, 6, seed=0, private_state=True).batch(ss, rows)
    assert ((private["actions"] != int(Action.NOOP)).sum(-1) <= 1).all()
    assert not torch.equal(true["actions"], private["actions"])
    for key in ("poses", "push", "pick", "reward", "views"):
        assert torch.equal(true[key], private[key]), key


def test_train_private_state_records_the_flag(tmp_path):
    from multiworld.cli import main

    data, run = tmp_path / "data.zarr", tmp_path / "run"
    assert main(["data", "--episodes", "1", "--steps", "8", "--agents", "2", "--out", str(data)]) == 0
    args = ["train", "--preset", "tiny", "--private-state", "--data", str(data), "--out", str(run)]
    assert main([*args, "--max-steps", "3", "--no-progress", "--threads", "1"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["private_state"] is True


def test_model_backend_is_registered():
    from multiworld.runtime.factory import available_backends

    assert "model" in available_backends()


def test_shipped_checkpoint_loads():
    from multiworld.models.checkpoint import DEFAULT_CHECKPOINT, PRIVATE_CHECKPOINT

    for path in (DEFAULT_CHECKPOINT, PRIVATE_CHECKPOINT):
        model = load_checkpoint(path)
        assert isinstance(model, WorldModel)
        assert (path / "MODEL_CARD.md").is_file()


def test_model_simulator_contract(tiny_ck):
    """reset from seeds, from a stored state plus tokens (bit-identical continuation), versions,
    and bad actions or tokens changing nothing."""
    sim = ModelSimulator("forage-v0", 3, num_worlds=2, checkpoint=tiny_ck, depth=True)
    obs = sim.reset([1, 2])
    assert obs.rgb.shape == (2, 3, 64, 64, 3) and obs.rgb.dtype == np.uint8 and obs.depth.shape == (2, 3, 64, 64)
    obs = sim.step(np.zeros((2, 3), np.int64))
    assert obs.version.tolist() == [1, 1] and obs.rewards.shape == (2, 3)
    state, tokens = sim.world_state().copy(), sim.tokens()
    with pytest.raises(ValueError):
        sim.step(np.full((2, 3), 8))
    assert sim.world_state().equals(state) and np.array_equal(sim.tokens(), tokens)
    nxt = sim.step(np.ones((2, 3), np.int64))

    other = ModelSimulator("forage-v0", 3, num_worlds=2, checkpoint=tiny_ck, depth=True)
    other.reset([0, 0], start=state, tokens=tokens)
    again = other.step(np.ones((2, 3), np.int64))
    assert np.array_equal(again.rgb, nxt.rgb) and np.array_equal(again.poses, nxt.poses)
    assert np.array_equal(other.tokens(), sim.tokens()) and again.version.tolist() == [2, 2]
    with pytest.raises(ValueError, match="tokens must have shape"):
        other.reset([0, 0], start=state, tokens=tokens[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        other.reset([0, 0], start=state, tokens=np.full_like(tokens, np.nan))


def test_bf16_autocast_runs_and_keeps_a_float32_state(tiny_model):
    """bf16 (the default on CUDA) through autocast; tested here on the CPU."""
    sim = ModelSimulator("forage-v0", 2, 1, model=tiny_model, precision="bf16")
    ref = ModelSimulator("forage-v0", 2, 1, model=tiny_model)
    a, b = sim.reset([3]), ref.reset([3])
    for _ in range(2):
        a, b = sim.step(np.array([[1, 4]])), ref.step(np.array([[1, 4]]))
    assert sim.latent.scene.dtype == torch.float32 and sim.tokens().dtype == np.float32
    assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() < 8
    with pytest.raises(ValueError, match="precision"):
        ModelSimulator("forage-v0", 2, 1, model=tiny_model, precision="fp8")
