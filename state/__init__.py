"""multiworld.state: the Zarr world-state store (source in top-level state/)."""
