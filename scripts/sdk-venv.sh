#!/usr/bin/env bash
# Creates (once) a Python venv holding Tencent's official COS SDK, pinned, and prints the path
# of its python. Safe to run concurrently: the first caller builds, the others wait.
set -euo pipefail
SDK_VERSION="1.9.44"
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${COSMOUNT_SDK_VENV:-$here/target/sdk-venv}"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if ! "$venv/bin/python" -c "import qcloud_cos" >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "cos-python-sdk-v5==$SDK_VERSION" >&2
fi
echo "$venv/bin/python"
