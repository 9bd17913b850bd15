"""Worlds beyond the arena: other multi-agent games behind the same PettingZoo API.

``multiworld.games.vizdoom``: ViZDoom multiplayer deathmatch (``pip install -e ".[vizdoom]"``).
Each game module offers ``parallel_env(...)`` and ``env(...)``, egocentric RGB views, poses in
``infos["pose"]`` and ``world_metadata()``: what the recorder (``multiworld.data.recorder``)
needs to write it into the store.
"""
