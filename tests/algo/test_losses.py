"""Policy losses on tiny explicit tensors: values, gradients and metrics derived by hand."""

import math

import pytest
import torch

from rlbal.algo.losses import LossInputs, LossOptions, bapo_positive_share, policy_loss

LN = math.log


def _inputs(ratios, adv, mask=None, **kw) -> tuple[LossInputs, torch.Tensor]:
    """logp = log r with old = 0, so the token ratio is exactly r; returns (inputs, leaf logp)."""
    logp = torch.tensor([[LN(r) for r in row] for row in ratios], requires_grad=True)
    mask_BL = torch.ones_like(logp, dtype=torch.bool) if mask is None else torch.tensor(mask).bool()
    return LossInputs(
        logp_BL=logp, mask_BL=mask_BL, adv_B=torch.tensor(adv), old_logp_BL=torch.zeros_like(logp), **kw
    ), logp


def test_ppo_clip_values_gradients_and_metrics():
    # clip 0.2 / 0.28 -> ratio bounds [0.8, 1.28]; row 0 has A = +1, row 1 has A = -1, ratios 0.5, 1.0, 1.5
    inp, logp = _inputs([[0.5, 1.0, 1.5], [0.5, 1.0, 1.5]], [1.0, -1.0])
    out = policy_loss("ppo_clip", inp, LossOptions(clip_low=0.2, clip_high=0.28))
    # A=+1: -min(r, clip r) = -0.5, -1, -min(1.5, 1.28) = -1.28 (high-clipped)
    # A=-1: max(r, clip r) = max(.5, .8) = 0.8 (low-clipped), 1, max(1.5, 1.28) = 1.5
    assert out.loss_BL.tolist()[0] == pytest.approx([-0.5, -1.0, -1.28], abs=1e-6)
    assert out.loss_BL.tolist()[1] == pytest.approx([0.8, 1.0, 1.5], abs=1e-6)
    # d/dlogp (-r A) = -r A where unclipped, 0 where clipped: row 0 -> -0.5, -1, 0; row 1 -> 0, 1, 1.5
    out.loss_BL.sum().backward()
    assert logp.grad.tolist()[0] == pytest.approx([-0.5, -1.0, 0.0], abs=1e-6)
    assert logp.grad.tolist()[1] == pytest.approx([0.0, 1.0, 1.5], abs=1e-6)
    m = out.metrics
    assert m["loss/clip_frac_low"] == pytest.approx(1 / 6) and m["loss/clip_frac_high"] == pytest.approx(1 / 6)
    assert (m["loss/ratio_mean"], m["loss/ratio_min"], m["loss/ratio_max"]) == pytest.approx((1.0, 0.5, 1.5))
    # approx KL = mean(r - 1 - ln r): 0.5 -> 0.193147, 1 -> 0, 1.5 -> 0.094535; (2 * 0.287682) / 6 = 0.095894
    assert m["loss/approx_kl"] == pytest.approx(0.095894, abs=1e-6)
    assert m["loss/pg"] == pytest.approx((-0.5 - 1 - 1.28 + 0.8 + 1 + 1.5) / 6, abs=1e-6)
    assert torch.equal(out.pg_loss_BL, out.loss_BL)  # no weight, IS or KL


def test_dual_clip_caps_negative_advantages():
    # c = 3, bounds [0.8, 1.28]; A = -1 at r = 4 -> ppo gives max(4, 1.28) = 4, dual caps at 3 (no gradient)
    # r = 2 stays 2 (under the cap); A = -2 at r = 4 -> min(8, 6) = 6; A = +1 at r = 4 -> -1.28 (cap unused)
    inp, logp = _inputs([[4.0, 2.0], [4.0, 4.0], [4.0, 4.0]], [-1.0, -2.0, 1.0])
    out = policy_loss("dual_clip", inp, LossOptions(dual_clip_c=3.0))
    assert out.loss_BL.tolist() == [pytest.approx([3.0, 2.0]), pytest.approx([6.0, 6.0]), pytest.approx([-1.28, -1.28])]
    out.loss_BL.sum().backward()
    assert logp.grad.tolist()[0] == pytest.approx([0.0, 2.0])  # capped token: 0; r = 2 token: -rA = 2
    # dual-clipped tokens: A < 0 and r > 3 -> 3 of 6
    assert out.metrics["loss/clip_frac_dual"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="policy loss 'dual_clip' needs LossOptions.dual_clip_c"):
        policy_loss("dual_clip", inp, LossOptions(dual_clip_c=None))


