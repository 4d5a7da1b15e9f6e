"""Outcome-advantage estimators over ragged groups (one group = one prompt's rollouts, any size >= 1).

Every estimator is a segment reduction by group index (bincount / index_add_), vectorised over the whole
batch, never a reshape to a fixed group size, so Rollout-GDRO's per-prompt rollout counts just work.

    adv_B = compute_advantages("grpo", rewards_B, group_B, AdvantageOptions(std="bessel", eps=1e-6))

Estimators (r = reward, n = group size, mean/std over the rollout's group):

* ``grpo``    A = (r - mean) / (std + eps)         GRPO, Shao et al. 2024 (DeepSeekMath), arXiv 2402.03300
* ``dr_grpo`` A = r - mean                         Dr. GRPO, Liu et al. 2025, arXiv 2503.20783
* ``rloo``    A = r - mean_{j != i} r_j = n/(n-1) (r - mean)   RLOO, Ahmadian et al. 2024, arXiv 2402.14740

A group of size 1 has no baseline: its advantage is exactly 0 under every estimator (its rollout teaches
nothing about the prompt's relative quality, and the Bessel std / leave-one-out mean are undefined).
Then, in this order: optional clipping to [-clip, clip], optional multiplication by a per-rollout weight.
Apply the Prompt-GDRO weight once: here (for trainers whose loss has no weight input, e.g. TRL) or via
`LossInputs.weight_B` (rlbal's learner, which also needs the unweighted per-response signal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from rlbal.registry import Registry

Estimator = Callable[[Tensor, Tensor, "AdvantageOptions"], Tensor]
ADVANTAGES: Registry[Estimator] = Registry("advantage estimator")


@dataclass(frozen=True)
class AdvantageOptions:
    """std: "bessel" (divide by n-1, as torch.std, verl and TRL) or "population" (divide by n, the GRPO
    paper's formula). eps: added to the std (verl 1e-6, TRL 1e-4). clip: symmetric bound, None = off."""

    std: Literal["bessel", "population"] = "bessel"
    eps: float = 1e-6
    clip: float | None = None

    def __post_init__(self) -> None:
        if self.std not in ("bessel", "population"):
            raise ValueError(f"AdvantageOptions.std must be 'bessel' or 'population', got {self.std!r}")
        if not self.eps >= 0:
            raise ValueError(f"AdvantageOptions.eps must be >= 0, got {self.eps}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"AdvantageOptions.clip must be > 0 or None, got {self.clip}")


@dataclass(frozen=True)
class GroupStats:
    """Per-rollout view of its group's statistics, each (B,)."""

    count_B: Tensor  # group size n (float)
    mean_B: Tensor  # group mean reward
    dev_B: Tensor  # r - group mean; exactly 0 in a group whose rewards are all equal
    sq_dev_sum_B: Tensor  # sum over the group of (r - mean)^2; exactly 0 in such a group
    flat_B: Tensor  # bool: every reward of the group is the same (no group-relative signal)


def group_stats(rewards_B: Tensor, group_B: Tensor) -> GroupStats:
    """Segment statistics by group index; group ids need not be dense (empty ids cost one slot each).

    Means are taken in float64, and a group whose rewards are all equal (max == min, an exact test) gets
    deviations of exactly 0: a float mean of equal values can miss them by an ulp (1.1 x 12 -> 1.0999999),
    which divided by std + eps would give every response a one-sided advantage of ~0.1.
    """
    r_B = rewards_B.to(torch.float64)
    G = int(group_B.max().item()) + 1 if group_B.numel() else 0
    count_G = torch.bincount(group_B, minlength=G).to(r_B.dtype)
    sum_G = torch.zeros(G, dtype=r_B.dtype, device=r_B.device).index_add_(0, group_B, r_B)
    mean_G = sum_G / count_G.clamp(min=1.0)
    hi_G = torch.full_like(sum_G, -torch.inf).scatter_reduce(0, group_B, r_B, "amax")
    lo_G = torch.full_like(sum_G, torch.inf).scatter_reduce(0, group_B, r_B, "amin")
    flat_B = (hi_G == lo_G)[group_B]
    dev_B = torch.where(flat_B, torch.zeros_like(r_B), r_B - mean_G[group_B])
    ss_G = torch.zeros_like(sum_G).index_add_(0, group_B, dev_B * dev_B)
    return GroupStats(count_G[group_B], mean_G[group_B], dev_B, ss_G[group_B], flat_B)


@ADVANTAGES.register("grpo")
def grpo_advantages(rewards_B: Tensor, group_B: Tensor, opts: AdvantageOptions) -> Tensor:
    """(r - mean) / (std + eps); an all-equal group gets exactly 0."""
    s = group_stats(rewards_B, group_B)
    denom_B = (s.count_B - 1.0) if opts.std == "bessel" else s.count_B
    std_B = torch.sqrt(s.sq_dev_sum_B / denom_B.clamp(min=1.0))
    adv_B = torch.where(s.count_B > 1, s.dev_B / (std_B + opts.eps), torch.zeros_like(s.dev_B))
    return adv_B.to(torch.float32)


@ADVANTAGES.register("dr_grpo")
def dr_grpo_advantages(rewards_B: Tensor, group_B: Tensor, opts: AdvantageOptions) -> Tensor:
    """r - mean, no std division (removes GRPO's difficulty bias)."""
    s = group_stats(rewards_B, group_B)
    return torch.where(s.count_B > 1, s.dev_B, torch.zeros_like(s.dev_B)).to(torch.float32)


@ADVANTAGES.register("rloo")
def rloo_advantages(rewards_B: Tensor, group_B: Tensor, opts: AdvantageOptions) -> Tensor:
    """r - mean of the other rollouts of the group = n/(n-1) * (r - mean)."""
    s = group_stats(rewards_B, group_B)
    scale_B = s.count_B / (s.count_B - 1.0).clamp(min=1.0)
    return torch.where(s.count_B > 1, scale_B * s.dev_B, torch.zeros_like(s.dev_B)).to(torch.float32)


def compute_advantages(
    name: str,
    rewards_B: Tensor,
    group_B: Tensor,
    opts: AdvantageOptions = AdvantageOptions(),
    weight_B: Tensor | None = None,
) -> Tensor:
    """(B,) float32 advantages of estimator `name`, clipped, then multiplied by `weight_B` if given."""
    if rewards_B.shape != group_B.shape or rewards_B.dim() != 1:
        raise ValueError(
            f"compute_advantages: rewards_B {tuple(rewards_B.shape)} and group_B "
            f"{tuple(group_B.shape)} must be equal 1-d shapes"
        )
    adv_B = ADVANTAGES.get(name)(rewards_B, group_B.to(torch.int64), opts)
    if opts.clip is not None:
        adv_B = adv_B.clamp(-opts.clip, opts.clip)
    if weight_B is not None:
        adv_B = adv_B * weight_B.to(adv_B.dtype)
    return adv_B


def advantage_metrics(rewards_B: Tensor, group_B: Tensor, adv_B: Tensor) -> dict[str, float]:
    """Flat metrics: advantage spread, share of rollouts in zero-variance and singleton groups."""
    s = group_stats(rewards_B, group_B)
    flat_B = s.flat_B & (s.count_B > 1)  # exact: all rewards of the group equal
    vals = torch.stack(
        [
            adv_B.float().mean(),
            adv_B.float().abs().mean(),
            adv_B.float().std(correction=0),
            flat_B.float().mean(),
            (s.count_B == 1).float().mean(),
            s.count_B.mean(),
        ]
    )
    keys = ("adv/mean", "adv/abs_mean", "adv/std", "adv/zero_std_frac", "adv/singleton_frac", "adv/group_size_mean")
    return dict(zip(keys, vals.tolist()))
