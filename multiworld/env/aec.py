"""The AEC (agent-by-agent) version of the env: PettingZoo's ``parallel_to_aec`` conversion.

Agents act in turn ``agent_0 .. agent_{N-1}``; the world advances once the last live agent has
acted, with every agent's stored action at once (the same simultaneous dynamics as the parallel
env). One addition to the stock wrapper: each action is checked when it is given, so a bad
action raises ValueError at the agent that gave it and is not stored. Order errors (step before
reset, step after the end) follow PettingZoo's ``OrderEnforcingWrapper``.
"""

from __future__ import annotations

from pettingzoo.utils.conversions import parallel_to_aec_wrapper
from pettingzoo.utils.wrappers import OrderEnforcingWrapper

from multiworld.env.common import check_action
from multiworld.env.parallel import MultiWorldParallelEnv


class MultiWorldAECEnv(parallel_to_aec_wrapper):
    """``parallel_to_aec_wrapper`` over :class:`MultiWorldParallelEnv` that checks actions on entry."""

    def __init__(self, scenario: str = "forage-v0", **kwargs) -> None:
        super().__init__(MultiWorldParallelEnv(scenario=scenario, **kwargs))

    def step(self, action) -> None:
        agent = self.agent_selection
        if action is not None and not (self.terminations[agent] or self.truncations[agent]):
            check_action(agent, action)
        super().step(action)

    def render(self):
        return self.env.render()

    def last_events(self) -> list[dict]:
        """The event dicts of the world's last step (see ``MultiWorldParallelEnv.last_events``)."""
        return self.env.last_events()

    def close(self) -> None:
        self.env.close()


def raw_env(scenario: str = "forage-v0", **kwargs) -> MultiWorldAECEnv:
    """The AEC env without PettingZoo's order-enforcing wrapper."""
    return MultiWorldAECEnv(scenario=scenario, **kwargs)


def env(scenario: str = "forage-v0", **kwargs) -> OrderEnforcingWrapper:
    """The AEC env of ``scenario`` (keyword arguments as :func:`multiworld.parallel_env`)."""
    return OrderEnforcingWrapper(raw_env(scenario=scenario, **kwargs))
