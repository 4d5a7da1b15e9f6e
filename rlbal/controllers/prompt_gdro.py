"""Prompt-GDRO: an exponential-weights adversary over difficulty classes that reweights GRPO advantages.

GDRO paper section 3.2 (arXiv 2601.19280). Per class b it keeps a score S_b, an EMA of the per-step mean
loss signal of the class's prompts (optionally divided by the class's share of the batch, with a floor, so
rare but consistently hard classes can compete: the "intensive" margin, not the accumulated one):

    step_b = mean loss of class b this step [/ max(share_b, share_floor)]
    S_b   <- step_b on the first observation of b, else (1 - beta) S_b + beta step_b   (absent classes keep S_b)
    q_b    = (1 - gamma) softmax(eta * clip(S, -C, C))_b + gamma / |U|                 (U: classes considered)

Two realisations as advantage multipliers (`weight_form`):
  'code'  (released code, default): q over the classes present in the batch, each response weighted q_b,
          renormalised to mean 1 over the batch's responses, then capped at omega_max.
  'paper' (Eq. 16): min(exp(eta * clip(S_b)), omega_max), no normaliser (a global scale of the step size).
And one as sampling (`realise='sampling'`): prompts are *drawn* by class, class b with probability q_b
(over the classes holding prompts), uniformly within the class (`Controllers.sample` with a `BinSampler`
over the whole pool; never-observed prompts form the classifier's `unseen` class). The trained batch is
then an unbiased sample of the GDRO objective sum_b q_b L_b itself, so the multipliers are 1; with
`is_weights=True` each prompt is weighted by the exact ratio (pool share of its class) / q_b instead, which
recovers the uniform objective (sampling then only moves compute toward the adversary's classes).

    >>> g = PromptGDRO(PromptGDROConfig(share_norm=False), num_classes=3)
    >>> g.observe(PromptResult(ids=[0, 1, 2], bins=[0, 1, 1], n_rollouts=[4, 4, 4], n_correct=[0, 2, 4],
    ...                        reward_mean=[0.0, 0.5, 1.0], loss_signal=[1.0, 0.5, 0.0]))
    >>> g.scores.tolist()                                # first observation initialises: class 1 = mean(0.5, 0)
    [1.0, 0.25, 0.0]
    >>> # q = 0.99 softmax(0.65 [1, .25]) + .01/2 = [.6183, .3817], / mean .4606
    >>> g.weights([0, 1, 1]).round(4).tolist()
    [1.3425, 0.8287, 0.8287]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from rlbal.controllers.records import PromptResult, check_state, class_names, config_dict

WeightForm = Literal["code", "paper"]
AverageOver = Literal["prompts", "responses"]
Realise = Literal["advantage", "sampling"]
Normalise = Literal["responses", "advantage"]
WEIGHT_FORMS: tuple[str, ...] = get_args(WeightForm)
AVERAGE_OVER: tuple[str, ...] = get_args(AverageOver)
REALISE: tuple[str, ...] = get_args(Realise)


@dataclass(frozen=True)
class PromptGDROConfig:
    """Bin adversary. Defaults: paper / code values (eta 0.65, gamma 0.01, beta 0.12, omega_max 15)."""

    __pydantic_config__ = {"extra": "forbid"}  # unknown keys in a recipe are errors

    eta: float = 0.65
    """Exponential-weights sharpness eta_q."""
    gamma: float = 0.01
    """Uniform mixing (exploration) gamma, over the classes considered."""
    ema_beta: float = 0.12
    """EMA rate beta of the class score (weight of the newest step)."""
    share_norm: bool = False
    """Divide the step's class mean by the class's share of the batch (the released code's 'normalised by class
    share'; the paper calls it optional). Off by default: measured on the quickstart, a class holding 1 of 64
    prompts got its mean failure rate x 50 (floor 0.02), so q went to the rarest classes, their multiplier to
    omega_max and the bulk's to ~0.1: held-out pass@1 fell 0.016 [0.000, 0.035] below GRPO (3 seeds), while
    without it Prompt-GDRO was +0.006 [-0.004, +0.017] (docs/results.md)."""
    share_floor: float = 0.02
    """Floor of that share (paper: 'a small floor', value not given; code: none = 0)."""
    score_clip: float | None = None
    """C: clip scores to [-C, C] before exp (paper uses one but gives no value; code: none). None = off."""
    omega_max: float = 15.0
    """Cap on the advantage multiplier ('max class weight')."""
    weight_form: WeightForm = "code"
    """'code': softmax over present classes, mean 1 over responses, capped. 'paper': min(exp(eta S), omega_max)."""
    normalise: Normalise = "responses"
    """Code form: what the mean-1 normalisation averages over. 'responses' (released code): every response of
    the batch, so weight put on groups without an advantage (all right / all wrong) shrinks the step;
    'advantage': responses weighted by |advantage|, so the update has GRPO's scale and the weights only move
    it between the classes that carry signal."""
    average_over: AverageOver = "prompts"
    """Class mean and share over 'prompts' (paper Eq. 13) or 'responses' (code; differs when counts vary)."""
    realise: Realise = "advantage"
    """'advantage': multiply advantages. 'sampling': draw the step's prompts by class with probability q (needs
    controllers.classifier.unseen='separate'); multipliers are 1 (or importance weights, below)."""
    is_weights: bool = False
    """Sampling only: weight each drawn prompt by (pool share of its class) / q_b, which turns the batch back
    into an estimate of the uniform objective; False trains on the q-weighted GDRO objective."""
    seed: int = 0
    """Seed of the sampler's own RNG (realise='sampling')."""

    def __post_init__(self) -> None:
        for name, allowed in (
            ("weight_form", WEIGHT_FORMS),
            ("average_over", AVERAGE_OVER),
            ("realise", REALISE),
            ("normalise", get_args(Normalise)),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"PromptGDROConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        checks = (
            ("eta", self.eta > 0, "> 0"),
            ("gamma", 0 <= self.gamma <= 1, "in [0, 1]"),
            ("ema_beta", 0 < self.ema_beta <= 1, "in (0, 1]"),
            ("share_floor", 0 <= self.share_floor <= 1, "in [0, 1]"),
            ("score_clip", self.score_clip is None or self.score_clip > 0, "> 0 or None"),
            ("omega_max", self.omega_max >= 1, ">= 1"),
            ("seed", self.seed >= 0, ">= 0"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"PromptGDROConfig.{name} must be {rule}, got {getattr(self, name)!r}")
        if self.is_weights and self.realise != "sampling":
            raise ValueError(
                "PromptGDROConfig.is_weights applies to realise='sampling' only (advantage weights "
                "are the objective's weights themselves)"
            )


# ---- pure pieces ---------------------------------------------------------------------------------------


def class_step_means(bins_N, signal_N, weight_N, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: (C,) weighted mean signal (0 if absent), (C,) share of the total weight, (C,) present mask."""
    w_C = np.bincount(bins_N, weight_N, minlength=num_classes)
    s_C = np.bincount(bins_N, weight_N * signal_N, minlength=num_classes)
    present_C = w_C > 0
    mean_C = np.divide(s_C, w_C, out=np.zeros(num_classes), where=present_C)
    return mean_C, w_C / max(w_C.sum(), 1e-300), present_C


def ema_scores(score_C, seen_C, step_C, present_C, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(C,) new scores and seen mask: first observation initialises, later ones blend, absent keep."""
    blended_C = np.where(seen_C, (1.0 - beta) * score_C + beta * step_C, step_C)
    return np.where(present_C, blended_C, score_C), seen_C | present_C


def class_distribution(score_C, present_C, eta: float, gamma: float, clip: float | None) -> np.ndarray:
    """(C,) q over the present classes (Eq. 15 restricted to U = present); 0 on absent classes."""
    s_C = score_C if clip is None else np.clip(score_C, -clip, clip)
    logit_C = np.where(present_C, eta * s_C, -np.inf)
    p_C = np.exp(logit_C - logit_C.max())
    q_C = (1.0 - gamma) * p_C / p_C.sum() + gamma / np.count_nonzero(present_C)
    return np.where(present_C, q_C, 0.0)


def code_multipliers(q_C, bins_N, counts_N, omega_max: float) -> np.ndarray:
    """(N,) q of each prompt's class, scaled to mean 1 over the responses (counts), then capped."""
    w_N = q_C[bins_N]
    return np.minimum(w_N * counts_N.sum() / (counts_N @ w_N), omega_max)


def paper_multipliers(score_C, bins_N, eta: float, clip: float | None, omega_max: float) -> np.ndarray:
    """(N,) min(exp(eta * clip(S_b)), omega_max) per prompt (Eq. 16); the cap is applied in log space."""
    s_C = score_C if clip is None else np.clip(score_C, -clip, clip)
    return np.exp(np.minimum(eta * s_C, np.log(omega_max)))[bins_N]


def entropy(p_C: np.ndarray) -> float:
    p = p_C[p_C > 0]
    return float(-(p * np.log(p)).sum())


# ---- the controller ------------------------------------------------------------------------------------


class PromptGDRO:
    """Class scores + the realisation chosen in the config. `num_classes` comes from the classifier."""

    def __init__(
        self, config: PromptGDROConfig = PromptGDROConfig(), num_classes: int = 10, names: tuple[str, ...] | None = None
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"PromptGDRO.num_classes must be >= 1, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        self.class_names = names or class_names(num_classes)
        if len(self.class_names) != num_classes:
            raise ValueError(f"PromptGDRO: {len(self.class_names)} class names for {num_classes} classes")
        self.scores = np.zeros(num_classes)
        self.seen = np.zeros(num_classes, bool)
        self._last_count = np.zeros(num_classes)
        self._last_reward = np.zeros(num_classes)
        self._last_mult = np.zeros(num_classes)

    def _bins(self, bins) -> np.ndarray:
        bins_N = np.asarray(bins, np.int64).reshape(-1)
        if bins_N.size and (bins_N.min() < 0 or bins_N.max() >= self.num_classes):
            raise ValueError(
                f"PromptGDRO: bins must lie in [0, {self.num_classes}), got {bins_N.min()}..{bins_N.max()}"
            )
        return bins_N

    def distribution(self, present=None) -> np.ndarray:
        """(C,) current q over the `present` classes ((C,) bool; None = all classes, the paper's Eq. 15)."""
        present_C = np.ones(self.num_classes, bool) if present is None else np.asarray(present, bool)
        c = self.config
        return class_distribution(self.scores, present_C, c.eta, c.gamma, c.score_clip)

    def weights(self, bins, counts=None, adv_mass=None) -> np.ndarray:
        """(N,) advantage multiplier per prompt from its class; counts (N,) rollouts (None = equal); adv_mass (N,)
        the sum of |advantage| over each prompt's responses (used by normalise='advantage'; None = counts)."""
        bins_N = self._bins(bins)
        counts_N = np.ones(bins_N.size) if counts is None else np.asarray(counts, np.float64)
        c = self.config
        if c.normalise == "advantage" and adv_mass is not None:
            mass_N = np.asarray(adv_mass, np.float64)
            counts_N = mass_N if mass_N.sum() > 0 else counts_N  # an all-flat batch has no step to scale
        if c.realise == "sampling" or bins_N.size == 0:
            w_N = np.ones(bins_N.size)
        elif c.weight_form == "code":
            present_C = np.bincount(bins_N, minlength=self.num_classes) > 0
            w_N = code_multipliers(self.distribution(present_C), bins_N, counts_N, c.omega_max)
        else:
            w_N = paper_multipliers(self.scores, bins_N, c.eta, c.score_clip, c.omega_max)
        self._last_mult = np.zeros(self.num_classes)
        self._last_mult[bins_N] = w_N
        return w_N

    def observe(self, result: PromptResult) -> None:
        """Update the scores of the classes present among the result's *trained* prompts from their mean loss
        signal (a group dropped by online filtering had no update, hence no signal of its own)."""
        result = result.select(result.trained)
        bins_N = self._bins(result.bins)
        if bins_N.size == 0:
            return
        c = self.config
        weight_N = result.n_rollouts.astype(np.float64) if c.average_over == "responses" else np.ones(bins_N.size)
        mean_C, share_C, present_C = class_step_means(bins_N, result.loss_signal, weight_N, self.num_classes)
        if c.share_norm:  # absent classes divide by 1: their step is ignored below anyway
            mean_C = mean_C / np.where(present_C, np.maximum(share_C, c.share_floor), 1.0)
        self.scores, self.seen = ema_scores(self.scores, self.seen, mean_C, present_C, c.ema_beta)
        self._last_count = np.bincount(bins_N, minlength=self.num_classes).astype(np.float64)
        reward_C = np.bincount(bins_N, result.reward_mean, minlength=self.num_classes)
        self._last_reward = np.divide(reward_C, self._last_count, out=np.zeros(self.num_classes), where=present_C)

    def metrics(self) -> dict[str, float]:
        """q over all classes (weight/), scores, last multipliers, counts and reward means, weight entropy."""
        q_C = self.distribution()
        out: dict[str, float] = {}
        for key, values in (
            ("weight", q_C),
            ("score", self.scores),
            ("multiplier", self._last_mult),
            ("count", self._last_count),
            ("reward_mean", self._last_reward),
        ):
            out.update({f"controller/prompt_gdro/{key}/{n}": float(v) for n, v in zip(self.class_names, values)})
        out["controller/prompt_gdro/weight_entropy"] = entropy(q_C)
        out["controller/prompt_gdro/weight_max"] = float(q_C.max())
        return out

    def _identity(self) -> dict[str, Any]:
        return {"config": config_dict(self.config), "class_names": list(self.class_names)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "prompt_gdro",
            "identity": self._identity(),
            "scores": self.scores.tolist(),
            "seen": self.seen.tolist(),
            "last_count": self._last_count.tolist(),
            "last_reward": self._last_reward.tolist(),
            "last_mult": self._last_mult.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, "prompt_gdro", self._identity())
        self.scores = np.asarray(state["scores"], np.float64)
        self.seen = np.asarray(state["seen"], bool)
        self._last_count = np.asarray(state["last_count"], np.float64)
        self._last_reward = np.asarray(state["last_reward"], np.float64)
        self._last_mult = np.asarray(state["last_mult"], np.float64)
