"""How weights travel into a running vLLM engine: one transport per (process layout, device).

| transport  | engine                        | how                                                      | run here |
|------------|-------------------------------|----------------------------------------------------------|----------|
| "iterator" | in-process (CPU or GPU)       | `Worker.reload_weights(weights_iterator=...)`, no copies | yes, CPU |
| "shm_file" | separate engine process (CPU) | each bucket as safetensors in /dev/shm, `weights_path=`  | yes, CPU |
| "ipc"      | separate engine process, CUDA | vLLM's weight-transfer API, CUDA IPC handles, packed     | no GPU   |

"auto" picks by layout and device (`resolve_transport`). Every transport sends whole decoder
layers in buckets of about `bucket_bytes` (`weight_sync.plan_buckets`), one engine call per bucket,
never one per parameter ("iterator": one call by default); "ipc" leaves the chunking to vLLM's
packed producer with the same size.
Tensors in RPC arguments of a multi-process engine arrive as plain lists (and a failed reload
leaves the model half-reset), hence files or IPC handles there. Engines on *other* GPUs (NCCL) are
the Ray orchestrator's business: vLLM's `NCCLTrainerWeightTransferEngine` drives the same worker
methods the "ipc" client below calls.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from rlbal.rollout.weight_sync import DEFAULT_BUCKET_MB, iter_buckets, write_safetensors

TRANSPORTS = ("iterator", "shm_file", "ipc")


def resolve_transport(name: str, *, multiprocess: bool, device: str) -> str:
    """The transport for an engine layout; raises for names that cannot work there.

    >>> resolve_transport("auto", multiprocess=False, device="cpu")
    'iterator'
    >>> resolve_transport("auto", multiprocess=True, device="cpu")
    'shm_file'
    >>> resolve_transport("auto", multiprocess=True, device="cuda")
    'ipc'
    """
    if name == "auto":
        return "iterator" if not multiprocess else ("ipc" if device == "cuda" else "shm_file")
    if name not in TRANSPORTS:
        raise ValueError(f"unknown weight transport {name!r}; valid: {['auto', *TRANSPORTS]}")
    if name == "iterator" and multiprocess:
        raise ValueError(
            "transport='iterator' needs an in-process engine (multiprocess=False): "
            "tensors sent to another process arrive as lists"
        )
    if name == "ipc" and device != "cuda":
        raise ValueError(f"transport='ipc' needs CUDA, engine device is {device!r}")
    return name


def default_bucket_bytes(transport: str) -> int:
    """In-process: everything in one reload call (no copies are made, and each call re-walks every
    module: SmolLM2-135M fp32 took 0.91 s in 1 call, 1.36 s in 6, 2.31 s in 32). Otherwise
    DEFAULT_BUCKET_MB, which bounds the /dev/shm file or the IPC staging buffer.

    >>> default_bucket_bytes("shm_file") // 2**20
    512
    """
    return sys.maxsize if transport == "iterator" else DEFAULT_BUCKET_MB * 2**20


def send_iterator(llm: Any, state: Mapping[str, torch.Tensor], bucket_bytes: int) -> int:
    """In-process: the worker reads our tensors directly. Returns the number of engine calls."""
    calls = 0
    for bucket in iter_buckets(state, bucket_bytes):
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(bucket.items())})
        calls += 1
    return calls


def send_shm_file(llm: Any, state: Mapping[str, torch.Tensor], bucket_bytes: int) -> int:
    """Separate engine process: one safetensors file per bucket in RAM-backed /dev/shm."""
    root = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    folder = root / f"rlbal-weights-{uuid.uuid4().hex[:12]}"
    calls = 0
    try:
        for bucket in iter_buckets(state, bucket_bytes):
            path = write_safetensors(bucket, folder)
            llm.collective_rpc("reload_weights", kwargs={"weights_path": str(folder)})
            path.unlink()
            calls += 1
    finally:  # never leave hundreds of MB behind in RAM-backed /dev/shm
        shutil.rmtree(folder, ignore_errors=True)
    return calls


class IPCSender:
    """CUDA engine process on the same GPU: vLLM's weight-transfer API, IPC backend, packed buckets.

    Written against vLLM 0.32 (`vllm.distributed.weight_transfer.ipc_engine`); NOT run in this
    project's CI (no CUDA + vLLM machine). The engine must be built with
    `weight_transfer_config={"backend": "ipc"}` (VLLMEngine does that when this transport is chosen).
    """

    def __init__(self, llm: Any, bucket_bytes: int) -> None:
        from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo, IPCTrainerWeightTransferEngine

        self.source = _state_source()
        self.trainer = IPCTrainerWeightTransferEngine.trainer_init(
            IPCTrainerInitInfo(rank=0, packed=True, packed_buffer_size_bytes=bucket_bytes),
            client=_LLMSyncClient(llm),
            source=self.source,
        )

    def __call__(self, llm: Any, state: Mapping[str, torch.Tensor], bucket_bytes: int) -> int:
        self.source.state = state
        self.trainer.send_weights()
        nbytes = sum(t.numel() * t.element_size() for t in state.values())
        return max(1, -(-nbytes // bucket_bytes))


class _LLMSyncClient:
    """vLLM's `VLLMWeightSyncClient` protocol over an offline `LLM`: each call is a worker RPC."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self.llm.collective_rpc("init_weight_transfer_engine", args=(init_info,))

    def start_weight_update(self) -> None:
        self.llm.collective_rpc("start_weight_update")

    def update_weights(self, update_info: Any) -> None:
        self.llm.collective_rpc("update_weights", args=(update_info,))

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self.llm.collective_rpc("finish_weight_update")


def _state_source() -> Any:
    """A vLLM `WeightSource` over a state dict that is swapped in before each send."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class StateSource(WeightSource):
        state: Mapping[str, torch.Tensor] = {}

        def metadata(self) -> list[ParamMeta]:
            return [ParamMeta(n, t.dtype, tuple(t.shape)) for n, t in self.state.items()]

        def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
            return iter(self.state.items())

    return StateSource()


def make_sender(name: str, llm: Any, bucket_bytes: int) -> Callable[[Any, Mapping[str, torch.Tensor], int], int]:
    """The callable `(llm, state, bucket_bytes) -> engine calls` for a resolved transport name."""
    if name == "ipc":
        return IPCSender(llm, bucket_bytes)
    return {"iterator": send_iterator, "shm_file": send_shm_file}[name]


def set_multiprocessing(enabled: bool) -> None:
    """vLLM reads this switch when an `LLM` is built: 0 keeps the engine core in this process."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if enabled else "0"
