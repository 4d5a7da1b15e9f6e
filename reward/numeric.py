r"""Numeric and exact-match answers, standard library only.

``numeric_reward`` reads both answers as numbers (integers, decimals, ``a/b``, ``\frac{a}{b}``, ``1e3``; ``$``,
``%`` and thousands commas are ignored) and compares them with a tolerance. ``exact_reward`` compares
normalised strings. Both extract the completion's answer first (see ``reward.extract``).

>>> numeric_reward("The answer is $1,000.", "1000")
RewardResult(score=1.0, outcome='correct', reason="answer '1,000' = gold '1000'")
>>> exact_reward(r"\boxed{\text{Paris}}", "paris").outcome
'correct'
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from reward.extract import extract, last_number
from reward.result import RewardResult

_DECIMAL_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_FRACTION_RE = re.compile(r"([-+]?\d+)/(\d+)")
_LATEX_FRAC_RE = re.compile(r"([-+]?)\\[dt]?frac\{([-+]?\d+)\}\{(\d+)\}")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm)\{([^{}]*)\}")
# Characters that carry no numeric meaning in an answer: currency, percent, thousands separators, LaTeX spaces.
_NOISE_RE = re.compile(r"\\\$|\$|\\%|%|,|\\!|\\,|\\;|\s")


def parse_number(text: str) -> float | None:
    r"""Read ``text`` as one finite number; if it is not one, use the last number inside it; else None.

    >>> [parse_number(s) for s in ["1,234", "-3/4", r"\frac{1}{8}", "2.5e2", "50%", "x = 7", "seven"]]
    [1234.0, -0.75, 0.125, 250.0, 50.0, 7.0, None]
    """
    stripped = _NOISE_RE.sub("", text)
    value = _as_number(stripped)
    if value is None:
        inner = last_number(text)
        value = _as_number(_NOISE_RE.sub("", inner)) if inner is not None else None
    return value


def _as_number(text: str) -> float | None:
    if _DECIMAL_RE.fullmatch(text):
        value = float(text)
        return value if math.isfinite(value) else None
    found = _FRACTION_RE.fullmatch(text) or _LATEX_FRAC_RE.fullmatch(text)
    if found is None:
        return None
    *sign, num, den = found.groups()
    if int(den) == 0:
        return None
    return float(Fraction(int(num), int(den)) * (-1 if sign == ["-"] else 1))


def normalize_text(text: str, case_sensitive: bool = False) -> str:
    r"""Unwrap \text{...}, collapse whitespace, strip; casefold unless case_sensitive.

    >>> normalize_text(r"  \text{New   York} ")
    'new york'
    """
    out = " ".join(_TEXT_RE.sub(r"\1", text).split())
    return out if case_sensitive else out.casefold()


def compare_numbers(pred: str, gold: str, rel_tol: float, abs_tol: float) -> RewardResult:
    """Score an extracted answer against a gold answer, both read with ``parse_number``."""
    gold_value = parse_number(gold)
    if gold_value is None:
        return RewardResult(0.0, "error", f"gold answer {gold!r} is not a number")
    value = parse_number(pred)
    if value is None:
        return RewardResult(0.0, "unparsable", f"answer {pred!r} is not a number")
    if math.isclose(value, gold_value, rel_tol=rel_tol, abs_tol=abs_tol):
        return RewardResult(1.0, "correct", f"answer {pred!r} = gold {gold!r}")
    return RewardResult(0.0, "wrong", f"answer {pred!r} != gold {gold!r}")


def numeric_reward(
    completion: str,
    answer: str,
    *,
    extraction: str = "boxed_or_last_number",
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
    **meta,
) -> RewardResult:
    """1.0 if the extracted answer equals the gold number within tolerance (``math.isclose``), else 0.0.

    >>> numeric_reward("so 0.3333334", "1/3").outcome
    'correct'
    >>> numeric_reward("I do not know", "3").outcome
    'unparsable'
    """
    pred = extract(completion, extraction)
    if pred is None:
        return RewardResult(0.0, "unparsable", f"no answer found by extraction {extraction!r}")
    return compare_numbers(pred, answer, rel_tol, abs_tol)


def exact_reward(
    completion: str, answer: str, *, extraction: str = "boxed", case_sensitive: bool = False, **meta
) -> RewardResult:
    """1.0 if the extracted answer equals the gold string after ``normalize_text``, else 0.0.

    >>> exact_reward("<answer> Blue </answer>", "blue", extraction="answer_tag").score
    1.0
    """
    pred = extract(completion, extraction)
    if pred is None:
        return RewardResult(0.0, "unparsable", f"no answer found by extraction {extraction!r}")
    if normalize_text(pred, case_sensitive) == normalize_text(answer, case_sensitive):
        return RewardResult(1.0, "correct", f"answer {pred!r} matches gold {answer!r}")
    return RewardResult(0.0, "wrong", f"answer {pred!r} != gold {answer!r}")
