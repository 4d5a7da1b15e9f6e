"""Policy-model helpers shared by the learner, the reference model and evaluation: loading and per-token logprobs."""

from __future__ import annotations

from pathlib import Path

import torch

from rlbal.algo import tokens

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


def token_logprobs(
    model,
    input_ids_BL: torch.Tensor,
    attention_mask_BL: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
):
    """One forward of `model`: (B, L) logprobs aligned with input_ids (rlbal.algo.tokens convention), with the
    logits divided by the sampling temperature so the ratio compares the distribution the engine sampled from;
    plus (B, L) entropies of the predicting distributions (a metric, no gradient) when with_entropy."""
    logits_BLV = model(input_ids=input_ids_BL, attention_mask=attention_mask_BL, use_cache=False).logits
    logp_BL = tokens.token_logprobs(logits_BLV, input_ids_BL, temperature or 1.0)
    if not with_entropy:
        return logp_BL
    with torch.no_grad():
        return logp_BL, tokens.token_entropy(logits_BLV.detach(), temperature or 1.0)
