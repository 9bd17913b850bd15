import pathlib
import sys

# Test modules share small fixtures by importing each other (e.g. `from test_world import open_room`).
sys.path.insert(0, str(pathlib.Path(__file__).parent))
