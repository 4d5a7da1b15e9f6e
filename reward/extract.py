r"""Answer extraction: pull the final answer string out of a completion, by one of a closed set of modes.

    boxed                 the last well-formed \boxed{...} (or \fbox{...}); nested braces are fine
    boxed_or_last_number  \boxed{} if present, else "the answer is X", else the last number in the text
                          (small models rarely write \boxed{}: this is the lenient mode)
    gsm8k                 the text after the last "#### " (GSM8K's solution format)
    answer_tag            the last <answer>...</answer>
    raw                   the whole completion, stripped

Every mode returns ``None`` when it finds nothing, which rewards report as the outcome "unparsable".

>>> extract(r"so the total is \boxed{\frac{1}{2}}.", "boxed")
'\\frac{1}{2}'
>>> extract("I think the answer is 1,250.", "boxed_or_last_number")
'1,250'
>>> extract("3 + 4 = 7", "boxed") is None
True
"""

from __future__ import annotations

import re
from collections.abc import Callable

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")
_BOX_TOKEN_RE = re.compile(r"[^\s$]+")  # "\boxed 5": the answer is one whitespace-free token
# A number: optional sign, digits with optional thousands commas, optional decimals, optional "/denominator".
# The lookbehind keeps "x2" or "v1.5" from yielding a number; the lookahead keeps "1,2" from reading as "1,".
_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:/\d+)?(?!\d|,\d)")
_ANSWER_IS_RE = re.compile(r"\banswer\s*(?:is|:|=)\s*:?\s*(.+?)\s*(?:\.(?:\s|$)|\n|$)", re.IGNORECASE)
_GSM8K_RE = re.compile(r"####\s*([^\n]*)")
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def clean(text: str) -> str | None:
    """Strip whitespace, enclosing $...$ and a trailing period; None if nothing is left.

    >>> clean("  $x^2$. ")
    'x^2'
    >>> clean(" $ ") is None
    True
    """
    out = text.strip().rstrip(".").strip().strip("$").strip().rstrip(".").strip()
    return out or None


def last_boxed(text: str) -> str | None:
    r"""Content of the last well-formed \boxed{...}; a box cut off by the length limit is skipped.

    >>> last_boxed(r"\boxed{1} then \boxed{\{2, 3\}}")
    '\\{2, 3\\}'
    >>> last_boxed(r"\boxed{4} and finally \boxed{5") # the second box is unbalanced (truncated)
    '4'
    """
    for match in reversed(list(_BOX_RE.finditer(text))):
        content = _box_content(text, match.end())
        if content is not None:
            return content
    return None


def _box_content(text: str, start: int) -> str | None:
    if not text.startswith("{", start):
        token = _BOX_TOKEN_RE.match(text, start)
        return clean(token.group(0)) if token else None
    depth = 0
    for pos in range(start, len(text)):
        char = text[pos]
        depth += (char == "{") - (char == "}")
        if depth == 0:
            return clean(text[start + 1 : pos])
    return None


def last_number(text: str) -> str | None:
    """The last number in the text, thousands commas kept (parsers strip them).

    >>> last_number("from 3 apples to -12.5 pears, then 1,000,000 plums")
    '1,000,000'
    >>> last_number("step x2 of v1.5") is None
    True
    """
    numbers = _NUMBER_RE.findall(text)
    return numbers[-1] if numbers else None


def answer_is(text: str) -> str | None:
    """X from the last "the answer is X" / "Answer: X" phrase.

    >>> answer_is("So the final answer is $3.5$.")
    '3.5'
    """
    found = _ANSWER_IS_RE.findall(text)
    return clean(found[-1]) if found else None


def _boxed_or_last_number(text: str) -> str | None:
    return last_boxed(text) or answer_is(text) or last_number(text)


def _gsm8k(text: str) -> str | None:
    found = _GSM8K_RE.findall(text)
    return clean(found[-1]) if found else None


def _answer_tag(text: str) -> str | None:
    found = _ANSWER_TAG_RE.findall(text)
    return clean(found[-1]) if found else None


def _raw(text: str) -> str | None:
    return text.strip() or None


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "boxed": last_boxed,
    "boxed_or_last_number": _boxed_or_last_number,
    "gsm8k": _gsm8k,
    "answer_tag": _answer_tag,
    "raw": _raw,
}
EXTRACTIONS = tuple(EXTRACTORS)


def check_extraction(mode: str) -> str:
    """Return mode if it names an extraction, else raise ValueError listing the valid names."""
    if mode not in EXTRACTORS:
        raise ValueError(f"extraction must be one of {EXTRACTIONS}, got {mode!r}")
    return mode


def extract(text: str, mode: str) -> str | None:
    """The answer string found by ``mode`` (one of EXTRACTIONS), or None."""
    return EXTRACTORS[check_extraction(mode)](text)
