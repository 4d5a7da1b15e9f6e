"""rlbal.learner.shared_prompt: one prompt forward per group, the completions on its cached keys/values, gives
the logprobs, entropies and parameter gradients of one full forward per row, at every masked position."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rlbal.algo.tokens import token_logprobs as logprobs_of_logits
from rlbal.batch import RolloutBatch
from rlbal.learner.model import load_causal_lm
from rlbal.learner.shared_prompt import layout, shared_prompt_logprobs, supported
from rlbal.rollout.engine import Completion


def hand_batch() -> RolloutBatch:
    """Groups of 3, 1 and 2 rows with prompts of 6, 3 and 9 tokens; rows 0 and 1 share their first two completion
    tokens too; row 2's loss skips its second completion token (a hole in the mask)."""
    prompts = [[11, 12, 13, 14, 15, 16], [21, 22, 23], [31, 32, 33, 34, 35, 36, 37, 38, 39]]
    comps = [
        Completion(0, [40, 41, 42, 43], [-1.0] * 4, "", "stop"),
        Completion(0, [40, 41, 44], [-1.0] * 3, "", "stop"),
        Completion(0, [45, 46, 47, 48, 49, 50, 51], [-1.0] * 7, "", "length"),
        Completion(1, [52, 53], [-1.0] * 2, "", "stop"),
        Completion(2, [54], [-1.0], "", "stop"),
        Completion(2, [55, 56, 57, 58, 59], [-1.0] * 5, "", "stop"),
    ]
    batch = RolloutBatch.from_generation(prompts, comps, [0, 1, 2], [0, 0, 0], [1.0] * 3, [0.0] * 6, pad_id=0)
    mask = batch.completion_mask_BL.clone()
    mask[2, 6 + 1] = False
    return dataclasses.replace(batch, completion_mask_BL=mask)


def test_layout_stops_at_the_first_loss_token():
    b = hand_batch()
    lay = layout(b.input_ids_BL, b.attention_mask_BL, b.completion_mask_BL, b.group_B)
    assert lay.shared_U.tolist() == [6, 3, 9]  # the prompts: rows 0 and 1 also share [40, 41], but the loss looks
    assert lay.shared_B.tolist() == [6, 6, 6, 3, 9, 9]
    assert lay.saved_tokens == 6 * 2 + 9  # two rows of group 0 and one of group 2 skip their prompt
    # without a loss on the first completion tokens, rows 0 and 1 share their common completion tokens [40, 41] too
    two = b.select([0, 1])
    late = two.completion_mask_BL & (torch.arange(two.seq_len) >= 8)
    assert layout(two.input_ids_BL, two.attention_mask_BL, late, two.group_B).shared_U.tolist() == [8]


@pytest.mark.parametrize("variant", ["llama", "qwen2"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_two_calls_equal_the_full_forward(variant, temperature, full_forward):
    from rlbal.assets import tiny_model

    model = load_causal_lm(tiny_model(variant))
    assert supported(model)
    b = hand_batch()
    mask = b.completion_mask_BL
    want_logp, want_ent, want_grad = full_forward(model, b.input_ids_BL, b.attention_mask_BL, mask, temperature)

    seen = []
    hook = model.get_input_embeddings().register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    logp, ent = shared_prompt_logprobs(
        model, b.input_ids_BL, b.attention_mask_BL, mask, b.group_B, temperature, with_entropy=True
    )
    hook.remove()
    assert seen == [(3, 9), (6, 7)]  # 3 prompts (longest 9), then 6 suffixes (longest: row 2's 7 tokens)
    torch.testing.assert_close(logp[mask], want_logp[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent[mask], want_ent[mask], rtol=1e-5, atol=1e-5)
    assert torch.all(logp[~mask] == 0) and torch.all(ent[~mask] == 0)
    (logp * mask).sum().backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want_grad[k], rtol=1e-4, atol=2e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_ragged_batch_equals_the_full_forward(sft_path, ragged_batch):
    b = ragged_batch(sft_path, 1)
    model = load_causal_lm(sft_path)
    mask = b.completion_mask_BL
    with torch.no_grad():
        want = logprobs_of_logits(
            model(input_ids=b.input_ids_BL, attention_mask=b.attention_mask_BL).logits, b.input_ids_BL
        )
        got = shared_prompt_logprobs(model, b.input_ids_BL, b.attention_mask_BL, mask, b.group_B)
    torch.testing.assert_close(got[mask], want[mask], rtol=1e-5, atol=1e-5)


def test_unsupported_models_are_named(sft_path):
    model = load_causal_lm(sft_path)
    model.gradient_checkpointing_enable()
    assert not supported(model)  # transformers turns the cache off under gradient checkpointing
    wrapped = torch.nn.Module()
    wrapped.module = load_causal_lm(sft_path)
    assert not supported(wrapped)  # DDP / DeepSpeed: two forwards before one backward are not supported there
