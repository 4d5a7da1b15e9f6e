"""Chat templating of prompts: user/system messages -> chat text -> token ids, batched.

One place decides how a raw prompt becomes what the policy sees, so the SFT warm-start of the tiny
model (`rlbal.assets`) and the RL prompt datasets format prompts identically:

    messages = build_messages("2 + 3 =", PromptFormat(instruction="Put the final answer in \\\\boxed{}."))
    # [{'role': 'user', 'content': '2 + 3 =\\nPut the final answer in \\\\boxed{}.'}]
    texts, ids = render(tokenizer, [messages], PromptFormat())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

BOXED_INSTRUCTION = "Put the final answer in \\boxed{}."
ROLES = ("system", "user", "assistant")

Message = dict[str, str]


@dataclass(frozen=True)
class PromptFormat:
    """How prompts are turned into model input, and the prompt-length policy.

    system_prompt:      optional system message put first (unless the row already starts with one).
    instruction:        appended to the last user message after a newline ('' = nothing).
    use_chat_template:  False = plain text (system, prompt, instruction joined by newlines), for base models.
    max_prompt_tokens:  longest allowed prompt in tokens after templating (None = no limit).
    too_long:           'error' fails naming the row; 'drop' drops such rows and counts them.
    """

    system_prompt: str | None = None
    instruction: str = BOXED_INSTRUCTION
    use_chat_template: bool = True
    max_prompt_tokens: int | None = None
    too_long: Literal["error", "drop"] = "error"

    def __post_init__(self) -> None:
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"PromptFormat.max_prompt_tokens must be >= 1 or None, got {self.max_prompt_tokens}")
        if self.too_long not in ("error", "drop"):
            raise ValueError(f"PromptFormat.too_long must be 'error' or 'drop', got {self.too_long!r}")


def build_messages(prompt: str | Sequence[Message], fmt: PromptFormat) -> list[Message]:
    """The chat turns of one prompt: optional system prompt, then the row's turns, instruction appended.

    >>> build_messages("1 + 1 =", PromptFormat(system_prompt="Be brief.", instruction="Box it."))
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '1 + 1 =\\nBox it.'}]
    """
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if fmt.system_prompt and turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": fmt.system_prompt})
    if fmt.instruction:
        last_user = max(i for i, m in enumerate(turns) if m["role"] == "user")
        turns[last_user]["content"] = f"{turns[last_user]['content']}\n{fmt.instruction}"
    return turns


def plain_text(messages: Sequence[Message]) -> str:
    """Messages joined by newlines, for models without a chat template.

    >>> plain_text([{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': 'Q'}])
    'S\\nQ\\n'
    """
    return "".join(m["content"] + "\n" for m in messages)


def render(
    tokenizer: Any, conversations: Sequence[Sequence[Message]], fmt: PromptFormat
) -> tuple[list[str], list[list[int]]]:
    """Chat texts and their token ids for many prompts at once (one batched tokenizer call).

    The template adds any BOS itself, so tokenising the text adds no special tokens again.
    """
    if not conversations:
        return [], []
    if fmt.use_chat_template:
        if not tokenizer.chat_template:
            raise ValueError(
                "PromptFormat.use_chat_template=True but the tokenizer has no chat_template "
                "(use a chat model or set use_chat_template=False)"
            )
        texts = tokenizer.apply_chat_template(
            [list(c) for c in conversations], tokenize=False, add_generation_prompt=True
        )
    else:
        texts = [plain_text(c) for c in conversations]
    # verbose=False: over-long prompts are the length policy's business, not a tokenizer warning
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return list(texts), [list(x) for x in ids]
