r"""The fast path: exact verdicts for plain answers, so that only the rest pays for math-verify.

Most verifiable-reward data (GSM8K, arithmetic, counting, multiple choice) has answers like ``72``,
``-3``, ``1,080``, ``2.5``, ``3/4``, ``\frac{3}{4}``, ``12 apples`` or ``B``. ``fast_equal(pred, gold)``
decides those with ``fractions.Fraction`` in microseconds and returns the verdict math-verify would give
(``math_verify.verify(parse(gold), parse(pred))`` with its defaults), or ``None`` when the pair is outside
the small grammar below or too close to call; the caller then runs math-verify. The grammar, and why each
verdict matches math-verify 0.9 (checked on every form in tests/reward/test_fast.py and on the GSM8K answers):

    braces   any number of balanced {...} around the whole answer are dropped (LaTeX grouping: "{12}" is 12),
             unless a comma is inside ("{1,000}" is a set to math-verify)
    number   [sign] [\$] [sign] digits | 1,234,567 (groups of three) [.digits] ; or [sign] a/b ; or [sign] \frac{a}{b}
             (also \dfrac, \tfrac), optionally followed by one trailing period
    unit     after a number (not after a/b): one word math-verify drops as a unit (``UNITS``, plural s/es
             allowed), or a trailing \text{...} / \mathrm{...} of letters, which it drops too
    word     1-24 ASCII letters (multiple-choice letters, short string answers)

    integers and fractions only   sympy compares Integers and Rationals exactly: equal iff the same rational
    a decimal on either side      math-verify rounds both to 6 decimals: equal rationals are "correct", values
                                  more than 2e-6 apart are "wrong", anything closer is left to math-verify;
                                  decimals are taken only below 1e9 and up to 15 significant digits
    words                         the same string is "correct"; two different single capital letters (A-Z)
                                  are "wrong"; anything else (case variants, anagrams) is left to math-verify
    percent, e-notation, a number against a word, anything else   left to math-verify

``empty_box(pred)`` recognises an answer that is only an empty box (``\boxed{}``: a model that learned the
format but not the answer), which math-verify reads as nothing: "unparsable" whenever the gold is plain.

>>> fast_equal("1,080", "1080"), fast_equal(r"\frac{3}{4}", "0.75"), fast_equal("12 apples.", "13")
(True, True, False)
>>> fast_equal("50%", "0.5") is None   # math-verify reads a percentage as either: not decided here
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# Words that math-verify (latex2sympy2_extended's unit normalisation) removes after a number; each one is
# checked against math-verify in tests/reward/test_fast.py. Not every unit is here: "12 eggs" or
# "12 dollars" are not units to math-verify (it reads 12*E*g*g*s), so they go to math-verify.
UNITS = (
    "apple",
    "hour",
    "hr",
    "minute",
    "min",
    "second",
    "sec",
    "day",
    "month",
    "year",
    "student",
    "unit",
    "meter",
    "metre",
    "mile",
    "feet",
    "inch",
    "yard",
    "pound",
    "gallon",
    "liter",
    "litre",
    "cent",
    "toy",
    "coin",
    "degree",
    "acre",
    "tile",
    "pie",
    "men",
    "women",
    "man",
    "woman",
    "kg",
    "km",
    "cm",
    "mm",
    "lb",
    "ft",
    "mph",
)
MAX_CHARS = 64  # longer answers are left to math-verify (they are not plain)
FLOAT_TOL = Fraction(2, 10**6)  # math-verify rounds decimals to 6 places: farther apart than this is "wrong"
FLOAT_MAX = 10**9
FLOAT_DIGITS = 15

_SIGN = r"(?P<sign>[-+]?)"
_DOLLAR = r"(?:\\\$)?"
_DECIMAL = r"(?P<int>0|[1-9]\d*|[1-9]\d{0,2}(?:,\d{3})+)(?:\.(?P<frac>\d+))?"
_LATEX_FRAC = r"\\[dt]?frac\{(?P<lnum>\d{1,6})\}\{(?P<lden>\d{1,6})\}"
_SLASH_FRAC = r"(?P<snum>\d{1,6})/(?P<sden>\d{1,6})"
_UNIT = r"(?:\s+(?:" + "|".join(UNITS) + r")(?:s|es)?|\s*\\(?:text|mathrm)\{\s*[A-Za-z]+(?:\s[A-Za-z]+)*\s*\})"
_NUMBER_RE = re.compile(
    rf"(?P<sign>[-+]?){_DOLLAR}(?:{_DECIMAL}|{_LATEX_FRAC})(?:{_UNIT})?"
    rf"|(?P<sign2>[-+]?){_SLASH_FRAC}"
)
_WORD_RE = re.compile(r"[A-Za-z]{1,24}")
_EMPTY_BOX_RE = re.compile(r"(?:\\(?:boxed|fbox)\{\s*)+(?:\}\s*)+\.?")


@dataclass(frozen=True)
class Plain:
    """A parsed plain answer: a number (value, and whether it is a decimal) or a word."""

    value: Fraction | None = None
    decimal: bool = False
    word: str | None = None


def parse_plain(text: str) -> Plain | None:
    r"""The answer as a number or a word of the fast grammar, or None.

    >>> parse_plain("-1,250.50 kg")
    Plain(value=Fraction(-2501, 2), decimal=True, word=None)
    >>> parse_plain(r"\dfrac{6}{8}"), parse_plain("B").word, parse_plain("2x")
    (Plain(value=Fraction(3, 4), decimal=False, word=None), 'B', None)
    """
    text = text.strip()
    if text.endswith(".") and len(text) > 1 and not text.endswith(".."):
        text = text[:-1].rstrip()
    if not text or len(text) > MAX_CHARS:
        return None
    unbraced = _unbrace(text)
    if unbraced != text and "," in unbraced:  # math-verify reads "{1,000}" as a set, not as 1000
        return None
    text = unbraced
    if text.startswith("\\$") and text[2:3] in ("-", "+"):  # "\$-5" reads as "-\$5"
        text = text[2] + text[:2] + text[3:]
    if _WORD_RE.fullmatch(text):
        return Plain(word=text)
    found = _NUMBER_RE.fullmatch(text)
    if found is None:
        return None
    g = found.groupdict()
    negative = (g["sign"] or g["sign2"] or "") == "-"
    if g["int"] is not None:
        whole, frac = g["int"].replace(",", ""), g["frac"] or ""
        if frac and (len((whole + frac).lstrip("0")) > FLOAT_DIGITS or int(whole) >= FLOAT_MAX):
            return None
        value, decimal = Fraction(f"{whole}.{frac}" if frac else whole), bool(frac)
    else:
        num, den = (g["lnum"], g["lden"]) if g["lnum"] is not None else (g["snum"], g["sden"])
        if int(den) == 0:
            return None
        value, decimal = Fraction(int(num), int(den)), False
    return Plain(value=-value if negative else value, decimal=decimal)


def _unbrace(text: str) -> str:
    """Drop balanced braces enclosing the whole text, any number of levels.

    >>> _unbrace("{{ 12 }}"), _unbrace("{1}+{2}"), _unbrace("{4")
    ('12', '{1}+{2}', '{4')
    """
    while text.startswith("{") and text.endswith("}"):
        depth = 0
        for pos, char in enumerate(text):
            depth += (char == "{") - (char == "}")
            if depth == 0 and pos < len(text) - 1:
                return text  # the first brace closes before the end: not one group around everything
        text = text[1:-1].strip()
    return text


def empty_box(pred: str) -> bool:
    r"""An extracted answer that is only an empty \boxed{} or \fbox{} (nested too): math-verify reads nothing.

    >>> empty_box(r"\boxed{}"), empty_box(r"\boxed{ \boxed{} }."), empty_box(r"\boxed{0}")
    (True, True, False)
    """
    return _EMPTY_BOX_RE.fullmatch(pred.strip()) is not None and pred.count("{") == pred.count("}")


def fast_equal(pred: str, gold: str) -> bool | None:
    """math-verify's verdict on the extracted answer ``pred`` against ``gold``, or None if not decided here."""
    p, g = parse_plain(pred), parse_plain(gold)
    if p is None or g is None:
        return None
    if p.word is not None or g.word is not None:
        if p.word is None or g.word is None:
            return None
        if p.word == g.word:
            return True
        capitals = len(p.word) == len(g.word) == 1 and p.word.isupper() and g.word.isupper()
        return False if capitals else None
    if p.value == g.value:
        return True
    if not (p.decimal or g.decimal):
        return False
    return False if abs(p.value - g.value) > FLOAT_TOL else None
