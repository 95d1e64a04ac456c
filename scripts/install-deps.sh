#!/usr/bin/env bash
# Install the Debian packages the build and the tests need, when they are missing.
set -euo pipefail
PACKAGES=(protobuf-compiler libprotobuf-dev pkg-config python3-venv curl etcd-server etcd-client containerd runc containernetworking-plugins busybox-static iproute2 openssl nftables)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
