"""`BinSampler`: draw prompts by class from the whole prompt pool (Prompt-GDRO's sampling realisation).

Every prompt of the pool (dense ids 0..P-1) sits in exactly one class: its classifier class, and never-observed
prompts in the classifier's `unseen` class. The sampler keeps the ids grouped by class in one int32 array:

    order = [ ids of class 0 | ids of class 1 | ... | ids of class C-1 ],  start[c] .. start[c+1] = class c
    pos[id] = where id sits in `order`

A prompt that changes class walks to the new segment one boundary at a time: moving up from segment s to
s+1 it swaps with the last id of s and the boundary start[s+1] moves left by one (down: swap with the first
id of s, start[s] moves right). So a move costs one swap per boundary crossed, and only prompts observed this
step can move. Drawing k prompts: k class labels from q (multinomial), then each class's share uniformly
without replacement from its segment (with replacement only when a class holds fewer prompts than it is
asked for). 9 bytes per prompt (order, pos, class).

    >>> s = BinSampler(num_prompts=6, num_classes=3, start_class=2, seed=0)
    >>> s.move([0, 1, 4], [0, 1, 0]); s.members(0).tolist(), s.members(1).tolist(), s.sizes().tolist()
    ([0, 4], [1], [2, 1, 3])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlbal.controllers.records import check_state, decode_array, encode_array, rng_from_state, rng_state


class BinSampler:
    """Prompts grouped by class (see the module docstring); `draw(k, q)` samples ids by class probabilities."""

    def __init__(
        self, num_prompts: int, num_classes: int, start_class: int, seed: int = 0, names: tuple[str, ...] | None = None
    ) -> None:
        if num_prompts < 1 or not 0 <= start_class < num_classes:
            raise ValueError(
                f"BinSampler needs num_prompts >= 1 and 0 <= start_class < num_classes, got "
                f"{num_prompts}, {start_class}, {num_classes}"
            )
        if num_classes > 127 or num_prompts >= 2**31:
            raise ValueError(f"BinSampler supports < 128 classes and < 2^31 prompts, got {num_classes}, {num_prompts}")
        self.num_prompts, self.num_classes, self.start_class = int(num_prompts), int(num_classes), int(start_class)
        self.order = np.arange(num_prompts, dtype=np.int32)
        self.pos = np.arange(num_prompts, dtype=np.int32)
        self.cls = np.full(num_prompts, start_class, np.int8)
        self.start = np.zeros(num_classes + 1, np.int64)
        self.start[start_class + 1 :] = num_prompts
        self.rng = np.random.default_rng(seed)
        self.names = names or tuple(f"class_{c}" for c in range(num_classes))
        self._last_drawn = np.zeros(num_classes, np.int64)

    def sizes(self) -> np.ndarray:
        """(C,) prompts per class."""
        return np.diff(self.start)

    def members(self, c: int) -> np.ndarray:
        """(size_c,) ids of class c (in segment order)."""
        return self.order[self.start[c] : self.start[c + 1]]

    def _swap(self, i: int, j: int) -> None:
        a, b = int(self.order[i]), int(self.order[j])
        self.order[i], self.order[j] = b, a
        self.pos[a], self.pos[b] = j, i

    def move(self, ids, classes) -> None:
        """Put each id into its new class (ids that keep their class cost nothing)."""
        ids_N = np.asarray(ids, np.int64)
        new_N = np.asarray(classes, np.int64)
        if ids_N.size and (ids_N.min() < 0 or ids_N.max() >= self.num_prompts):
            raise ValueError(f"BinSampler.move: ids must lie in [0, {self.num_prompts})")
        if new_N.size and (new_N.min() < 0 or new_N.max() >= self.num_classes):
            raise ValueError(f"BinSampler.move: classes must lie in [0, {self.num_classes})")
        changed = np.flatnonzero(self.cls[ids_N] != new_N)
        for i, c in zip(ids_N[changed].tolist(), new_N[changed].tolist()):  # a few per step; each O(|hops|)
            s = int(self.cls[i])
            while s < c:  # up: become the first id of segment s+1
                last = int(self.start[s + 1]) - 1
                self._swap(int(self.pos[i]), last)
                self.start[s + 1] -= 1
                s += 1
            while s > c:  # down: become the last id of segment s-1
                first = int(self.start[s])
                self._swap(int(self.pos[i]), first)
                self.start[s] += 1
                s -= 1
            self.cls[i] = c

    def draw(self, k: int, q_C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(k,) ids and (k,) their classes: class labels ~ Multinomial(k, q restricted to non-empty classes),
        then uniform within each class (without replacement while the class has enough prompts)."""
        sizes_C = self.sizes()
        q_C = np.where(sizes_C > 0, np.asarray(q_C, np.float64), 0.0)
        if k < 0 or q_C.sum() <= 0:
            raise ValueError(f"BinSampler.draw: k must be >= 0 and q must put mass on a non-empty class, got k={k}")
        m_C = self.rng.multinomial(k, q_C / q_C.sum())
        ids, classes = [], []
        for c in np.flatnonzero(m_C):
            size, m = int(sizes_C[c]), int(m_C[c])
            pick = self.rng.choice(size, size=m, replace=m > size)
            ids.append(self.order[self.start[c] + pick].astype(np.int64))
            classes.append(np.full(m, c, np.int64))
        if not ids:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ids_k, cls_k = np.concatenate(ids), np.concatenate(classes)
        self._last_drawn = m_C.astype(np.int64)
        perm = self.rng.permutation(k)  # no class-sorted batches
        return ids_k[perm], cls_k[perm]

    def metrics(self) -> dict[str, float]:
        """Share of the pool in each class, and share of the last draw (compare with Prompt-GDRO's weight/)."""
        out = {
            f"controller/sampler/pool_share/{n}": float(v) for n, v in zip(self.names, self.sizes() / self.num_prompts)
        }
        drawn = self._last_drawn / max(int(self._last_drawn.sum()), 1)
        out.update({f"controller/sampler/drawn_share/{n}": float(v) for n, v in zip(self.names, drawn)})
        return out

    def _identity(self) -> dict[str, Any]:
        return {"num_prompts": self.num_prompts, "num_classes": self.num_classes, "start_class": self.start_class}

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "bin_sampler",
            "identity": self._identity(),
            "order": encode_array(self.order),
            "start": self.start.tolist(),
            "rng": rng_state(self.rng),
            "last_drawn": self._last_drawn.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, "bin_sampler", self._identity())
        self.order = decode_array(state["order"]).astype(np.int32)
        self.start = np.asarray(state["start"], np.int64)
        self.pos = np.empty(self.num_prompts, np.int32)
        self.pos[self.order] = np.arange(self.num_prompts, dtype=np.int32)
        self.cls = np.repeat(np.arange(self.num_classes, dtype=np.int8), self.sizes())[self.pos]
        self.rng = rng_from_state(state["rng"])
        self._last_drawn = np.asarray(state["last_drawn"], np.int64)
