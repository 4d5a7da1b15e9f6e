"""Aggregation modes by hand, context validation, and sharding invariance of real gradients."""

import dataclasses
import random

import pytest
import torch

from rlbal.algo.advantages import compute_advantages
from rlbal.algo.aggregation import AggregationContext, aggregate, bin_contributions, bin_share_metrics
from rlbal.algo.losses import LossInputs, LossOptions, policy_loss
from rlbal.algo.tokens import token_logprobs
from rlbal.batch import RolloutBatch
from rlbal.rollout.engine import Completion

# Three sequences (padding values 100 must be ignored):
#   a = [1, 2, 3]  bin 0, prompt 0   token sum 6,  token mean 2
#   b = [4]        bin 1, prompt 1   token sum 4,  token mean 4
#   c = [6, 4, 5]  bin 1, prompt 0   token sum 15, token mean 5
# Global: T = 7 tokens, N = 3 sequences, total 25.
LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, 100.0], [6.0, 4.0, 5.0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 1]]).bool()
BINS = torch.tensor([0, 1, 1])
PROMPTS = torch.tensor([0, 1, 0])


@pytest.mark.parametrize(
    "mode, kw, key, expected",
    [
        ("token_mean", {}, None, 25 / 7),  # DAPO: 25 / 7 = 3.571429
        ("seq_mean_token_mean", {}, None, (2 + 4 + 5) / 3),  # GRPO: 3.666667
        ("seq_sum_const", dict(max_len=4), None, 25 / (3 * 4)),  # Dr. GRPO: 2.083333
        # bins uniform, unit seq: 0.5 * 2 + 0.5 * mean(4, 5) = 3.25
        ("group_balanced", dict(group_by="bin", unit="seq"), BINS, 3.25),
        # bins uniform, unit token: bin 0 token mean 6/3 = 2, bin 1 (4 + 15)/4 = 4.75 -> 0.5*2 + 0.5*4.75 = 3.375
        ("group_balanced", dict(group_by="bin", unit="token"), BINS, 3.375),
        # given shares 0.2 / 0.8: 0.2 * 2 + 0.8 * 4.5 = 4.0
        ("group_balanced", dict(group_by="bin", unit="seq", shares=[0.2, 0.8]), BINS, 4.0),
        # shares for an absent bin 2 are dropped and the rest renormalised: (0.1, 0.4) / 0.5 = (0.2, 0.8) -> 4.0
        ("group_balanced", dict(group_by="bin", unit="seq", shares=[0.1, 0.4, 0.5]), BINS, 4.0),
        # prompts uniform, unit seq: prompt 0 = mean(2, 5) = 3.5, prompt 1 = 4 -> 3.75
        ("group_balanced", dict(group_by="prompt", unit="seq"), PROMPTS, 3.75),
    ],
)
def test_modes_by_hand(mode, kw, key, expected):
    ctx = AggregationContext.build(mode, MASK, key, **kw)
    assert aggregate(LOSS, MASK, ctx, key).item() == pytest.approx(expected, abs=1e-6)


def test_scale_by_dp_size_and_engine_accumulation():
    ctx = AggregationContext.build("token_mean", MASK, dp_size=2, engine_accum_steps=3)
    assert aggregate(LOSS, MASK, ctx).item() == pytest.approx(6 * 25 / 7, abs=1e-5)


def test_sequence_level_flag():
    assert AggregationContext.build("seq_mean_token_mean", MASK).sequence_level
    assert not AggregationContext.build("token_mean", MASK).sequence_level
    assert AggregationContext.build("group_balanced", MASK, BINS, group_by="bin", unit="seq").sequence_level
    assert not AggregationContext.build("group_balanced", MASK, BINS, group_by="bin", unit="token").sequence_level


