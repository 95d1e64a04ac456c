#!/usr/bin/env bash
# Install what is missing, build Skiff, and start a single-node cluster: `skiff cluster up` runs
# the server on a private /24 and one node agent (with its own containerd) in a network
# namespace of its own, so nothing touches this machine's real interfaces or routing. The admin
# kubeconfig is linked at $SKIFF_DATA_DIR/kubeconfig.yaml (default /var/lib/skiff).
# Re-running it replaces the cluster it started before.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${SKIFF_DATA_DIR:-/var/lib/skiff}
NAME=${SKIFF_CLUSTER:-local}
NODES=${SKIFF_NODES:-1}
CLUSTER_DIR="$DATA_DIR/clusters/$NAME"

scripts/install-deps.sh
cargo build --release -p skiff
install -m 0755 target/release/skiff /usr/local/bin/skiff

mkdir -p "$DATA_DIR/images"
# No registry is reachable from these machines: a busybox image built from Debian's
# busybox-static is imported by every node (tagged busybox:1.36 and busybox:latest).
scripts/busybox-image.sh "$DATA_DIR/images" >/dev/null
if [ -f "$CLUSTER_DIR/cluster.json" ]; then
  echo "taking down the cluster started earlier"
  /usr/local/bin/skiff cluster down --name "$NAME" --dir "$CLUSTER_DIR"
fi
/usr/local/bin/skiff cluster up --name "$NAME" --nodes "$NODES" --dir "$CLUSTER_DIR" \
  --images "$DATA_DIR/images"
ln -sf "$CLUSTER_DIR/server/kubeconfig.yaml" "$DATA_DIR/kubeconfig.yaml"
echo
echo "The cluster is up. Use it with:"
echo "  export KUBECONFIG=$DATA_DIR/kubeconfig.yaml"
echo "  kubectl get nodes"
echo "  kubectl create deployment web --image=busybox:1.36 -- httpd -f -p 8080 -h /etc"
echo "Remove it (every process, pod, namespace and file it made) with:"
echo "  skiff cluster down --name $NAME --dir $CLUSTER_DIR"
