"""Offline assets: the cache (build once, atomic, locked), the tiny models, the SFT warm-start, SmolLM2 conversion."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlbal import assets
from rlbal.errors import ModelError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLBAL_CACHE", str(tmp_path))
    return tmp_path / "assets"


@pytest.fixture(scope="module")
def tiny_path():
    return assets.resolve_model("tiny")


# ------------------------------------------------------------------ the cache


def test_asset_cache_dir_follows_rlbal_cache(monkeypatch):
    monkeypatch.setenv("RLBAL_CACHE", "/some/where")
    assert assets.asset_cache_dir() == Path("/some/where/assets")
    monkeypatch.delenv("RLBAL_CACHE")
    assert assets.asset_cache_dir() == Path.home() / ".cache" / "rlbal" / "assets"


def _writer(calls):
    def build(out):
        calls.append(out)
        (out / "weights.bin").write_bytes(b"abc")

    return build


def test_build_once_then_reuse_with_manifest(tmp_cache):
    calls = []
    recipe = {"kind": "toy", "n": 1}
    first = assets.build_cached("toy", recipe, _writer(calls))
    second = assets.build_cached("toy", recipe, _writer(calls))
    assert first == second == tmp_cache / f"toy-{assets.recipe_hash(recipe)[:12]}"
    assert len(calls) == 1  # built once
    manifest = assets.read_manifest(first)
    assert manifest["recipe"] == recipe and manifest["recipe_hash"] == assets.recipe_hash(recipe)
    assert manifest["files"] == {"weights.bin": hashlib.sha256(b"abc").hexdigest()}
    assert oct(first.stat().st_mode & 0o777) == "0o755"
    assert [p.name for p in tmp_cache.iterdir() if p.name.startswith(".toy")] == []  # no temp dir left
    # a different recipe is a different folder
    assert assets.build_cached("toy", {"kind": "toy", "n": 2}, _writer(calls)) != first
    assert len(calls) == 2


def test_failed_build_leaves_nothing_and_is_retried(tmp_cache):
    def boom(out):
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        assets.build_cached("toy", {"k": 1}, boom)
    assert [p.name for p in tmp_cache.iterdir() if not p.name.startswith(".locks")] == []
    calls = []
    assert (assets.build_cached("toy", {"k": 1}, _writer(calls)) / "weights.bin").read_bytes() == b"abc"
    assert len(calls) == 1


def test_folder_without_manifest_is_rebuilt(tmp_cache):
    recipe = {"k": 3}
    stale = tmp_cache / f"toy-{assets.recipe_hash(recipe)[:12]}"
    stale.mkdir(parents=True)
    (stale / "junk").write_text("half-written by hand")
    killed = tmp_cache / f".{stale.name}.tmp-dead"  # temp dir of a builder that was SIGKILLed
    killed.mkdir()
    calls = []
    assert assets.build_cached("toy", recipe, _writer(calls)) == stale
    assert len(calls) == 1 and not (stale / "junk").exists() and not killed.exists()


CONCURRENT = """
import os, sys, time
from pathlib import Path
from rlbal import assets
def build(out):
    with open(sys.argv[1], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(1.0)  # long enough that the other process arrives while this one builds
    (out / "w.bin").write_bytes(b"w")
print(assets.build_cached("race", {"k": 1}, build))
"""


def test_concurrent_builders_build_once(tmp_cache, tmp_path):
    log = tmp_path / "builds.log"
    env = {**os.environ, "RLBAL_CACHE": str(tmp_path), "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT, str(log)], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert len(set(outs)) == 1 and (Path(outs[0]) / "w.bin").read_bytes() == b"w"
    assert len(log.read_text().split()) == 1  # exactly one process ran the build


def test_fix_cross_version(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"rope_parameters": {"rope_theta": 100000, "rope_type": "default"}})
    )
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "TokenizersBackend",
                "backend": "tokenizers",
                "is_local": True,
                "local_files_only": True,
                "eos_token": "<|im_end|>",
            }
        )
    )
    assets.fix_cross_version(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["rope_theta"] == 100000.0
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|im_end|>",
    }


def test_resolve_model_errors(tmp_path):
    with pytest.raises(ModelError, match=r"'no/such/dir' is neither a built-in asset \['smollm2-135m', 'tiny'"):
        assets.resolve_model("no/such/dir")
    with pytest.raises(ModelError, match=f"{re.escape(str(tmp_path))} has no config.json"):
        assets.resolve_model(tmp_path)
    with pytest.raises(ValueError, match="unknown tiny model variant 'gpt2'; valid: \\['llama', 'qwen2'\\]"):
        assets.tiny_model("gpt2")


def test_model_folder_checks_name_the_first_problem(tmp_path, tiny_path):
    """Each damage of a copied tiny model folder is found from headers and sizes, before anything loads it."""
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_path, folder)
    assert assets.resolve_model(str(folder)) == folder
    weights = folder / "model.safetensors"
    whole = weights.read_bytes()
    n = int.from_bytes(whole[:8], "little")
    weights.write_bytes(whole[: len(whole) - 100])
    with pytest.raises(
        ModelError,
        match=re.escape(f"{weights}: truncated ({len(whole) - 100} bytes, the header describes {len(whole)})"),
    ):
        assets.resolve_model(folder)
    weights.write_bytes(b"\x05\x00")
    with pytest.raises(ModelError, match=re.escape(f"{weights}: truncated (2 bytes; not a safetensors file)")):
        assets.resolve_model(folder)
    weights.write_bytes(whole[:8] + b"{" * n + whole[8 + n :])
    with pytest.raises(ModelError, match=re.escape(f"{weights}: not a safetensors file (unreadable header)")):
        assets.resolve_model(folder)
    weights.unlink()
    with pytest.raises(ModelError, match=re.escape(f"model folder {folder} has no weights")):
        assets.resolve_model(folder)
    weights.write_bytes(whole)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").unlink()
    with pytest.raises(ModelError, match=re.escape(f"model folder {folder} has no tokenizer (tokenizer.json,")):
        assets.resolve_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=re.escape(f"{folder / 'config.json'}: not a valid config (Expecting")):
        assets.resolve_model(folder)


RANK1_BUILDS = """
import sys, torch.distributed as dist
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=int(sys.argv[2]), world_size=2)
from rlbal.assets import tiny_model
if dist.get_rank() == 1:
    print(tiny_model())
