"""RolloutBatch: the one typed record that carries rollouts from generation to the learner.

Layout (decided once, here):

* Every per-token tensor is (B, L), right-padded, over the *whole* sequence prompt + completion, so token
  ids, masks and logprobs share one index space and selecting/trimming never shifts anything.
* Logprob tensors are aligned with `input_ids_BL`: `logp_BL[b, t] = log pi(input_ids[b, t] | input_ids[b, :t])`.
  Column 0 has no predictor and is 0; prompt positions are 0 too for the engine's logprobs. A model's
  logits at position t-1 give position t (`rlbal.algo.tokens.token_logprobs`).
* `completion_mask_BL` marks the completion tokens that carry loss (a subset of the attention mask, never
  column 0). Rows are ragged: groups (one prompt's rollouts) have any size >= 1.
* Per-sequence tensors are (B,). `group_B` indexes the group (prompt) of each row: dense 0..G-1 in a
  batch built by `from_generation` or `concat`; `select`/`split*` keep the parent's ids so micro-batches
  index the parent's per-group normalisers (`rlbal.algo.aggregation.AggregationContext`).

    batch = RolloutBatch.from_generation(result.prompt_token_ids, result.completions, prompt_ids, bins,
                                         weights, rewards, pad_id=tok.pad_token_id)
    batch = dataclasses.replace(batch, advantages_B=compute_advantages("grpo", batch.rewards_B, batch.group_B))
    for mb in batch.split_by_tokens(max_tokens=8192): ...
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rlbal import micro_batches
from rlbal.rollout.engine import Completion

_TOKEN_FIELDS = (
    "input_ids_BL",
    "attention_mask_BL",
    "completion_mask_BL",
    "engine_logp_BL",
    "old_logp_BL",
    "ref_logp_BL",
)
_SEQ_FIELDS = ("rewards_B", "group_B", "prompt_id_B", "bin_B", "weight_B", "truncated_B", "advantages_B")
_DTYPES = {
    "input_ids_BL": torch.int64,
    "attention_mask_BL": torch.bool,
    "completion_mask_BL": torch.bool,
    "engine_logp_BL": torch.float32,
    "old_logp_BL": torch.float32,
    "ref_logp_BL": torch.float32,
    "rewards_B": torch.float32,
    "group_B": torch.int64,
    "prompt_id_B": torch.int64,
    "bin_B": torch.int64,
    "weight_B": torch.float32,
    "truncated_B": torch.bool,
    "advantages_B": torch.float32,
}


@dataclass(frozen=True, eq=False)
class RolloutBatch:
    """B rollouts (sequences) of padded length L. Fields suffixed _BL are per token, _B per sequence."""

    # --- tokens and masks, per token (B, L), right-padded
    input_ids_BL: Tensor  # int64, prompt then completion tokens, then `pad_id`
    attention_mask_BL: Tensor  # bool, a prefix of True per row (prompt + completion)
    completion_mask_BL: Tensor  # bool, completion tokens that carry loss; inside the attention mask, never col 0
    # --- logprobs per policy, per token (B, L), float32, aligned with input_ids (module doc); 0 off-completion
    engine_logp_BL: Tensor  # behaviour policy: the rollout engine's logprob of each sampled token
    # --- rewards and per-prompt metadata, per sequence (B,)
    rewards_B: Tensor  # float32, scalar reward of each rollout
    group_B: Tensor  # int64 >= 0, group (prompt) index of each rollout; rows of a group share a prompt
    prompt_id_B: Tensor  # int64, stable dataset id of the prompt (classifier history key)
    bin_B: Tensor  # int64 >= 0, difficulty bin of the prompt at this step (0 = hardest)
    weight_B: Tensor  # float32 >= 0, Prompt-GDRO advantage multiplier of the prompt (1 = unweighted)
    truncated_B: Tensor  # bool, generation hit max_new_tokens (finish_reason "length")
    pad_id: int = 0
    # --- filled later in the step
    old_logp_BL: Tensor | None = None  # trainer's logprobs at rollout time (pi_old); None = on-policy
    ref_logp_BL: Tensor | None = None  # frozen reference model's logprobs, for the KL penalty
    advantages_B: Tensor | None = None  # float32, unweighted advantages (weight_B is applied in the loss)

    def __post_init__(self) -> None:
        self._check_shapes()
        self._check_values()

    # ------------------------------------------------------------------ validation
    def _check_shapes(self) -> None:
        B, L = self.input_ids_BL.shape
        for name in _TOKEN_FIELDS + _SEQ_FIELDS:
            t = getattr(self, name)
            if t is None:
                continue
            want = (B, L) if name in _TOKEN_FIELDS else (B,)
            if tuple(t.shape) != want:
                raise ValueError(f"RolloutBatch.{name} must have shape {want}, got {tuple(t.shape)}")
            if t.dtype != _DTYPES[name]:
                raise ValueError(f"RolloutBatch.{name} must have dtype {_DTYPES[name]}, got {t.dtype}")
            if t.device != self.input_ids_BL.device:
                raise ValueError(f"RolloutBatch.{name} is on {t.device}, input_ids_BL on {self.input_ids_BL.device}")

    def _check_values(self) -> None:
        att, comp = self.attention_mask_BL, self.completion_mask_BL
        if att.shape[1] > 1 and bool((att[:, 1:] & ~att[:, :-1]).any()):
            raise ValueError("RolloutBatch.attention_mask_BL must be right-padded (a prefix of True per row)")
        if bool((comp & ~att).any()):
            raise ValueError("RolloutBatch.completion_mask_BL must lie inside attention_mask_BL")
        if comp.shape[1] > 0 and bool(comp[:, 0].any()):
            raise ValueError("RolloutBatch.completion_mask_BL column 0 must be False (no logits predict token 0)")
        for name in ("group_B", "bin_B", "weight_B"):
            t = getattr(self, name)
            if t.numel() and bool((t < 0).any()):
                raise ValueError(f"RolloutBatch.{name} must be >= 0, got min {t.min().item()}")

    # ------------------------------------------------------------------ sizes
    @property
    def num_seqs(self) -> int:
        return self.input_ids_BL.shape[0]

    @property
    def seq_len(self) -> int:
        return self.input_ids_BL.shape[1]

    @property
    def num_groups(self) -> int:
        """G = max group id + 1 (groups absent after a `select` still count: ids index the parent)."""
        return int(self.group_B.max().item()) + 1 if self.num_seqs else 0

    @property
    def lengths_B(self) -> Tensor:
        """(B,) unpadded length prompt + completion (int32: its sum is much faster than int64's on CPU)."""
        return self.attention_mask_BL.sum(-1, dtype=torch.int32)

    @property
    def completion_len_B(self) -> Tensor:
        """(B,) number of loss-carrying completion tokens."""
        return self.completion_mask_BL.sum(-1)

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask_BL.sum().item())

    # ------------------------------------------------------------------ operations
    def select(self, idx_N: Tensor | Sequence[int]) -> RolloutBatch:
        """Rows `idx_N`, trimmed to their longest row; group ids are kept (they index the parent's groups)."""
        idx = torch.as_tensor(idx_N, dtype=torch.int64, device=self.input_ids_BL.device)
        rows_BL = self.attention_mask_BL.index_select(0, idx)
        return self._select(idx, int(rows_BL.sum(-1, dtype=torch.int32).max().item()) if idx.numel() else 0)

    def _select(self, idx: Tensor, width: int) -> RolloutBatch:
        changes = {n: _rows(getattr(self, n), idx, width) for n in _TOKEN_FIELDS + _SEQ_FIELDS}
        return dataclasses.replace(self, **changes)

    def split(self, num_chunks: int) -> list[RolloutBatch]:
        """`num_chunks` contiguous pieces of near-equal row count (e.g. data-parallel shards)."""
        if num_chunks < 1:
            raise ValueError(f"split: num_chunks must be >= 1, got {num_chunks}")
        rows = torch.arange(self.num_seqs, device=self.input_ids_BL.device)
        return [self.select(part) for part in torch.tensor_split(rows, num_chunks) if part.numel()]

    def split_by_tokens(self, max_tokens: int, overhead_tokens: float | None = None) -> list[RolloutBatch]:
        """Micro-batches whose padded size rows * longest-row <= max_tokens (a longer row goes alone).

        Rows are sorted longest first and cut into runs that minimise calls x `overhead_tokens` + padded tokens
        (`rlbal.micro_batches.plan`; None: the fewest calls, then the least padding); the loss does not depend
        on the grouping because normalisers come from the full batch (AggregationContext).
        """
        lengths = self.lengths_B
        return [
            self._select(idx, int(lengths[idx[0]])) for idx in self.micro_batch_indices(max_tokens, overhead_tokens)
        ]

    def micro_batch_indices(
        self, max_tokens: int, overhead_tokens: float | None = None, count: int | None = None
    ) -> list[Tensor]:
        """Row indices of the `split_by_tokens` micro-batches, longest row first in each (callers that
        scatter per-row results back, like the learner's per-response signal, need the rows). `count`: cut
        further to exactly that many (`rlbal.micro_batches.split_to`; data-parallel ranks), empty ones last."""
        if max_tokens < 1:
            raise ValueError(f"split_by_tokens: max_tokens must be >= 1, got {max_tokens}")
        order = torch.argsort(self.lengths_B, descending=True, stable=True)
        lens = self.lengths_B[order].tolist()
        runs = micro_batches.plan(lens, max_tokens, overhead_tokens)
        if count is not None:
            runs = micro_batches.split_to(runs, count, micro_batches.row_cost(lens))
        return [order[a:b] for a, b in runs]

    def to(self, device: torch.device | str) -> RolloutBatch:
        changes = {n: getattr(self, n).to(device) for n in _TOKEN_FIELDS + _SEQ_FIELDS if getattr(self, n) is not None}
        return dataclasses.replace(self, **changes)

    @staticmethod
    def concat(batches: Sequence[RolloutBatch]) -> RolloutBatch:
        """Stack independent batches (e.g. generation rounds under online filtering); groups never merge.

        Group ids of each input are shifted past those of the inputs before it. An optional field must be
        present in all inputs or none.
        """
        if not batches:
            raise ValueError("concat: needs at least one batch")
        if len({b.pad_id for b in batches}) > 1:
            raise ValueError(f"concat: batches disagree on pad_id: {sorted({b.pad_id for b in batches})}")
        width = max(b.seq_len for b in batches)
        changes = {}
        for name in _TOKEN_FIELDS + _SEQ_FIELDS:
            parts = [getattr(b, name) for b in batches]
            if all(p is None for p in parts):
                continue
            if any(p is None for p in parts):
                raise ValueError(f"concat: RolloutBatch.{name} is set in some batches and None in others")
            fill = batches[0].pad_id if name == "input_ids_BL" else 0
            changes[name] = _stack_padded(parts, width, fill) if name in _TOKEN_FIELDS else torch.cat(parts)
        offsets = [0]
        for b in batches[:-1]:
            offsets.append(offsets[-1] + b.num_groups)
        changes["group_B"] = torch.cat([b.group_B + off for b, off in zip(batches, offsets)])
        return dataclasses.replace(batches[0], **changes)

    @classmethod
    def from_generation(
        cls,
        prompt_token_ids: Sequence[Sequence[int]],
        completions: Sequence[Completion],
        prompt_ids: Sequence[int],
        bins: Sequence[int],
        weights: Sequence[float],
        rewards: Sequence[float],
        pad_id: int,
    ) -> RolloutBatch:
        """Build from the engine's records, one row per completion in the given order.

        prompt_token_ids, prompt_ids, bins, weights: one entry per prompt of the `generate` call.
        completions, rewards: one entry per completion (`Completion.prompt_index` points at its prompt).
        Groups are the prompts that got at least one completion, renumbered densely in prompt order.
        """
        _check_generation_inputs(prompt_token_ids, completions, prompt_ids, bins, weights, rewards)
        pidx_B = torch.tensor([c.prompt_index for c in completions], dtype=torch.int64)
        prompts = [prompt_token_ids[c.prompt_index] for c in completions]
        plen_B = torch.tensor([len(p) for p in prompts], dtype=torch.int64)
        len_B = plen_B + torch.tensor([len(c.token_ids) for c in completions], dtype=torch.int64)
        ids = itertools.chain.from_iterable(x for p, c in zip(prompts, completions) for x in (p, c.token_ids))
        logps = itertools.chain.from_iterable(
            x for p, c in zip(prompts, completions) for x in (itertools.repeat(0.0, len(p)), c.logprobs)
        )
        attention_mask_BL = torch.arange(int(len_B.max()) if len(completions) else 0).unsqueeze(0) < len_B.unsqueeze(1)
        pos_BL = torch.arange(attention_mask_BL.shape[1]).unsqueeze(0)
        return cls(
            input_ids_BL=_scatter_rows(ids, attention_mask_BL, pad_id, torch.int64),
            attention_mask_BL=attention_mask_BL,
            completion_mask_BL=attention_mask_BL & (pos_BL >= plen_B.unsqueeze(1)),
            engine_logp_BL=_scatter_rows(logps, attention_mask_BL, 0.0, torch.float32),
            rewards_B=torch.tensor(list(rewards), dtype=torch.float32).reshape(-1),
            group_B=torch.unique(pidx_B, return_inverse=True)[1].reshape(-1),
            prompt_id_B=torch.tensor(list(prompt_ids), dtype=torch.int64)[pidx_B],
            bin_B=torch.tensor(list(bins), dtype=torch.int64)[pidx_B],
            weight_B=torch.tensor(list(weights), dtype=torch.float32)[pidx_B],
            truncated_B=torch.tensor([c.finish_reason == "length" for c in completions], dtype=torch.bool),
            pad_id=pad_id,
        )