def test_bin_contributions_and_shares_by_hand():
    ctx = AggregationContext.build("token_mean", MASK)
    contrib = bin_contributions(LOSS, MASK, ctx, BINS, num_bins=3)
    # |coef * seq sum| with coef 1/7: bin 0 -> 6/7, bin 1 -> 19/7, bin 2 -> 0
    assert contrib.tolist() == pytest.approx([6 / 7, 19 / 7, 0.0], abs=1e-6)
    assert bin_share_metrics(contrib) == pytest.approx(
        {"loss/bin_share/bin_0": 6 / 25, "loss/bin_share/bin_1": 19 / 25, "loss/bin_share/bin_2": 0.0}, abs=1e-6
    )


@pytest.mark.parametrize(
    "mode, kw, message",
    [
        ("seq_sum_const", {}, "AggregationContext.max_len must be a positive int for mode 'seq_sum_const', got None"),
        ("group_balanced", dict(group_by="difficulty"), "AggregationContext.group_by must be one of"),
        ("group_balanced", dict(group_by="bin", unit="word"), "AggregationContext.unit must be one of"),
        (
            "group_balanced",
            dict(group_by="bin", shares=[1.0]),
            r"AggregationContext shares must be 2 non-negative numbers \(one per group\), got \[1.0\]",
        ),
        (
            "group_balanced",
            dict(group_by="bin", shares=[0.0, 0.0, 1.0]),
            "AggregationContext shares give zero total weight to the groups present in the batch",
        ),
        (
            "mean",
            {},
            "unknown loss aggregation 'mean'; valid names: 'group_balanced', 'seq_mean_token_mean', "
            "'seq_sum_const', 'token_mean'",
        ),
    ],
)
def test_context_validation(mode, kw, message):
    with pytest.raises(ValueError, match=message):
        AggregationContext.build(mode, MASK, BINS, **kw)


def test_group_balanced_needs_keys():
    with pytest.raises(ValueError, match="AggregationContext.build: mode 'group_balanced' needs key_B"):
        AggregationContext.build("group_balanced", MASK, None, group_by="bin")
    ctx = AggregationContext.build("group_balanced", MASK, BINS, group_by="bin")
    with pytest.raises(ValueError, match="aggregate: mode 'group_balanced' needs key_B"):
        aggregate(LOSS, MASK, ctx)


# ---------------------------------------------------------------- sharding invariance with real gradients
V, D = 13, 6


