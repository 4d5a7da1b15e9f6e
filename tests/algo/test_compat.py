"""check_compatible: valid combinations pass, invalid ones fail with the exact message."""

import re

import pytest

from rlbal.algo.compat import check_compatible


@pytest.mark.parametrize(
    "loss, agg, adv, kw",
    [
        ("ppo_clip", "token_mean", "grpo", {}),
        ("dual_clip", "seq_mean_token_mean", "rloo", {}),
        ("ppo_clip", "seq_sum_const", "dr_grpo", dict(max_len=4096)),
        ("gspo", "seq_mean_token_mean", "grpo", {}),
        ("gspo", "group_balanced", "grpo", dict(group_by="bin", unit="seq", num_bins=6)),
        ("bapo", "token_mean", "grpo", dict(bapo_bounds=True)),
        ("ppo_clip", "group_balanced", "grpo", dict(group_by="prompt", unit="token")),
        ("ppo_clip", "token_mean", "grpo", dict(kl_coef=0.001, kl_estimator="k3", is_mode="token_truncate")),
    ],
)
def test_valid_combinations_pass(loss, agg, adv, kw):
    assert check_compatible(loss, agg, adv, **kw) is None


@pytest.mark.parametrize(
    "loss, agg, adv, kw, message",
    [
        (
            "gspo",
            "token_mean",
            "grpo",
            {},
            "loss 'gspo' uses one ratio per sequence and needs a sequence-level aggregation ('seq_mean_token_mean', or "
            "'group_balanced' with unit='seq'); got aggregation 'token_mean'",
        ),
        (
            "gspo",
            "seq_sum_const",
            "grpo",
            dict(max_len=8),
            "loss 'gspo' uses one ratio per sequence and needs a sequence-level aggregation ('seq_mean_token_mean', or "
            "'group_balanced' with unit='seq'); got aggregation 'seq_sum_const'",
        ),
        (
            "gspo",
            "group_balanced",
            "grpo",
            dict(group_by="bin", unit="token", num_bins=6),
            "loss 'gspo' uses one ratio per sequence and needs a sequence-level aggregation ('seq_mean_token_mean', or "
            "'group_balanced' with unit='seq'); got aggregation 'group_balanced' with unit='token'",
        ),
        (
            "ppo_clip",
            "group_balanced",
            "grpo",
            dict(group_by="bin"),
            "aggregation 'group_balanced' with group_by='bin' needs difficulty bins "
            "(an online difficulty classifier with num_bins >= 1); got num_bins=None",
        ),
        (
            "ppo_clip",
            "group_balanced",
            "grpo",
            dict(group_by=None),
            "aggregation 'group_balanced' needs group_by in ('bin', 'prompt'), got None",
        ),
        (
            "ppo_clip",
            "group_balanced",
            "grpo",
            dict(group_by="prompt", unit="sentence"),
            "aggregation 'group_balanced' needs unit in ('token', 'seq'), got 'sentence'",
        ),
        (
            "bapo",
            "token_mean",
            "grpo",
            {},
            "loss 'bapo' needs per-update clip bounds (c_low, c_high) from the BAPO clip search; enable the BAPO "
            "controller (bapo_bounds=True)",
        ),
        (
            "ppo_clip",
            "seq_sum_const",
            "dr_grpo",
            {},
            "aggregation 'seq_sum_const' (Dr. GRPO) divides by num_seqs * max_len and needs max_len, the generation "
            "budget (max_new_tokens); got max_len=None",
        ),
        ("ppo_clip", "token_mean", "grpo", dict(kl_coef=-1.0), "kl_coef must be >= 0, got -1.0"),
        (
            "ppo",
            "token_mean",
            "grpo",
            {},
            "unknown policy loss 'ppo'; valid names: 'bapo', 'dual_clip', 'gspo', 'ppo_clip'",
        ),
        (
            "ppo_clip",
            "sum",
            "grpo",
            {},
            "unknown loss aggregation 'sum'; valid names: 'group_balanced', 'seq_mean_token_mean', 'seq_sum_const', "
            "'token_mean'",
        ),
        (
            "ppo_clip",
            "token_mean",
            "gae",
            {},
            "unknown advantage estimator 'gae'; valid names: 'dr_grpo', 'grpo', 'rloo'",
        ),
        (
            "ppo_clip",
            "token_mean",
            "grpo",
            dict(kl_estimator="low_var_kl"),
            "unknown KL estimator 'low_var_kl'; valid names: 'k1', 'k2', 'k3'",
        ),
        (
            "ppo_clip",
            "token_mean",
            "grpo",
            dict(is_mode="tis"),
            "unknown importance-correction mode 'tis'; valid names: 'none', 'sequence_mask', 'sequence_truncate', "
            "'token_mask', 'token_truncate'",
        ),
    ],
)
def test_invalid_combinations_fail_with_exact_message(loss, agg, adv, kw, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_compatible(loss, agg, adv, **kw)
