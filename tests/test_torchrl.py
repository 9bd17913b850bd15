"""TorchRL's ``PettingZooWrapper`` over ``multiworld.parallel_env``: specs and rollouts with events.

TorchRL builds its info specs from the reset infos and writes every step's infos into tensors,
so the infos must be fixed-shape numbers with the same keys at reset and at every step (the
env's default ``info_events="numeric"``). Rollouts are driven by the scripted policy so that
pushes and pickups happen, and run past the end of an episode (TorchRL resets the env itself).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import multiworld
from multiworld.agents.policies import make_policy
from multiworld.world.state import agent_names

torchrl_envs = pytest.importorskip("torchrl.envs")
from torchrl.envs import PettingZooWrapper  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:PettingZoo in TorchRL is tested:UserWarning")

SMALL = dict(height=16, width=16)
SCENARIOS = ("roam-v0", "forage-v0", "push-v0")
OBS_TYPES = ("rgb", "rgbd", "dict")
BACKENDS = ("oracle", "model")
# Agent counts for the spec checks: every scenario x obs_type pair gets a different one (1..5);
# one 16-agent case below.
AGENTS = {(s, o): 1 + (i * 3 + j * 2) % 5 for i, s in enumerate(SCENARIOS) for j, o in enumerate(OBS_TYPES)}
INFO_KEYS = {"pose", "version", "pushed", "picked", "pushed_box", "picked_item", "push_count", "pickup_count"}


def make_env(backend: str, scenario: str, num_agents: int, **kw):
    """The multiworld env of ``backend`` (the model backend loads the shipped checkpoint)."""
    return multiworld.parallel_env(scenario, num_agents=num_agents, backend=backend, **{**SMALL, **kw})


def wrap(env, **kw) -> PettingZooWrapper:
    return PettingZooWrapper(env=env, seed=0, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("obs_type", OBS_TYPES)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_check_env_specs(backend, scenario, obs_type):
    n = AGENTS[(scenario, obs_type)]
    env = wrap(make_env(backend, scenario, n, obs_type=obs_type, max_cycles=20))
    check_env_specs(env)
    td = env.rollout(30, break_when_any_done=False)  # crosses the truncation at step 20
    assert td.batch_size == torch.Size([30])
    assert td["agent", "action"].shape == (30, n)
    assert set(td["next", "agent", "info"].keys()) == INFO_KEYS
    obs = td["next", "agent", "observation"]
    if obs_type == "dict":
        assert obs["rgb"].shape == (30, n, 16, 16, 3) and obs["rgb"].dtype == torch.uint8
        assert obs["pose"].shape == (30, n, 3)
    else:
        assert obs.shape == (30, n, 16, 16, 4 if obs_type == "rgbd" else 3) and obs.dtype == torch.uint8
    done, terminated = td["next", "done"][:, 0], td["next", "terminated"][:, 0]
    # These scenarios end only by truncation; the model's learned ending head must agree.
    assert done[19] and done.sum() == 1 and not terminated.any()  # ended once, truncated at 20, and went on


class ScriptedActions:
    """A TorchRL policy: the scripted policy's actions from the wrapped env's symbolic state."""

    def __init__(self, env: PettingZooWrapper, seed: int = 0) -> None:
        self.env, self.policy = env, make_policy("scripted", seed=seed)

    def __call__(self, td):
        joint = self.policy.act(self.env._env.world_state())[0]
        td.set(("agent", "action"), torch.as_tensor(joint, dtype=torch.int64))
        return td


# Which events the scripted policy makes within the rollout (checked against the env beforehand).
EVENTS = {"roam-v0": ("push_count", "pickup_count"), "forage-v0": ("pickup_count",), "push-v0": ("push_count",)}
EVENT_AGENTS = {"roam-v0": 1, "forage-v0": 2, "push-v0": 3}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rollout_with_pushes_and_pickups(backend, scenario):
    n = EVENT_AGENTS[scenario]
    env = wrap(make_env(backend, scenario, n, max_cycles=100))
    td = env.rollout(160, policy=ScriptedActions(env), break_when_any_done=False)
    info = td["next", "agent", "info"]
    # World counts are the sums of the agents' fields; the same for every agent.
    np.testing.assert_array_equal(info["pickup_count"][:, 0], info["picked"].sum(dim=1))
    np.testing.assert_array_equal(info["push_count"][:, 0], info["pushed"].sum(dim=1))
    assert (info["push_count"] == info["push_count"][:, :1]).all()
    assert td["next", "done"][:, 0].any()  # an episode ended inside the rollout (and it went on)
    # What depends on the backend's dynamics: the events happen, name real boxes and items, and
    # forage pays +1 per pickup.
    problems = [f"no {key}" for key in EVENTS[scenario] if info[key].sum() == 0]
    pushed, has_box = info["pushed"] > 0, info["pushed_box"] >= 0
    if (has_box & ~pushed).any():
        problems.append("box indices without a push event")
    # The shipped model's push head can fire without a decoded box moving (box -1): 1 of 1 push
    # in roam-v0, 3 of 4 in push-v0. Checked for the model too once its retrained checkpoint
    # (issue 30) names the box.
    if backend == "oracle" and (pushed & ~has_box).any():
        problems.append("push events without a box index")
    if not ((info["picked_item"] >= 0) == (info["picked"] > 0)).all():
        problems.append("pickup events without an item index")
    reward = td["next", "agent", "reward"][..., 0]
    if scenario == "forage-v0" and not torch.equal(reward, info["picked"].float()):
        problems.append("forage rewards differ from its pickups")
    assert not problems, f"backend={backend!r}: {problems} in 160 scripted steps"


def test_sixteen_agents_push():
    env = wrap(make_env("oracle", "push-v0", 16, max_cycles=40))
    check_env_specs(env)
    td = env.rollout(60, policy=ScriptedActions(env), break_when_any_done=False)
    assert td["agent", "action"].shape == (60, 16)
    assert td["next", "agent", "info", "push_count"].sum() > 0
    assert td["next", "done"][:, 0].sum() == 1


def test_one_hot_actions_and_state():
    """TorchRL's one-hot action encoding and the top-down ``state()`` (``state_space``)."""
    base = make_env("oracle", "forage-v0", 2)
    env = wrap(base, categorical_actions=False, return_state=True)
    check_env_specs(env)
    assert env.full_action_spec["agent", "action"].shape == (2, 8)
    td = env.rollout(5)
    assert td["next", "state"].shape == (5, *base.state_space.shape)
    assert td["next", "state"].dtype == torch.uint8


def test_aec_env():
    """The AEC env through TorchRL (one agent acts per step, ``use_mask`` marks who)."""
    env = PettingZooWrapper(
        env=multiworld.env("forage-v0", num_agents=3, max_cycles=10, **SMALL), seed=0, use_mask=True
    )
    check_env_specs(env)
    td = env.rollout(12, break_when_any_done=False)
    acting = sum(td[name, "mask"].long().sum(dim=-1) for name in agent_names(3))  # AEC: one group per agent
    assert acting.tolist() == [1] * 12


def test_rich_event_dicts_stay_available_beside_torchrl():
    """``last_events()`` on the wrapped env gives the dicts that the numeric infos count."""
    env = wrap(make_env("oracle", "forage-v0", 2))
    policy = ScriptedActions(env)
    td = env.reset()
    seen = 0
    for _ in range(40):
        td = env.step(policy(td))
        events = env._env.last_events()
        assert td["next", "agent", "info", "pickup_count"][0].item() == sum(e["type"] == "pickup" for e in events)
        seen += len(events)
        td = td["next"]
    assert seen > 0
