r"""Two exact speed-ups of math-verify, active only inside rlbal's own calls (``reward.math``).

What reaches math-verify after the fast path (``reward.fast``) is mostly what a small model writes while it
learns the format: ``answer is{12}``, ``{18ill1}``, ``boxed{-1}``. Each costs 5-250 ms, nearly all of it in
two places, and both can be made cheaper without changing any result:

1. **Parsing** (ANTLR, via latex2sympy2_extended) runs in ANTLR's full-context LL mode. ``TwoStage``
   first parses in SLL mode with a bail-out error strategy and falls back to the library's own LL parse on
   any error. ANTLR documents the guarantee this rests on (``PredictionMode.SLL``): an SLL parse either
   returns the same parse tree as LL or reports a syntax error. The grammar's start rule ends in EOF, so a
   successful SLL parse read the whole input; every failure (a real syntax error, an input that needs LL,
   a lexer error) is parsed again exactly as before, and raises exactly as before.
2. **Symbolic equality** (``sympy_symbolic_eq``) runs ``simplify(gold - pred)`` and asks whether it is
   zero: ~15 ms for ``20 - 18*i*l**2``. ``provably_unequal`` decides first, in about 0.5 ms,
   the case where the difference is a nonzero polynomial with rational coefficients in its free symbols
   (and Euler's number: e is transcendental, so a nonzero polynomial in e and the symbols is not zero as a
   function). Such a difference is not identically zero, so ``simplify`` cannot return zero and
   math-verify answers "not equal"; any other difference (floats, functions, sqrt, 1/x, matrices, a
   difference with no symbols) goes to ``simplify`` as before.

Verdicts are unchanged (tests/reward/test_accel.py: parse trees against LL, verdicts against plain
math-verify on the reward tables, random strings, random polynomials and a quickstart run's leftovers).
One outcome can differ: a comparison that used to hang until the executor's timeout may now end as "wrong".

``install()`` wraps the two library functions once per process; the wrappers call the originals unless
the caller is inside ``accelerated()``, so other code in the process that calls math-verify sees it as
shipped. A math-verify or latex2sympy2_extended release without one of the two functions, or whose
``parse`` uses its parser for more than ``math()`` (checked on math-verify 0.9, latex2sympy2_extended 1.11),
keeps that part as shipped.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Iterator
from contextvars import ContextVar

_ACTIVE: ContextVar[bool] = ContextVar("rlbal_math_verify_accel", default=False)
_INSTALLED: list[bool] = []


@contextlib.contextmanager
def accelerated(on: bool = True) -> Iterator[None]:
    """Inside this block (``on=True``), math-verify calls of this thread use both speed-ups."""
    token = _ACTIVE.set(on)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def install() -> None:
    """Wrap latex2sympy2_extended's parser factory and math-verify's symbolic equality (idempotent)."""
    if _INSTALLED:
        return
    from latex2sympy2_extended import latex2sympy2
    from math_verify import grader

    converter = getattr(latex2sympy2, "_Latex2Sympy", None)
    make_parser = getattr(converter, "create_parser", None) if _parse_uses_only_math(converter) else None
    symbolic_eq = getattr(grader, "sympy_symbolic_eq", None)

    def create_parser(self, latex_str):
        if not _ACTIVE.get():
            return make_parser(self, latex_str)
        return TwoStage(lambda: make_parser(self, latex_str))

    def sympy_symbolic_eq(a, b):
        if _ACTIVE.get() and provably_unequal(a, b):
            return False
        return symbolic_eq(a, b)

    if make_parser is not None:
        converter.create_parser = create_parser
    if symbolic_eq is not None:
        grader.sympy_symbolic_eq = sympy_symbolic_eq
    _INSTALLED.append(True)


def _parse_uses_only_math(converter) -> bool:
    """Whether the converter's ``parse`` calls nothing on its parser but ``math()`` (what ``TwoStage`` offers)."""
    try:
        source = inspect.getsource(converter.parse)
    except (AttributeError, OSError, TypeError):
        return False
    return set(re.findall(r"\bparser\.(\w+)", source)) == {"math"}


class TwoStage:
    """Stands in for the library's ``PSParser``: ``math()`` parses in SLL mode, and in LL mode on any error.

    The library's ``parse`` calls only ``math()`` on the parser it creates; ``make`` builds a fresh parser
    (lexer, token stream and the library's error listeners) for each stage.
    """

    def __init__(self, make) -> None:
        self._make = make
        self.fell_back = False

    def math(self):
        from antlr4.atn.PredictionMode import PredictionMode
        from antlr4.error.ErrorStrategy import BailErrorStrategy

        parser = self._make()
        parser._interp.predictionMode = PredictionMode.SLL
        parser._errHandler = BailErrorStrategy()
        try:
            return parser.math()
        # Deliberately broad: whatever the first stage raises (a bail-out, the library's listener on a
        # syntax error, a lexer error), the second stage is the library's own parse and raises as it would.
        except Exception:  # noqa: BLE001
            self.fell_back = True
            return self._make().math()


def provably_unequal(a, b) -> bool:
    """True when ``a - b`` is a nonzero polynomial in its free symbols (and E) with rational coefficients.

    >>> from sympy import E, Integer, Symbol, cos, sin
    >>> x, y = Symbol("x"), Symbol("y")
    >>> provably_unequal(Integer(20), 18 * x * y**2), provably_unequal(Integer(2), E * x)
    (True, True)
    >>> provably_unequal(x**2 - 1, (x - 1) * (x + 1))   # equal: left to simplify
    False
    >>> provably_unequal(Integer(1), sin(x)**2 + cos(x)**2), provably_unequal(Integer(3), Integer(4))
    (False, False)
    """
    from sympy import E, Expr, Float, Poly
    from sympy.polys.polyerrors import BasePolynomialError

    if not (isinstance(a, Expr) and isinstance(b, Expr)):
        return False
    difference = a - b
    free = difference.free_symbols
    if not free or difference.has(Float):
        return False
    gens = sorted(free, key=str) + ([E] if difference.has(E) else [])
    try:
        if not difference.is_polynomial(*gens):
            return False
        return not Poly(difference, *gens, domain="QQ").is_zero
    except BasePolynomialError:  # not a polynomial in these generators, or a coefficient outside QQ
        return False