dist.barrier()
"""


@pytest.mark.slow
def test_rank_1_builds_into_an_empty_cache_under_torch_distributed(tmp_path):
    """transformers 5 writes nothing from save_pretrained on ranks other than 0: rank 1 builds in a child process."""
    env = {**os.environ, "RLBAL_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK1_BUILDS, str(tmp_path / "store"), str(rank)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[1][1][-3000:]
    folder = Path(outs[1][0].strip())
    assert folder.parent == tmp_path / "cache" / "assets" and folder.name.startswith("tiny-llama-")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", assets.MANIFEST} <= names
    assert (
        assets.read_manifest(folder)["files"]["model.safetensors"]
        == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    )


def test_tiny_sft_with_a_step_count_names_the_same_cached_build():
    assert assets.resolve_model(f"tiny-sft-{assets.TINY_SFT_STEPS}") == assets.resolve_model("tiny-sft")
    with pytest.raises(ModelError, match="'tiny-sft-x' is neither a built-in asset"):
        assets.resolve_model("tiny-sft-x")


# ------------------------------------------------------------------ the tiny model


def test_tiny_model_config_tokenizer_and_template(tiny_path):
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(tiny_path)
    assert (cfg.model_type, cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.head_dim) == (
        "llama",
        512,
        128,
        2,
        64,
    )
    assert json.loads((tiny_path / "config.json").read_text())["rope_theta"] == 10000.0
    tok = AutoTokenizer.from_pretrained(tiny_path)
    assert len(tok) == 512
    assert tok.convert_tokens_to_ids(list(assets.SPECIAL_TOKENS)) == [0, 1, 2, 3]
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<pad>", None)
    assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (0, 2, 3)
    text = tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "1 + 2 ="}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n1 + 2 =<|im_end|>\n<|im_start|>assistant\n"
    s = "Calculate 12 + 7. The answer is \\boxed{19}."
    assert tok.decode(tok(s)["input_ids"]) == s  # byte-level: lossless, no BOS added


def _greedy_reference(model, ids, steps):
    """Slow obviously-correct greedy decoding: full forward each step, argmax of the last logits."""
    import torch

    out = ids
    for _ in range(steps):
        nxt = model(out).logits[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], dim=1)
    return out


@pytest.mark.parametrize(
    "name,arch,params",
    [
        # embed 512*128 = 65,536; per layer q 128*128 + k 128*64 + v 128*64 + o 128*128 = 49,152,
        # MLP 3*128*256 = 98,304, 2 norms 256 -> 147,712; 2 layers + final norm 128 + tied head 0 = 361,088.
        # Qwen2 adds q/k/v biases 128+64+64 per layer.
        ("tiny", "LlamaForCausalLM", 361_088),
        ("tiny-qwen2", "Qwen2ForCausalLM", 361_088 + 2 * 256),
    ],
)
def test_tiny_models_load_and_generate(name, arch, params):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = assets.resolve_model(name)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == arch
    assert sum(p.numel() for p in model.parameters()) == params
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "3 + 4 ="}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        # min_new_tokens: the random-init model may pick EOS early; we compare 8 full steps
        got = model.generate(
            ids, max_new_tokens=8, min_new_tokens=8, do_sample=False, suppress_tokens=[tok.eos_token_id]
        )
        want = _greedy_reference(lambda x: _suppress(model(x), tok.eos_token_id), ids, 8)
    assert got.shape == (1, ids.shape[1] + 8)
    assert got.tolist() == want.tolist()


def _suppress(out, token):
    out.logits[..., token] = float("-inf")
    return out


def test_tiny_build_is_byte_identical(tiny_path, tmp_cache):
    rebuilt = assets.tiny_model("llama")  # fresh build into the empty temp cache
    assert rebuilt.parent == tmp_cache
    assert assets.read_manifest(rebuilt)["files"] == assets.read_manifest(tiny_path)["files"]


def test_sft_examples_mask_the_prompt(tiny_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    ids_NT, mask_NT, labels_NT = assets.sft_examples(tok, n=4, seed=0)
    for i in range(4):
        target = labels_NT[i][labels_NT[i] != -100].tolist()
        assert re.fullmatch(r"The answer is \\boxed\{-?\d+\}\.<\|im_end\|>", tok.decode(target))
        n_real = int(mask_NT[i].sum())
        # the supervised tokens are exactly the last tokens of the real (unpadded) sequence
        assert ids_NT[i, n_real - len(target) : n_real].tolist() == target
        assert tok.decode(ids_NT[i, : n_real - len(target)]).endswith("<|im_start|>assistant\n")


def test_sft_warm_start_is_deterministic_and_learns(tiny_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_path)
    runs = []
    for _ in range(2):
        model = AutoModelForCausalLM.from_pretrained(tiny_path)
        losses = assets.sft_warm_start(model, tok, steps=4, seed=0, batch_size=8, n_examples=64)
        runs.append((losses, {k: v.clone() for k, v in model.state_dict().items()}))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    assert runs[0][0][-1] < runs[0][0][0]  # next-token loss falls from ~ln(512)=6.2
    assert abs(runs[0][0][0] - 6.24) < 0.1


def _boxed_reward(path, level, n=64):
    """Greedy chain_sum accuracy of a model, scored by the last \\boxed{} (exact integer match)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlbal.data import PromptFormat, build_messages, render
    from rlbal.data.procedural import generate_entries

    model, tok = AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    entries = generate_entries("chain_sum", level, n, seed=12345)  # not the SFT examples' seed
    _, ids = render(tok, [build_messages(e["question"], PromptFormat()) for e in entries], PromptFormat())
    tok.padding_side = "left"
    batch = tok.pad({"input_ids": ids}, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=24, do_sample=False)
    texts = tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    got = [re.findall(r"\\boxed\{([^}]*)\}", t) for t in texts]
    return sum(bool(g) and g[-1].strip() == e["answer"] for g, e in zip(got, entries)) / n


