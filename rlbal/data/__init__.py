"""Prompt datasets with stable ids: files, saved HF datasets, reasoning-gym tasks, vendored GSM8K.

    from rlbal.data import FieldMap, FilesSpec, PromptFormat, PromptSource, load_prompts
    ds = load_prompts(FilesSpec(paths=("train.jsonl",), fields=FieldMap(prompt="question")), tokenizer,
                      PromptFormat(max_prompt_tokens=256, too_long="drop"))
    src = PromptSource(ds, seed=0)
    batch = src.next(32)       # PromptBatch: indices (32,) int64, keys, prompt_token_ids, answers, metas, difficulty

Modules: records (DataError, PromptTable, PromptDataset, PromptBatch), templating (chat format),
files (readers + field mapping), procedural (reasoning-gym levels), gsm8k (vendored), dataset
(specs -> PromptDataset), prompt_source (the shuffled, resumable stream). See docs/data.md.
"""

from rlbal.data.dataset import (
    FilesSpec,
    GSM8KSpec,
    ProceduralSpec,
    SourceSpec,
    build_dataset,
    format_from_config,
    load_prompts,
    load_table,
    spec_from_config,
)
from rlbal.data.files import FieldMap, read_rows, read_table
from rlbal.data.gsm8k import gsm8k, parse_answer
from rlbal.data.procedural import LEVELS, procedural_table
from rlbal.data.prompt_source import PromptSource, PromptStream, SampledSource
from rlbal.data.records import DataError, PromptBatch, PromptDataset, PromptTable, concat_tables
from rlbal.data.templating import BOXED_INSTRUCTION, PromptFormat, build_messages, render

__all__ = [
    "BOXED_INSTRUCTION",
    "DataError",
    "FieldMap",
    "FilesSpec",
    "GSM8KSpec",
    "LEVELS",
    "ProceduralSpec",
    "PromptBatch",
    "PromptDataset",
    "PromptFormat",
    "PromptSource",
    "PromptStream",
    "SampledSource",
    "PromptTable",
    "SourceSpec",
    "build_dataset",
    "build_messages",
    "concat_tables",
    "format_from_config",
    "gsm8k",
    "load_prompts",
    "load_table",
    "parse_answer",
    "procedural_table",
    "read_rows",
    "read_table",
    "render",
    "spec_from_config",
]
