"""Loss aggregation: how per-token losses (B, L) become the scalar that is back-propagated.

Every mode is "a per-sequence coefficient on each masked token": loss = sum_b coef_b * sum_t m_bt l_bt, with
coef_b depending only on sequence b and on normalisers of the WHOLE global batch (all micro-batches on all
data-parallel ranks of one optimizer step; a PPO mini-batch when a rollout batch feeds several steps), which
live in an `AggregationContext` built once per step.
Hence the sharding rule: summing `aggregate` over the micro-batches of the global batch gives the full-batch
loss, whatever the micro-batching or sharding. Data-parallel engines *average* gradients over ranks, so
each rank's loss is multiplied by `dp_size`; engines that also divide each micro-batch loss by the number of
gradient-accumulation steps (DeepSpeed `engine.backward`, `accelerate` inside `accumulate`) need
`engine_accum_steps` set to that number so it is undone.

Modes (N sequences and T masked tokens in the global batch, |y_b| = masked tokens of sequence b):

* ``token_mean``           coef = 1 / T                       DAPO token-level loss (arXiv 2503.14476)
* ``seq_mean_token_mean``  coef = 1 / (N |y_b|)               GRPO paper (arXiv 2402.03300), TRL "grpo"
* ``seq_sum_const``        coef = 1 / (N max_len)             Dr. GRPO constant normaliser (arXiv 2503.20783)
* ``group_balanced``       groups k = difficulty bins or prompts; group k gets loss share s_k regardless of
                           how many rollouts it got: coef = s_k / T_k (unit "token": token-mean inside k) or
                           s_k / (N_k |y_b|) (unit "seq": sequence-mean of token-means inside k). Shares are
                           uniform over the groups present in the global batch, or given and renormalised over
                           the groups present.

    ctx = AggregationContext.from_batch(batch, "group_balanced", group_by="bin", unit="seq", dp_size=world)
    for mb in my_shard.split_by_tokens(8192):
        aggregate(out.loss_BL, mb.completion_mask_BL, ctx, ctx.key_of(mb)).backward()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rlbal.registry import Registry

if TYPE_CHECKING:
    from rlbal.batch import RolloutBatch

GROUP_BY = ("bin", "prompt")
UNITS = ("token", "seq")


@dataclass(frozen=True, eq=False)
class AggregationContext:
    """Global-batch normalisers for one optimizer step; pass the same object to every micro-batch call."""

    mode: str
    num_tokens: float  # T: masked tokens in the global batch
    num_seqs: float  # N: sequences in the global batch (including ones with no masked token)
    max_len: int | None = None  # seq_sum_const: the generation budget (max_new_tokens)
    group_by: str | None = None  # group_balanced: "bin" (bin_B) or "prompt" (group_B)
    unit: str = "seq"  # group_balanced: "token" or "seq"
    count_K: Tensor | None = None  # group_balanced: per group, masked tokens (unit token) or sequences (unit seq)
    share_K: Tensor | None = None  # group_balanced: per group loss share; sums to 1 over groups with count > 0
    dp_size: int = 1  # data-parallel ranks whose gradients are averaged
    engine_accum_steps: int = 1  # >1 only if the engine divides each micro-batch loss by accumulation steps

    def __post_init__(self) -> None:
        spec = AGGREGATIONS.get(self.mode)
        if self.dp_size < 1 or self.engine_accum_steps < 1:
            raise ValueError(
                f"AggregationContext.dp_size and engine_accum_steps must be >= 1, got "
                f"{self.dp_size}, {self.engine_accum_steps}"
            )
        if spec.needs_max_len and not (self.max_len and self.max_len > 0):
            raise ValueError(
                f"AggregationContext.max_len must be a positive int for mode {self.mode!r}, got {self.max_len}"
            )
        if self.mode == "group_balanced":
            if self.group_by not in GROUP_BY:
                raise ValueError(f"AggregationContext.group_by must be one of {GROUP_BY}, got {self.group_by!r}")
            if self.unit not in UNITS:
                raise ValueError(f"AggregationContext.unit must be one of {UNITS}, got {self.unit!r}")
            if self.count_K is None or self.share_K is None:
                raise ValueError("AggregationContext.count_K and share_K are required for 'group_balanced'")

    @property
    def scale(self) -> float:
        return float(self.dp_size * self.engine_accum_steps)

    @property
    def sequence_level(self) -> bool:
        """True when each sequence's total weight does not grow with its length."""
        return AGGREGATIONS.get(self.mode).unit_of(self.unit) == "seq"

    def key_of(self, batch: RolloutBatch) -> Tensor | None:
        """(B,) group key of each row for group_balanced (bin or group index), else None."""
        return _group_key(batch, self.mode, self.group_by)

    @classmethod
    def build(
        cls,
        mode: str,
        completion_mask_BL: Tensor,
        key_B: Tensor | None = None,
        *,
        max_len: int | None = None,
        group_by: str | None = None,
        unit: str = "seq",
        shares: Sequence[float] | Tensor | None = None,
        num_groups: int | None = None,
        dp_size: int = 1,
        engine_accum_steps: int = 1,
    ) -> AggregationContext:
        """Normalisers from the global batch's completion mask (and group keys for group_balanced)."""
        m_BL = completion_mask_BL.to(torch.float32)
        count_K = share_K = None
        if mode == "group_balanced":
            if key_B is None:
                raise ValueError(f"AggregationContext.build: mode 'group_balanced' needs key_B (group_by={group_by!r})")
            count_K, share_K = _group_counts_and_shares(m_BL, key_B, unit, shares, num_groups)
        return cls(
            mode=mode,
            num_tokens=float(m_BL.sum().item()),
            num_seqs=float(m_BL.shape[0]),
            max_len=max_len,
            group_by=group_by,
            unit=unit,
            count_K=count_K,
            share_K=share_K,
            dp_size=dp_size,
            engine_accum_steps=engine_accum_steps,
        )

    @classmethod
    def from_batch(cls, batch: RolloutBatch, mode: str, **kwargs) -> AggregationContext:
        """`build` from a full RolloutBatch; group_by picks the key ("bin" -> bin_B, "prompt" -> group_B)."""
        group_by = kwargs.get("group_by")
        if mode == "group_balanced" and group_by not in GROUP_BY:
            raise ValueError(f"AggregationContext.group_by must be one of {GROUP_BY}, got {group_by!r}")
        return cls.build(mode, batch.completion_mask_BL, _group_key(batch, mode, group_by), **kwargs)


