"""Quickstart: four agents forage with random actions; writes the last frame to quickstart.png."""

import imageio.v3 as iio

import multiworld

env = multiworld.parallel_env("forage-v0", num_agents=4, render_mode="rgb_array")
observations, infos = env.reset(seed=0)
for _ in range(50):
    actions = {agent: env.action_space(agent).sample() for agent in env.agents}
    observations, rewards, terminations, truncations, infos = env.step(actions)
print("agent_0 sees", observations["agent_0"].shape, "at pose", infos["agent_0"]["pose"])
iio.imwrite("quickstart.png", env.render())  # every agent's view beside the top-down map
print("wrote quickstart.png")
