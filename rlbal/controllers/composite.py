"""`Controllers`: the one object a training loop calls -- classifier + optional Prompt-GDRO + optional Rollout-GDRO.

Per step (the driver's order):

    ids = ctl.sample(k)            # only with Prompt-GDRO realise='sampling': draw prompts by class
    alloc = ctl.decide(ids)        # classify (history up to last step) -> rollout counts -> advantage weights
    ...generate alloc.counts[i] rollouts per prompt, score, keep groups (online filtering)...
    w = ctl.batch_weights(bins, counts)   # Prompt-GDRO multipliers over the batch that is trained
    ...update with advantages * w...
    ctl.observe(result)            # every generated group: Prompt-GDRO (trained ones), Rollout-GDRO, history

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
from rlbal.controllers.records import Allocation, PromptResult
from rlbal.controllers.rollout_gdro import RolloutGDRO, RolloutGDROConfig
from rlbal.controllers.sampling import BinSampler


class Controllers:
    """Owns the classifier and the optional controllers; checkpoints them together under their names."""

    def __init__(
        self,
        classifier: DifficultyClassifier,
        prompt_gdro: PromptGDRO | None = None,
        rollout: RolloutGDRO | None = None,
        n_rollouts: int = 4,
        sampler: BinSampler | None = None,
    ) -> None:
        for name, ctl in (("prompt_gdro", prompt_gdro), ("rollout", rollout)):
            if ctl is not None and ctl.class_names != classifier.class_names:
                raise ValueError(
                    f"Controllers.{name} has classes {ctl.class_names}, the classifier {classifier.class_names}"
                )
        if n_rollouts < 1:
            raise ValueError(f"Controllers.n_rollouts must be >= 1, got {n_rollouts}")
        sampling = prompt_gdro is not None and prompt_gdro.config.realise == "sampling"
        if sampling != (sampler is not None):
            raise ValueError("Controllers: a BinSampler goes with Prompt-GDRO realise='sampling', and only with it")
        self.classifier, self.prompt_gdro, self.rollout, self.sampler = classifier, prompt_gdro, rollout, sampler
        self.n_rollouts = n_rollouts

    @classmethod
    def from_configs(
        cls,
        classifier: ClassifierConfig = ClassifierConfig(),
        prompt_gdro: PromptGDROConfig | None = None,
        rollout: RolloutGDROConfig | None = None,
        n_rollouts: int = 4,
        num_prompts: int | None = None,
    ) -> Controllers:
        """Build every component; the GDRO controllers get the classifier's classes. Prompt-GDRO's sampling form
        draws from the pool of dense ids 0..num_prompts-1 and needs the classifier's separate `unseen` class."""
        clf = DifficultyClassifier(classifier)
        names = clf.class_names
        pg = PromptGDRO(prompt_gdro, len(names), names) if prompt_gdro is not None else None
        ro = RolloutGDRO(rollout, len(names), names) if rollout is not None else None
        sampler = None
        if prompt_gdro is not None and prompt_gdro.realise == "sampling":
            if classifier.unseen != "separate":
                raise ValueError(
                    "Prompt-GDRO realise='sampling' needs ClassifierConfig.unseen='separate' (never-"
                    "observed prompts form their own class to be drawn from)"
                )
            if num_prompts is None:
                raise ValueError("Prompt-GDRO realise='sampling' needs num_prompts (the pool size)")
            sampler = BinSampler(
                num_prompts, len(names), start_class=len(names) - 1, seed=prompt_gdro.seed, names=names
            )
        return cls(clf, pg, ro, n_rollouts, sampler)

    @property
    def components(self) -> dict[str, Any]:
        """Active components by name (the checkpoint's keys)."""
        parts = {
            "classifier": self.classifier,
            "prompt_gdro": self.prompt_gdro,
            "rollout": self.rollout,
            "sampler": self.sampler,
        }
        return {name: part for name, part in parts.items() if part is not None}

    def decide(self, ids) -> Allocation:
        """Bins, rollout counts and advantage weights for the prompts about to be generated (the weights are
        this round's; `batch_weights` recomputes them over the batch that is finally trained)."""
        ids_N = as_ids(ids)
        bins_N = self.classifier.classify(ids_N)
        counts_N = self.rollout.allocate(bins_N) if self.rollout else np.full(ids_N.size, self.n_rollouts)
        return Allocation(ids_N, bins_N, self.batch_weights(bins_N, counts_N), counts_N)

    def batch_weights(self, bins, counts, adv_mass=None) -> np.ndarray:
        """(N,) Prompt-GDRO multiplier of each prompt of a training batch ((N,) classes and rollout counts; adv_mass
        (N,) summed |advantage| per prompt for normalise='advantage'): the code form's mean-1 normalisation runs
        over exactly these prompts; importance weights when sampling."""
        bins_N = np.asarray(bins, np.int64)
        if self.prompt_gdro is None:
            return np.ones(bins_N.size)
        if self.sampler is not None:
            if not self.prompt_gdro.config.is_weights:
                return np.ones(bins_N.size)
            sizes_C = self.sampler.sizes()
            q_C = self.prompt_gdro.distribution(sizes_C > 0)
            return (sizes_C[bins_N] / self.sampler.num_prompts) / q_C[bins_N]
        return self.prompt_gdro.weights(bins_N, counts, adv_mass)

    def sample(self, k: int) -> np.ndarray:
        """Prompt-GDRO's sampling form: (k,) prompt ids, class b with probability q_b, uniform within the class."""
        if self.sampler is None:
            raise ValueError("Controllers.sample needs Prompt-GDRO with realise='sampling'")
        q_C = self.prompt_gdro.distribution(self.sampler.sizes() > 0)
        return self.sampler.draw(k, q_C)[0]

    def observe(self, result: PromptResult) -> None:
        """Feed the step's results, every generated group (`result.trained` marks those that were trained):
        Prompt-GDRO (trained groups), Rollout-GDRO (all), the pass-rate history (all), then the sampler's classes."""
        if self.prompt_gdro:
            self.prompt_gdro.observe(result)
        if self.rollout:
            self.rollout.observe(result)
        self.classifier.observe(result)
        if self.sampler is not None:
            ids_N = np.unique(result.ids)
            self.sampler.move(ids_N, self.classifier.classify(ids_N, record=False))

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for part in self.components.values():
            out.update(part.metrics())
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "controllers",
            "n_rollouts": self.n_rollouts,
            "components": {name: part.state_dict() for name, part in self.components.items()},
        }

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
