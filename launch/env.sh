# Sourced by the launch scripts: one persistent cache for everything slow to build, offline hub.
# Override RLBAL_CACHE to move it; RLBAL_VENV to use another virtual environment.
# rlbal itself sets the variables a run needs (rlbal/runtime_env.py: offline hub, caches, OpenMP policy; the
# vLLM KV cache from the recipe), so `rlbal train` behaves the same without this file; it serves the launch
# scripts and tools that are not rlbal (TRL's own vLLM in benchmarks/bench_trl.py reads VLLM_CPU_KVCACHE_SPACE).
RLBAL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export RLBAL_ROOT
export RLBAL_CACHE="${RLBAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rlbal}"
export RLBAL_VENV="${RLBAL_VENV:-$RLBAL_ROOT/.venv}"
export VLLM_CACHE_ROOT="${VLLM_CACHE_ROOT:-$RLBAL_CACHE/vllm}"
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$RLBAL_CACHE/inductor}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$RLBAL_CACHE/torch_extensions}"
export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-$RLBAL_CACHE/triton}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
export TOKENIZERS_PARALLELISM=false
# Ray token auth (docs/ray.md, "Auth (security)"): every cluster rlbal starts (launch/ray/start.sh, or the local one of
# `run.orchestrator=ray`) and every client present ~/.ray/auth_token; Ray's GCS listens on all interfaces.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
export RAY_USAGE_STATS_ENABLED=0
mkdir -p "$RLBAL_CACHE"