def test_gspo_sequence_ratio_clip_and_gradient():
    opts = LossOptions(clip_low=3e-4, clip_high=4e-4)
    # row 0: log ratios (ln 2, -ln 2) average 0 -> s = 1 -> loss = -A = -1 on both tokens, unclipped
    # row 1: log ratios (0.1, 0.3, pad) average 0.2 -> s = e^0.2 = 1.221403; A = -1 -> max(s, 1.0004) = s
    # row 2: same ratios with A = +1 -> -min(s, 1.0004) = -1.0004 (clipped, no gradient)
    logp = torch.tensor([[LN(2), -LN(2), 0.0], [0.1, 0.3, 9.0], [0.1, 0.3, 9.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 1, 0]]).bool()
    inp = LossInputs(logp_BL=logp, mask_BL=mask, adv_B=torch.tensor([1.0, -1.0, 1.0]), old_logp_BL=torch.zeros(3, 3))
    out = policy_loss("gspo", inp, opts)
    assert out.loss_BL[0, :2].tolist() == pytest.approx([-1.0, -1.0], abs=1e-6)
    assert out.loss_BL[1, :2].tolist() == pytest.approx([1.221403, 1.221403], abs=1e-6)
    assert out.loss_BL[2, :2].tolist() == pytest.approx([-1.0004, -1.0004], abs=1e-6)
    # sequence loss = token mean; d s / d logp_t = s / |y| = 0.610701 on each masked token, 0 on the pad
    (out.loss_BL * mask).sum(-1).div(2).sum().backward()
    assert logp.grad[1].tolist() == pytest.approx([0.610701, 0.610701, 0.0], abs=1e-6)
    assert logp.grad[2].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    assert logp.grad[0].tolist() == pytest.approx([-0.5, -0.5, 0.0], abs=1e-6)  # -A * s / 2
    assert out.metrics["loss/clip_frac_high"] == pytest.approx(2 / 6)  # row 2's two tokens


def test_bapo_loss_bounds_and_positive_share():
    # bounds (0.7, 1.5), dual clip 3. A=+1 at r = 1.2, 2.0; A=-1 at r = 0.5, 1.1
    inp, logp = _inputs([[1.2, 2.0], [0.5, 1.1]], [1.0, -1.0])
    out = policy_loss("bapo", inp, LossOptions(dual_clip_c=3.0), bounds=(0.7, 1.5))
    # A=+1: -1.2, -min(2, 1.5) = -1.5; A=-1: max(.5, .7) = 0.7, 1.1
    assert out.loss_BL.tolist() == [pytest.approx([-1.2, -1.5]), pytest.approx([0.7, 1.1])]
    m = out.metrics
    assert (m["loss/bapo/c_low"], m["loss/bapo/c_high"]) == pytest.approx((0.7, 1.5))
    # gradient-carrying measure: pos = |1.2| (2.0 >= c_high is clipped); neg = |1.1| (0.5 <= c_low clipped)
    #   -> 1.2 / 2.3 = 0.521739
    assert m["loss/bapo/pos_share"] == pytest.approx(0.521739, abs=1e-6)
    # value measure (paper Eq. 8 / authors' code): pos = 1.2 + 1.5 = 2.7; neg = max(.5,.7) + 1.1 = 1.8 -> 0.6
    assert m["loss/bapo/pos_share_value"] == pytest.approx(0.6, abs=1e-6)
    assert m["loss/clip_frac_low"] == 0.25 and m["loss/clip_frac_high"] == 0.25


