"""The `ncii-node` command.

Each subcommand lives in its own module of this package and exposes
`register(subparsers)`, which adds its parser and sets `func` (a callable taking the
parsed arguments and returning an exit status). Modules are discovered, so adding a
command never means editing a central list.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ncii-node",
        description="Publish, follow and match signed logs of NCII fingerprints.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more detailed logs")
    parser.add_argument("--version", action="version", version=f"ncii-node {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ncii-node")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # apscheduler logs two INFO lines per job run (every second per followed log),
    # which would bury the node's own messages; its warnings and errors still show.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ncii-node status | head`: the reader left; that is not an error of ours.
        # Point stdout at devnull so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
