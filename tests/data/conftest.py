"""Shared fixtures of the rlbal.data tests: the tiny model's tokenizer (built once into the asset cache)."""

import pytest


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    from rlbal.assets import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("tiny"))
