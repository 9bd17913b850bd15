"""BenchMARL on multiworld: the custom task's envs pass TorchRL's spec check, and MAPPO with CNN
actor and critic runs a few iterations of examples/benchmarl_mappo.py."""

from __future__ import annotations

import importlib.util
import math
import pathlib

import pytest
import torch

pytest.importorskip("benchmarl")
from torchrl.envs import TransformedEnv
from torchrl.envs.utils import check_env_specs

from multiworld.env.benchmarl_task import ScaleImages, image_keys, multiworld_task

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "benchmarl_mappo.py"


def load_example():
    spec = importlib.util.spec_from_file_location("benchmarl_mappo", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("obs_type", ["rgb", "dict"])
def test_task_env_specs_and_scaled_images(obs_type):
    task = multiworld_task("push-v0", num_agents=3, height=16, width=16, max_cycles=20, obs_type=obs_type)
    base = task.get_env_fun(num_envs=1, continuous_actions=False, seed=0, device="cpu")()
    assert task.group_map(base) == {"agent": ["agent_0", "agent_1", "agent_2"]}
    assert task.max_steps(base) == 20 and task.supports_discrete_actions()
    assert set(task.info_spec(base)["agent", "info"].keys()) >= {"picked", "pushed", "push_count"}
    env = TransformedEnv(base, ScaleImages(image_keys(base)))
    check_env_specs(env)
    td = env.rollout(25, break_when_any_done=False)
    image = td["next", "agent", "observation"] if obs_type == "rgb" else td["next", "agent", "observation", "rgb"]
    assert image.dtype == torch.float32 and 0.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.1
    assert image.shape == (25, 3, 16, 16, 3)


def test_each_env_of_a_task_plays_its_own_worlds():
    make = multiworld_task("forage-v0", num_agents=2, height=8, width=8).get_env_fun(2, False, 7, "cpu")
    a, b = make(), make()
    assert (a._env.world_seed, b._env.world_seed) == (7, 8)


@pytest.mark.parametrize(
    "extra",
    [
        ["--scenario", "forage-v0", "--agents", "2"],
        ["--scenario", "push-v0", "--agents", "3", "--obs-type", "dict", "--eval-interval", "2"],
    ],
)
def test_mappo_runs_a_few_iterations(tmp_path, extra):
    example = load_example()
    small = ["--iters", "3", "--frames-per-batch", "240", "--envs", "2", "--minibatch-iters", "2"]
    small += ["--minibatch-size", "120", "--view", "16", "--max-cycles", "40", "--out", str(tmp_path)]
    experiment, returns = example.main(small + extra)
    assert experiment.n_iters_performed == 3 and experiment.total_frames == 3 * 240
    assert len(returns) == 3 and any(not math.isnan(r) for r in returns)  # episodes of 40 steps ended
    assert list(tmp_path.glob("mappo_*"))  # BenchMARL's experiment folder (CSV logs, JSON)
