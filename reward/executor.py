"""The reward executor: scores a step's completions in a pool of worker processes with a per-call timeout.

    with RewardExecutor(RewardSpec("math"), num_workers=2, timeout_s=5.0) as rewards:
        batch = rewards.score(completions, answers, metas)   # ScoreBatch: scores (N,), outcomes, correct (N,)
        log(rewards.metrics())                                # "reward/outcome/timeout", ...

Guarantees: every completion gets a score and one of ``OUTCOMES``; a call that runs past ``timeout_s`` is
counted as "timeout" (its worker is killed and replaced, the rest of its chunk goes to another worker), a
call that raises or a worker that dies (``os._exit``, a segfault) is counted as "error"; neither stops the
step. Failures get ``failure_score`` and are logged per batch. The pool lives across steps; work is sent in
chunks of ``chunk_size`` completions to keep the per-step overhead low; only a hung or dead worker is replaced.

Before the pool, the *prefilter* (``reward.prefilter``) scores in this process every completion a built-in
reward can decide cheaply and exactly: for "math", plain answers (integers, decimals, fractions, a unit,
multiple-choice letters; ``reward.fast``) and missing answers; for the standard-library rewards (numeric,
exact, gsm8k, format), everything. Only the rest (symbolic answers, custom rewards) goes to the workers,
in chunks of about a quarter of each worker's share (``chunk_size=None``). Verdicts do not depend on the route.

Workers start with ``start_method`` "forkserver" by default: safe in a trainer with many threads (torch,
vLLM), unlike "fork". As with any spawn/forkserver child, a worker imports the ``__main__`` module of the
trainer, so the entry point must keep heavy imports under ``if __name__ == "__main__"`` or in ``main()``.
Workers exit by themselves when this process dies. ``num_workers=0`` scores inline in the calling process,
with no timeout (for evaluation and debugging).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from reward.pool import WorkerPool
from reward.prefilter import build_prefilter
from reward.registry import RewardSpec, RewardSpecError, as_specs, build_reward, preload_modules, resolve_reward
from reward.result import FAILURES, OUTCOMES
from reward.worker import score_one

logger = logging.getLogger(__name__)
START_METHODS = ("forkserver", "spawn", "fork")
MAX_CHUNK = 64


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of one ``score`` call, in input order.

    scores:   (N,) float64 reward per completion (``failure_score`` for timeouts and errors).
    outcomes: (N,) one of OUTCOMES per completion.
    correct:  (N,) bool, outcome == "correct" (what the difficulty classifier consumes).
    reasons:  (N,) one line per completion.
    counts:   completions per outcome, every outcome present (zeros included).
    seconds:  wall time of the call.
    """

    scores: np.ndarray
    outcomes: list[str]
    correct: np.ndarray
    reasons: list[str]
    counts: dict[str, int]
    seconds: float

    def __post_init__(self) -> None:
        n = len(self.scores)
        if not len(self.outcomes) == len(self.correct) == len(self.reasons) == n:
            raise ValueError(f"ScoreBatch fields must all have length {n} (scores)")


class RewardScorer(Protocol):
    """What the training loop needs from its reward executor (`RewardExecutor` is the one it builds)."""

    def score(
        self, completions: Sequence[str], answers: Sequence[str], metas: Sequence[dict] | None = None
    ) -> ScoreBatch:
        """Score completion i against answers[i] with metas[i] as keyword arguments; results in input order."""
        ...

    def metrics(self) -> dict[str, float]:
        """`reward/*` over the ``score`` calls since the previous ``metrics()`` (one training step)."""
        ...

    def state_dict(self) -> dict[str, int]: ...

    def load_state_dict(self, state: dict[str, int]) -> None: ...

    def close(self) -> None: ...


@dataclass
class _Window:
    """Running sums over the batches of one metrics window."""

    counts: Counter[str] = field(default_factory=Counter)
    n: int = 0
    fast: int = 0  # decided by the prefilter, in this process
    score_sum: float = 0.0
    seconds: float = 0.0

    def add(self, batch: ScoreBatch) -> None:
        self.counts.update(batch.outcomes)
        self.n += len(batch.outcomes)
        self.score_sum += float(batch.scores.sum())
        self.seconds += batch.seconds


