"""Session-wide fixtures shared by several test packages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rlbal.runtime_env import apply_env

# The environment a run sets for itself (offline hub, compile caches, sleeping OpenMP threads): plain
# `pytest tests/...` then behaves like launch/test.sh. The vLLM engine sizes its own KV cache (1 GiB here).
apply_env()
RAY_NUM_CPUS = 4


@pytest.fixture(autouse=True)
def _restore_environ():
    """Tests that run a command in-process (`rlbal.cli.main`) set what the command sets for itself (quiet vLLM
    logging, thread counts); restore the environment so a later test's subprocess does not inherit it."""
    import os

    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray cluster per test session (ray.init twice in one process fails): 4 logical CPUs on the
    2-core machine so fractional actors fit, no dashboard, a private temp dir."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=RAY_NUM_CPUS,
        include_dashboard=False,
        object_store_memory=300 * 2**20,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    """The untrained tiny model: it rarely samples EOS, so its completions run to max_new_tokens (long calls)."""
    from rlbal.assets import tiny_model

    return tiny_model()


@pytest.fixture(scope="session")
def sft_path() -> Path:
    """The tiny model after a few seconds of SFT: answers 'The answer is \\boxed{N}.' then EOS."""
    from rlbal.assets import TINY_SFT_STEPS, tiny_model

    return tiny_model(sft_steps=TINY_SFT_STEPS)


RAGGED_COUNTS = [1, 3, 2, 4, 2, 4]  # rollouts per prompt of `ragged_batch` (ragged groups)


def make_ragged_batch(model_path, seed: int):
    """A ragged batch of random completions whose engine logprobs are the model's own plus noise, with
    GRPO advantages of random 0/1 rewards, bins [0 1 2 0 1 2] and uneven Prompt-GDRO weights."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlbal.algo.advantages import compute_advantages
    from rlbal.batch import RolloutBatch
    from rlbal.rollout.engine import Completion

    rng = np.random.default_rng(seed)
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32).eval()
    prompts = [rng.integers(5, 500, size=int(rng.integers(4, 12))).tolist() for _ in RAGGED_COUNTS]
    completions = []
    for i, n in enumerate(RAGGED_COUNTS):
        for _ in range(n):
            toks = rng.integers(5, 500, size=int(rng.integers(3, 20))).tolist()
            ids = torch.tensor([prompts[i] + toks])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, len(prompts[i]) - 1 : -1], -1)
            lp = logp.gather(-1, torch.tensor(toks)[:, None])[:, 0] + torch.as_tensor(rng.normal(0, 0.02, len(toks)))
            completions.append(Completion(i, toks, lp.tolist(), "", "length"))
    rewards = rng.integers(0, 2, size=len(completions)).astype(float).tolist()
    batch = RolloutBatch.from_generation(
        prompts,
        completions,
        list(range(len(RAGGED_COUNTS))),
        [0, 1, 2, 0, 1, 2],
        [1.0, 0.5, 1.5, 1.0, 1.0, 0.8],
        rewards,
        pad_id=0,
    )
    return dataclasses.replace(batch, advantages_B=compute_advantages("grpo", batch.rewards_B, batch.group_B))


@pytest.fixture(scope="session")
def ragged_batch():
    return make_ragged_batch


def reference_forward(model, input_ids_BL, attention_mask_BL, loss_mask_BL, temperature: float):
    """One plain forward over whole rows: (B, L) logprobs, entropies and every parameter's gradient of the
    masked logprob sum (the model's gradients are cleared again): what the learner's restricted forwards must
    reproduce."""
    from rlbal.algo.tokens import token_entropy, token_logprobs

    logits = model(input_ids=input_ids_BL, attention_mask=attention_mask_BL).logits
    logp = token_logprobs(logits, input_ids_BL, temperature)
    ent = token_entropy(logits.detach(), temperature)
    (logp * loss_mask_BL).sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return logp.detach(), ent, grads


@pytest.fixture(scope="session")
def full_forward():
    return reference_forward
