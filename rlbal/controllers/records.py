"""Plain records the controllers take and return, the loss-signal vocabulary, and checkpoint helpers.

Everything here is numpy + stdlib so any trainer can build these records:

    PromptResult   what the controllers observe after scoring and the update (one row per prompt)
    Allocation     what `Controllers.decide` returns before generation (bin, advantage weight, rollout count)

Loss signals (`LOSS_SIGNALS`): the per-prompt number Prompt-GDRO scores bins by and Rollout-GDRO feeds its
arms. The trainer computes it and passes it in `PromptResult.loss_signal`:

    surrogate       released code: token-mean of max(-A*r, -A*clip(r)) per response with the *unweighted*
                    advantages, averaged over the prompt's responses (`clipped_surrogate_signal` is the
                    numpy reference). GRPO advantages are centred per prompt, so at ratio 1 it is exactly 0
                    per prompt: bins then differ only through clipping / off-policy ratio drift.
    surrogate_kl    paper Eq. 6: surrogate + beta_KL * KL(pi_theta || pi_ref) on the sampled tokens.
    failure_rate    1 - n_correct / n: the share of wrong responses (high on hard prompts).
    neg_reward      -mean reward (equal to failure_rate - 1 for 0/1 rewards; differs for shaped rewards).
    reward_variance unbiased within-prompt variance of the rewards (p(1-p) n/(n-1) for 0/1 rewards):
                    high on prompts whose groups carry GRPO signal.
    neg_sq_stderr   -reward_variance / n: minus the squared standard error of the prompt's mean reward. As
                    Rollout-GDRO arm feedback its Lagrangian best response is the square-root rule.

The reward-derived ones are computed by `reward_signal`; the surrogate ones by the learner.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import zlib
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

LossSignal = Literal["surrogate", "surrogate_kl", "failure_rate", "neg_reward", "reward_variance", "neg_sq_stderr"]
LOSS_SIGNALS: tuple[str, ...] = get_args(LossSignal)
REWARD_SIGNALS: tuple[str, ...] = ("failure_rate", "neg_reward", "reward_variance", "neg_sq_stderr")


def _column(owner: str, name: str, value: Any, dtype: Any, n: int | None) -> np.ndarray:
    arr = np.ascontiguousarray(value, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{owner}.{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{owner}.{name} has {arr.shape[0]} entries, expected {n}")
    return arr


def _columns(record: Any, spec: dict[str, Any]) -> int:
    """Cast every named field to a 1-D array of its dtype (in place) and check they align; returns N."""
    n = None
    for name, dtype in spec.items():
        arr = _column(type(record).__name__, name, getattr(record, name), dtype, n)
        object.__setattr__(record, name, arr)
        n = arr.shape[0]
    return int(n or 0)


@dataclass(frozen=True)
class PromptResult:
    """Per-prompt outcome of one step, built by the trainer after scoring and the policy update.

    ids:         (N,) int64 stable dense prompt id (dataset index)
    bins:        (N,) int64 class each prompt was decided with (Allocation.bins)
    n_rollouts:  (N,) int64 responses generated for the prompt (>= 1)
    n_correct:   (N,) int64 correct responses among them (0 <= n_correct <= n_rollouts)
    reward_mean: (N,) float64 mean reward over the prompt's responses
    loss_signal: (N,) float64 the chosen LOSS_SIGNALS value, averaged over the prompt's responses (read only
                 where `trained`: a group dropped by online filtering has no update and no surrogate)
    trained:     (N,) bool whether the group joined the training batch (None = all). Every generated and
                 scored group is observed: the classifier and Rollout-GDRO read all of them, Prompt-GDRO
                 (whose signal is about the update) only the trained ones.
    """

    ids: np.ndarray
    bins: np.ndarray
    n_rollouts: np.ndarray
    n_correct: np.ndarray
    reward_mean: np.ndarray
    loss_signal: np.ndarray
    trained: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.trained is None:
            object.__setattr__(self, "trained", np.ones(np.shape(self.ids), bool))
        spec = {
            "ids": np.int64,
            "bins": np.int64,
            "n_rollouts": np.int64,
            "n_correct": np.int64,
            "reward_mean": np.float64,
            "loss_signal": np.float64,
            "trained": bool,
        }
        _columns(self, spec)
        if self.ids.size and self.ids.min() < 0:
            raise ValueError(f"PromptResult.ids must be >= 0, got {self.ids.min()}")
        if self.bins.size and self.bins.min() < 0:
            raise ValueError(f"PromptResult.bins must be >= 0, got {self.bins.min()}")
        if self.n_rollouts.size and self.n_rollouts.min() < 1:
            raise ValueError(f"PromptResult.n_rollouts must be >= 1, got {self.n_rollouts.min()}")
        if np.any((self.n_correct < 0) | (self.n_correct > self.n_rollouts)):
            raise ValueError("PromptResult.n_correct must lie in [0, n_rollouts] for every prompt")
        if not np.all(np.isfinite(self.loss_signal[self.trained])):
            raise ValueError("PromptResult.loss_signal must be finite for every trained prompt")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def select(self, mask) -> PromptResult:
        """The rows where `mask` (N,) bool is set."""
        m = np.asarray(mask, bool)
        return PromptResult(
            self.ids[m],
            self.bins[m],
            self.n_rollouts[m],
            self.n_correct[m],
            self.reward_mean[m],
            self.loss_signal[m],
            self.trained[m],
        )

    @classmethod
    def from_responses(
        cls, ids, bins, prompt_index_R, correct_R, reward_R, *, signal: str = "failure_rate", loss_R=None, trained=None
    ) -> PromptResult:
        """Aggregate per-response arrays (R responses of N prompts) into one row per prompt.

        prompt_index_R: (R,) position 0..N-1 of each response's prompt in `ids`
        correct_R:      (R,) bool correctness of each response
        reward_R:       (R,) float reward of each response
        loss_R:         (R,) per-response signal (required for 'surrogate' / 'surrogate_kl'); averaged per prompt
                        (only trained prompts need finite values)
        trained:        (N,) bool, which prompts joined the training batch (None = all)
        """
        ids_N = np.asarray(ids, np.int64)
        idx_R = np.asarray(prompt_index_R, np.int64)
        n_N = np.bincount(idx_R, minlength=ids_N.size)
        reward_R = np.asarray(reward_R, np.float64)
        mean_N = np.bincount(idx_R, reward_R, minlength=ids_N.size) / np.maximum(n_N, 1)
        n_correct_N = np.bincount(idx_R, np.asarray(correct_R, np.float64), minlength=ids_N.size).astype(np.int64)
        if loss_R is not None:
            value_N = np.bincount(idx_R, np.asarray(loss_R, np.float64), minlength=ids_N.size) / np.maximum(n_N, 1)
        else:
            sq_N = np.bincount(idx_R, (reward_R - mean_N[idx_R]) ** 2, minlength=ids_N.size)
            var_N = sq_N / np.maximum(n_N - 1, 1)  # unbiased; 0 for a single response
            value_N = reward_signal(signal, n_correct_N, n_N, mean_N, var_N)
        return cls(ids_N, bins, n_N, n_correct_N, mean_N, value_N, trained)


def reward_signal(name: str, n_correct_N, n_rollouts_N, reward_mean_N, reward_var_N) -> np.ndarray:
    """(N,) a reward-derived loss signal from per-prompt counts, mean and unbiased variance of the rewards.

    >>> reward_signal("failure_rate", [1, 4], [4, 4], [0.25, 1.0], [0.25, 0.0]).tolist()
    [0.75, 0.0]
    >>> reward_signal("neg_sq_stderr", [1, 4], [4, 4], [0.25, 1.0], [0.25, 0.0]).tolist()
    [-0.0625, -0.0]
    """
    n_N = np.asarray(n_rollouts_N, np.float64)
    if name == "failure_rate":
        return 1.0 - np.asarray(n_correct_N, np.float64) / n_N
    if name == "neg_reward":
        return -np.asarray(reward_mean_N, np.float64)
    if name == "reward_variance":
        return np.asarray(reward_var_N, np.float64).copy()
    if name == "neg_sq_stderr":
        return -np.asarray(reward_var_N, np.float64) / n_N
    raise ValueError(
        f"reward_signal: {name!r} is not computed from rewards; valid names: {REWARD_SIGNALS} "
        f"(the learner computes 'surrogate' and 'surrogate_kl')"
    )


def clipped_surrogate_signal(adv_R, ratio_RL, mask_RL, clip_low: float, clip_high: float) -> np.ndarray:
    """(R,) the released code's per-response signal: token-mean of max(-A*r, -A*clip(r, 1-lo, 1+hi)).

    adv_R: (R,) unweighted advantage per response; ratio_RL, mask_RL: (R, L) per-token ratio and 0/1 mask.
    numpy reference of what the learner computes in torch (a response with no loss token gets 0).
    """
    adv_R1 = np.asarray(adv_R, np.float64)[:, None]
    ratio_RL = np.asarray(ratio_RL, np.float64)
    mask_RL = np.asarray(mask_RL, np.float64)
    loss_RL = np.maximum(-adv_R1 * ratio_RL, -adv_R1 * np.clip(ratio_RL, 1.0 - clip_low, 1.0 + clip_high))
    return (loss_RL * mask_RL).sum(1) / np.maximum(mask_RL.sum(1), 1.0)


@dataclass(frozen=True)
class Allocation:
    """What the controllers decided for a batch, before generation (aligned with the batch's prompts).

    ids:     (N,) int64 prompt ids, as passed to `decide`
    bins:    (N,) int64 class of each prompt (history up to the previous step)
    weights: (N,) float64 Prompt-GDRO advantage multiplier of this round (1 when Prompt-GDRO is off or samples
             instead); the driver recomputes it over the trained batch (`Controllers.batch_weights`)
    counts:  (N,) int64 rollouts to generate for each prompt
    """

    ids: np.ndarray
    bins: np.ndarray
    weights: np.ndarray
    counts: np.ndarray

    def __post_init__(self) -> None:
        _columns(self, {"ids": np.int64, "bins": np.int64, "weights": np.float64, "counts": np.int64})
        if self.counts.size and self.counts.min() < 1:
            raise ValueError(f"Allocation.counts must be >= 1, got {self.counts.min()}")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def total(self) -> int:
        """Rollouts the batch costs."""
        return int(self.counts.sum())


# ---- checkpoint helpers: JSON-serialisable state with config checks -------------------------------------


def config_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as the JSON structure it round-trips to (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def check_state(state: dict[str, Any], kind: str, expected: dict[str, Any]) -> None:
    """Raise ValueError unless `state` is a `kind` checkpoint whose identity fields equal `expected`."""
    if state.get("kind") != kind:
        raise ValueError(f"expected a {kind!r} checkpoint, got kind={state.get('kind')!r}")
    saved = json.loads(json.dumps(state.get("identity")))
    current = json.loads(json.dumps(expected))
    if saved != current:
        diffs = _diff(saved or {}, current)
        raise ValueError(f"{kind} checkpoint comes from a differently configured controller: {diffs}")


def _diff(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> str:
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<missing>"), current.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.append(_diff(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: saved={a!r}, current={b!r}")
    return "; ".join(s for s in out if s)


def encode_array(arr: np.ndarray) -> dict[str, Any]:
    """A compact JSON form of a numpy array: dtype, shape and zlib-compressed base64 bytes."""
    arr = np.ascontiguousarray(arr)
    raw = zlib.compress(arr.tobytes(), 1)
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "zlib_b64": base64.b64encode(raw).decode("ascii")}


def decode_array(obj: dict[str, Any]) -> np.ndarray:
    """Inverse of `encode_array` (a writable copy)."""
    raw = zlib.decompress(base64.b64decode(obj["zlib_b64"]))
    return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's bit_generator state (plain ints and strings: JSON-serialisable)."""
    return json.loads(json.dumps(rng.bit_generator.state))


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    """A generator continuing exactly where `rng_state` was taken."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def class_names(num_bins: int, exclude_extremes: bool = False, unseen_class: bool = False) -> tuple[str, ...]:
    """Names of the classifier's classes in index order: bin_0 (hardest) ... bin_{B-1}, then the extras."""
    extra = (("excluded",) if exclude_extremes else ()) + (("unseen",) if unseen_class else ())
    return tuple(f"bin_{b}" for b in range(num_bins)) + extra
