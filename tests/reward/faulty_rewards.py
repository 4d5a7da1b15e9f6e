"""Rewards that misbehave on purpose, for the executor tests (imported by name inside worker processes).

``scripted`` reads the completion as a command: "hang" spins forever, "sleep:S" sleeps S seconds, "raise"
raises, "exit" calls os._exit(3), "segfault" dereferences NULL; anything else scores 1.0 if it equals the
answer, else 0.0 (a plain float, so the executor's threshold decides the outcome).
"""

from __future__ import annotations

import ctypes
import os
import time


def scripted(completion: str, answer: str, **meta) -> float:
    if completion == "hang":
        while True:  # CPU-bound, like a sympy simplification that never ends
            pass
    if completion.startswith("sleep:"):
        time.sleep(float(completion.split(":")[1]))
    if completion == "raise":
        raise RuntimeError("scripted failure")
    if completion == "exit":
        os._exit(3)
    if completion == "segfault":
        ctypes.string_at(0)
    return 1.0 if completion.split(":")[0] == answer else 0.0


def only_completion(completion, answer):
    """A reward without **meta: the executor passes it no meta keys."""
    return float(completion == answer)


NOT_CALLABLE = 42
