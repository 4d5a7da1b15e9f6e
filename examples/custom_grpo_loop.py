"""A hand-written GRPO loop (plain torch + transformers) steered by rlbal's controllers.

rlbal adds three calls to your own loop; everything else is ordinary GRPO:

    alloc = ctl.decide(ids)          # difficulty bin, Prompt-GDRO advantage weight, Rollout-GDRO count per prompt
    ...   generate alloc.counts[i] completions for prompt i, score them
    adv_R = compute_advantages("grpo", reward_R, group_R, weight_B=alloc.weights[group_R])  # ragged groups
    ...   update the policy with adv_R
    ctl.observe(PromptResult.from_responses(ids, alloc.bins, group_R, correct_R, reward_R))

One on-policy update per batch, so the PPO ratio is 1 and its clip never binds: the loss is the policy
gradient, averaged over all completion tokens (DAPO token-mean). Offline: the tiny SFT model asset and
reasoning-gym chain_sum prompts generated locally; a prompt's id is its row, stable across epochs.

    python examples/custom_grpo_loop.py --steps 30                   # tiny-sft, a few s per step on 2 cores
    python examples/custom_grpo_loop.py --model /path/to/hf_folder --max-new-tokens 128 --allocator sqrt

The last line printed is `RESULT {json}` (per-step decisions and outcomes, controller metrics, how far the
weights moved); tests/test_examples.py reads it.
"""

import argparse
import json

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reward.math import math_reward
from rlbal.algo import compute_advantages
from rlbal.assets import resolve_model
from rlbal.controllers import ClassifierConfig, Controllers, PromptGDROConfig, PromptResult, RolloutGDROConfig
from rlbal.data import BOXED_INSTRUCTION, procedural_table

NUM_BINS = 5


def load_prompts(tok, size: int, seed: int) -> tuple[list[list[int]], list[str]]:
    """Chat-templated token ids and answers of chain_sum levels 1-3 (`size` per level)."""
    table = procedural_table(("chain_sum",), levels=(1, 2, 3), size=size, seed=seed)
    chats = [[{"role": "user", "content": f"{m[-1]['content']}\n{BOXED_INSTRUCTION}"}] for m in table.messages]
    ids = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False) for c in chats]
    return ids, table.answers


@torch.no_grad()
def generate(model, tok, prompts: list[list[int]], counts: np.ndarray, max_new_tokens: int):
    """counts[i] samples of prompt i at temperature 1 (rows grouped by prompt).
    Returns seq_RL (left-padded prompt + completion), attn_RL, mask_RT (completion tokens up to EOS) and P."""
    rows = [p for p, c in zip(prompts, counts) for _ in range(c)]
    P = max(map(len, rows))
    ids_RP = torch.tensor([[tok.pad_token_id] * (P - len(r)) + r for r in rows])
    attn_RP = (torch.arange(P) >= P - torch.tensor([len(r) for r in rows])[:, None]).long()
    seq_RL = model.generate(
        input_ids=ids_RP,
        attention_mask=attn_RP,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tok.pad_token_id,
    )
    eos_RT = (seq_RL[:, P:] == tok.eos_token_id).long()
    mask_RT = ((eos_RT.cumsum(1) - eos_RT) == 0).long()  # keep tokens up to and including the first EOS
    return seq_RL, torch.cat([attn_RP, mask_RT], 1), mask_RT, P


def completion_logprobs(model, seq_RL, attn_RL, P: int) -> torch.Tensor:
    """(R, T) log pi(token | prefix) of the completion tokens. Position ids start at each row's first real
    token, as in `generate` (left padding would otherwise shift every position)."""
    pos_RL = (attn_RL.cumsum(1) - 1).clamp(min=0)
    logits_RTV = model(input_ids=seq_RL, attention_mask=attn_RL, position_ids=pos_RL).logits[:, P - 1 : -1].float()
    return logits_RTV.gather(-1, seq_RL[:, P:, None])[..., 0] - logits_RTV.logsumexp(-1)


