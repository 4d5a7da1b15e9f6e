"""RewardExecutor with real worker processes: results equal inline scoring, and hangs, exceptions and hard
crashes become counted outcomes within the time bound instead of stalling or killing the step."""

from __future__ import annotations

import time

import numpy as np
import pytest

from reward.combine import WeightedReward
from reward.executor import RewardExecutor, ScoreBatch
from reward.math import math_reward
from reward.registry import RewardSpec, RewardSpecError
from tests.reward import faulty_rewards

SCRIPTED = RewardSpec("tests.reward.faulty_rewards:scripted")
TIMEOUT_S = 1.0
SLACK_S = 4.0  # generous: CI has 2 shared cores, and a replaced worker needs a moment to start


MATH_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def math_pool():
    with RewardExecutor("math", num_workers=2, timeout_s=MATH_TIMEOUT_S, chunk_size=3) as executor:
        executor.wait_ready()
        executor.score([r"\boxed{1}"] * 4, ["1"] * 4)  # sympy's first-call warm-up in both workers, not timed below
        yield executor


@pytest.fixture(scope="module")
def scripted():
    with RewardExecutor(SCRIPTED, num_workers=2, timeout_s=TIMEOUT_S, chunk_size=3) as executor:
        executor.wait_ready()  # timings below are steady-state
        yield executor


def _math_rows() -> tuple[list[str], list[str]]:
    golds = [str(k % 9) for k in range(40)]
    shapes = [r"\boxed{%s}", r"\boxed{%s + 1}", "the answer is %s", r"\boxed{\frac{2 * %s}{2}}", r"\boxed{%s"]
    completions = [shapes[k % len(shapes)] % golds[k] for k in range(40)]
    return completions, golds


def test_pool_equals_inline_reference(math_pool):
    completions, golds = _math_rows()
    metas = [{"difficulty": k / 40} for k in range(40)]  # extra meta keys are passed and ignored
    want = [math_reward(c, g) for c, g in zip(completions, golds, strict=True)]
    batch = math_pool.score(completions, golds, metas)
    assert batch.outcomes == [r.outcome for r in want]
    np.testing.assert_array_equal(batch.scores, [r.score for r in want])
    assert batch.reasons == [r.reason for r in want]
    np.testing.assert_array_equal(batch.correct, [r.outcome == "correct" for r in want])
    # 5 shapes, 8 completions each: boxed gold (correct), boxed gold + 1 (wrong), unboxed (unparsable in
    # strict mode), boxed 2g/2 (correct), truncated box (unparsable) -> 16 / 8 / 16
    assert batch.counts == {"correct": 16, "wrong": 8, "unparsable": 16, "timeout": 0, "error": 0}


def test_hang_is_killed_at_the_timeout(scripted):
    restarts = scripted._pool.restarts
    start = time.perf_counter()
    batch = scripted.score(["a", "hang", "a", "b", "a", "a"], ["a"] * 6)
    wall = time.perf_counter() - start
    assert batch.outcomes == ["correct", "timeout", "correct", "wrong", "correct", "correct"]
    assert TIMEOUT_S <= wall < TIMEOUT_S + SLACK_S
    assert scripted._pool.restarts == restarts + 1
    assert "no result within 1 s" in batch.reasons[1]


def test_timeout_is_per_call_not_per_chunk(scripted):
    # One chunk of three 0.4 s calls takes 1.2 s > timeout, but no single call exceeds 1 s.
    batch = scripted.score(["sleep:0.4"] * 3, ["sleep"] * 3)
    assert batch.outcomes == ["correct"] * 3


def test_hangs_in_one_chunk_cost_one_timeout_each(scripted):
    # Chunks [0, 1, 2] and [3]: worker A hangs on 0 (killed at 1 s), worker B, done with 3, takes the
    # rest [1, 2] and hangs on 1 (killed at 2 s); a fresh worker scores 2. Hangs run one after the other
    # within a chain, in parallel across workers: the bound is ceil(hangs / workers) timeouts, here 2.
    start = time.perf_counter()
    batch = scripted.score(["hang", "hang", "a", "a"], ["a"] * 4)
    wall = time.perf_counter() - start
    assert batch.outcomes == ["timeout", "timeout", "correct", "correct"]
    assert 2 * TIMEOUT_S <= wall < 2 * TIMEOUT_S + SLACK_S


def test_hangs_in_parallel_cost_one_timeout():
    with RewardExecutor(SCRIPTED, num_workers=2, timeout_s=TIMEOUT_S, chunk_size=1) as executor:
        executor.wait_ready()
        start = time.perf_counter()
        batch = executor.score(["hang", "hang", "a", "a"], ["a"] * 4)
        wall = time.perf_counter() - start
    assert batch.outcomes == ["timeout", "timeout", "correct", "correct"]
    assert TIMEOUT_S <= wall < TIMEOUT_S + SLACK_S


def test_raise_is_an_error_without_restart(scripted):
    restarts = scripted._pool.restarts
    batch = scripted.score(["raise", "a"], ["a", "a"])
    assert batch.outcomes == ["error", "correct"]
    assert batch.reasons[0] == "RuntimeError: scripted failure"
    assert scripted._pool.restarts == restarts  # an exception does not cost the worker


@pytest.mark.parametrize("crash,code", [("exit", 3), ("segfault", -11)])
def test_hard_crash_is_an_error_and_the_chunk_goes_on(scripted, crash, code):
    restarts = scripted._pool.restarts
    batch = scripted.score([crash, "a", "b", "a", "a", "a"], ["a"] * 6)  # chunk of 3: the crash leads the first
    assert batch.outcomes == ["error", "correct", "wrong", "correct", "correct", "correct"]
    assert f"exit code {code}" in batch.reasons[0]
    assert scripted._pool.restarts == restarts + 1


