"""multiworld.agents: per-agent actors and policies (source in top-level agents/)."""
