"""GSM8K (Cobbe et al. 2021), vendored: 7473 train and 1319 test grade-school math problems, MIT.

The files in rlbal/data/vendor/gsm8k/ are openai/grade-school-math's grade_school_math/data/{train,test}.jsonl
(commit 3101c7d), gzip-compressed; see the README and LICENSE there. Each row's reference answer is
the number after "####" in its worked solution, with thousands separators removed; the solution is
kept in meta.

    table = gsm8k("test")      # PromptTable, keys 'gsm8k/test/0' ...
    table.answers[0]           # '18'
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rlbal.data.files import read_jsonl, require_field, row_where
from rlbal.data.records import DataError, PromptTable

VENDOR_DIR = Path(__file__).parent / "vendor" / "gsm8k"
SPLITS = ("train", "test")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def parse_answer(solution: str) -> str:
    """The final answer of a GSM8K solution: the text after '####', without thousands separators.

    >>> parse_answer("She makes 9 * 2 = $<<9*2=18>>18 every day.\\n#### 18")
    '18'
    >>> parse_answer("... #### 1,080")
    '1080'
    """
    _, sep, tail = solution.rpartition("####")
    answer = tail.strip().replace(",", "")
    if not sep or not _NUMBER.fullmatch(answer):
        raise ValueError(f"no '#### <number>' final answer in solution ending {solution[-60:]!r}")
    return answer


def gsm8k(split: str = "train") -> PromptTable:
    """The vendored GSM8K `split` ('train' or 'test') as a PromptTable (prompt = question)."""
    if split not in SPLITS:
        raise ValueError(f"unknown GSM8K split {split!r}; valid: {list(SPLITS)}")
    path = VENDOR_DIR / f"{split}.jsonl.gz"
    rows = read_jsonl(path)
    answers, solutions = [], []
    for r, row in enumerate(rows):
        solution = require_field(row, "answer", row_where(path.name, r))
        try:
            answers.append(parse_answer(solution))
        except ValueError as e:
            raise DataError(f"{row_where(path.name, r)}: field 'answer': {e}") from None
        solutions.append(solution)
    n = len(rows)
    return PromptTable(
        name=f"gsm8k-{split}",
        sources=(f"gsm8k/{path.name}",),
        keys=[f"gsm8k/{split}/{r}" for r in range(n)],
        messages=[
            [{"role": "user", "content": require_field(row, "question", row_where(path.name, r))}]
            for r, row in enumerate(rows)
        ],
        answers=answers,
        metas=[{"solution": s} for s in solutions],
        difficulty=np.full(n, np.nan),
        rows=np.arange(n, dtype=np.int64),
        source_index=np.zeros(n, dtype=np.int32),
    )
