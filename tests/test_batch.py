"""RolloutBatch: building from engine records, invariants, select/split/concat/to, logprob alignment."""

import dataclasses

import pytest
import torch

from rlbal.algo.tokens import token_logprobs
from rlbal.batch import RolloutBatch
from rlbal.rollout.engine import Completion


def _hand_batch() -> RolloutBatch:
    # prompts: 0 -> [5, 6], 1 -> [7]; three completions (two for prompt 0, one for prompt 1)
    comps = [
        Completion(0, [1, 2], [-0.1, -0.2], "", "stop"),
        Completion(0, [3], [-0.3], "", "length"),
        Completion(1, [4, 8, 9], [-0.4, -0.5, -0.6], "", "stop"),
    ]
    return RolloutBatch.from_generation(
        [[5, 6], [7]], comps, prompt_ids=[100, 200], bins=[2, 0], weights=[1.5, 0.5], rewards=[1.0, 0.0, 1.0], pad_id=0
    )


def test_from_generation_layout_by_hand():
    b = _hand_batch()
    # rows = prompt + completion, right-padded with pad_id 0 to L = 4
    assert b.input_ids_BL.tolist() == [[5, 6, 1, 2], [5, 6, 3, 0], [7, 4, 8, 9]]
    assert b.attention_mask_BL.int().tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]]
    assert b.completion_mask_BL.int().tolist() == [[0, 0, 1, 1], [0, 0, 1, 0], [0, 1, 1, 1]]
    # engine logprobs sit on the token they predict; 0 on prompt and padding
    assert torch.allclose(b.engine_logp_BL, torch.tensor([[0, 0, -0.1, -0.2], [0, 0, -0.3, 0], [0, -0.4, -0.5, -0.6]]))
    assert b.group_B.tolist() == [0, 0, 1]
    assert b.prompt_id_B.tolist() == [100, 100, 200]
    assert b.bin_B.tolist() == [2, 2, 0]
    assert b.weight_B.tolist() == [1.5, 1.5, 0.5]
    assert b.rewards_B.tolist() == [1.0, 0.0, 1.0]
    assert b.truncated_B.tolist() == [False, True, False]
    assert b.completion_len_B.tolist() == [2, 1, 3] and b.num_tokens == 6 and b.num_groups == 2
    assert b.advantages_B is None and b.old_logp_BL is None


def test_from_generation_matches_a_row_by_row_reference():
    rng = torch.Generator().manual_seed(3)
    lens = torch.randint(1, 6, (7,), generator=rng).tolist()
    prompts = [torch.randint(1, 50, (n,), generator=rng).tolist() for n in lens]
    comps = []
    for i in torch.randint(0, 7, (25,), generator=rng).tolist():
        n = int(torch.randint(0, 9, (), generator=rng))
        toks, lps = torch.randint(1, 50, (n,), generator=rng).tolist(), torch.rand(n, generator=rng).neg().tolist()
        comps.append(Completion(i, toks, lps, "", "stop"))
    b = RolloutBatch.from_generation(prompts, comps, list(range(7)), [0] * 7, [1.0] * 7, [0.0] * 25, pad_id=99)
    for row, c in enumerate(comps):
        p, n = prompts[c.prompt_index], len(c.token_ids)
        L = b.seq_len
        assert b.input_ids_BL[row].tolist() == p + c.token_ids + [99] * (L - len(p) - n)
        assert b.completion_mask_BL[row].tolist() == [False] * len(p) + [True] * n + [False] * (L - len(p) - n)
        assert b.engine_logp_BL[row].tolist() == pytest.approx([0.0] * len(p) + c.logprobs + [0.0] * (L - len(p) - n))


def test_groups_are_dense_when_a_prompt_gets_no_completion():
    comps = [Completion(0, [1], [-1.0], "", "stop"), Completion(2, [2], [-1.0], "", "stop")]
    b = RolloutBatch.from_generation([[9], [9], [9]], comps, [0, 1, 2], [0, 0, 0], [1.0] * 3, [0.0, 1.0], pad_id=0)
    # prompt 1 got 0 rollouts: groups are renumbered 0, 1 (prompt 2 -> group 1); its prompt id is kept
    assert b.group_B.tolist() == [0, 1]
    assert b.prompt_id_B.tolist() == [0, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(prompt_ids=[1]), "from_generation: prompt_ids has 1 entries for 2 prompts"),
        (dict(rewards=[1.0]), "from_generation: rewards has 1 entries for 3 completions"),
        (dict(prompt_token_ids=[[5], []]), "from_generation: every prompt needs at least one token"),
        (
            dict(completions=[Completion(2, [1], [-1.0], "", "stop")] * 3),
            r"from_generation: a Completion.prompt_index is outside \[0, 2\)",
        ),
    ],
)
def test_from_generation_rejects_mismatched_lengths(kwargs, message):
    comps = [Completion(0, [1], [-1.0], "", "stop")] * 2 + [Completion(1, [1], [-1.0], "", "stop")]
    args = dict(
        prompt_token_ids=[[5], [6]],
        completions=comps,
        prompt_ids=[1, 2],
        bins=[0, 0],
        weights=[1.0, 1.0],
        rewards=[0.0, 0.0, 0.0],
        pad_id=0,
    )
    with pytest.raises(ValueError, match=message):
        RolloutBatch.from_generation(**{**args, **kwargs})


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: dict(rewards_B=torch.zeros(2)), r"RolloutBatch.rewards_B must have shape \(3,\), got \(2,\)"),
        (lambda b: dict(group_B=b.group_B.float()), "RolloutBatch.group_B must have dtype torch.int64"),
        (lambda b: dict(old_logp_BL=torch.zeros(3, 5)), r"RolloutBatch.old_logp_BL must have shape \(3, 4\)"),
        (
            lambda b: dict(attention_mask_BL=torch.tensor([[0, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]]).bool()),
            "right-padded",
        ),
        (
            lambda b: dict(completion_mask_BL=torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1]]).bool()),
            "completion_mask_BL must lie inside attention_mask_BL",
        ),
        (
            lambda b: dict(completion_mask_BL=torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0], [0, 1, 1, 1]]).bool()),
            "column 0 must be False",
        ),
        (lambda b: dict(weight_B=torch.tensor([1.0, -1.0, 1.0])), r"RolloutBatch.weight_B must be >= 0, got min -1.0"),
        (lambda b: dict(bin_B=torch.tensor([0, -1, 0])), "RolloutBatch.bin_B must be >= 0"),
    ],
)
def test_invariants_are_checked_on_construction(change, message):
    b = _hand_batch()
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(b, **change(b))


