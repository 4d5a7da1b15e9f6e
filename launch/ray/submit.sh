#!/usr/bin/env bash
# Submit an rlbal training run to a Ray cluster (started with launch/ray/start.sh) as a Ray job.
#
#   bash launch/ray/submit.sh recipes/gdro.yaml ray.rollout_actors=2 ray.learner_ranks=2
#   RAY_JOB_ADDRESS=http://10.0.0.5:8265 bash launch/ray/submit.sh recipes/gdro.yaml run.output_dir=/shared/runs
#
# The repository is uploaded as the job's working directory (files ignored by .gitignore stay behind: .venv,
# runs/); the job runs `python -m rlbal.train RECIPE run.orchestrator=ray OVERRIDES` with the python of the
# cluster's PATH. Multi-node: run.output_dir must be a shared filesystem (learner ranks write checkpoint
# shards) and the model folder must exist at the same path on every node. Follows the logs until the job ends.
# Token auth (launch/env.sh): this machine needs the cluster's token in ~/.ray/auth_token (docs/ray.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
export PATH="$RLBAL_VENV/bin:$PATH"
recipe="${1:?usage: submit.sh RECIPE [key.sub=value ...]}"
shift
cd "$RLBAL_ROOT"
exec ray job submit --address "${RAY_JOB_ADDRESS:-http://127.0.0.1:8265}" --working-dir . \
  -- python -m rlbal.train "$recipe" run.orchestrator=ray "$@"
