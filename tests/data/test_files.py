"""Reading prompt files: every supported format gives the same table, and bad data fails with one exact line."""

import gzip
import json
import math

import numpy as np
import pytest

from rlbal.data import DataError, FieldMap, FilesSpec, PromptFormat, build_dataset, load_prompts, read_rows, read_table

ROWS = [
    {"question": "What is 2 + 3?", "answer": 5, "uid": "q-a", "level": 1, "source": "hand"},
    {
        "question": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "7 - 4 = ?"}],
        "answer": "3",
        "uid": 17,
        "level": None,
        "source": "hand",
    },
    {"question": "Is 9 prime?", "answer": "no", "uid": "q-c", "level": 2.5, "source": "web"},
]
FIELDS = FieldMap(prompt="question", id="uid", difficulty="level")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_field_mapping_by_hand(tmp_path):
    table = read_table(write_jsonl(tmp_path / "data.jsonl", ROWS), FIELDS)
    # ids become text; numbers in `answer` become text; null difficulty = unknown (nan)
    assert table.keys == ["q-a", "17", "q-c"]
    assert table.answers == ["5", "3", "no"]
    assert table.messages[0] == [{"role": "user", "content": "What is 2 + 3?"}]
    assert table.messages[1] == ROWS[1]["question"]
    np.testing.assert_array_equal(table.difficulty, [1.0, np.nan, 2.5])
    # meta = every column that is not mapped
    assert table.metas == [{"source": "hand"}, {"source": "hand"}, {"source": "web"}]
    assert table.where(2) == "data.jsonl row 2"


def test_default_keys_are_name_and_row(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in ROWS) + "\n\n")  # trailing blank lines are not rows
    table = read_table(path, FieldMap(prompt="question", meta=("source",)))
    assert table.keys == ["train:0", "train:1", "train:2"]
    assert table.metas[2] == {"source": "web"}
    assert math.isnan(table.difficulty[0])


