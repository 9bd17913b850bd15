"""MAPPO (BenchMARL) on a multiworld scenario, with CNN actor and critic over the egocentric views.

    pip install -e ".[dev]"        # benchmarl==1.5.2 with torchrl==0.11.1 (what installs beside torch 2.13.0)
    python examples/benchmarl_mappo.py --scenario forage-v0 --agents 2 --iters 20 --out runs/benchmarl

The task comes from :func:`multiworld.env.benchmarl_task.multiworld_task` (BenchMARL's custom
task route: a ``TaskClass`` whose envs are TorchRL ``PettingZooWrapper`` s over
``multiworld.parallel_env``). The policy shares its parameters between agents; the MAPPO critic is
centralised (a CNN over every agent's view). BenchMARL writes its CSV logs and a JSON of the
evaluation returns under ``--out``; the script prints the mean training return per iteration.
"""

from __future__ import annotations

import argparse
import pathlib

import torch
from benchmarl.algorithms import MappoConfig
from benchmarl.experiment import Experiment, ExperimentConfig
from benchmarl.models import CnnConfig

from multiworld.env.benchmarl_task import EpisodeReturns, multiworld_task


def build_experiment(args, callbacks=()) -> Experiment:
    task = multiworld_task(
        args.scenario,
        num_agents=args.agents,
        height=args.view,
        width=args.view,
        max_cycles=args.max_cycles,
        obs_type=args.obs_type,
    )
    cnn = CnnConfig(
        cnn_num_cells=[16, 32, 32],
        cnn_kernel_sizes=[4, 4, 3],
        cnn_strides=[2, 2, 2],
        cnn_paddings=[1, 1, 1],
        cnn_activation_class=torch.nn.ReLU,
        mlp_num_cells=[128],
        mlp_activation_class=torch.nn.ReLU,
        mlp_layer_class=torch.nn.Linear,
    )
    config = ExperimentConfig.get_from_yaml()
    config.sampling_device = config.train_device = config.buffer_device = "cpu"
    config.max_n_iters = args.iters
    config.max_n_frames = None
    config.on_policy_collected_frames_per_batch = args.frames_per_batch
    config.on_policy_n_envs_per_worker = args.envs
    config.on_policy_n_minibatch_iters = args.minibatch_iters
    config.on_policy_minibatch_size = args.minibatch_size
    config.lr = args.lr
    config.gamma = 0.97
    config.evaluation = args.eval_interval > 0
    config.evaluation_interval = max(args.eval_interval, 1) * args.frames_per_batch
    config.evaluation_episodes = args.eval_episodes
    config.render = False
    config.loggers = ["csv"]
    config.create_json = True
    config.checkpoint_at_end = False
    config.save_folder = str(args.out)
    algorithm = MappoConfig.get_from_yaml()
    algorithm.entropy_coef = 0.01
    return Experiment(
        task=task,
        algorithm_config=algorithm,
        model_config=cnn,
        critic_model_config=cnn,
        seed=args.seed,
        config=config,
        callbacks=list(callbacks),
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="forage-v0")
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--view", type=int, default=32)
    p.add_argument("--obs-type", default="rgb", choices=["rgb", "rgbd", "dict"])
    p.add_argument("--max-cycles", type=int, default=100)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--envs", type=int, default=4, help="envs per collector (a TorchRL SerialEnv)")
    p.add_argument("--frames-per-batch", type=int, default=2000, help="env steps collected per iteration")
    p.add_argument("--minibatch-iters", type=int, default=8)
    p.add_argument("--minibatch-size", type=int, default=400)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--eval-interval", type=int, default=0, help="evaluate every this many iterations (0: never)")
    p.add_argument("--eval-episodes", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/benchmarl"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log = EpisodeReturns()
    experiment = build_experiment(args, callbacks=[log])
    experiment.run()
    for i, r in enumerate(log.returns, 1):
        print(f"iteration {i}: mean episode return per agent {r:.3f}")
    return experiment, log.returns


if __name__ == "__main__":
    main()
