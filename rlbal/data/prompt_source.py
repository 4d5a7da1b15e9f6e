"""`PromptSource`: the seeded, epoch-wise shuffled stream of prompts the trainer draws batches from (and
`SampledSource`, prompts drawn by class; both are `PromptStream`s).

Epoch e visits every prompt once in the order `permutation(N)` of `np.random.default_rng([seed, e])`,
so the whole future order is a function of (seed, epoch, position): the JSON `state_dict` holds just
that cursor (plus the dataset fingerprint), and a restored source continues the exact same order.
Refills for online filtering are just more `next(k)` calls: they continue the same stream.

    src = PromptSource(dataset, seed=0)
    batch = src.next(8)                   # PromptBatch, batch.indices (8,) int64 dense ids
    state = src.state_dict()              # {'epoch': 0, 'position': 8, ...}, json-serialisable
    other = PromptSource(dataset, seed=0); other.load_state_dict(state)
    assert (other.next(4).indices == src.next(4).indices).all()
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from rlbal.data.records import DataError, PromptBatch, PromptDataset


class PromptStream(Protocol):
    """Where a run's prompts come from, as the training loop and checkpoints use it: `PromptSource` (the shuffled
    stream) and `SampledSource` (drawn by class, Prompt-GDRO's sampling form)."""

    dataset: PromptDataset

    def next(self, k: int) -> PromptBatch:
        """The next k prompts (a step's batch, or a refill for online filtering)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def metrics(self) -> dict[str, float]: ...


class PromptSource:
    """Epoch-wise shuffled draws over a `PromptDataset`; checkpointable as JSON."""

    def __init__(self, dataset: PromptDataset, seed: int = 0, shuffle: bool = True) -> None:
        if seed < 0:
            raise ValueError(f"PromptSource seed must be >= 0, got {seed}")
        if len(dataset) == 0:
            raise ValueError("PromptSource needs a non-empty dataset")
        self.dataset, self.seed, self.shuffle = dataset, int(seed), bool(shuffle)
        self.epoch, self.position = 0, 0
        self._order = self.epoch_order(0)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """(N,) int64 dense indices in the order epoch `epoch` visits them."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch]).permutation(n).astype(np.int64)

    @property
    def cursor(self) -> tuple[int, int]:
        """(epoch, position within the epoch) of the next prompt to be served."""
        return self.epoch, self.position

    def next_indices(self, k: int) -> np.ndarray:
        """(k,) int64 the next k dense indices; crosses into the next epoch(s) when one runs out."""
        if k < 0:
            raise ValueError(f"PromptSource.next: k must be >= 0, got {k}")
        n, parts = len(self._order), []
        while k > 0:
            take = min(k, n - self.position)
            parts.append(self._order[self.position : self.position + take])
            self.position, k = self.position + take, k - take
            if self.position == n:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self.epoch_order(self.epoch)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def next(self, k: int) -> PromptBatch:
        """The next k prompts (a step's batch, or a refill for online filtering)."""
        return self.dataset.batch(self.next_indices(k))

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "epoch": self.epoch,
            "position": self.position,
            "num_prompts": len(self.dataset),
            "fingerprint": self.dataset.fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`; refuses a checkpoint taken on different prompts or settings."""
        if state["fingerprint"] != self.dataset.fingerprint or state["num_prompts"] != len(self.dataset):
            raise DataError(
                f"prompt source checkpoint is for another dataset ({state['num_prompts']} prompts, "
                f"fingerprint {state['fingerprint'][:12]}) but {self.dataset.source} has "
                f"{len(self.dataset)} prompts, fingerprint {self.dataset.fingerprint[:12]}: "
                f"the data file, tokenizer or prompt format changed"
            )
        for name in ("seed", "shuffle"):
            if state[name] != getattr(self, name):
                raise ValueError(
                    f"prompt source checkpoint has {name}={state[name]!r}, this source {name}={getattr(self, name)!r}"
                )
        if not 0 <= state["position"] < len(self.dataset) or state["epoch"] < 0:
            raise ValueError(
                f"prompt source checkpoint cursor out of range: epoch {state['epoch']}, "
                f"position {state['position']} of {len(self.dataset)}"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self.epoch_order(self.epoch)

    def metrics(self) -> dict[str, float]:
        """'data/epoch' as a fraction (1.5 = half-way through the second epoch); the dataset's size and the
        prompts its too-long policy dropped ('data/num_prompts', 'data/dropped_too_long')."""
        return {
            "data/epoch": self.epoch + self.position / len(self.dataset),
            "data/num_prompts": float(len(self.dataset)),
            "data/dropped_too_long": float(self.dataset.n_dropped),
        }


class SampledSource:
    """The step's prompts drawn by a controller (Prompt-GDRO's sampling form) instead of the shuffled stream.

    `draw(k)` returns (k,) dense ids (`Controllers.sample`); its state (the pool grouped by class and its RNG)
    is checkpointed with the controllers, so this source only records the dataset it was drawing from.
    """

    def __init__(self, dataset: PromptDataset, draw) -> None:
        if len(dataset) == 0:
            raise ValueError("SampledSource needs a non-empty dataset")
        self.dataset, self.draw = dataset, draw
        self.drawn = 0

    def next(self, k: int) -> PromptBatch:
        """k prompts drawn by class (a step's batch, or a refill for online filtering)."""
        ids = self.draw(k)
        self.drawn += len(ids)
        return self.dataset.batch(ids)

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "sampled",
            "drawn": self.drawn,
            "num_prompts": len(self.dataset),
            "fingerprint": self.dataset.fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "sampled" or state["fingerprint"] != self.dataset.fingerprint:
            raise DataError(
                f"prompt source checkpoint ({state.get('kind', 'shuffled')}, fingerprint "
                f"{state['fingerprint'][:12]}) does not match a sampled source over {self.dataset.source} "
                f"(fingerprint {self.dataset.fingerprint[:12]}): same data and Prompt-GDRO realisation needed"
            )
        self.drawn = int(state["drawn"])

    def metrics(self) -> dict[str, float]:
        """'data/epoch': prompts drawn so far in units of the dataset size (draws may repeat prompts)."""
        return {"data/epoch": self.drawn / len(self.dataset)}
