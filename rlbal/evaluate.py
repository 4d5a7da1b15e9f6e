"""Held-out evaluation: unbiased pass@k, mean@k and greedy pass@1, overall and per difficulty level / task.

For each prompt, k completions are sampled in ONE `generate` call (counts = [k] * N) and one greedy
completion in a second call; all are scored by the reward executor. With c of the n = k samples correct,

    pass@j = 1 - C(n - c, j) / C(n, j)      (Chen et al. 2021, unbiased; j = 1, 2, 4, ..., k)
    mean@k = c / n                          (= pass@1, the average correctness)

averaged over prompts. Keys are `eval/pass@4`, `eval/mean@4`, `eval/greedy/pass@1`, and the same below
`eval/level_<d>/` for each known difficulty level and `eval/task_<name>/` when several tasks are mixed.
`run_eval` also returns every scored completion (`EvalSamples`) so the numbers can be recomputed;
`eval_curve` reads a run's eval rows back. The `rlbal eval` command is `rlbal.eval_cli`; the held-out prompts
of a run's config come from `rlbal.assemble.eval_prompts`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # annotations only: rlbal.rollout / rlbal.data / reward are imported where used
    from reward.executor import RewardExecutor
    from rlbal.data.records import PromptBatch
    from rlbal.rollout.engine import RolloutEngine


def pass_at_k(n_N: Any, c_N: Any, k: int) -> np.ndarray:
    """(N,) unbiased pass@k per problem: n samples, c of them correct.

    1 - C(n-c, k) / C(n, k) is computed as 1 - prod_{i=n-c+1..n} (1 - k/i): no large binomials, so
    it stays exact for n in the thousands; problems with n - c < k have pass@k = 1 (every k-subset holds
    a correct sample).

    >>> pass_at_k([4], [1], 2)   # 1 - C(3,2)/C(4,2) = 1 - 3/6
    array([0.5])
    >>> pass_at_k([8, 8, 8], [0, 8, 7], 2)
    array([0., 1., 1.])
    """
    n_N = np.asarray(n_N, dtype=np.int64)
    c_N = np.asarray(c_N, dtype=np.int64)
    if n_N.shape != c_N.shape or n_N.ndim != 1:
        raise ValueError(f"pass_at_k: n and c must be 1-D of one shape, got {n_N.shape} and {c_N.shape}")
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got {k}")
    if n_N.size and (n_N.min() < k or c_N.min() < 0 or (c_N > n_N).any()):
        raise ValueError(
            f"pass_at_k: need n >= k={k} and 0 <= c <= n, got n in [{n_N.min()}, {n_N.max()}], "
            f"c in [{c_N.min()}, {c_N.max()}]"
        )
    j_J = np.arange(int(c_N.max(initial=0)))  # (J,) position in the product; prompt i uses its first c_i terms
    i_NJ = (n_N - c_N + 1)[:, None] + j_J[None, :]  # factor index n-c+1 .. n
    factor_NJ = np.where(j_J[None, :] < c_N[:, None], 1.0 - k / i_NJ, 1.0)
    out_N = 1.0 - factor_NJ.prod(axis=1)
    out_N[n_N - c_N < k] = 1.0  # the product has a factor <= 0 there; the exact value is 1
    return out_N


def report_ks(k: int) -> list[int]:
    """The j of the pass@j columns: powers of two below k, and k.

    >>> report_ks(8), report_ks(6), report_ks(1)
    ([1, 2, 4, 8], [1, 2, 4, 6], [1])
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return sorted({2**e for e in range(k.bit_length()) if 2**e < k} | {k})


