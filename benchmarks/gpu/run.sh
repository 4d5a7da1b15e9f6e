#!/usr/bin/env bash
# The GPU check of rlbal in one command (benchmarks/gpu/gpu_run.py says what it runs), results into $OUT
# (default runs/gpu/): gpu_summary.json, gpu_summary.md, gpu_logs.txt. Made for one H100 with CUDA torch,
# transformers and accelerate but no vLLM, Ray, DeepSpeed, TRL or network; about 5 minutes there.
#
#   bash benchmarks/gpu/run.sh --prepare     here, once: prompt files + the wheels the GPU image lacks (pydantic,
#                                            math-verify, TRL, ...) into .cache/gpu-carry/ (git-ignored, ~6 MiB)
#   bash benchmarks/gpu/run.sh               there: with .cache/gpu-carry carried along
#   bash benchmarks/gpu/run.sh --cpu         the small CPU setting, here (tests/test_gpu_script.py runs it)
#
# With the device tool: run(command="bash benchmarks/gpu/run.sh", carry=[".cache/gpu-carry"], timeout_s=600).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY="$(command -v python3)"; fi
export OUT="${OUT:-$ROOT/runs/gpu}"  # runs/ is git-ignored
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

case "${1:-}" in
  --prepare) exec "$PY" benchmarks/gpu/gpu_run.py prepare --wheels ;;
  --cpu) exec "$PY" benchmarks/gpu/gpu_run.py run --cpu --out "$OUT" ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu/run.sh [--prepare | --cpu]" >&2; exit 2 ;;
esac

# The GPU machine: install what it lacks from the carried wheels, then run.
mkdir -p "$OUT"
WHEELS="$ROOT/.cache/gpu-carry/wheels"
if ! "$PY" -c "import pydantic, math_verify" 2>/dev/null; then
  if [ ! -d "$WHEELS" ]; then
    echo "pydantic / math-verify missing and no $WHEELS: run 'bash benchmarks/gpu/run.sh --prepare' here" >&2
    exit 1
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/rlbal-site "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/rlbal-site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu_device.txt" || true
exec "$PY" benchmarks/gpu/gpu_run.py run --out "$OUT"
