import pathlib
import sys

# Test modules share small fixtures by importing each other (e.g. `from test_world import open_room`).
sys.path.insert(0, str(pathlib.Path(__file__).parent))

import torch

# Small batches dominate the tests: one torch thread is faster for them and steadier when
# the machine is shared (see multiworld.world.render.SMALL_BATCH_PIXELS).
torch.set_num_threads(1)
