"""Build a `PromptDataset` from any source: validate, template, tokenise once, apply the length policy.

Sources are typed specs, each with one registered loader that returns a `PromptTable`:

    ProceduralSpec(tasks=("chain_sum",), levels=(1, 2, 3), size=512, seed=0)
    FilesSpec(paths=("train.jsonl",), fields=FieldMap(prompt="question"))
    GSM8KSpec(split="train")

    ds = load_prompts(ProceduralSpec(), tokenizer, PromptFormat(max_prompt_tokens=256, too_long="drop"))
    ds.fingerprint   # sha256 of the content; a checkpoint stores it to detect a changed file

Dense index i of the dataset is its i-th kept row, in source order; dropped rows get no index.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlbal.data.files import DIFFICULTY_LABEL, FieldMap, code_difficulty_labels, read_table
from rlbal.data.gsm8k import gsm8k
from rlbal.data.procedural import procedural_table
from rlbal.data.records import DataError, PromptDataset, PromptTable, concat_tables
from rlbal.data.templating import PromptFormat, build_messages, render


@dataclass(frozen=True)
class ProceduralSpec:
    """reasoning-gym prompts: `size` per (task, level) (or one size per level); deterministic in `seed`."""

    tasks: tuple[str, ...] = ("chain_sum",)
    levels: tuple[int, ...] = (1, 2, 3)
    size: int | tuple[int, ...] = 512
    seed: int = 0
    kind: str = "procedural"


@dataclass(frozen=True)
class FilesSpec:
    """Local files / saved dataset folders, concatenated in order; `split` picks a saved DatasetDict split."""

    paths: tuple[str, ...]
    fields: FieldMap = FieldMap()
    split: str | None = None
    kind: str = "files"


@dataclass(frozen=True)
class GSM8KSpec:
    """The vendored GSM8K split."""

    split: str = "train"
    kind: str = "gsm8k"


SourceSpec = ProceduralSpec | FilesSpec | GSM8KSpec


def _files_table(spec: FilesSpec) -> PromptTable:
    if not spec.paths:
        raise ValueError("FilesSpec.paths must name at least one file or dataset folder, got ()")
    table = concat_tables([read_table(p, spec.fields, spec.split) for p in spec.paths])
    if len(spec.paths) > 1 and any(DIFFICULTY_LABEL in m for m in table.metas):
        table = code_difficulty_labels(table, spec.fields.difficulty_levels)  # first appearance over all files
    return table


TABLE_LOADERS: dict[str, Callable[[Any], PromptTable]] = {
    "procedural": lambda s: procedural_table(s.tasks, s.levels, s.size, s.seed),
    "files": _files_table,
    "gsm8k": lambda s: gsm8k(s.split),
}


def load_table(spec: SourceSpec) -> PromptTable:
    """The validated rows of a source, before templating (the table `remember_table` kept, if any)."""
    if spec.kind not in TABLE_LOADERS:
        raise ValueError(f"unknown prompt source kind {spec.kind!r}; valid: {sorted(TABLE_LOADERS)}")
    kept = _remembered.pop(_table_key(spec), None)
    return kept if kept is not None else TABLE_LOADERS[spec.kind](spec)


# Tables validated by rlbal.preflight before the model loads, handed to the next load_table of the same
# spec (and files of the same size and modification time), so local files are read once per run.
_remembered: dict[tuple, PromptTable] = {}


def remember_table(spec: SourceSpec, table: PromptTable) -> None:
    """Keep `table` for the next `load_table(spec)` (one use)."""
    _remembered[_table_key(spec)] = table


def _table_key(spec: SourceSpec) -> tuple:
    stats = tuple((p, *_stat(p)) for p in getattr(spec, "paths", ()))
    return (spec, stats)


def _stat(path: str) -> tuple[int, int]:
    try:
        st = Path(path).expanduser().stat()
    except OSError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def check_unique_keys(table: PromptTable) -> None:
    """Raise naming the first row whose key repeats an earlier one."""
    first: dict[str, int] = {}
    for i, key in enumerate(table.keys):
        j = first.setdefault(key, i)
        if j != i:
            raise DataError(f"{table.where(i)}: duplicate id {key!r} (first seen at {table.where(j)})")


def length_keep_mask(table: PromptTable, lengths_N: np.ndarray, fmt: PromptFormat) -> np.ndarray:
    """(N,) bool rows within `fmt.max_prompt_tokens`; policy 'error' raises on the first longer row."""
    if fmt.max_prompt_tokens is None:
        return np.ones(len(lengths_N), dtype=bool)
    keep_N = lengths_N <= fmt.max_prompt_tokens
    if fmt.too_long == "error" and not keep_N.all():
        i = int(np.argmin(keep_N))
        raise DataError(
            f"{table.where(i)}: prompt is {lengths_N[i]} tokens after templating, longer than "
            f"max_prompt_tokens={fmt.max_prompt_tokens} (too_long='drop' drops such rows)"
        )
    if not keep_N.any():
        raise DataError(
            f"{table.source}: empty dataset: all {len(keep_N)} prompts are longer than "
            f"max_prompt_tokens={fmt.max_prompt_tokens} (dropped by too_long='drop')"
        )
    return keep_N


def fingerprint(
    keys: list[str],
    answers: list[str],
    metas: list[dict[str, Any]],
    difficulty_N: np.ndarray,
    token_ids_flat: np.ndarray,
    offsets: np.ndarray,
) -> str:
    """sha256 over everything a training step reads from the dataset, in row order."""
    h = hashlib.sha256()
    for part in (keys, answers):
        h.update("\x1f".join(part).encode())
        h.update(b"\x1e")
    h.update(json.dumps(metas, sort_keys=True, default=str).encode())
    for arr in (difficulty_N.astype(np.float64), token_ids_flat.astype(np.int32), offsets.astype(np.int64)):
        h.update(arr.tobytes())
    return h.hexdigest()


def build_dataset(table: PromptTable, tokenizer: Any, fmt: PromptFormat = PromptFormat()) -> PromptDataset:
    """Template and tokenise every prompt once (batched), drop or reject long prompts, fingerprint."""
    if len(table) == 0:
        raise DataError(f"{table.source}: empty dataset (no rows)")
    check_unique_keys(table)
    texts, ids = render(tokenizer, [build_messages(m, fmt) for m in table.messages], fmt)
    lengths_N = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    keep_N = length_keep_mask(table, lengths_N, fmt)
    kept = np.flatnonzero(keep_N)
    offsets = np.zeros(len(kept) + 1, dtype=np.int64)
    np.cumsum(lengths_N[kept], out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids[i] for i in kept), dtype=np.int32, count=int(offsets[-1]))
    keys, answers = [table.keys[i] for i in kept], [table.answers[i] for i in kept]
    metas, difficulty_N = [table.metas[i] for i in kept], table.difficulty[kept]
    return PromptDataset(
        name=table.name,
        source=table.source,
        keys=keys,
        texts=[texts[i] for i in kept],
        answers=answers,
        metas=metas,
        difficulty=difficulty_N,
        token_ids_flat=flat,
        offsets=offsets,
        fingerprint=fingerprint(keys, answers, metas, difficulty_N, flat, offsets),
        n_dropped=int(len(table) - len(kept)),
    )


def load_prompts(spec: SourceSpec, tokenizer: Any, fmt: PromptFormat = PromptFormat()) -> PromptDataset:
    """Read, validate, template and tokenise a prompt source."""
    return build_dataset(load_table(spec), tokenizer, fmt)


def spec_from_config(data: Any, seed: int) -> SourceSpec:
    """The source spec of an `rlbal.config.DataConfig` (read by attribute name; `seed` = the run seed)."""
    if data.source == "procedural":
        return ProceduralSpec(tasks=tuple(data.tasks), levels=tuple(data.levels), size=data.size, seed=seed)
    if data.source == "gsm8k":
        return GSM8KSpec(split=data.split)
    return FilesSpec(paths=tuple(data.paths), fields=field_map_from_config(data))


def field_map_from_config(data: Any) -> FieldMap:
    """The column mapping of an `rlbal.config.DataConfig` (training files and eval files alike)."""
    return FieldMap(
        prompt=data.prompt_field,
        answer=data.answer_field,
        id=data.id_field,
        difficulty=data.difficulty_field,
        difficulty_levels=tuple(data.difficulty_levels),
    )


def format_from_config(data: Any) -> PromptFormat:
    """The prompt format and length policy of an `rlbal.config.DataConfig`."""
    return PromptFormat(
        system_prompt=data.system_prompt,
        instruction=data.instruction,
        use_chat_template=data.use_chat_template,
        max_prompt_tokens=data.max_prompt_tokens,
        too_long=data.too_long,
    )
