"""The consistency benchmark's second edition: the stacked-frames baseline, the trivial bounds,
external simulators through ``--simulator``, and bootstrap intervals."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multiworld.bench import report, stats, variants
from multiworld.bench.events import EventTask, run_event_task
from multiworld.bench.variants import VARIANTS, CheckedSimulator, SimSpec, Variant, load_factory, registered
from multiworld.cli import main
from multiworld.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from multiworld.models.stacked import StackedFramesConfig, StackedFramesModel
from multiworld.seeds import probe_seeds
from multiworld.sim.bounds import MeanFrameSimulator, PersistenceSimulator
from multiworld.sim.stacked import StackedFramesSimulator
from multiworld.world.arena import generate
from multiworld.world.render import Raycaster
from multiworld.world.scenarios import get_scenario

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "external_simulator.py"
SEEDS = probe_seeds("consistency", 2)
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def tiny_stacked(seed: int = 0) -> StackedFramesModel:
    """The tiny preset's stacked-frames model with random weights (the zero-initialised output,
    turn and move drawn too, so every output depends on the inputs)."""
    torch.manual_seed(seed)
    model = StackedFramesModel(StackedFramesConfig(channels=(8, 16, 16), cond=16))
    with torch.no_grad():
        for p in model.parameters():
            if float(p.abs().sum()) == 0:
                p.normal_(0, 0.1)
    return model.eval()


def _inputs(b: int, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ctx = torch.rand(b, n, 4, 3, 64, 64, generator=g)
    poses = torch.rand(b, n, 3, generator=g) * torch.tensor([10.0, 10.0, 6.0]) + torch.tensor([2.0, 2.0, -3.0])
    actions = torch.randint(0, 8, (b, n), generator=g)
    return ctx, poses, actions, torch.zeros(b, dtype=torch.long)


# -- the stacked-frames model ----------------------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 5), seed=st.integers(0, 1000))
def test_stacked_model_is_permutation_equivariant_over_agents(n, seed):
    model = tiny_stacked()
    ctx, poses, actions, scen = _inputs(2, n, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        f, p, out = model.step(ctx, poses, actions, scen)
        fp, pp, outp = model.step(ctx[:, perm], poses[:, perm], actions[:, perm], scen)
    torch.testing.assert_close(fp, f[:, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pp, p[:, perm], atol=1e-5, rtol=1e-4)
    for k in ("push", "pick", "reward"):
        torch.testing.assert_close(outp[k], out[k][:, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(outp["done"], out["done"], atol=1e-5, rtol=1e-4)


def test_stacked_model_reads_the_other_agents_frames_and_actions():
    """No state: what agent 0 predicts depends on agent 1's frames and action (the messages)."""
    model = tiny_stacked()
    ctx, poses, actions, scen = _inputs(1, 2)
    with torch.no_grad():
        base = model.step(ctx, poses, actions, scen)[0][:, 0]
        other = ctx.clone()
        other[:, 1] = torch.rand_like(other[:, 1])
        assert not torch.allclose(model.step(other, poses, actions, scen)[0][:, 0], base)
        acts = actions.clone()
        acts[:, 1] = (acts[:, 1] + 1) % 8
        assert not torch.allclose(model.step(ctx, poses, acts, scen)[0][:, 0], base)