def grpo_step(model, opt, seq_RL, attn_RL, mask_RT, P: int, adv_R: torch.Tensor) -> float:
    """One policy-gradient update, token-mean over the batch; returns the loss."""
    model.train()
    logp_RT = completion_logprobs(model, seq_RL, attn_RL, P)
    ratio_RT = torch.exp(logp_RT - logp_RT.detach())  # == 1; its gradient is grad log pi
    mask = mask_RT.float()
    loss = -(ratio_RT * adv_R[:, None] * mask).sum() / mask.sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    model.eval()
    return loss.item()


def score(texts: list[str], answers: list[str]) -> tuple[torch.Tensor, np.ndarray]:
    """(R,) reward and (R,) correctness of each completion (rlbal's math reward, boxed or last number)."""
    results = [math_reward(t, a, extraction="boxed_or_last_number") for t, a in zip(texts, answers)]
    return torch.tensor([r.score for r in results]), np.array([r.outcome == "correct" for r in results])


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-sft", help="rlbal asset name or a local HF folder")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--prompts", type=int, default=16, help="prompts per step")
    ap.add_argument("--n-bar", type=int, default=4, help="mean rollouts per prompt (the budget)")
    ap.add_argument(
        "--allocator", default="bandit", choices=["bandit", "sqrt", "knapsack"], help="Rollout-GDRO allocator"
    )
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--size", type=int, default=64, help="prompts per difficulty level")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    path = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prompts, answers = load_prompts(tok, args.size, args.seed)
    ctl = Controllers.from_configs(
        ClassifierConfig(num_bins=NUM_BINS, window=50),
        PromptGDROConfig(),
        RolloutGDROConfig(allocator=args.allocator, n_bar=args.n_bar, n_min=2, n_max=3 * args.n_bar),
        n_rollouts=args.n_bar,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    start = [p.detach().clone() for p in model.parameters()]
    history = []
    for step in range(1, args.steps + 1):
        ids_N = rng.choice(len(prompts), args.prompts, replace=False)
        alloc = ctl.decide(ids_N)  # bins from history up to the previous step
        seq_RL, attn_RL, mask_RT, P = generate(
            model, tok, [prompts[i] for i in ids_N], alloc.counts, args.max_new_tokens
        )
        group_R = np.repeat(np.arange(ids_N.size), alloc.counts)
        texts = tok.batch_decode(seq_RL[:, P:], skip_special_tokens=True)  # generate pads rows after their EOS
        reward_R, correct_R = score(texts, [answers[ids_N[g]] for g in group_R])
        adv_R = compute_advantages(
            "grpo", reward_R, torch.from_numpy(group_R), weight_B=torch.from_numpy(alloc.weights[group_R])
        )
        loss = grpo_step(model, opt, seq_RL, attn_RL, mask_RT, P, adv_R)
        result = PromptResult.from_responses(
            ids_N, alloc.bins, group_R, correct_R, reward_R.numpy(), signal="failure_rate"
        )
        ctl.observe(result)
        history.append(
            {
                "ids": ids_N.tolist(),
                "bins": alloc.bins.tolist(),
                "counts": alloc.counts.tolist(),
                "weights": alloc.weights.tolist(),
                "n_correct": result.n_correct.tolist(),
                "texts": texts,
                "loss": loss,
            }
        )
        print(
            f"step {step:3d}  reward {reward_R.mean():.3f}  loss {loss:+.4f}  prompts per bin "
            f"{np.bincount(alloc.bins, minlength=NUM_BINS).tolist()}  rollouts {alloc.counts.min()}-"
            f"{alloc.counts.max()} (total {alloc.total})  weights {alloc.weights.min():.2f}-"
            f"{alloc.weights.max():.2f}",
            flush=True,
        )
    moved = [float((p.detach() - p0).norm()) for p, p0 in zip(model.parameters(), start)]
    print(
        "RESULT "
        + json.dumps(
            {
                "history": history,
                "answers": answers,
                "metrics": ctl.metrics(),
                "param_delta": float(np.linalg.norm(moved)),
                "tensors_moved": sum(m > 0 for m in moved),
                "tensors": len(moved),
                "controllers_state": ctl.state_dict(),
            }
        )
    )


if __name__ == "__main__":
    main()
