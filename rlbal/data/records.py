"""Records of the prompt pipeline: raw table -> tokenised dataset -> batches the trainer draws.

    PromptTable    rows after field mapping, before templating (files, GSM8K, procedural all produce one)
    PromptDataset  templated and tokenised once; token ids stored flat (CSR) so millions of prompts stay cheap
    PromptBatch    what `PromptSource.next(k)` returns: k prompts with their stable ids

Ids: `index` is the dense row position in the loaded dataset (int64, what controllers key their
per-prompt history by); `key` is a string id (the mapped id field, else "<name>:<row>").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rlbal.errors import UserError


class DataError(UserError, ValueError):
    """Bad input data: the message names the file, the row and the field in one line."""

    kind = "data"


def _check_lengths(owner: str, n: int, **cols: Any) -> None:
    for name, col in cols.items():
        if len(col) != n:
            raise ValueError(f"{owner}.{name} has {len(col)} entries, expected {n}")


@dataclass
class PromptTable:
    """Prompts after field mapping and validation, before the chat template.

    name:         dataset name (used in default keys "<name>:<row>")
    sources:      where rows came from (file names, 'gsm8k/train.jsonl.gz', ...), for error messages
    keys:         (N,) stable string ids
    messages:     (N,) chat turns per prompt (user/system; no instruction or system prompt added yet)
    answers:      (N,) reference answers as strings
    metas:        (N,) per-row metadata dicts (task, level, extra columns, ...)
    difficulty:   (N,) float64 known difficulty, nan = unknown
    rows:         (N,) int64 row number within its source
    source_index: (N,) int32 which of `sources` each row came from
    """

    name: str
    sources: tuple[str, ...]
    keys: list[str]
    messages: list[list[dict[str, str]]]
    answers: list[str]
    metas: list[dict[str, Any]]
    difficulty: np.ndarray
    rows: np.ndarray
    source_index: np.ndarray

    def __post_init__(self) -> None:
        _check_lengths(
            "PromptTable",
            len(self.keys),
            messages=self.messages,
            answers=self.answers,
            metas=self.metas,
            difficulty=self.difficulty,
            rows=self.rows,
            source_index=self.source_index,
        )

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def source(self) -> str:
        """All sources in one short string, for messages about the whole table."""
        return "+".join(self.sources)

    def where(self, i: int) -> str:
        """'<source> row <r>' of table row i, the prefix of every per-row error."""
        return f"{self.sources[self.source_index[i]]} row {self.rows[i]}"


def concat_tables(tables: list[PromptTable], name: str | None = None) -> PromptTable:
    """Rows of several tables in order (e.g. several files); rows keep their own source for errors."""
    if not tables:
        raise ValueError("concat_tables needs at least one table")
    if len(tables) == 1 and name is None:
        return tables[0]
    offsets = np.cumsum([0] + [len(t.sources) for t in tables[:-1]])
    return PromptTable(
        name=name or "+".join(t.name for t in tables),
        sources=tuple(s for t in tables for s in t.sources),
        keys=[k for t in tables for k in t.keys],
        messages=[m for t in tables for m in t.messages],
        answers=[a for t in tables for a in t.answers],
        metas=[m for t in tables for m in t.metas],
        difficulty=np.concatenate([t.difficulty for t in tables]),
        rows=np.concatenate([t.rows for t in tables]),
        source_index=np.concatenate([t.source_index + o for t, o in zip(tables, offsets)]).astype(np.int32),
    )


@dataclass
class PromptBatch:
    """k prompts drawn for one step (or a refill). All fields are per prompt, aligned.

    indices:          (k,) int64 dense dataset index of each prompt (stable across epochs and resume)
    keys:             (k,) string ids
    prompt_token_ids: (k,) token ids of the templated prompt
    texts:            (k,) templated prompt text
    answers:          (k,) reference answers
    metas:            (k,) metadata dicts (shared with the dataset: do not mutate)
    difficulty:       (k,) float64 known difficulty, nan = unknown
    """

    indices: np.ndarray
    keys: list[str]
    prompt_token_ids: list[list[int]]
    texts: list[str]
    answers: list[str]
    metas: list[dict[str, Any]]
    difficulty: np.ndarray

    def __post_init__(self) -> None:
        if self.indices.dtype != np.int64 or self.indices.ndim != 1:
            raise ValueError(f"PromptBatch.indices must be 1-D int64, got {self.indices.dtype} {self.indices.shape}")
        _check_lengths(
            "PromptBatch",
            len(self.indices),
            keys=self.keys,
            prompt_token_ids=self.prompt_token_ids,
            texts=self.texts,
            answers=self.answers,
            metas=self.metas,
            difficulty=self.difficulty,
        )

    def __len__(self) -> int:
        return len(self.indices)

    def select(self, positions: Any) -> PromptBatch:
        """The prompts at `positions` (a (k,) integer array), in that order."""
        idx = np.asarray(positions, dtype=np.int64)
        return PromptBatch(
            indices=self.indices[idx],
            keys=[self.keys[i] for i in idx],
            prompt_token_ids=[self.prompt_token_ids[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            answers=[self.answers[i] for i in idx],
            metas=[self.metas[i] for i in idx],
            difficulty=self.difficulty[idx],
        )


@dataclass
class PromptDataset:
    """A loaded, templated, tokenised prompt set. Row i has dense index i.

    token_ids_flat: (T,) int32 all prompts' token ids back to back
    offsets:        (N+1,) int64 prompt i is token_ids_flat[offsets[i]:offsets[i+1]]
    fingerprint:    sha256 of the content (keys, answers, token ids, difficulty, metas): a checkpoint
                    stores it and resuming against a changed file or tokenizer fails loudly
    n_dropped:      rows dropped by the too-long policy 'drop'
    """

    name: str
    source: str
    keys: list[str]
    texts: list[str]
    answers: list[str]
    metas: list[dict[str, Any]]
    difficulty: np.ndarray
    token_ids_flat: np.ndarray
    offsets: np.ndarray
    fingerprint: str
    n_dropped: int = 0

    def __post_init__(self) -> None:
        n = len(self.keys)
        _check_lengths(
            "PromptDataset", n, texts=self.texts, answers=self.answers, metas=self.metas, difficulty=self.difficulty
        )
        if len(self.offsets) != n + 1 or self.offsets[-1] != len(self.token_ids_flat):
            raise ValueError(
                f"PromptDataset.offsets must have N+1={n + 1} entries ending at "
                f"{len(self.token_ids_flat)}, got {len(self.offsets)} ending at {self.offsets[-1]}"
            )

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def prompt_lengths(self) -> np.ndarray:
        """(N,) int64 prompt length in tokens."""
        return np.diff(self.offsets)

    def token_ids(self, i: int) -> list[int]:
        return self.token_ids_flat[self.offsets[i] : self.offsets[i + 1]].tolist()

    def batch(self, indices: np.ndarray) -> PromptBatch:
        """The prompts at dense `indices` (k,), in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"prompt indices must be in [0, {len(self)}), got min {idx.min()} max {idx.max()}")
        return PromptBatch(
            indices=idx,
            keys=[self.keys[i] for i in idx],
            prompt_token_ids=[self.token_ids(i) for i in idx],
            texts=[self.texts[i] for i in idx],
            answers=[self.answers[i] for i in idx],
            metas=[self.metas[i] for i in idx],
            difficulty=self.difficulty[idx],
        )

    def metrics(self) -> dict[str, float]:
        """Flat summary for the run log."""
        lengths = self.prompt_lengths
        return {
            "data/num_prompts": float(len(self)),
            "data/dropped_too_long": float(self.n_dropped),
            "data/prompt_len_mean": float(lengths.mean()) if len(self) else 0.0,
            "data/prompt_len_max": float(lengths.max()) if len(self) else 0.0,
        }
