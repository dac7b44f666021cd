"""The one exception type users see (a message that names the file or key and says what to do), and the
exit codes every `flipgate` command and stage shares.

`flipgate gate`'s verdicts own 0, 1 and 2, so nothing else may exit with them: CI reads them as pass,
reject and inconclusive. A usage error and a crash get codes of their own (after BSD's sysexits.h), so a
misspelled flag can never read as "inconclusive" and a bug can never read as "rejected"."""

from __future__ import annotations

EXIT_PASS = 0
EXIT_REJECT = 1
EXIT_INCONCLUSIVE = 2
EXIT_BAD_INPUT = 3  # a FlipgateError: unreadable or inconsistent file, bad params key or value
EXIT_USAGE = 64  # EX_USAGE: the command line is wrong (unknown flag, missing or malformed value)
EXIT_INTERNAL = 70  # EX_SOFTWARE: an unexpected exception, i.e. a bug in flipgate
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader left (`| head`)

EXIT_STATUS_HELP = """\
exit status:
  0   pass
  1   reject
  2   inconclusive (the regression set cannot decide)
  3   bad input (a file or params key is missing, unreadable or inconsistent; the message names it)
  64  usage error (unknown flag, missing or malformed value)
  70  internal error (a bug: rerun with -v for the traceback and report it)
  130 interrupted, 141 output pipe closed (e.g. `| head`)
only 0 is a pass: a CI job must fail on anything else (on 2 unless it accepts inconclusive)"""

REPORT_TO = "the flipgate issue tracker, with the command line and the -v output"


class FlipgateError(Exception):
    """Bad input or configuration. The CLI and stages print it and exit EXIT_BAD_INPUT (3)."""


class UsageError(FlipgateError):
    """A wrong command line (argv), outside argparse: exits EXIT_USAGE (64)."""


def internal_error_line(what: str, exc: BaseException, rerun: str = "rerun with -v (or FLIPGATE_VERBOSE=1)") -> str:
    """One line for an unexpected exception: what failed, how to see the traceback, where to report it."""
    message = " ".join(str(exc).split())  # one line, whatever the exception says
    if len(message) > 300:
        message = message[:297] + "..."
    detail = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return (f"{what}: internal error: {detail}. This is a bug in flipgate, not a verdict: {rerun} for "
            f"the traceback and report it at {REPORT_TO}")
