"""Parameter-shared PPO on forage-v0, CleanRL style: one file, one small CNN, many worlds batched.

    python examples/ppo_shared.py --minutes 30 --threads 2          # the run in benchmarks/results/
    python examples/ppo_shared.py --minutes 0.2 --num-envs 2 --rollout 8 --out /tmp/ppo   # a smoke run
    python examples/ppo_shared.py --backend model --minutes 29 --threads 2 \
        --out benchmarks/results/ppo_forage_model   # trained inside the learned world model

``--backend model`` trains entirely inside the learned world model (its vector env: observations,
rewards and endings all from the model; the oracle only builds each world's first observation at
reset), then evaluates in the oracle, the real arena, on the same held-out worlds as the
oracle-trained run: the DIAMOND / IRIS protocol, here with many agents.

Every agent of every world is one PPO "environment": the E worlds x N agents of
``multiworld.vector_env`` are flattened into a batch of E*N egocentric views (uint8 RGB, 32x32
by default), one network (shared by all agents) picks all E*N actions, and the E worlds step in
one batched render. The vector env autoresets in *next-step* mode: the step that ends a world
returns its final observation (so a truncated episode bootstraps from it), and the next step
resets that world instead of stepping it (``infos["reset"]``): that transition's action was
ignored, so it is masked out of the loss.

``--stage SHARE`` (push-v0, whose goal reward a random policy almost never meets): a curriculum in
which that share of the training worlds start with a box in the cell before a goal and an agent a
few cells behind it, facing it (``multiworld.models.staging.stage_pushers``, through the vector
env's ``start_worlds``); the baselines and the evaluation use the worlds as generated.

The script first measures the random and the scripted policy (``multiworld.agents.policies``) on
the same settings, then trains for ``--minutes`` of wall-clock time, then evaluates the trained
policy on held-out world seeds, and writes ``<out>.json`` (config, baselines, the learning curve,
the evaluation) and ``<out>.png`` (the curve with the random and scripted policies as lines).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np
import torch
from torch import nn

import multiworld
from multiworld.agents.policies import make_policy
from multiworld.bench.provenance import stamp
from multiworld.models.staging import stage_pushers
from multiworld.seeds import policy_evaluation_seeds
from multiworld.world.scenarios import get_scenario


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="forage-v0")
    p.add_argument(
        "--backend",
        choices=("oracle", "model"),
        default="oracle",
        help="where the policy trains: the oracle arena or the learned world model (evaluation: always the oracle)",
    )
    p.add_argument("--checkpoint", default=None, help="world-model checkpoint for --backend model (default: shipped)")
    p.add_argument(
        "--compile-render",
        action="store_true",
        help="--backend model: render with the compiled renderer (a minute or two to compile, then faster)",
    )
    p.add_argument(
        "--stage",
        type=float,
        default=0.0,
        help="a curriculum for scenarios with boxes and goals: this share of the training worlds start with "
        "a box before a goal and an agent a few cells behind it (never the baselines' or the evaluation's)",
    )
    p.add_argument("--num-envs", type=int, default=16, help="worlds stepped together (E)")
    p.add_argument("--num-agents", type=int, default=4, help="agents per world (N); all share the policy")
    p.add_argument("--view", type=int, default=32, help="egocentric view height and width")
    p.add_argument("--max-cycles", type=int, default=100, help="episode length (truncation)")
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget")
    p.add_argument("--updates", type=int, default=0, help="stop after this many updates (0: only the time budget)")
    p.add_argument("--rollout", type=int, default=32, help="steps per world per update (T)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--minibatches", type=int, default=2)
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate, annealed linearly to 0 over the budget")
    p.add_argument("--no-anneal", action="store_true", help="keep the learning rate constant")
    p.add_argument("--gamma", type=float, default=0.97)
    p.add_argument("--gae-lambda", type=float, default=0.95)
    p.add_argument("--clip", type=float, default=0.2)
    p.add_argument("--ent-coef", type=float, default=0.01)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    p.add_argument("--baseline-episodes", type=int, default=128, help="episodes per world for the baselines")
    p.add_argument("--eval-episodes", type=int, default=128, help="episodes (worlds) of the final evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default="benchmarks/results/ppo_forage", help="writes <out>.json and <out>.png")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    if not 0 <= args.stage <= 1:
        p.error(f"--stage {args.stage}: give a share of the training worlds in [0, 1]")
    if args.stage > 0 and not get_scenario(args.scenario).arena_config().num_goals:
        p.error(f"--stage: {args.scenario} has no goals to stage a box before; use it with push-v0")
    return args


def make_env(args, num_envs: int, seed: int, backend: str = "oracle", staged: float = 0.0):
    """The vector env: the oracle (baselines, evaluation), or ``--backend`` for training; ``staged``:
    that share of its worlds start staged (``--stage``)."""
    extra = {}
    if backend == "model":
        extra = {"compile_render": args.compile_render} | ({"checkpoint": args.checkpoint} if args.checkpoint else {})
    if staged > 0:
        arena = get_scenario(args.scenario).arena_config(num_agents=args.num_agents)
        extra["start_worlds"] = lambda worlds, rng: stage_pushers(worlds, arena, rng, staged)
    return multiworld.vector_env(
        num_envs=num_envs,
        scenario=args.scenario,
        num_agents=args.num_agents,
        height=args.view,
        width=args.view,
        max_cycles=args.max_cycles,
        seed=seed,
        backend=backend,
        **extra,
    )


class Agent(nn.Module):
    """A small CNN shared by every agent: (B, H, W, 3) uint8 -> action logits (B, 8) and value (B,)."""

    def __init__(self, view: int, num_actions: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            width = self.trunk(torch.zeros(1, 3, view, view)).shape[1]
        self.hidden = nn.Sequential(nn.Linear(width, 128), nn.ReLU())
        self.actor = nn.Linear(128, num_actions)
        self.critic = nn.Linear(128, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.orthogonal_(m.weight, np.sqrt(2))
                nn.init.zeros_(m.bias)
        nn.init.orthogonal_(self.actor.weight, 0.01)
        nn.init.orthogonal_(self.critic.weight, 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = obs.permute(0, 3, 1, 2).float().div_(255.0)
        h = self.hidden(self.trunk(x))
        return self.actor(h), self.critic(h).squeeze(-1)


def run_episodes(args, act, episodes: int, seed: int, backend: str = "oracle") -> dict:
    """Mean return per agent of ``act(obs (E, N, H, W, 3), env) -> actions (E, N)`` over ``episodes``
    episodes: ``episodes`` worlds side by side, one episode each, world seeds ``seed .. seed+episodes-1``
    (in the oracle arena, or with ``backend="model"`` inside the learned world)."""
    env = make_env(args, episodes, seed, backend)
    obs, _ = env.reset(seed=seed)
    returns = np.zeros((episodes, args.num_agents))
    ended = np.zeros(episodes, bool)
    while not ended.all():
        obs, rewards, term, trunc, _ = env.step(act(obs, env))
        returns += rewards * ~ended[:, None]
        ended |= term[:, 0] | trunc[:, 0]
    env.close()
    per_agent = returns.mean(axis=1)  # each world's mean over its agents
    return {
        "mean_return_per_agent": float(per_agent.mean()),
        "stderr": float(per_agent.std(ddof=1) / np.sqrt(episodes)) if episodes > 1 else 0.0,
        "episodes": episodes,
        "seeds": [seed, seed + episodes - 1],
    }


def baseline(args, name: str, seed: int) -> dict:
    policy = make_policy(name, seed=seed)
    return run_episodes(args, lambda obs, env: policy.act(env.world_state()), args.baseline_episodes, seed)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    eval_seed = policy_evaluation_seeds(1, args.seed)[0]  # first world seed of the baselines and the final evaluation

    t0 = time.perf_counter()
    baselines = {name: baseline(args, name, eval_seed) for name in ("random", "scripted")}
    for name, b in baselines.items():
        print(f"{name:8s} policy: {b['mean_return_per_agent']:.3f} per agent ({b['episodes']} episodes)", flush=True)
    print(f"baselines took {time.perf_counter() - t0:.0f} s", flush=True)

    e, n, t_len = args.num_envs, args.num_agents, args.rollout
    b = e * n
    env = make_env(args, e, args.seed, backend=args.backend, staged=args.stage)
    agent = Agent(args.view, env.single_action_space.n)
    optim = torch.optim.Adam(agent.parameters(), lr=args.lr, eps=1e-5)

    obs_buf = torch.zeros((t_len, b, args.view, args.view, 3), dtype=torch.uint8)
    act_buf = torch.zeros((t_len, b), dtype=torch.int64)
    logp_buf = torch.zeros((t_len, b))
    val_buf = torch.zeros((t_len, b))
    rew_buf = torch.zeros((t_len, b))
    term_buf = torch.zeros((t_len, b))  # the episode terminated at this step (no bootstrap)
    end_buf = torch.zeros((t_len, b))  # the episode ended at this step (terminated or truncated)
    valid_buf = torch.zeros((t_len, b))  # 0 where the world was reset instead of stepped

    obs, _ = env.reset(seed=args.seed)
    next_obs = torch.from_numpy(obs).reshape(b, args.view, args.view, 3)
    ep_return = np.zeros((e, n))
    curve, finished = [], []
    agent_steps, update = 0, 0
    start = last_save = time.perf_counter()
    budget = args.minutes * 60.0
    while time.perf_counter() - start < budget and (args.updates == 0 or update < args.updates):
        update += 1
        if not args.no_anneal:  # linear decay over the time budget (or the update budget)
            done_frac = (time.perf_counter() - start) / budget
            if args.updates:
                done_frac = max(done_frac, (update - 1) / args.updates)
            optim.param_groups[0]["lr"] = args.lr * max(0.0, 1.0 - done_frac)
        # --- collect T steps of every agent in every world
        t_collect = time.perf_counter()
        for t in range(t_len):
            obs_buf[t] = next_obs
            with torch.no_grad():
                logits, value = agent(next_obs)
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()
            act_buf[t], logp_buf[t], val_buf[t] = action, dist.log_prob(action), value
            obs, rewards, term, trunc, infos = env.step(action.numpy().reshape(e, n))
            next_obs = torch.from_numpy(obs).reshape(b, args.view, args.view, 3)
            rew_buf[t] = torch.from_numpy(rewards.reshape(b))
            term_buf[t] = torch.from_numpy(term.reshape(b).astype(np.float32))
            end_buf[t] = torch.from_numpy((term | trunc).reshape(b).astype(np.float32))
            valid_buf[t] = torch.from_numpy(np.repeat(~infos["reset"], n).astype(np.float32))
            ep_return += rewards
            for w in np.flatnonzero(term[:, 0] | trunc[:, 0]):
                finished.append(float(ep_return[w].mean()))
                ep_return[w] = 0.0
        agent_steps += t_len * b
        collect_seconds = time.perf_counter() - t_collect

        # --- advantages (GAE); a truncated episode bootstraps from its final observation, which
        # next-step autoreset returns as the next observation
        with torch.no_grad():
            _, last_value = agent(next_obs)
        next_values = torch.cat([val_buf[1:], last_value[None]])
        adv = torch.zeros_like(rew_buf)
        running = torch.zeros(b)
        for t in reversed(range(t_len)):
            delta = rew_buf[t] + args.gamma * next_values[t] * (1 - term_buf[t]) - val_buf[t]
            running = delta + args.gamma * args.gae_lambda * (1 - end_buf[t]) * running
            adv[t] = running
        ret = adv + val_buf

        # --- PPO update on the valid transitions
        keep = valid_buf.reshape(-1) > 0
        f_obs = obs_buf.reshape(-1, args.view, args.view, 3)[keep]
        f_act, f_logp = act_buf.reshape(-1)[keep], logp_buf.reshape(-1)[keep]
        f_adv, f_ret = adv.reshape(-1)[keep], ret.reshape(-1)[keep]
        size = len(f_act)
        mb = max(1, size // args.minibatches)
        stats = []
        for _ in range(args.epochs):
            perm = torch.randperm(size)
            for i in range(0, size - mb + 1, mb):
                idx = perm[i : i + mb]
                logits, value = agent(f_obs[idx])
                dist = torch.distributions.Categorical(logits=logits)
                ratio = (dist.log_prob(f_act[idx]) - f_logp[idx]).exp()
                a = f_adv[idx]
                a = (a - a.mean()) / (a.std() + 1e-8)
                pg_loss = torch.max(-a * ratio, -a * ratio.clamp(1 - args.clip, 1 + args.clip)).mean()
                v_loss = 0.5 * (value - f_ret[idx]).pow(2).mean()
                entropy = dist.entropy().mean()
                loss = pg_loss + args.vf_coef * v_loss - args.ent_coef * entropy
                optim.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optim.step()
                stats.append((pg_loss.item(), v_loss.item(), entropy.item()))

        elapsed = time.perf_counter() - start
        _pg, vl, ent = np.mean(stats, axis=0) if stats else (np.nan, np.nan, np.nan)
        point = {
            "update": update,
            "seconds": round(elapsed, 1),
            "agent_steps": agent_steps,
            "episodes": len(finished),
            "mean_return_per_agent": float(np.mean(finished)) if finished else None,
            "collect_seconds": round(collect_seconds, 2),
            "load_1min": round(os.getloadavg()[0], 2),
            "entropy": float(ent),
            "value_loss": float(vl),
        }
        curve.append(point)
        finished = []
        if elapsed - (last_save - start) > 60:  # a partial result every minute, in case the run is cut short
            partial = {"config": vars(args), "baselines": baselines, "curve": curve, "partial": True}
            out.with_suffix(".json").write_text(json.dumps(partial, indent=1))
            last_save = time.perf_counter()
        ret_txt = "n/a" if point["mean_return_per_agent"] is None else f"{point['mean_return_per_agent']:.3f}"
        print(
            f"update {update:4d}  {elapsed / 60:5.1f} min  {agent_steps:9d} agent-steps  "
            f"return/agent {ret_txt}  entropy {ent:.2f}  v_loss {vl:.4f}  collect {collect_seconds:.1f} s",
            flush=True,
        )
    train_seconds = time.perf_counter() - start
    env.close()

    # --- the trained policy on the baselines' held-out worlds: sampled and greedy actions
    def policy_act(greedy: bool):
        def act(obs, env):
            with torch.no_grad():
                logits, _ = agent(torch.from_numpy(obs).reshape(-1, args.view, args.view, 3))
            a = logits.argmax(-1) if greedy else torch.distributions.Categorical(logits=logits).sample()
            return a.numpy().reshape(obs.shape[0], obs.shape[1])

        return act

    evaluation = {
        "sampled": run_episodes(args, policy_act(False), args.eval_episodes, eval_seed),
        "greedy": run_episodes(args, policy_act(True), args.eval_episodes, eval_seed),
    }
    if args.backend == "model":  # the same policy on the same worlds inside the model: does it over- or under-pay?
        evaluation["sampled_in_model"] = run_episodes(
            args, policy_act(False), args.eval_episodes, eval_seed, backend="model"
        )
    rnd = baselines["random"]["mean_return_per_agent"]
    final = evaluation["sampled"]["mean_return_per_agent"]
    ratio = final / rnd if rnd > 0 else float("inf")
    print(
        f"trained policy (sampled actions): {final:.3f} per agent = {ratio:.2f}x random "
        f"({rnd:.3f}); greedy {evaluation['greedy']['mean_return_per_agent']:.3f}; "
        f"scripted {baselines['scripted']['mean_return_per_agent']:.3f}; trained {train_seconds / 60:.1f} min",
        flush=True,
    )
    result = {
        "config": vars(args),
        "machine": {"cpus": os.cpu_count(), "torch_threads": args.threads, "load_average_at_end": os.getloadavg()},
        "baselines": baselines,
        "curve": curve,
        "train_seconds": round(train_seconds, 1),
        "agent_steps": agent_steps,
        "evaluation": evaluation,
        "ratio_to_random": ratio,
        "provenance": stamp({"model": args.checkpoint} if args.backend == "model" else None),
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    if not args.no_plot:
        plot(result, out.with_suffix(".png"))
    return result


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in result["curve"] if p["mean_return_per_agent"] is not None]
    minutes = np.array([p["seconds"] / 60 for p in pts])
    returns = np.array([p["mean_return_per_agent"] for p in pts])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(minutes, returns, color="0.75", lw=1, label="PPO, episodes of each update")
    if len(returns) >= 5:
        k = max(5, len(returns) // 20)
        smooth = np.convolve(returns, np.ones(k) / k, mode="valid")
        ax.plot(minutes[k - 1 :], smooth, color="C0", lw=2, label=f"PPO, mean of {k} updates")
    rnd = result["baselines"]["random"]["mean_return_per_agent"]
    scr = result["baselines"]["scripted"]["mean_return_per_agent"]
    ax.axhline(scr, color="C2", ls="-", label=f"scripted policy ({scr:.2f})")
    ax.axhline(3 * rnd, color="C3", ls=":", label=f"3x random ({3 * rnd:.2f})")
    ax.axhline(rnd, color="C3", ls="--", label=f"random policy ({rnd:.2f})")
    final = result["evaluation"]["sampled"]["mean_return_per_agent"]
    ax.plot([result["train_seconds"] / 60], [final], "o", color="C1", label=f"trained, held-out eval ({final:.2f})")
    cfg = result["config"]
    ax.set_xlabel("training wall-clock (minutes)")
    ax.set_ylabel("mean episode return per agent")
    ax.set_title(
        f"parameter-shared PPO, {cfg['scenario']}: {cfg['num_envs']} worlds x {cfg['num_agents']} agents, "
        f"{cfg['view']}x{cfg['view']} views",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
