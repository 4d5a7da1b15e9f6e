"""The fast path (reward.fast, reward.prefilter): exact verdicts for plain answers, equal to math-verify's.

Every verdict the fast path gives is checked against math-verify itself (``math_reward(..., fast_path=False)``)
on the tables below, the reward test tables and the vendored GSM8K answers in several formats."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from reward.executor import RewardExecutor
from reward.fast import UNITS, fast_equal, parse_plain
from reward.math import math_fast, math_reward
from reward.prefilter import build_prefilter
from reward.registry import RewardSpec, build_reward
from tests.reward.test_gsm8k import ROWS as GSM8K_ROWS
from tests.reward.test_math import ROWS as MATH_ROWS
from tests.reward.test_numeric import NUMERIC_ROWS

PARSE_ROWS = [
    # text, value, decimal, why
    ("72", Fraction(72), False, "integer"),
    ("-3", Fraction(-3), False, "negative"),
    ("+3", Fraction(3), False, "explicit plus"),
    ("1,080", Fraction(1080), False, "thousands separator"),
    ("1,234,567.5", Fraction(2469135, 2), True, "separators and decimals"),
    ("2.50", Fraction(5, 2), True, "decimal"),
    ("12.", Fraction(12), False, "a trailing period"),
    (r"\$18", Fraction(18), False, "escaped dollar"),
    ("3/4", Fraction(3, 4), False, "slash fraction"),
    (r"-\dfrac{6}{8}", Fraction(-3, 4), False, "signed display fraction, reduced"),
    ("12 apples", Fraction(12), False, "a unit math-verify drops"),
    ("7 hours.", Fraction(7), False, "unit and period"),
    (r"12\text{ eggs}", Fraction(12), False, r"trailing \text{} of letters"),
    (r"0.5 \mathrm{cm}", Fraction(1, 2), True, r"\mathrm{} unit"),
    ("{12}", Fraction(12), False, "a LaTeX group around the answer"),
    ("{{ -3 }}", Fraction(-3), False, "nested groups"),
]


@pytest.mark.parametrize("text,value,decimal,why", PARSE_ROWS, ids=[r[3] for r in PARSE_ROWS])
def test_parse_plain_numbers(text, value, decimal, why):
    assert parse_plain(text).value == value and parse_plain(text).decimal == decimal, why


@pytest.mark.parametrize(
    "text",
    [
        "1,5",
        "1,0000",
        "0012",
        "1e3",
        "50%",
        "3/4 cups",
        "12 eggs",
        "12 dollars",
        "2x",
        r"\sqrt{2}",
        "1/0",
        "x = 3",
        "(1, 2)",
        "$5",
        "1234567/2",
        "1234567890.5",
        "0.1234567890123456",
        "- 3",
        "A.B",
        "",
        "{4",
        "{1}+{2}",
        "{1,000}",
    ],
)
def test_outside_the_grammar(text):
    # Each is either not plain or read differently by math-verify ("1,5" is a set, "12 eggs" is 12*E*g*g*s,
    # "50%" equals both 50 and 0.5, "3/4 cups" is 3/(4*c*p*s*u)); long fractions and decimals are left to it.
    assert parse_plain(text) is None or fast_equal(text, "1") is None


EQUAL_ROWS = [
    # pred, gold, verdict, why
    ("72", "72", True, "same integer"),
    ("71", "72", False, "integers differ"),
    ("-72", "72", False, "sign"),
    ("1,080", "1080", True, "separator"),
    ("1080.00", "1080", True, "decimal equal to the integer"),
    (r"\frac{3}{4}", "0.75", True, "fraction = decimal"),
    ("3/4", r"\frac{6}{8}", True, "equal fractions"),
    ("3/4", "0.76", False, "0.01 apart: far beyond 6-decimal rounding"),
    ("0.333333", "1/3", None, "math-verify rounds to 6 decimals: too close to call here"),
    ("0.3333", "1/3", False, "3.3e-5 apart"),
    ("2.0000001", "2", None, "1e-7 apart: math-verify says equal, left to it"),
    ("12 apples", "12", True, "unit dropped"),
    ("B", "B", True, "same letter"),
    ("A", "B", False, "different capital letters"),
    ("b", "B", None, "case: left to math-verify"),
    ("Paris", "paris", None, "words differing in case: left to math-verify"),
    ("north", "north", True, "same word"),
    ("7", "seven", None, "a number against a word"),
    ("{12}", "12", True, "braces are grouping"),
    ("{{-3}}", "-3", True, "nested grouping"),
    ("{10}", "12", False, "grouped, different"),
    ("{1,000}", "1000", None, "math-verify reads a comma inside braces as a set: left to it"),
    (r"\boxed{4", "4", None, "an unbalanced box: left to math-verify (it reads the string '{4')"),
]


@pytest.mark.parametrize("pred,gold,verdict,why", EQUAL_ROWS, ids=[r[3] for r in EQUAL_ROWS])
def test_fast_equal_table_and_math_verify_agrees(pred, gold, verdict, why):
    assert fast_equal(pred, gold) is verdict, why
    slow = math_reward(pred, gold, extraction="raw", fast_path=False)
    if verdict is not None:
        assert slow.outcome == ("correct" if verdict else "wrong"), f"{why}: math-verify says {slow.reason}"


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_is_dropped_by_math_verify(unit):
    for text in (f"12 {unit}", f"12 {unit}s", f"12 {unit}es"):
        for gold, verdict in (("12", True), ("13", False)):
            assert fast_equal(text, gold) is verdict
            assert math_reward(text, gold, extraction="raw", fast_path=False).outcome == (
                "correct" if verdict else "wrong"
            ), text


def test_capital_letters_against_math_verify():
    letters = "ABCDEFGHIJ"  # multiple-choice options
    for a in letters:
        for b in letters:
            assert fast_equal(a, b) is (a == b)
            assert math_reward(a, b, extraction="raw", fast_path=False).outcome == ("correct" if a == b else "wrong")


@pytest.mark.parametrize(
    "completion, gold, decided",
    [
        (r"The answer is \boxed{}.", "12", True),  # extracted "\boxed{}" (the box itself is empty)
        (r"The answer is \boxed{\boxed{ }}.", "-3", True),
        (r"The answer is \boxed{}.", r"\sqrt{2}", False),  # a gold math-verify might not read: its call
    ],
)
def test_an_empty_box_is_unparsable_like_math_verify_says(completion, gold, decided):
    fast = math_fast(completion, gold, extraction="boxed_or_last_number")
    slow = math_reward(completion, gold, extraction="boxed_or_last_number", fast_path=False)
    assert (fast is not None) is decided
    if decided:
        assert fast.outcome == slow.outcome == "unparsable" and fast.reason == slow.reason


def _table_rows() -> list[tuple[str, str, str]]:
    rows = [(c, g, e) for c, g, e, *_ in MATH_ROWS]
    rows += [(c, g, kw.get("extraction", "boxed_or_last_number")) for c, g, kw, *_ in NUMERIC_ROWS]
    rows += [(c, g, kw.get("extraction", "gsm8k")) for c, g, kw, *_ in GSM8K_ROWS]
    return rows


@pytest.mark.parametrize("completion,gold,extraction", _table_rows())
def test_reward_tables_same_verdict_with_and_without_fast_path(completion, gold, extraction):
    fast = math_reward(completion, gold, extraction=extraction)
    slow = math_reward(completion, gold, extraction=extraction, fast_path=False)
    assert (fast.outcome, fast.score) == (slow.outcome, slow.score), (fast.reason, slow.reason)


def _gsm8k_completions(gold: str) -> tuple[list[str], list[str]]:
    n = int(gold)

    def half(twice: int) -> str:  # twice / 2 as a boxed LaTeX fraction
        return rf"\boxed{{{'-' if twice < 0 else ''}\frac{{{abs(twice)}}}{{2}}}}"

    right = [
        rf"so \boxed{{{n:,}}}",
        f"The answer is {gold}.",
        rf"\boxed{{{gold}.00}}",
        rf"\boxed{{\${gold}}}",
        f"The answer is: {gold} hours.",
        half(2 * n),
    ]
    wrong = [
        f"so {n + 1}",
        rf"\boxed{{{n * 10 if n else 7}}}",
        rf"\boxed{{{-n if n else 1}}}",
        f"The answer is {gold}.5",
        half(2 * n + 1),
    ]
    return right, wrong


def test_gsm8k_answers_same_verdicts_as_math_verify():
    from rlbal.data.gsm8k import gsm8k

    golds = sorted(set(gsm8k("train").answers + gsm8k("test").answers), key=int)
    assert len(golds) == 952  # distinct final answers of the 8,792 problems (all integers)
    undecided = 0
    for gold in golds:
        right, wrong = _gsm8k_completions(gold)
        for completion in right + wrong:
            fast = math_fast(completion, gold, extraction="boxed_or_last_number")
            if fast is None:
                # only \frac{a}{b} with a 7-digit numerator is outside the grammar (its numbers are <= 6 digits)
                assert r"\frac" in completion and abs(int(gold)) * 2 >= 10**6, completion
                undecided += 1
                continue
            slow = math_reward(completion, gold, extraction="boxed_or_last_number", fast_path=False)
            assert (fast.outcome, fast.score) == (slow.outcome, slow.score), (completion, gold, slow.reason)
            assert fast.outcome == ("correct" if completion in right else "wrong"), (completion, gold)
    big = sum(abs(int(gold)) >= 500_000 for gold in golds)
    assert big == 30 and undecided == 2 * big  # two \frac forms each, with numerators of 7+ digits


def test_prefilter_of_a_weighted_sum_equals_the_reward():
    specs = (RewardSpec("math", {"extraction": "boxed_or_last_number"}), RewardSpec("format", weight=0.1))
    decide, full = build_prefilter(specs, threshold=1.0), build_reward(specs, threshold=1.0)
    for completion in [r"so \boxed{7}", "it is 7", r"\boxed{8}", "no idea"]:
        want = full(completion, "7")
        assert decide(completion, "7", {}) == (want.score, want.outcome, want.reason)
    assert decide(r"\boxed{\sqrt{49}}", "7", {}) is None  # the math part needs math-verify


def test_no_prefilter_for_rewards_without_a_fast_part():
    assert build_prefilter((RewardSpec("tests.reward.faulty_rewards:scripted"),), threshold=1.0) is None
    assert build_prefilter((RewardSpec("math"), RewardSpec("rgym", weight=0.5)), threshold=1.0) is None


def test_executor_routes_only_undecided_completions_to_workers():
    completions = [r"\boxed{12}", r"\boxed{13}", "no answer", r"\boxed{2\sqrt{2}}", r"\boxed{\sqrt{8}}"]
    golds = ["12", "12", "12", r"\sqrt{8}", "3"]
    with RewardExecutor("math", num_workers=1, timeout_s=5.0) as executor:
        batch = executor.score(completions, golds)
        metrics = executor.metrics()
    assert batch.outcomes == ["correct", "wrong", "unparsable", "correct", "wrong"]
    np.testing.assert_array_equal(batch.scores, [1.0, 0.0, 0.0, 1.0, 0.0])
    assert metrics["reward/fast_frac"] == 3 / 5  # the two symbolic answers went to the worker


def test_executor_without_prefilter_gives_the_same_batch():
    completions = [r"\boxed{12}", "12 apples", r"\boxed{x^2}", r"\boxed{B}"]
    golds = ["12", "12", "x^2", "C"]
    with RewardExecutor("math", num_workers=1) as fast, RewardExecutor("math", num_workers=1, prefilter=False) as slow:
        a, b = fast.score(completions, golds), slow.score(completions, golds)
        assert fast.metrics()["reward/fast_frac"] == 3 / 4 and slow.metrics()["reward/fast_frac"] == 0.0
    assert a.outcomes == b.outcomes == ["correct", "unparsable", "correct", "wrong"]  # "boxed" wants a box
    assert a.reasons == b.reasons
