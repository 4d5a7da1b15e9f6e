"""The bad-input cases of tests/test_bad_input.py: (id, argv, the one stderr line) per command; `{root}`,
`{data}`, `{models}`, `{run}` and `{cwd}` are filled in there from its `env` fixture (the files it writes)."""

# (id, argv, the one stderr line). {root} {data} {models} {run} {cwd} are filled in from `env`.
TRAIN = [
    (
        "unknown-key",
        "algo.clip_hihg=0.3",
        "config error: unknown key 'algo.clip_hihg' (did you mean 'algo.clip_high'?)",
    ),
    (
        "duplicate-yaml-key",
        "{root}/dup.yaml",
        "config error: {root}/dup.yaml: key 'run' appears twice in one section (line 5); "
        "YAML would silently drop the first one",
    ),
    (
        "yaml-not-utf8",
        "{root}/latin1.yaml",
        "config error: {root}/latin1.yaml: not UTF-8 text (byte 0xe9 at offset 16)",
    ),
    (
        "yaml-list",
        "{root}/list.yaml",
        "config error: {root}/list.yaml: a recipe must be a mapping of sections, got list",
    ),
    ("no-recipe", "{root}/nope.yaml", "config error: recipe not found: {root}/nope.yaml"),
    ("betas", "learner.betas=[0.9,1.5]", "config error: learner.betas: each beta must be in [0, 1) (got [0.9, 1.5])"),
    (
        "no-levels",
        "data.levels=[]",
        "config error: data.levels: Tuple should have at least 1 item after validation, not 0 (got [])",
    ),
    (
        "temperature-0",
        "rollout.temperature=0",
        "config error: rollout.temperature=0 samples greedily: every rollout of a prompt is the same, "
        "so every group has zero advantage and nothing is learned; use a temperature > 0 (e.g. 1.0)",
    ),
    (
        "async-local",
        "ray.async_steps=1",
        "config error: ray.async_steps=1 needs run.orchestrator=ray (the local loop is synchronous); set "
        "run.orchestrator=ray or remove ray.async_steps",
    ),
    (
        "name-escapes",
        "run.name=../../..",
        "config error: run.name: must name a folder inside run.output_dir (not empty, not absolute, no '..') "
        "(got '../../..')",
    ),
    (
        "unknown-task",
        "data.tasks=[chain_summ]",
        "data error: unknown procedural task 'chain_summ'; valid tasks: ['basic_arithmetic', 'chain_sum', 'countdown', "
        "'gsm_symbolic']",
    ),
    (
        "task-without-levels",
        "data.tasks=[gsm_symbolic] data.levels=[2]",
        "data error: task 'gsm_symbolic' has none of the levels [2]; valid: [1]",
    ),
    (
        "empty-file",
        "data.source=files data.paths=[{data}/empty.jsonl]",
        "data error: empty.jsonl: empty dataset (no rows)",
    ),
    (
        "broken-json",
        "data.source=files data.paths=[{data}/broken.jsonl]",
        "data error: broken.jsonl line 2 (row 1): invalid JSON (Expecting value at column 29)",
    ),
    (
        "missing-field",
        "data.source=files data.paths=[{data}/missing.jsonl]",
        "data error: missing.jsonl row 0: missing field 'answer' (fields present: prompt)",
    ),
    (
        "null-field",
        "data.source=files data.paths=[{data}/null.jsonl]",
        "data error: null.jsonl row 0: field 'answer' is null",
    ),
    (
        "chat-role",
        "data.source=files data.paths=[{data}/roles.jsonl]",
        "data error: roles.jsonl row 0: field 'prompt' message 0 must be {{'role': one of system/user/assistant, "
        "'content': str}}, got {{'role': 'robot', 'content': 'hi'}}",
    ),
    (
        "chat-no-user",
        "data.source=files data.paths=[{data}/nouser.jsonl]",
        "data error: nouser.jsonl row 0: field 'prompt' has no 'user' message",
    ),
    (
        "row-not-object",
        "data.source=files data.paths=[{data}/array.jsonl]",
        "data error: array.jsonl line 1 (row 0): expected a JSON object, got list",
    ),
    (
        "nan-answer-jsonl",
        "data.source=files data.paths=[{data}/nan.jsonl]",
        "data error: nan.jsonl row 0: field 'answer' is nan (a missing value in the file?)",
    ),
    (
        "nan-answer-parquet",
        "data.source=files data.paths=[{data}/nan.parquet]",
        "data error: nan.parquet row 1: field 'answer' is nan (a missing value in the file?)",
    ),
    (
        "data-not-utf8",
        "data.source=files data.paths=[{data}/latin1.jsonl]",
        "data error: latin1.jsonl line 1: not UTF-8 text (byte 0xe9 at offset 15)",
    ),
    (
        "duplicate-id",
        "data.source=files data.paths=[{data}/dup.jsonl] data.id_field=id",
        "data error: dup.jsonl row 1: duplicate id '7' (first seen at dup.jsonl row 0)",
    ),
    (
        "csv",
        "data.source=files data.paths=[{data}/data.csv]",
        "data error: data.csv: unsupported file type; use one of .jsonl, .jsonl.gz, .json, .parquet, .arrow or a saved "
        "dataset folder",
    ),
    (
        "empty-folder",
        "data.source=files data.paths=[{data}/emptydir]",
        "data error: emptydir: folder is not a dataset saved with `datasets.save_to_disk`",
    ),
    (
        "garbage-parquet",
        "data.source=files data.paths=[{data}/garbage.parquet]",
        "data error: garbage.parquet: not a readable Parquet file (Could not open Parquet input source "
        "'{data}/garbage.parquet': Parquet magic bytes not found in footer. "
        "Either the file is corrupted or this is not a parquet file.)",
    ),
    (
        "parquet-types",
        "data.source=files data.paths=[{data}/types.parquet]",
        "data error: types.parquet row 0: field 'prompt' must be a non-empty string or list of chat messages, got int",
    ),
    (
        "not-gzip",
        "data.source=files data.paths=[{data}/garbage.jsonl.gz]",
        "data error: garbage.jsonl.gz: not a readable gzip file (Not a gzipped file (b'no'))",
    ),
    (
        "truncated-gzip",
        "data.source=files data.paths=[{data}/truncated.jsonl.gz]",
        "data error: truncated.jsonl.gz: not a readable gzip file (Compressed file ended before the end-of-stream "
        "marker was reached)",
    ),
    (
        "json-not-list",
        "data.source=files data.paths=[{data}/object.json]",
        "data error: object.json: expected a JSON list of row objects, got dict",
    ),
    (
        "no-data-file",
        "data.source=files data.paths=[{data}/nope.jsonl]",
        "data error: {data}/nope.jsonl: no such file or folder",
    ),
    (
        "bad-eval-file",
        "eval.source=files eval.paths=[{data}/broken.jsonl]",
        "data error: broken.jsonl line 2 (row 1): invalid JSON (Expecting value at column 29)",
    ),
    (
        "model-missing",
        "model.path=/no/model",
        "model error: model '/no/model' is neither a built-in asset ['smollm2-135m', 'tiny', 'tiny-qwen2', 'tiny-sft'] "
        "(or 'tiny-sft-<N>') nor an existing local folder (/no/model does not exist; no hub downloads)",
    ),
    (
        "model-hub-id",
        "model.path=Qwen/Qwen2.5-0.5B-Instruct",
        "model error: model 'Qwen/Qwen2.5-0.5B-Instruct' is neither a built-in asset ['smollm2-135m', 'tiny', "
        "'tiny-qwen2', 'tiny-sft'] (or 'tiny-sft-<N>') nor an existing local folder ({cwd}/Qwen/Qwen2.5-0.5B-Instruct "
        "does not exist; no hub downloads)",
    ),
    (
        "model-empty-folder",
        "model.path={models}/empty",
        "model error: model folder {models}/empty has no config.json (not a Hugging Face model folder)",
    ),
    (
        "model-no-weights",
        "model.path={models}/noweights",
        "model error: model folder {models}/noweights has no weights (*.safetensors or pytorch_model*.bin)",
    ),
    (
        "model-truncated",
        "model.path={models}/truncated",
        "model error: {models}/truncated/model.safetensors: truncated (5000 bytes, the header describes 1446456)",
    ),
    (
        "model-bad-config",
        "model.path={models}/badconfig",
        "model error: {models}/badconfig/config.json: not a valid config (Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1))",
    ),
    (
        "reward-typo",
        "reward.fn=mathh",
        "reward error: reward.fn: unknown reward 'mathh': use one of ('math', 'numeric', 'exact', 'gsm8k', 'rgym', "
        "'format') or an import path 'package.module:function'",
    ),
    (
        "reward-no-module",
        "reward.fn=no_such_module:f",
        "reward error: reward.fn: reward 'no_such_module:f': module 'no_such_module' not found (is it installed / on "
        "sys.path?)",
    ),
    (
        "reward-no-attribute",
        "reward.fn=my_rewards:nope",
        "reward error: reward.fn: reward 'my_rewards:nope': 'my_rewards' has no attribute 'nope' (it has: "
        "['NOT_CALLABLE', 'always_raises', 'one_arg'])",
    ),
    (
        "reward-not-callable",
        "reward.fn=my_rewards:NOT_CALLABLE",
        "reward error: reward.fn: reward 'my_rewards:NOT_CALLABLE' is not callable (it is a int)",
    ),
    (
        "reward-signature",
        "reward.fn=my_rewards:one_arg",
        "reward error: reward.fn: reward 'my_rewards:one_arg' with kwargs [] cannot be called as "
        "fn(completion, answer, **kwargs): too many positional arguments; its signature is (completion)",
    ),
    (
        "reward-broken-dependency",
        "reward.fn=needs_dep:f",
        "reward error: reward.fn: reward 'needs_dep:f': importing 'needs_dep' failed: No module named "
        "'nonexistent_dependency_xyz'",
    ),
    (
        "resume-missing",
        "run.resume=/nonexistent",
        "checkpoint error: run.resume='/nonexistent': no such checkpoint folder",
    ),
    (
        "resume-incomplete",
        "run.resume={root}/half",
        "checkpoint error: run.resume='{root}/half': not a complete checkpoint folder (no COMPLETE file)",
    ),
    (
        "wandb-missing",
        "logging.wandb=online",
        "setup error: logging.wandb=online needs the `wandb` package (pip install wandb); or set logging.wandb=off",
    ),
    ("bad-option", "--nope", "usage error: unrecognized arguments: --nope (see rlbal train --help)"),
]

