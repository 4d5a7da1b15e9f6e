"""Answer extraction modes: a table of (text, mode, expected) with the reason for each row."""

from __future__ import annotations

import pytest

from reward.extract import EXTRACTIONS, clean, extract

ROWS = [
    # text, mode, expected, why
    (r"so \boxed{42}.", "boxed", "42", "plain box"),
    (r"\boxed{\frac{a}{b^{2}}}", "boxed", r"\frac{a}{b^{2}}", "nested braces are matched, not cut at the first }"),
    (r"\boxed{1} no wait \boxed{2}", "boxed", "2", "the last box is the final answer"),
    (r"\boxed{3} and then \boxed{4", "boxed", "3", "a box cut off by max length is skipped"),
    (r"\boxed 7 apples", "boxed", "7", r"\boxed without braces takes one token"),
    (r"\fbox{9}", "boxed", "9", r"\fbox is a box too"),
    (r"$\boxed{ $-5$ }$", "boxed", "-5", "inner $...$ and whitespace are stripped"),
    (r"\boxed{}", "boxed", None, "an empty box is no answer"),
    ("the answer is 12", "boxed", None, "strict mode ignores unboxed text"),
    ("the answer is 12", "boxed_or_last_number", "12", "lenient: 'answer is X'"),
    ("Answer: 3/4.", "boxed_or_last_number", "3/4", "lenient: 'Answer: X' with the period dropped"),
    ("5 + 6 = 11 so 11 cookies", "boxed_or_last_number", "11", "lenient: last number"),
    ("costs $1,234.50 in total", "boxed_or_last_number", "1,234.50", "thousands commas and decimals"),
    ("x2 and v1.5 are names", "boxed_or_last_number", None, "digits inside words are not numbers"),
    (r"is 3, but \boxed{8}", "boxed_or_last_number", "8", "a box beats the last number"),
    ("no digits here", "boxed_or_last_number", None, "nothing to find"),
    ("48/2 = 24\n#### 72", "gsm8k", "72", "GSM8K final line"),
    ("#### 1\n#### $2,000", "gsm8k", "2,000", "last #### wins, the $ is stripped"),
    ("72", "gsm8k", None, "no #### marker"),
    ("<answer> Paris </answer>", "answer_tag", "Paris", "answer tag, stripped"),
    ("<answer>1</answer><answer>\n2\n</answer>", "answer_tag", "2", "last tag, spans lines"),
    ("<answer>unclosed", "answer_tag", None, "an unclosed tag is no answer"),
    ("  whole text \n", "raw", "whole text", "raw keeps everything but outer whitespace"),
    ("   ", "raw", None, "blank completion"),
]


@pytest.mark.parametrize("text,mode,expected,why", ROWS, ids=[r[3] for r in ROWS])
def test_extract_table(text, mode, expected, why):
    assert extract(text, mode) == expected, why


def test_every_mode_has_rows():
    assert {row[1] for row in ROWS} == set(EXTRACTIONS)


def test_unknown_mode_lists_valid_names():
    with pytest.raises(ValueError, match=r"extraction must be one of \('boxed', .*got 'boxd'"):
        extract("x", "boxd")


@pytest.mark.parametrize("text,expected", [(" $1$. ", "1"), ("5.", "5"), ("3.5", "3.5"), ("$", None)])
def test_clean(text, expected):
    assert clean(text) == expected