def test_bapo_needs_valid_bounds():
    inp, _ = _inputs([[1.0]], [1.0])
    with pytest.raises(ValueError, match=r"policy loss 'bapo' needs bounds=\(c_low, c_high\) for this update step"):
        policy_loss("bapo", inp)
    with pytest.raises(ValueError, match="bounds must satisfy 0 < c_low <= 1 <= c_high, got"):
        policy_loss("bapo", inp, bounds=(1.2, 0.8))


def test_positive_share_is_zero_when_nothing_contributes():
    m = bapo_positive_share(torch.ones(1, 2), torch.zeros(1), torch.ones(1, 2), 0.8, 1.2)
    assert m["loss/bapo/pos_share"].item() == 0.0 and m["loss/bapo/pos_share_value"].item() == 0.0


def test_weight_importance_and_kl_compose():
    # one token, r = 1, A = +2 -> pg = -2. weight 0.5 -> -1. Engine logp -1.5 vs old 0: rho = e^1.5 = 4.48 ->
    # token_truncate cap 2 -> x2 -> -2. KL k3 with ref = ln 0.5 - logp: logp = 0, d = ln 0.5 ->
    # k3 = 0.5 + 0.693147 - 1 = 0.193147, coef 0.1 -> +0.0193147. Total -1.9806853.
    logp = torch.zeros(1, 1, requires_grad=True)
    inp = LossInputs(
        logp_BL=logp,
        mask_BL=torch.ones(1, 1).bool(),
        adv_B=torch.tensor([2.0]),
        old_logp_BL=torch.zeros(1, 1),
        weight_B=torch.tensor([0.5]),
        engine_logp_BL=torch.tensor([[-1.5]]),
        ref_logp_BL=torch.tensor([[LN(0.5)]]),
    )
    opts = LossOptions(is_mode="token_truncate", is_cap=2.0, kl_coef=0.1, kl_estimator="k3")
    out = policy_loss("ppo_clip", inp, opts)
    assert out.loss_BL.item() == pytest.approx(-1.9806853, abs=1e-6)
    assert out.pg_loss_BL.item() == pytest.approx(-2.0)  # the unweighted, uncorrected signal
    assert out.metrics["is/weight_mean"] == pytest.approx(2.0)
    assert out.metrics["loss/kl"] == pytest.approx(0.193147, abs=1e-6)
    # gradient: pg part -r A * 0.5 * 2 = -2; KL part 0.1 * (1 - e^d) = 0.1 * 0.5 = 0.05 -> -1.95
    out.loss_BL.sum().backward()
    assert logp.grad.item() == pytest.approx(-1.95, abs=1e-6)


def test_kl_ratio_weighted_multiplies_by_the_policy_ratio():
    # r = 2 (logp = ln 2, old = 0), A = 0 -> pg 0. ref = 0: d = -ln 2, k3 = 0.5 + ln 2 - 1 = 0.193147; x r = 0.386294
    inp, _ = _inputs([[2.0]], [0.0], ref_logp_BL=torch.zeros(1, 1))
    out = policy_loss("ppo_clip", inp, LossOptions(kl_coef=1.0, kl_ratio_weighted=True))
    assert out.loss_BL.item() == pytest.approx(0.386294, abs=1e-6)


