"""reward.accel: two-stage parsing gives LL's parse trees, the polynomial test only ever says "unequal" when
the difference is a nonzero polynomial, and math_reward's verdicts equal plain math-verify's on the reward
tables, random strings and what a quickstart run actually sent to math-verify."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from sympy import E, Float, Integer, Matrix, Rational, Symbol, cos, pi, sin, sqrt

from reward import accel
from reward.extract import extract
from reward.math import math_reward
from tests.reward.test_fast import _table_rows

LEFTOVERS = Path(__file__).parent / "data" / "quickstart_leftovers.jsonl"


def leftovers() -> list[tuple[str, str]]:
    """(completion, gold) pairs that reached math-verify in a 150-step quickstart run (every other completion
    was decided by the fast path): what a small model writes while it learns the format."""
    rows = [json.loads(line) for line in LEFTOVERS.read_text(encoding="utf-8").splitlines()]
    return [(r["completion"], r["answer"]) for r in rows]


def random_latex(rng: random.Random) -> str:
    """Junk and maths mixed: letters, digits, braces, operators, a few LaTeX commands."""
    atoms = ["x", "y", "e", "i", "answer", "is", "{", "}", "{12}", "3", "-", "+", "^2", "=", " ", "2.5", ",",
             r"\frac{1}{2}", r"\sqrt{2}", r"\pi", "(", ")", "boxed{", r"\cdot", "7", "0", "ill"]  # fmt: skip
    return "".join(rng.choice(atoms) for _ in range(rng.randint(1, 7)))


def _parse_outcome(text: str, two_stage: bool) -> tuple[str, bool]:
    """(the parse tree as text, or the exception's text; whether the SLL stage succeeded)."""
    from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy

    accel.install()
    converter = _Latex2Sympy()
    with accel.accelerated(False):  # the library's own parser factory
        make = lambda: converter.create_parser(text)  # noqa: E731
        parser = make()
    stage = accel.TwoStage(make) if two_stage else parser
    try:
        tree = stage.math()
    except Exception as exc:  # noqa: BLE001 - the comparison is of what each route raises
        return f"{type(exc).__name__}: {exc}", False
    return tree.toStringTree(recog=parser), two_stage and not stage.fell_back


def _parser_corpus() -> list[str]:
    rng = random.Random(0)
    preds = [extract(c, "boxed_or_last_number") for c, _ in leftovers()]
    table = [extract(c, e) for c, _, e in _table_rows()] + [g for _, g, _ in _table_rows()]
    return sorted({t for t in preds + table if t}) + [random_latex(rng) for _ in range(150)]


def test_two_stage_parse_equals_the_ll_parse_or_raises_the_same():
    sll_ok = needs_ll = errors = 0
    for text in _parser_corpus():
        ll, _ = _parse_outcome(text, two_stage=False)
        both, fast = _parse_outcome(text, two_stage=True)
        assert both == ll, text
        sll_ok += fast
        errors += ll.startswith("Exception: ")
        needs_ll += not fast and not ll.startswith("Exception: ")
    # every route is exercised (measured on this corpus: 141, 4 and 248 of 393)
    assert sll_ok > 100 and needs_ll > 0 and errors > 100


def test_an_input_that_needs_ll_falls_back_and_parses_the_same():
    ll, _ = _parse_outcome("x^2+1", two_stage=False)  # SLL bails out on this one (measured), LL parses it
    both, fast = _parse_outcome("x^2+1", two_stage=True)
    assert both == ll and not fast and not ll.startswith("Exception")


def test_a_syntax_error_raises_the_libraries_error_in_both_routes():
    ll, _ = _parse_outcome("{2", two_stage=False)
    both, _ = _parse_outcome("{2", two_stage=True)
    assert ll.startswith("Exception: ") and both == ll


x, y = Symbol("x", real=True), Symbol("y")


@pytest.mark.parametrize(
    "a,b,unequal,why",
    [
        (Integer(20), 18 * x * y**2, True, "a monomial with a symbol is never a constant"),
        (Integer(22), 12 * x * y * E, True, "e is transcendental: a nonzero polynomial in it stays nonzero"),
        (x + 1, x + 2, False, "the difference has no symbol left: simplify decides"),
        (x**2 - 1, (x - 1) * (x + 1), False, "equal polynomials: the difference expands to zero"),
        (Integer(1), sin(x) ** 2 + cos(x) ** 2, False, "not a polynomial: left to simplify (it is equal)"),
        (Integer(1), 1 / x, False, "1/x is not a polynomial in x"),
        (Integer(2), sqrt(2) * x, False, "an irrational coefficient: left to simplify"),
        (pi, x, False, "pi is not a generator here"),
        (Integer(1), Float(0.5) * x, False, "floats are left to math-verify's rounding"),
        (Rational(1, 2), x / 2, True, "rational coefficients"),
        (Integer(0), 0 * x, False, "0*x is 0 already"),
        (Matrix([1]), Matrix([x]), False, "matrices are not expressions here"),
    ],
)
def test_provably_unequal(a, b, unequal, why):
    assert accel.provably_unequal(a, b) is unequal, why


def _same_verdicts(pairs: list[tuple[str, str]]) -> Counter[str]:
    """Plain math-verify's outcomes, after checking that the accelerated route gives each pair the same."""
    outcomes: Counter[str] = Counter()
    for completion, gold in pairs:
        fast = math_reward(completion, gold, extraction="boxed_or_last_number")
        plain = math_reward(completion, gold, extraction="boxed_or_last_number", fast_path=False)
        assert (fast.outcome, fast.score) == (plain.outcome, plain.score), (completion, gold, plain.reason)
        outcomes[plain.outcome] += 1
    return outcomes


def test_quickstart_leftovers_same_verdicts_as_plain_math_verify():
    pairs = leftovers()
    assert len(pairs) == 285
    outcomes = _same_verdicts(pairs)
    # wrong or unparsable, but for "{10^1}" (gold 10) and "\boxed{\x1c2." (gold 2)
    assert outcomes["correct"] == 2 and outcomes["wrong"] > 200


def test_equal_answers_with_symbols_stay_correct():
    """Where the polynomial test must not answer: differences that vanish (expanded, reordered, e, sets)."""
    pairs = [
        (r"\boxed{(x-1)(x+1)}", "x^2-1"),
        (r"\boxed{1+2x}", "2x+1"),
        (r"\boxed{e+e}", "2e"),
        (r"\boxed{x y}", "yx"),
        (r"\boxed{\frac{x}{2}}", "0.5x"),
        (r"\boxed{\{x, 2\}}", r"\{2, x\}"),
        (r"\boxed{y = 3x}", "3x"),
        (r"\boxed{\sin^2 x + \cos^2 x + x}", "1 + x"),
    ]
    assert _same_verdicts(pairs)["correct"] == len(pairs)


def test_random_strings_same_verdicts_as_plain_math_verify():
    rng = random.Random(1)
    pairs = [(rf"\boxed{{{random_latex(rng)}}}", str(rng.randint(-3, 12))) for _ in range(120)]
    pairs += [(rf"\boxed{{{random_latex(rng)}}}", rng.choice(["x", "2x+1", r"\frac{1}{2}", "e"])) for _ in range(60)]
    outcomes = _same_verdicts(pairs)
    # every outcome occurs (measured: 156 wrong, 22 unparsable, 2 correct)
    assert outcomes["wrong"] > 100 and outcomes["unparsable"] > 10 and outcomes["correct"] > 0


def test_math_verify_outside_rlbal_calls_is_the_library_as_shipped():
    from latex2sympy2_extended.antlr_parser import PSParser
    from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy

    accel.install()
    accel.install()  # idempotent
    assert isinstance(_Latex2Sympy().create_parser("1"), PSParser)
    with accel.accelerated():
        assert isinstance(_Latex2Sympy().create_parser("1"), accel.TwoStage)
    assert isinstance(_Latex2Sympy().create_parser("1"), PSParser)


def test_the_parser_hook_is_only_installed_where_parse_calls_nothing_but_math():
    from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy

    class Other:
        def parse(self, latex_str):
            parser = self.create_parser(latex_str)
            parser.setTrace(True)
            return parser.math()

    assert accel._parse_uses_only_math(_Latex2Sympy)  # the installed release: the hook is on
    assert not accel._parse_uses_only_math(Other)  # a release that does more with its parser keeps LL
    assert not accel._parse_uses_only_math(None)


def test_polynomial_answers_same_verdicts_as_plain_math_verify():
    """Expanded, factored and shifted forms of random polynomials (by 0, 1, 1/2, x or e): where the polynomial
    test answers, and where it must leave "equal" to simplify."""
    import sympy as sp

    rng = random.Random(7)
    x, y = sp.symbols("x y")
    pairs = []
    for _ in range(150):
        p = sp.Add(*[rng.randint(-4, 4) * x ** rng.randint(0, 2) * y ** rng.randint(0, 1) for _ in range(3)])
        if rng.random() < 0.3:
            p = p * (x + rng.randint(-2, 2))
        q = p + rng.choice([0, 0, 1, x, sp.Rational(1, 2), sp.E])
        pred = rng.choice([sp.latex(sp.expand(q)), sp.latex(sp.factor(q)), sp.latex(q)])
        pairs.append((rf"\boxed{{{pred}}}", sp.latex(sp.expand(p))))
    correct = _same_verdicts(pairs)["correct"]
    assert 20 < correct < 130  # both verdicts occur (measured: 57 of 150 equal)