class LinearPolicy(torch.nn.Module):
    """Tiny real policy: logits of the next token = E[current token] @ W (a learnable bigram model)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.E = torch.nn.Parameter(torch.randn(V, D, generator=g))
        self.W = torch.nn.Parameter(torch.randn(D, V, generator=g) * 0.5)

    def logp(self, batch: RolloutBatch) -> torch.Tensor:
        return token_logprobs(self.E[batch.input_ids_BL] @ self.W, batch.input_ids_BL)


def _random_batch(policy: LinearPolicy) -> RolloutBatch:
    rng = random.Random(7)
    prompts = [[rng.randrange(V) for _ in range(rng.randint(1, 4))] for _ in range(9)]
    comps = []
    for p in range(len(prompts)):
        for _ in range(rng.randint(1, 5)):  # ragged groups, including singletons
            n = rng.choice([0, 1, 2, 5, 8, 11])  # includes an empty completion
            comps.append(Completion(p, [rng.randrange(V) for _ in range(n)], [0.0] * n, "", "stop"))
    rewards = [float(rng.random() < 0.4) for _ in comps]
    b = RolloutBatch.from_generation(
        prompts,
        comps,
        list(range(100, 109)),
        [rng.randrange(4) for _ in prompts],
        [rng.uniform(0.2, 2.0) for _ in prompts],
        rewards,
        pad_id=0,
    )
    with torch.no_grad():  # pi_old, the engine and the reference are perturbed copies of the policy
        base = policy.logp(b)
        noise = [torch.randn(b.input_ids_BL.shape, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)]
    m = b.completion_mask_BL
    return dataclasses.replace(
        b,
        old_logp_BL=(base + 0.3 * noise[0]) * m,
        engine_logp_BL=(base + 0.3 * noise[0] + 0.1 * noise[1]) * m,
        ref_logp_BL=(base + 0.3 * noise[2]) * m,
        advantages_B=compute_advantages("grpo", b.rewards_B, b.group_B),
    )


def _loss(policy, mb, ctx, loss_name):
    opts = LossOptions(kl_coef=0.05, is_mode="token_truncate", is_cap=2.0, clip_low=0.2, clip_high=0.28)
    out = policy_loss(loss_name, LossInputs.from_batch(mb, policy.logp(mb)), opts)
    return aggregate(out.loss_BL, mb.completion_mask_BL, ctx, ctx.key_of(mb))


def _grads(policy):
    return torch.cat([p.grad.reshape(-1).clone() for p in policy.parameters()])


CASES = [
    ("ppo_clip", "token_mean", {}),
    ("ppo_clip", "seq_mean_token_mean", {}),
    ("ppo_clip", "seq_sum_const", dict(max_len=11)),
    ("ppo_clip", "group_balanced", dict(group_by="bin", unit="token")),
    ("ppo_clip", "group_balanced", dict(group_by="bin", unit="seq")),
    ("ppo_clip", "group_balanced", dict(group_by="bin", unit="seq", shares=[0.1, 0.2, 0.3, 0.4])),
    ("ppo_clip", "group_balanced", dict(group_by="prompt", unit="seq")),
    ("gspo", "seq_mean_token_mean", {}),
]


@pytest.mark.parametrize("loss_name, mode, kw", CASES)
def test_micro_batches_and_fake_ranks_reproduce_the_full_batch_gradient(loss_name, mode, kw):
    policy = LinearPolicy(seed=0)
    batch = _random_batch(policy)
    full = _loss(policy, batch, AggregationContext.from_batch(batch, mode, **kw), loss_name)
    full.backward()
    g_full = _grads(policy)
    assert g_full.abs().max() > 1e-3  # the test means something: real, non-zero gradients

    R = 3
    ctx = AggregationContext.from_batch(batch, mode, dp_size=R, **kw)  # global normalisers, computed once
    rank_grads, total = [], 0.0
    for shard in batch.split(R):
        policy.zero_grad()
        for mb in shard.split_by_tokens(max_tokens=24):  # ragged, trimmed micro-batches
            loss = _loss(policy, mb, ctx, loss_name)
            loss.backward()
            total += loss.item()
        rank_grads.append(_grads(policy))
    g_dp = torch.stack(rank_grads).mean(0)  # data-parallel all-reduce averages gradients
    assert torch.allclose(g_dp, g_full, atol=1e-6, rtol=1e-5)
    assert total / R == pytest.approx(full.item(), abs=1e-6)


def test_local_normalisers_would_break_invariance():
    # the counter-example the context exists for: normalising each micro-batch by its own token count
    policy = LinearPolicy(seed=0)
    batch = _random_batch(policy)
    _loss(policy, batch, AggregationContext.from_batch(batch, "token_mean"), "ppo_clip").backward()
    g_full = _grads(policy)
    policy.zero_grad()
    mbs = batch.split_by_tokens(max_tokens=24)
    for mb in mbs:
        (_loss(policy, mb, AggregationContext.from_batch(mb, "token_mean"), "ppo_clip") / len(mbs)).backward()
    assert not torch.allclose(_grads(policy), g_full, atol=1e-4)


def test_bin_contributions_sum_over_micro_batches():
    policy = LinearPolicy(seed=0)
    batch = _random_batch(policy)
    ctx = AggregationContext.from_batch(batch, "token_mean")
    opts = LossOptions()
    with torch.no_grad():
        out = policy_loss("ppo_clip", LossInputs.from_batch(batch, policy.logp(batch)), opts)
        full = bin_contributions(out.loss_BL, batch.completion_mask_BL, ctx, batch.bin_B, 4)
        parts = torch.zeros(4)
        for mb in batch.split_by_tokens(24):
            o = policy_loss("ppo_clip", LossInputs.from_batch(mb, policy.logp(mb)), opts)
            parts += bin_contributions(o.loss_BL, mb.completion_mask_BL, ctx, mb.bin_B, 4)
    assert torch.allclose(parts, full, atol=1e-6) and full.sum() > 0
