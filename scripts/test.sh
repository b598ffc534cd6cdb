#!/usr/bin/env bash
# The whole test suite: unit tests, client-vs-emulator tests, real FUSE mounts over the
# emulator, and Tencent's official Python SDK against the emulator. Needs fuse3 (/dev/fuse,
# fusermount3), python3 with venv, curl; see .ci/run for a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins
# The official SDK in a private venv (pinned; created once).
COSMOUNT_SDK_PYTHON="$(scripts/sdk-venv.sh)"
export COSMOUNT_SDK_PYTHON
cargo test --release -- --test-threads="${COSMOUNT_TEST_THREADS:-2}"
scripts/conformance.sh
echo "all tests passed"
