"""The learner's per-step loss: the recipe's policy loss + aggregation (rlbal.algo) with global normalisers,
BAPO bounds chosen once per update, and the per-response signal the controllers observe.

Metrics are accumulated as token-weighted sums over micro-batches (and summed over ranks), then divided by
the global token count, so they do not depend on how the batch was split. Extrema (names ending in `_min` /
`_max`) are carried as `_max:<name>` entries (a minimum as the maximum of its negation) and merged with max
over micro-batches and ranks (`merge_sums`, `rlbal.learner.world.all_reduce_sums`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from rlbal.algo import (
    POLICY_LOSSES,
    AggregationContext,
    LossInputs,
    LossOptions,
    aggregate,
    bin_contributions,
    policy_loss,
)
from rlbal.algo.tokens import masked_mean, seq_token_mean
from rlbal.batch import RolloutBatch

MAX_PREFIX = "_max:"  # metric sums merged by max instead of +


def merge_sums(into: dict[str, float], new: dict[str, float]) -> dict[str, float]:
    """Add `new`'s metric sums into `into` (max for `_max:` entries); returns `into`.

    >>> merge_sums({"a": 1.0, "_max:r_max": 2.0}, {"a": 0.5, "_max:r_max": 1.5, "_max:r_min": -0.5})
    {'a': 1.5, '_max:r_max': 2.0, '_max:r_min': -0.5}
    """
    for k, v in new.items():
        into[k] = max(into[k], v) if k.startswith(MAX_PREFIX) and k in into else into.get(k, 0.0) + v
    return into


def mean_over_updates(per_update: list[dict[str, float]]) -> dict[str, float]:
    """Combine the metrics of several optimizer updates: extrema by min/max, everything else by the mean.

    >>> mean_over_updates([{"loss/pg": 1.0, "loss/ratio_min": 0.9}, {"loss/pg": 3.0, "loss/ratio_min": 0.8}])
    {'loss/pg': 2.0, 'loss/ratio_min': 0.8}
    """
    keys = dict.fromkeys(k for m in per_update for k in m)
    out = {}
    for k in keys:
        vals = [m[k] for m in per_update if k in m]
        out[k] = min(vals) if k.endswith("_min") else max(vals) if k.endswith("_max") else sum(vals) / len(vals)
    return out


@dataclass(frozen=True)
class StepContext:
    """Normalisers and bounds for one optimizer update (the same object for every micro-batch and rank)."""

    agg: AggregationContext
    bounds: tuple[float, float] | None
    extra: dict[str, float]


class StepLoss:
    """The recipe's policy loss for one optimizer update at a time.

    algo: the `algo` config section; bapo: `controllers.bapo` (the clip search of a loss whose entry
    `needs_bounds`); max_new_tokens and temperature: the rollout's; num_bins: the classifier's bins (per-bin loss
    shares); world_size: data-parallel ranks (each rank's loss carries the factor, see rlbal.learner.backends).
    """

    def __init__(
        self,
        algo: Any,
        *,
        bapo: Any = None,
        max_new_tokens: int,
        temperature: float,
        num_bins: int,
        world_size: int = 1,
    ) -> None:
        self.algo = algo
        self.entry = POLICY_LOSSES.get(algo.loss)
        self.opts = LossOptions(
            clip_low=algo.clip_low,
            clip_high=algo.clip_high,
            dual_clip_c=algo.dual_clip_c if self.entry.dual_clip else None,
            kl_coef=algo.kl_coef,
            kl_estimator=algo.kl_estimator,
            is_mode=algo.is_correction,
            is_cap=algo.is_cap,
            temperature=temperature or 1.0,
        )
        self.bapo = bapo
        self.max_len = max_new_tokens
        self.num_bins = num_bins + 2  # room for the 'unseen' / 'excluded' classes
        self.world_size = world_size

    @property
    def needs_old_logprobs(self) -> bool:
        """pi_old is needed even for a single update (the loss's registry entry says so)."""
        return self.entry.needs_old_logprobs

    @property
    def needs_bounds(self) -> bool:
        """The loss takes per-update clip bounds, searched from the current ratio (`context`)."""
        return self.entry.needs_bounds

    @property
    def needs_reference(self) -> bool:
        """A frozen reference model is needed (KL penalty)."""
        return self.opts.kl_coef > 0

    def context(self, mini: RolloutBatch, ratio_BL: Tensor | None = None) -> StepContext:
        """Global normalisers of the mini-batch; BAPO bounds from the current ratios (None = ratio 1)."""
        a = self.algo
        agg = AggregationContext.from_batch(
            mini, a.aggregation, max_len=self.max_len, group_by=a.group_by, unit=a.group_unit, dp_size=self.world_size
        )
        if self.bapo is None:
            return StepContext(agg, None, {})
        from rlbal.controllers.bapo import bapo_search

        mask = mini.completion_mask_BL
        ratio = np.ones(mask.shape) if ratio_BL is None else ratio_BL.double().cpu().numpy()
        found = bapo_search(ratio, mini.advantages_B.double().cpu().numpy()[:, None], mask.cpu().numpy(), self.bapo)
        return StepContext(agg, (found.c_low, found.c_high), found.metrics())

    def __call__(
        self, mb: RolloutBatch, logp_BL: Tensor, ctx: StepContext, entropy_BL: Tensor | None = None
    ) -> tuple[Tensor, dict[str, float], Tensor]:
        """(scalar loss to backpropagate, token-weighted metric sums, (B,) per-response signal)."""
        out = policy_loss(self.algo.loss, LossInputs.from_batch(mb, logp_BL), self.opts, bounds=ctx.bounds)
        mask = mb.completion_mask_BL
        loss = aggregate(out.loss_BL, mask, ctx.agg, ctx.agg.key_of(mb))
        n_tok = float(mask.sum())
        sums: dict[str, float] = {}
        for k, v in out.metrics.items():
            if k.endswith(("_min", "_max")):
                if n_tok > 0:  # an empty (padding) micro-batch has no extrema
                    sums[MAX_PREFIX + k] = -v if k.endswith("_min") else v
            else:
                sums[k] = v * n_tok
        if entropy_BL is not None:
            sums["loss/entropy"] = float(masked_mean(entropy_BL, mask)) * n_tok
        sums["_tokens"] = n_tok
        sums["loss/total"] = float(loss.detach()) / ctx.agg.scale  # this micro-batch's share of the batch loss
        contrib = bin_contributions(out.loss_BL, mask, ctx.agg, mb.bin_B, self.num_bins, ctx.agg.key_of(mb))
        for k, v in enumerate(contrib.tolist()):
            sums[f"_bin_{k}"] = v
        signal_B = seq_token_mean(out.pg_loss_BL.detach(), mask)
        if self.algo.loss_signal == "surrogate_kl" and mb.ref_logp_BL is not None:
            from rlbal.algo.kl import kl_penalty

            kl_BL = kl_penalty(self.opts.kl_estimator, logp_BL.detach(), mb.ref_logp_BL)
            signal_B = signal_B + self.opts.kl_coef * seq_token_mean(kl_BL, mask)
        return loss, sums, signal_B

    def finalize(self, sums: dict[str, float], ctx: StepContext) -> dict[str, float]:
        """Token-weighted means over the whole mini-batch (all micro-batches, all ranks)."""
        tokens = max(sums.get("_tokens", 0.0), 1.0)
        out = {k: v / tokens for k, v in sums.items() if not k.startswith("_") and k != "loss/total"}
        for k, v in sums.items():
            if k.startswith(MAX_PREFIX):
                name = k[len(MAX_PREFIX) :]
                out[name] = -v if name.endswith("_min") else v
        out["loss/total"] = sums.get("loss/total", 0.0)
        bins = {k: v for k, v in sums.items() if k.startswith("_bin_")}
        total = sum(bins.values())
        for k, v in bins.items():
            if v > 0:
                out[f"loss/bin_share/bin_{k[5:]}"] = v / total
        out.update(ctx.extra)
        return out
