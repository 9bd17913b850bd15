"""The `multiworld` command line: one module per subcommand, each with `add_parser`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules of multiworld.cli; each defines add_parser(subparsers) that sets `func`.
COMMANDS = ["run", "data", "train", "inspect", "replay", "rollout", "bench", "view"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multiworld", description="Multi-agent shared-world simulation with generative world models."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"multiworld.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from multiworld.state import StoreError

    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, StoreError) as e:
        # Bad input: say what is wrong in one line, no traceback.
        print(f"multiworld {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
