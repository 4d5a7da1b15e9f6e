"""KL estimators k1/k2/k3 by hand, gradients, clamp, unknown names."""

import math

import pytest
import torch

from rlbal.algo.kl import kl_penalty

# pi_theta(y) = 0.5, pi_ref(y) = 0.25: d = log pi_ref - log pi_theta = log 0.5 = -0.693147
LOGP = math.log(0.5)
REF = math.log(0.25)


@pytest.mark.parametrize(
    "name, value, grad",
    [
        # k1 = -d = 0.693147; d/dlogp = +1
        ("k1", 0.693147, 1.0),
        # k2 = d^2/2 = 0.240227; d/dlogp = -d = 0.693147
        ("k2", 0.240227, 0.693147),
        # k3 = e^d - d - 1 = 0.5 + 0.693147 - 1 = 0.193147; d/dlogp = -e^d + 1 = 0.5
        ("k3", 0.193147, 0.5),
    ],
)
def test_estimators_by_hand(name, value, grad):
    logp = torch.tensor([[LOGP]], requires_grad=True)
    kl = kl_penalty(name, logp, torch.tensor([[REF]]))
    kl.sum().backward()
    assert kl.item() == pytest.approx(value, abs=1e-6)
    assert logp.grad.item() == pytest.approx(grad, abs=1e-6)


def test_reference_gets_no_gradient_and_clamp_bounds():
    ref = torch.tensor([[REF]], requires_grad=True)
    kl_penalty("k3", torch.tensor([[LOGP]], requires_grad=True), ref).sum().backward()
    assert ref.grad is None
    # d = 30 -> k3 = e^30 - 31, clamped to 10
    assert kl_penalty("k3", torch.tensor([[0.0]]), torch.tensor([[30.0]]), clamp=10.0).item() == 10.0


def test_unknown_estimator():
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'; valid names: 'k1', 'k2', 'k3'"):
        kl_penalty("k4", torch.zeros(1, 1), torch.zeros(1, 1))
