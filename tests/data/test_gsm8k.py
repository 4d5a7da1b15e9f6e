"""Vendored GSM8K: exact upstream bytes, split sizes, answer parsing."""

import gzip
import hashlib

import pytest

from rlbal.data import GSM8KSpec, PromptFormat, load_prompts, parse_answer
from rlbal.data.gsm8k import VENDOR_DIR, gsm8k

# sha256 of openai/grade-school-math@3101c7d grade_school_math/data/{train,test}.jsonl as fetched
UPSTREAM_SHA256 = {
    "train": "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
    "test": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
}


@pytest.mark.parametrize("split", ["train", "test"])
def test_vendored_files_are_the_upstream_bytes(split):
    data = gzip.decompress((VENDOR_DIR / f"{split}.jsonl.gz").read_bytes())
    assert hashlib.sha256(data).hexdigest() == UPSTREAM_SHA256[split]


def test_license_and_attribution_are_vendored():
    assert (VENDOR_DIR / "LICENSE").read_text().startswith("MIT License\n\nCopyright (c) 2021 OpenAI")
    assert "openai/grade-school-math" in (VENDOR_DIR / "README.md").read_text()


def test_split_sizes_and_first_rows():
    train, test = gsm8k("train"), gsm8k("test")
    assert (len(train), len(test)) == (7473, 1319)
    assert test.keys[0] == "gsm8k/test/0" and train.keys[-1] == "gsm8k/train/7472"
    assert test.messages[0][0]["content"].startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert test.answers[:2] == ["18", "3"]  # '#### 18', '#### 3'
    assert test.metas[0]["solution"].endswith("#### 18")


def test_every_answer_is_a_plain_number():
    for split in ("train", "test"):
        for a in gsm8k(split).answers:
            float(a)  # raises if not
            assert "," not in a


@pytest.mark.parametrize(
    "solution,answer",
    [
        ("2+1=<<2+1=3>>3 bolts\n#### 3", "3"),  # plain integer
        ("... total\n#### 1,080", "1080"),  # thousands separator removed
        ("she loses\n#### -3", "-3"),  # negative
        ("#### 2.5 ", "2.5"),  # decimal, trailing space
        ("a #### 4 then\n#### 7", "7"),  # the LAST '####' is the final answer
    ],
)
def test_parse_answer(solution, answer):
    assert parse_answer(solution) == answer


@pytest.mark.parametrize("solution", ["no marker 12", "#### twelve", "####"])
def test_parse_answer_rejects(solution):
    with pytest.raises(ValueError, match="no '#### <number>' final answer"):
        parse_answer(solution)


def test_unknown_split():
    with pytest.raises(ValueError, match=r"unknown GSM8K split 'dev'; valid: \['train', 'test'\]"):
        gsm8k("dev")


def test_loads_through_the_common_path(tokenizer):
    ds = load_prompts(GSM8KSpec("test"), tokenizer, PromptFormat(max_prompt_tokens=512, too_long="drop"))
    assert len(ds) + ds.n_dropped == 1319
    assert ds.answers[0] == "18" and ds.keys[0] == "gsm8k/test/0"
