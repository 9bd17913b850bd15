import sys

from multiworld.cli import main

sys.exit(main())
