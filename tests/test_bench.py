"""The benchmark suite: metrics on hand-made inputs, the private-state baseline, and the
oracle's known numbers (consistency ratio exactly 1, event propagation 100%)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from multiworld.bench.consistency import ConsistencyTask, run_consistency_task, summarize_consistency
from multiworld.bench.correspondence import Matches, disagreement, find_matches, pair_differences
from multiworld.bench.events import EventTask, make_probe, run_event_task, summarize_events
from multiworld.bench.metrics import PSNR_CAP, mean_abs_diff, psnr, ssim
from multiworld.bench.revisit import RevisitTask, run_revisit_task
from multiworld.bench.state_accuracy import state_accuracy
from multiworld.bench.variants import SimSpec
from multiworld.cli import main
from multiworld.seeds import PROBE_SEED_BASE, TRAIN_SEED_LIMIT, check_held_out, probe_seeds
from multiworld.sim.oracle import OracleSimulator
from multiworld.sim.private import PrivateStateSimulator
from multiworld.world.arena import ArenaConfig, generate
from multiworld.world.render import Raycaster
from multiworld.world.scenarios import get_scenario
from multiworld.world.state import NUM_ACTIONS, Action
from tests.helpers.world import open_room

ORACLE = SimSpec(backend="oracle")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# -- metrics on hand-made inputs -------------------------------------------------------------------


def test_psnr_of_known_errors():
    a = np.full((2, 8, 8, 3), 100, np.uint8)
    b = a.copy()
    b[0] += 10  # MSE 100 -> 10 log10(255^2 / 100)
    b[1] = 0  # MSE 100^2
    np.testing.assert_allclose(psnr(a, b), [10 * np.log10(255**2 / 100), 10 * np.log10(255**2 / 100**2)])
    assert psnr(a, a).tolist() == [PSNR_CAP, PSNR_CAP]
    assert psnr(np.zeros((4, 4, 3)), np.full((4, 4, 3), 255.0)) == pytest.approx(0.0)
    np.testing.assert_allclose(mean_abs_diff(a, b), [10.0, 100.0])


def test_ssim_is_one_for_identical_images_and_drops_with_noise():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    np.testing.assert_allclose(ssim(a, a), 1.0, atol=1e-5)
    noisy = np.clip(a + rng.normal(0, 40, a.shape), 0, 255)
    flat = np.full_like(a, 128)
    s_noisy, s_flat = ssim(a, noisy), ssim(a, flat)
    assert np.all(s_noisy < 0.95) and np.all(s_flat < s_noisy)


def test_disagreement_of_hand_made_matches():
    rgb = np.zeros((1, 2, 4, 4, 3), np.uint8)
    rgb[0, 0, 1, 2] = (30, 60, 90)
    rgb[0, 1, 3, 0] = (0, 60, 0)  # differs by (30, 0, 90): mean 40
    rgb[0, 0, 0, 0] = rgb[0, 1, 2, 2] = (7, 7, 7)  # agrees: 0
    one = lambda *v: np.array(v, np.int64)  # noqa: E731
    m = Matches(one(0, 0), one(0, 0), one(1, 0), one(2, 0), one(1, 1), one(3, 2), one(0, 2))
    np.testing.assert_allclose(pair_differences(rgb, m), [40.0, 0.0])
    assert disagreement(rgb, m) == (40.0, 2)


def test_oracle_correspondences_are_many_and_land_on_similar_colours():
    state = generate(ArenaConfig(num_agents=4), probe_seeds("consistency", 2))
    renderer = Raycaster()
    views = renderer.render(state, buffers=True)
    m = find_matches(state, views, renderer.cfg)
    assert len(m) > 1000 and not np.any(m.agent_a == m.agent_o)
    total, count = disagreement(views.rgb.numpy(), m)
    # Two pixels of one world point differ only by texture sampling: far below random colours (~85).
    assert 0 < total / count < 25


def test_state_accuracy_of_a_known_perturbation():
    true = generate(ArenaConfig(num_agents=4, num_boxes=2, num_items=4), [PROBE_SEED_BASE])
    assert set(state_accuracy(true, true).values()) == {1.0}
    pred = true.copy()
    pred.poses[0, 0, :2] += 1.0  # one agent of four in the wrong cell
    pred.items_alive[0, 0] = False  # one item of four missing
    acc = state_accuracy(pred, true)
    assert acc["agent_cells"] == 0.75 and acc["item_recall"] == 0.75
    assert acc["items"] == 1 - 1 / true.size**2 and acc["walls"] == 1.0 and acc["boxes"] == 1.0


def test_probe_seeds_are_held_out_from_training():
    seeds = probe_seeds("events", 5) + probe_seeds("consistency", 5)
    assert min(seeds) >= PROBE_SEED_BASE > TRAIN_SEED_LIMIT and len(set(seeds)) == 10
    check_held_out(seeds)
    with pytest.raises(ValueError, match="held out"):
        check_held_out([3])
    with pytest.raises(ValueError, match="unknown benchmark"):
        probe_seeds("nope", 1)
    with pytest.raises(ValueError, match="held out"):  # no benchmark task runs on a training world
        ConsistencyTask(ORACLE, 2, (5,), steps=3)
    with pytest.raises(ValueError, match="held out"):
        EventTask(ORACLE, 2, (5,))


# -- the private-state baseline ---------------------------------------------------------------------


def _oracle(n: int, worlds: int) -> OracleSimulator:
    return OracleSimulator(get_scenario("roam-v0"), n, num_worlds=worlds)


def test_private_state_with_one_agent_is_the_shared_simulator():
    shared = _oracle(1, 2)
    private = PrivateStateSimulator(lambda w: _oracle(1, w), num_agents=1, num_worlds=2)
    seeds = probe_seeds("drift", 2)
    a, b = shared.reset(seeds), private.reset(seeds)
    rng = np.random.default_rng(0)
    for _ in range(15):
        act = rng.integers(0, NUM_ACTIONS, (2, 1))
        a, b = shared.step(act), private.step(act)
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.poses, b.poses)
    assert shared.world_state().equals(private.world_state())


def test_private_agent_never_sees_what_another_agent_does():
    # Agent 0 pushes a box east; agent 1 watches it from the south-east.
    state = open_room(size=10, poses=[(2.5, 4.5, 0.0), (5.5, 7.5, -np.pi / 2)], boxes=[(4, 3)])
    private = PrivateStateSimulator(lambda w: _oracle(2, w), num_agents=2, num_worlds=1)
    shared = _oracle(2, 1)
    first = private.reset([0], start=state)
    shared.reset([0], start=state)
    act = np.array([[Action.INTERACT, Action.NOOP]])
    p, s = private.step(act), shared.step(act)
    assert [e["type"] for e in p.events[0]] == ["push"] and p.events[0][0]["agent"] == "agent_0"
    assert np.array_equal(p.rgb[0, 0], s.rgb[0, 0])  # the actor's own copy has the push
    assert np.array_equal(p.rgb[0, 1], first.rgb[0, 1])  # the observer's copy does not
    assert not np.array_equal(s.rgb[0, 1], first.rgb[0, 1])
    copies = private.copies()
    assert copies.num_worlds == 2 and copies.boxes[0, 0, 1] == 4 and copies.boxes[1, 0, 1] == 3
    with pytest.raises(ValueError, match="shape"):
        private.step(np.zeros((1, 3), np.int64))


# -- the oracle's known numbers ---------------------------------------------------------------------


def test_oracle_consistency_ratio_is_exactly_one_and_private_is_worse():
    task = ConsistencyTask(ORACLE, 4, tuple(probe_seeds("consistency", 2)), steps=12)
    s = summarize_consistency([run_consistency_task(task)])
    assert s["matched_pairs"] > 1000
    assert s["oracle"]["consistency_ratio"] == 1.0 and s["shared"]["consistency_ratio"] == 1.0
    assert s["private"]["consistency_ratio"] > 1.05
    assert s["shared"]["consistency_ratio_own_state"] == 1.0 and s["private"]["consistency_ratio_own_state"] > 1.0


def test_event_propagation_is_total_for_the_shared_oracle_and_absent_in_private_state():
    res = run_event_task(EventTask(ORACLE, 2, tuple(probe_seeds("events", 5))))
    s = summarize_events([res])
    assert s["num_probes"] >= 8 and {r["kind"] for r in res["probes"]} == {"push", "pickup"}
    assert s["shared"]["event_propagation"] == 1.0 and s["oracle"]["event_propagation"] == 1.0
    assert s["private"]["event_propagation"] < 0.5 and s["private"]["event_propagation_simple"] < 0.5
    assert s["shared"]["event_propagation_simple"] == 1.0
    probe = res["probes"][0]
    assert probe["private"]["mse_effect"] == probe["private"]["mse_true_effect"] > 0  # no effect at all


def test_event_probe_makes_a_visible_event():
    renderer = Raycaster()
    probe = make_probe(probe_seeds("events", 1)[0], "push", 3, renderer=renderer)
    assert probe is not None and probe.actor != probe.observer
    sim = _oracle(3, 1)
    before = sim.reset([probe.seed], start=probe.state)
    after = sim.step(probe.actions())
    assert [e["type"] for e in after.events[0]] == ["push"]
    changed = np.any(after.rgb[0, probe.observer] != before.rgb[0, probe.observer], axis=-1)
    assert changed.sum() >= 40


def test_oracle_revisit_views_agree_exactly():
    res = run_revisit_task(RevisitTask(ORACLE, 2, tuple(probe_seeds("revisit", 3)), "turn", 12, ("shared", "oracle")))
    assert res["valid"] == 3
    assert res["oracle"]["revisit_psnr"] == 3 * PSNR_CAP and res["shared"]["return_psnr"] == 3 * PSNR_CAP


# -- the command line -------------------------------------------------------------------------------


def test_cli_consistency_quick_writes_the_documented_json(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "consistency", "--quick", "--backend", "oracle", "--out", str(out), "--no-progress"]) == 0
    data = json.loads((out / "consistency.json").read_text())
    for v in ("shared", "private", "oracle"):
        assert {"consistency_ratio", "event_propagation"} <= set(data[v])
    assert data["shared"]["consistency_ratio"] == 1.0 and data["shared"]["event_propagation"] == 1.0
    assert data["private"]["event_propagation"] < 0.5 and data["private"]["consistency_ratio"] > 1.0
    assert data["config"]["backend"] == "oracle" and data["commit"] and data["machine"]["cpus"]
    assert (out / "consistency.md").exists() and (out / "consistency_vs_agents.png").stat().st_size > 1000


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "nonsense", "--out", str(tmp_path)])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "events", "--backend", "nope"])
    assert main(["bench", "events", "--backend", "oracle", "--checkpoint", "x", "--out", str(tmp_path)]) == 2
    assert "model backend only" in capsys.readouterr().err
    assert main(["bench", "events", "--private-checkpoint", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "--private-checkpoint" in capsys.readouterr().err


def test_private_baseline_runs_the_checkpoint_trained_with_private_state():
    from multiworld.models.checkpoint import PRIVATE_CHECKPOINT, load_checkpoint

    weights = SimSpec().describe()
    assert weights["private"]["weights"] == "shipped:private" and weights["private"]["trained_private_state"]
    assert weights["shared"]["weights"] == "shipped:default" and not weights["shared"]["trained_private_state"]
    assert SimSpec(checkpoint="mine").weights("private") == "mine"  # a custom model runs privately itself
    assert SimSpec(checkpoint="mine", private_checkpoint="theirs").weights("private") == "theirs"
    sim = SimSpec().build("private", 2, 1)
    expected = load_checkpoint(PRIVATE_CHECKPOINT).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in sim.inner.model.state_dict().items())
    sim.close()


def test_every_benchmark_writes_json_markdown_and_plots(tmp_path):
    from multiworld.bench import consistency, drift, events, fidelity, revisit, throughput
    from multiworld.bench.runner import Runner, Settings
    from multiworld.bench.suite import BENCHMARKS, run_all

    tiny = {
        "consistency": dataclasses.replace(consistency.QUICK, agents=(2,), steps=3, event_seeds=2),
        "events": dataclasses.replace(events.QUICK, seeds=2),
        "revisit": dataclasses.replace(revisit.QUICK, worlds=2, moves=(("turn", 2), ("walk", 1))),
        "drift": drift.Sizes(agents=2, worlds=1, steps=5),
        "fidelity": dataclasses.replace(fidelity.QUICK, worlds=1),
        "throughput": throughput.Sizes(agents=(1, 2), steps=2),
    }
    st = Settings(ORACLE, quick=True, sizes=tiny)
    results = run_all(st, Runner(progress=False), tmp_path)
    assert set(results) == set(BENCHMARKS)
    for name in (*BENCHMARKS, "summary"):
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert set(data) >= {"shared", "private", "oracle", "config", "commit", "machine"}, name
        assert (tmp_path / f"{name}.md").read_text().startswith("# "), name
    assert len(list(tmp_path.glob("*.png"))) >= 9
    assert results["drift"]["private"]["agent_accuracy@5"] < results["drift"]["oracle"]["agent_accuracy@5"] == 1.0
