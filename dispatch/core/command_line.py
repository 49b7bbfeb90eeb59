"""How our commands fail: one line on stderr and exit status 2, for a bad argument (argparse) as for
a file that cannot be read, a database that does not answer or a refused action. A command's own
verdicts keep their codes (`governance verify` exits 1 on a log that fails verification)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from dispatch.core.errors import CoopError

USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse's usage errors in one line (it prints the whole usage first); subcommands'
    parsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


class CommandFailed(Exception):
    """A failure whose message is already the line to print."""


def describe(error: BaseException) -> str:
    """The error's message in one line, without a traceback."""
    if isinstance(error, CoopError):
        return error.message
    if isinstance(error, CommandFailed):
        return str(error)
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    text = " ".join(str(error).split())
    text = text.split(" (Background on this error at:", 1)[0]  # SQLAlchemy's link to its docs
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def run(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    command: Callable[[argparse.Namespace], int],
) -> int:
    """Parse and run; any failure becomes one line `prog: error: ...` and exit status 2."""
    args = parser.parse_args(argv)
    try:
        return command(args)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        print(f"{parser.prog}: error: {describe(error)}", file=sys.stderr)
        return USAGE_ERROR
