"""The `flipgate` command. Subcommands live in their own modules and are imported lazily,
so `flipgate gate` never pays for (or needs) torch."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from flipgate.errors import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_STATUS_HELP,
    EXIT_USAGE,
    FlipgateError,
    UsageError,
    internal_error_line,
)

# name -> (module, help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "gate": ("flipgate.gate.cli", "judge a candidate's predictions against a baseline's (exit 0 pass, 1 reject, "
                                  "2 inconclusive, 3 bad input, 64 usage error, 70 internal error)"),
    "show": ("flipgate.report.show", "print the results table (and the mean ± std over seeds)"),
    "report": ("flipgate.report.cli", "rebuild reports/report.{md,html}, the flip ledger and plots from predictions"),
    "predict": ("flipgate.score", "write a model's predictions table on a data file (id, text, label), for the gate"),
}

class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which `flipgate gate` means as "inconclusive": exit 64 instead.
    No abbreviated flags: `--candidat` is a typo, and a CI script must not change meaning when a flag is added."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: ANN201 (argparse's signature: never returns)
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def build_parser(wanted: list[str]) -> Parser:
    """The parser; only the subcommands named in `wanted` (argv) get their arguments (and imports)."""
    parser = Parser(prog="flipgate", description=__doc__, epilog=EXIT_STATUS_HELP,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, formatter_class=argparse.RawDescriptionHelpFormatter)
        # also after the subcommand (`flipgate gate ... -v`); SUPPRESS keeps the top-level value otherwise
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name in wanted:  # import only the module that runs
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit status (see EXIT_STATUS_HELP); never raises, except for
    SystemExit from code that calls sys.exit itself."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv or os.environ.get("FLIPGATE_VERBOSE", "") not in ("", "0")
    command = "flipgate"
    try:
        try:
            args = build_parser(argv).parse_args(argv)
        except SystemExit as exc:  # --help (0) or a usage error (64): argparse has printed it
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
        command = f"flipgate {args.command}"
        verbose = verbose or args.verbose
        setup_logging(verbose)
        rc = importlib.import_module(COMMANDS[args.command][0]).run(args)
        sys.stdout.flush()  # a closed pipe must show here, not as a traceback at interpreter exit
        return rc
    except UsageError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FlipgateError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `flipgate show | head`: the reader has what it wanted
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        print(internal_error_line(command, exc), file=sys.stderr)
        return EXIT_INTERNAL


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not raise again (the recipe of
    Python's signal docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests) or already closed
        pass


if __name__ == "__main__":
    sys.exit(main())