def test_stacked_training_step_learns_and_checkpoints_round_trip(tmp_path):
    from multiworld.models.data import SequenceBatcher, make_sequences

    model = tiny_stacked().train()
    batch = SequenceBatcher([make_sequences("push-v0", 2, 2, 6, seed=5)], 2, 3).sample()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(6):
        loss, logs = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    assert float(loss) < first and {"roll_psnr", "first_psnr", "pose_err"} <= set(logs)
    save_checkpoint(model, tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck")
    assert isinstance(loaded, StackedFramesModel)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_stacked_simulator_steps_every_agent_from_frames_only(tmp_path):
    save_checkpoint(tiny_stacked(), tmp_path / "ck")
    sim = StackedFramesSimulator("push-v0", 3, 2, checkpoint=tmp_path / "ck")
    first = sim.reset(SEEDS)
    truth = generate(get_scenario("push-v0").arena_config(num_agents=3), SEEDS)
    assert np.array_equal(first.rgb, Raycaster().render(truth).rgb.numpy())  # the observed reset views
    obs = sim.step(np.ones((2, 3), np.int64))
    assert obs.rgb.shape == (2, 3, 64, 64, 3) and obs.rgb.dtype == np.uint8 and obs.version.tolist() == [1, 1]
    assert not np.array_equal(obs.rgb, first.rgb) and not np.array_equal(obs.poses, first.poses)
    assert not sim.has_state and np.array_equal(sim.world_state().poses, obs.poses)
    with pytest.raises(ValueError, match="action"):
        sim.step(np.full((2, 3), 9))
    assert sim.step(np.zeros((2, 3), np.int64)).version.tolist() == [2, 2]  # the bad step changed nothing


def test_checkpoint_kinds_are_not_interchangeable(tmp_path):
    from multiworld.sim.model import ModelSimulator
    from tests.helpers.model import save_tiny_checkpoint

    save_checkpoint(tiny_stacked(), tmp_path / "stacked")
    with pytest.raises(CheckpointError, match="not a latent world model"):
        ModelSimulator("roam-v0", 2, checkpoint=tmp_path / "stacked")
    save_tiny_checkpoint(tmp_path / "world")
    with pytest.raises(CheckpointError, match="not a stacked-frames model"):
        StackedFramesSimulator("roam-v0", 2, checkpoint=tmp_path / "world")
    config = json.loads((tmp_path / "stacked" / "config.json").read_text())
    config["model"]["kind"] = "stacked-framez"
    (tmp_path / "stacked" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not describe a valid"):
        load_checkpoint(tmp_path / "stacked")


def test_train_stacked_frames_flag_records_the_mean_frame(tmp_path):
    data, run = tmp_path / "data.zarr", tmp_path / "run"
    assert (
        main(["data", "--episodes", "2", "--steps", "12", "--agents", "2", "--scenario", "push-v0", "--out", str(data)])
        == 0
    )
    args = ["train", "--preset", "tiny", "--stacked-frames", "--data", str(data), "--out", str(run)]
    assert main([*args, "--max-steps", "4", "--no-progress"]) == 0
    assert main([*args, "--max-steps", "6", "--resume", "--no-progress"]) == 0
    model = load_checkpoint(run)
    assert isinstance(model, StackedFramesModel) and json.loads((run / "run.json").read_text())["stacked_frames"]
    assert not torch.allclose(model.mean_frame, torch.full_like(model.mean_frame, 0.5))  # computed from the data
    assert main([*args, "--private-state", "--max-steps", "1", "--no-progress"]) == 2  # two baselines at once
    assert main([*args, "--lr", "-1", "--resume", "--no-progress"]) == 2


# -- the bounds ------------------------------------------------------------------------------------


def test_persistence_and_mean_never_change_and_ignore_actions(tmp_path):
    save_checkpoint(tiny_stacked(), tmp_path / "ck")
    per, mean = PersistenceSimulator("roam-v0", 2, 2), MeanFrameSimulator("roam-v0", 2, 2, tmp_path / "ck")
    p0, m0 = per.reset(SEEDS), mean.reset(SEEDS)
    for _ in range(3):
        p1, m1 = per.step(np.ones((2, 2), np.int64)), mean.step(np.full((2, 2), 7))
    assert np.array_equal(p1.rgb, p0.rgb) and np.array_equal(p1.poses, p0.poses) and p1.events == [[], []]
    assert np.array_equal(m1.rgb, m0.rgb) and np.all(m1.rgb == m1.rgb[0, 0]) and p1.version.tolist() == [3, 3]
    assert not per.has_state and not mean.has_state


def test_bounds_fail_every_event_probe():
    res = run_event_task(EventTask(SimSpec(backend="oracle"), 2, tuple(probe_seeds("events", 3)),
                                   variants=("shared", "persistence", "oracle")))  # fmt: skip
    assert res["probes"] and all(p["shared"]["correct"] and not p["persistence"]["correct"] for p in res["probes"])


# -- external simulators ---------------------------------------------------------------------------


def test_load_factory_names_what_is_wrong():
    assert callable(load_factory(f"{EXAMPLE}:make"))
    assert load_factory("multiworld.sim.bounds:PersistenceSimulator") is PersistenceSimulator
    for bad, match in (
        ("nocolon", "module:factory"),
        ("no_such_module_xyz:make", "cannot import"),
        ("multiworld.sim.bounds:nothing", "no callable"),
        ("missing_file.py:make", "no file"),
    ):
        with pytest.raises(ValueError, match=match):
            load_factory(bad)
    with pytest.raises(ValueError, match="unique and not one of"):
        SimSpec(external=(("shared", "x:y"),))


class _WrongShapes:
    """An external simulator that breaks the contract: views of the wrong dtype."""

    def __init__(self, scenario, num_agents, num_worlds):
        self.num_agents, self.num_worlds = num_agents, num_worlds
        self.inner = PersistenceSimulator(scenario, num_agents, num_worlds)

    def reset(self, seeds, start=None):
        obs = self.inner.reset(seeds, start)
        obs.rgb = obs.rgb.astype(np.float32)
        return obs

    def step(self, actions):
        return self.inner.step(actions)

    def world_state(self):
        return self.inner.world_state()


def test_an_external_simulator_that_breaks_the_contract_is_named():
    spec = SimSpec(backend="oracle", external=(("broken", f"{__name__}:_WrongShapes"),))
    sim = spec.build("broken", 2, 1)
    with pytest.raises(ValueError, match="'broken': rgb must be uint8"):
        sim.reset(SEEDS[:1])


def test_cli_benchmarks_the_example_external_simulator(tmp_path):
    """The documented command: one flag adds an external simulator to every table."""
    out = tmp_path / "bench"
    args = ["bench", "events", "--quick", "--backend", "oracle", "--out", str(out), "--no-progress"]
    args += ["--simulator", f"turnshift={EXAMPLE}:make", "--variants", "shared,persistence,turnshift"]
    assert main(args) == 0
    data = json.loads((out / "events.json").read_text())
    assert set(data["config"]["variants"]) == {"shared", "persistence", "turnshift", "oracle"}
    assert data["config"]["weights"]["turnshift"] == {"weights": "external", "factory": f"{EXAMPLE}:make"}
    assert data["turnshift"]["event_propagation"] == 0.0 and data["shared"]["event_propagation"] == 1.0
    ci = data["ci"]["event_propagation"]
    assert ci["worlds"] >= 10 and ci["diff"]["turnshift"]["call"] == "better"
    assert "turnshift" in (out / "events.md").read_text()
    with pytest.raises(SystemExit):  # not [NAME=]MODULE:FACTORY
        main([*args[:-4], "--simulator", "nope"])


# -- bootstrap intervals ---------------------------------------------------------------------------


def test_bootstrap_intervals_cover_the_truth_and_separate_only_real_differences():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.2, 40), rng.normal(1.0, 0.2, 40)
    c = b + 0.5  # paired: the same worlds, clearly higher
    out = stats.compare({"shared": stats.mean_of(c), "x": stats.mean_of(b), "y": stats.mean_of(a)}, 40)
    lo, hi = out["ci"]["x"]
    assert lo < 1.0 < hi and hi - lo < 0.3 and out["worlds"] == 40
    assert out["diff"]["x"]["call"] == "better" and out["diff"]["x"]["ci"][0] > 0.4
    same = stats.compare({"shared": stats.mean_of(a), "x": stats.mean_of(a + rng.normal(0, 0.01, 40))}, 40)
    assert same["diff"]["x"]["call"] == "not separated"
    lower = stats.compare({"shared": stats.mean_of(b), "x": stats.mean_of(c)}, 40, higher_is_better=False)
    assert lower["diff"]["x"]["call"] == "better"  # lower is better here (a consistency ratio)
    ratio = stats.ratio_of_sums(np.array([2.0, 4.0]), np.array([1.0, 2.0]))
    assert ratio(np.array([0, 1])) == 2.0 and stats.interval(ratio, stats.resamples(2)) == [2.0, 2.0]


def test_default_variants_are_every_design_and_bound():
    assert VARIANTS == ("shared", "private", "stacked", "persistence", "mean", "oracle")
    spec = SimSpec(external=(("mine", "m:f"),))
    assert spec.variants == (*VARIANTS, "mine")
    assert [v.kind for v in registered().values()] == ["learned"] * 3 + ["bound"] * 2 + ["reference"]


@pytest.mark.parametrize("backend", ["oracle", "model"])
@pytest.mark.parametrize("name", list(registered()))
def test_every_registered_variant_builds_and_keeps_the_simulator_contract(name, backend):
    """Every registered variant (shipped weights), through the check every external simulator gets."""
    sim = CheckedSimulator(name, SimSpec(backend=backend).build(name, 2, 2), 2, 2)
    try:
        first = sim.reset(SEEDS)
        for a in np.random.default_rng(0).integers(0, 8, (2, 2, 2)):
            obs = sim.step(a)
        assert obs.version.tolist() == [2, 2] and first.rgb.shape[-3:] == (64, 64, 3)
        assert sim.world_state().poses.shape == (2, 2, 3) and sim.agent_names == ["agent_0", "agent_1"]
    finally:
        sim.close()


def test_a_registered_variant_reaches_every_table_plot_and_the_cli_help(monkeypatch, capsys):
    """Adding a variant is one registration: the spec, the report's legend and the CLI help list it."""
    monkeypatch.setattr(variants, "_REGISTRY", dict(variants._REGISTRY))
    variants.register(
        Variant("still", "still frame (bound)", "bound", lambda s, n, b: PersistenceSimulator(s.scenario, n, b))
    )
    spec = SimSpec(backend="oracle")
    assert spec.variants == ("shared", "private", "stacked", "persistence", "mean", "still", "oracle")
    assert spec.describe()["still"] == {"weights": "still"}
    assert report.legend("still") == ("still frame (bound)", {"linestyle": ":", "alpha": 0.8})
    assert report.legend("mine") == ("mine", {})  # an external simulator
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "still frame (bound)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already registered"):
        variants.register(registered()["still"])