def test_real_math_verify_hang_is_killed(math_pool):
    # sympy evaluates 10^(10^10) exactly: math-verify does not return on this (checked: > 20 s).
    completions = [r"\boxed{10^{10^{10}}}", r"\boxed{2}", r"\boxed{3}"]
    start = time.perf_counter()
    batch = math_pool.score(completions, ["1", "2", "4"])
    wall = time.perf_counter() - start
    assert batch.outcomes == ["timeout", "correct", "wrong"]
    assert MATH_TIMEOUT_S <= wall < MATH_TIMEOUT_S + SLACK_S


def test_metrics_by_hand():
    with RewardExecutor(SCRIPTED, num_workers=1, timeout_s=TIMEOUT_S, failure_score=-1.0) as executor:
        first = executor.score(["a", "b", "raise", "a"], ["a"] * 4)
        second = executor.score(["a", "raise"], ["a", "a"])  # e.g. a refill round within the same step
        step = executor.metrics()
        idle = executor.metrics()
    np.testing.assert_array_equal(second.scores, [1.0, -1.0])  # the error gets failure_score
    # window = both calls: correct 2 + 1, wrong 1, error 1 + 1 over 6 completions;
    # scores 1 + 0 - 1 + 1 + 1 - 1 = 1 -> mean 1/6
    assert step["reward/completions"] == 6.0
    assert [step[f"reward/outcome/{o}"] for o in ("correct", "wrong", "unparsable", "timeout", "error")] == [
        3.0,
        1.0,
        0.0,
        0.0,
        2.0,
    ]
    assert step["reward/outcome_frac/error"] == 2 / 6 and step["reward/score_mean"] == 1 / 6
    assert step["reward/seconds"] == first.seconds + second.seconds
    # the next window is empty, the totals stay
    assert idle["reward/completions"] == 0.0 and idle["reward/score_mean"] == 0.0
    assert idle["reward/outcome_frac/correct"] == 0.0 and idle["reward/total/error"] == 2.0
    assert step.keys() == idle.keys() and all(isinstance(v, float) for v in step.values())
    assert step["reward/worker_restarts"] == 0.0


def test_batch_timeout_bounds_the_whole_call():
    # Per-call timeout 10 s, but the call as a whole gets 1 s: worker A sleeps on #0, worker B scores #1, #2
    # and sleeps on #3; at 1 s #0 and #3 are in flight and #4 never started: all three are timeouts.
    with RewardExecutor(SCRIPTED, num_workers=2, timeout_s=10.0, chunk_size=1, batch_timeout_s=1.0) as executor:
        executor.wait_ready()
        start = time.perf_counter()
        batch = executor.score(["sleep:5", "a", "a", "sleep:5", "a"], ["a"] * 5)
        wall = time.perf_counter() - start
    assert batch.outcomes == ["timeout", "correct", "correct", "timeout", "timeout"]
    assert "batch_timeout_s=1 s" in batch.reasons[4]
    assert 1.0 <= wall < 1.0 + SLACK_S


def test_inline_mode_has_the_same_outcomes():
    executor = RewardExecutor(SCRIPTED, num_workers=0)
    batch = executor.score(["a", "raise", "b"], ["a", "a", "a"])
    assert batch.outcomes == ["correct", "error", "wrong"]
    assert batch.counts == {"correct": 1, "wrong": 1, "unparsable": 0, "timeout": 0, "error": 1}
    assert executor.metrics()["reward/worker_restarts"] == 0.0


def test_module_level_callable_is_accepted_and_lambda_is_not():
    with RewardExecutor(faulty_rewards.scripted, num_workers=1) as executor:
        assert executor.specs == (SCRIPTED,)
        assert executor.score(["a"], ["a"]).outcomes == ["correct"]
    with pytest.raises(ValueError, match="cannot be re-imported in a worker"):
        RewardExecutor(lambda completion, answer: 1.0, num_workers=1)
    with pytest.raises(ValueError, match="cannot be re-imported in a worker"):  # an instance has no import path
        RewardExecutor(WeightedReward((("scripted", faulty_rewards.scripted, 1.0),)), num_workers=1)


def test_bad_spec_fails_before_any_worker_starts():
    with pytest.raises(RewardSpecError, match="module 'no_such_pkg' not found"):
        RewardExecutor("no_such_pkg:fn", num_workers=2)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"num_workers": -1}, "num_workers"),
        ({"timeout_s": 0.0}, "timeout_s"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"start_method": "thread"}, "start_method"),
        ({"startup_timeout_s": -1.0}, "startup_timeout_s"),
        ({"batch_timeout_s": 0.0}, "batch_timeout_s"),
    ],
)
def test_argument_validation(kwargs, field):
    with pytest.raises(ValueError, match=f"RewardExecutor.{field}"):
        RewardExecutor(SCRIPTED, **kwargs)


def test_length_mismatch(scripted):
    with pytest.raises(ValueError, match="completions=2, answers=1, metas=2"):
        scripted.score(["a", "b"], ["a"], [{}, {}])


def test_empty_batch(scripted):
    batch = scripted.score([], [])
    assert isinstance(batch, ScoreBatch) and batch.scores.shape == (0,) and sum(batch.counts.values()) == 0


def test_close_is_idempotent_and_final():
    executor = RewardExecutor(SCRIPTED, num_workers=1)
    executor.close()
    executor.close()
    with pytest.raises(RuntimeError, match="after close"):
        executor.score(["a"], ["a"])
