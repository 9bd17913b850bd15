"""The third edition's training batches: transition batches (multi-step, only step 0 rendered) and
the one-step phase (`--preset tiny-dynamics`), which trains the state-update model alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multiworld.models.onestep import OneStepConfig, OneStepSampler
from multiworld.models.quantize import BOUND, STEP
from multiworld.models.transitions import TransitionConfig, TransitionSampler
from multiworld.models.world_model import WorldModel

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tiny_model():
    from multiworld.models.presets import get_preset

    torch.manual_seed(0)
    return WorldModel(get_preset("tiny").model)


def test_transition_batches_train_the_fit_motion(tiny_model):
    tb = TransitionSampler(TransitionConfig(batch_size=3, horizon=4, warmup=6, agents=(2, 3)), seed=1).sample()
    b = tb.batch
    bsz, t, n = b.actions.shape
    assert b.views.shape[:3] == (bsz, 1, n) and b.poses.shape == (bsz, t + 1, n, 3)
    assert b.move_outcome.shape == (bsz, t, n) and b.free_move.shape == (bsz, t, n, 2)
    loss, logs = tiny_model(tb)
    loss.backward()
    assert torch.isfinite(loss) and "loss_tr_motion" in logs
    assert tb.fits.shape == (bsz, t, n, 3)
    assert tiny_model.dynamics.fitter.fit_judge.net[0].weight.grad.abs().sum() > 0
    tiny_model.zero_grad()


def test_one_step_batches_reuse_one_encoding_and_leave_the_rest_frozen(tiny_model):
    cfg = OneStepConfig(chunk=3, actions=4, chunks=2, refresh=2, warmup=4, agents=(2,))
    sampler = OneStepSampler(cfg, seed=0)
    batches = [sampler.sample() for _ in range(4)]
    assert len(sampler.pool) == cfg.chunks
    chunk = batches[0].chunk
    first = chunk.encoded(tiny_model)
    assert chunk.encoded(tiny_model) is first  # encoded once, then cached
    loss, logs = tiny_model(batches[0])
    loss.backward()
    assert {"os_move_ok", "os_outcome_acc", "loss_os_motion"} <= set(logs)
    assert all(p.grad is None for p in tiny_model.encoder.parameters())  # the pool's encodings carry no gradient
    assert tiny_model.dynamics.motion[0].weight.grad is not None
    tiny_model.zero_grad()


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory):
    """A one-step ``tiny`` training on two recorded push-v0 episodes: (data, its checkpoint)."""
    from multiworld.models.rollouts import record_rollouts
    from multiworld.models.training import TrainSpec, run_training

    tmp = tmp_path_factory.mktemp("warm")
    data = tmp / "d.zarr"
    record_rollouts(data, "push-v0", 2, episodes=2, steps=8, seed=0, frames=False, progress=False)
    spec = TrainSpec(data=[str(data)], out=str(tmp / "warm"), preset="tiny", max_steps=1, threads=1, progress=False)
    run_training(spec)
    return data, tmp / "warm" / "last"


def train_phase(warm_run, out, preset: str):
    """(weights before, weights after) three steps of ``preset`` from the warm run."""
    from multiworld.models.checkpoint import load_checkpoint
    from multiworld.models.training import TrainSpec, run_training

    data, warm = warm_run
    spec = TrainSpec(
        data=[str(data)], out=str(out), preset=preset, max_steps=3, threads=1, progress=False, init_from=str(warm)
    )
    run_training(spec)
    return load_checkpoint(warm), load_checkpoint(out / "last")


def test_the_dynamics_preset_trains_only_the_state_update(tmp_path, warm_run):
    before, after = (m.state_dict() for m in train_phase(warm_run, tmp_path / "dyn", "tiny-dynamics"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("dynamics.") for k in changed), sorted(changed)[:5]
    assert np.isfinite([float(v.float().sum()) for v in after.values()]).all()


def test_the_judgements_preset_leaves_every_scene_pose_and_view_as_it_was(tmp_path, warm_run):
    """The last phase trains what fires and what it pays; the scene update, the motion and the
    renderer read none of it, so the world it simulates moves exactly as before."""
    from multiworld.models.presets import JUDGEMENTS

    before, after = train_phase(warm_run, tmp_path / "judge", "tiny-judgements")
    sb, sa = before.state_dict(), after.state_dict()
    changed = {k for k in sb if not torch.equal(sb[k], sa[k])}
    assert changed and all(k.startswith(JUDGEMENTS) for k in changed), sorted(changed)[:5]
    assert any(k.startswith("dynamics.push_judge.") for k in changed)
    torch.manual_seed(0)
    d, s = before.cfg.dynamics, 16  # the arena's 16x16 cells
    scene = ((torch.rand(3, s, s, d.dim) * 2 - 1) / STEP).round() * STEP
    agents = torch.cat([torch.rand(3, 2, 2) * s, torch.rand(3, 2, 1) * 6 - 3, torch.zeros(3, 2, d.dim - 3)], -1)
    actions = torch.randint(0, d.actions, (3, 2))
    scenario = torch.tensor([0, 1, 2])
    with torch.no_grad():
        (s0, a0, o0), (s1, a1, o1) = (m.dynamics(scene, agents, actions, scenario) for m in (before, after))
    assert torch.equal(s0, s1) and torch.equal(a0, a1) and torch.equal(o0["free_move"], o1["free_move"])
    assert not torch.equal(o0["push"], o1["push"])  # while the judgements did learn


def test_an_evolved_chunk_is_the_models_own_scene_at_the_oracles_poses(tiny_model):
    """With ``evolve`` the pool's states are encoded W steps back and carried on by the model's own
    state update, the poses replaced by the oracle's after every step."""
    cfg = OneStepConfig(chunk=2, actions=2, chunks=1, refresh=1, warmup=4, agents=(2,), evolve=5)
    sampler = OneStepSampler(cfg, seed=3)
    chunk = next(c for c in (sampler._make_chunk() for _ in range(20)) if c.evolve is not None)
    scene, agents = chunk.encoded(tiny_model)
    assert torch.equal(agents[..., :3], chunk.poses)  # the oracle's poses after the walk
    assert len(chunk.evolve[1]) >= 1 and not torch.equal(chunk.evolve[0], chunk.poses)
    assert scene.shape[0] == 2 and on_lattice(scene)  # the state update's scene stays on the lattice


def on_lattice(x: torch.Tensor) -> bool:
    return bool(((x / STEP).round() * STEP - x).abs().max() < 1e-5 and x.abs().max() <= BOUND + 1e-6)


def test_trains_narrows_a_phase_to_the_named_parts_and_names_an_unknown_one(tmp_path, warm_run):
    from multiworld.models.checkpoint import load_checkpoint
    from multiworld.models.training import TrainSpec, run_training

    data, warm = warm_run
    spec = dict(data=[str(data)], preset="tiny-judgements", max_steps=3, threads=1, progress=False, init_from=str(warm))
    run_training(TrainSpec(out=str(tmp_path / "worth"), trains=("dynamics.worth_judge.",), **spec))
    before, after = (load_checkpoint(p).state_dict() for p in (warm, tmp_path / "worth" / "last"))
    changed = {k for k in after if k not in before or not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("dynamics.worth_judge.") for k in changed), sorted(changed)[:5]
    with pytest.raises(ValueError, match=r"--trains dynamics\.nothing: no parameter"):
        run_training(TrainSpec(out=str(tmp_path / "bad"), trains=("dynamics.nothing",), **spec))
