"""The `jumpboard` console script: parses the command line and dispatches to a subcommand.

Each subcommand lives in `app/commands/<name>.py` and exposes `register(subparsers)`, which
adds its parser and sets `handler(args) -> int`. torch is imported only by the subcommands
that train (`run`, `worker`), and only when they run.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

COMMAND_MODULES = (
    "app.commands.run",
    "app.commands.validate",
    "app.commands.db",
    "app.commands.worker",
    "app.commands.serve",
    "app.commands.submit",
    "app.commands.status",
    "app.commands.jobs",
    "app.commands.token",
    "app.commands.datasets",
)


class CliError(Exception):
    """A problem to report to the user as one line, with exit status `code` (no traceback)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="jumpboard",
        description="Depth-expansion training service: train, insert blocks, certify, measure.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    # Spinning OpenMP threads make CPU training up to 10x slower on shared cores; it must be
    # set before torch is first imported (by `run`, `worker` or `serve`'s in-process worker).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)  # a dozen plugin lines a start
    try:
        return int(args.handler(args) or 0)
    except CliError as exc:
        print(f"jumpboard {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `jumpboard ... --json | head`: the reader left; say nothing more, like other tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    # `python -m app.cli`: run the imported module's main, so that the CliError the commands
    # raise (app.cli.CliError) is the class main catches, not a copy in __main__.
    from app.cli import main as imported_main

    sys.exit(imported_main())
