"""Prompt files -> `PromptTable`: local JSONL(.gz)/JSON/Parquet/Arrow files or a saved HF dataset folder.

A `FieldMap` names the columns: the prompt (a string, or a list of chat messages), the reference
answer, and optionally a stable id, a known difficulty and which other columns to keep as meta.
Every problem is reported as one line naming the file, the row (0-based, the same number the
default key "<name>:<row>" uses) and the field:

    data.jsonl row 7: missing field 'answer' (fields present: question, id)

    table = read_table("data/train.jsonl", FieldMap(prompt="question", id="uid"))
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlbal.data.records import DataError, PromptTable
from rlbal.data.templating import ROLES

SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet", ".arrow")


@dataclass(frozen=True)
class FieldMap:
    """Which column holds what.

    prompt:     text, or a list of {'role', 'content'} messages
    answer:     reference answer (string or number)
    id:         stable id (string or int); None = "<name>:<row>"
    difficulty: optional known difficulty: a number, or a string level ('L2', 'hard'; coded 1, 2, ... in the
                order of `difficulty_levels`, else of first appearance; the string is kept in
                meta['difficulty_label']); null = unknown
    meta:       columns kept in meta; None = every column not mapped above
    difficulty_levels: the string levels easiest first; () = order of first appearance
    """

    prompt: str = "prompt"
    answer: str = "answer"
    id: str | None = None
    difficulty: str | None = None
    meta: tuple[str, ...] | None = None
    difficulty_levels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("prompt", "answer"):
            if not getattr(self, name):
                raise ValueError(f"FieldMap.{name} must name a column, got {getattr(self, name)!r}")
        if len(set(self.difficulty_levels)) != len(self.difficulty_levels):
            raise ValueError(f"FieldMap.difficulty_levels must be distinct, got {self.difficulty_levels}")

    @property
    def mapped(self) -> tuple[str, ...]:
        return tuple(f for f in (self.prompt, self.answer, self.id, self.difficulty) if f)


# ---------------------------------------------------------------- readers: path -> list of row dicts


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file (gzip if it ends in .gz); blank lines are skipped."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            try:
                data = f.read()
            except (OSError, EOFError) as e:
                raise DataError(f"{path.name}: not a readable gzip file ({e})") from None
    else:
        data = path.read_bytes()
    rows = []
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        line = _utf8(raw, f"{path.name} line {line_no}")
        if not line.strip():
            continue  # blank lines (e.g. a trailing one) are not rows
        rows.append(_json_object(line, f"{path.name} line {line_no} (row {len(rows)})"))
    return rows


def _utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})") from None


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        obj = json.loads(_utf8(path.read_bytes(), path.name))
    except json.JSONDecodeError as e:
        raise DataError(f"{path.name}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(obj, list):
        raise DataError(f"{path.name}: expected a JSON list of row objects, got {type(obj).__name__}")
    for i, row in enumerate(obj):
        if not isinstance(row, dict):
            raise DataError(f"{path.name} row {i}: expected a JSON object, got {type(row).__name__}")
    return obj


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path.name}: not a readable Parquet file ({_first_line(e)})") from None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _read_arrow(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa

    # Arrow IPC *file* format starts with the magic "ARROW1"; `datasets` caches use the *stream* format.
    with path.open("rb") as f:
        is_file_format = f.read(6) == b"ARROW1"
    try:
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_file(source) if is_file_format else pa.ipc.open_stream(source)
            return reader.read_all().to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path.name}: not a readable Arrow file ({_first_line(e)})") from None


def _read_saved_dataset(path: Path, split: str | None) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 -- datasets raises many types (FileNotFoundError, ArrowInvalid, JSON errors)
        raise DataError(f"{path.name}: saved dataset cannot be loaded ({type(e).__name__}: {_first_line(e)})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None and len(ds) == 1:
            split = next(iter(ds))
        if split not in ds:
            raise DataError(f"{path.name}: saved dataset has splits {sorted(ds)}; choose one with split=")
        ds = ds[split]
    return ds.to_list()


READERS: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
    ".jsonl": read_jsonl,
    ".jsonl.gz": read_jsonl,
    ".json": _read_json,
    ".parquet": _read_parquet,
    ".arrow": _read_arrow,
}


def dataset_name(path: Path) -> str:
    """File name without its data suffix: the <name> of default keys.

    >>> dataset_name(Path("x/train.jsonl.gz")), dataset_name(Path("x/saved_ds"))
    ('train', 'saved_ds')
    """
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def read_rows(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """All rows of a data file (by suffix) or a folder saved with `datasets.save_to_disk`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        if not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
            raise DataError(f"{path.name}: folder is not a dataset saved with `datasets.save_to_disk`")
        return _read_saved_dataset(path, split)
    suffix = next((s for s in SUFFIXES if path.name.endswith(s)), None)
    if suffix is None:
        raise DataError(
            f"{path.name}: unsupported file type; use one of {', '.join(SUFFIXES)} or a saved dataset folder"
        )
    return READERS[suffix](path)


# ---------------------------------------------------------------- field mapping with validation


def row_where(source: str, row: int) -> str:
    return f"{source} row {row}"


