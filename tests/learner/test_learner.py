"""The single-process learner: an update does not depend on how the batch is cut into micro-batches (metrics
included, extrema too), and the learner runs on the device its backend names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlbal.config import load_config
from rlbal.learner import make_learner
from rlbal.learner.backends import TorchBackend


def config(micro_batch_tokens: int, mini_batches: int = 2, overhead: int | None = None, share: bool = False):
    return load_config(
        None,
        [
            "model.path=tiny-sft",
            "learner.lr=5e-3",
            f"learner.mini_batches={mini_batches}",
            f"learner.micro_batch_tokens={micro_batch_tokens}",
            f"learner.micro_batch_overhead_tokens={'null' if overhead is None else overhead}",
            f"learner.share_prompt_forward={str(share).lower()}",
            "run.max_steps=4",
            "algo.aggregation=seq_mean_token_mean",
        ],
    )


@pytest.fixture(scope="module")
def batches(sft_path, ragged_batch):
    return [ragged_batch(sft_path, seed) for seed in (1, 2)]


@pytest.mark.parametrize("cut", ["budget", "padding", "shared", "shared-budget"])
def test_update_is_the_same_for_any_micro_batch_split(batches, cut):
    """One call over the whole mini-batch (a call costs more than any padding) vs ~one row per call (budget 32),
    the cut without padding (a call costs nothing: one call per distinct length), or one prompt forward per
    group (learner.share_prompt_forward), whole groups per call or, under a 24-token budget, groups in chunks."""
    whole = make_learner(config(4096, overhead=10**9))
    pieces = make_learner(
        {
            "budget": config(32),
            "padding": config(4096, overhead=0),
            "shared": config(4096, share=True),
            "shared-budget": config(24, share=True),
        }[cut]
    )
    assert len(whole.micro_batches(batches[0])) == 1 and not whole.share_prompt
    lengths, group = batches[0].lengths_B, batches[0].group_B
    calls = pieces.micro_batches(batches[0])
    assert sorted(torch.cat(calls).tolist()) == list(range(len(lengths)))
    if cut == "budget":
        assert len(calls) > len(lengths) // 2
        assert all(len(idx) == 1 or len(idx) * int(lengths[idx].max()) <= 32 for idx in calls)
    elif cut == "padding":
        assert len(calls) == len(set(lengths.tolist()))
    elif cut == "shared":
        assert pieces.share_prompt and len(calls) == 1  # 6 groups, 16 rows: prompts 4-11 tokens, completions 3-19
    else:
        assert len(calls) > 2 and any(len(set(group[idx].tolist())) < len(idx) for idx in calls)  # groups kept
    for i, batch in enumerate(batches):
        a, b = whole.update(batch), pieces.update(batch)
        assert set(a.metrics) == set(b.metrics)
        # The first batch starts from identical weights: equal to float32 noise. Later batches start from weights
        # that AdamW moved by up to 2e-4 apart (see below): their ratios differ by ~1e-5 relative (measured
        # 1.0193093 vs 1.0192988 with torch 2.13 / transformers 5.19), still far below a wrong split's error.
        rel = 1e-5 if i == 0 else 1e-4
        for key, value in a.metrics.items():
            assert b.metrics[key] == pytest.approx(value, rel=rel, abs=1e-7), key
        np.testing.assert_allclose(b.signal_B, a.signal_B, rtol=rel, atol=1e-7)
    # the second batch's ratios are not 1 (the engine logprobs are the model's plus noise, and the weights
    # moved): the extrema really are extrema, not averages of per-micro-batch extremes
    assert a.metrics["loss/ratio_min"] < a.metrics["loss/ratio_mean"] < a.metrics["loss/ratio_max"]
    # Weights: equal up to summation order, which AdamW can turn into steps of up to lr (5e-3) on near-zero
    # gradient entries; measured max 2.3e-5 after 4 updates. A wrongly weighted micro-batch moves far more.
    for k, v in whole.export_weights().items():
        torch.testing.assert_close(pieces.export_weights()[k], v, rtol=0, atol=2e-4)


@pytest.mark.parametrize("share", [False, True])
def test_extra_calls_for_other_ranks_change_nothing(batches, share, monkeypatch):
    """Another rank needing more calls than this one has rows: the plan is cut to that count and the calls without
    rows run a row without loss tokens (zero gradient); the update equals the plain one."""
    plain = make_learner(config(4096, mini_batches=1, share=share))
    extra = make_learner(config(4096, mini_batches=1, share=share))
    rows = batches[0].num_seqs
    monkeypatch.setattr(type(extra.backend.world), "most_micro_batches", lambda self, count: rows + 3)
    assert len(extra.micro_batches(batches[0], count=rows + 3)) == rows + 3
    a, b = plain.update(batches[0]), extra.update(batches[0])
    for key, value in a.metrics.items():
        assert b.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    np.testing.assert_allclose(b.signal_B, a.signal_B, rtol=1e-5, atol=1e-7)
    for k, v in plain.export_weights().items():
        torch.testing.assert_close(extra.export_weights()[k], v, rtol=0, atol=1e-5)


def test_extrema_are_the_batch_extrema(batches, sft_path):
    """With one update per step the PPO ratio is 1 and the engine correction is w = exp(learner - engine logp)
    per completion token (token_truncate at cap 2, far above the 0.02 noise): is/weight_min / is/weight_max
    are the extremes of w over the whole batch, cut into ~one row per micro-batch."""
    from rlbal.learner.model import load_causal_lm, token_logprobs

    batch = batches[0]
    model = load_causal_lm(sft_path)
    with torch.no_grad():
        logp_BL = token_logprobs(model, batch.input_ids_BL, batch.attention_mask_BL)
    mask = batch.completion_mask_BL.bool()
    w = (logp_BL - batch.engine_logp_BL)[mask].double().exp()
    got = make_learner(config(32, mini_batches=1)).update(batch).metrics  # one update: all rows at the initial weights
    assert got["loss/ratio_min"] == got["loss/ratio_max"] == 1.0
    assert got["is/weight_min"] == pytest.approx(float(w.min()), rel=1e-5)
    assert got["is/weight_max"] == pytest.approx(float(w.max()), rel=1e-5)
    assert got["is/weight_mean"] == pytest.approx(float(w.mean()), rel=1e-5)


def test_cpu_default_call_cost(batches):
    """Unset, a CPU learner prices a call at CPU_CALL_TOKENS padded tokens; a ragged batch is cut where that saves
    more padding than the extra call costs, and never above the token budget."""
    from rlbal.learner.learner import CPU_CALL_TOKENS
    from rlbal.micro_batches import plan

    learner = make_learner(config(4096))
    assert learner.micro_overhead == CPU_CALL_TOKENS == 128
    batch = batches[0]
    lens = sorted(batch.lengths_B.tolist(), reverse=True)
    got = [sorted(batch.lengths_B[idx].tolist(), reverse=True) for idx in learner.micro_batches(batch)]
    assert got == [lens[a:b] for a, b in plan(lens, 4096, 128)]
    padded = sum(len(g) * g[0] for g in got)
    assert padded + 128 * len(got) <= len(lens) * lens[0] + 128  # no worse than one padded call


def test_single_process_backend_device():
    assert TorchBackend("cpu").device == torch.device("cpu")
    assert TorchBackend().device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert TorchBackend().world.world_size == 1
    model = torch.nn.Linear(2, 2)
    moved, _ = TorchBackend("cpu").prepare(model, None, grad_clip=1.0)
    assert moved is model and next(model.parameters()).device.type == "cpu"