def test_private_model_renders_only_each_copys_owner_view_and_the_same_pixels():
    """The private wrapper asks the model for the owner's view of each copy only; those views are
    the ones a full render gives (within one intensity level: batch sizes round differently)."""
    from multiworld.sim.model import ModelSimulator
    from multiworld.sim.private import PrivateStateSimulator
    from tests.helpers.model import tiny_world_model

    model = tiny_world_model()
    private = PrivateStateSimulator(lambda w: ModelSimulator("roam-v0", 3, w, model=model), 3, 2)
    full = PrivateStateSimulator(lambda w: ModelSimulator("roam-v0", 3, w, model=model), 3, 2)
    full.inner.view_owner = None  # render every view of every copy, keep the owner's
    a, b = private.reset(SEEDS), full.reset(SEEDS)
    assert private.inner.view_owner.tolist() == [0, 1, 2] * 2
    for _ in range(2):
        acts = np.random.default_rng(0).integers(0, 8, (2, 3))
        a, b = private.step(acts), full.step(acts)
    assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="agent indices"):
        private.inner.render_only(np.array([0, 5]))


def test_contrast_is_chance_for_the_mean_frame_and_high_for_the_oracle(tmp_path):
    """The blur-robust consistency measure: a picture that depends only on the pixel position
    agrees at matched points no better than at shuffled points of the same image rows."""
    from multiworld.bench.consistency import ConsistencyTask, run_consistency_task, summarize_consistency
    from multiworld.bench.correspondence import Matches

    model = tiny_stacked()
    views = Raycaster().render(generate(get_scenario("roam-v0").arena_config(num_agents=4), [7, 8])).rgb
    model.mean_frame.copy_(views.float().mean((0, 1)) / 255)  # a real mean view: sky, walls, floor bands
    save_checkpoint(model, tmp_path / "ck")
    spec = SimSpec(backend="oracle", stacked_checkpoint=str(tmp_path / "ck"))
    task = ConsistencyTask(spec, 4, tuple(SEEDS), steps=3, variants=("shared", "mean", "persistence", "oracle"))
    s = summarize_consistency([run_consistency_task(task)], task.variants)
    assert s["oracle"]["contrast"] == s["shared"]["contrast"] > 0.5
    assert abs(s["mean"]["contrast"]) < 0.1 < s["oracle"]["contrast"] - s["persistence"]["contrast"]
    rng = np.random.default_rng(0)
    m = Matches(*(rng.integers(0, k, 500) for k in (2, 3, 8, 8, 3, 8, 8)))
    sh = m.shuffled(rng)
    assert (sh.world == m.world).all() and (sh.agent_o == m.agent_o).all() and (sh.row_o == m.row_o).all()
    assert sorted(zip(sh.agent_o, sh.row_o, sh.col_o)) == sorted(zip(m.agent_o, m.row_o, m.col_o))  # a permutation
