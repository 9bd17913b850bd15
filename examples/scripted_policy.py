"""Scripted agents push boxes onto goal tiles in push-v0; prints every push and the rewards."""

import multiworld
from multiworld.agents.policies import ScriptedPolicy

env = multiworld.parallel_env("push-v0", num_agents=4, max_cycles=200, height=32, width=32)
policy = ScriptedPolicy(seed=3)
observations, infos = env.reset(seed=3)
returns = dict.fromkeys(env.possible_agents, 0.0)
while env.agents:
    joint = policy.act(env.world_state())[0]  # (N,) actions chosen from the symbolic state
    observations, rewards, terminations, truncations, infos = env.step(dict(zip(env.agents, joint.tolist())))
    for agent, reward in rewards.items():
        returns[agent] += reward
    for event in env.last_events():  # every event of the world this step, as dicts
        if event["type"] == "push":
            print(
                f"step {infos['agent_0']['version']:3d}: {event['agent']} pushed box {event['box']} "
                f"{event['from']} -> {event['to']}; reward to each agent {rewards['agent_0']:+.0f}"
            )
ended = "every box on a goal" if any(terminations.values()) else "max_cycles reached"
print(f"episode over after {infos['agent_0']['version']} steps ({ended}); returns {returns}")
