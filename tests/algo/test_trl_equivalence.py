"""rlbal's GRPO / DAPO / Dr. GRPO advantages, loss and gradients equal TRL's GRPOTrainer on the same tensors.

TRL's own code is driven: a real `GRPOTrainer` on a tiny Llama, whose generation is replaced by TRL's
`rollout_func` hook returning fixed token ids (so both sides see identical rollouts), then TRL's
`_generate_and_score_completions` (advantages) and `_compute_loss` (loss, on a hand-perturbed pi_old and
reference so clipping and KL are active). Mapping: TRL loss_type "grpo" -> aggregation "seq_mean_token_mean",
"dapo" -> "token_mean", "dr_grpo" -> "seq_sum_const" (max_len = max_completion_length); scale_rewards "group"
-> estimator "grpo" (Bessel std, eps 1e-4), "none" -> "dr_grpo"; use_bias_correction_kl -> kl_ratio_weighted.

Prompts have equal length on purpose: TRL left-pads prompts without shifting position ids, rlbal right-pads,
so unequal prompts would give the model different positions (different logits), not different algorithms.
"""

import dataclasses

import pytest
import torch

from rlbal.algo import (
    AdvantageOptions,
    AggregationContext,
    LossInputs,
    LossOptions,
    aggregate,
    compute_advantages,
    policy_loss,
    token_logprobs,
)
from rlbal.batch import RolloutBatch
from rlbal.rollout.engine import Completion

G, P, MAX_LEN, BETA = 4, 3, 6, 0.04
PROMPTS = [[5, 6, 7], [8, 9, 10]]
COMPLETIONS = [
    [11, 12, 2],
    [13, 14, 15, 16],
    [17, 2],
    [18, 19, 20, 21],  # ragged lengths within each group
    [22, 2],
    [23, 24, 25],
    [26, 27, 28, 2],
    [29],
]
REWARDS = [1.0, 0.0, 0.5, 0.0, 1.0, 1.0, 0.0, 0.25]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(64)}, unk_token="t1"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="t0", eos_token="t2", unk_token="t1")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        pad_token_id=0,
        eos_token_id=2,
    )
    path = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _trainer(model_dir: str, loss_type: str, scale_rewards: str, bias_correction_kl: bool, out_dir: str):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    def rollout_func(prompts, trainer):  # fixed rollouts instead of sampling
        return {
            "prompt_ids": [PROMPTS[i // G] for i in range(len(prompts))],
            "completion_ids": COMPLETIONS,
            "logprobs": None,
        }

    def reward_fn(prompts, completions, completion_ids, **kwargs):
        return list(REWARDS)

    args = GRPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=len(COMPLETIONS),
        num_generations=G,
        max_completion_length=MAX_LEN,
        beta=BETA,
        epsilon=0.2,
        epsilon_high=0.28,
        loss_type=loss_type,
        scale_rewards=scale_rewards,
        use_bias_correction_kl=bias_correction_kl,
        bf16=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
    )
    dataset = Dataset.from_dict({"prompt": ["t5 t6 t7", "t8 t9 t10"]})
    return GRPOTrainer(
        model=model_dir,
        reward_funcs=reward_fn,
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        rollout_func=rollout_func,
    )


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()])


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss_type, scale_rewards, estimator, aggregation, bias_kl",
    [
        ("grpo", "group", "grpo", "seq_mean_token_mean", False),
        ("grpo", "group", "grpo", "seq_mean_token_mean", True),
        ("dapo", "group", "grpo", "token_mean", False),
        ("dr_grpo", "none", "dr_grpo", "seq_sum_const", False),
    ],
)
def test_matches_trl(tiny_model_dir, tmp_path, loss_type, scale_rewards, estimator, aggregation, bias_kl):
    tr = _trainer(tiny_model_dir, loss_type, scale_rewards, bias_kl, str(tmp_path))
    model = tr.model
    out = tr._generate_and_score_completions([{"prompt": "t5 t6 t7"}] * G + [{"prompt": "t8 t9 t10"}] * G)

    # --- advantages: the same rollouts through rlbal's ragged estimator
    comps = [Completion(i // G, c, [0.0] * len(c), "", "stop") for i, c in enumerate(COMPLETIONS)]
    batch = RolloutBatch.from_generation(PROMPTS, comps, [0, 1], [0, 0], [1.0, 1.0], REWARDS, pad_id=0)
    adv_B = compute_advantages(estimator, batch.rewards_B, batch.group_B, AdvantageOptions(std="bessel", eps=1e-4))
    assert adv_B.abs().max() > 0.1
    assert torch.allclose(adv_B, out["advantages"], atol=1e-6)

    # --- pi_old and reference: the model's logprobs perturbed so ratios spread past the clip range
    C = out["completion_ids"].shape[1]
    with torch.no_grad():
        logp_BC = token_logprobs(model(input_ids=batch.input_ids_BL).logits, batch.input_ids_BL)[:, P : P + C]
    gen = torch.Generator().manual_seed(1)
    old_BC = logp_BC + 0.3 * torch.randn(logp_BC.shape, generator=gen)
    ref_BC = logp_BC + 0.3 * torch.randn(logp_BC.shape, generator=gen)
    out.update(old_per_token_logps=old_BC, ref_per_token_logps=ref_BC)

    # --- TRL's loss and gradient
    model.train()
    tr.current_gradient_accumulation_steps = 1  # what Trainer's loop sets for a one-micro-batch window
    model.zero_grad()
    trl_loss = tr._compute_loss(model, out)
    trl_loss.backward()
    trl_grads = _grads(model)

    # --- rlbal's loss and gradient on the same model
    model.zero_grad()
    m = batch.completion_mask_BL
    to_BL = lambda x_BC: torch.nn.functional.pad(x_BC, (P, batch.seq_len - P - C)) * m  # noqa: E731
    batch = dataclasses.replace(batch, advantages_B=adv_B, old_logp_BL=to_BL(old_BC), ref_logp_BL=to_BL(ref_BC))
    logp_BL = token_logprobs(
        model(input_ids=batch.input_ids_BL, attention_mask=batch.attention_mask_BL.long()).logits, batch.input_ids_BL
    )
    opts = LossOptions(clip_low=0.2, clip_high=0.28, kl_coef=BETA, kl_estimator="k3", kl_ratio_weighted=bias_kl)
    res = policy_loss("ppo_clip", LossInputs.from_batch(batch, logp_BL), opts)
    ours = aggregate(res.loss_BL, m, AggregationContext.from_batch(batch, aggregation, max_len=MAX_LEN))
    ours.backward()

    assert res.metrics["loss/clip_frac_low"] > 0 and res.metrics["loss/clip_frac_high"] > 0  # clipping is exercised
    assert ours.item() == pytest.approx(trl_loss.item(), abs=1e-6)
    assert torch.allclose(_grads(model), trl_grads, atol=1e-6)
    logged = {k: v[-1] for k, v in tr._metrics["train"].items()}
    assert res.metrics["loss/clip_frac_low"] == pytest.approx(logged["clip_ratio/low_mean"], abs=1e-6)
    assert res.metrics["loss/clip_frac_high"] == pytest.approx(logged["clip_ratio/high_mean"], abs=1e-6)
    assert res.metrics["loss/kl"] == pytest.approx(logged["kl"], abs=1e-6)