def test_on_policy_default_and_entropy_metric():
    # old = None -> ratio 1 -> loss = -A, gradient -A; uniform logits over 4 -> entropy ln 4
    logp = torch.full((1, 2), -1.0, requires_grad=True)
    inp = LossInputs(
        logp_BL=logp, mask_BL=torch.tensor([[0, 1]]).bool(), adv_B=torch.tensor([0.5]), logits_BLV=torch.zeros(1, 2, 4)
    )
    out = policy_loss("ppo_clip", inp)
    out.loss_BL[0, 1].backward()
    assert out.loss_BL[0, 1].item() == pytest.approx(-0.5) and logp.grad[0, 1].item() == pytest.approx(-0.5)
    assert out.metrics["loss/entropy"] == pytest.approx(math.log(4), abs=1e-6)


def test_extreme_log_ratios_stay_finite():
    # log ratio 1000 is clamped to 20: with A < 0 and no dual clip the loss is e^20, finite; the pad is ignored
    logp = torch.tensor([[1000.0, -1e9]], requires_grad=True)
    inp = LossInputs(
        logp_BL=logp, mask_BL=torch.tensor([[1, 0]]).bool(), adv_B=torch.tensor([-1.0]), old_logp_BL=torch.zeros(1, 2)
    )
    out = policy_loss("ppo_clip", inp)
    assert out.loss_BL[0, 0].item() == pytest.approx(math.exp(20), rel=1e-5)
    assert out.loss_BL[0, 1].item() == 1.0  # off-mask: ratio 1, loss -A
    (out.loss_BL * inp.mask_BL).sum().backward()
    assert torch.isfinite(logp.grad).all()


@pytest.mark.parametrize(
    "opts, inputs_kw, message",
    [
        (
            LossOptions(is_mode="token_truncate"),
            {},
            "LossOptions.is_mode='token_truncate' needs LossInputs.engine_logp_BL",
        ),
        (LossOptions(kl_coef=0.1), {}, "LossOptions.kl_coef=0.1 needs LossInputs.ref_logp_BL, got None"),
    ],
)
def test_missing_inputs_are_named(opts, inputs_kw, message):
    inp, _ = _inputs([[1.0]], [1.0], **inputs_kw)
    with pytest.raises(ValueError, match=message):
        policy_loss("ppo_clip", inp, opts)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(clip_low=0.0), "LossOptions.clip_low must be > 0, got 0.0"),
        (dict(clip_low=1.0), "LossOptions.clip_low must be < 1"),
        (dict(dual_clip_c=1.0), "LossOptions.dual_clip_c must be > 1 or None, got 1.0"),
        (dict(kl_coef=-0.1), "LossOptions.kl_coef must be >= 0, got -0.1"),
        (dict(kl_estimator="k9"), "LossOptions.kl_estimator must be one of 'k1', 'k2', 'k3', got 'k9'"),
        (
            dict(is_mode="tis"),
            "LossOptions.is_mode must be one of 'none', 'sequence_mask', 'sequence_truncate', "
            "'token_mask', 'token_truncate', got 'tis'",
        ),
        (dict(is_floor=3.0, is_cap=2.0), r"LossOptions.is_floor must be in \(0, is_cap\) or None, got 3.0"),
    ],
)
def test_options_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossOptions(**kwargs)


def test_input_shapes_and_unknown_loss():
    with pytest.raises(ValueError, match=r"LossInputs.adv_B must have shape \(1,\), got \(2,\)"):
        LossInputs(logp_BL=torch.zeros(1, 3), mask_BL=torch.ones(1, 3), adv_B=torch.zeros(2))
    with pytest.raises(ValueError, match=r"LossInputs.old_logp_BL must have shape \(1, 3\), got \(1, 2\)"):
        LossInputs(
            logp_BL=torch.zeros(1, 3), mask_BL=torch.ones(1, 3), adv_B=torch.zeros(1), old_logp_BL=torch.zeros(1, 2)
        )
    inp, _ = _inputs([[1.0]], [1.0])
    valid = "'bapo', 'dual_clip', 'gspo', 'ppo_clip'"
    with pytest.raises(ValueError, match=f"unknown policy loss 'ppo'; valid names: {valid}"):
        policy_loss("ppo", inp)
