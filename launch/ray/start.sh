#!/usr/bin/env bash
# Start a Ray node for rlbal runs, with the project's environment (venv first on PATH, offline hub, caches).
#
#   bash launch/ray/start.sh head [NUM_CPUS]            # head node; dashboard/job API on 127.0.0.1:8265
#   bash launch/ray/start.sh worker HEAD_IP:6379 [NUM_CPUS]   # on every other machine (same paths, same venv)
#   ray stop                                            # stops ALL Ray processes of this machine
#
# Traps (docs/ray.md):
# - The job's `python` is the one on the PATH of the shell that ran `ray start`: this script puts the venv first.
# - Ray >= 2.60 turns token auth on after the first `ray.init()` wrote ~/.ray/auth_token; then every client
#   needs RAY_AUTH_MODE=token. launch/env.sh sets RAY_AUTH_MODE=disabled (default here): keep the cluster on a
#   private network or switch to token auth.
# - GCS and raylet listen on ALL interfaces even with --node-ip-address 127.0.0.1: firewall the ports
#   (6379, 8265, 10001, worker ports) on any machine reachable from outside.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
export PATH="$RLBAL_VENV/bin:$PATH"
role="${1:?usage: start.sh head [NUM_CPUS] | worker HEAD_IP:PORT [NUM_CPUS]}"
case "$role" in
  head)
    cpus="${2:-$(nproc)}"
    exec ray start --head --num-cpus "$cpus" --port 6379 --dashboard-host 127.0.0.1 --dashboard-port 8265 \
      --disable-usage-stats ;;
  worker)
    address="${2:?worker needs the address of the head, IP:PORT}"
    cpus="${3:-$(nproc)}"
    exec ray start --address "$address" --num-cpus "$cpus" --disable-usage-stats ;;
  *)
    echo "start.sh: unknown role '$role' (head | worker)" >&2; exit 2 ;;
esac
