"""Per-token helpers shared by losses, aggregation and the learner, in rlbal's one alignment convention.

Every per-token tensor is (B, L) and aligned with `input_ids_BL` (see `rlbal.batch`): position t holds the
quantity *for token t*, i.e. computed from the model's logits at position t-1. Column 0 has no predictor;
it is 0 and never in a loss mask.

    logits_BLV = model(input_ids_BL, attention_mask=attention_mask_BL).logits
    logp_BL = token_logprobs(logits_BLV, input_ids_BL)        # log pi(x_t | x_<t)
    ent_BL = token_entropy(logits_BLV)                        # H(pi(. | x_<t))
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_logprobs(logits_BLV: Tensor, input_ids_BL: Tensor, temperature: float = 1.0) -> Tensor:
    """(B, L) log-probability of each token under the logits one position earlier; column 0 is 0.

    Uses gather - logsumexp rather than a full log_softmax so only one (B, L, V) temporary is live.
    `temperature` must match the sampler's so the ratio to the engine's logprobs is meaningful.
    """
    logp_BM = target_logprobs(logits_BLV[:, :-1], input_ids_BL[:, 1:], temperature)  # predicts tokens 1..L-1
    return torch.nn.functional.pad(logp_BM, (1, 0))


def target_logprobs(logits_XV: Tensor, target_X: Tensor, temperature: float = 1.0) -> Tensor:
    """(...) log softmax(logits / T)[target] over the last dimension: gather - logsumexp, in float32 at least."""
    z_XV = scaled_logits(logits_XV, temperature)
    return z_XV.gather(-1, target_X.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z_XV, dim=-1)


def token_entropy(logits_BLV: Tensor, temperature: float = 1.0) -> Tensor:
    """(B, L) entropy of the next-token distribution that predicts token t; column 0 is 0."""
    return torch.nn.functional.pad(entropy_of_logits(logits_BLV[:, :-1], temperature), (1, 0))


def entropy_of_logits(logits_NV: Tensor, temperature: float = 1.0) -> Tensor:
    """(...) entropy of softmax(logits / T) over the last dimension, in float32 at least."""
    logp_NV = torch.log_softmax(scaled_logits(logits_NV, temperature), dim=-1)
    return -logp_NV.exp().mul_(logp_NV).sum(-1)  # one (N, V) temporary besides log_softmax's


def scaled_logits(logits: Tensor, temperature: float) -> Tensor:
    """logits / T in float32 at least, without a copy when there is nothing to do (a (B, L, V) copy of a
    large vocabulary costs as much as the softmax itself)."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return logits if temperature == 1.0 else logits / temperature


def masked_sum(x_BL: Tensor, mask_BL: Tensor) -> Tensor:
    """() sum of x over mask (mask may be bool or float)."""
    return (x_BL * mask_BL.to(x_BL.dtype)).sum()


def masked_mean(x_BL: Tensor, mask_BL: Tensor) -> Tensor:
    """() mean of x over mask; 0 when the mask is empty (an empty micro-batch contributes nothing)."""
    m_BL = mask_BL.to(x_BL.dtype)
    return (x_BL * m_BL).sum() / m_BL.sum().clamp(min=1.0)


def seq_token_mean(x_BL: Tensor, mask_BL: Tensor) -> Tensor:
    """(B,) per-sequence mean of x over its masked tokens; 0 for a sequence with no masked token.

    Applied to `LossOutput.pg_loss_BL` this is the per-response loss signal the controllers observe.
    """
    m_BL = mask_BL.to(x_BL.dtype)
    return (x_BL * m_BL).sum(-1) / m_BL.sum(-1).clamp(min=1.0)


def masked_extrema(x_BL: Tensor, mask_BL: Tensor, empty: float = 0.0) -> tuple[Tensor, Tensor]:
    """(min, max) of x over mask, both `empty` when the mask is empty."""
    m_BL = mask_BL.bool()
    if x_BL.numel() == 0:
        e = torch.tensor(empty, dtype=x_BL.dtype, device=x_BL.device)
        return e, e
    lo = torch.where(m_BL, x_BL, torch.full_like(x_BL, float("inf"))).min()
    hi = torch.where(m_BL, x_BL, torch.full_like(x_BL, float("-inf"))).max()
    any_ = m_BL.any()
    fill = torch.tensor(empty, dtype=x_BL.dtype, device=x_BL.device)
    return torch.where(any_, lo, fill), torch.where(any_, hi, fill)
