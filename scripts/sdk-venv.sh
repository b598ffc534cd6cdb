#!/usr/bin/env bash
# Creates (once) a Python venv holding Tencent's official COS SDK, pinned, and prints the path
# of its python.
set -euo pipefail
SDK_VERSION="1.9.44"
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${COSMOUNT_SDK_VENV:-$here/target/sdk-venv}"
"$here/scripts/pip-venv.sh" "$venv" "cos-python-sdk-v5==$SDK_VERSION" python -c "import qcloud_cos"
echo "$venv/bin/python"
