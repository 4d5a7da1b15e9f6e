"""`Controllers`: the one object a training loop calls -- classifier + optional Prompt-GDRO + optional Rollout-GDRO.

Per step (the driver's order):

    alloc = ctl.decide(ids)        # classify (history up to last step) -> rollout counts -> advantage weights
    ...generate alloc.counts[i] rollouts per prompt, score, update with advantages * alloc.weights...
    ctl.observe(result)            # Prompt-GDRO scores, Rollout-GDRO arms / dual / variances, then the history

    >>> ctl = Controllers.from_configs(ClassifierConfig(num_bins=3), PromptGDROConfig(), RolloutGDROConfig())
    >>> a = ctl.decide([0, 1, 2, 3])
    >>> a.bins.tolist(), a.counts.tolist(), a.weights.tolist()
    ([0, 0, 0, 0], [4, 4, 4, 4], [1.0, 1.0, 1.0, 1.0])
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rlbal.controllers.classifier import ClassifierConfig, DifficultyClassifier, as_ids
from rlbal.controllers.prompt_gdro import PromptGDRO, PromptGDROConfig
from rlbal.controllers.records import Allocation, PromptResult, SampleDraw
from rlbal.controllers.rollout_gdro import RolloutGDRO, RolloutGDROConfig


class Controllers:
    """Owns the classifier and the optional controllers; checkpoints them together under their names."""

    def __init__(self, classifier: DifficultyClassifier, prompt_gdro: PromptGDRO | None = None,
                 rollout: RolloutGDRO | None = None, n_rollouts: int = 4) -> None:
        for name, ctl in (("prompt_gdro", prompt_gdro), ("rollout", rollout)):
            if ctl is not None and ctl.class_names != classifier.class_names:
                raise ValueError(f"Controllers.{name} has classes {ctl.class_names}, the classifier "
                                 f"{classifier.class_names}")
        if n_rollouts < 1:
            raise ValueError(f"Controllers.n_rollouts must be >= 1, got {n_rollouts}")
        self.classifier, self.prompt_gdro, self.rollout = classifier, prompt_gdro, rollout
        self.n_rollouts = n_rollouts

    @classmethod
    def from_configs(cls, classifier: ClassifierConfig = ClassifierConfig(), prompt_gdro: PromptGDROConfig | None = None,
                     rollout: RolloutGDROConfig | None = None, n_rollouts: int = 4) -> "Controllers":
        """Build every component; the GDRO controllers get the classifier's classes."""
        clf = DifficultyClassifier(classifier)
        names = clf.class_names
        pg = PromptGDRO(prompt_gdro, len(names), names) if prompt_gdro is not None else None
        ro = RolloutGDRO(rollout, len(names), names) if rollout is not None else None
        return cls(clf, pg, ro, n_rollouts)

    @property
    def components(self) -> dict[str, Any]:
        """Active components by name (the checkpoint's keys)."""
        parts = {"classifier": self.classifier, "prompt_gdro": self.prompt_gdro, "rollout": self.rollout}
        return {name: part for name, part in parts.items() if part is not None}

    def decide(self, ids) -> Allocation:
        """Bins, rollout counts and advantage weights for the prompts about to be generated."""
        ids_N = as_ids(ids)
        bins_N = self.classifier.classify(ids_N)
        counts_N = self.rollout.allocate(bins_N) if self.rollout else np.full(ids_N.size, self.n_rollouts)
        weights_N = self.prompt_gdro.weights(bins_N, counts_N) if self.prompt_gdro else np.ones(ids_N.size)
        return Allocation(ids_N, bins_N, weights_N, counts_N)

    def sample(self, pool_ids, k: int) -> tuple[np.ndarray, SampleDraw]:
        """Prompt-GDRO's sampling form: (k,) ids drawn from the candidate pool, and the draw's record."""
        if self.prompt_gdro is None:
            raise ValueError("Controllers.sample needs Prompt-GDRO (controllers.prompt_gdro is off)")
        pool_P = as_ids(pool_ids)
        draw = self.prompt_gdro.sample(self.classifier.classify(pool_P, record=False), k)
        return pool_P[draw.index], draw

    def observe(self, result: PromptResult) -> None:
        """Feed the step's results: the GDRO controllers first, then the pass-rate history."""
        if self.prompt_gdro:
            self.prompt_gdro.observe(result)
        if self.rollout:
            self.rollout.observe(result)
        self.classifier.observe(result)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for part in self.components.values():
            out.update(part.metrics())
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "controllers", "n_rollouts": self.n_rollouts,
                "components": {name: part.state_dict() for name, part in self.components.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "controllers":
            raise ValueError(f"expected a 'controllers' checkpoint, got kind={state.get('kind')!r}")
        saved, current = sorted(state["components"]), sorted(self.components)
        if saved != current:
            raise ValueError(f"controllers checkpoint has components {saved}, this run has {current}")
        if state["n_rollouts"] != self.n_rollouts:
            raise ValueError(f"controllers checkpoint has n_rollouts={state['n_rollouts']}, this run {self.n_rollouts}")
        for name, part in self.components.items():
            part.load_state_dict(state["components"][name])
