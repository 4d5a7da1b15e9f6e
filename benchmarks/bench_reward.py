"""Reward scoring cost: the fast path (exact verdicts for plain answers, in the driver) against math-verify.

    .venv/bin/python benchmarks/bench_reward.py                  # ~1 min: per-completion cost + executor per step
    .venv/bin/python benchmarks/bench_reward.py --rounds 5 --completions 512 --workers 1 2

Both sides score the same completions in the same process, interleaved round by round (a burst of load on a
shared machine hits both alike); medians over rounds are reported, and ratios are taken within each round.

  per completion   `reward.math.math_fast` (the fast path alone) vs `math_reward(..., fast_path=False)`
                   (math-verify: parse + verify), inline in this process, on completions built from the
                   vendored GSM8K answers (boxed, "The answer is", thousands separators, a unit, x.00, \\frac,
                   and wrong ones) and from the quickstart's arithmetic (boxed single integers)
  per step         `RewardExecutor("math").score` on one step's completions (the quickstart's 64 x 8 = 512),
                   with the prefilter (default) vs without it and without the fast path (the previous
                   behaviour: every completion through a worker and math-verify), `--workers` processes each
  leftovers        what the fast path leaves to math-verify in a real run (tests/reward/data: the 285 distinct
                   undecided completions of a quickstart run, `The answer is{18ill1}.` and the like): plain
                   math-verify vs `reward.accel`'s two speed-ups, each in a fresh process as a reward worker
                   starts (ANTLR's prediction cache and sympy's caches warm up within a process, so the two
                   routes must not share one), alternately round by round

Verdicts are compared too: the script fails if the two routes disagree on any completion.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
LEFTOVERS = Path(__file__).resolve().parents[1] / "tests" / "reward" / "data" / "quickstart_leftovers.jsonl"


def gsm8k_completions(limit: int, seed: int) -> list[tuple[str, str]]:
    """(completion, gold) pairs from the GSM8K answers, right and wrong, in the formats models write."""
    from rlbal.data.gsm8k import gsm8k

    golds = gsm8k("train").answers + gsm8k("test").answers
    rng = random.Random(seed)
    out = []
    for gold in rng.sample(golds, limit):
        n = int(gold)
        forms = [
            rf"so the total is \boxed{{{n:,}}}.",
            f"The answer is {gold}.",
            rf"\boxed{{{gold}.00}}",
            f"The answer is: {gold} apples.",
            rf"\boxed{{{n + 1}}}",
            f"so {n * 2}",
            rf"\boxed{{\frac{{{2 * n + 1}}}{{2}}}}",
        ]
        out.append((rng.choice(forms), gold))
    return out


def arithmetic_completions(limit: int, seed: int) -> list[tuple[str, str]]:
    """The quickstart's completions: a boxed integer, right about a quarter of the time."""
    rng = random.Random(seed)
    out = []
    for _ in range(limit):
        gold = rng.randint(-20, 30)
        pred = gold if rng.random() < 0.25 else gold + rng.choice([-2, -1, 1, 3])
        out.append((f"{rng.randint(1, 9)} + {rng.randint(1, 9)} = ... The answer is \\boxed{{{pred}}}.", str(gold)))
    return out


def per_completion(pairs: list[tuple[str, str]], rounds: int) -> dict[str, float]:
    """Median seconds per completion of the fast path and of math-verify, and their ratio (per round)."""
    from reward.math import math_fast, math_reward

    for c, g in pairs[:20]:  # sympy's first calls (imports, caches) are not timed
        math_reward(c, g, extraction="boxed_or_last_number", fast_path=False)
    fast_s, slow_s, ratios, decided = [], [], [], 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        fast = [math_fast(c, g, extraction="boxed_or_last_number") for c, g in pairs]
        t1 = time.perf_counter()
        slow = [math_reward(c, g, extraction="boxed_or_last_number", fast_path=False) for c, g in pairs]
        t2 = time.perf_counter()
        for f, s, (c, g) in zip(fast, slow, pairs):
            if f is not None and (f.outcome, f.score) != (s.outcome, s.score):
                raise SystemExit(f"verdicts differ on {c!r} vs gold {g!r}: fast {f}, math-verify {s}")
        decided = sum(f is not None for f in fast)
        fast_s.append((t1 - t0) / len(pairs))
        slow_s.append((t2 - t1) / len(pairs))
        ratios.append((t2 - t1) / (t1 - t0))
    return {
        "fast_us": 1e6 * statistics.median(fast_s),
        "math_verify_us": 1e6 * statistics.median(slow_s),
        "ratio": statistics.median(ratios),
        "decided": decided / len(pairs),
        "n": len(pairs),
    }


