"""Bucket plans, tied aliases, safetensors buckets and numpy payloads (pure, no engine)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rlbal.rollout.weight_sync import (
    NumpyWeights,
    SyncStats,
    from_numpy,
    iter_buckets,
    logprob_gap,
    plan_buckets,
    tied_aliases,
    to_numpy,
    with_tied_aliases,
    write_safetensors,
)

LLAMA_NAMES = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.mlp.up_proj.weight",
    "model.layers.1.self_attn.q_proj.weight",
    "model.layers.1.mlp.up_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
]


def test_buckets_pack_whole_layers_greedily():
    sizes = [40, 10, 15, 10, 15, 1, 40]
    # groups: embed 40 | layer0 25 | layer1 25 | norm 1 | lm_head 40 ; budget 50:
    # [embed] (40 + 25 > 50) -> [layer0, layer1] (25 + 25 = 50) -> [norm, lm_head] (1 + 40 = 41)
    assert plan_buckets(LLAMA_NAMES, sizes, bucket_bytes=50) == [[0], [1, 2, 3, 4], [5, 6]]
    # budget 1: every group alone, a layer's two tensors never split
    assert plan_buckets(LLAMA_NAMES, sizes, bucket_bytes=1) == [[0], [1, 2], [3, 4], [5], [6]]
    # a budget above the total: one bucket, one engine call
    assert plan_buckets(LLAMA_NAMES, sizes, bucket_bytes=10**9) == [list(range(7))]


def test_buckets_keep_a_layer_together_even_when_its_tensors_are_not_adjacent():
    names = ["model.layers.0.a", "model.layers.1.a", "model.layers.0.b"]
    assert plan_buckets(names, [1, 1, 1], bucket_bytes=2) == [[0, 2], [1]]


def test_bucket_plan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bucket_bytes must be >= 1, got 0"):
        plan_buckets(["a"], [1], bucket_bytes=0)
    with pytest.raises(ValueError, match="2 names but 1 sizes"):
        plan_buckets(["a", "b"], [1], bucket_bytes=4)


def test_iter_buckets_shares_storage_with_the_state_dict():
    state = {n: torch.zeros(4) for n in LLAMA_NAMES}  # 16 bytes each
    buckets = list(iter_buckets(state, bucket_bytes=48))
    # groups of 16 / 32 / 32 / 16 / 16 bytes: [embed, layer0] = 48, [layer1, norm] = 48, [lm_head]
    assert [list(b) for b in buckets] == [LLAMA_NAMES[:3], LLAMA_NAMES[3:6], LLAMA_NAMES[6:]]
    assert all(b[n].data_ptr() == state[n].data_ptr() for b in buckets for n in b)


def test_tied_aliases_of_the_tiny_model(trainer):
    assert tied_aliases(trainer) == {"lm_head.weight": "model.embed_tokens.weight"}
    added = with_tied_aliases({"model.embed_tokens.weight": trainer.model.embed_tokens.weight}, tied_aliases(trainer))
    assert added["lm_head.weight"] is trainer.model.embed_tokens.weight


def test_safetensors_bucket_writes_a_tied_pair_as_two_tensors(tmp_path):
    embed = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    path = write_safetensors({"embed": embed, "head": embed, "norm": torch.ones(3)}, tmp_path / "bucket")
    loaded = load_file(str(path))
    assert sorted(loaded) == ["embed", "head", "norm"]
    assert torch.equal(loaded["head"], embed) and torch.equal(loaded["embed"], embed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_numpy_payload_round_trips_exactly_without_copies(dtype):
    gen = torch.Generator().manual_seed(0)
    state = {"w": torch.randn(3, 5, generator=gen).to(dtype), "b": torch.arange(4.0).to(dtype)}
    payload = to_numpy(state)
    assert payload.dtypes == [str(dtype).removeprefix("torch.")] * 2
    assert payload.nbytes == sum(t.numel() * t.element_size() for t in state.values())
    assert payload.arrays[0].__array_interface__["data"][0] == state["w"].data_ptr()  # a view, not a copy
    back = from_numpy(payload)
    for name, t in state.items():
        assert back[name].dtype == dtype and torch.equal(back[name], t)


def test_read_only_arrays_from_the_object_store_load_without_a_warning():
    arr = np.arange(6, dtype=np.float32)
    arr.setflags(write=False)  # what ray.get hands out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = from_numpy(NumpyWeights(["x"], [arr], ["float32"]))
    assert back["x"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert back["x"].data_ptr() == arr.__array_interface__["data"][0]


def test_numpy_payload_rejects_ragged_fields():
    with pytest.raises(ValueError, match="2 names, 1 arrays, 1 dtypes"):
        NumpyWeights(["a", "b"], [np.zeros(1)], ["float32"])


def test_sync_stats_metrics():
    m = SyncStats(seconds=0.5, nbytes=3 * 2**20, buckets=2).metrics()
    assert m == {
        "timing/weight_sync": 0.5,
        "weight_sync/mbytes": 3.0,
        "weight_sync/buckets": 2.0,
        "weight_sync/mbytes_per_s": 6.0,
    }


def test_logprob_gap_is_tiny_after_a_sync_and_large_before(hf_session, trainer, base_state):
    prompts, completions = [[5, 6, 7], [9, 10]], [[100 + i for i in range(8)], [200 + i for i in range(5)]]
    assert logprob_gap(hf_session, trainer, prompts, completions) < 1e-4  # same checkpoint
    with torch.no_grad():
        trainer.model.norm.weight.mul_(2.0)  # the learner moves; the engine has not been told yet
    assert logprob_gap(hf_session, trainer, prompts, completions) > 0.01
    hf_session.update_weights(trainer.state_dict())
    assert logprob_gap(hf_session, trainer, prompts, completions) < 1e-4
    hf_session.update_weights(base_state)
