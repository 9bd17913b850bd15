"""multiworld scenarios as BenchMARL tasks (BenchMARL's custom-task route: a ``TaskClass``).

    from multiworld.env.benchmarl_task import multiworld_task
    task = multiworld_task("forage-v0", num_agents=2, height=32, width=32, max_cycles=100)
    Experiment(task=task, algorithm_config=MappoConfig.get_from_yaml(), model_config=CnnConfig..., ...)

Each env is TorchRL's ``PettingZooWrapper`` over ``multiworld.parallel_env`` (discrete,
categorical actions; one group ``"agent"`` holding every agent), with the uint8 images rescaled
to float32 in [0, 1] by :class:`ScaleImages` so BenchMARL's CNN sees normalized inputs
(``obs_type="dict"`` works too: its ``pose`` goes to the CNN model's MLP part). BenchMARL
batches ``num_envs`` of them in a ``SerialEnv``; the k-th env made gets world seed ``seed + k``,
so each copy plays its own sequence of worlds. The infos (fixed-shape numbers, the env's
default) are the task's ``info_spec``, which BenchMARL logs (``collection/agent/info/picked``...).

Needs ``benchmarl`` (and its ``torchrl``); imported only when this module is.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable

import torch
from benchmarl.environments.common import TaskClass
from benchmarl.experiment.callback import Callback
from tensordict import TensorDictBase
from torchrl.data import Bounded, Composite
from torchrl.envs import EnvBase, PettingZooWrapper, Transform

import multiworld


class ScaleImages(Transform):
    """uint8 image observations -> float32 in [0, 1] (every uint8 leaf of the observation spec)."""

    def __init__(self, in_keys: list) -> None:
        super().__init__(in_keys=in_keys, out_keys=in_keys)

    def _apply_transform(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.to(torch.float32).div_(255.0)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        for key in self.in_keys:
            spec = observation_spec[key]
            observation_spec[key] = Bounded(0.0, 1.0, spec.shape, dtype=torch.float32, device=spec.device)
        return observation_spec


def image_keys(env: EnvBase) -> list:
    """The keys of the uint8 observation leaves (images) of a TorchRL env."""
    return [k for k, spec in env.observation_spec.items(True, True) if spec.dtype == torch.uint8 and "info" not in k]


class MultiworldTaskClass(TaskClass):
    """A multiworld scenario as a BenchMARL task; ``config`` holds ``multiworld.parallel_env`` kwargs
    (``scenario`` included)."""

    def get_env_fun(self, num_envs: int, continuous_actions: bool, seed: int | None, device) -> Callable[[], EnvBase]:
        config = copy.deepcopy(self.config)
        made = itertools.count()  # BenchMARL calls this once per env of its SerialEnv: seeds seed, seed+1, ...

        def make() -> EnvBase:
            env = multiworld.parallel_env(**config)
            k = next(made)
            return PettingZooWrapper(
                env=env, categorical_actions=True, seed=None if seed is None else seed + k, device=device
            )

        return make

    def supports_continuous_actions(self) -> bool:
        return False

    def supports_discrete_actions(self) -> bool:
        return True

    def has_render(self, env: EnvBase) -> bool:
        return self.config.get("render_mode") == "rgb_array"

    def max_steps(self, env: EnvBase) -> int:
        return int(self.config.get("max_cycles", 500))

    def group_map(self, env: EnvBase) -> dict[str, list[str]]:
        return env.group_map

    def get_env_transforms(self, env: EnvBase) -> list[Transform]:
        return [ScaleImages(image_keys(env))]

    def _group_entries(self, env: EnvBase, entry: str) -> Composite:
        spec = env.observation_spec.clone()
        for group in self.group_map(env):
            for key in list(spec[group].keys()):
                if key != entry:
                    del spec[group][key]
        return spec

    def observation_spec(self, env: EnvBase) -> Composite:
        return self._group_entries(env, "observation")

    def info_spec(self, env: EnvBase) -> Composite | None:
        return self._group_entries(env, "info")

    def state_spec(self, env: EnvBase) -> Composite | None:
        return None  # the MAPPO critic sees every agent's observation

    def action_mask_spec(self, env: EnvBase) -> Composite | None:
        return None  # every action is always legal

    def action_spec(self, env: EnvBase) -> Composite:
        return env.full_action_spec

    @staticmethod
    def env_name() -> str:
        return "multiworld"


def multiworld_task(scenario: str = "forage-v0", **kwargs) -> MultiworldTaskClass:
    """The BenchMARL task of ``scenario``; ``kwargs`` go to ``multiworld.parallel_env``."""
    name = scenario.upper().replace("-", "_")
    return MultiworldTaskClass(name=name, config={"scenario": scenario, **kwargs})


class EpisodeReturns(Callback):
    """A BenchMARL callback: the mean episode return per agent of the episodes that ended in each
    collected batch (NaN when none ended), in ``returns``."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: list[float] = []

    def on_batch_collected(self, batch: TensorDictBase) -> None:
        done = batch.get(("next", "done"))[..., 0]
        ret = batch.get(("next", "agent", "episode_reward"))[..., 0]  # (..., N): RewardSum's running return
        self.returns.append(ret[done].mean().item() if done.any() else math.nan)
