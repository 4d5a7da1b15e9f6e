#!/usr/bin/env bash
# The main job: install (reused if already there), build the offline tiny model, and train it with GDRO
# (Prompt-GDRO + Rollout-GDRO) on procedural arithmetic on CPU. ~6 minutes of training on 2 cores (plus a 4.5-minute first install).
# Leaves runs/quickstart/ with metrics.jsonl, TensorBoard events, a checkpoint and plots/.
# Extra arguments go to `rlbal train`: recipe overrides, e.g. `bash launch/quickstart.sh run.max_steps=5`, and
# --verbose (third-party logs in full, pip's too).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
for arg in "$@"; do [ "$arg" = "--verbose" ] && export RLBAL_VERBOSE=1; done
bash "$RLBAL_ROOT/launch/install.sh"
cd "$RLBAL_ROOT"
"$RLBAL_VENV/bin/rlbal" train recipes/quickstart.yaml "$@"
