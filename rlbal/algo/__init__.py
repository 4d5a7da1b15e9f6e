"""GRPO-family algorithm math as pure torch functions: advantages, policy losses, aggregation, KL.

No ray / vllm / deepspeed here. One step, for one micro-batch `mb` of the global batch `batch`:

    adv_B = compute_advantages("grpo", batch.rewards_B, batch.group_B, AdvantageOptions())
    batch = dataclasses.replace(batch, advantages_B=adv_B)
    ctx = AggregationContext.from_batch(batch, "token_mean", dp_size=world_size)      # once per step
    logp_BL = token_logprobs(model(mb.input_ids_BL, attention_mask=mb.attention_mask_BL).logits, mb.input_ids_BL)
    out = policy_loss("ppo_clip", LossInputs.from_batch(mb, logp_BL), LossOptions())
    aggregate(out.loss_BL, mb.completion_mask_BL, ctx, ctx.key_of(mb)).backward()
    signal_B = seq_token_mean(out.pg_loss_BL.detach(), mb.completion_mask_BL)           # for the controllers

Formulas and papers: docs/losses.md.
"""

from rlbal.algo.advantages import ADVANTAGES, AdvantageOptions, advantage_metrics, compute_advantages, group_stats
from rlbal.algo.aggregation import (
    AGGREGATIONS,
    AggregationContext,
    aggregate,
    bin_contributions,
    bin_share_metrics,
    sequence_coefficients,
)
from rlbal.algo.compat import check_compatible
from rlbal.algo.importance import IS_MODES, engine_is_weights
from rlbal.algo.kl import KL_ESTIMATORS, kl_penalty
from rlbal.algo.losses import (
    POLICY_LOSSES,
    LossInputs,
    LossOptions,
    LossOutput,
    bapo_positive_share,
    clipped_surrogate,
    policy_loss,
)
from rlbal.algo.tokens import masked_mean, seq_token_mean, token_entropy, token_logprobs

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "IS_MODES",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "AdvantageOptions",
    "AggregationContext",
    "LossInputs",
    "LossOptions",
    "LossOutput",
    "advantage_metrics",
    "aggregate",
    "bapo_positive_share",
    "bin_contributions",
    "bin_share_metrics",
    "check_compatible",
    "clipped_surrogate",
    "compute_advantages",
    "engine_is_weights",
    "group_stats",
    "kl_penalty",
    "masked_mean",
    "policy_loss",
    "seq_token_mean",
    "sequence_coefficients",
    "token_entropy",
    "token_logprobs",
]
