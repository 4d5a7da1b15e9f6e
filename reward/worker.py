"""The reward worker process: build the reward from its spec, then score chunks sent over a pipe.

Protocol (tuples over a ``multiprocessing`` connection):
    parent -> worker   ("score", [(index, completion, answer, meta), ...])  |  ("stop",)
    worker -> parent   ("ready",) once after start-up  |  ("fatal", text) if start-up failed
                       ("result", index, score, outcome, reason) per item, in the order received

One message per item lets the parent time every call on its own: the item after ``index`` starts when
``index``'s result is sent, so the parent knows which item hung and which ones to hand to another worker.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable

from reward.registry import build_reward
from reward.result import as_result

REASON_CHARS = 300  # reasons can quote whole completions; keep logs and pipes small


def score_one(fn: Callable, completion: str, answer: str, meta: dict, threshold: float) -> tuple[float, str, str]:
    """(score, outcome, reason) of one call; an exception becomes the outcome "error"."""
    try:
        result = as_result(fn(completion, answer, **meta), threshold)
    # Deliberately broad: a reward that raises (reasoning-gym scorers do) costs one "error", never the step.
    except Exception as exc:  # noqa: BLE001
        return 0.0, "error", f"{type(exc).__name__}: {exc}"[:REASON_CHARS]
    return result.score, result.outcome, result.reason[:REASON_CHARS]


def _exit_with_parent(parent_pid: int, period_s: float = 1.0) -> None:
    # A worker stuck in a hung reward never reads its pipe, so it would not notice the trainer dying; and
    # under "forkserver" its OS parent is the fork server, which its own children keep alive, so the
    # trainer's pid is watched instead.
    while True:
        time.sleep(period_s)
        try:
            os.kill(parent_pid, 0)
        except (ProcessLookupError, PermissionError):  # gone (or the pid now belongs to someone else)
            os._exit(1)


def _start(conn, reward, threshold: float, preload: tuple[str, ...]) -> Callable | None:
    try:
        for module in preload:
            importlib.import_module(module)
        fn = build_reward(reward, threshold)
    # Deliberately broad: any start-up failure is reported to the parent, which raises it as fatal.
    except Exception:  # noqa: BLE001
        conn.send(("fatal", traceback.format_exc()))
        return None
    conn.send(("ready",))
    return fn


def worker_main(conn, parent_pid: int, reward, threshold: float, preload: tuple[str, ...]) -> None:
    """Entry point of a worker process (``reward`` is a spec, see ``reward.registry.build_reward``);
    it exits when ``parent_pid`` (the process that scores) is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    fn = _start(conn, reward, threshold, preload)
    if fn is None:
        return
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent closed its end: nothing more to do
            return
        if message[0] == "stop":
            return
        for index, completion, answer, meta in message[1]:
            conn.send(("result", index, *score_one(fn, completion, answer, meta, threshold)))
