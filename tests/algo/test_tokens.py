"""Per-token helpers: alignment of logprobs/entropy, masked reductions."""

import math

import pytest
import torch

from rlbal.algo.tokens import masked_extrema, masked_mean, seq_token_mean, token_entropy, token_logprobs


def test_token_logprobs_by_hand():
    # V = 2. Position 0's logits [0, ln 3] give p = (1/4, 3/4) for token 1; position 1's logits [0, 0] give 1/2.
    logits_BLV = torch.tensor([[[0.0, math.log(3.0)], [0.0, 0.0], [5.0, 5.0]]])
    ids_BL = torch.tensor([[0, 1, 0]])
    logp = token_logprobs(logits_BLV, ids_BL)
    # column 0 has no predictor -> 0; token 1 (= id 1) -> log 3/4; token 2 (= id 0) -> log 1/2
    assert logp[0].tolist() == pytest.approx([0.0, math.log(0.75), math.log(0.5)], abs=1e-6)
    # temperature 2 on position 0: logits [0, ln3 / 2] -> p(1) = sqrt3 / (1 + sqrt3) = 0.633975
    hot = token_logprobs(logits_BLV, ids_BL, temperature=2.0)
    assert hot[0, 1].item() == pytest.approx(math.log(0.633975), abs=1e-6)


def test_token_entropy_by_hand():
    # uniform over 4 -> ln 4; one-hot-ish (logit 100) -> ~0; column 0 -> 0
    logits_BLV = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]])
    ent = token_entropy(logits_BLV)
    assert ent[0].tolist() == pytest.approx([0.0, math.log(4.0), 0.0], abs=1e-6)


def test_masked_reductions_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    m = torch.tensor([[1, 1, 0], [0, 0, 0]]).bool()
    assert masked_mean(x, m).item() == pytest.approx(1.5)  # (1 + 2) / 2
    assert seq_token_mean(x, m).tolist() == [1.5, 0.0]  # empty row -> 0
    lo, hi = masked_extrema(x, m)
    assert (lo.item(), hi.item()) == (1.0, 2.0)
    lo, hi = masked_extrema(x, torch.zeros_like(m), empty=7.0)
    assert (lo.item(), hi.item()) == (7.0, 7.0)
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0
