#!/usr/bin/env bash
# Pod startup with a fresh `local-path` volume on a real node, against a pod without one.
# Usage: scripts/volume-startup-bench.sh KUBECONFIG [N]   (e.g. a `skiff cluster up` cluster)
# Each sample: `kubectl apply` of a claim + pod, then `kubectl wait --for=condition=Ready`;
# the time includes both kubectl start-ups (~50 ms each). Prints p50/max per kind, in ms.
set -euo pipefail
KCFG=${1:?usage: $0 KUBECONFIG [N]}
N=${2:-20}
KUBECTL=${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
k() { "$KUBECTL" --kubeconfig "$KCFG" --cache-dir "$work/cache" "$@"; }
run() { # kind index
  local name="vb-$1-$2-$$" t0 t1
  if [ "$1" = volume ]; then
    cat > "$work/o.yaml" <<Y
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $name}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 16Mi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {name: c, image: "busybox:1.36", command: [sh, -c, "echo x > /data/f; sleep 3600"], volumeMounts: [{name: d, mountPath: /data}]}
  volumes: [{name: d, persistentVolumeClaim: {claimName: $name}}]
Y
  else
    cat > "$work/o.yaml" <<Y
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - {name: c, image: "busybox:1.36", command: [sleep, "3600"]}
Y
  fi
  t0=$(date +%s%N)
  k apply -f "$work/o.yaml" >/dev/null
  k wait --for=condition=Ready "pod/$name" --timeout=120s >/dev/null
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
  k delete -f "$work/o.yaml" --wait=false >/dev/null
}
for kind in plain volume; do
  : > "$work/$kind"
  for i in $(seq 1 "$N"); do run "$kind" "$i" >> "$work/$kind"; done
  sort -n "$work/$kind" | awk -v kind="$kind" '{a[NR]=$1} END {
    p50=a[int((NR+1)/2)]; p99=a[int(NR*0.99+0.999)]; if (p99=="") p99=a[NR];
    printf "%s_pod_ready_p50_ms=%d %s_pod_ready_p99_ms=%d n=%d\n", kind, p50, kind, p99, NR }'
done