@dataclass
class EvalSamples:
    """Every scored completion of one evaluation: k sampled plus one greedy per prompt, M = N * (k + 1) rows.

    prompt_M:    (M,) int64 position of the completion's prompt in the evaluated batch
    greedy_M:    (M,) bool, True for the greedy completion
    correct_M:   (M,) bool, the reward executor's correctness
    score_M:     (M,) float64 reward
    length_M:    (M,) int64 completion tokens
    truncated_M: (M,) bool, finish_reason == "length"
    outcomes:    (M,) reward outcome names (correct, wrong, unparsable, timeout, error)
    texts:       (M,) completion texts
    n_prompts:   N;  k: samples per prompt
    """

    prompt_M: np.ndarray
    greedy_M: np.ndarray
    correct_M: np.ndarray
    score_M: np.ndarray
    length_M: np.ndarray
    truncated_M: np.ndarray
    outcomes: list[str]
    texts: list[str]
    n_prompts: int
    k: int

    def __post_init__(self) -> None:
        m = len(self.prompt_M)
        for name in ("greedy_M", "correct_M", "score_M", "length_M", "truncated_M", "outcomes", "texts"):
            if len(getattr(self, name)) != m:
                raise ValueError(f"EvalSamples.{name} has {len(getattr(self, name))} rows, expected {m}")
        sampled_N = np.bincount(self.prompt_M[~self.greedy_M], minlength=self.n_prompts)
        greedy_N = np.bincount(self.prompt_M[self.greedy_M], minlength=self.n_prompts)
        if len(sampled_N) != self.n_prompts or (sampled_N != self.k).any() or (greedy_N != 1).any():
            raise ValueError(
                f"EvalSamples: every one of {self.n_prompts} prompts needs k={self.k} sampled and "
                f"1 greedy completion; got sampled counts {sampled_N.tolist()}, "
                f"greedy {greedy_N.tolist()}"
            )

    def correct_matrix(self) -> np.ndarray:
        """(N, k) bool: correctness of prompt i's sampled completions, in generation order."""
        sampled_M = ~self.greedy_M
        order = np.argsort(self.prompt_M[sampled_M], kind="stable")
        return self.correct_M[sampled_M][order].reshape(self.n_prompts, self.k)

    def greedy_correct(self) -> np.ndarray:
        """(N,) bool: correctness of prompt i's greedy completion."""
        rows_N = np.flatnonzero(self.greedy_M)[np.argsort(self.prompt_M[self.greedy_M], kind="stable")]
        return self.correct_M[rows_N]


@dataclass
class EvalResult:
    metrics: dict[str, float]  # flat `eval/...` floats
    samples: EvalSamples


def accuracy_metrics(correct_NK: np.ndarray, greedy_N: np.ndarray) -> dict[str, float]:
    """pass@j (j in report_ks(k)), mean@k, greedy pass@1 and the prompt count of one group, keys unprefixed.

    >>> accuracy_metrics(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], bool), np.array([True, False]))
    {'pass@1': 0.125, 'pass@2': 0.25, 'pass@4': 0.5, 'mean@4': 0.125, 'greedy/pass@1': 0.5, 'n_prompts': 2.0}
    """
    n_prompts, k = correct_NK.shape
    n_N = np.full(n_prompts, k)
    c_N = correct_NK.sum(axis=1)
    out = {f"pass@{j}": float(pass_at_k(n_N, c_N, j).mean()) for j in report_ks(k)}
    out[f"mean@{k}"] = float(correct_NK.mean())
    out["greedy/pass@1"] = float(greedy_N.mean())
    out["n_prompts"] = float(n_prompts)
    return out


def level_name(d: float | str) -> str:
    """`level_2` for 2.0, `level_0.5` for 0.5, `level_very_hard` for the string level 'very hard'."""
    if isinstance(d, str):
        return "level_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", d)
    return f"level_{int(d)}" if float(d).is_integer() else f"level_{d:g}"


