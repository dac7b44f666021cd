"""The `flipgate` command. Subcommands live in their own modules and are imported lazily,
so `flipgate gate` never pays for (or needs) torch."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from flipgate.errors import FlipgateError

# name -> (module, help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "gate": ("flipgate.gate.cli", "judge a candidate's predictions against a baseline's (exit 0 pass, 1 reject, 2 inconclusive, 3 bad input)"),
    "show": ("flipgate.report.show", "print the results table (and the mean ± std over seeds)"),
    "report": ("flipgate.report.cli", "rebuild reports/report.{md,html}, the flip ledger and plots from predictions"),
}

BAD_INPUT = 3


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flipgate", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = (argv if argv is not None else sys.argv[1:])
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name in wanted:  # import only the module that runs
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return importlib.import_module(COMMANDS[args.command][0]).run(args)
    except FlipgateError as exc:
        print(f"flipgate {args.command}: error: {exc}", file=sys.stderr)
        return BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
