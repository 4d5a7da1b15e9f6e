"""Records: per-row provenance through concatenation, invariants checked at construction."""

import numpy as np
import pytest

from rlbal.data import PromptBatch, PromptDataset, PromptTable, concat_tables


def _table(source, n, start=0):
    return PromptTable(
        name=source.split(".")[0],
        sources=(source,),
        keys=[f"{source}:{i}" for i in range(n)],
        messages=[[{"role": "user", "content": str(i)}] for i in range(n)],
        answers=["0"] * n,
        metas=[{}] * n,
        difficulty=np.arange(start, start + n, dtype=float),
        rows=np.arange(n),
        source_index=np.zeros(n, np.int32),
    )


def test_concat_keeps_each_rows_source_and_row():
    t = concat_tables([_table("a.jsonl", 2), concat_tables([_table("b.jsonl", 1), _table("c.jsonl", 2, 5)])])
    assert t.sources == ("a.jsonl", "b.jsonl", "c.jsonl")
    assert [t.where(i) for i in range(5)] == [
        "a.jsonl row 0",
        "a.jsonl row 1",
        "b.jsonl row 0",
        "c.jsonl row 0",
        "c.jsonl row 1",
    ]
    np.testing.assert_array_equal(t.difficulty, [0, 1, 0, 5, 6])
    assert t.name == "a+b+c" and t.source == "a.jsonl+b.jsonl+c.jsonl"
    with pytest.raises(ValueError, match="at least one table"):
        concat_tables([])


def test_misaligned_columns_are_rejected():
    with pytest.raises(ValueError, match="PromptTable.answers has 1 entries, expected 2"):
        PromptTable(
            name="x",
            sources=("x",),
            keys=["a", "b"],
            messages=[[], []],
            answers=["1"],
            metas=[{}, {}],
            difficulty=np.zeros(2),
            rows=np.arange(2),
            source_index=np.zeros(2, np.int32),
        )
    with pytest.raises(ValueError, match=r"PromptBatch.indices must be 1-D int64, got int32 \(1,\)"):
        PromptBatch(
            indices=np.zeros(1, np.int32),
            keys=["a"],
            prompt_token_ids=[[1]],
            texts=["t"],
            answers=["1"],
            metas=[{}],
            difficulty=np.zeros(1),
        )
    with pytest.raises(ValueError, match="offsets must have N\\+1=2 entries ending at 3, got 2 ending at 2"):
        PromptDataset(
            name="x",
            source="x",
            keys=["a"],
            texts=["t"],
            answers=["1"],
            metas=[{}],
            difficulty=np.zeros(1),
            token_ids_flat=np.array([5, 6, 7], np.int32),
            offsets=np.array([0, 2]),
            fingerprint="f",
        )


def test_dataset_batch_slices_the_flat_tokens():
    ds = PromptDataset(
        name="x",
        source="x",
        keys=["a", "b", "c"],
        texts=["ta", "tb", "tc"],
        answers=["1", "2", "3"],
        metas=[{}, {}, {}],
        difficulty=np.array([1.0, np.nan, 3.0]),
        token_ids_flat=np.array([5, 6, 7, 8, 9, 10], np.int32),
        offsets=np.array([0, 2, 3, 6]),
        fingerprint="f",
    )
    b = ds.batch(np.array([2, 0, 2]))
    assert b.prompt_token_ids == [[8, 9, 10], [5, 6], [8, 9, 10]]
    assert b.keys == ["c", "a", "c"] and b.answers == ["3", "1", "3"]
    np.testing.assert_array_equal(ds.prompt_lengths, [2, 1, 3])
