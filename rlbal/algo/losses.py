"""GRPO-family policy losses: pure tensor functions returning a per-token loss (B, L) and flat metrics.

Aggregation to a scalar is a separate choice (`rlbal.algo.aggregation`). With r = pi_theta / pi_old per
token (or per sequence for GSPO) and A the rollout's advantage, the registered losses are

* ``ppo_clip``   -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A). GRPO (Shao et al. 2024) with DAPO's
                 decoupled clip-higher (Yu et al. 2025, arXiv 2503.14476): 0.2 / 0.28.
* ``dual_clip``  ppo_clip, and for A < 0 the loss is capped at -c A (Ye et al. 2020, arXiv 1912.09729; verl
                 clip_ratio_c = 3).
* ``gspo``       one ratio per sequence s = exp(mean_t log r_t), clipped per sequence, shared by all its
                 tokens (Zheng et al. 2025, arXiv 2507.18071; clips ~3e-4 / 4e-4). Needs a sequence-level
                 aggregation (see `check_compatible`).
* ``bapo``       ppo_clip with absolute ratio bounds (c_low, c_high) chosen per update step by the BAPO
                 search (Xi et al. 2025, arXiv 2510.18927; `rlbal.controllers.bapo`), plus the dual clip as in
                 the authors' code when `dual_clip_c` is set. Reports the bounds and the positive share.

`policy_loss` composes one of them with, in this order: the Prompt-GDRO weight (per sequence), the
engine-mismatch importance factor (`rlbal.algo.importance`), and `kl_coef` * KL to the reference
(`rlbal.algo.kl`; not Prompt-GDRO-weighted, not engine-corrected, as TRL; optionally times the policy
ratio, `kl_ratio_weighted`, as TRL's default `use_bias_correction_kl`). Log ratios are clamped to [-20, 20]
(as verl) so a wild token cannot turn the loss into inf/nan; positions outside the mask get ratio 1.

    out = policy_loss("ppo_clip", LossInputs.from_batch(mb, logp_BL), LossOptions(clip_low=0.2, clip_high=0.28))
    loss = aggregate(out.loss_BL, mb.completion_mask_BL, ctx, key_B=mb.bin_B)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from rlbal.algo.importance import IS_MODES, engine_is_weights
from rlbal.algo.kl import KL_ESTIMATORS, kl_penalty
from rlbal.algo.tokens import masked_extrema, masked_mean, seq_token_mean, token_entropy
from rlbal.registry import Registry

if TYPE_CHECKING:
    from rlbal.batch import RolloutBatch

LOG_RATIO_CLAMP = 20.0
Bounds = tuple[float, float]
Metrics = dict[str, Tensor]


@dataclass(frozen=True)
class LossOptions:
    """Static loss settings (config); BAPO's bounds change per update and are passed to `policy_loss`."""

    clip_low: float = 0.2  # ratio lower bound 1 - clip_low (GSPO: ~3e-4)
    clip_high: float = 0.28  # ratio upper bound 1 + clip_high (DAPO clip-higher; GSPO: ~4e-4)
    dual_clip_c: float | None = 3.0  # cap -c*A for A < 0 in dual_clip and bapo; None = off (bapo only)
    kl_coef: float = 0.0  # beta of the KL-to-reference penalty; 0 = off
    kl_estimator: str = "k3"  # see rlbal.algo.kl
    kl_clamp: float | None = None  # bound on the per-token KL estimate; verl's low_var_kl uses 10
    kl_ratio_weighted: bool = False  # KL * ratio: unbiased under pi_theta (DeepSeek-V3.2; TRL use_bias_correction_kl)
    is_mode: str = "none"  # engine-mismatch correction, see rlbal.algo.importance
    is_cap: float = 2.0  # upper bound of the importance factor
    is_floor: float | None = None  # lower bound; None = none
    temperature: float = 1.0  # for the entropy metric from logits only

    def __post_init__(self) -> None:
        for name in ("clip_low", "clip_high", "is_cap", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LossOptions.{name} must be > 0, got {getattr(self, name)}")
        if self.clip_low >= 1:
            raise ValueError(
                f"LossOptions.clip_low must be < 1 (lower ratio bound 1 - clip_low > 0), got {self.clip_low}"
            )
        if self.dual_clip_c is not None and not self.dual_clip_c > 1:
            raise ValueError(f"LossOptions.dual_clip_c must be > 1 or None, got {self.dual_clip_c}")
        if self.kl_coef < 0:
            raise ValueError(f"LossOptions.kl_coef must be >= 0, got {self.kl_coef}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"LossOptions.kl_estimator must be one of {KL_ESTIMATORS.valid()}, got {self.kl_estimator!r}"
            )
        if self.is_mode not in IS_MODES:
            raise ValueError(f"LossOptions.is_mode must be one of {IS_MODES.valid()}, got {self.is_mode!r}")
        if self.is_floor is not None and not 0 < self.is_floor < self.is_cap:
            raise ValueError(f"LossOptions.is_floor must be in (0, is_cap) or None, got {self.is_floor}")


@dataclass(frozen=True)
class LossInputs:
    """One micro-batch's tensors. _BL per token (B, L) aligned with input ids; _B per sequence."""

    logp_BL: Tensor  # current policy, carries the gradient
    mask_BL: Tensor  # completion tokens that carry loss (bool or float)
    adv_B: Tensor  # unweighted advantages
    old_logp_BL: Tensor | None = None  # pi_old; None = logp_BL.detach() (one on-policy update)
    weight_B: Tensor | None = None  # Prompt-GDRO multiplier >= 0; None = 1
    engine_logp_BL: Tensor | None = None  # behaviour logprobs; needed when is_mode != "none"
    ref_logp_BL: Tensor | None = None  # reference model; needed when kl_coef > 0
    logits_BLV: Tensor | None = None  # optional, only for the entropy metric

    def __post_init__(self) -> None:
        B, L = self.logp_BL.shape
        for name in ("mask_BL", "old_logp_BL", "engine_logp_BL", "ref_logp_BL"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (B, L):
                raise ValueError(f"LossInputs.{name} must have shape {(B, L)}, got {tuple(t.shape)}")
        for name in ("adv_B", "weight_B"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (B,):
                raise ValueError(f"LossInputs.{name} must have shape {(B,)}, got {tuple(t.shape)}")
        if self.logits_BLV is not None and tuple(self.logits_BLV.shape[:2]) != (B, L):
            raise ValueError(f"LossInputs.logits_BLV must start with {(B, L)}, got {tuple(self.logits_BLV.shape)}")

    @classmethod
    def from_batch(cls, batch: RolloutBatch, logp_BL: Tensor, logits_BLV: Tensor | None = None) -> LossInputs:
        if batch.advantages_B is None:
            raise ValueError("LossInputs.from_batch: batch.advantages_B is None; compute advantages first")
        return cls(
            logp_BL=logp_BL,
            mask_BL=batch.completion_mask_BL,
            adv_B=batch.advantages_B,
            old_logp_BL=batch.old_logp_BL,
            weight_B=batch.weight_B,
            engine_logp_BL=batch.engine_logp_BL,
            ref_logp_BL=batch.ref_logp_BL,
            logits_BLV=logits_BLV,
        )


@dataclass(frozen=True)
class LossOutput:
    loss_BL: Tensor  # per-token loss to aggregate (weighted, importance-corrected, + KL)
    pg_loss_BL: Tensor  # unweighted clipped surrogate, no IS, no KL: seq_token_mean of it = controller signal
    metrics: dict[str, float] = field(default_factory=dict)


CoreFn = Callable[[Tensor, Tensor, Tensor, Tensor, LossOptions, "Bounds | None"], "tuple[Tensor, Tensor, Metrics]"]


@dataclass(frozen=True)
class PolicyLoss:
    """Registry entry: the surrogate plus what it needs from the rest of the run. The config checks, the
    learner and `check_compatible` read these flags; nothing branches on a loss's name."""

    fn: CoreFn  # (logp_BL, old_logp_BL, adv_B, mask_BL, opts, bounds) -> (pg_loss_BL, ratio_BL, metrics)
    sequence_level: bool = False  # one ratio per sequence: only sequence-level aggregations keep its meaning
    needs_bounds: bool = False  # takes (c_low, c_high) per update step, from the BAPO clip search
    needs_old_logprobs: bool = False  # pi_old even for a single update (the bounds search reads pi_theta / pi_old)
    dual_clip: bool = False  # applies LossOptions.dual_clip_c (the learner passes it only to such losses)


POLICY_LOSSES: Registry[PolicyLoss] = Registry("policy loss")


def _log_ratio(logp_BL: Tensor, old_logp_BL: Tensor, mask_BL: Tensor) -> Tensor:
    """(B, L) clamped log(pi_theta / pi_old), exactly 0 off the mask (where, not *: off-mask inf/nan stay out)."""
    lr_BL = (logp_BL - old_logp_BL.detach()).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.where(mask_BL.bool(), lr_BL, torch.zeros_like(lr_BL))


def clipped_surrogate(
    ratio_BL: Tensor, adv_B: Tensor, mask_BL: Tensor, lo: float, hi: float, dual_c: float | None
) -> tuple[Tensor, Metrics]:
    """(B, L) -min(r A, clip(r, lo, hi) A), capped at -c A for A < 0 when dual_c is set; clip metrics."""
    adv_BL = adv_B.to(ratio_BL.dtype).unsqueeze(1).expand_as(ratio_BL)
    pg_BL = torch.maximum(-adv_BL * ratio_BL, -adv_BL * ratio_BL.clamp(lo, hi))
    neg_BL = adv_BL < 0
    r = ratio_BL.detach()
    metrics = {
        "loss/clip_frac_low": masked_mean((neg_BL & (r < lo)).float(), mask_BL),
        "loss/clip_frac_high": masked_mean(((adv_BL > 0) & (r > hi)).float(), mask_BL),
    }
    if dual_c is not None:
        pg_BL = torch.where(neg_BL, torch.minimum(pg_BL, -adv_BL * dual_c), pg_BL)
        metrics["loss/clip_frac_dual"] = masked_mean((neg_BL & (r > dual_c)).float(), mask_BL)
    return pg_BL, metrics


def ratio_metrics(log_ratio_BL: Tensor, mask_BL: Tensor) -> Metrics:
    """Ratio mean/min/max and approx KL(pi_old || pi_theta) = mean((r - 1) - log r) (k3, >= 0)."""
    lr_BL = log_ratio_BL.detach()
    r_BL = lr_BL.exp()
    r_min, r_max = masked_extrema(r_BL, mask_BL, empty=1.0)
    return {
        "loss/ratio_mean": masked_mean(r_BL, mask_BL),
        "loss/ratio_min": r_min,
        "loss/ratio_max": r_max,
        "loss/approx_kl": masked_mean(r_BL - 1.0 - lr_BL, mask_BL),
    }


def _token_ratio_loss(logp_BL, old_logp_BL, adv_B, mask_BL, lo, hi, dual_c) -> tuple[Tensor, Tensor, Metrics]:
    lr_BL = _log_ratio(logp_BL, old_logp_BL, mask_BL)
    ratio_BL = lr_BL.exp()
    pg_BL, m = clipped_surrogate(ratio_BL, adv_B, mask_BL, lo, hi, dual_c)
    return pg_BL, ratio_BL, {**m, **ratio_metrics(lr_BL, mask_BL)}


def _ppo_clip(logp_BL, old_logp_BL, adv_B, mask_BL, opts: LossOptions, bounds) -> tuple[Tensor, Tensor, Metrics]:
    return _token_ratio_loss(logp_BL, old_logp_BL, adv_B, mask_BL, 1 - opts.clip_low, 1 + opts.clip_high, None)


def _dual_clip(logp_BL, old_logp_BL, adv_B, mask_BL, opts: LossOptions, bounds) -> tuple[Tensor, Tensor, Metrics]:
    if opts.dual_clip_c is None:
        raise ValueError("policy loss 'dual_clip' needs LossOptions.dual_clip_c (e.g. 3.0), got None")
    lo, hi = 1 - opts.clip_low, 1 + opts.clip_high
    return _token_ratio_loss(logp_BL, old_logp_BL, adv_B, mask_BL, lo, hi, opts.dual_clip_c)


def _gspo(logp_BL, old_logp_BL, adv_B, mask_BL, opts: LossOptions, bounds) -> tuple[Tensor, Tensor, Metrics]:
    lr_BL = _log_ratio(logp_BL, old_logp_BL, mask_BL)
    log_s_B = seq_token_mean(lr_BL, mask_BL)  # (B,) log of the length-normalised sequence ratio
    lr_seq_BL = log_s_B.unsqueeze(1).expand_as(lr_BL)
    ratio_BL = lr_seq_BL.exp()
    pg_BL, m = clipped_surrogate(ratio_BL, adv_B, mask_BL, 1 - opts.clip_low, 1 + opts.clip_high, None)
    return pg_BL, ratio_BL, {**m, **ratio_metrics(lr_seq_BL, mask_BL)}


def bapo_positive_share(ratio_BL: Tensor, adv_B: Tensor, mask_BL: Tensor, c_low: float, c_high: float) -> Metrics:
    """BAPO's positive share of the loss, two measures (spec section 6.1):

    pos_share: over gradient-carrying tokens, |r A| of (A > 0, r < c_high) / that plus (A < 0, r > c_low);
    pos_share_value: the paper's Eq. 8 / authors' code, |A| * min(r, c_high) for A >= 0 over that plus
    |A| * max(r, c_low) for A < 0. Both are 0 when nothing contributes.
    """
    r_BL, m_BL = ratio_BL.detach(), mask_BL.to(torch.float32)
    a_BL = adv_B.to(r_BL.dtype).unsqueeze(1).expand_as(r_BL)
    ra_BL = (r_BL * a_BL).abs() * m_BL
    pos = (ra_BL * ((a_BL > 0) & (r_BL < c_high))).sum()
    neg = (ra_BL * ((a_BL < 0) & (r_BL > c_low))).sum()
    eff_BL = torch.where(a_BL >= 0, r_BL.clamp(max=c_high), r_BL.clamp(min=c_low)) * a_BL * m_BL
    vpos, vneg = eff_BL.clamp(min=0).sum(), (-eff_BL).clamp(min=0).sum()
    return {
        "loss/bapo/pos_share": pos / (pos + neg).clamp(min=1e-30),
        "loss/bapo/pos_share_value": vpos / (vpos + vneg).clamp(min=1e-30),
    }


def _bapo(logp_BL, old_logp_BL, adv_B, mask_BL, opts: LossOptions, bounds) -> tuple[Tensor, Tensor, Metrics]:
    c_low, c_high = bounds
    lr_BL = _log_ratio(logp_BL, old_logp_BL, mask_BL)
    ratio_BL = lr_BL.exp()
    pg_BL, m = clipped_surrogate(ratio_BL, adv_B, mask_BL, c_low, c_high, opts.dual_clip_c)
    bound_t = torch.tensor([c_low, c_high], device=pg_BL.device)
    m.update({"loss/bapo/c_low": bound_t[0], "loss/bapo/c_high": bound_t[1]})
    m.update(bapo_positive_share(ratio_BL, adv_B, mask_BL, c_low, c_high))
    return pg_BL, ratio_BL, {**m, **ratio_metrics(lr_BL, mask_BL)}


POLICY_LOSSES.add("ppo_clip", PolicyLoss(_ppo_clip))
POLICY_LOSSES.add("dual_clip", PolicyLoss(_dual_clip, dual_clip=True))
POLICY_LOSSES.add("gspo", PolicyLoss(_gspo, sequence_level=True))
POLICY_LOSSES.add("bapo", PolicyLoss(_bapo, needs_bounds=True, needs_old_logprobs=True, dual_clip=True))


def _check_bounds(name: str, spec: PolicyLoss, bounds: Bounds | None) -> None:
    if spec.needs_bounds and bounds is None:
        raise ValueError(f"policy loss {name!r} needs bounds=(c_low, c_high) for this update step, got None")
    if bounds is not None and not 0 < bounds[0] <= 1 <= bounds[1]:
        raise ValueError(f"policy loss {name!r}: bounds must satisfy 0 < c_low <= 1 <= c_high, got {bounds}")


def policy_loss(
    name: str, inp: LossInputs, opts: LossOptions = LossOptions(), bounds: Bounds | None = None
) -> LossOutput:
    """Per-token loss of registered loss `name`, weighted, importance-corrected, plus KL; and metrics."""
    spec = POLICY_LOSSES.get(name)
    _check_bounds(name, spec, bounds)
    old_BL = inp.logp_BL.detach() if inp.old_logp_BL is None else inp.old_logp_BL
    pg_BL, ratio_BL, metrics = spec.fn(inp.logp_BL, old_BL, inp.adv_B, inp.mask_BL, opts, bounds)
    metrics["loss/pg"] = masked_mean(pg_BL.detach(), inp.mask_BL)
    loss_BL = pg_BL if inp.weight_B is None else pg_BL * inp.weight_B.to(pg_BL.dtype).unsqueeze(1)
    if opts.is_mode != "none":
        if inp.engine_logp_BL is None:
            raise ValueError(f"LossOptions.is_mode={opts.is_mode!r} needs LossInputs.engine_logp_BL, got None")
        w_BL, is_metrics = engine_is_weights(
            opts.is_mode, old_BL, inp.engine_logp_BL, inp.mask_BL, opts.is_cap, opts.is_floor
        )
        loss_BL, metrics = loss_BL * w_BL, {**metrics, **is_metrics}
    if opts.kl_coef > 0:
        if inp.ref_logp_BL is None:
            raise ValueError(f"LossOptions.kl_coef={opts.kl_coef} needs LossInputs.ref_logp_BL, got None")
        kl_BL = kl_penalty(opts.kl_estimator, inp.logp_BL, inp.ref_logp_BL, opts.kl_clamp)
        kl_BL = kl_BL * ratio_BL if opts.kl_ratio_weighted else kl_BL
        loss_BL = loss_BL + opts.kl_coef * kl_BL
        metrics["loss/kl"] = masked_mean(kl_BL.detach(), inp.mask_BL)
    if inp.logits_BLV is not None:
        metrics["loss/entropy"] = masked_mean(token_entropy(inp.logits_BLV.detach(), opts.temperature), inp.mask_BL)
    return LossOutput(loss_BL, pg_BL, _to_floats(metrics))


def _to_floats(metrics: Metrics) -> dict[str, float]:
    """One device sync for all metrics instead of one per value."""
    keys = list(metrics)
    if not keys:
        return {}
    vals = torch.stack([metrics[k].detach().float().reshape(()) for k in keys])
    return dict(zip(keys, vals.tolist()))
