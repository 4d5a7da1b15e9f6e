r"""Math answers: extract the final answer, then check symbolic equivalence with math-verify.

math-verify is imported lazily (it pulls in sympy, ~0.7 s). Its own timeouts use ``signal.alarm``, which
raises outside the main thread, so it is always called with ``parsing_timeout=None, timeout_seconds=None``
and the wall-clock limit is enforced by ``reward.executor`` (which kills a hung worker). Called inline,
without the executor, a pathological answer can therefore run unbounded.

Plain answers (integers, decimals, fractions, thousands separators, a trailing unit or period, single
words) are decided first by ``reward.fast.fast_equal``, exactly as math-verify would decide them, in
microseconds; only what it leaves open is parsed by math-verify, with two exact speed-ups
(``reward.accel``: two-stage parsing, a polynomial test before ``simplify``). ``fast_path=False`` turns all
three off: every completion through math-verify as shipped (the reference the tests and benchmarks use).

Both answers are wrapped as ``$...$`` before parsing: math-verify reads a bare ``2\sqrt{2}`` as ``2`` and a bare
``(1,2)`` as nothing, but the delimited forms as ``2*sqrt(2)`` and an interval. Text that is not maths
("north-east") is kept by math-verify as a string and compared as such.

>>> result = math_reward(r"... so $x = \boxed{\frac{1}{2}}$", "0.5")
>>> result.score, result.outcome
(1.0, 'correct')
>>> math_reward("the answer is 2", "2").outcome  # strict mode wants \boxed{}
'unparsable'
>>> math_reward("the answer is 2", "2", extraction="boxed_or_last_number").outcome
'correct'
"""

from __future__ import annotations

import logging
from functools import lru_cache

from reward import accel
from reward.extract import clean, extract
from reward.fast import empty_box, fast_equal, parse_plain
from reward.result import RewardResult

PRELOAD = ("math_verify",)  # modules a worker imports before its first timed call


def _quiet_math_verify():
    import math_verify

    # math-verify warns once per process that its timeout is off; the executor enforces one instead.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    accel.install()
    return math_verify


def parse_answer(text: str, fast: bool = True) -> tuple:
    """math-verify's parse of ``$text$`` (a tuple of sympy objects and strings; empty if unreadable);
    ``fast``: with ``reward.accel``'s two-stage parse (the same parse tree)."""
    math_verify = _quiet_math_verify()
    with accel.accelerated(fast):
        return tuple(math_verify.parse(f"${text}$", parsing_timeout=None))


# Gold answers repeat across the n rollouts of a prompt and across epochs: parse each once per worker and route.
_parse_gold = lru_cache(maxsize=8192)(parse_answer)


def is_equivalent(gold: tuple, pred: tuple, fast: bool = True) -> bool:
    """math-verify's ``verify(gold, pred)`` (order matters: gold first), without its signal timeout;
    ``fast``: with ``reward.accel``'s speed-ups (the same verdict)."""
    math_verify = _quiet_math_verify()
    with accel.accelerated(fast):
        return bool(math_verify.verify(list(gold), list(pred), timeout_seconds=None))


def math_reward(
    completion: str, answer: str, *, extraction: str = "boxed", fast_path: bool = True, **meta
) -> RewardResult:
    r"""1.0 if the extracted answer is mathematically equivalent to the gold answer, else 0.0.

    extraction: one of ``reward.extract.EXTRACTIONS``; "boxed" (default) follows the usual
    "put the final answer in \boxed{}" instruction, "boxed_or_last_number" is lenient for small models.
    fast_path: decide plain answers without math-verify (``reward.fast``) and speed up math-verify on the
        rest (``reward.accel``); the same verdicts either way.

    >>> math_reward(r"so it is \boxed{2\sqrt{2}}", r"\sqrt{8}").outcome
    'correct'
    """
    prepared = _prepare(completion, answer, extraction)
    if isinstance(prepared, RewardResult):
        return prepared
    pred, gold_text = prepared
    decided = _fast_verdict(pred, gold_text) if fast_path else None
    if decided is not None:
        return decided
    gold = _parse_gold(gold_text, fast_path)
    if not gold:
        return RewardResult(0.0, "error", f"math-verify cannot read gold answer {gold_text!r}")
    parsed = parse_answer(pred, fast_path)
    if not parsed:
        return RewardResult(0.0, "unparsable", f"math-verify cannot read answer {pred!r}")
    return _verdict(is_equivalent(gold, parsed, fast_path), pred, gold_text)


def math_fast(
    completion: str, answer: str, *, extraction: str = "boxed", fast_path: bool = True, **meta
) -> RewardResult | None:
    """``math_reward``'s result when it needs no math-verify (no answer found, empty gold, a plain answer
    decided by ``reward.fast``), else None. Cheap and bounded: the executor runs it in the driver process."""
    prepared = _prepare(completion, answer, extraction)
    if isinstance(prepared, RewardResult):
        return prepared
    return _fast_verdict(*prepared) if fast_path else None


def _fast_verdict(pred: str, gold_text: str) -> RewardResult | None:
    if empty_box(pred) and parse_plain(gold_text) is not None:  # math-verify reads nothing in it, the gold it reads
        return RewardResult(0.0, "unparsable", f"math-verify cannot read answer {pred!r}")
    equal = fast_equal(pred, gold_text)
    return None if equal is None else _verdict(equal, pred, gold_text)


def _prepare(completion: str, answer: str, extraction: str) -> RewardResult | tuple[str, str]:
    """(extracted answer, cleaned gold), or the result when either is missing."""
    pred = extract(completion, extraction)
    if pred is None:
        return RewardResult(0.0, "unparsable", f"no answer found by extraction {extraction!r}")
    gold_text = clean(answer)
    if gold_text is None:
        return RewardResult(0.0, "error", f"gold answer {answer!r} is empty")
    return pred, gold_text


def _verdict(equal: bool, pred: str, gold_text: str) -> RewardResult:
    if equal:
        return RewardResult(1.0, "correct", f"answer {pred!r} is equivalent to gold {gold_text!r}")
    return RewardResult(0.0, "wrong", f"answer {pred!r} differs from gold {gold_text!r}")