def _group_key(batch: RolloutBatch, mode: str, group_by: str | None) -> Tensor | None:
    if mode != "group_balanced":
        return None
    return batch.bin_B if group_by == "bin" else batch.group_B


def _group_counts_and_shares(
    m_BL: Tensor, key_B: Tensor, unit: str, shares: Sequence[float] | Tensor | None, num_groups: int | None
) -> tuple[Tensor, Tensor]:
    """(K,) counts in `unit` per group over the global batch and (K,) shares renormalised over present groups."""
    if unit not in UNITS:
        raise ValueError(f"AggregationContext.unit must be one of {UNITS}, got {unit!r}")
    K = max(
        int(key_B.max().item()) + 1 if key_B.numel() else 0, num_groups or 0, len(shares) if shares is not None else 0
    )
    per_seq_B = m_BL.sum(-1) if unit == "token" else torch.ones(m_BL.shape[0], device=m_BL.device)
    count_K = torch.zeros(K, device=m_BL.device).index_add_(0, key_B.to(m_BL.device), per_seq_B)
    present_K = (count_K > 0).float()
    raw_K = present_K if shares is None else torch.as_tensor(shares, dtype=torch.float32, device=m_BL.device)
    if shares is not None and (raw_K.shape != (K,) or bool((raw_K < 0).any())):
        raise ValueError(
            f"AggregationContext shares must be {K} non-negative numbers (one per group), got {list(shares)}"
        )
    total = (raw_K * present_K).sum()
    if K and float(total) <= 0:
        raise ValueError("AggregationContext shares give zero total weight to the groups present in the batch")
    return count_K, raw_K * present_K / total.clamp(min=1e-30)


CoefFn = Callable[[Tensor, AggregationContext, "Tensor | None"], Tensor]