def _formats(tmp_path):
    """The same three rows as JSONL, JSON, Parquet, Arrow (file and stream format) and a saved dataset."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [
        {
            **r,
            "question": r["question"] if isinstance(r["question"], str) else r["question"][1]["content"],
            "answer": str(r["answer"]),
            "uid": str(r["uid"]),
        }
        for r in ROWS
    ]
    (tmp_path / "j").mkdir()
    paths = [write_jsonl(tmp_path / "j" / "data.jsonl", flat), tmp_path / "data.json"]
    paths[1].write_text(json.dumps(flat))
    table = pa.Table.from_pylist(flat)
    pq.write_table(table, tmp_path / "data.parquet")
    (tmp_path / "f").mkdir(), (tmp_path / "s").mkdir()
    with pa.OSFile(str(tmp_path / "f" / "data.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    with pa.OSFile(str(tmp_path / "s" / "data.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    datasets.Dataset.from_list(flat).save_to_disk(str(tmp_path / "data"))
    return paths + [
        tmp_path / "data.parquet",
        tmp_path / "f" / "data.arrow",
        tmp_path / "s" / "data.arrow",
        tmp_path / "data",
    ], flat


def test_every_format_reads_the_same_rows_and_fingerprint(tmp_path, tokenizer):
    paths, flat = _formats(tmp_path)
    prints = set()
    for path in paths:
        assert read_rows(path) == flat, path
        # same rows + same name ('data') -> same keys and content -> same fingerprint
        prints.add(load_prompts(FilesSpec(paths=(str(path),), fields=FIELDS), tokenizer).fingerprint)
    assert len(prints) == 1


def test_saved_dataset_dict_split(tmp_path):
    import datasets

    d = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"prompt": "a", "answer": "1"}]),
            "test": datasets.Dataset.from_list([{"prompt": "b", "answer": "2"}] * 2),
        }
    )
    d.save_to_disk(str(tmp_path / "dd"))
    assert read_table(tmp_path / "dd", split="test").answers == ["2", "2"]
    with pytest.raises(DataError, match=r"^dd: saved dataset has splits \['test', 'train'\]; choose one with split=$"):
        read_table(tmp_path / "dd")


def test_fingerprint_changes_when_the_file_changes(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "data.jsonl", ROWS)
    before = load_prompts(FilesSpec(paths=(str(path),), fields=FIELDS), tokenizer).fingerprint
    write_jsonl(path, [ROWS[0], ROWS[1], {**ROWS[2], "answer": "yes"}])
    after = load_prompts(FilesSpec(paths=(str(path),), fields=FIELDS), tokenizer).fingerprint
    assert before != after


def test_several_files_concatenate_with_their_own_rows(tmp_path, tokenizer):
    a = write_jsonl(tmp_path / "a.jsonl", ROWS[:2])
    b = write_jsonl(tmp_path / "b.jsonl", ROWS[2:])
    ds = load_prompts(FilesSpec(paths=(str(a), str(b)), fields=FieldMap(prompt="question")), tokenizer)
    assert ds.keys == ["a:0", "a:1", "b:0"]
    dup = write_jsonl(tmp_path / "c.jsonl", [ROWS[0]])
    with pytest.raises(DataError, match=r"^c\.jsonl row 0: duplicate id 'q-a' \(first seen at a\.jsonl row 0\)$"):
        load_prompts(FilesSpec(paths=(str(a), str(dup)), fields=FieldMap(prompt="question", id="uid")), tokenizer)


def test_too_long_drop_keeps_dense_indices_and_counts(tmp_path, tokenizer):
    rows = [
        {"prompt": "1 + 1", "answer": "2"},
        {"prompt": "word " * 200, "answer": "x"},
        {"prompt": "2 + 2", "answer": "4"},
        {"prompt": "word " * 300, "answer": "y"},
    ]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    ds = load_prompts(FilesSpec(paths=(str(path),)), tokenizer, PromptFormat(max_prompt_tokens=64, too_long="drop"))
    # the two 'word' rows are >= 200 tokens (>= one token per word), the arithmetic ones < 40: two dropped
    assert ds.n_dropped == 2
    assert ds.keys == ["data:0", "data:2"]  # keys keep the source row; dense index 0, 1
    assert ds.answers == ["2", "4"]
    assert ds.metrics()["data/dropped_too_long"] == 2.0


# ------------------------------------------------------------------ bad data: (name, write, fields, format, message)


def _lines(*lines):
    return lambda p: p.write_text("".join(line + "\n" for line in lines))


def _rows(*rows):
    return lambda p: write_jsonl(p, rows)


OK = {"prompt": "1 + 1", "answer": "2"}
LONG = {"prompt": "word " * 100, "answer": "2"}
STRICT = PromptFormat(max_prompt_tokens=40, too_long="error")
DROP = PromptFormat(max_prompt_tokens=5, too_long="drop")
QID = FieldMap(prompt="question", id="id")

BAD = [
    (
        "data.jsonl",
        _rows(*[{"question": "q", "answer": "1", "id": i} for i in range(7)], {"question": "q", "id": 7}),
        QID,
        None,
        "data.jsonl row 7: missing field 'answer' (fields present: question, id)",
    ),
    (
        "data.jsonl",
        _rows(OK, {"answer": "3"}),
        FieldMap(),
        None,
        "data.jsonl row 1: missing field 'prompt' (fields present: answer)",
    ),
    ("data.jsonl", _lines(), FieldMap(), None, "data.jsonl: empty dataset (no rows)"),
    ("data.jsonl", _lines("", "  "), FieldMap(), None, "data.jsonl: empty dataset (no rows)"),
    (
        "data.jsonl",
        _lines(json.dumps(OK), '{"prompt": "a", answer: 1}'),
        FieldMap(),
        None,
        "data.jsonl line 2 (row 1): invalid JSON (Expecting property name enclosed in double quotes at column 17)",
    ),  # the a of answer
    ("data.jsonl", _lines("[1, 2]"), FieldMap(), None, "data.jsonl line 1 (row 0): expected a JSON object, got list"),
    (
        "data.jsonl",
        _rows({"prompt": "a", "answer": None}),
        FieldMap(),
        None,
        "data.jsonl row 0: field 'answer' is null",
    ),
    (
        "data.jsonl",
        _rows(OK, {"prompt": 12, "answer": "1"}),
        FieldMap(),
        None,
        "data.jsonl row 1: field 'prompt' must be a non-empty string or list of chat messages, got int",
    ),
    (
        "data.jsonl",
        _rows({"prompt": "   ", "answer": "1"}),
        FieldMap(),
        None,
        "data.jsonl row 0: field 'prompt' is empty",
    ),
    (
        "data.jsonl",
        _rows({"prompt": [{"role": "bot", "content": "hi"}], "answer": "1"}),
        FieldMap(),
        None,
        "data.jsonl row 0: field 'prompt' message 0 must be {'role': one of system/user/assistant, 'content': str}, "
        "got {'role': 'bot', 'content': 'hi'}",
    ),
    (
        "data.jsonl",
        _rows({"prompt": [{"role": "system", "content": "hi"}], "answer": "1"}),
        FieldMap(),
        None,
        "data.jsonl row 0: field 'prompt' has no 'user' message",
    ),
    (
        "data.jsonl",
        _rows({"prompt": "a", "answer": True}),
        FieldMap(),
        None,
        "data.jsonl row 0: field 'answer' must be str or int or float, got bool",
    ),
    ("data.jsonl", _rows({"prompt": "a", "answer": ""}), FieldMap(), None, "data.jsonl row 0: field 'answer' is empty"),
    (
        "data.jsonl",
        _rows({**OK, "id": 1.5}),
        FieldMap(id="id"),
        None,
        "data.jsonl row 0: field 'id' must be str or int, got float",
    ),
    (
        "data.jsonl",
        _rows({**OK, "id": "a"}, {**OK, "id": "b"}, {**OK, "id": "a"}),
        FieldMap(id="id"),
        None,
        "data.jsonl row 2: duplicate id 'a' (first seen at data.jsonl row 0)",
    ),
    (
        "data.jsonl",
        _rows({**OK, "lvl": [2]}),
        FieldMap(difficulty="lvl"),
        None,  # strings are levels (test_difficulty_levels)
        "data.jsonl row 0: field 'lvl' must be a number, a string level or null, got list",
    ),
    (
        "data.jsonl",
        _rows(OK),
        FieldMap(meta=("topic",)),
        None,
        "data.jsonl row 0: missing meta field 'topic' (fields present: prompt, answer)",
    ),
    (
        "data.jsonl",
        _rows(OK, LONG),
        FieldMap(),
        STRICT,
        "data.jsonl row 1: prompt is {n} tokens after templating, longer than max_prompt_tokens=40 "
        "(too_long='drop' drops such rows)",
    ),
    (
        "data.jsonl",
        _rows(LONG, LONG),
        FieldMap(),
        DROP,
        "data.jsonl: empty dataset: all 2 prompts are longer than max_prompt_tokens=5 (dropped by too_long='drop')",
    ),
    (
        "data.json",
        lambda p: p.write_text('{"prompt": "a"}'),
        FieldMap(),
        None,
        "data.json: expected a JSON list of row objects, got dict",
    ),
    (
        "data.json",
        lambda p: p.write_text('[{"prompt": "a", "answer": "1"}, "x"]'),
        FieldMap(),
        None,
        "data.json row 1: expected a JSON object, got str",
    ),
    (
        "data.csv",
        lambda p: p.write_text("prompt,answer\na,1\n"),
        FieldMap(),
        None,
        "data.csv: unsupported file type; use one of .jsonl, .jsonl.gz, .json, .parquet, .arrow "
        "or a saved dataset folder",
    ),
    (
        "folder",
        lambda p: p.mkdir(),
        FieldMap(),
        None,
        "folder: folder is not a dataset saved with `datasets.save_to_disk`",
    ),
]


@pytest.mark.parametrize("name,write,fields,fmt,message", BAD, ids=[f"{i}-{b[4][:40]}" for i, b in enumerate(BAD)])
def test_bad_data_fails_with_one_exact_line(tmp_path, tokenizer, name, write, fields, fmt, message):
    path = tmp_path / name
    write(path)
    if "{n}" in message:  # the long prompt's length, counted by the tokenizer through its own template path
        long_ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": LONG["prompt"] + "\n" + STRICT.instruction}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )
        message = message.format(n=len(long_ids["input_ids"]))
    with pytest.raises(DataError) as err:
        load_prompts(FilesSpec(paths=(str(path),), fields=fields), tokenizer, fmt or PromptFormat())
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file or folder$"):
        read_rows(tmp_path / "nope.jsonl")


def test_build_rejects_empty_table(tokenizer):
    from rlbal.data import PromptTable

    empty = PromptTable(
        name="x",
        sources=("x.jsonl",),
        keys=[],
        messages=[],
        answers=[],
        metas=[],
        difficulty=np.zeros(0),
        rows=np.zeros(0, np.int64),
        source_index=np.zeros(0, np.int32),
    )
    with pytest.raises(DataError, match=r"^x\.jsonl: empty dataset \(no rows\)$"):
        build_dataset(empty, tokenizer)
