"""Policy-model helpers shared by the learner, the reference model and evaluation: loading and per-token logprobs."""

from __future__ import annotations

import contextlib
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

    loss_mask_BL: the positions whose logprobs are used (a batch's completion mask). Then the vocabulary
    projection runs only on the hidden states that predict those tokens: the model keeps the columns from the
    one before the first masked token on (`logits_to_keep`, as TRL does) and a pre-hook on its output
    embedding picks the predicting rows of each sequence, so prompts and padding never reach the (vocabulary-
    sized) head, softmax or entropy. Outside the mask the outputs are 0; at masked positions they are the full
    forward's (tests/learner/test_model.py, values and gradients).
    """
    T = temperature or 1.0
    if loss_mask_BL is None or not bool(loss_mask_BL.any()):
        logits_BLV = model(input_ids=input_ids_BL, attention_mask=attention_mask_BL, use_cache=False).logits
        logp_BL = tokens.token_logprobs(logits_BLV, input_ids_BL, T)
        if not with_entropy:
            return logp_BL
        with torch.no_grad():
            return logp_BL, tokens.token_entropy(logits_BLV.detach(), T)
    mask_BL = loss_mask_BL.bool()
    B, L = input_ids_BL.shape
    keep = L - first_needed_column(mask_BL) + 1 if accepts_logits_to_keep(model) else L
    skip = L - keep  # the window's column k holds the logits that predict token skip + k + 1
    rows_BK = torch.zeros(B, keep, dtype=torch.bool, device=mask_BL.device)
    rows_BK[:, :-1] = mask_BL[:, skip + 1 :]
    with _head_on_rows(model, rows_BK):
        kwargs = {"logits_to_keep": keep} if keep < L else {}
        logits_NV = model(input_ids=input_ids_BL, attention_mask=attention_mask_BL, use_cache=False, **kwargs).logits
    n = int(mask_BL.sum())
    if tuple(logits_NV.shape[:-1]) != (n,):
        raise RuntimeError(
            f"{type(model).__name__} returned logits of shape {tuple(logits_NV.shape)} for {n} selected positions: "
            "the learner needs a causal LM whose logits are its output embedding applied to the hidden states"
        )
    logp_N = tokens.target_logprobs(logits_NV, input_ids_BL[mask_BL], T)  # row-major: the rows the head saw
    logp_BL = torch.zeros(B, L, dtype=logp_N.dtype, device=logp_N.device).masked_scatter(mask_BL, logp_N)
    if not with_entropy:
        return logp_BL
    with torch.no_grad():
        ent_N = tokens.entropy_of_logits(logits_NV.detach(), T)
        return logp_BL, torch.zeros_like(logp_BL).masked_scatter(mask_BL, ent_N.to(logp_BL.dtype))


@contextlib.contextmanager
def _head_on_rows(model, rows_BK: torch.Tensor):
    """While active, the model's output embedding (lm_head) sees hidden[rows_BK]: (N, H) instead of (B, K, H)."""
    head = getattr(model, "module", model).get_output_embeddings()  # DDP / DeepSpeed wrap the HF model
    handle = head.register_forward_pre_hook(lambda module, args: (args[0][rows_BK], *args[1:]))
    try:
        yield
    finally:
        handle.remove()


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
