"""Per-token KL estimators of KL(pi_theta || pi_ref) from the sampled tokens' logprobs (Schulman 2020).

With d = log pi_ref(y_t) - log pi_theta(y_t) for y_t ~ pi_theta:

* ``k1`` = -d                      unbiased, high variance, can be negative
* ``k2`` = d^2 / 2                 biased, low variance, >= 0
* ``k3`` = exp(d) - d - 1          unbiased, low variance, >= 0 (GRPO paper Eq. 4; TRL; verl "low_var_kl",
                                   which also clamps to [-10, 10]: pass clamp=10)

    kl_BL = kl_penalty("k3", logp_BL, ref_logp_BL)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from rlbal.registry import Registry

KLFn = Callable[[Tensor], Tensor]  # d_BL = ref_logp - logp  ->  kl_BL
KL_ESTIMATORS: Registry[KLFn] = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def _k1(d_BL: Tensor) -> Tensor:
    return -d_BL


@KL_ESTIMATORS.register("k2")
def _k2(d_BL: Tensor) -> Tensor:
    return 0.5 * d_BL * d_BL


@KL_ESTIMATORS.register("k3")
def _k3(d_BL: Tensor) -> Tensor:
    return torch.exp(d_BL) - d_BL - 1.0


def kl_penalty(name: str, logp_BL: Tensor, ref_logp_BL: Tensor, clamp: float | None = None) -> Tensor:
    """(B, L) per-token KL estimate `name`; gradients flow through `logp_BL` only.

    clamp: bound the estimate to [-clamp, clamp] (verl's low_var_kl uses 10); None = off.
    """
    kl_BL = KL_ESTIMATORS.get(name)(ref_logp_BL.detach() - logp_BL)
    return kl_BL if clamp is None else kl_BL.clamp(-clamp, clamp)