@dataclass(frozen=True)
class Aggregation:
    """Registry entry: per-sequence token coefficient (B,) and what check_compatible needs."""

    coef: CoefFn  # (mask_BL, ctx, key_B) -> coef_B
    unit: str | None  # "token" or "seq" (sequence-level); None = given by the context/options' unit
    needs_max_len: bool = False

    def unit_of(self, unit_option: str) -> str:
        return self.unit if self.unit is not None else unit_option


def _seq_len_B(mask_BL: Tensor) -> Tensor:
    return mask_BL.to(torch.float32).sum(-1).clamp(min=1.0)


def _token_mean(mask_BL: Tensor, ctx: AggregationContext, key_B: Tensor | None) -> Tensor:
    return torch.full((mask_BL.shape[0],), 1.0 / max(ctx.num_tokens, 1.0), device=mask_BL.device)


def _seq_mean_token_mean(mask_BL: Tensor, ctx: AggregationContext, key_B: Tensor | None) -> Tensor:
    return 1.0 / (_seq_len_B(mask_BL) * max(ctx.num_seqs, 1.0))


def _seq_sum_const(mask_BL: Tensor, ctx: AggregationContext, key_B: Tensor | None) -> Tensor:
    return torch.full((mask_BL.shape[0],), 1.0 / (max(ctx.num_seqs, 1.0) * ctx.max_len), device=mask_BL.device)


def _group_balanced(mask_BL: Tensor, ctx: AggregationContext, key_B: Tensor | None) -> Tensor:
    if key_B is None:
        raise ValueError(
            f"aggregate: mode 'group_balanced' needs key_B (ctx.key_of(micro_batch), group_by={ctx.group_by!r})"
        )
    k_B = key_B.to(device=mask_BL.device, dtype=torch.int64)
    coef_B = ctx.share_K.to(mask_BL.device)[k_B] / ctx.count_K.to(mask_BL.device)[k_B].clamp(min=1.0)
    return coef_B if ctx.unit == "token" else coef_B / _seq_len_B(mask_BL)


AGGREGATIONS: Registry[Aggregation] = Registry("loss aggregation")
AGGREGATIONS.add("token_mean", Aggregation(_token_mean, unit="token"))
AGGREGATIONS.add("seq_mean_token_mean", Aggregation(_seq_mean_token_mean, unit="seq"))
AGGREGATIONS.add("seq_sum_const", Aggregation(_seq_sum_const, unit="token", needs_max_len=True))
AGGREGATIONS.add("group_balanced", Aggregation(_group_balanced, unit=None))


def sequence_coefficients(mask_BL: Tensor, ctx: AggregationContext, key_B: Tensor | None = None) -> Tensor:
    """(B,) weight of each masked token of each sequence in the global-batch loss (before ctx.scale)."""
    return AGGREGATIONS.get(ctx.mode).coef(mask_BL, ctx, key_B)


def aggregate(loss_BL: Tensor, mask_BL: Tensor, ctx: AggregationContext, key_B: Tensor | None = None) -> Tensor:
    """() this micro-batch's share of the global-batch loss, times ctx.scale (see module doc)."""
    coef_B = sequence_coefficients(mask_BL, ctx, key_B).to(loss_BL.dtype)
    seq_sum_B = (loss_BL * mask_BL.to(loss_BL.dtype)).sum(-1)
    return (coef_B * seq_sum_B).sum() * ctx.scale


def bin_contributions(
    loss_BL: Tensor, mask_BL: Tensor, ctx: AggregationContext, bin_B: Tensor, num_bins: int, key_B: Tensor | None = None
) -> Tensor:
    """(num_bins,) |contribution| of each difficulty bin to this call's loss; sums across micro-batches."""
    coef_B = sequence_coefficients(mask_BL, ctx, key_B)
    contrib_B = (coef_B * (loss_BL.detach().float() * mask_BL.float()).sum(-1)).abs()
    return torch.zeros(num_bins, device=contrib_B.device).index_add_(0, bin_B.to(contrib_B.device), contrib_B)


def bin_share_metrics(contrib_K: Tensor) -> dict[str, float]:
    """Flat "loss/bin_share/bin_k" metrics: each bin's share of the absolute loss (0s when it is all 0)."""
    share_K = contrib_K / contrib_K.sum().clamp(min=1e-30)
    return {f"loss/bin_share/bin_{k}": v for k, v in enumerate(share_K.tolist())}
