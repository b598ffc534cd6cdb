#!/usr/bin/env bash
# The whole test suite: unit tests, client-vs-emulator tests, real FUSE mounts over the
# emulator, Tencent's official Python SDK against the emulator, and a bounded run of fsx (an
# independent file-system exerciser) on a mount. Needs fuse3 (/dev/fuse, fusermount3), python3
# with venv, curl; see .ci/run for a fresh Debian machine. The SDK (in a venv) and fsx (with
# cargo) are installed under target/ the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins
# The official SDK in a private venv (pinned; created once).
COSMOUNT_SDK_PYTHON="$(scripts/sdk-venv.sh)"
export COSMOUNT_SDK_PYTHON
cargo test --release -- --test-threads="${COSMOUNT_TEST_THREADS:-2}"
scripts/conformance.sh
if ! command -v fsx >/dev/null 2>&1; then
  if [[ ! -x target/tools/bin/fsx ]]; then
    echo "test.sh: installing fsx (cargo install fsx) under target/tools" >&2
    cargo install --quiet --locked --root target/tools fsx
  fi
  export PATH="$PWD/target/tools/bin:$PATH"
fi
COSMOUNT_SKIP_BUILD=1 scripts/fsx.sh "${COSMOUNT_FSX_OPS:-5000}"
echo "all tests passed"
