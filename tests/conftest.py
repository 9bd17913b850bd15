import os
import pathlib
import sys

# Ray binds 127.0.0.1 only with this set, and it must be set before ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

# Test modules share small fixtures by importing each other (e.g. `from test_world import open_room`).
sys.path.insert(0, str(pathlib.Path(__file__).parent))

import torch

# Small batches dominate the tests: one torch thread is faster for them and steadier when
# the machine is shared (see multiworld.world.render.SMALL_BATCH_PIXELS).
torch.set_num_threads(1)
