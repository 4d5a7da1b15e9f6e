"""rlbal.learner.model.token_logprobs with a loss mask: the vocabulary projection runs only on the hidden states
that predict masked tokens, yet the logprobs, entropies and gradients at every masked position are the full
forward's, and 0 elsewhere."""

from __future__ import annotations

import pytest
import torch

from rlbal.learner.model import accepts_logits_to_keep, first_needed_column, load_causal_lm, token_logprobs


def test_first_needed_column():
    mask = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    assert first_needed_column(mask) == 3
    assert first_needed_column(None) == 1
    assert first_needed_column(torch.zeros(2, 4, dtype=torch.bool)) == 1


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_masked_forward_equals_the_full_one_at_masked_positions(sft_path, ragged_batch, full_forward, temperature):
    batch = ragged_batch(sft_path, 1)
    model = load_causal_lm(sft_path)
    assert accepts_logits_to_keep(model)
    mask = batch.completion_mask_BL
    first = first_needed_column(mask)
    assert first > 1  # the prompts are skipped, so the test exercises the restricted forward

    want_logp, want_ent, want_grad = full_forward(model, batch.input_ids_BL, batch.attention_mask_BL, mask, temperature)

    calls = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    logp, ent = token_logprobs(
        model, batch.input_ids_BL, batch.attention_mask_BL, temperature, with_entropy=True, loss_mask_BL=mask
    )
    hook.remove()
    assert calls == [(int(mask.sum()), model.config.hidden_size)]  # the head saw one row per masked token
    torch.testing.assert_close(logp[mask], want_logp[mask], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ent[mask], want_ent[mask], rtol=1e-5, atol=1e-6)
    assert torch.all(logp[~mask] == 0) and torch.all(ent[~mask] == 0)
    assert not model.lm_head._forward_pre_hooks  # the row selection is gone after the call
    (logp * mask).sum().backward()
    for k, p in model.named_parameters():
        # float32 summation order differs (fewer rows reach the tied head): measured up to 6e-6 on 1 of 65,536
        torch.testing.assert_close(p.grad, want_grad[k], rtol=1e-4, atol=2e-5, msg=lambda m, k=k: f"{k}: {m}")
    # an all-false mask falls back to the full forward
    full = token_logprobs(model, batch.input_ids_BL, batch.attention_mask_BL, temperature, loss_mask_BL=mask & False)
    torch.testing.assert_close(full, want_logp.detach(), rtol=1e-5, atol=1e-6)
