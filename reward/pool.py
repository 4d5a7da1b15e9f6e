"""A small process pool that times every call and replaces only the worker that hung or died.

``concurrent.futures.ProcessPoolExecutor`` can neither kill one stuck task nor survive a dead worker (the
whole pool breaks), so the executor drives its own workers: one duplex pipe each, chunks of items out,
one result message per item back (see ``reward.worker``). The parent waits on all pipes and process
sentinels at once, with the nearest per-item deadline as the wait's timeout, so a hang costs at most
``timeout_s`` and never blocks the other workers.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from reward.worker import worker_main

Item = tuple[str, str, dict]  # (completion, answer, meta)
Raw = tuple[float, str, str]  # (score, outcome, reason)


@dataclass
class _Worker:
    """Parent-side handle. chunk: indices sent and not yet answered, in order; deadline: when chunk[0]
    times out (or, before "ready", when start-up times out); inf when idle."""

    process: Any
    conn: Any
    deadline: float
    ready: bool = False
    chunk: deque[int] = field(default_factory=deque)


class WorkerPool:
    """``size`` worker processes started from ``ctx`` with ``worker_main(conn, os.getpid(), *worker_args)``."""

    def __init__(self, ctx, size: int, worker_args: tuple, timeout_s: float, startup_timeout_s: float) -> None:
        self._ctx, self._args = ctx, worker_args
        self.timeout_s, self.startup_timeout_s = timeout_s, startup_timeout_s
        self.restarts = 0  # workers replaced after a timeout or a crash, over the pool's life
        self._closed = False
        self._workers = [self._spawn() for _ in range(size)]

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        args = (child_conn, os.getpid(), *self._args)
        process = self._ctx.Process(target=worker_main, args=args, daemon=True, name="reward")
        process.start()
        child_conn.close()  # the child's end lives in the child only, so its death reads as EOF here
        return _Worker(process, parent_conn, deadline=time.monotonic() + self.startup_timeout_s)

    def run(self, items: Sequence[Item], chunk_size: int, batch_timeout_s: float | None = None) -> list[Raw]:
        """(score, outcome, reason) per item, in order; timeouts and crashes become outcomes. With
        batch_timeout_s, whatever is unfinished by then is a "timeout" too (its workers are replaced)."""
        if self._closed:
            raise RuntimeError("WorkerPool.run after close()")
        for worker in [w for w in self._workers if w.chunk]:
            # Work left over from an interrupted run (e.g. KeyboardInterrupt): its results must not land in
            # this run's slots, and the worker may be mid-call, so it is replaced.
            worker.chunk.clear()
            self._replace(worker, deque())
        results: list[Raw | None] = [None] * len(items)
        todo = deque(list(range(i, min(i + chunk_size, len(items)))) for i in range(0, len(items), chunk_size))
        left = len(items)
        batch_deadline = math.inf if batch_timeout_s is None else time.monotonic() + batch_timeout_s
        while left:
            self._dispatch(todo, items)
            nearest = min(min(w.deadline for w in self._workers), batch_deadline)
            timeout = None if nearest == math.inf else max(nearest - time.monotonic(), 0.0)
            wait([w.conn for w in self._workers] + [w.process.sentinel for w in self._workers], timeout)
            for worker in list(self._workers):
                left -= self._collect(worker, results, todo)
            if left and time.monotonic() >= batch_deadline:
                left -= self._expire(results, todo, batch_timeout_s)
        return results  # type: ignore[return-value]  # every slot was filled: left == 0

    def wait_ready(self) -> None:
        """Block until every worker has reported "ready" (start-up failures raise here)."""
        while not all(w.ready for w in self._workers):
            nearest = min(w.deadline for w in self._workers)
            wait(
                [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers],
                max(nearest - time.monotonic(), 0.0),
            )
            for worker in list(self._workers):
                self._collect(worker, [], deque())  # idle workers: only "ready" or a death can arrive

    def _dispatch(self, todo: deque[list[int]], items: Sequence[Item]) -> None:
        for worker in self._workers:
            if not todo:
                return
            if not worker.ready or worker.chunk:
                continue
            chunk = todo.popleft()
            try:
                worker.conn.send(("score", [(i, *items[i]) for i in chunk]))
            except (BrokenPipeError, ConnectionResetError):  # died while idle; _collect replaces it
                todo.appendleft(chunk)
                continue
            worker.chunk.extend(chunk)
            worker.deadline = time.monotonic() + self.timeout_s

    def _collect(self, worker: _Worker, results: list, todo: deque[list[int]]) -> int:
        done = self._drain(worker, results)
        if worker.process.exitcode is not None:
            return done + self._drain(worker, results) + self._on_death(worker, results, todo)
        if time.monotonic() >= worker.deadline:
            return done + self._on_overdue(worker, results, todo)
        return done

    def _drain(self, worker: _Worker, results: list) -> int:
        done = 0
        while worker.conn.poll():
            try:
                message = worker.conn.recv()
            except (EOFError, ConnectionResetError):  # the worker is gone; _on_death handles it
                return done
            if message[0] == "ready":
                worker.ready, worker.deadline = True, math.inf
            elif message[0] == "fatal":
                self.close()
                raise RuntimeError(f"reward worker failed to start:\n{message[1]}")
            else:
                _, index, score, outcome, reason = message
                worker.chunk.popleft()
                results[index] = (score, outcome, reason)
                done += 1
                worker.deadline = time.monotonic() + self.timeout_s if worker.chunk else math.inf
        return done

    def _on_death(self, worker: _Worker, results: list, todo: deque[list[int]]) -> int:
        code = worker.process.exitcode
        if not worker.ready:
            self.close()
            raise RuntimeError(f"reward worker exited with code {code} during start-up")
        done = 0
        if worker.chunk:
            index = worker.chunk.popleft()
            results[index] = (0.0, "error", f"worker died (exit code {code}) while scoring this completion")
            done = 1
        self._replace(worker, todo)
        return done

    def _on_overdue(self, worker: _Worker, results: list, todo: deque[list[int]]) -> int:
        if not worker.ready:
            self.close()
            raise RuntimeError(f"reward worker not ready after {self.startup_timeout_s:g} s (startup_timeout_s)")
        index = worker.chunk.popleft()
        results[index] = (0.0, "timeout", f"no result within {self.timeout_s:g} s; worker killed")
        self._replace(worker, todo)
        return 1

    def _expire(self, results: list, todo: deque[list[int]], batch_timeout_s: float | None) -> int:
        expired = [i for chunk in todo for i in chunk]
        todo.clear()
        for worker in [w for w in self._workers if w.chunk]:
            expired += worker.chunk
            worker.chunk.clear()
            self._replace(worker, todo)
        for index in expired:
            results[index] = (0.0, "timeout", f"batch not finished within batch_timeout_s={batch_timeout_s:g} s")
        return len(expired)

    def _replace(self, worker: _Worker, todo: deque[list[int]]) -> None:
        if worker.chunk:  # not started yet: first in line for the next free worker
            todo.appendleft(list(worker.chunk))
        _kill(worker)
        self._workers[self._workers.index(worker)] = self._spawn()
        self.restarts += 1

    def close(self) -> None:
        """Ask every worker to stop, kill those still running a second later (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            _ask_stop(worker)
        deadline = time.monotonic() + 1.0
        for worker in self._workers:
            worker.process.join(max(deadline - time.monotonic(), 0.0))
            _kill(worker)


def _ask_stop(worker: _Worker) -> None:
    if worker.process.exitcode is None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # already gone: nothing to ask
            worker.conn.send(("stop",))


def _kill(worker: _Worker) -> None:
    if worker.process.exitcode is None:
        worker.process.kill()
    worker.process.join()
    worker.conn.close()
