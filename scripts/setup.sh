#!/usr/bin/env bash
# Install what is missing, build Skiff, and start a single-node control plane with its admin
# kubeconfig at $SKIFF_DATA_DIR/kubeconfig.yaml (default /var/lib/skiff).
# Re-running it restarts the server it started before (found by its pid file).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${SKIFF_DATA_DIR:-/var/lib/skiff}
PORT=${SKIFF_PORT:-6443}

scripts/install-deps.sh
cargo build --release -p skiff
install -m 0755 target/release/skiff /usr/local/bin/skiff

mkdir -p "$DATA_DIR"
if [ -f "$DATA_DIR/server.pid" ] && kill -0 "$(cat "$DATA_DIR/server.pid")" 2>/dev/null; then
  echo "stopping the skiff server started earlier (pid $(cat "$DATA_DIR/server.pid"))"
  kill "$(cat "$DATA_DIR/server.pid")"
  for _ in $(seq 1 50); do kill -0 "$(cat "$DATA_DIR/server.pid")" 2>/dev/null || break; sleep 0.2; done
fi
# The node agent is not part of this build yet: the server runs the control plane only.
nohup /usr/local/bin/skiff server --data-dir "$DATA_DIR" --https-listen-port "$PORT" --disable-agent \
  >"$DATA_DIR/server.out" 2>"$DATA_DIR/server.log" &
echo $! >"$DATA_DIR/server.pid"
for _ in $(seq 1 100); do
  grep -q "skiff server ready" "$DATA_DIR/server.out" 2>/dev/null && break
  kill -0 "$(cat "$DATA_DIR/server.pid")" 2>/dev/null || { cat "$DATA_DIR/server.log"; exit 1; }
  sleep 0.1
done
grep "skiff server ready" "$DATA_DIR/server.out"
echo
echo "The cluster is up. Use it with:"
echo "  export KUBECONFIG=$DATA_DIR/kubeconfig.yaml"
echo "  kubectl get namespaces"
echo "Stop it with: kill \$(cat $DATA_DIR/server.pid)"
