"""Online difficulty classifier: a pass-rate history per prompt id, binned with hysteresis (GDRO paper section 3.1).

After each step a prompt was generated for, it records bits (`indicator`):

    'response' (default)  one bit per rollout, its correctness: the window holds the prompt's last H responses
                          and the estimate is its per-response pass rate, whatever the group sizes were
    'any'                 one bit per step, "at least one of its rollouts was correct" (the paper's pass@k with
                          k = the rollouts it got, so the estimate rises with the count Rollout-GDRO gives it)

Its estimate is the mean of the last H bits (H = `window`; 0 = all of them), and its class is the bin of that
estimate (bin 0 = lowest pass rate = hardest). Call order in a step:

    bins = clf.classify(ids)      # before generation: history up to the previous step (read-only)
    ...generate, score, update...
    clf.observe(result)           # after the update: append this step's bits, re-bin with hysteresis

Storage is flat numpy arrays indexed directly by the dense non-negative prompt id (rlbal ids are dataset
indices), grown by doubling: the window is bit-packed into ceil(H/64) uint64 words (bit j = the j-th latest
bit; a step's bits enter together, its ones spread evenly over them), plus a uint32 count of bits so far, a
uint32 count of ones in the window and an int8 stored bin. At H = 50 that is 17 bytes per tracked prompt
(`bytes_per_prompt`); there is no per-prompt Python object. Keys that are not dense ints go through
`KeyIndex` first.

    >>> clf = DifficultyClassifier(ClassifierConfig(num_bins=4, window=3))
    >>> clf.classify([7, 8]).tolist()                      # unseen -> hardest bin
    [0, 0]
    >>> for hit in ([1, 0], [1, 0], [0, 0], [1, 0]):       # prompt 7: 1,1,0,1 -> window of 3 = 1,0,1
    ...     clf.update([7, 8], hit)
    >>> clf.estimate([7, 8]).round(3).tolist(), clf.classify([7, 8]).tolist()
    ([0.667, 0.0], [2, 0])
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from rlbal.controllers.records import PromptResult, check_state, class_names, config_dict, decode_array, encode_array

Unseen = Literal["hardest", "separate"]
UNSEEN_POLICIES: tuple[str, ...] = get_args(Unseen)
Indicator = Literal["response", "any"]
INDICATORS: tuple[str, ...] = get_args(Indicator)
MAX_WINDOW = 256  # 4 uint64 words; the released code used 50 or 100
_MIN_CAPACITY = 1024


@dataclass(frozen=True)
class ClassifierConfig:
    """Difficulty bins from windowed pass@k. Paper: 10 bins at 0.1..0.9; window and margin are not given."""

    __pydantic_config__ = {"extra": "forbid"}  # unknown keys in a recipe are errors

    num_bins: int = 10
    """B: number of difficulty bins (bin 0 = hardest). Must equal len(edges) + 1 when edges are given."""
    edges: tuple[float, ...] | None = None
    """Interior bin edges, strictly increasing in (0, 1); None = uniform edges 1/B, 2/B, ..., (B-1)/B."""
    indicator: Indicator = "response"
    """What a step records: 'response' = each rollout's correctness (estimate = per-response pass rate, the same
    at any group size); 'any' = one bit 'some rollout correct' (the paper's pass@k, k = rollouts drawn)."""
    window: int = 50
    """H: bits averaged per prompt (0 = all, cumulative): responses with 'response', steps with 'any' (the
    released scripts use 50 or 100 steps)."""
    hysteresis: float = 0.0
    """delta: a prompt leaves its bin only if its estimate clears the boundary by this margin (code: 0.03 / 0)."""
    unseen: Unseen = "hardest"
    """Class of a prompt never observed: 'hardest' (estimate 0, as the code) or 'separate' (own 'unseen' class)."""
    exclude_extremes: bool = False
    """Put estimates of exactly 0 or 1 into a separate 'excluded' class (with 'hardest', unseen prompts too)."""
    max_prompts: int = 1 << 31
    """Guard: ids must be below this (a hashed id would otherwise allocate huge arrays; use KeyIndex)."""

    def __post_init__(self) -> None:
        if self.edges is not None:
            object.__setattr__(self, "edges", tuple(float(e) for e in self.edges))
            e = np.asarray(self.edges)
            if e.size and (e.min() <= 0.0 or e.max() >= 1.0 or np.any(np.diff(e) <= 0.0)):
                raise ValueError(f"ClassifierConfig.edges must be strictly increasing in (0, 1), got {self.edges}")
            if len(self.edges) + 1 != self.num_bins:
                raise ValueError(
                    f"ClassifierConfig.num_bins must be len(edges) + 1 = {len(self.edges) + 1}, got {self.num_bins}"
                )
        if not 1 <= self.num_bins <= 100:
            raise ValueError(f"ClassifierConfig.num_bins must be in [1, 100], got {self.num_bins}")
        if not 0 <= self.window <= MAX_WINDOW:
            raise ValueError(f"ClassifierConfig.window must be in [0, {MAX_WINDOW}], got {self.window}")
        if not 0.0 <= self.hysteresis < 1.0:
            raise ValueError(f"ClassifierConfig.hysteresis must be in [0, 1), got {self.hysteresis}")
        if self.indicator not in INDICATORS:
            raise ValueError(f"ClassifierConfig.indicator must be one of {INDICATORS}, got {self.indicator!r}")
        if self.unseen not in UNSEEN_POLICIES:
            raise ValueError(f"ClassifierConfig.unseen must be one of {UNSEEN_POLICIES}, got {self.unseen!r}")
        if self.max_prompts < 1:
            raise ValueError(f"ClassifierConfig.max_prompts must be >= 1, got {self.max_prompts}")

    def edge_array(self) -> np.ndarray:
        """(B-1,) interior edges; uniform ones are computed as i/B so that k/B estimates hit them exactly."""
        if self.edges is not None:
            return np.asarray(self.edges, np.float64)
        return np.arange(1, self.num_bins, dtype=np.float64) / self.num_bins


def bin_of(acc_N: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N,) bin of each estimate: the number of edges <= acc (bin b = [edge_{b-1}, edge_b)).

    >>> bin_of(np.array([0.0, 0.1, 0.15, 0.9, 1.0]), np.arange(1, 10) / 10).tolist()
    [0, 1, 1, 9, 9]
    """
    return np.searchsorted(edges, acc_N, side="right").astype(np.int64)


def hysteresis_bin(
    old_N: np.ndarray, raw_N: np.ndarray, acc_N: np.ndarray, edges: np.ndarray, delta: float
) -> np.ndarray:
    """(N,) new bin: the farthest bin toward `raw` whose near boundary `acc` clears by `delta` (spec 6.2).

    Moving up into bin b needs acc >= edge_{b-1} + delta; moving down into bin b needs acc <= edge_b - delta;
    if even the adjacent bin's boundary is not cleared the prompt stays. Edges are the same array for
    explicit and uniform bins, so both use the right boundary (the released code's uniform-bin downward
    test used new/B instead of (new+1)/B).

    >>> e = np.arange(1, 10) / 10
    >>> hysteresis_bin(np.array([2, 2, 5, 5]), np.array([3, 5, 3, 4]), np.array([0.32, 0.52, 0.36, 0.48]), e, 0.03)
    array([2, 4, 3, 5])
    """
    up_N = np.searchsorted(edges + delta, acc_N, side="right")  # highest bin whose lower edge is cleared
    down_N = np.searchsorted(edges - delta, acc_N, side="left")  # lowest bin whose upper edge is cleared
    new_N = np.where(raw_N > old_N, np.maximum(old_N, np.minimum(raw_N, up_N)), old_N)
    return np.where(raw_N < old_N, np.minimum(old_N, np.maximum(raw_N, down_N)), new_N).astype(np.int64)


def as_ids(ids: Any) -> np.ndarray:
    """(N,) int64 non-negative prompt ids (raises on other dtypes or negative values)."""
    ids_N = np.asarray(ids)
    if ids_N.size == 0:
        return np.zeros(0, np.int64)
    if ids_N.ndim != 1 or not np.issubdtype(ids_N.dtype, np.integer):
        raise ValueError(f"prompt ids must be a 1-D integer array, got dtype {ids_N.dtype} shape {ids_N.shape}")
    ids_N = ids_N.astype(np.int64, copy=False)
    if ids_N.size and ids_N.min() < 0:
        raise ValueError(f"prompt ids must be >= 0 (dense dataset indices), got {ids_N.min()}")
    return ids_N


def _split_counts(k_N: np.ndarray, n_N: np.ndarray, parts_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split each (k of n) into parts_N nearly equal chunks of bits, the ones spread in proportion (sums kept).

    >>> [a.tolist() for a in _split_counts(np.array([50]), np.array([130]), np.array([3]))]
    [[16, 17, 17], [43, 43, 44]]
    """
    idx = np.repeat(np.arange(n_N.size), parts_N)
    j = np.arange(idx.size) - np.repeat(np.cumsum(parts_N) - parts_N, parts_N)
    p = parts_N[idx]
    bits = (j + 1) * n_N[idx] // p - j * n_N[idx] // p
    ones = (j + 1) * k_N[idx] // p - j * k_N[idx] // p
    return ones, bits


def _occurrence_rank(ids_N: np.ndarray) -> np.ndarray:
    """(N,) how many earlier entries have the same id (0 for first occurrences)."""
    order = np.argsort(ids_N, kind="stable")
    sorted_ids = ids_N[order]
    is_start = np.concatenate([[True], sorted_ids[1:] != sorted_ids[:-1]])
    start = np.maximum.accumulate(np.where(is_start, np.arange(ids_N.size), 0))
    rank = np.empty(ids_N.size, np.int64)
    rank[order] = np.arange(ids_N.size) - start
    return rank


class DifficultyClassifier:
    """Windowed pass@k per dense prompt id -> class index (see the module docstring for the call order)."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()) -> None:
        self.config = config
        self.edges = config.edge_array()
        self.class_names = class_names(config.num_bins, config.exclude_extremes, config.unseen == "separate")
        self.num_classes = len(self.class_names)
        self._words = -(-config.window // 64)
        self._high = 0  # 1 + largest id observed
        self._tracked = 0  # prompts observed at least once
        self._last_counts = np.zeros(self.num_classes, np.int64)
        self._alloc(_MIN_CAPACITY)

    # ---- storage ---------------------------------------------------------------------------------------

    def _alloc(self, capacity: int) -> None:
        self._window = np.zeros((capacity, self._words), np.uint64)  # bit j of the packed words = j-th latest
        self._seen = np.zeros(capacity, np.uint32)  # observations so far
        self._hits = np.zeros(capacity, np.uint32)  # hits in the window (all hits when window == 0)
        self._bin = np.full(capacity, -1, np.int8)  # stored bin (hysteresis state), -1 = never observed

    def _grow(self, max_id: int) -> None:
        if max_id >= self.config.max_prompts:
            raise ValueError(
                f"prompt id {max_id} >= ClassifierConfig.max_prompts={self.config.max_prompts}; "
                "ids must be dense indices (map other keys with KeyIndex)"
            )
        capacity = self.capacity
        if max_id < capacity:
            return
        old = (self._window, self._seen, self._hits, self._bin)
        self._alloc(max(2 * capacity, 1 << int(max_id).bit_length()))
        for new, arr in zip((self._window, self._seen, self._hits, self._bin), old):
            new[:capacity] = arr

    @property
    def capacity(self) -> int:
        return int(self._seen.shape[0])

    @property
    def num_tracked(self) -> int:
        return self._tracked

    @property
    def bytes_per_prompt(self) -> float:
        """Bytes of per-prompt state per slot of capacity."""
        nbytes = self._window.nbytes + self._seen.nbytes + self._hits.nbytes + self._bin.nbytes
        return nbytes / self.capacity

    def _gather(self, ids_N: np.ndarray, arr: np.ndarray, default: int) -> np.ndarray:
        inside_N = ids_N < self.capacity
        vals = arr[np.minimum(ids_N, self.capacity - 1)]
        return vals if inside_N.all() else np.where(inside_N, vals, default)

    # ---- decision --------------------------------------------------------------------------------------

    def estimate(self, ids) -> np.ndarray:
        """(N,) float64 pass@k estimate per id (nan for prompts never observed)."""
        ids_N = as_ids(ids)
        seen_N = self._gather(ids_N, self._seen, 0).astype(np.float64)
        denom_N = np.minimum(seen_N, self.config.window) if self.config.window else seen_N
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(seen_N > 0, self._gather(ids_N, self._hits, 0) / denom_N, np.nan)

    def classify(self, ids, record: bool = True) -> np.ndarray:
        """(N,) int64 class of each prompt from its history so far (call before generation). The history is
        not touched; `record=False` also leaves the class counts that metrics() reports (e.g. for a pool)."""
        ids_N = as_ids(ids)
        stored_N = self._gather(ids_N, self._bin, -1).astype(np.int64)
        unseen_label = self.num_classes - 1 if self.config.unseen == "separate" else 0
        label_N = np.where(stored_N >= 0, stored_N, unseen_label)
        if self.config.exclude_extremes:
            acc_N = self.estimate(ids_N)
            extreme_N = (acc_N == 0.0) | (acc_N == 1.0)
            if self.config.unseen == "hardest":
                extreme_N |= stored_N < 0  # the code: unseen = accuracy 0 = an extreme
            label_N = np.where(extreme_N, self.config.num_bins, label_N)
        if record:
            self._last_counts = np.bincount(label_N, minlength=self.num_classes)
        return label_N

    # ---- feedback --------------------------------------------------------------------------------------

    def observe(self, result: PromptResult) -> None:
        """Record this step's bits for every prompt of the result: its rollouts' correctness ('response') or one
        'some rollout correct' bit ('any')."""
        if self.config.indicator == "response":
            ids_N, k_N, n_N = result.ids, result.n_correct, result.n_rollouts
            if n_N.size and n_N.max() > 64:  # more rollouts than one push takes: split into <= 64-bit chunks
                parts_N = -(-n_N // 64)
                ids_N, k_N, n_N = (np.repeat(ids_N, parts_N), *_split_counts(k_N, n_N, parts_N))
            self.update_counts(ids_N, k_N, n_N)
        else:
            self.update(result.ids, result.n_correct > 0)

    def update(self, ids, hit) -> None:
        """Append one bit per entry (ids may repeat: repeats enter the window in order, then each prompt gets one
        bin decision from its final estimate, so hysteresis is applied once per call)."""
        hit_N = np.asarray(hit, bool).reshape(-1)
        self.update_counts(ids, hit_N.astype(np.int64), np.ones(hit_N.shape, np.int64))

    def update_counts(self, ids, ones, bits) -> None:
        """Append `bits` (N,) bits per entry of which `ones` (N,) are set (1..64 bits each); repeats as `update`."""
        ids_N = as_ids(ids)
        ones_N = np.asarray(ones, np.int64).reshape(-1)
        bits_N = np.asarray(bits, np.int64).reshape(-1)
        if ones_N.shape != ids_N.shape or bits_N.shape != ids_N.shape:
            raise ValueError(f"update: {ones_N.shape} ones and {bits_N.shape} bit counts for {ids_N.shape} ids")
        if ids_N.size == 0:
            return
        if bits_N.min() < 1 or bits_N.max() > 64 or ones_N.min() < 0 or np.any(ones_N > bits_N):
            raise ValueError("update: each entry needs 1..64 bits and 0 <= ones <= bits")
        self._grow(int(ids_N.max()))
        self._high = max(self._high, int(ids_N.max()) + 1)
        rank_N = _occurrence_rank(ids_N)
        if not rank_N.any():  # the usual case: each prompt once per step
            self._record(ids_N, ones_N, bits_N)
            self._rebin(ids_N)
            return
        for r in range(int(rank_N.max()) + 1):  # repeats: one vectorised pass per occurrence, in batch order
            pick_N = rank_N == r
            self._record(ids_N[pick_N], ones_N[pick_N], bits_N[pick_N])
        self._rebin(ids_N[rank_N == 0])  # one bin decision per prompt and call, from its final estimate

    def _record(self, ids_N: np.ndarray, ones_N: np.ndarray, bits_N: np.ndarray) -> None:
        seen_N = self._seen[ids_N]
        self._tracked += int(np.count_nonzero(seen_N == 0))
        if self.config.window:
            self._hits[ids_N] = self._shift_in(ids_N, ones_N, bits_N)
        else:
            self._hits[ids_N] += ones_N.astype(np.uint32)
        self._seen[ids_N] = seen_N + bits_N.astype(np.uint32)

    def _rebin(self, ids_N: np.ndarray) -> None:
        """The hysteresis rule (docs/controllers.md, stated once there): a prompt that holds a bin moves to the
        farthest bin toward its raw bin whose near boundary the estimate clears by delta; a prompt observed for
        the first time holds no bin yet and takes its raw bin."""
        seen_N = self._seen[ids_N]
        denom_N = np.minimum(seen_N, self.config.window) if self.config.window else seen_N
        acc_N = self._hits[ids_N] / denom_N
        raw_N = bin_of(acc_N, self.edges)
        old_N = self._bin[ids_N].astype(np.int64)
        moved_N = hysteresis_bin(old_N, raw_N, acc_N, self.edges, self.config.hysteresis)
        self._bin[ids_N] = np.where(old_N < 0, raw_N, moved_N)

    def _shift_in(self, ids_N: np.ndarray, ones_N: np.ndarray, bits_N: np.ndarray) -> np.ndarray:
        """Shift each row's packed window left by its bit count s (1..64; the oldest bits fall out past H), put the
        step's s bits at the bottom with its ones spread evenly (Bresenham), and return (N,) uint32 the ones now in
        the window (a popcount, so nothing has to track which bits left)."""
        # A row of W words for H = 100 (W = 2), newest bit at the bottom:
        #     word 1: [ zeros above bit H | bits 99 .. 64 ]   word 0: [ bits 63 .. 0 ]   bit 0 = the newest result
        # Shifting in s bits moves every bit s places up: word k takes its own low 64 - s bits and the top s bits
        # of word k-1; word 0 takes the step's bits; what passes bit H - 1 is masked off (it left the window).
        h = self.config.window
        w_NW = self._window[ids_N]
        s_N = bits_N.astype(np.uint64)
        whole_N = bits_N == 64  # a shift by a full word: the word below moves up as it is
        left_N = np.where(whole_N, 0, s_N).astype(np.uint64)
        right_N = np.where(whole_N, 1, 64 - s_N).astype(np.uint64)  # 1..63 (ignored for whole words)
        zero_N = np.zeros(ids_N.size, np.uint64)
        for k in range(self._words - 1, -1, -1):  # at most 4 words, each a vector op over the batch
            below_N = w_NW[:, k - 1] if k > 0 else zero_N
            w_NW[:, k] = np.where(whole_N, below_N, (w_NW[:, k] << left_N) | (below_N >> right_N))
        j = np.arange(64, dtype=np.int64)[None, :]  # bit positions of the new bottom bits
        o, s = ones_N[:, None], bits_N[:, None]
        set_N64 = (j < s) & ((j + 1) * o // s > j * o // s)  # exactly o of the s positions, evenly spaced
        w_NW[:, 0] |= (set_N64.astype(np.uint64) << j.astype(np.uint64)).sum(1, dtype=np.uint64)
        top_bits = h - 64 * (self._words - 1)
        if top_bits < 64:
            w_NW[:, -1] &= np.uint64((1 << top_bits) - 1)
        self._window[ids_N] = w_NW
        return np.bitwise_count(w_NW).sum(1).astype(np.uint32)

    # ---- logging and checkpoints -----------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """Class counts of the last classified batch, mean bin, unseen share and tracked prompts."""
        out = {f"controller/classifier/count/{name}": float(c) for name, c in zip(self.class_names, self._last_counts)}
        binned = self._last_counts[: self.config.num_bins]
        total = max(int(self._last_counts.sum()), 1)
        out["controller/classifier/mean_bin"] = float(binned @ np.arange(binned.size) / max(binned.sum(), 1))
        out["controller/classifier/tracked"] = float(self._tracked)
        out["controller/classifier/bytes_per_prompt"] = self.bytes_per_prompt
        if self.config.unseen == "separate":
            out["controller/classifier/unseen_frac"] = float(self._last_counts[-1]) / total
        return out

    def state_dict(self) -> dict[str, Any]:
        h = self._high
        return {
            "kind": "classifier",
            "identity": {"config": config_dict(self.config)},
            "high": h,
            "tracked": self._tracked,
            "last_counts": self._last_counts.tolist(),
            "window": encode_array(self._window[:h]),
            "seen": encode_array(self._seen[:h]),
            "hits": encode_array(self._hits[:h]),
            "bin": encode_array(self._bin[:h]),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, "classifier", {"config": config_dict(self.config)})
        h = int(state["high"])
        self._alloc(max(_MIN_CAPACITY, 1 << max(h - 1, 0).bit_length()))
        self._window[:h] = decode_array(state["window"])
        self._seen[:h] = decode_array(state["seen"])
        self._hits[:h] = decode_array(state["hits"])
        self._bin[:h] = decode_array(state["bin"])
        self._high, self._tracked = h, int(state["tracked"])
        self._last_counts = np.asarray(state["last_counts"], np.int64)


class KeyIndex:
    """Dense int ids for arbitrary hashable keys (first seen = 0, 1, 2, ...), for the classifier's arrays.

    Memory: one Python dict entry per key, about 100 bytes on CPython plus the key object itself (a short
    str is ~50-60 bytes more) -- several times the classifier's 17 bytes per prompt. Prefer dense dataset
    indices for millions of prompts; use this for modest pools of string ids.

    >>> keys = KeyIndex()
    >>> keys.index(["a", "b", "a", "c"]).tolist(), len(keys), keys.key(2)
    ([0, 1, 0, 2], 3, 'c')
    """

    def __init__(self) -> None:
        self._ids: dict[Hashable, int] = {}
        self._keys: list[Hashable] = []

    def __len__(self) -> int:
        return len(self._keys)

    def index(self, keys: Iterable[Hashable]) -> np.ndarray:
        """(N,) int64 dense id of each key, assigning new ids to keys not seen before."""
        out = []
        for key in keys:  # a dict lookup per key: fine for modest pools, documented above
            i = self._ids.get(key)
            if i is None:
                i = self._ids[key] = len(self._keys)
                self._keys.append(key)
            out.append(i)
        return np.asarray(out, np.int64)

    def key(self, i: int) -> Hashable:
        return self._keys[i]

    def state_dict(self) -> dict[str, Any]:
        bad = [k for k in self._keys if not isinstance(k, (str, int))]
        if bad:
            raise TypeError(
                f"KeyIndex.state_dict needs str or int keys to stay JSON-exact, got {type(bad[0]).__name__}"
            )
        return {"kind": "key_index", "keys": list(self._keys)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "key_index":
            raise ValueError(f"expected a 'key_index' checkpoint, got kind={state.get('kind')!r}")
        self._keys = list(state["keys"])
        self._ids = {k: i for i, k in enumerate(self._keys)}
