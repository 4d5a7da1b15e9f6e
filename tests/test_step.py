"""rlbal.step: the record transformations of one training step, on small hand-built rounds of real records
(PromptBatch, Allocation, GenerationResult of Completions, ScoreBatch), every number derived by hand.

The step used throughout (two rounds; online filtering kept prompts 10 and 12 of round 1, both of round 2):

    round  prompt  bin  rewards      trained   batch rows
      1      10     0   1 0          yes       0 1
      1      11     2   0 0 0        no        -
      1      12     1   0 0          yes       2 3
      2      13     1   1 0          yes       4 5
      2      14     1   1 1          yes       6 7
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reward.executor import ScoreBatch
from rlbal.config import load_config
from rlbal.controllers.prompt_gdro import PromptGDRO, PromptGDROConfig
from rlbal.controllers.records import Allocation
from rlbal.data.records import PromptBatch
from rlbal.rollout.engine import Completion, GenerationResult
from rlbal.step import (
    Round,
    StepRounds,
    build_batch,
    generated_rewards,
    prompt_results,
    rollout_metrics,
    sampling_for,
    score,
    shaped_rewards,
)

PAD = 0
SQRT2 = math.sqrt(2.0)  # |advantage| mass of a [1, 0] group: 2 * 0.5 / std, Bessel std = sqrt(0.5)


def make_round(ids: list[int], bins: list[int], rewards: list[list[float]]) -> Round:
    """Prompts `ids` (prompt tokens [1, 2]), completions of prompt i scored rewards[i] (correct when 1); the j-th
    completion of a prompt has j + 1 tokens."""
    k = len(ids)
    prompts = PromptBatch(
        indices=np.array(ids, dtype=np.int64),
        keys=[f"k{i}" for i in ids],
        prompt_token_ids=[[1, 2]] * k,
        texts=[f"p{i}" for i in ids],
        answers=[f"a{i}" for i in ids],
        metas=[{"id": i} for i in ids],
        difficulty=np.full(k, np.nan),
    )
    comps = [
        Completion(
            prompt_index=p,
            token_ids=[3] * (j + 1),
            logprobs=[-0.1] * (j + 1),
            text=f"c{ids[p]}.{j}",
            finish_reason="stop",
        )
        for p in range(k)
        for j in range(len(rewards[p]))
    ]
    flat = np.array([r for rs in rewards for r in rs], dtype=np.float64)
    ok = flat == 1.0
    scores = ScoreBatch(
        scores=flat,
        outcomes=["correct" if c else "wrong" for c in ok],
        correct=ok,
        reasons=[""] * len(ok),
        counts={"correct": int(ok.sum()), "wrong": int((~ok).sum())},
        seconds=0.0,
    )
    alloc = Allocation(
        np.array(ids, dtype=np.int64),
        np.array(bins, dtype=np.int64),
        np.ones(k),
        np.array([len(r) for r in rewards], dtype=np.int64),
    )
    return Round(prompts, alloc, GenerationResult(comps, prompts.prompt_token_ids), scores)


def the_step() -> StepRounds:
    step = StepRounds()
    step.add(make_round([10, 11, 12], [0, 2, 1], [[1, 0], [0, 0, 0], [0, 0]]), np.array([0, 2]))
    step.add(make_round([13, 14], [1, 1], [[1, 0], [1, 1]]), np.array([0, 1]))
    return step


def config(*overrides: str):
    return load_config(None, ["rollout.max_new_tokens=4", *overrides])


def test_select_keeps_the_kept_prompts_with_their_completions_and_scores():
    r = the_step().generated[0].select(np.array([0, 2]))
    assert r.prompts.indices.tolist() == [10, 12] and r.prompts.answers == ["a10", "a12"]
    assert r.alloc.bins.tolist() == [0, 1] and r.alloc.counts.tolist() == [2, 2]
    assert [(c.prompt_index, c.text) for c in r.gen.completions] == [
        (0, "c10.0"),
        (0, "c10.1"),
        (1, "c12.0"),
        (1, "c12.1"),
    ]
    assert r.scores.scores.tolist() == [1.0, 0.0, 0.0, 0.0] and r.scores.counts == {"correct": 1, "wrong": 3}
    assert r.group_scores("band")[1].tolist() == [2, 2]


def test_score_sends_each_completion_with_its_own_prompts_answer_and_meta():
    calls = []

    class Recorder:
        def score(self, texts, answers, metas):
            calls.append((texts, answers, metas))
            return "scores"

    r = the_step().generated[1]
    assert score(Recorder(), r.prompts, r.gen) == "scores"
    assert calls == [
        (
            ["c13.0", "c13.1", "c14.0", "c14.1"],
            ["a13", "a13", "a14", "a14"],
            [{"id": 13}, {"id": 13}, {"id": 14}, {"id": 14}],
        )
    ]


def test_sampling_seed_is_a_function_of_run_seed_step_and_round():
    cfg = config("run.seed=2", "rollout.temperature=0.7")
    spec = sampling_for(cfg, step=3, round_=1)
    assert spec.seed == 2 * 1_000_003 + 3 * 1_009 + 1 and (spec.max_new_tokens, spec.temperature) == (4, 0.7)
    assert sampling_for(cfg, 3, 1) == spec and sampling_for(cfg, 3, 2).seed == spec.seed + 1


def test_shaped_rewards_add_dapo_overlong_penalty_from_completion_lengths():
    r = the_step().generated[0]  # lengths 1 2 | 1 2 3 | 1 2; max 4, buffer 2: 3 tokens -> -0.5 * 0.5 = -0.25
    assert shaped_rewards(config(), r).tolist() == [1, 0, 0, 0, 0, 0, 0]
    cfg = config("reward.overlong_buffer=2", "reward.overlong_penalty=0.5")
    assert shaped_rewards(cfg, r).tolist() == [1, 0, 0, 0, -0.25, 0, 0]


def test_generated_rewards_cover_every_round_with_groups_numbered_across_rounds():
    reward_R, group_R = generated_rewards(config(), the_step())
    assert reward_R.tolist() == [1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1]
    assert group_R.tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]


def test_build_batch_weights_only_the_trained_groups_and_spreads_them_over_their_rows():
    seen = []

    def weights(bins, counts, mass):
        seen.append((bins.tolist(), counts.tolist(), mass))
        return np.array([4.0, 1.0, 2.0, 0.5])

    batch, correct_B = build_batch(config(), the_step().trained(), PAD, weights)
    [(bins, counts, mass)] = seen
    assert bins == [0, 1, 1, 1] and counts == [2, 2, 2, 2]  # prompt 11 (bin 2) was filtered out
    np.testing.assert_allclose(mass, [SQRT2, 0.0, SQRT2, 0.0], rtol=1e-5)  # |adv| summed per group; flat groups 0
    assert batch.prompt_id_B.tolist() == [10, 10, 12, 12, 13, 13, 14, 14]
    assert batch.group_B.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert batch.weight_B.tolist() == [4.0, 4.0, 1.0, 1.0, 2.0, 2.0, 0.5, 0.5]
    torch.testing.assert_close(
        batch.advantages_B, torch.tensor([1, -1, 0, 0, 1, -1, 0, 0]) / SQRT2, rtol=1e-5, atol=1e-6
    )
    assert correct_B.tolist() == [True, False, False, False, True, False, True, True]


def test_build_batch_normalises_prompt_gdro_weights_over_the_trained_prompts():
    # code form, mean 1 over responses: w_b = q_b * R / sum_i(n_i q_{b_i}) over the 4 trained groups (R = 8 rows),
    # q over the classes present among them (0 and 1). The filtered prompt's class 2 has the largest score:
    # had it entered the normalisation, bin 2 would be present and every weight would change.
    pg = PromptGDRO(PromptGDROConfig(omega_max=100.0), num_classes=3)
    pg.scores = np.array([1.0, -1.0, 3.0])
    batch, _ = build_batch(config(), the_step().trained(), PAD, pg.weights)
    q = pg.distribution(np.array([True, True, False]))
    assert q[2] == 0 and q[0] > q[1] > 0
    w0, w1 = q[0] * 8 / (2 * q[0] + 6 * q[1]), q[1] * 8 / (2 * q[0] + 6 * q[1])
    np.testing.assert_allclose(batch.weight_B.numpy(), [w0, w0] + [w1] * 6, rtol=1e-6)
    assert batch.weight_B.double().mean().item() == pytest.approx(1.0)


def test_prompt_results_mark_trained_groups_and_map_the_learners_rows_to_their_prompts():
    signal_B = np.array([0.1, 0.3, 0.5, 0.7, 1.0, 2.0, 3.0, 5.0])  # batch rows: 10 10 12 12 13 13 14 14
    res = prompt_results(config("algo.loss_signal=surrogate"), the_step(), signal_B)
    assert res.ids.tolist() == [10, 11, 12, 13, 14] and res.bins.tolist() == [0, 2, 1, 1, 1]
    assert res.trained.tolist() == [True, False, True, True, True]
    assert res.n_rollouts.tolist() == [2, 3, 2, 2, 2] and res.n_correct.tolist() == [1, 0, 0, 1, 2]
    assert res.reward_mean.tolist() == [0.5, 0.0, 0.0, 0.5, 1.0]
    np.testing.assert_allclose(res.loss_signal, [0.2, np.nan, 0.6, 1.5, 4.0])  # the dropped group has no update


def test_prompt_results_reward_signals_exist_for_dropped_groups_too():
    res = prompt_results(config("algo.loss_signal=failure_rate"), the_step(), np.zeros(8))
    assert res.loss_signal.tolist() == [0.5, 1.0, 1.0, 0.5, 0.0]


def test_rollout_metrics_trained_batch_and_informative_share_of_everything_generated():
    cfg, step = config(), the_step()
    batch, correct_B = build_batch(cfg, step.trained(), PAD, lambda b, c, m: np.ones(len(b)))
    m = rollout_metrics(cfg, batch, step, correct_B)
    # trained: rewards 1 0 | 0 0 | 1 0 | 1 1, groups 12 and 14 flat; lengths 1 2 per group
    assert (m["reward/mean"], m["reward/correct_rate"], m["rollout/zero_std_frac"]) == (0.5, 0.5, 0.5)
    assert (m["rollout/num_sequences"], m["rollout/num_prompts"], m["rollout/rounds"]) == (8, 4, 2)
    assert (m["rollout/len_mean"], m["rollout/len_max"], m["rollout/truncated_frac"]) == (1.5, 2, 0)
    assert (m["rollout/per_prompt_min"], m["rollout/per_prompt_max"]) == (2, 2)
    # generated: 11 rollouts of 5 prompts, 4 of them in groups whose rewards differ (10 and 13), reward 4 / 11
    assert (m["rollout/generated"], m["rollout/generated_prompts"], m["rollout/generated_tokens"]) == (11, 5, 18)
    assert m["rollout/informative_frac"] == pytest.approx(4 / 11)
    assert m["rollout/reward_per_rollout"] == pytest.approx(4 / 11)