def per_step(pairs: list[tuple[str, str]], workers: int, rounds: int) -> dict[str, float]:
    """Median seconds of one executor `score` call over the step's completions, with and without the fast path."""
    from reward.executor import RewardExecutor
    from reward.registry import RewardSpec

    completions, golds = [c for c, _ in pairs], [g for _, g in pairs]
    spec = {"extraction": "boxed_or_last_number"}
    with (
        RewardExecutor(RewardSpec("math", spec), num_workers=workers, timeout_s=10.0) as fast,
        RewardExecutor(
            RewardSpec("math", {**spec, "fast_path": False}),
            num_workers=workers,
            timeout_s=10.0,
            prefilter=False,
            chunk_size=8,
        ) as slow,
    ):
        fast.wait_ready()
        slow.wait_ready()
        fast.score(completions[:32], golds[:32])  # warm-up: first calls in every worker
        slow.score(completions[:32], golds[:32])
        fast_s, slow_s, ratios = [], [], []
        for _ in range(rounds):
            a, b = fast.score(completions, golds), slow.score(completions, golds)
            if a.outcomes != b.outcomes:
                raise SystemExit("executor verdicts differ between the routes")
            fast_s.append(a.seconds)
            slow_s.append(b.seconds)
            ratios.append(b.seconds / a.seconds)
        frac = fast.metrics()["reward/fast_frac"]
    return {
        "fast_s": statistics.median(fast_s),
        "slow_s": statistics.median(slow_s),
        "fast_spread": (min(fast_s), max(fast_s)),
        "slow_spread": (min(slow_s), max(slow_s)),
        "ratio": statistics.median(ratios),
        "fast_frac": frac,
    }


def _leftovers_seconds(fast: bool) -> tuple[float, list[str]]:
    """In a fresh process: seconds to score every leftover completion, and the outcomes."""
    import json

    from reward.math import math_reward

    lines = LEFTOVERS.read_text(encoding="utf-8").splitlines()
    pairs = [(row["completion"], row["answer"]) for row in map(json.loads, lines)]
    for c, g in [(r"\boxed{x+1}", "2"), (r"\boxed{\frac{1}{2}}", "0.5")]:  # imports, first calls: not timed
        math_reward(c, g, fast_path=fast)
    t0 = time.perf_counter()
    outcomes = [math_reward(c, g, extraction="boxed_or_last_number", fast_path=fast).outcome for c, g in pairs]
    return time.perf_counter() - t0, outcomes


def leftovers_cost(rounds: int) -> dict[str, float]:
    """Median ms per leftover completion, plain math-verify vs accelerated, and their ratio (per round)."""
    import multiprocessing as mp

    context = mp.get_context("spawn")
    plain_s, fast_s, ratios, n = [], [], [], 0
    for _ in range(rounds):
        out = {}
        for fast in (False, True):
            with context.Pool(1) as pool:
                out[fast] = pool.apply(_leftovers_seconds, (fast,))
        if out[False][1] != out[True][1]:
            raise SystemExit("verdicts differ between plain and accelerated math-verify on the leftovers")
        n = len(out[True][1])
        plain_s.append(out[False][0])
        fast_s.append(out[True][0])
        ratios.append(out[True][0] / out[False][0])
    return {
        "plain_ms": 1e3 * statistics.median(plain_s) / n,
        "fast_ms": 1e3 * statistics.median(fast_s) / n,
        "spread": (1e3 * min(fast_s) / n, 1e3 * max(fast_s) / n, 1e3 * min(plain_s) / n, 1e3 * max(plain_s) / n),
        "ratio": statistics.median(ratios),
        "n": n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--completions", type=int, default=512, help="completions per set (one quickstart step: 512)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="reward worker processes (per-step part)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import os

    sets = {
        "gsm8k": gsm8k_completions(args.completions, args.seed),
        "arithmetic": arithmetic_completions(args.completions, args.seed),
    }
    print(f"load average before: {os.getloadavg()[0]:.1f}; {args.rounds} interleaved rounds, medians\n")
    print(f"{'per completion, inline':<28} {'fast path us':>13} {'math-verify us':>15} {'ratio':>7} {'decided':>8}")
    for name, pairs in sets.items():
        r = per_completion(pairs, args.rounds)
        print(f"{name:<28} {r['fast_us']:>13.1f} {r['math_verify_us']:>15.1f} {r['ratio']:>6.0f}x {r['decided']:>8.1%}")
    print(f"\n{'executor, one score call':<28} {'prefilter s':>13} {'all-workers s':>15} {'ratio':>7} {'fast':>8}")
    for name, pairs in sets.items():
        for w in args.workers:
            r = per_step(pairs, w, args.rounds)
            label = f"{name}, {len(pairs)} x {w} worker(s)"
            print(
                f"{label:<28} {r['fast_s']:>13.4f} {r['slow_s']:>15.4f} {r['ratio']:>6.1f}x {r['fast_frac']:>8.1%}"
                f"   spread {r['fast_spread'][0]:.4f}-{r['fast_spread'][1]:.4f} / "
                f"{r['slow_spread'][0]:.4f}-{r['slow_spread'][1]:.4f}"
            )
    r = leftovers_cost(args.rounds)
    print(
        f"\nleftovers ({r['n']} completions math-verify decides), ms per completion: plain {r['plain_ms']:.2f} "
        f"({r['spread'][2]:.2f}-{r['spread'][3]:.2f}), accelerated {r['fast_ms']:.2f} "
        f"({r['spread'][0]:.2f}-{r['spread'][1]:.2f}), ratio {r['ratio']:.2f}x; same verdicts"
    )
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