def spec_of(reward: str | RewardSpec | Sequence[RewardSpec] | Callable) -> tuple[RewardSpec, ...]:
    """Reward description as plain specs, which can cross into a worker; a callable must be importable
    as "module:qualname" there (a module-level function), since closures and lambdas cannot be re-imported."""
    if isinstance(reward, (str, RewardSpec)) or not callable(reward):
        return as_specs(reward)
    path = f"{getattr(reward, '__module__', None)}:{getattr(reward, '__qualname__', None)}"
    if "<" not in path and _resolves_to(path, reward):
        return (RewardSpec(path),)
    raise ValueError(
        f"reward {reward!r} cannot be re-imported in a worker as {path!r}: pass a RewardSpec or a module-level function"
    )


def _resolves_to(path: str, reward: Callable) -> bool:
    try:
        return resolve_reward(path) is reward
    except RewardSpecError:  # e.g. a callable object: no importable name leads back to it
        return False


class RewardExecutor:
    """Scores completions with one reward (or a weighted sum) in ``num_workers`` processes.

    reward:          a built-in name, "package.module:function", a RewardSpec, several RewardSpecs (summed
                     with their weights, the first deciding the outcome) or a module-level function.
    timeout_s:       wall-clock limit per completion; the worker running a call past it is killed.
    chunk_size:      completions per message to a worker; None = ceil(pending / (4 * num_workers)), at most
                     MAX_CHUNK (large messages, yet every worker gets several, which balances the load).
    threshold:       a plain-float reward is "correct" when >= threshold.
    failure_score:   score given to "timeout" and "error" outcomes.
    startup_timeout_s: a worker that is not ready by then is a fatal error (broken install or spec).
    batch_timeout_s: optional bound on one ``score`` call: what is unfinished by then counts as "timeout".
                     Without it, hangs cost ``timeout_s`` each, overlapping across workers.
    prefilter:       decide what the built-in rewards can decide cheaply in this process (``reward.prefilter``);
                     False sends every completion to the workers (a baseline for benchmarks).
    """

    def __init__(
        self,
        reward: str | RewardSpec | Sequence[RewardSpec] | Callable,
        num_workers: int = 2,
        timeout_s: float = 10.0,
        *,
        chunk_size: int | None = None,
        threshold: float = 1.0,
        failure_score: float = 0.0,
        start_method: str = "forkserver",
        startup_timeout_s: float = 120.0,
        batch_timeout_s: float | None = None,
        prefilter: bool = True,
    ) -> None:
        _check_args(num_workers, timeout_s, chunk_size, start_method, startup_timeout_s)
        if batch_timeout_s is not None and not batch_timeout_s > 0:
            raise ValueError(f"RewardExecutor.batch_timeout_s must be > 0 or None, got {batch_timeout_s}")
        self.specs = spec_of(reward)
        self._fn = build_reward(self.specs, threshold)  # resolves in this process first: spec errors fail here
        self._prefilter = build_prefilter(self.specs, threshold) if prefilter else None
        self.num_workers, self.timeout_s, self.chunk_size = num_workers, timeout_s, chunk_size
        self.threshold, self.failure_score, self.batch_timeout_s = threshold, failure_score, batch_timeout_s
        self._pool = None
        if num_workers > 0:
            preload = preload_modules(self.specs)
            args = (self.specs, threshold, preload)
            self._pool = WorkerPool(_context(start_method, preload), num_workers, args, timeout_s, startup_timeout_s)
        self._window = _Window()  # everything scored since the last metrics() call (one training step)
        self._totals: Counter[str] = Counter()

    def score(
        self, completions: Sequence[str], answers: Sequence[str], metas: Sequence[dict] | None = None
    ) -> ScoreBatch:
        """Score completion i against answers[i] with metas[i] as keyword arguments; results in input order."""
        metas = [{} for _ in completions] if metas is None else metas
        if not len(completions) == len(answers) == len(metas):
            raise ValueError(
                f"score needs as many answers and metas as completions: "
                f"completions={len(completions)}, answers={len(answers)}, metas={len(metas)}"
            )
        start = time.perf_counter()
        items = list(zip(completions, answers, metas, strict=True))
        raw = [self._prefilter(c, a, m) for c, a, m in items] if self._prefilter else [None] * len(items)
        pending = [i for i, r in enumerate(raw) if r is None]
        self._window.fast += len(items) - len(pending)
        if self._pool is None:
            for i in pending:
                raw[i] = score_one(self._fn, *items[i], self.threshold)
        elif pending:
            chunk = self.chunk_size or min(MAX_CHUNK, -(-len(pending) // (4 * self.num_workers)))
            for i, r in zip(pending, self._pool.run([items[i] for i in pending], chunk, self.batch_timeout_s)):
                raw[i] = r
        batch = self._batch(raw, time.perf_counter() - start)
        self._log(batch)
        return batch

    def wait_ready(self) -> None:
        """Block until every worker has started, e.g. before the first step so start-up is not timed in it."""
        if self._pool is not None:
            self._pool.wait_ready()

    def _batch(self, raw: list[tuple[float, str, str]], seconds: float) -> ScoreBatch:
        outcomes = [outcome for _, outcome, _ in raw]
        scores = np.array([self.failure_score if o in FAILURES else s for (s, o, _) in raw], dtype=np.float64)
        counts = dict.fromkeys(OUTCOMES, 0) | Counter(outcomes)
        correct = np.array([o == "correct" for o in outcomes], dtype=bool)
        batch = ScoreBatch(scores, outcomes, correct, [r for _, _, r in raw], counts, seconds)
        self._window.add(batch)
        self._totals.update(outcomes)
        return batch

    def _log(self, batch: ScoreBatch) -> None:
        failed = [i for i, o in enumerate(batch.outcomes) if o in FAILURES]
        if failed:
            first = failed[0]
            logger.warning(
                "reward: %d timeout, %d error of %d completions (first: #%d %s: %s)",
                batch.counts["timeout"],
                batch.counts["error"],
                len(batch.outcomes),
                first,
                batch.outcomes[first],
                batch.reasons[first],
            )
        if batch.counts["unparsable"]:
            logger.info("reward: %d of %d completions unparsable", batch.counts["unparsable"], len(batch.outcomes))

    def metrics(self) -> dict[str, float]:
        """Flat namespaced floats over every ``score`` call since the previous ``metrics()`` call (a step may
        score several refill rounds), then the window restarts; "reward/total/*" and restarts are cumulative.

        reward/completions, reward/outcome/<o> (count), reward/outcome_frac/<o>, reward/score_mean,
        reward/seconds (wall time inside ``score``), reward/fast_frac (share decided by the prefilter),
        reward/total/<o>, reward/worker_restarts
        """
        window, self._window = self._window, _Window()
        n = window.n
        out: dict[str, float] = {"reward/completions": float(n)}
        for outcome in OUTCOMES:
            out[f"reward/outcome/{outcome}"] = float(window.counts[outcome])
            out[f"reward/outcome_frac/{outcome}"] = window.counts[outcome] / n if n else 0.0
        out["reward/score_mean"] = window.score_sum / n if n else 0.0
        out["reward/fast_frac"] = window.fast / n if n else 0.0
        out["reward/seconds"] = window.seconds
        out |= {f"reward/total/{o}": float(self._totals[o]) for o in OUTCOMES}
        out["reward/worker_restarts"] = float(self._pool.restarts if self._pool else 0)
        return out

    def state_dict(self) -> dict[str, int]:
        """The cumulative outcome counts behind "reward/total/*", for checkpoints (plain JSON)."""
        return {o: int(self._totals[o]) for o in OUTCOMES}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the "reward/total/*" counts of a checkpoint."""
        self._totals = Counter({o: int(state.get(o, 0)) for o in OUTCOMES})

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> RewardExecutor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _context(start_method: str, preload: tuple[str, ...]):
    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        # Workers forked from a server that already imported sympy etc. are ready in milliseconds, which is
        # what bounds the cost of replacing a hung worker. This takes effect only if this process has not
        # started its (process-wide) fork server yet; modules that fail to import there are skipped.
        ctx.set_forkserver_preload(["__main__", "reward.worker", *preload])
    return ctx


def _check_args(
    num_workers: int, timeout_s: float, chunk_size: int | None, start_method: str, startup_s: float
) -> None:
    if num_workers < 0:
        raise ValueError(f"RewardExecutor.num_workers must be >= 0, got {num_workers}")
    if not timeout_s > 0:
        raise ValueError(f"RewardExecutor.timeout_s must be > 0, got {timeout_s}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"RewardExecutor.chunk_size must be >= 1, got {chunk_size}")
    if start_method not in START_METHODS:
        raise ValueError(f"RewardExecutor.start_method must be one of {START_METHODS}, got {start_method!r}")
    if not startup_s > 0:
        raise ValueError(f"RewardExecutor.startup_timeout_s must be > 0, got {startup_s}")
