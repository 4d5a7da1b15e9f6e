"""String difficulty levels ('L2', 'easy'/'hard') from data files: codes, order, errors, eval groups, config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlbal.config import load_config
from rlbal.data.dataset import FilesSpec, format_from_config, load_table, spec_from_config
from rlbal.data.files import FieldMap, read_table
from rlbal.data.records import DataError
from rlbal.evaluate import prompt_groups


def write(path: Path, levels: list) -> Path:
    path.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "answer": i, "level": lv}) + "\n" for i, lv in enumerate(levels))
    )
    return path


def test_string_levels_are_coded_in_order_of_first_appearance(tmp_path):
    table = read_table(write(tmp_path / "a.jsonl", ["hard", "easy", None, "hard", "L2"]), FieldMap(difficulty="level"))
    np.testing.assert_array_equal(table.difficulty, [1.0, 2.0, np.nan, 1.0, 3.0])
    assert [m.get("difficulty_label") for m in table.metas] == ["hard", "easy", None, "hard", "L2"]


def test_explicit_level_order_and_several_files(tmp_path):
    a = write(tmp_path / "a.jsonl", ["hard", "easy"])
    b = write(tmp_path / "b.jsonl", ["medium", "easy"])
    first_seen = load_table(FilesSpec(paths=(str(a), str(b)), fields=FieldMap(difficulty="level")))
    np.testing.assert_array_equal(first_seen.difficulty, [1.0, 2.0, 3.0, 2.0])  # hard, easy, medium over both files
    ordered = FieldMap(difficulty="level", difficulty_levels=("easy", "medium", "hard"))
    np.testing.assert_array_equal(
        load_table(FilesSpec(paths=(str(a), str(b)), fields=ordered)).difficulty, [3.0, 1.0, 2.0, 1.0]
    )
    with pytest.raises(DataError) as info:
        load_table(
            FilesSpec(paths=(str(a), str(b)), fields=FieldMap(difficulty="level", difficulty_levels=("easy", "hard")))
        )
    assert str(info.value) == "b.jsonl row 0: difficulty 'medium' is not one of data.difficulty_levels ['easy', 'hard']"


def test_numbers_and_strings_in_one_column_fail(tmp_path):
    path = write(tmp_path / "mixed.jsonl", ["easy", 2, "hard"])
    with pytest.raises(DataError) as info:
        read_table(path, FieldMap(difficulty="level"))
    assert str(info.value) == (
        "mixed.jsonl row 1: field 'level' is a number, but mixed.jsonl row 0 holds the string "
        "level 'easy'; use one kind per column"
    )
    with pytest.raises(DataError, match=r"^blank.jsonl row 0: field 'level' is empty$"):
        read_table(write(tmp_path / "blank.jsonl", ["  "]), FieldMap(difficulty="level"))
    with pytest.raises(DataError, match=r"must be a number, a string level or null, got list$"):
        read_table(write(tmp_path / "list.jsonl", [[1]]), FieldMap(difficulty="level"))


def test_eval_groups_are_named_by_level(tmp_path):
    table = read_table(write(tmp_path / "a.jsonl", ["very hard", "easy", "easy"]), FieldMap(difficulty="level"))
    groups = prompt_groups(table.difficulty, table.metas)
    assert {k: v.tolist() for k, v in groups.items()} == {
        "": [True, True, True],
        "level_very_hard": [True, False, False],
        "level_easy": [False, True, True],
    }
    numeric = prompt_groups(np.array([1.0, 2.0, 2.0]), [{}, {}, {}])
    assert list(numeric) == ["", "level_1", "level_2"]


def test_config_maps_levels_and_chat_template(tmp_path):
    path = write(tmp_path / "d.jsonl", ["b", "a"])
    cfg = load_config(
        None,
        [
            "data.source=files",
            f"data.paths=[{path}]",
            "data.difficulty_field=level",
            "data.difficulty_levels=[a, b]",
            "data.use_chat_template=false",
        ],
    )
    spec = spec_from_config(cfg.data, seed=0)
    assert spec.fields.difficulty_levels == ("a", "b")
    np.testing.assert_array_equal(load_table(spec).difficulty, [2.0, 1.0])
    assert format_from_config(cfg.data).use_chat_template is False
    assert format_from_config(load_config(None, []).data).use_chat_template is True
