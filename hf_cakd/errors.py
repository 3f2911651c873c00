"""What a run can stop on, and the exit code each problem gives a command-line run.

Exit codes: 0 done; 1 an unexpected internal error (its traceback is kept, it is a bug);
2 :class:`UsageError`; 3 :class:`InputError`; 4 :class:`NumericalError`; 75 :class:`Preempted`
(``EX_TEMPFAIL``: run the same command again to resume).

:func:`run_cli` turns a :class:`DistillationError` into one short message on stderr and its exit
code. Every class takes a single message argument, so torch can rebuild it when the error is
raised inside a DataLoader worker process.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

DEBUG_FLAG = "--debug"
DEBUG_ENV = "HF_CAKD_DEBUG"

# torch re-raises a worker's error as type(err)("Caught <Type> in DataLoader worker process N.\n
# Original Traceback (most recent call last): ... <module>.<Type>: <message>"), keeping no other trace of the
# original message (torch 2.14.1, torch/_utils.py ExceptionWrapper); tests/test_errors.py
# (test_an_error_from_a_dataloader_worker_arrives_with_its_original_message) fails when that wording changes.
_WORKER_WRAPPER = re.compile(r"\ACaught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


class DistillationError(Exception):
    """A problem the user can fix; subclasses set the exit code."""

    exit_code = 1


class UsageError(DistillationError):
    """A flag is missing, unknown or has a value it cannot take."""

    exit_code = 2


class InputError(DistillationError):
    """The data, a model, a checkpoint or the label space cannot be used as given."""

    exit_code = 3


class NumericalError(DistillationError, FloatingPointError):
    """A loss became NaN or infinite (a ``FloatingPointError`` too, as it used to be)."""

    exit_code = 4


class Preempted(DistillationError):
    """SIGTERM or SIGINT stopped training after a complete checkpoint was written."""

    exit_code = 75


def user_message(err: BaseException) -> str:
    """The error's own message, without torch's DataLoader-worker wrapper around it."""
    message = str(err)
    if not _WORKER_WRAPPER.match(message):
        return message
    # The traceback ends with "<module>.<Type>: <message>"; the message may span several lines.
    module, name = type(err).__module__, type(err).__qualname__
    marker = f"{name}: " if module in ("builtins", "__main__") else f"{module}.{name}: "
    start = message.rfind("\n" + marker)
    return message[start + 1 + len(marker) :].rstrip("\n") if start >= 0 else message


def run_cli(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> Any:
    """Call ``main(argv)`` and return its result; on a :class:`DistillationError` exit with its code.

    The error is printed as ``error: <message>`` on stderr, with its traceback only when
    ``--debug`` is in ``argv`` (it is removed before ``main`` sees it) or ``HF_CAKD_DEBUG=1``.
    Any other exception propagates: Python prints its traceback and exits with 1.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV) == "1"
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    try:
        return main(argv)
    except DistillationError as err:
        if debug:
            traceback.print_exc()
        print(f"error: {user_message(err)}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