def require_field(row: dict[str, Any], name: str, where: str) -> Any:
    if name not in row:
        raise DataError(f"{where}: missing field {name!r} (fields present: {', '.join(map(str, row)) or 'none'})")
    if row[name] is None:
        raise DataError(f"{where}: field {name!r} is null")
    return row[name]


def _prompt(value: Any, name: str, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: field {name!r} is empty")
        return [{"role": "user", "content": value}]
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(
            f"{where}: field {name!r} must be a non-empty string or list of chat messages, got {type(value).__name__}"
        )
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            raise DataError(
                f"{where}: field {name!r} message {j} must be {{'role': one of {'/'.join(ROLES)}, "
                f"'content': str}}, got {m!r}"[:300]
            )
    if not any(m["role"] == "user" for m in value):
        raise DataError(f"{where}: field {name!r} has no 'user' message")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _scalar_text(value: Any, name: str, where: str, kinds: tuple[type, ...]) -> str:
    # bool is an int subclass, but True is never a meaningful answer or id
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise DataError(
            f"{where}: field {name!r} must be {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise DataError(f"{where}: field {name!r} is {value} (a missing value in the file?)")
    text = str(value).strip()
    if not text:
        raise DataError(f"{where}: field {name!r} is empty")
    return text


def _difficulty(row: dict[str, Any], name: str, where: str) -> float | str:
    """A number, a string level (stripped), or nan for null."""
    if name not in row:
        raise DataError(f"{where}: missing field {name!r} (fields present: {', '.join(map(str, row))})")
    value = row[name]
    if value is None:
        return math.nan
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: field {name!r} is empty")
        return value.strip()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: field {name!r} must be a number, a string level or null, got {type(value).__name__}")
    return float(value)


DIFFICULTY_LABEL = "difficulty_label"  # meta key of a string difficulty level


def code_difficulty_labels(table: PromptTable, levels: Sequence[str] = ()) -> PromptTable:
    """Rows with a string level (meta['difficulty_label']) get difficulty = its 1-based position in `levels`,
    or in the order of first appearance when `levels` is empty. Other rows keep their difficulty."""
    labels = [m.get(DIFFICULTY_LABEL) for m in table.metas]
    order = list(levels) or list(dict.fromkeys(label for label in labels if label is not None))
    code = {label: float(i + 1) for i, label in enumerate(order)}
    difficulty = table.difficulty.copy()
    for i, label in enumerate(labels):
        if label is None:
            continue
        if label not in code:
            raise DataError(f"{table.where(i)}: difficulty {label!r} is not one of data.difficulty_levels {order}")
        difficulty[i] = code[label]
    return dataclasses.replace(table, difficulty=difficulty)


def _meta(row: dict[str, Any], fields: FieldMap, where: str) -> dict[str, Any]:
    if fields.meta is None:
        return {k: v for k, v in row.items() if k not in fields.mapped}
    for name in fields.meta:
        if name not in row:
            raise DataError(f"{where}: missing meta field {name!r} (fields present: {', '.join(map(str, row))})")
    return {name: row[name] for name in fields.meta}


def table_from_rows(rows: Sequence[dict[str, Any]], fields: FieldMap, name: str, source: str) -> PromptTable:
    """Map and validate raw rows; keys are the id field as text, else "<name>:<row>"."""
    keys, messages, answers, metas = [], [], [], []
    difficulty = np.full(len(rows), np.nan)
    labels: dict[int, str] = {}  # row -> string difficulty level
    for r, row in enumerate(rows):
        where = row_where(source, r)
        messages.append(_prompt(require_field(row, fields.prompt, where), fields.prompt, where))
        answers.append(_scalar_text(require_field(row, fields.answer, where), fields.answer, where, (str, int, float)))
        keys.append(
            _scalar_text(require_field(row, fields.id, where), fields.id, where, (str, int))
            if fields.id
            else f"{name}:{r}"
        )
        value = _difficulty(row, fields.difficulty, where) if fields.difficulty else math.nan
        if isinstance(value, str):
            labels[r] = value
        else:
            difficulty[r] = value
        metas.append(_meta(row, fields, where))
    numeric = np.flatnonzero(np.isfinite(difficulty))
    if labels and numeric.size:
        first = min(labels)
        raise DataError(
            f"{row_where(source, int(numeric[0]))}: field {fields.difficulty!r} is a number, but "
            f"{row_where(source, first)} holds the string level {labels[first]!r}; use one kind per column"
        )
    for r, label in labels.items():
        metas[r] = {**metas[r], DIFFICULTY_LABEL: label}
    table = PromptTable(
        name=name,
        sources=(source,),
        keys=keys,
        messages=messages,
        answers=answers,
        metas=metas,
        difficulty=difficulty,
        rows=np.arange(len(rows), dtype=np.int64),
        source_index=np.zeros(len(rows), dtype=np.int32),
    )
    return code_difficulty_labels(table, fields.difficulty_levels) if labels else table


def read_table(
    path: str | Path, fields: FieldMap = FieldMap(), split: str | None = None, name: str | None = None
) -> PromptTable:
    """One file or saved dataset folder as a validated `PromptTable`."""
    path = Path(path).expanduser()
    rows = read_rows(path, split)
    return table_from_rows(rows, fields, name or dataset_name(path), path.name)
