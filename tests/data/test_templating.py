"""Chat templating: message assembly by hand, and render == the tokenizer's own one-by-one path."""

import pytest

from rlbal.data import BOXED_INSTRUCTION, PromptFormat, build_messages, render


def test_build_messages_cases():
    fmt = PromptFormat(system_prompt="SYS", instruction="INS")
    assert build_messages("Q", fmt) == [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Q\nINS"}]
    # a row that brings its own system message keeps it; the instruction goes to the LAST user turn
    turns = [
        {"role": "system", "content": "own"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert build_messages(turns, fmt) == [turns[0], turns[1], turns[2], {"role": "user", "content": "c\nINS"}]
    assert turns[3]["content"] == "c"  # the input is not mutated
    assert build_messages("Q", PromptFormat(instruction="")) == [{"role": "user", "content": "Q"}]
    assert BOXED_INSTRUCTION == "Put the final answer in \\boxed{}."


def test_render_matches_tokenizer_one_by_one(tokenizer):
    fmt = PromptFormat(system_prompt="Be brief.")
    convs = [build_messages(q, fmt) for q in ("1 + 1 =", "What is 12 * 3?", "x")]
    texts, ids = render(tokenizer, convs, fmt)
    assert texts[0] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n1 + 1 =\n"
        "Put the final answer in \\boxed{}.<|im_end|>\n<|im_start|>assistant\n"
    )
    for conv, text, row in zip(convs, texts, ids):
        ref = tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=True)
        assert row == list(ref["input_ids"])
        assert tokenizer.decode(row) == text


def test_plain_text_format_for_base_models(tokenizer):
    fmt = PromptFormat(use_chat_template=False, instruction="Box it.")
    texts, ids = render(tokenizer, [build_messages("2 + 2 =", fmt)], fmt)
    assert texts == ["2 + 2 =\nBox it.\n"]
    assert tokenizer.decode(ids[0]) == texts[0]


def test_render_needs_a_chat_template(tokenizer):
    import copy

    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(ValueError, match="the tokenizer has no chat_template"):
        render(bare, [[{"role": "user", "content": "x"}]], PromptFormat())
    assert render(tokenizer, [], PromptFormat()) == ([], [])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"max_prompt_tokens": 0}, "PromptFormat.max_prompt_tokens must be >= 1 or None, got 0"),
        ({"too_long": "truncate"}, "PromptFormat.too_long must be 'error' or 'drop', got 'truncate'"),
    ],
)
def test_format_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PromptFormat(**kwargs)
