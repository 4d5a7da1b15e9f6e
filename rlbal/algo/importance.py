"""Importance correction for the rollout-engine / trainer logprob mismatch (behaviour != pi_old).

vLLM samples with its own kernels, so the engine's logprob of a token differs from the trainer's
pi_old. The PPO ratio is taken against pi_old; this module gives the extra, detached per-token factor
rho = pi_old / pi_engine that re-weights the per-token loss (Yao et al. 2025, "Your Efficient RL Framework
Secretly Brings You Off-Policy RL Training", truncated IS; masked variants as in TRL/verl):

* ``none``               factor 1
* ``token_truncate``     rho_t = exp(old_t - engine_t), clamped to [floor, cap] (TIS)
* ``token_mask``         rho_t, but 0 where rho_t is outside [floor, cap]
* ``sequence_truncate``  rho = exp(sum_t (old_t - engine_t)) per sequence, clamped, same for all its tokens
* ``sequence_mask``      sequence rho, 0 for sequences outside [floor, cap] (MIS)

floor = None means no lower bound. Computed in log space so long sequences never overflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from rlbal.algo.tokens import masked_extrema
from rlbal.registry import Registry

# (log_rho_BL, mask_BL, floor, cap) -> (factor_BL, dropped_BL)
ISFn = Callable[[Tensor, Tensor, "float | None", float], tuple[Tensor, Tensor]]
IS_MODES: Registry[ISFn] = Registry("importance-correction mode")


def _log_bounds(floor: float | None, cap: float) -> tuple[float, float]:
    return (math.log(floor) if floor else -math.inf), math.log(cap)


def _truncate(log_rho: Tensor, floor: float | None, cap: float) -> Tensor:
    lo, hi = _log_bounds(floor, cap)
    return torch.exp(log_rho.clamp(min=lo, max=hi))


def _mask(log_rho: Tensor, floor: float | None, cap: float) -> tuple[Tensor, Tensor]:
    lo, hi = _log_bounds(floor, cap)
    keep = (log_rho >= lo) & (log_rho <= hi)
    return torch.exp(log_rho.clamp(max=hi)) * keep, ~keep


def _seq_log_rho(log_rho_BL: Tensor, mask_BL: Tensor) -> Tensor:
    """(B, 1) log of the sequence ratio = sum of masked token log ratios."""
    return (log_rho_BL * mask_BL).sum(-1, keepdim=True)


@IS_MODES.register("none")
def _none(log_rho_BL: Tensor, mask_BL: Tensor, floor: float | None, cap: float) -> tuple[Tensor, Tensor]:
    return torch.ones_like(log_rho_BL), torch.zeros_like(mask_BL, dtype=torch.bool)


@IS_MODES.register("token_truncate")
def _token_truncate(log_rho_BL: Tensor, mask_BL: Tensor, floor: float | None, cap: float) -> tuple[Tensor, Tensor]:
    return _truncate(log_rho_BL, floor, cap), torch.zeros_like(mask_BL, dtype=torch.bool)


@IS_MODES.register("token_mask")
def _token_mask(log_rho_BL: Tensor, mask_BL: Tensor, floor: float | None, cap: float) -> tuple[Tensor, Tensor]:
    return _mask(log_rho_BL, floor, cap)


@IS_MODES.register("sequence_truncate")
def _sequence_truncate(log_rho_BL: Tensor, mask_BL: Tensor, floor: float | None, cap: float) -> tuple[Tensor, Tensor]:
    w_B1 = _truncate(_seq_log_rho(log_rho_BL, mask_BL), floor, cap)
    return w_B1.expand_as(log_rho_BL), torch.zeros_like(mask_BL, dtype=torch.bool)


@IS_MODES.register("sequence_mask")
def _sequence_mask(log_rho_BL: Tensor, mask_BL: Tensor, floor: float | None, cap: float) -> tuple[Tensor, Tensor]:
    w_B1, dropped_B1 = _mask(_seq_log_rho(log_rho_BL, mask_BL), floor, cap)
    return w_B1.expand_as(log_rho_BL), dropped_B1.expand_as(mask_BL)


def engine_is_weights(
    mode: str, old_logp_BL: Tensor, engine_logp_BL: Tensor, mask_BL: Tensor, cap: float, floor: float | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """(B, L) detached correction factor for the per-token loss, and 0-d metric tensors (over `mask_BL`)."""
    m_BL = mask_BL.to(torch.float32)
    diff_BL = (old_logp_BL - engine_logp_BL).detach().float()
    log_rho_BL = torch.where(m_BL.bool(), diff_BL, torch.zeros_like(diff_BL))  # off-mask inf/nan never leak
    w_BL, dropped_BL = IS_MODES.get(mode)(log_rho_BL, m_BL, floor, cap)
    n = m_BL.sum().clamp(min=1.0)
    w_lo, w_hi = masked_extrema(w_BL, m_BL, empty=1.0)
    metrics = {
        "is/weight_mean": (w_BL * m_BL).sum() / n,
        "is/weight_min": w_lo,
        "is/weight_max": w_hi,
        "is/dropped_frac": (dropped_BL.float() * m_BL).sum() / n,
        "is/logp_gap_abs_mean": (log_rho_BL.abs() * m_BL).sum() / n,
    }
    return w_BL.detach(), metrics
