"""`rlbal compare`: the statistics against hand computations, method parsing, and a tiny end-to-end comparison
(2 methods x 2 seeds x 3 steps) through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlbal.compare.runner import BUILTIN, Method, parse_methods, parse_seeds
from rlbal.compare.stats import bootstrap_ci, bootstrap_means, estimate, method_mean, paired
from rlbal.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_method_mean_and_bootstrap_by_hand():
    x = {1: np.array([1.0, 0.0, 1.0]), 2: np.array([0.0, 0.0])}
    assert method_mean(x) == pytest.approx((2 / 3 + 0.0) / 2)
    # repeat the draws of two replicates by hand: seeds first, then prompts of each drawn seed in order
    rng = np.random.default_rng(7)
    want = []
    for _ in range(2):
        picks = rng.integers(0, 2, 2)
        means = []
        for j in picks:
            v = x[[1, 2][j]]
            means.append(v[rng.integers(0, v.size, v.size)].mean())
        want.append(np.mean(means))
    np.testing.assert_allclose(bootstrap_means(x, 2, np.random.default_rng(7)), want)
    lo, hi = bootstrap_ci(x, draws=500, seed=3)
    assert 0 <= lo < method_mean(x) < hi <= 1


def test_paired_difference_cancels_shared_prompts_and_seeds():
    base = {1: np.array([0.0, 1.0, 0.5, 0.25]), 2: np.array([1.0, 0.0])}
    same = paired(base, base)
    e = estimate(same, draws=300)
    assert (e.mean, e.low, e.high, e.runs) == (0.0, 0.0, 0.0, 2)
    better = {s: v + 0.1 for s, v in base.items()}  # +0.1 on every prompt: the paired interval is a point
    e = estimate(paired(better, base), draws=300)
    assert e.mean == pytest.approx(0.1) and e.low == pytest.approx(0.1) and e.high == pytest.approx(0.1)
    assert e.excludes_zero and not estimate(same, draws=300).excludes_zero
    # unpaired, the same +0.1 is lost in the spread between prompts
    lo, hi = bootstrap_ci(better, draws=500, seed=0)
    assert hi - lo > 0.3
    with pytest.raises(ValueError, match="same held-out prompts"):
        paired({1: np.zeros(3)}, {1: np.zeros(2)})


def test_methods_and_seeds_parse_with_one_line_errors():
    ms = parse_methods("grpo,gdro", ["knap rollout_gdro controllers.rollout.allocator=knapsack"])
    assert [m.name for m in ms] == ["grpo", "gdro", "knap"] and ms[2].overrides == (
        "controllers.rollout.allocator=knapsack",
    )
    assert Method("grpo", "grpo").run_overrides({}) == ["controllers.prompt_gdro=null", "controllers.rollout=null"]
    # the recipe's own section is kept for the method that turns it on
    assert Method("g", "gdro").run_overrides({"prompt_gdro": object(), "rollout": None}) == ["controllers.rollout={}"]
    assert set(BUILTIN) == {"grpo", "prompt_gdro", "rollout_gdro", "gdro"}
    for bad, match in (("grpo,foo", "unknown method 'foo'"), ("grpo,grpo", "unique")):
        with pytest.raises(UserError, match=match):
            parse_methods(bad, [])
    with pytest.raises(UserError, match='expected "NAME BASE key=value'):
        parse_methods("grpo", ["x nothing"])
    assert parse_seeds("1,2,3") == [1, 2, 3]
    with pytest.raises(UserError, match="distinct non-negative"):
        parse_seeds("1,1")


@pytest.mark.slow
def test_compare_end_to_end_on_a_tiny_setting(tmp_path):
    out = tmp_path / "cmp"
    cmd = [
        sys.executable,
        "-m",
        "rlbal",
        "compare",
        str(ROOT / "recipes" / "quickstart.yaml"),
        "--methods",
        "grpo,gdro",
        "--seeds",
        "1,2",
        "--out",
        str(out),
        "--eval-size",
        "4",
        "--eval-k",
        "2",
        "--bootstrap",
        "200",
        "run.max_steps=3",
        "train.prompts_per_step=8",
        "rollout.engine=hf",
        "rollout.max_new_tokens=16",
        "data.size=20",
        "eval.size=2",
        "eval.every=2",
        "reward.workers=1",
        "checkpoint.every=2",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = (out / "report.md").read_text()
    assert "every check passed: yes" in report and "| gdro | 2 | all |" in report and "| grpo | 2 | level 2 |" in report
    for m in ("grpo", "gdro"):
        for s in (1, 2):
            h = json.loads((out / "runs" / f"{m}_s{s}" / "heldout.json").read_text())
            assert h["k"] == 2 and len(h["correct"]) == len(h["keys"]) == len(h["level"]) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gdro|pass@1|all"]["runs"] == 2 and "diff|gdro|pass@1|all" in summary
    assert {p.name for p in (out / "plots").glob("*.png")} >= {
        "heldout_vs_compute.png",
        "bin_share.png",
        "budget_vs_data.png",
        "lead_lag.png",
        "migration.png",
    }
    # a second call finds every run scored and only rewrites the report
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("already scored") == 4