@pytest.mark.slow
def test_tiny_sft_earns_some_but_not_all_reward():
    path = assets.resolve_model("tiny-sft")
    easy, hard = _boxed_reward(path, 1), _boxed_reward(path, 3)
    # measured 0.20 (level 1) and 0.0 (level 3) with greedy decoding; RL needs 0 < reward < 1
    assert 0.05 <= easy <= 0.8
    assert hard < easy
    assert _boxed_reward(assets.resolve_model("tiny"), 1) == 0.0  # the untrained model never boxes an answer


# ------------------------------------------------------------------ SmolLM2-135M-Instruct


@pytest.mark.slow
def test_smollm2_conversion_loads_and_matches_the_gguf():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = assets.smollm2_135m()
    cfg = json.loads((path / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"], cfg["rope_theta"]) == (
        30,
        576,
        49152,
        100000.0,
    )
    tok_cfg = json.loads((path / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast" and "backend" not in tok_cfg
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert model.dtype == torch.bfloat16 and sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.eos_token == "<|im_end|>"
    gguf = assets.smollm2_gguf()
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    ref_sd = ref.state_dict()
    for k, v in model.state_dict().items():  # the saved weights are the GGUF's dequantized weights, rounded to bf16
        assert torch.equal(v, ref_sd[k].to(torch.bfloat16)), k
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3? Answer with the number only."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "5" in tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