def test_select_keeps_group_ids_and_trims_padding():
    b = _hand_batch()
    s = b.select([1, 0])
    # rows [5,6,3] (len 3) and [5,6,1,2] (len 4): width stays 4; selecting row 1 alone trims to 3
    assert s.input_ids_BL.tolist() == [[5, 6, 3, 0], [5, 6, 1, 2]]
    one = b.select([1])
    assert one.input_ids_BL.tolist() == [[5, 6, 3]] and one.engine_logp_BL.shape == (1, 3)
    only_second = b.select([2])
    assert only_second.group_B.tolist() == [1] and only_second.num_groups == 2  # ids index the parent's groups


def test_split_is_contiguous_and_covers_all_rows():
    b = _hand_batch()
    parts = b.split(2)
    assert [p.prompt_id_B.tolist() for p in parts] == [[100, 100], [200]]
    assert len(b.split(5)) == 3  # no empty pieces
    with pytest.raises(ValueError, match="split: num_chunks must be >= 1, got 0"):
        b.split(0)


def test_split_by_tokens_respects_budget_and_partitions_rows():
    torch.manual_seed(0)
    lens = torch.randint(2, 20, (37,)).tolist()
    comps = [Completion(i % 5, [3] * (n - 1), [-1.0] * (n - 1), "", "stop") for i, n in enumerate(lens)]
    b = RolloutBatch.from_generation([[7]] * 5, comps, list(range(5)), [0] * 5, [1.0] * 5, [0.0] * 37, pad_id=0)
    mbs = b.split_by_tokens(max_tokens=40)
    for mb in mbs:
        assert mb.num_seqs * mb.seq_len <= 40
    # lengths are 2..19 <= 40, so every row fits; each row appears exactly once (rewards carry row identity here)
    marked = dataclasses.replace(b, rewards_B=torch.arange(37, dtype=torch.float32))
    seen = torch.cat([mb.rewards_B for mb in marked.split_by_tokens(40)])
    assert sorted(seen.tolist()) == list(range(37))
    # a row longer than the budget goes alone
    assert [mb.num_seqs for mb in b.split_by_tokens(1)] == [1] * 37


def test_concat_offsets_groups_and_pads():
    a = _hand_batch()
    c = RolloutBatch.from_generation(
        [[9, 9, 9, 9]], [Completion(0, [1], [-0.7], "", "stop")], [300], [1], [1.0], [0.5], pad_id=0
    )
    cat = RolloutBatch.concat([a, c])
    assert cat.group_B.tolist() == [0, 0, 1, 2]  # c's group 0 becomes 2
    assert cat.input_ids_BL.shape == (4, 5) and cat.input_ids_BL[0].tolist() == [5, 6, 1, 2, 0]
    assert cat.prompt_id_B.tolist() == [100, 100, 200, 300]
    with_old = dataclasses.replace(c, old_logp_BL=torch.zeros(1, 5))
    with pytest.raises(ValueError, match="concat: RolloutBatch.old_logp_BL is set in some batches and None in others"):
        RolloutBatch.concat([a, with_old])


def test_to_moves_every_tensor():
    b = dataclasses.replace(_hand_batch(), advantages_B=torch.ones(3))
    moved = b.to("cpu")
    assert moved.advantages_B.tolist() == [1.0, 1.0, 1.0] and moved.input_ids_BL.device.type == "cpu"


def test_engine_logprobs_align_with_token_logprobs_of_the_same_model():
    # A bigram "engine": logits for the next token depend on the current token. Sample with it, record the
    # sampled tokens' logprobs as an engine does, and check token_logprobs on the batch gives the same values
    # at exactly the completion positions: this pins the (B, L) alignment convention end to end.
    torch.manual_seed(0)
    V = 11
    table_VV = torch.randn(V, V)
    prompts = [[1, 2, 3], [4], [5, 6]]
    comps = []
    for p_idx, prompt in enumerate(prompts):
        for _ in range(2):
            last, toks, lps = prompt[-1], [], []
            for _ in range(int(torch.randint(1, 6, ()))):
                logp_V = torch.log_softmax(table_VV[last], -1)
                nxt = int(torch.multinomial(logp_V.exp(), 1))
                toks.append(nxt), lps.append(float(logp_V[nxt]))
                last = nxt
            comps.append(Completion(p_idx, toks, lps, "", "stop"))
    b = RolloutBatch.from_generation(prompts, comps, [0, 1, 2], [0, 0, 0], [1.0] * 3, [0.0] * 6, pad_id=0)
    logits_BLV = table_VV[b.input_ids_BL]  # position t holds logits for token t+1
    logp_BL = token_logprobs(logits_BLV, b.input_ids_BL)
    m = b.completion_mask_BL
    assert torch.allclose(logp_BL[m], b.engine_logp_BL[m], atol=1e-6)