def _check_generation_inputs(prompt_token_ids, completions, prompt_ids, bins, weights, rewards) -> None:
    P = len(prompt_token_ids)
    for name, seq in (("prompt_ids", prompt_ids), ("bins", bins), ("weights", weights)):
        if len(seq) != P:
            raise ValueError(f"from_generation: {name} has {len(seq)} entries for {P} prompts")
    if len(rewards) != len(completions):
        raise ValueError(f"from_generation: rewards has {len(rewards)} entries for {len(completions)} completions")
    if any(len(p) == 0 for p in prompt_token_ids):
        raise ValueError("from_generation: every prompt needs at least one token")
    if any(not 0 <= c.prompt_index < P for c in completions):
        raise ValueError(f"from_generation: a Completion.prompt_index is outside [0, {P})")


def _rows(t: Tensor | None, idx: Tensor, width: int) -> Tensor | None:
    if t is None:
        return None
    # index_select, not t[idx]: advanced indexing is ~100x slower on CPU for these shapes
    return t[:, :width].index_select(0, idx) if t.dim() == 2 else t.index_select(0, idx)


def _stack_padded(parts: Sequence[Tensor], width: int, fill: float | int) -> Tensor:
    """Row-stack (B_i, L_i) tensors into one (sum B_i, width) tensor, right-padded with `fill`.

    One allocation plus slice copies: several times faster than pad + cat on CPU for large batches.
    """
    out = parts[0].new_full((sum(p.shape[0] for p in parts), width), fill)
    row = 0
    for p in parts:
        out[row : row + p.shape[0], : p.shape[1]].copy_(p)
        row += p.shape[0]
    return out


def _scatter_rows(flat: Iterable[float | int], mask_BL: Tensor, fill: float | int, dtype: torch.dtype) -> Tensor:
    """(B, L) tensor holding the flat values in the True positions of a right-padded mask, `fill` elsewhere.

    One numpy conversion of the flat stream and one masked assignment (row-major order = the flat order),
    instead of a tensor per row.
    """
    np_dtype = np.int64 if dtype == torch.int64 else np.float32
    flat_N = torch.from_numpy(np.fromiter(flat, dtype=np_dtype, count=int(mask_BL.sum(dtype=torch.int64))))
    out_BL = torch.full(mask_BL.shape, fill, dtype=dtype)
    out_BL[mask_BL] = flat_N
    return out_BL
