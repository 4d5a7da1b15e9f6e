#!/usr/bin/env bash
# Start a Ray node for rlbal runs, with the project's environment (venv first on PATH, offline hub, caches),
# token authentication on (docs/ray.md, "Auth (security)").
#
#   bash launch/ray/start.sh head [NUM_CPUS]                     # one machine: node on 127.0.0.1, job API 127.0.0.1:8265
#   bash launch/ray/start.sh cluster-head NODE_IP [NUM_CPUS]     # multi-node head, reachable on NODE_IP
#   bash launch/ray/start.sh worker HEAD_IP:6379 [NUM_CPUS]      # every other machine (same paths, same venv)
#   ray stop                                                     # stops ALL Ray processes of this machine
#
# Token auth: every Ray process and client of the cluster must present the same token (~/.ray/auth_token, or
# RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN). `head` and `cluster-head` create it (mode 600) if it is missing; a
# worker must be given the head's token first (copy the file). launch/env.sh exports RAY_AUTH_MODE=token.
# Interfaces: Ray's GCS and raylet accept connections on all interfaces even with --node-ip-address 127.0.0.1
# (measured with Ray 2.60): on a single machine the token is what keeps other hosts out; firewall the ports
# (6379, 10001, the node/object manager and worker ports) of any machine reachable from outside.
# The job's `python` is the one on the PATH of the shell that ran `ray start`: this script puts the venv first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"
export PATH="$RLBAL_VENV/bin:$PATH"
usage="usage: start.sh head [NUM_CPUS] | cluster-head NODE_IP [NUM_CPUS] | worker HEAD_IP:PORT [NUM_CPUS]"
role="${1:?$usage}"
token_file="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"

require_token_auth() {
  if [ "${RAY_AUTH_MODE}" != "token" ]; then
    echo "start.sh: RAY_AUTH_MODE=${RAY_AUTH_MODE}; rlbal starts Ray nodes with token auth only (unset it or set token)" >&2
    exit 2
  fi
}

ensure_token() {  # the head creates the cluster's token once; it is a credential: readable by its owner only
  if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ ! -s "$token_file" ]; then
    ray get-auth-token --generate >/dev/null
  fi
  if [ -f "$token_file" ]; then chmod 600 "$token_file"; fi
}

case "$role" in
  head)
    require_token_auth
    ensure_token
    cpus="${2:-$(nproc)}"
    exec ray start --head --node-ip-address 127.0.0.1 --num-cpus "$cpus" --port 6379 \
      --dashboard-host 127.0.0.1 --dashboard-port 8265 --disable-usage-stats ;;
  cluster-head)
    require_token_auth
    node_ip="${2:?cluster-head needs the IP of this machine on the cluster network: start.sh cluster-head NODE_IP}"
    ensure_token
    cpus="${3:-$(nproc)}"
    echo "[start.sh] token: $token_file; copy it to the same path on every worker and client machine" >&2
    exec ray start --head --node-ip-address "$node_ip" --num-cpus "$cpus" --port 6379 \
      --dashboard-host 127.0.0.1 --dashboard-port 8265 --disable-usage-stats ;;
  worker)
    require_token_auth
    address="${2:?worker needs the address of the head, IP:PORT}"
    if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ ! -s "$token_file" ]; then
      echo "start.sh: no Ray auth token at $token_file; copy the head's ~/.ray/auth_token there first" >&2
      exit 2
    fi
    cpus="${3:-$(nproc)}"
    exec ray start --address "$address" --num-cpus "$cpus" --disable-usage-stats ;;
  *)
    echo "start.sh: unknown role '$role' ($usage)" >&2; exit 2 ;;
esac
