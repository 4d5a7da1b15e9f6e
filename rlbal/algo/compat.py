"""Config-time check that a (loss, aggregation, advantage) combination and its options make sense.

Called from the config validators so a bad recipe fails at load time with one clear sentence, not at step 1:

>>> check_compatible("gspo", "token_mean", "grpo")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: loss 'gspo' uses one ratio per sequence and needs a sequence-level ...; got aggregation 'token_mean'
>>> check_compatible("gspo", "seq_mean_token_mean", "grpo") is None
True
"""

from __future__ import annotations

from rlbal.algo.advantages import ADVANTAGES
from rlbal.algo.aggregation import AGGREGATIONS, GROUP_BY, UNITS
from rlbal.algo.importance import IS_MODES
from rlbal.algo.kl import KL_ESTIMATORS
from rlbal.algo.losses import POLICY_LOSSES


def check_compatible(
    loss: str,
    aggregation: str,
    advantage: str,
    *,
    max_len: int | None = None,
    group_by: str | None = None,
    unit: str = "seq",
    num_bins: int | None = None,
    bapo_bounds: bool = False,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    is_mode: str = "none",
) -> None:
    """Raise ValueError naming the first invalid choice; return None when the combination is valid.

    max_len: generation budget (max_new_tokens), the constant of 'seq_sum_const'.
    group_by / unit: 'group_balanced' grouping ("bin" | "prompt") and unit ("token" | "seq").
    num_bins: number of difficulty bins the classifier produces (None = no classifier).
    bapo_bounds: whether a BAPO clip search supplies (c_low, c_high) every update.
    """
    spec, agg = POLICY_LOSSES.get(loss), AGGREGATIONS.get(aggregation)
    ADVANTAGES.get(advantage)
    KL_ESTIMATORS.get(kl_estimator)
    IS_MODES.get(is_mode)
    if aggregation == "group_balanced":
        _check_group_balanced(group_by, unit, num_bins)
    if spec.sequence_level and agg.unit_of(unit) != "seq":
        got = f"aggregation {aggregation!r}" + (f" with unit={unit!r}" if agg.unit is None else "")
        raise ValueError(
            f"loss {loss!r} uses one ratio per sequence and needs a sequence-level aggregation "
            f"('seq_mean_token_mean', or 'group_balanced' with unit='seq'); got {got}"
        )
    if spec.needs_bounds and not bapo_bounds:
        raise ValueError(
            f"loss {loss!r} needs per-update clip bounds (c_low, c_high) from the BAPO clip search; "
            f"enable the BAPO controller (bapo_bounds=True)"
        )
    if agg.needs_max_len and not (max_len and max_len > 0):
        raise ValueError(
            f"aggregation {aggregation!r} (Dr. GRPO) divides by num_seqs * max_len and needs max_len, "
            f"the generation budget (max_new_tokens); got max_len={max_len}"
        )
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")


def _check_group_balanced(group_by: str | None, unit: str, num_bins: int | None) -> None:
    if group_by not in GROUP_BY:
        raise ValueError(f"aggregation 'group_balanced' needs group_by in {GROUP_BY}, got {group_by!r}")
    if unit not in UNITS:
        raise ValueError(f"aggregation 'group_balanced' needs unit in {UNITS}, got {unit!r}")
    if group_by == "bin" and not (num_bins and num_bins >= 1):
        raise ValueError(
            "aggregation 'group_balanced' with group_by='bin' needs difficulty bins (an online "
            f"difficulty classifier with num_bins >= 1); got num_bins={num_bins}"
        )
