#!/usr/bin/env bash
# The whole test suite: format, lints, and every test (unit, store conformance and crash,
# API server scenarios with the real kubectl 1.32/1.33, the official Python client).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# The official Python client, pinned, in a virtualenv of our own.
VENV=target/py-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import kubernetes" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "kubernetes==32.0.1"
fi
export SKIFF_TEST_PYTHON="$PWD/$VENV/bin/python"

for k in /usr/lib/google-cloud-sdk/bin/kubectl.1.32 /usr/lib/google-cloud-sdk/bin/kubectl.1.33; do
  [ -x "$k" ] || { echo "missing $k: the scenario tests need the real kubectl"; exit 1; }
done

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets

# The API scenarios again, unchanged, with each server on its own etcd instead of the embedded
# store (the support code starts Debian's etcd per server when SKIFF_TEST_DATASTORE=etcd).
SKIFF_TEST_DATASTORE=etcd cargo test -p skiff --test kubectl --test api_semantics --test bad_input --test python
