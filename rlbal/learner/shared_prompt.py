"""One forward of each group's prompt, its rollouts' completions on top: the learner's logprobs at a fraction of
the tokens.

The G rollouts of a group start with the same prompt, so a forward over all rows computes the prompt's hidden
states G times. Here a micro-batch runs in two calls:

1. the prefix of each group (the tokens its rows share, up to the first token the loss looks at), left-padded,
   with the model's key/value cache on (`use_cache=True`) and logits at its last column only;
2. every row's remaining tokens, right-padded, attending to its group's cached keys/values (the cache rows are
   index-selected per row: autograd sends every row's gradient back into the one prefix computation).

Logprobs, entropies and gradients equal one forward per row up to float rounding (tests/learner/
test_shared_prompt.py). Token work falls from rows x (prompt + completion) to groups x prompt + rows x
completion. It needs a transformers cache whose layers keep every key (`DynamicLayer`: no sliding window) and a
model that is not re-entrant through gradient checkpointing (transformers turns the cache off there);
`supported` says whether a model qualifies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlbal.algo import tokens


@dataclass(frozen=True)
class Layout:
    """Where each row of a micro-batch splits into a shared prefix and its own suffix.

    unit_B: (B,) index of the row's group among the micro-batch's groups (0..U-1); first_U: (U,) a row of each
    group (its prefix tokens); shared_U / shared_B: (U,) / (B,) prefix length (>= 1; the same for a group's rows);
    length_B: (B,) unpadded row length.
    """

    unit_B: torch.Tensor
    first_U: torch.Tensor
    shared_U: torch.Tensor
    shared_B: torch.Tensor
    length_B: torch.Tensor

    @property
    def saved_tokens(self) -> int:
        """Prefix tokens not recomputed: sum over rows of the shared length minus one prefix per group."""
        return int(self.shared_B.sum() - self.shared_U.sum())


def layout(
    input_ids_BL: torch.Tensor, attention_mask_BL: torch.Tensor, loss_mask_BL: torch.Tensor, group_B: torch.Tensor
) -> Layout:
    """Each group's shared prefix: the longest run of tokens all its rows have in common, cut before the first
    token any of its rows' loss looks at and before its shortest row's last token (every row keeps a suffix).

    >>> ids = torch.tensor([[5, 6, 7, 1, 0], [5, 6, 7, 2, 3], [5, 9, 9, 9, 9]])
    >>> att = ids > 0
    >>> lay = layout(ids, att, att & (torch.arange(5) >= 3), torch.tensor([4, 4, 2]))
    >>> lay.unit_B.tolist(), lay.shared_U.tolist(), lay.shared_B.tolist()
    ([1, 1, 0], [3, 3], [3, 3, 3])
    """
    B, L = input_ids_BL.shape
    groups, unit_B = torch.unique(group_B, return_inverse=True)
    U = len(groups)
    rows_B = torch.arange(B, device=group_B.device)
    first_U = torch.full((U,), B, dtype=torch.long, device=group_B.device).scatter_reduce(
        0, unit_B, rows_B, reduce="amin"
    )
    att = attention_mask_BL.bool()
    length_B = att.sum(-1)
    # a row's cap: the first column its loss looks at (its length when none), and its length - 1
    masked = loss_mask_BL.bool()
    first_mask_B = torch.where(masked.any(-1), masked.float().argmax(-1), length_B)
    same_BL = (input_ids_BL == input_ids_BL[first_U[unit_B]]) & att & att[first_U[unit_B]]
    common_B = torch.where(same_BL.all(-1), L, (~same_BL).float().argmax(-1))  # first differing column
    cap_B = torch.minimum(torch.minimum(first_mask_B, common_B), length_B - 1).clamp(min=1)
    shared_U = torch.full((U,), L, dtype=torch.long, device=group_B.device).scatter_reduce(
        0, unit_B, cap_B.long(), reduce="amin"
    )
    return Layout(unit_B, first_U, shared_U, shared_U[unit_B], length_B.long())


def shares_any(group_B: torch.Tensor) -> bool:
    """Whether two rows of a batch belong to one group (else there is no prompt to share)."""
    return len(group_B) > len(torch.unique(group_B))


def supported(model) -> bool:
    """Whether `model` can run the two-call forward: a plain (unwrapped) transformers causal LM without gradient
    checkpointing, taking `logits_to_keep`, whose cache keeps every key."""
    from rlbal.learner.model import accepts_logits_to_keep

    if hasattr(model, "module") or getattr(model, "is_gradient_checkpointing", False):
        return False
    if not accepts_logits_to_keep(model):
        return False
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    cache = DynamicCache(config=model.config)
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


def shared_prompt_logprobs(
    model,
    input_ids_BL: torch.Tensor,
    attention_mask_BL: torch.Tensor,
    loss_mask_BL: torch.Tensor,
    group_B: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
):
    """`rlbal.learner.model.token_logprobs(..., loss_mask_BL=...)` in two calls (module docstring): (B, L)
    logprobs (and entropies when with_entropy), 0 outside `loss_mask_BL`."""
    from rlbal.learner.model import _head_on_rows

    T = temperature or 1.0
    B, L = input_ids_BL.shape
    dev = input_ids_BL.device
    lay = layout(input_ids_BL, attention_mask_BL, loss_mask_BL, group_B)
    mask_BL = loss_mask_BL.bool()

    # 1. prefixes, left-padded to the longest: column Sw - 1 is every prefix's last token
    Sw = int(lay.shared_U.max())
    cols_S = torch.arange(Sw, device=dev)
    pad_US = Sw - lay.shared_U[:, None]
    src_US = (cols_S[None] - pad_US).clamp(min=0)
    prefix_att_US = cols_S[None] >= pad_US
    prefix_ids_US = input_ids_BL[lay.first_U].gather(1, src_US) * prefix_att_US
    out = model(
        input_ids=prefix_ids_US,
        attention_mask=prefix_att_US.long(),
        position_ids=src_US,
        use_cache=True,
        logits_to_keep=1,
    )
    cache = out.past_key_values
    cache.batch_select_indices(lay.unit_B)  # one cache row per row of the batch (a differentiable gather)
    last_UV = out.logits[:, -1]  # predicts each group's token at column shared_U

    # 2. suffixes: the row's tokens from column shared_B on, right-padded
    Cw = int((lay.length_B - lay.shared_B).max())
    cols_C = torch.arange(Cw, device=dev)
    src_BC = (lay.shared_B[:, None] + cols_C[None]).clamp(max=L - 1)
    suffix_att_BC = cols_C[None] < (lay.length_B - lay.shared_B)[:, None]
    suffix_ids_BC = input_ids_BL.gather(1, src_BC) * suffix_att_BC
    need_BC = mask_BL.gather(1, src_BC) & suffix_att_BC  # the loss looks at the row's suffix token c
    rows_BC = torch.zeros_like(need_BC)
    rows_BC[:, :-1] = need_BC[:, 1:]  # suffix column c predicts suffix token c + 1
    with _head_on_rows(model, rows_BC):
        logits_NV = model(
            input_ids=suffix_ids_BC,
            attention_mask=torch.cat([prefix_att_US[lay.unit_B], suffix_att_BC], 1).long(),
            position_ids=src_BC,
            past_key_values=cache,
            use_cache=True,  # attend to the cache (it grows by the suffix; dropped after the call)
        ).logits
    # token at column shared_B: from the prefix's last logits; later tokens: from the suffix call
    first_rows = need_BC[:, 0].nonzero()[:, 0]
    raw_NV = torch.cat([last_UV[lay.unit_B[first_rows]], logits_NV])
    b_N = torch.cat([first_rows, rows_BC.nonzero()[:, 0]])
    t_N = torch.cat([lay.shared_B[first_rows], (src_BC + 1)[rows_BC]])
    logp_N = tokens.target_logprobs(raw_NV, input_ids_BL[b_N, t_N], T)
    logp_BL = torch.zeros(B, L, dtype=logp_N.dtype, device=dev).index_put((b_N, t_N), logp_N)
    if not with_entropy:
        return logp_BL
    with torch.no_grad():
        ent_N = tokens.entropy_of_logits(raw_NV.detach(), T)
        return logp_BL, torch.zeros_like(logp_BL).index_put((b_N, t_N), ent_N.to(logp_BL.dtype))


def micro_batches(
    batch, max_tokens: int, overhead_tokens: float | None, count: int | None = None
) -> list[torch.Tensor] | None:
    """Row indices of each two-call micro-batch over `batch` (a RolloutBatch), or None when no group has two
    rows (nothing to share: the caller plans plain micro-batches). A group is one unit (its prompt forward once);
    one that does not fit `max_tokens` is cut into chunks of rows that do. Units go longest suffix first into
    `rlbal.micro_batches.plan_units`; `count` cuts further to exactly that many (data-parallel ranks)."""
    from rlbal import micro_batches as mb

    if not shares_any(batch.group_B):
        return None
    lay = layout(batch.input_ids_BL, batch.attention_mask_BL, batch.completion_mask_BL, batch.group_B)
    unit_B, shared_B = lay.unit_B.tolist(), lay.shared_B.tolist()
    suffix_B = (lay.length_B - lay.shared_B).tolist()
    rows_of: dict[int, list[int]] = {}
    for b in sorted(range(batch.num_seqs), key=lambda b: -suffix_B[b]):
        rows_of.setdefault(unit_B[b], []).append(b)
    units: list[list[int]] = []
    for rows in rows_of.values():
        prefix, chunk = shared_B[rows[0]], []
        for b in rows:  # longest suffix first: a chunk's first row sets its suffix width
            if chunk and prefix + (len(chunk) + 1) * suffix_B[chunk[0]] > max_tokens:
                units.append(chunk)
                chunk = []
            chunk.append(b)
        units.append(chunk)
    units.sort(key=lambda u: (-suffix_B[u[0]], -shared_B[u[0]]))
    pre = [shared_B[u[0]] for u in units]
    suf = [suffix_B[u[0]] for u in units]
    rows = [len(u) for u in units]
    runs = mb.plan_units(pre, suf, rows, max_tokens, overhead_tokens)
    if count is not None:
        runs = mb.split_to(runs, count, mb.unit_cost(pre, suf, rows))
    dev = batch.input_ids_BL.device
    return [torch.tensor([b for u in units[a:z] for b in u], dtype=torch.long, device=dev) for a, z in runs]
