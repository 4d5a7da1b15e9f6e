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
    *,
    loss_mask_BL: torch.Tensor | None = None,
):
    """One forward of `model`: (B, L) logprobs aligned with input_ids (rlbal.algo.tokens convention), with the
    logits divided by the sampling temperature so the ratio compares the distribution the engine sampled from;
    plus (B, L) entropies of the predicting distributions (a metric, no gradient) when with_entropy.

    loss_mask_BL: the positions whose logprobs are used (a batch's completion mask). The model then computes
    logits only from the column before the first such position on (`logits_to_keep`, as TRL does), so the
    vocabulary projection and softmax skip the prompts; columns before it are 0, and the entropy is computed
    on the masked positions only (0 elsewhere). Values at the kept positions are those of the full forward.
    """
    T = temperature or 1.0
    L = input_ids_BL.shape[1]
    first = first_needed_column(loss_mask_BL)
    kwargs = {"logits_to_keep": L - first + 1} if first > 1 and accepts_logits_to_keep(model) else {}
    logits_BKV = model(input_ids=input_ids_BL, attention_mask=attention_mask_BL, use_cache=False, **kwargs).logits
    skip = L - logits_BKV.shape[1]  # columns without logits (0 for the full forward)
    logp_BL = _pad_left(tokens.token_logprobs(logits_BKV, input_ids_BL[:, skip:], T), skip)
    if not with_entropy:
        return logp_BL
    with torch.no_grad():
        if loss_mask_BL is None:
            return logp_BL, _pad_left(tokens.token_entropy(logits_BKV.detach(), T), skip)
        ent_BL = torch.zeros_like(logp_BL)
        pos_BK = loss_mask_BL[:, skip:].bool().clone()
        pos_BK[:, 0] = False  # no predictor inside the window (and column 0 is never a loss position)
        picked_NV = logits_BKV.detach()[:, :-1][pos_BK[:, 1:]]  # the logits predicting each masked token
        ent_BL[:, skip:][pos_BK] = tokens.entropy_of_logits(picked_NV, T).to(ent_BL.dtype)
        return logp_BL, ent_BL


def first_needed_column(loss_mask_BL: torch.Tensor | None) -> int:
    """The first column any row's mask selects (>= 1; 1 when there is no mask or it is empty)."""
    if loss_mask_BL is None:
        return 1
    cols = loss_mask_BL.any(0).nonzero()
    return max(1, int(cols[0])) if len(cols) else 1


_KEEP_ARG: dict[type, bool] = {}


def accepts_logits_to_keep(model) -> bool:
    """Whether the model's forward takes `logits_to_keep` (transformers' causal LMs do; a wrapper passes
    keyword arguments through to the module it wraps)."""
    import inspect

    inner = getattr(model, "module", model)  # DDP / DeepSpeed engine
    kind = type(inner)
    if kind not in _KEEP_ARG:
        _KEEP_ARG[kind] = "logits_to_keep" in inspect.signature(inner.forward).parameters
    return _KEEP_ARG[kind]


def _pad_left(x_BK: torch.Tensor, cols: int) -> torch.Tensor:
    return torch.nn.functional.pad(x_BK, (cols, 0)) if cols else x_BK
