"""PromptSource: seeded epoch-wise order, stable ids across epochs and resume, refills, JSON state."""

import json

import numpy as np
import pytest

from rlbal.data import DataError, PromptSource, PromptTable, build_dataset

N = 10


@pytest.fixture(scope="module")
def dataset(tokenizer):
    table = PromptTable(
        name="toy",
        sources=("toy.jsonl",),
        keys=[f"toy:{i}" for i in range(N)],
        messages=[[{"role": "user", "content": f"{i} + 1 ="}] for i in range(N)],
        answers=[str(i + 1) for i in range(N)],
        metas=[{"i": i} for i in range(N)],
        difficulty=np.where(np.arange(N) % 2 == 0, 1.0, np.nan),
        rows=np.arange(N),
        source_index=np.zeros(N, np.int32),
    )
    return build_dataset(table, tokenizer)


def test_epoch_order_is_the_seeded_permutation(dataset):
    src = PromptSource(dataset, seed=3)
    first = src.next_indices(N)
    second = src.next_indices(N)
    # reference: epoch e visits permutation(N) of default_rng([seed, e])
    np.testing.assert_array_equal(first, np.random.default_rng([3, 0]).permutation(N))
    np.testing.assert_array_equal(second, np.random.default_rng([3, 1]).permutation(N))
    assert sorted(first) == sorted(second) == list(range(N))  # every prompt exactly once per epoch
    assert not np.array_equal(first, second)
    assert src.cursor == (2, 0)


def test_batches_cross_epoch_boundaries(dataset):
    src = PromptSource(dataset, seed=0)
    e0, e1 = src.epoch_order(0), src.epoch_order(1)
    b = [src.next_indices(4) for _ in range(3)]  # 12 draws over N=10: 4, 4, then 2 of epoch 0 + 2 of epoch 1
    np.testing.assert_array_equal(np.concatenate(b), np.concatenate([e0, e1[:2]]))
    assert src.cursor == (1, 2)
    assert src.metrics() == {"data/epoch": 1.2, "data/num_prompts": 10.0, "data/dropped_too_long": 0.0}
    np.testing.assert_array_equal(
        src.next_indices(25), np.concatenate([e1[2:], src.epoch_order(2), src.epoch_order(3)[:7]])
    )
    assert src.next_indices(0).shape == (0,)


def test_batch_fields_are_the_dataset_rows(dataset, tokenizer):
    src = PromptSource(dataset, seed=1)
    batch = src.next(4)
    assert batch.indices.dtype == np.int64
    for j, i in enumerate(batch.indices):
        assert batch.keys[j] == f"toy:{i}" and batch.answers[j] == str(i + 1) and batch.metas[j] == {"i": int(i)}
        assert batch.prompt_token_ids[j] == tokenizer(batch.texts[j], add_special_tokens=False)["input_ids"]
        assert batch.texts[j].startswith(f"<|im_start|>user\n{i} + 1 =\n")
    np.testing.assert_array_equal(np.isnan(batch.difficulty), batch.indices % 2 == 1)


def test_state_dict_round_trip_continues_identically(dataset):
    src = PromptSource(dataset, seed=7)
    for k in (3, 4, 6):  # into epoch 1
        src.next(k)
    state = json.loads(json.dumps(src.state_dict()))  # must survive a JSON checkpoint
    assert state["epoch"] == 1 and state["position"] == 3
    expected = [src.next(k) for k in (5, 9, 2)]
    resumed = PromptSource(dataset, seed=7)
    resumed.load_state_dict(state)
    for k, want in zip((5, 9, 2), expected):
        got = resumed.next(k)
        np.testing.assert_array_equal(got.indices, want.indices)
        assert got.keys == want.keys and got.prompt_token_ids == want.prompt_token_ids


def test_refills_continue_the_same_stream(dataset):
    # online filtering asks for more prompts mid-step: one next(6) == next(4) then a refill next(2)
    a, b = PromptSource(dataset, seed=5), PromptSource(dataset, seed=5)
    np.testing.assert_array_equal(a.next(6).indices, np.concatenate([b.next(4).indices, b.next(2).indices]))


def test_stable_ids_across_shuffles(dataset):
    # a prompt's key and index never depend on the order it is drawn in
    for seed in (0, 1, 2):
        batch = PromptSource(dataset, seed=seed).next(N)
        assert {int(i): k for i, k in zip(batch.indices, batch.keys)} == {i: f"toy:{i}" for i in range(N)}


def test_no_shuffle_is_dataset_order(dataset):
    src = PromptSource(dataset, seed=0, shuffle=False)
    np.testing.assert_array_equal(src.next_indices(13), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2])


def test_load_refuses_other_data_or_settings(dataset):
    state = PromptSource(dataset, seed=7).state_dict()
    with pytest.raises(DataError, match="checkpoint is for another dataset"):
        PromptSource(dataset, seed=7).load_state_dict({**state, "fingerprint": "0" * 64})
    with pytest.raises(ValueError, match="checkpoint has seed=8, this source seed=7"):
        PromptSource(dataset, seed=7).load_state_dict({**state, "seed": 8})
    with pytest.raises(ValueError, match="cursor out of range: epoch 0, position 10 of 10"):
        PromptSource(dataset, seed=7).load_state_dict({**state, "position": 10})


def test_bad_arguments(dataset):
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        PromptSource(dataset, seed=-1)
    with pytest.raises(ValueError, match="k must be >= 0, got -2"):
        PromptSource(dataset).next(-2)
    with pytest.raises(IndexError, match=r"prompt indices must be in \[0, 10\), got min 3 max 10"):
        dataset.batch(np.array([3, 10]))
