"""numeric_reward, exact_reward and parse_number: tables with the reason for each row."""

from __future__ import annotations

import pytest

from reward.numeric import exact_reward, normalize_text, numeric_reward, parse_number

NUMBER_ROWS = [
    # text, value, why
    ("42", 42.0, "integer"),
    ("-7", -7.0, "negative"),
    ("+7", 7.0, "explicit plus"),
    ("1,234,567", 1234567.0, "thousands commas"),
    ("3.25", 3.25, "decimal"),
    (".5", 0.5, "leading dot"),
    ("2.5e2", 250.0, "scientific"),
    ("-3/4", -0.75, "slash fraction"),
    (r"\frac{1}{8}", 0.125, "LaTeX fraction"),
    (r"-\dfrac{3}{2}", -1.5, "signed display fraction"),
    (r"\$1,000", 1000.0, "escaped dollar"),
    ("$5", 5.0, "dollar"),
    ("50%", 50.0, "percent sign is dropped, not divided by 100"),
    ("1 000", 1000.0, "spaces inside are dropped"),
    ("x = 7", 7.0, "not a number as a whole: the last number inside"),
    ("7 apples", 7.0, "unit after the number"),
    ("1/0", None, "zero denominator"),
    ("inf", None, "not finite"),
    ("seven", None, "words are not numbers"),
    ("", None, "empty"),
]


@pytest.mark.parametrize("text,value,why", NUMBER_ROWS, ids=[r[2] for r in NUMBER_ROWS])
def test_parse_number_table(text, value, why):
    assert parse_number(text) == value, why


NUMERIC_ROWS = [
    # completion, gold, kwargs, outcome, score, why
    ("so the total is 12", "12", {}, "correct", 1.0, "last number matches"),
    ("so the total is 12.0", "12", {}, "correct", 1.0, "12.0 == 12"),
    ("it is 0.3333334", "1/3", {}, "correct", 1.0, "|0.3333334 - 1/3| = 6.7e-8 < 1e-6 * 1/3"),
    ("it is 0.3334", "1/3", {}, "wrong", 0.0, "|0.3334 - 1/3| = 6.7e-5 > 1e-6 * 1/3"),
    ("it is 0.3334", "1/3", {"rel_tol": 1e-3}, "correct", 1.0, "6.7e-5 < 1e-3 * 1/3 = 3.3e-4"),
    (r"\boxed{1,000} (and 3 more)", "1000", {}, "correct", 1.0, "a box beats later numbers"),
    ("The answer is $2,500.", "2500", {}, "correct", 1.0, "dollar amount with commas"),
    ("it is 13", "12", {}, "wrong", 0.0, "different number"),
    ("no number here", "12", {}, "unparsable", 0.0, "nothing to extract"),
    (r"\boxed{twelve}", "12", {}, "unparsable", 0.0, "extracted text is not a number"),
    ("12", "twelve", {}, "error", 0.0, "a gold that is not a number is a data error"),
    ("so 12", "12", {"extraction": "boxed"}, "unparsable", 0.0, "strict extraction wants a box"),
]


@pytest.mark.parametrize("completion,gold,kwargs,outcome,score,why", NUMERIC_ROWS, ids=[r[5] for r in NUMERIC_ROWS])
def test_numeric_reward_table(completion, gold, kwargs, outcome, score, why):
    result = numeric_reward(completion, gold, **kwargs)
    assert (result.outcome, result.score) == (outcome, score), f"{why}: {result.reason}"


EXACT_ROWS = [
    # completion, gold, kwargs, outcome, score, why
    (r"\boxed{Paris}", "Paris", {}, "correct", 1.0, "identical"),
    (r"\boxed{ paris }", "PARIS", {}, "correct", 1.0, "case and outer spaces are ignored by default"),
    (r"\boxed{\text{New   York}}", "new york", {}, "correct", 1.0, r"\text{} unwrapped, inner spaces collapsed"),
    (r"\boxed{paris}", "Paris", {"case_sensitive": True}, "wrong", 0.0, "case matters when asked"),
    (r"\boxed{Lyon}", "Paris", {}, "wrong", 0.0, "different city"),
    ("Paris", "Paris", {}, "unparsable", 0.0, "default extraction wants a box"),
    ("  Paris ", "paris", {"extraction": "raw"}, "correct", 1.0, "raw extraction takes the whole text"),
    ("<answer>B</answer>", "b", {"extraction": "answer_tag"}, "correct", 1.0, "answer tag"),
]


@pytest.mark.parametrize("completion,gold,kwargs,outcome,score,why", EXACT_ROWS, ids=[r[5] for r in EXACT_ROWS])
def test_exact_reward_table(completion, gold, kwargs, outcome, score, why):
    result = exact_reward(completion, gold, **kwargs)
    assert (result.outcome, result.score) == (outcome, score), f"{why}: {result.reason}"


def test_normalize_text_keeps_case_when_asked():
    assert normalize_text(r" \textbf{A}  b ", case_sensitive=True) == "A b"
