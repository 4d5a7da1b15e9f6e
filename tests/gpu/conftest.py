"""GPU tests: a small Llama built from its config on the spot (no reasoning-gym, no model hub: the GPU image has
neither), and the device they run on.

Every test here is marked `gpu` and skipped without CUDA. `RLBAL_GPU_TEST_DEVICE=cpu` runs them on the CPU
instead, to check the tests themselves on a machine without a GPU (the CUDA-vs-CPU comparisons then compare
the CPU with itself)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DEVICE = os.environ.get("RLBAL_GPU_TEST_DEVICE", "cuda")
needs_device = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device")


def build_llama(out: Path, seed: int = 0) -> Path:
    """The tiny Llama's sizes (2 layers, 128 wide, vocab 512) with a BPE tokenizer trained on a few arithmetic
    chats, randomly initialised; an HF folder."""
    from transformers import GenerationConfig, LlamaForCausalLM

    from rlbal.assets import tiny_config, train_tiny_tokenizer

    corpus = [
        f"<|im_start|>user\nWhat is {a} + {b}? Put the final answer in \\boxed{{}}.<|im_end|>\n"
        f"<|im_start|>assistant\nThe answer is \\boxed{{{a + b}}}.<|im_end|>\n"
        for a in range(40)
        for b in range(40)
    ]
    tok = train_tiny_tokenizer(corpus)
    config = tiny_config("llama", tok)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def gpu_model_path(tmp_path_factory) -> Path:
    return build_llama(tmp_path_factory.mktemp("gpu_model"))