OTHER = [
    ("eval-not-a-run", "eval {root}/norun", "input error: {root}/norun/config.yaml not found (not a run directory?)"),
    ("eval-k", "eval {run} --k 0", "input error: --k must be >= 1, got 0"),
    ("eval-unknown-key", "eval {run} eval.kk=3", "config error: unknown key 'eval.kk' (did you mean 'eval.k'?)"),
    (
        "eval-bad-data",
        "eval {run} eval.source=files eval.paths=[{data}/missing.jsonl]",
        "data error: missing.jsonl row 0: missing field 'answer' (fields present: prompt)",
    ),
    (
        "eval-bad-reward",
        "eval {run} reward.fn=mathh",
        "reward error: reward.fn: unknown reward 'mathh': use one of ('math', 'numeric', 'exact', 'gsm8k', 'rgym', "
        "'format') or an import path 'package.module:function'",
    ),
    (
        "eval-no-checkpoint",
        "eval {root}/nockpt",
        "checkpoint error: {root}/nockpt: no complete checkpoint in {root}/nockpt/checkpoints; pass --checkpoint PATH "
        "or --base",
    ),
    (
        "eval-damaged-checkpoint",
        "eval {root}/damaged",
        "checkpoint error: no checkpoint in {root}/damaged/checkpoints verifies "
        "(step_5: model/model.safetensors has 5000 bytes, expected 1446456); pass --checkpoint PATH or --base",
    ),
    (
        "eval-damaged-checkpoint-named",
        "eval {root}/damaged --checkpoint {root}/damaged/checkpoints/step_5",
        "checkpoint error: --checkpoint {root}/damaged/checkpoints/step_5: the checkpoint is damaged "
        "(model/model.safetensors has 5000 bytes, expected 1446456)",
    ),
    (
        "eval-bad-checkpoint",
        "eval {run} --checkpoint {root}/half",
        "checkpoint error: --checkpoint {root}/half: neither a checkpoint folder (with model/) nor a model folder "
        "(with config.json)",
    ),
    (
        "eval-truncated-model",
        "eval {run} --checkpoint {models}/truncated",
        "model error: {models}/truncated/model.safetensors: truncated (5000 bytes, the header describes 1446456)",
    ),
    (
        "eval-base-missing",
        "eval {run} --base model.path=/no/model",
        "model error: model '/no/model' is neither a built-in asset ['smollm2-135m', 'tiny', 'tiny-qwen2', 'tiny-sft'] "
        "(or 'tiny-sft-<N>') nor an existing local folder (/no/model does not exist; no hub downloads)",
    ),
    (
        "eval-bad-engine",
        "eval {run} --engine sglang",
        "usage error: argument --engine: invalid choice: 'sglang' (choose from 'hf', 'vllm') (see rlbal eval --help)",
    ),
    (
        "plot-bad-axis",
        "plot {run} --x time",
        "usage error: argument --x: invalid choice: 'time' (choose from 'step', 'wall') (see rlbal plot --help)",
    ),
    (
        "assets-negative-sft",
        "assets tiny --sft-steps -1",
        "input error: --sft-steps must be >= 0 and applies to the tiny models only (got -1 for 'tiny')",
    ),
    (
        "assets-sft-not-tiny",
        "assets smollm2-135m --sft-steps 5",
        "input error: --sft-steps must be >= 0 and applies to the tiny models only (got 5 for 'smollm2-135m')",
    ),
    (
        "assets-unknown",
        "assets tiny-gpt",
        "usage error: argument what: invalid choice: 'tiny-gpt' (choose from 'tiny', 'tiny-qwen2', 'tiny-sft', "
        "'smollm2-135m', 'where') (see rlbal assets --help)",
    ),
]
# `rlbal plot` reports its own input errors in one line of its own ("rlbal plot: ...").
PLOT = [
    ("plot-missing-run", "plot {root}/nope", "rlbal plot: not a directory: {root}/nope"),
    ("plot-smooth", "plot {run} --smooth 1.5", "rlbal plot: --smooth must be in [0, 1), got 1.5"),
]
