"""rlbal.evaluate: the unbiased pass@k estimator against brute force and exact rationals, the per-group metrics
with hand-computed numbers, and `run_eval` on the real engines (transformers; vLLM, marked) with the tiny model."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from rlbal.evaluate import EvalSamples, accuracy_metrics, eval_metrics, pass_at_k, prompt_groups, report_ks


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the C(n, k) k-subsets of n samples (the first c correct) that contain a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_equals_enumerating_every_subset():
    cases = [(n, c, k) for n in range(1, 9) for c in range(n + 1) for k in range(1, n + 1)]
    n_N, c_N, k_N = (np.array(col) for col in zip(*cases))
    for k in range(1, 9):
        sel = k_N == k
        expected = [brute_force_pass_at_k(n, c, k) for n, c in zip(n_N[sel], c_N[sel])]
        np.testing.assert_allclose(pass_at_k(n_N[sel], c_N[sel], k), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "n,c,k,expected",
    [
        (4, 1, 2, 1 - 3 / 6),  # 1 - C(3,2)/C(4,2)
        (8, 1, 1, 1 / 8),  # pass@1 = c/n
        (8, 3, 1, 3 / 8),
        (8, 2, 4, 1 - 15 / 70),  # 1 - C(6,4)/C(8,4)
        (8, 0, 8, 0.0),  # nothing correct
        (8, 1, 8, 1.0),  # the only 8-subset holds the correct one
        (5, 4, 2, 1.0),  # n - c = 1 < k: every pair holds a correct sample
    ],
)
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k([n], [c], k)[0] == pytest.approx(expected, abs=1e-15)


def test_pass_at_k_is_exact_where_binomials_overflow_floats():
    # C(2000, 100) ~ 1e171 and C(2000, 500) overflows float64; the product form needs no binomial.
    cases = [(2000, 3, 100), (2000, 40, 500), (1000, 1, 999), (300, 150, 16)]
    for n, c, k in cases:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k([n], [c], k)[0] == pytest.approx(float(exact), rel=1e-12, abs=1e-15), (n, c, k)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="need n >= k=4"):
        pass_at_k([3], [1], 4)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k([4], [5], 2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        pass_at_k([4], [1], 0)


def test_report_ks():
    assert report_ks(16) == [1, 2, 4, 8, 16]
    assert report_ks(12) == [1, 2, 4, 8, 12]
    assert report_ks(2) == [1, 2]


def make_samples(correct_NK: np.ndarray, greedy_N: np.ndarray, rng: np.random.Generator) -> EvalSamples:
    """EvalSamples with rows in a shuffled order (engines need not return prompt order)."""
    n, k = correct_NK.shape
    prompt_M = np.concatenate([np.repeat(np.arange(n), k), np.arange(n)])
    greedy_M = np.arange(len(prompt_M)) >= n * k
    correct_M = np.concatenate([correct_NK.ravel(), greedy_N])
    perm = rng.permutation(len(prompt_M))
    return EvalSamples(
        prompt_M=prompt_M[perm],
        greedy_M=greedy_M[perm],
        correct_M=correct_M[perm],
        score_M=correct_M[perm].astype(float),
        length_M=np.full(len(perm), 10),
        truncated_M=np.zeros(len(perm), bool),
        outcomes=["correct" if c else "wrong" for c in correct_M[perm]],
        texts=[""] * len(perm),
        n_prompts=n,
        k=k,
    )


def test_correct_matrix_inverts_a_shuffled_row_order():
    rng = np.random.default_rng(0)
    correct_NK = rng.random((5, 4)) < 0.5
    greedy_N = np.array([1, 0, 0, 1, 1], bool)
    s = make_samples(correct_NK, greedy_N, rng)
    # Within a prompt the order of the k samples changes, so compare per-prompt sorted rows and the counts.
    np.testing.assert_array_equal(np.sort(s.correct_matrix(), axis=1), np.sort(correct_NK, axis=1))
    np.testing.assert_array_equal(s.greedy_correct(), greedy_N)


def test_eval_samples_reject_a_prompt_with_too_few_samples():
    with pytest.raises(ValueError, match="needs k=2 sampled and 1 greedy"):
        EvalSamples(
            prompt_M=np.array([0, 0, 1, 0, 1]),
            greedy_M=np.array([0, 0, 0, 1, 1], bool),
            correct_M=np.zeros(5, bool),
            score_M=np.zeros(5),
            length_M=np.zeros(5, int),
            truncated_M=np.zeros(5, bool),
            outcomes=["wrong"] * 5,
            texts=[""] * 5,
            n_prompts=2,
            k=2,
        )


def test_eval_metrics_per_level_and_task_by_hand():
    # 4 prompts, k = 4. Correct counts c = [4, 1, 0, 2]; greedy correct = [1, 1, 0, 0].
    correct_NK = np.array([[1, 1, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], bool)
    greedy_N = np.array([1, 1, 0, 0], bool)
    difficulty_N = np.array([1.0, 1.0, 2.0, np.nan])
    metas = [{"task": "chain_sum"}, {"task": "chain_sum"}, {"task": "countdown"}, {"task": "countdown"}]
    m = eval_metrics(make_samples(correct_NK, greedy_N, np.random.default_rng(1)), difficulty_N, metas)
    # pass@2 per prompt: c=4 -> 1; c=1 -> 1 - C(3,2)/C(4,2) = 1/2; c=0 -> 0; c=2 -> 1 - C(2,2)/C(4,2) = 5/6.
    # pass@4: [1, 1, 0, 1]. mean@4 = 7/16.
    assert m["eval/pass@1"] == pytest.approx(7 / 16)
    assert m["eval/pass@2"] == pytest.approx((1 + 0.5 + 0 + 5 / 6) / 4)
    assert m["eval/pass@4"] == pytest.approx(3 / 4)
    assert m["eval/mean@4"] == pytest.approx(7 / 16)
    assert m["eval/greedy/pass@1"] == pytest.approx(2 / 4)
    # Level 1 = prompts 0, 1; level 2 = prompt 2; prompt 3 has no known level.
    assert m["eval/level_1/pass@2"] == pytest.approx((1 + 0.5) / 2)
    assert m["eval/level_1/mean@4"] == pytest.approx(5 / 8)
    assert m["eval/level_2/pass@4"] == 0.0 and m["eval/level_2/n_prompts"] == 1.0
    assert m["eval/task_countdown/pass@2"] == pytest.approx((0 + 5 / 6) / 2)
    assert m["eval/task_chain_sum/greedy/pass@1"] == 1.0
    assert m["eval/outcome/correct"] == pytest.approx(7 / 16) and m["eval/outcome/wrong"] == pytest.approx(9 / 16)
    assert not any(key.startswith("eval/level_nan") for key in m)


def test_prompt_groups_single_task_has_no_task_split():
    groups = prompt_groups(np.array([0.5, 3.0]), [{"task": "a"}, {"task": "a"}])
    assert list(groups) == ["", "level_0.5", "level_3"]


def test_accuracy_metrics_mean_equals_pass_at_1():
    rng = np.random.default_rng(3)
    correct_NK = rng.random((50, 8)) < 0.3
    m = accuracy_metrics(correct_NK, correct_NK[:, 0])
    assert m["pass@1"] == pytest.approx(m["mean@8"]) and m["mean@8"] == pytest.approx(correct_NK.mean())
    assert m["pass@1"] <= m["pass@2"] <= m["pass@4"] <= m["pass@8"] == pytest.approx(correct_NK.any(axis=1).mean())


# ----------------------------------------------------------------------------- real engine, tiny model


@pytest.fixture(scope="module")
def tiny_sft():
    from rlbal.assets import resolve_model

    return resolve_model("tiny-sft")


@pytest.fixture(scope="module", params=["hf", pytest.param("vllm", marks=pytest.mark.vllm)])
def engine(request, tiny_sft):
    """The real engines (vLLM in-process on CPU, eager), one per module: every test below runs on both."""
    from rlbal.rollout import make_engine

    return make_engine(request.param, tiny_sft, dtype="float32", seed=0, max_model_len=512)


@pytest.fixture(scope="module")
def prompts(tiny_sft):
    from transformers import AutoTokenizer

    from rlbal.data.dataset import ProceduralSpec, load_prompts

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_sft))
    dataset = load_prompts(ProceduralSpec(tasks=("chain_sum",), levels=(1, 2), size=6, seed=123), tokenizer)
    return dataset.batch(np.arange(len(dataset), dtype=np.int64))


MATH = dict(extraction="boxed_or_last_number")
EVAL_ARGS = dict(k=4, temperature=1.0, top_p=1.0, max_new_tokens=24, seed=7)


@pytest.fixture(scope="module")
def result(engine, prompts):
    from reward.executor import RewardExecutor
    from reward.registry import RewardSpec
    from rlbal.evaluate import run_eval

    with RewardExecutor(RewardSpec("math", MATH), num_workers=0) as rewards:
        return run_eval(engine, prompts, rewards, **EVAL_ARGS)


def test_run_eval_samples_k_plus_greedy_per_prompt(result, prompts):
    s = result.samples
    assert s.n_prompts == len(prompts) == 12 and s.k == 4 and len(s.prompt_M) == 12 * 5
    np.testing.assert_array_equal(np.bincount(s.prompt_M[~s.greedy_M]), np.full(12, 4))
    np.testing.assert_array_equal(np.bincount(s.prompt_M[s.greedy_M]), np.ones(12))
    assert (s.length_M >= 1).all() and (s.length_M <= EVAL_ARGS["max_new_tokens"]).all()
    # The length cap and the truncation flag agree.
    np.testing.assert_array_equal(s.truncated_M[s.length_M < EVAL_ARGS["max_new_tokens"]], False)


def test_run_eval_correctness_is_each_text_scored_against_its_own_prompt(result, prompts):
    from reward.math import math_reward

    s = result.samples
    rescored = np.array(
        [math_reward(t, prompts.answers[i], **MATH).outcome == "correct" for t, i in zip(s.texts, s.prompt_M)]
    )
    np.testing.assert_array_equal(s.correct_M, rescored)
    # The SFT-warmed tiny model is right sometimes and wrong sometimes, so the checks below are not vacuous.
    assert 0 < s.correct_M.sum() < len(s.correct_M)


def test_run_eval_metrics_equal_a_recount_of_the_samples(result, prompts):
    s, m = result.samples, result.metrics
    correct_NK, greedy_N = s.correct_matrix(), s.greedy_correct()
    assert m["eval/mean@4"] == pytest.approx(correct_NK.mean())
    assert m["eval/greedy/pass@1"] == pytest.approx(greedy_N.mean())
    for j in (1, 2, 4):
        brute_N = [brute_force_pass_at_k(4, int(c), j) for c in correct_NK.sum(axis=1)]
        assert m[f"eval/pass@{j}"] == pytest.approx(np.mean(brute_N)), j
    for level in (1, 2):
        rows = prompts.difficulty == level
        assert m[f"eval/level_{level}/n_prompts"] == 6
        assert m[f"eval/level_{level}/mean@4"] == pytest.approx(correct_NK[rows].mean())
        assert m[f"eval/level_{level}/pass@4"] == pytest.approx(correct_NK[rows].any(axis=1).mean())
    assert m["eval/len_mean"] == pytest.approx(s.length_M[~s.greedy_M].mean())
    assert m["eval/outcome/correct"] == pytest.approx(correct_NK.mean())


def test_greedy_completions_match_a_separate_greedy_generate(result, engine, prompts):
    from rlbal.rollout import SamplingSpec

    again = engine.generate(
        prompts.prompt_token_ids, [1] * len(prompts), SamplingSpec(max_new_tokens=24, temperature=0.0)
    )
    s = result.samples
    greedy_texts = [s.texts[i] for i in np.flatnonzero(s.greedy_M)[np.argsort(s.prompt_M[s.greedy_M])]]
    assert greedy_texts == [c.text for c in sorted(again.completions, key=lambda c: c.prompt_index)]


def test_evaluate_is_reproducible_in_its_seed(result, engine, prompts):
    from reward.executor import RewardExecutor
    from reward.registry import RewardSpec
    from rlbal.evaluate import evaluate

    with RewardExecutor(RewardSpec("math", MATH), num_workers=0) as rewards:
        again = evaluate(engine, prompts, rewards, **EVAL_ARGS)
    same = {k: v for k, v in result.metrics.items() if not k.startswith("eval/timing/")}
    assert {k: v for k, v in again.items() if not k.startswith("eval/timing/")} == same


# ----------------------------------------------------------------------------- `rlbal eval`


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_sft):
    """A run directory as the trainer leaves it: resolved config.yaml and one complete checkpoint (step 5)."""
    import shutil

    from rlbal.config import load_config, save_resolved
    from rlbal.learner.checkpoint import write_checkpoint

    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(
        overrides=[
            f"run.output_dir={root}",
            "run.name=tiny",
            f"model.path={tiny_sft}",
            "rollout.engine=hf",
            "rollout.max_new_tokens=24",
            "data.tasks=[chain_sum]",
            "data.levels=[1, 2]",
            "eval.size=3",
            "eval.k=2",
            "reward.workers=1",
        ]
    )
    run = root / "tiny"
    save_resolved(cfg, run)
    write_checkpoint(run, 5, lambda folder: shutil.copytree(tiny_sft, folder / "model"), keep_last=2)
    return run


def read_eval_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]


def test_eval_main_evaluates_the_newest_checkpoint_and_appends_a_line(run_dir, capsys):
    from rlbal.eval_cli import eval_main

    assert eval_main([str(run_dir), "--k", "4", "eval.size=2", "--engine", "hf"]) == 0
    (line,) = read_eval_lines(run_dir)
    assert line["step"] == 5 and line["checkpoint"] == str(run_dir / "checkpoints" / "step_5" / "model")
    assert line["k"] == 4 and line["engine"] == "hf"
    # eval.size=2 per (task, level) with levels 1, 2 -> 4 prompts; k = 4 gives pass@1,2,4 and mean@4.
    assert line["eval/n_prompts"] == 4 and line["eval/level_1/n_prompts"] == 2 and line["eval/level_2/n_prompts"] == 2
    assert {"eval/pass@1", "eval/pass@2", "eval/pass@4", "eval/mean@4", "eval/greedy/pass@1"} <= set(line)
    assert line["eval/pass@1"] == pytest.approx(line["eval/mean@4"])
    assert line["eval/pass@1"] <= line["eval/pass@2"] <= line["eval/pass@4"]
    out = capsys.readouterr().out
    assert "greedy pass@1" in out and "level_2" in out and "eval.jsonl" in out


def test_pick_model_base_checkpoint_and_newest(run_dir, tiny_sft):
    from rlbal.config import load_config
    from rlbal.eval_cli import pick_model

    cfg = load_config(run_dir / "config.yaml")
    step_5 = run_dir / "checkpoints" / "step_5"
    assert pick_model(run_dir, cfg, None, base=False) == (step_5 / "model", 5)
    assert pick_model(run_dir, cfg, None, base=True) == (tiny_sft, 0)
    assert pick_model(run_dir, cfg, step_5, base=False) == (step_5 / "model", 5)
    assert pick_model(run_dir, cfg, tiny_sft, base=False) == (tiny_sft, None)  # any HF folder, step unknown


def test_eval_main_reports_bad_input_with_exit_code_2(run_dir, tmp_path, capsys):
    from rlbal.cli import main

    assert main(["eval", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err == f"rlbal: input error: {tmp_path / 'config.yaml'} not found (not a run directory?)\n"
    )
    assert main(["eval", str(run_dir), "eval.kk=3"]) == 2
    assert capsys.readouterr().err == "rlbal: config error: unknown key 'eval.kk' (did you mean 'eval.k'?)\n"
    assert main(["eval", str(run_dir), "--checkpoint", str(tmp_path)]) == 2
    assert "rlbal: checkpoint error: --checkpoint " in capsys.readouterr().err
    empty = tmp_path / "fresh"
    empty.mkdir()
    (empty / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    assert main(["eval", str(empty)]) == 2
    assert capsys.readouterr().err == (
        f"rlbal: checkpoint error: {empty}: no complete checkpoint in "
        f"{empty / 'checkpoints'}; pass --checkpoint PATH or --base\n"
    )
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--help"])
    assert exc.value.code == 0


@pytest.mark.parametrize("kind", ["hf", "vllm"])
def test_engine_options_are_accepted_by_each_engine(run_dir, kind):
    """`rlbal eval --engine vllm` builds its engine like the trainer; its options must fit either engine
    (checked on the constructors' signatures, without starting vLLM)."""
    import inspect

    from rlbal.assemble import engine_options
    from rlbal.config import load_config
    from rlbal.rollout.hf_engine import HFEngine
    from rlbal.rollout.vllm_engine import VLLMEngine

    cls = {"hf": HFEngine, "vllm": VLLMEngine}[kind]
    opts = engine_options(load_config(run_dir / "config.yaml", [f"rollout.engine={kind}"]))
    assert set(opts) <= set(inspect.signature(cls.__init__).parameters), (kind, sorted(opts))
    assert opts["max_model_len"] == 256 + 24  # data.max_prompt_tokens + rollout.max_new_tokens
