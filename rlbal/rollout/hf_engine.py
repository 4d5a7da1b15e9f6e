"""transformers rollout engine: batched `generate` with per-prompt rollout counts.

The fallback where vLLM is absent (any machine; the GPU path of the lent H100, which has no vLLM).
Each prompt is repeated counts[i] times, rows are sorted by prompt length and cut into a few
left-padded `generate` calls of at most `max_batch_tokens` (prompt + new) tokens, KV cache on.

Per-token quantities come from two small hooks inside `generate`, so no Python runs per token and
no (B, T, V) score tensor is kept: the last logits processor keeps log_softmax of the processed
scores of the current step (B, V); the stopping criterion, which runs after the token is sampled,
gathers the sampled token's logprob from it and records the step at which each row finished (EOS
or a stop string), which separates "stop" from "length" even when pad == EOS.

Logprobs are those of the distribution actually sampled from, like vLLM's `processed_logprobs`:
log_softmax(logits / T) restricted to the top-k / top-p set when those are on (full vocabulary
with top_k=0, top_p=1); greedy (T=0) gives log_softmax(logits).

    engine = HFEngine(tiny_model())
    result = engine.generate([[5, 6, 7]], counts=[4], sampling=SamplingSpec(max_new_tokens=16))

`share_module=learner_model` generates with the learner's own module (colocated, no copy): then
`update_weights` has nothing to move and returns 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    StopStringCriteria,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from rlbal.rollout.engine import Completion, GenerationResult, SamplingSpec, validate_request
from rlbal.rollout.weight_sync import Stopwatch, SyncStats, state_nbytes, sync_metrics, tied_aliases, with_tied_aliases


class _StepTracker:
    """Per-step state shared by the two `generate` hooks below."""

    def __init__(self, batch: int, eos_ids: torch.Tensor, stop_criterion: object | None) -> None:
        self.eos_ids = eos_ids
        self.stop_criterion = stop_criterion
        self.pending_BV: torch.Tensor | None = None  # log_softmax of this step's processed scores
        self.logp_steps: list[torch.Tensor] = []  # (B,) per step
        self.end_B = torch.full((batch,), -1, dtype=torch.long, device=eos_ids.device)

    def keep_scores(self, scores_BV: torch.Tensor) -> None:
        self.pending_BV = torch.log_softmax(scores_BV.float(), dim=-1)

    def after_sample(self, input_ids_BL: torch.Tensor) -> torch.Tensor:
        tok_B = input_ids_BL[:, -1]
        self.logp_steps.append(self.pending_BV.gather(1, tok_B[:, None])[:, 0])
        done_B = torch.isin(tok_B, self.eos_ids)
        if self.stop_criterion is not None:
            done_B = done_B | self.stop_criterion(input_ids_BL, None)
        step = len(self.logp_steps) - 1
        self.end_B = torch.where((self.end_B < 0) & done_B, step, self.end_B)
        return done_B


class _KeepScores(LogitsProcessor):
    """Last logits processor: hands the final scores of the step to the tracker, unchanged."""

    def __init__(self, tracker: _StepTracker) -> None:
        self.tracker = tracker

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.tracker.keep_scores(scores)
        return scores


class _AfterSample(StoppingCriteria):
    """Runs once the step's token is appended: logprob gather and finish bookkeeping."""

    def __init__(self, tracker: _StepTracker) -> None:
        self.tracker = tracker

    def __call__(self, input_ids: torch.Tensor, scores: object, **kwargs: object) -> torch.Tensor:
        return self.tracker.after_sample(input_ids)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids_BP, mask_BP): prompts right-aligned, padded on the left.

    >>> ids, mask = left_pad([[1, 2], [3]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[1, 2], [0, 3]], [[1, 1], [0, 1]])
    """
    lens_B = torch.tensor([len(p) for p in prompts])
    width = int(lens_B.max())
    ids_BP = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids_BP[i, width - len(p) :] = torch.as_tensor(p, dtype=torch.long)
    return ids_BP, (torch.arange(width) >= width - lens_B[:, None]).long()


def chunk_rows(lengths_R: np.ndarray, new_tokens: int, max_batch_tokens: int) -> list[np.ndarray]:
    """Row indices per `generate` call: shortest prompts first, each call <= max_batch_tokens padded tokens.

    >>> [c.tolist() for c in chunk_rows(np.array([5, 1, 3]), new_tokens=3, max_batch_tokens=12)]
    [[1, 2], [0]]
    """
    order = np.argsort(lengths_R, kind="stable")
    chunks, start = [], 0
    for stop in range(1, len(order) + 1):
        width = lengths_R[order[stop - 1]] + new_tokens  # sorted: the last row is the widest
        if stop - start > 1 and (stop - start) * width > max_batch_tokens:
            chunks.append(order[start : stop - 1])
            start = stop - 1
    chunks.append(order[start:])
    return [c for c in chunks if len(c)]


def shared_prefill(model, ids_BP: torch.Tensor, mask_BP: torch.Tensor):
    """The KV cache of every prompt column but the last, computed once per distinct prompt and copied to each of
    its rows, or None when no prompt repeats (a group's rollouts share their prompt: G rows, one prefill).

    `generate` then runs only the last prompt column and the new tokens. Positions follow `generate`'s own
    convention for left padding (cumulative mask - 1, 0 on padding), so the cache holds what `generate`'s
    batched prefill would compute, up to floating-point summation order.
    """
    from transformers import DynamicCache

    if ids_BP.shape[1] < 2:
        return None
    uniq_UP, row_B = torch.unique(ids_BP, dim=0, return_inverse=True)  # left-padded to one width: equal rows
    if len(uniq_UP) == len(ids_BP):
        return None
    first_U = torch.full((len(uniq_UP),), len(row_B), dtype=torch.long, device=row_B.device)
    first_U = first_U.scatter_reduce(0, row_B, torch.arange(len(row_B), device=row_B.device), reduce="amin")
    mask_UP = mask_BP.index_select(0, first_U)
    pos_UP = (mask_UP.long().cumsum(-1) - 1).masked_fill(mask_UP == 0, 0)
    cache = DynamicCache(config=model.config)
    model(
        input_ids=uniq_UP[:, :-1],
        attention_mask=mask_UP[:, :-1],
        position_ids=pos_UP[:, :-1],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,  # the logits are not needed; generate computes the last column's
    )
    cache.batch_select_indices(row_B)
    return cache


class HFEngine:
    """transformers `generate` behind the `RolloutEngine` contract (see the module docstring)."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str = "auto",
        seed: int = 0,
        device: str | None = None,
        max_batch_tokens: int = 65536,
        share_module: torch.nn.Module | None = None,
        max_model_len: int | None = None,
    ) -> None:
        if max_batch_tokens < 1:
            raise ValueError(f"HFEngine.max_batch_tokens must be >= 1, got {max_batch_tokens}")
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        self.shared = share_module is not None
        default_device = (
            next(share_module.parameters()).device if self.shared else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.device = torch.device(device or default_device)
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        self.model = (
            share_module
            if self.shared
            else AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch_dtype).to(self.device).eval()
        )
        self.seed, self.max_batch_tokens = seed, max_batch_tokens
        self.max_model_len = max_model_len or self.model.config.max_position_embeddings
        self._calls = 0
        ids = self.model.generation_config
        eos = ids.eos_token_id if ids.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = torch.as_tensor(eos if isinstance(eos, list) else [eos], dtype=torch.long)
        pad = ids.pad_token_id if ids.pad_token_id is not None else self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.eos_ids[0])
        # Only token ids: nothing from a checkpoint's generation_config.json may change the distribution.
        self._token_ids = dict(eos_token_id=eos, pad_token_id=self.pad_id, bos_token_id=ids.bos_token_id)
        self.aliases = tied_aliases(self.model)
        self.last_sync: SyncStats | None = None

    # ------------------------------------------------------------------ generation

    def generate(
        self, prompt_token_ids: Sequence[Sequence[int]], counts: Sequence[int], sampling: SamplingSpec
    ) -> GenerationResult:
        validate_request(prompt_token_ids, counts, sampling, self.max_model_len)
        with Stopwatch() as sw:
            prompt_R = np.repeat(np.arange(len(counts)), counts)  # prompt index per row, grouped by prompt
            lengths_R = np.array([len(prompt_token_ids[i]) for i in prompt_R], dtype=np.int64)
            seed = sampling.seed if sampling.seed is not None else self.seed * 1_000_003 + self._calls
            self._calls += 1
            rows: list[tuple[list[int], list[float], bool]] = [([], [], False)] * len(prompt_R)
            for k, chunk in enumerate(chunk_rows(lengths_R, sampling.max_new_tokens, self.max_batch_tokens)):
                outs = self._generate_rows([prompt_token_ids[prompt_R[r]] for r in chunk], sampling, seed + k)
                for r, out in zip(chunk, outs):
                    rows[r] = out
            texts = self.tokenizer.batch_decode([r[0] for r in rows], skip_special_tokens=True)
            completions = [
                Completion(int(p), toks, lps, text, "stop" if stopped else "length")
                for p, (toks, lps, stopped), text in zip(prompt_R, rows, texts)
            ]
        return GenerationResult(completions, [list(p) for p in prompt_token_ids], {"generate": sw.seconds})

    @torch.inference_mode()
    def _generate_rows(
        self, prompts: list[Sequence[int]], sampling: SamplingSpec, seed: int
    ) -> list[tuple[list[int], list[float], bool]]:
        """One left-padded `generate`: (tokens, logprobs, stopped) per row."""
        ids_BP, mask_BP = (t.to(self.device) for t in left_pad(prompts, self.pad_id))
        tracker = _StepTracker(len(prompts), self.eos_ids.to(self.device), self._stop_criterion(sampling.stop))
        processors = LogitsProcessorList([*_warpers(sampling), _KeepScores(tracker)])
        # Our warpers replace generate's own (T = 1, top-k/top-p off), so the tracker sees the final scores.
        knobs = dict(do_sample=False) if sampling.greedy else dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
        config = GenerationConfig(**self._token_ids, **knobs, max_new_tokens=sampling.max_new_tokens, use_cache=True)
        with (
            torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []),
            _eval_mode(self.model, GenerationConfig(**self._token_ids)),
        ):
            cache = shared_prefill(self.model, ids_BP, mask_BP)
            torch.manual_seed(seed)
            out_BL = self.model.generate(
                input_ids=ids_BP,
                attention_mask=mask_BP,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([_AfterSample(tracker)]),
                **({} if cache is None else {"past_key_values": cache}),
            )
        new_BT = out_BL[:, ids_BP.shape[1] :]
        steps = new_BT.shape[1]
        logp_BT = torch.stack(tracker.logp_steps, dim=1)[:, :steps]
        length_B = torch.where(tracker.end_B >= 0, tracker.end_B + 1, steps).tolist()
        toks, lps, stopped = new_BT.tolist(), logp_BT.tolist(), (tracker.end_B >= 0).tolist()
        return [(t[:n], lp[:n], s) for t, lp, n, s in zip(toks, lps, length_B, stopped)]

    def _stop_criterion(self, stop: tuple[str, ...]) -> object | None:
        if not stop:
            return None
        return StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(stop))

    # ------------------------------------------------------------------ scoring and weights

    @torch.inference_mode()
    def score(
        self, prompt_token_ids: Sequence[Sequence[int]], completion_token_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """log p(completion token | prefix) under the model (T = 1, full vocabulary), one list per pair."""
        seqs = [list(p) + list(c) for p, c in zip(prompt_token_ids, completion_token_ids, strict=True)]
        width = max(map(len, seqs))
        out: list[list[float]] = []
        rows_per_call = max(1, self.max_batch_tokens // width)
        for start in range(0, len(seqs), rows_per_call):
            part = seqs[start : start + rows_per_call]
            ids_BL = torch.full((len(part), width), self.pad_id, dtype=torch.long)
            for i, s in enumerate(part):
                ids_BL[i, : len(s)] = torch.as_tensor(s)  # right padding: causal attention never sees it
            with _eval_mode(self.model):
                logits_BLV = self.model(input_ids=ids_BL.to(self.device)).logits.float()
            tgt_BL = ids_BL[:, 1:].to(self.device)
            logp_BL = logits_BLV[:, :-1].gather(-1, tgt_BL[..., None])[..., 0] - logits_BLV[:, :-1].logsumexp(-1)
            rows = logp_BL.tolist()
            for i, row in enumerate(rows):
                p, c = len(prompt_token_ids[start + i]), len(completion_token_ids[start + i])
                out.append(row[p - 1 : p - 1 + c])
        return out

    @torch.no_grad()
    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> float:
        """Copy (a subset of) the learner's parameters in; unknown names raise. Returns seconds."""
        with Stopwatch() as sw:
            if not self.shared:  # a shared module already holds the learner's weights
                own = self.model.state_dict(keep_vars=True)
                unknown = sorted(set(state_dict) - set(own))
                if unknown:
                    raise ValueError(
                        f"update_weights: {len(unknown)} names the model does not have, e.g. {unknown[:3]}"
                    )
                for name, tensor in with_tied_aliases(state_dict, self.aliases).items():
                    own[name].copy_(tensor)
        nbytes = 0 if self.shared else state_nbytes(state_dict)
        self.last_sync = SyncStats(sw.seconds, nbytes, buckets=1)
        return sw.seconds

    def sleep(self) -> None:
        """Move an owned model off the accelerator (no-op on CPU or for a shared module)."""
        if self.device.type == "cuda" and not self.shared:
            self.model.to("cpu")
            torch.cuda.empty_cache()

    def wake(self) -> None:
        if self.device.type == "cuda" and not self.shared:
            self.model.to(self.device)

    def metrics(self) -> dict[str, float]:
        return sync_metrics(self.last_sync)

    def shutdown(self) -> None:
        """Nothing outlives this object: the model is freed with it."""


def _warpers(sampling: SamplingSpec) -> list[object]:
    """Temperature, then top-k, then top-p: vLLM's order."""
    if sampling.greedy:
        return []
    out: list[object] = [TemperatureLogitsWarper(sampling.temperature)] if sampling.temperature != 1.0 else []
    if sampling.top_k > 0:
        out.append(TopKLogitsWarper(top_k=sampling.top_k))
    if sampling.top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=sampling.top_p))
    return out


class _eval_mode:
    """eval() (and a neutral generation_config, if given) for one `generate` or `score`, then restore
    both: a shared learner module may be in train mode and carry its own generation defaults."""

    def __init__(self, model: torch.nn.Module, gen_config: object | None = None) -> None:
        self.model, self.gen_config = model, gen_config

    def __enter__(self) -> None:
        self.was_training, self.saved = self.model.training, self.model.generation_config
        self.model.eval()
        if self.gen_config is not None:
            self.model.generation_config = self.gen_config

    def __exit__(self, *exc: object) -> None:
        self.model.generation_config = self.saved
        self.model.train(self.was_training)
