"""What only the transformers engine has: the per-step tracker, row chunking, a shared learner module."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlbal.rollout import SamplingSpec
from rlbal.rollout.hf_engine import HFEngine, _StepTracker, chunk_rows

PROMPTS = [[5, 6, 7, 8], [9, 10, 11], [40, 41], [12, 13, 14, 15, 16]]


def test_step_tracker_gathers_sampled_logprobs_and_the_first_finish_step():
    tracker = _StepTracker(batch=2, eos_ids=torch.tensor([2]), stop_criterion=None)
    # step 0: row 0 uniform over 4 tokens -> log(1/4); row 1 scores (ln 3, 0, 0, 0) -> token 0 has 3/6
    tracker.keep_scores(torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3), 0.0, 0.0, 0.0]]))
    done = tracker.after_sample(torch.tensor([[9, 2], [9, 0]]))  # row 0 sampled EOS (2), row 1 token 0
    assert done.tolist() == [True, False]
    # step 1: row 0 is padded with pad == EOS again; row 1 samples EOS from (0, 0, ln 2, 0) -> 2/5
    tracker.keep_scores(torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, math.log(2), 0.0]]))
    tracker.after_sample(torch.tensor([[9, 2, 2], [9, 0, 2]]))
    assert tracker.end_B.tolist() == [0, 1]  # row 0 keeps its first finish step
    got = torch.stack(tracker.logp_steps, dim=1)
    want = torch.tensor([[math.log(1 / 4), math.log(1 / 4)], [math.log(1 / 2), math.log(2 / 5)]])
    torch.testing.assert_close(got, want)


def test_rows_are_chunked_shortest_first_within_the_token_budget():
    lengths = np.array([5, 1, 3, 1])
    # sorted rows 1, 3 (len 1), 2 (len 3), 0 (len 5); +3 new tokens: widths 4, 4, 6, 8
    # budget 12: [1, 3] (2 x 4 = 8), adding row 2 -> 3 x 6 = 18 > 12; [2] then [2, 0] -> 2 x 8 = 16 > 12
    assert [c.tolist() for c in chunk_rows(lengths, new_tokens=3, max_batch_tokens=12)] == [[1, 3], [2], [0]]
    assert [c.tolist() for c in chunk_rows(lengths, new_tokens=3, max_batch_tokens=10**6)] == [[1, 3, 2, 0]]
    # a single row wider than the budget still gets its own call
    assert [c.tolist() for c in chunk_rows(np.array([50]), new_tokens=3, max_batch_tokens=12)] == [[0]]


def test_many_small_generate_calls_give_what_one_big_call_gives(tiny_path, hf_session):
    small = HFEngine(tiny_path, max_batch_tokens=20)  # about one row per call
    greedy = SamplingSpec(max_new_tokens=10, temperature=0.0)
    want = hf_session.generate(PROMPTS, [2, 1, 1, 2], greedy).completions
    got = small.generate(PROMPTS, [2, 1, 1, 2], greedy).completions
    assert [c.token_ids for c in got] == [c.token_ids for c in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.logprobs, w.logprobs, atol=1e-5)


def test_a_shared_module_generates_with_the_learners_current_weights(tiny_path, trainer, ref_logprobs):
    engine = HFEngine(tiny_path, share_module=trainer)
    trainer.train()
    with torch.no_grad():
        trainer.model.norm.weight.mul_(3.0)  # the learner's step, in place
    result = engine.generate(PROMPTS, [1, 1, 0, 1], SamplingSpec(max_new_tokens=8, temperature=0.7, seed=0))
    assert trainer.training  # generate ran in eval mode and gave the module back as it was
    trainer.eval()
    for c in result.completions:
        want = ref_logprobs(trainer, PROMPTS[c.prompt_index], c.token_ids, temperature=0.7)
        np.testing.assert_allclose(c.logprobs, want.numpy(), atol=1e-4)
    assert engine.update_weights(trainer.state_dict()) < 0.05
    assert engine.last_sync.nbytes == 0  # nothing to move


def test_update_rejects_names_the_model_does_not_have(hf_session):
    with pytest.raises(ValueError, match=r"1 names the model does not have, e.g. \['model.extra.weight'\]"):
        hf_session.update_weights({"model.extra.weight": torch.zeros(1)})


def test_update_reports_bytes_moved(hf_session, base_state):
    hf_session.update_weights(base_state)
    # 361 K fp32 parameters counted once per name: the tied pair twice
    want = sum(t.numel() * 4 for t in base_state.values())
    assert hf_session.last_sync.nbytes == want
    assert hf_session.last_sync.metrics()["weight_sync/mbytes"] == pytest.approx(want / 2**20)


def test_max_batch_tokens_is_validated(tiny_path):
    with pytest.raises(ValueError, match="HFEngine.max_batch_tokens must be >= 1, got 0"):
        HFEngine(tiny_path, max_batch_tokens=0)


@pytest.mark.parametrize("variant", ["llama", "qwen2"])
def test_a_group_prompt_is_prefilled_once_and_generates_what_the_plain_prefill_generates(variant, monkeypatch):
    """Rollouts of one prompt share its prefill (one row per distinct prompt, every column but the last); the
    sampled tokens are those of the row-by-row prefill and the logprobs agree to float32 rounding."""
    import rlbal.rollout.hf_engine as hf_engine
    from rlbal.assets import tiny_model

    engine = HFEngine(tiny_model(variant), dtype="float32")
    prompts = [*PROMPTS, [5, 6, 7, 8]]  # the last prompt repeats the first: one prefill row for both
    counts = [3, 1, 0, 4, 2]
    sampling = SamplingSpec(max_new_tokens=12, temperature=1.0, seed=3)
    seen = []
    hook = engine.model.get_input_embeddings().register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    shared = engine.generate(prompts, counts, sampling).completions
    hook.remove()
    assert seen[0] == (3, 4)  # distinct prompts with rollouts: [5..8] (twice), [9..11], [12..16]; width 5 - 1
    assert seen[1] == (sum(counts), 1)  # generate's own prefill: the last prompt column of every row
    monkeypatch.setattr(hf_engine, "shared_prefill", lambda *args: None)
    plain = engine.generate(prompts, counts, sampling).completions
    assert [c.token_ids for c in shared] == [c.token_ids for c in plain]
    assert sum(len(c.token_ids) for c in shared) > 2 * sum(counts)  # the rows sampled more than an EOS
    for s, p in zip(shared, plain):
        np.testing.assert_allclose(s.logprobs, p.logprobs, atol=1e-5)
