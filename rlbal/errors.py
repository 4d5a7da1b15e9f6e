"""Errors in what the user gave: one line naming the culprit, a non-zero exit, no traceback.

Every check of user input (recipe, data file, model folder, reward function, checkpoint, command-line
argument) raises a `UserError` subclass whose message names the culprit: the file, the row, the field or
the config key. `guarded` (every `rlbal` command runs in it) catches them and prints one line on stderr,

    rlbal: data error: train.jsonl line 3 (row 2): invalid JSON (Expecting value at column 1)

then exits with status 2; `--debug` (or RLBAL_DEBUG=1) lets the traceback through instead. Anything else
that escapes is a bug in rlbal and keeps its traceback.

Input that is accepted but probably not meant gets one line from `warn` instead:

    rlbal: warning: 9 prompts in the data < train.prompts_per_step=16: every step draws some prompts twice

This module imports nothing heavy: the data, config and checkpoint layers all raise these.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input; `kind` labels the line ('config error', 'data error', ...)."""

    kind = "input"

    def __str__(self) -> str:  # one line, whatever a wrapped library message contained
        return " ".join(super().__str__().split())


class ModelError(UserError):
    """A model name or folder that cannot be loaded (missing, not a HF folder, damaged weights)."""

    kind = "model"


class CheckpointError(UserError):
    """A checkpoint that cannot be resumed from (no checkpoint verifies, wrong data, a bad path)."""

    kind = "checkpoint"


class RewardError(UserError):
    """A reward function that cannot be resolved, or one that fails on every completion for several steps."""

    kind = "reward"


class SetupError(UserError):
    """Something the environment lacks for the requested run (an optional package, an asset)."""

    kind = "setup"


class UsageError(UserError):
    """Command-line arguments argparse rejects."""

    kind = "usage"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one `UsageError` line (`rlbal: usage error: ... (see rlbal eval --help)`)
    instead of the usage block and a message; `--help` is unchanged."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def is_main_process() -> bool:
    """True outside multi-process launches and on global rank 0 (accelerate / torchrun set RANK)."""
    return os.environ.get("RANK", "0") == "0"


_warned: set[str] = set()


def warn(message: str) -> None:
    """One `rlbal: warning: ...` line on stderr, once per message per process, on the main process only."""
    if message in _warned or not is_main_process():
        return
    _warned.add(message)
    print(f"rlbal: warning: {message}", file=sys.stderr, flush=True)


def report(err: UserError, prog: str = "rlbal") -> int:
    """Print the one line of a user error; returns the exit status."""
    print(f"{prog}: {err.kind} error: {err}", file=sys.stderr, flush=True)
    return EXIT_USER_ERROR


def debug_requested(argv: list[str]) -> bool:
    """Remove `--debug` from argv (anywhere); True when it was there or RLBAL_DEBUG is set."""
    found = "--debug" in argv
    while "--debug" in argv:
        argv.remove("--debug")
    return found or os.environ.get("RLBAL_DEBUG", "") not in ("", "0")


def guarded(command: Callable[[list[str]], int], argv: list[str], prog: str = "rlbal") -> int:
    """Run one command; a UserError becomes one line on stderr and exit status 2 (the traceback with --debug)."""
    debug = debug_requested(argv)
    try:
        return command(argv)
    except UserError as err:
        if debug:
            raise
        return report(err, prog)