def prompt_groups(difficulty_N: np.ndarray, metas: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Group name -> (N,) bool mask: '' = all prompts, `level_<d>` per known difficulty, `task_<t>` when the
    prompts come from several tasks (metas['task'])."""
    groups = {"": np.ones(len(difficulty_N), dtype=bool)}
    for d in np.unique(difficulty_N[np.isfinite(difficulty_N)]):
        mask_N = difficulty_N == d
        label = metas[int(np.argmax(mask_N))].get("difficulty_label")  # a string level ('hard') names its group
        groups[level_name(label if isinstance(label, str) else d)] = mask_N
    tasks = np.array([str(m.get("task", "")) for m in metas])
    if len(set(tasks) - {""}) > 1:
        groups.update({f"task_{t}": tasks == t for t in sorted(set(tasks) - {""})})
    return groups


def eval_metrics(samples: EvalSamples, difficulty_N: np.ndarray, metas: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Every `eval/` metric of one evaluation: accuracy per group, plus length, truncation and outcome shares."""
    correct_NK = samples.correct_matrix()
    greedy_N = samples.greedy_correct()
    out: dict[str, float] = {}
    for group, mask_N in prompt_groups(np.asarray(difficulty_N, dtype=np.float64), metas).items():
        prefix = f"eval/{group}/" if group else "eval/"
        out.update({prefix + key: v for key, v in accuracy_metrics(correct_NK[mask_N], greedy_N[mask_N]).items()})
    sampled_M = ~samples.greedy_M
    out["eval/len_mean"] = float(samples.length_M[sampled_M].mean())
    out["eval/truncated_frac"] = float(samples.truncated_M[sampled_M].mean())
    out["eval/score_mean"] = float(samples.score_M[sampled_M].mean())
    names, counts = np.unique(np.array(samples.outcomes)[sampled_M], return_counts=True)
    out.update({f"eval/outcome/{name}": float(c / sampled_M.sum()) for name, c in zip(names, counts)})
    return out


# ----------------------------------------------------------------------------- sampling and scoring


def run_eval(
    engine: RolloutEngine,
    prompts: PromptBatch,
    reward_executor: RewardExecutor,
    *,
    k: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    stop: tuple[str, ...] = (),
) -> EvalResult:
    """Sample k completions per prompt (one `generate` call) plus one greedy (a second call), score them all
    in one reward call, and compute the `eval/` metrics."""
    from rlbal.rollout.engine import SamplingSpec

    n_prompts = len(prompts.prompt_token_ids)
    if n_prompts == 0:
        raise ValueError("run_eval: no prompts to evaluate")
    if k < 1:
        raise ValueError(f"run_eval: k must be >= 1, got {k}")
    t0 = time.perf_counter()
    spec = SamplingSpec(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, stop=stop, seed=seed)
    sampled = engine.generate(prompts.prompt_token_ids, [k] * n_prompts, spec)
    greedy_spec = SamplingSpec(max_new_tokens=max_new_tokens, temperature=0.0, stop=stop, seed=seed)
    greedy = engine.generate(prompts.prompt_token_ids, [1] * n_prompts, greedy_spec)
    t1 = time.perf_counter()
    comps = list(sampled.completions) + list(greedy.completions)
    prompt_M = np.array([c.prompt_index for c in comps], dtype=np.int64)
    scored = reward_executor.score(
        [c.text for c in comps], [prompts.answers[i] for i in prompt_M], [prompts.metas[i] for i in prompt_M]
    )
    samples = EvalSamples(
        prompt_M=prompt_M,
        greedy_M=np.arange(len(comps)) >= len(sampled.completions),
        correct_M=np.asarray(scored.correct, dtype=bool),
        score_M=np.asarray(scored.scores, dtype=np.float64),
        length_M=np.array([len(c.token_ids) for c in comps], dtype=np.int64),
        truncated_M=np.array([c.finish_reason == "length" for c in comps], dtype=bool),
        outcomes=list(scored.outcomes),
        texts=[c.text for c in comps],
        n_prompts=n_prompts,
        k=k,
    )
    metrics = eval_metrics(samples, prompts.difficulty, prompts.metas)
    metrics["eval/timing/generate"] = t1 - t0
    metrics["eval/timing/score"] = time.perf_counter() - t1
    return EvalResult(metrics, samples)


def evaluate(
    engine: RolloutEngine,
    prompts: PromptBatch,
    reward_executor: RewardExecutor,
    *,
    k: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    stop: tuple[str, ...] = (),
) -> dict[str, float]:
    """The `eval/` metrics of `run_eval` (what the trainer logs)."""
    return run_eval(
        engine,
        prompts,
        reward_executor,
        k=k,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        stop=stop,
    ).metrics


def eval_curve(metrics_path: Path, k: int) -> str:
    """The held-out mean@k over a run's eval steps, overall and per level/task, as a few aligned lines.

    >>> import tempfile; d = Path(tempfile.mkdtemp()) / "m.jsonl"
    >>> _ = d.write_text('{"step": 0, "eval/mean@4": 0.2, "eval/level_1/mean@4": 0.3}\\n'
    ...                  '{"step": 1, "reward/mean": 0.5}\\n'
    ...                  '{"step": 9, "eval/mean@4": 0.25, "eval/level_1/mean@4": 0.4}\\n')
    >>> print(eval_curve(d, 4))
    step  mean@4  level_1
       0   0.200    0.300
       9   0.250    0.400
    """
    key = f"mean@{k}"
    rows = [r for r in map(json.loads, metrics_path.read_text().splitlines()) if f"eval/{key}" in r]
    if not rows:
        return "(no eval rows)"
    groups = sorted(
        {c[len("eval/") : -len(key) - 1] for c in rows[-1] if c.startswith("eval/") and c.endswith("/" + key)} - {""}
    )
    head = f"{'step':>4}  {key:>6}" + "".join(f"  {g:>7}" for g in groups)
    lines = [
        f"{r['step']:>4}  {r[f'eval/{key}']:>6.3f}"
        + "".join(f"  {r.get(f'eval/{g}/{key}', float('nan')):>7.3f}" for g in groups)
        for r in rows
    ]
    return "\n".join([head, *lines])
