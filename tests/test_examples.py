"""The examples run end to end on the tiny model, and what the controllers decided matches slow references.

Each example runs as a subprocess with small arguments and prints `RESULT {json}`: per step the prompt ids,
bins, advantage weights (and rollout counts / advantages) and outcomes, the controllers' final metrics and how
far the weights moved. From the recorded outcomes alone the tests recompute, with plain-Python references,
every prompt's bin (pass-rate history + hysteresis), Prompt-GDRO's class scores and weights, and for TRL the
group-normalised advantages; then check that the examples applied them (weights x advantages, the
Rollout-GDRO budget) and that training moved the parameters.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from reward.math import math_reward

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
NUM_BINS, ETA, GAMMA, BETA, OMEGA_MAX = 5, 0.65, 0.01, 0.12, 15.0  # the examples' configs


def run_example(script: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread: 2 threads on a shared 2-core box crawl
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def reference_bins(steps: list[dict], counts: list[list[int]], hysteresis: float) -> list[list[int]]:
    """Bins each step should have used: cumulative per-response pass rate of earlier steps (window 50 > all
    responses here), edges k/5, unseen -> bin 0, and the hysteresis rule of docs/controllers.md (farthest bin
    cleared by delta; a first observation takes its raw bin)."""
    edges = [Fraction(k, NUM_BINS) for k in range(1, NUM_BINS)]
    hits: dict[int, list[int]] = {}
    stored: dict[int, int] = {}
    out = []
    for s, n_step in zip(steps, counts):
        out.append([stored.get(i, 0) for i in s["ids"]])
        for i, k, n in zip(s["ids"], s["n_correct"], n_step):
            hits.setdefault(i, []).extend([1] * k + [0] * (n - k))
            acc = Fraction(sum(hits[i]), len(hits[i]))
            raw = sum(e <= acc for e in edges)
            old = stored.get(i)
            if old is None or raw == old:
                stored[i] = raw
            elif raw > old:  # up into b needs acc >= edge[b-1] + delta
                stored[i] = max(
                    [b for b in range(old + 1, raw + 1) if acc >= edges[b - 1] + Fraction(hysteresis)], default=old
                )
            else:  # down into b needs acc <= edge[b] - delta
                stored[i] = min([b for b in range(raw, old) if acc <= edges[b] - Fraction(hysteresis)], default=old)
    return out


def reference_prompt_gdro(steps: list[dict], counts: list[list[int]]) -> tuple[list[list[float]], dict[int, float]]:
    """Weights of every step and final class scores, from the recorded bins and outcomes. Signal: failure rate;
    class mean over prompts (no share normalisation: the default); EMA 0.12 after a first observation; weights: q
    over the present classes = 0.99 softmax(0.65 S) + 0.01 / |present|, scaled to mean 1 over the responses,
    capped at 15."""
    score: dict[int, float] = {}
    weights = []
    for s, n in zip(steps, counts):
        present = sorted(set(s["bins"]))
        z = sum(math.exp(ETA * score.get(b, 0.0)) for b in present)
        q = {b: (1 - GAMMA) * math.exp(ETA * score.get(b, 0.0)) / z + GAMMA / len(present) for b in present}
        scale = sum(n) / sum(q[b] * c for b, c in zip(s["bins"], n))
        weights.append([min(q[b] * scale, OMEGA_MAX) for b in s["bins"]])
        for b in present:
            rows = [(k, c) for bb, k, c in zip(s["bins"], s["n_correct"], n) if bb == b]
            step = sum(1 - k / c for k, c in rows) / len(rows)
            score[b] = step if b not in score else (1 - BETA) * score[b] + BETA * step
    return weights, score


def check_controllers(res: dict, steps: list[dict], counts: list[list[int]], hysteresis: float) -> None:
    """Bins, weights, final scores and tracked prompts equal the references."""
    assert [s["bins"] for s in steps] == reference_bins(steps, counts, hysteresis)
    weights, score = reference_prompt_gdro(steps, counts)
    for s, w in zip(steps, weights):
        assert s["weights"] == pytest.approx(w, rel=1e-9)
    assert any(len(set(w)) > 1 for w in weights[1:]), "Prompt-GDRO never separated two classes"
    for b in range(NUM_BINS):
        assert res["metrics"][f"controller/prompt_gdro/score/bin_{b}"] == pytest.approx(score.get(b, 0.0), rel=1e-9)
    tracked = len({i for s in steps for i in s["ids"]})
    assert res["metrics"]["controller/classifier/tracked"] == tracked


def test_custom_grpo_loop(tmp_path):
    # 8 prompts x mean 4 rollouts from a pool of 18, so later steps revisit prompts (their bins move)
    res = run_example(
        "custom_grpo_loop.py",
        "--steps",
        "4",
        "--prompts",
        "8",
        "--size",
        "6",
        "--max-new-tokens",
        "16",
        "--allocator",
        "sqrt",
    )
    steps = res["history"]
    assert len(steps) == 4
    for s in steps:
        assert sum(s["counts"]) == 8 * 4 and 2 <= min(s["counts"]) and max(s["counts"]) <= 12  # exact budget
        assert len(s["texts"]) == sum(s["counts"])
        # outcomes the controllers observed = a re-score of the recorded completions, grouped by prompt
        ok = [
            math_reward(t, res["answers"][i], extraction="boxed_or_last_number").outcome == "correct"
            for i, c, start in zip(s["ids"], s["counts"], [0, *_cumsum(s["counts"])])
            for t in s["texts"][start : start + c]
        ]
        assert s["n_correct"] == [sum(ok[a : a + c]) for a, c in zip([0, *_cumsum(s["counts"])], s["counts"])]
    check_controllers(res, steps, [s["counts"] for s in steps], hysteresis=0.0)
    assert sum(sum(s["n_correct"]) for s in steps) > 0, "no correct completion: no gradient to check"
    assert res["tensors_moved"] == res["tensors"] and res["param_delta"] > 1e-4


def _cumsum(xs: list[int]) -> list[int]:
    out, acc = [], 0
    for x in xs:
        acc += x
        out.append(acc)
    return out


def test_trl_prompt_gdro(tmp_path):
    G = 4
    res = run_example(
        "trl_prompt_gdro.py",
        "--steps",
        "3",
        "--prompts",
        "8",
        "--num-generations",
        str(G),
        "--size",
        "6",
        "--max-new-tokens",
        "16",
        "--output-dir",
        str(tmp_path / "out"),
    )
    steps = [json.loads(line) for line in Path(res["decisions_path"]).read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3]
    for s in steps:
        r = s["rewards"]
        assert len(r) == 8 * G
        groups = [r[g * G : (g + 1) * G] for g in range(8)]
        assert s["n_correct"] == [sum(x > 0.5 for x in grp) for grp in groups]
        # TRL's own advantages: (r - group mean) / (Bessel std + 1e-4); then x the prompt's weight
        ref = [
            (x - sum(grp) / G) / (math.sqrt(sum((y - sum(grp) / G) ** 2 for y in grp) / (G - 1)) + 1e-4)
            for grp in groups
            for x in grp
        ]
        assert s["advantages_trl"] == pytest.approx(ref, abs=1e-5)
        weighted = [a * s["weights"][k // G] for k, a in enumerate(s["advantages_trl"])]
        assert s["advantages"] == pytest.approx(weighted, rel=1e-6, abs=1e-7)
    check_controllers(res, steps, [[G] * 8 for _ in steps], hysteresis=0.03)
    assert sum(sum(s["n_correct"]) for s in steps) > 0, "no correct completion: no gradient to check"
    assert res["tensors_moved"] == res["tensors"] and res["param_delta"] > 1e-4
    saved = json.loads((tmp_path / "out" / "checkpoint-3" / "controllers.json").read_text())
    assert saved == res["controllers_state"]  # the checkpoint holds the final controller state
