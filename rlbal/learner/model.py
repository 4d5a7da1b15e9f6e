"""Policy-model helpers shared by the learner, the reference model and evaluation: loading and per-token logprobs."""
from __future__ import annotations

from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load_causal_lm(path: str | Path, dtype: str = "float32", *, trainable: bool = True):
    """An HF causal LM from a local folder (built-in asset names resolved by rlbal.assets)."""
    from transformers import AutoModelForCausalLM

    from rlbal.assets import resolve_model

    folder = resolve_model(str(path))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype])
    model.config.use_cache = False
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)
    return model


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    from rlbal.assets import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model(str(path)))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def token_logprobs(model, input_ids_BL: torch.Tensor, attention_mask_BL: torch.Tensor,
                   temperature: float = 1.0, with_entropy: bool = False):
    """log pi(x_t | x_<t) for every position t >= 1, aligned with input_ids: out[:, t] scores input_ids[:, t];
    out[:, 0] = 0. Logits are divided by the sampling temperature, so the ratio compares the same
    distribution the engine sampled from. Computed as gather - logsumexp (no (B, L, V) log-softmax copy).
    Returns logp_BL (and entropy_BL of the predicting distribution when with_entropy)."""
    logits_BLV = model(input_ids=input_ids_BL, attention_mask=attention_mask_BL, use_cache=False).logits
    logits_BLV = logits_BLV[:, :-1].float()
    if temperature not in (0.0, 1.0):
        logits_BLV = logits_BLV / temperature
    targets_BL = input_ids_BL[:, 1:]
    lse_BL = torch.logsumexp(logits_BLV, dim=-1)
    picked_BL = logits_BLV.gather(-1, targets_BL.unsqueeze(-1)).squeeze(-1)
    logp_BL = torch.nn.functional.pad(picked_BL - lse_BL, (1, 0))
    if not with_entropy:
        return logp_BL
    with torch.no_grad():
        probs_BLV = torch.softmax(logits_BLV, dim=-1)
        ent_BL = lse_BL - (probs_BLV * logits_BLV).sum(-1)
    return logp_BL, torch.nn.functional.pad(ent_BL, (1, 0))
