"""Fixtures for the rollout tests: real engines on the tiny model, started once per test session.

`engine` is parametrised over ["hf", "vllm"], so every contract test runs on both; the vLLM case
carries the `vllm` marker (deselect with `-m "not vllm"`) and is skipped where vLLM is not
installed. Engines are shared by the whole session (a vLLM start costs seconds), so the fixture
puts the checkpoint's weights back after every test that may have changed them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_path))


def load_model(path: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def sft_state(sft_path: Path) -> dict[str, torch.Tensor]:
    return load_model(sft_path).state_dict()


@pytest.fixture(scope="session")
def base_state(tiny_path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_model(tiny_path).state_dict().items()}


@pytest.fixture
def trainer(tiny_path: Path) -> torch.nn.Module:
    """A fresh fp32 copy of the tiny model, playing the learner."""
    return load_model(tiny_path)


@pytest.fixture(scope="session")
def hf_session(tiny_path: Path):
    from rlbal.rollout import make_engine

    return make_engine("hf", tiny_path, seed=0)


@pytest.fixture(scope="session")
def vllm_session(tiny_path: Path):
    pytest.importorskip("vllm")
    from rlbal.rollout import make_engine

    return make_engine("vllm", tiny_path, seed=0)


@pytest.fixture(params=["hf", pytest.param("vllm", marks=pytest.mark.vllm)])
def engine(request: pytest.FixtureRequest, base_state: dict[str, torch.Tensor]):
    eng = request.getfixturevalue(f"{request.param}_session")
    yield eng
    eng.update_weights(base_state)  # the next test starts from the checkpoint again


def reference_logprobs(
    model: torch.nn.Module,
    prompt: list[int],
    completion: list[int],
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> torch.Tensor:
    """Slow, plain reference: one unpadded forward of one sequence, no cache; log_softmax(logits / T)
    at the completion's tokens, renormalised over the top-k tokens (top_k > 0) or over the nucleus
    (top_p < 1: drop the least likely tokens while their cumulative mass stays <= 1 - top_p, never
    the most likely one). (T,) float64."""
    ids = torch.tensor([list(prompt) + list(completion)])
    with torch.no_grad():
        logits_TV = model(ids).logits[0, len(prompt) - 1 : -1].double() / temperature
    if top_k:
        kth_T1 = logits_TV.topk(top_k, dim=-1).values[:, -1:]
        logits_TV = logits_TV.masked_fill(logits_TV < kth_T1, float("-inf"))
    if top_p < 1.0:
        for t in range(logits_TV.shape[0]):  # per position, in plain steps
            order = logits_TV[t].argsort()  # ascending
            cum = torch.softmax(logits_TV[t], -1)[order].cumsum(0)
            drop = order[(cum <= 1 - top_p) & (torch.arange(len(order)) < len(order) - 1)]
            logits_TV[t, drop] = float("-inf")
    return torch.log_softmax(logits_TV, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0]


@pytest.fixture
def ref_logprobs():
    return reference_logprobs
