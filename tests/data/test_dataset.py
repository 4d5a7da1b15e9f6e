"""build_dataset / load_prompts: CSR token storage, fingerprint, and the bridge from the run config."""

import numpy as np
import pytest

from rlbal.data import (
    FieldMap,
    FilesSpec,
    GSM8KSpec,
    ProceduralSpec,
    PromptFormat,
    PromptTable,
    build_dataset,
    format_from_config,
    load_prompts,
    load_table,
    spec_from_config,
)
from rlbal.data.dataset import fingerprint


def _table(prompts, keys=None):
    n = len(prompts)
    return PromptTable(
        name="t",
        sources=("t.jsonl",),
        keys=keys or [f"t:{i}" for i in range(n)],
        messages=[[{"role": "user", "content": p}] for p in prompts],
        answers=["1"] * n,
        metas=[{}] * n,
        difficulty=np.full(n, np.nan),
        rows=np.arange(n),
        source_index=np.zeros(n, np.int32),
    )


def test_token_storage_is_the_per_prompt_tokenisation(tokenizer):
    prompts = ["1 + 1 =", "a much longer prompt with several words in it", "z"]
    ds = build_dataset(_table(prompts), tokenizer)
    for i, p in enumerate(prompts):
        want = tokenizer.apply_chat_template(
            [{"role": "user", "content": p + "\n" + PromptFormat().instruction}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        assert ds.token_ids(i) == list(want)
    assert ds.offsets[0] == 0 and ds.token_ids_flat.dtype == np.int32
    np.testing.assert_array_equal(ds.prompt_lengths, [len(ds.token_ids(i)) for i in range(3)])
    assert ds.metrics()["data/prompt_len_max"] == float(ds.prompt_lengths.max())


def test_fingerprint_is_sensitive_to_content_not_to_rebuilds(tokenizer):
    a = build_dataset(_table(["x", "y"]), tokenizer)
    assert build_dataset(_table(["x", "y"]), tokenizer).fingerprint == a.fingerprint
    assert build_dataset(_table(["x", "z"]), tokenizer).fingerprint != a.fingerprint  # a prompt changed
    assert build_dataset(_table(["x", "y"], ["k0", "k1"]), tokenizer).fingerprint != a.fingerprint  # ids changed
    other_fmt = build_dataset(_table(["x", "y"]), tokenizer, PromptFormat(system_prompt="S"))
    assert other_fmt.fingerprint != a.fingerprint  # template changed
    # reference: the same function over the stored fields
    assert a.fingerprint == fingerprint(a.keys, a.answers, a.metas, a.difficulty, a.token_ids_flat, a.offsets)


def test_procedural_spec_end_to_end(tokenizer):
    ds = load_prompts(ProceduralSpec(tasks=("chain_sum",), levels=(1, 2), size=4, seed=0), tokenizer)
    assert len(ds) == 8 and ds.keys[4] == "chain_sum/L2/s0/0"
    np.testing.assert_array_equal(ds.difficulty, [1, 1, 1, 1, 2, 2, 2, 2])
    assert ds.metas[0]["task"] == "chain_sum" and ds.metas[0]["metadata"]["num_terms"] == 2


def test_unknown_source_kind():
    class Odd:
        kind = "hub"

    with pytest.raises(
        ValueError, match=r"unknown prompt source kind 'hub'; valid: \['files', 'gsm8k', 'procedural'\]"
    ):
        load_table(Odd())
    with pytest.raises(ValueError, match="FilesSpec.paths must name at least one file"):
        load_table(FilesSpec(paths=()))


def test_specs_from_the_run_config():
    from rlbal.config import DataConfig

    cfg = DataConfig()
    assert spec_from_config(cfg, seed=3) == ProceduralSpec(
        tasks=tuple(cfg.tasks), levels=tuple(cfg.levels), size=cfg.size, seed=3
    )
    assert format_from_config(cfg) == PromptFormat(
        system_prompt=cfg.system_prompt,
        instruction=cfg.instruction,
        max_prompt_tokens=cfg.max_prompt_tokens,
        too_long=cfg.too_long,
    )
    files = DataConfig(source="files", paths=("a.jsonl",), prompt_field="q", id_field="uid")
    assert spec_from_config(files, seed=0) == FilesSpec(paths=("a.jsonl",), fields=FieldMap(prompt="q", id="uid"))
    assert spec_from_config(DataConfig(source="gsm8k", split="test"), seed=0) == GSM8KSpec(split="test")
