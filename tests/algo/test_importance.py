"""Engine/trainer mismatch correction: truncated and masked IS at token and sequence level, by hand."""

import math

import pytest
import torch

from rlbal.algo.importance import engine_is_weights

# one sequence, two completion tokens and one padding position:
# log rho = old - engine = [-1 - (-1.5), -1 - (-0.2), pad] = [0.5, -0.8] -> rho = [1.648721, 0.449329]
OLD = torch.tensor([[-1.0, -1.0, 0.0]])
ENG = torch.tensor([[-1.5, -0.2, 0.0]])
MASK = torch.tensor([[1, 1, 0]]).bool()


@pytest.mark.parametrize(
    "mode, cap, floor, expected",
    [
        ("none", 2.0, None, [1.0, 1.0]),
        ("token_truncate", 1.5, None, [1.5, 0.449329]),  # 1.6487 capped at 1.5
        ("token_truncate", 1.5, 0.5, [1.5, 0.5]),  # and 0.4493 raised to 0.5
        ("token_mask", 1.5, None, [0.0, 0.449329]),  # 1.6487 > cap -> dropped
        ("token_mask", 2.0, 0.5, [1.648721, 0.0]),  # 0.4493 < floor -> dropped
        # sequence: log rho = 0.5 - 0.8 = -0.3 -> 0.740818 for every token
        ("sequence_truncate", 2.0, None, [0.740818, 0.740818]),
        ("sequence_truncate", 2.0, 0.9, [0.9, 0.9]),
        ("sequence_mask", 2.0, 0.8, [0.0, 0.0]),  # 0.7408 < 0.8 -> whole sequence dropped
        ("sequence_mask", 2.0, 0.5, [0.740818, 0.740818]),
    ],
)
def test_weights_by_hand(mode, cap, floor, expected):
    w, _ = engine_is_weights(mode, OLD, ENG, MASK, cap=cap, floor=floor)
    assert w[0, :2].tolist() == pytest.approx(expected, abs=1e-6)


def test_metrics_by_hand():
    _, m = engine_is_weights("token_mask", OLD, ENG, MASK, cap=1.5)
    # weights on the 2 masked tokens: 0, 0.449329
    assert m["is/weight_mean"].item() == pytest.approx(0.449329 / 2, abs=1e-6)
    assert m["is/weight_min"].item() == 0.0
    assert m["is/weight_max"].item() == pytest.approx(0.449329, abs=1e-6)
    assert m["is/dropped_frac"].item() == 0.5
    assert m["is/logp_gap_abs_mean"].item() == pytest.approx((0.5 + 0.8) / 2, abs=1e-6)


def test_long_sequences_do_not_overflow():
    # 1000 tokens each with log rho = 1: the sequence ratio e^1000 would overflow; truncation gives the cap
    old, eng, mask = torch.zeros(1, 1000), -torch.ones(1, 1000), torch.ones(1, 1000).bool()
    w, _ = engine_is_weights("sequence_truncate", old, eng, mask, cap=3.0)
    assert torch.all(w == 3.0)
    w, _ = engine_is_weights("sequence_mask", old, eng, mask, cap=3.0)
    assert torch.all(w == 0.0) and not torch.isnan(w).any()


def test_weights_are_detached_and_unknown_mode():
    old = torch.tensor([[-1.0]], requires_grad=True)
    w, _ = engine_is_weights("token_truncate", old, torch.tensor([[-1.0]]), torch.ones(1, 1).bool(), cap=2.0)
    assert not w.requires_grad and w.item() == pytest.approx(math.exp(0.0))
    with pytest.raises(ValueError, match="unknown importance-correction mode 'tis'"):
        engine_is_weights("tis", old, old, torch.ones(1, 1).bool(), cap=2.0)
