#!/usr/bin/env bash
# Official-SDK conformance suite: runs Tencent's own Python COS SDK (cos-python-sdk-v5, pinned
# by scripts/sdk-venv.sh, unmodified) against three cos-emulator instances and checks that the
# emulator answers exactly as COS does (tests/conformance/test_sdk.py).
#
#   scripts/conformance.sh            # uses target/release/cos-emulator
#   COS_EMULATOR=/path/to/cos-emulator scripts/conformance.sh
#
# Extra arguments are passed to unittest (e.g. `-k sse`). Exits with the suite's status.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

emulator="${COS_EMULATOR:-target/release/cos-emulator}"
if [[ ! -x "$emulator" ]]; then
  echo "conformance: emulator binary not found at '$emulator'." >&2
  echo "conformance: build it with 'cargo build --release --bin cos-emulator' or set COS_EMULATOR." >&2
  exit 2
fi

py="$(scripts/sdk-venv.sh)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/cosmount-conformance.XXXXXX")"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

secret_id="AKIDconformance"
secret_key="conformanceSecretKey0123456789ab"
token="TOKEN123"
bucket="examplebucket-1250000000"
bucket2="second-1250000000"
region="ap-guangzhou"
far_bucket="far-1250000000"
far_region="ap-beijing"

# start_emulator NAME [extra args...]: starts one emulator on a free port, waits for its
# "listening on http://127.0.0.1:PORT" line and stores the port in the variable port_NAME.
start_emulator() {
  local name="$1"
  shift
  mkdir -p "$tmp/$name"
  "$emulator" --listen 127.0.0.1:0 --data-dir "$tmp/$name/data" \
    --secret-id "$secret_id" --secret-key "$secret_key" \
    --bucket "$bucket" --bucket "$bucket2" --region "$region" "$@" \
    >"$tmp/$name/stdout" 2>"$tmp/$name/stderr" &
  local pid=$!
  pids+=("$pid")
  local line="" i
  for ((i = 0; i < 200; i++)); do
    if [[ -s "$tmp/$name/stdout" ]]; then
      IFS= read -r line <"$tmp/$name/stdout" || true
      if [[ "$line" == "listening on http://127.0.0.1:"* ]]; then
        break
      fi
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "conformance: emulator '$name' exited before listening:" >&2
      cat "$tmp/$name/stderr" >&2 || true
      exit 1
    fi
    sleep 0.05
  done
  if [[ "$line" != "listening on http://127.0.0.1:"* ]]; then
    echo "conformance: emulator '$name' did not report its address within 10 s" >&2
    cat "$tmp/$name/stderr" >&2 || true
    exit 1
  fi
  local port="${line##*:}"
  if [[ ! "$port" =~ ^[0-9]+$ ]]; then
    echo "conformance: cannot parse the port from '$line'" >&2
    exit 1
  fi
  printf -v "port_$name" '%s' "$port"
}

start_emulator main --bucket "$far_bucket@$far_region"
start_emulator sts --security-token "$token"
start_emulator faults --faults 'complete:error200:x1,copy:error200:x1,put:503:x2'

# The SDK must reach the emulators only through the explicit proxy it is given.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY || true

export CONFORMANCE_PORT="$port_main"
export CONFORMANCE_STS_PORT="$port_sts"
export CONFORMANCE_FAULT_PORT="$port_faults"
export CONFORMANCE_SECRET_ID="$secret_id"
export CONFORMANCE_SECRET_KEY="$secret_key"
export CONFORMANCE_TOKEN="$token"
export CONFORMANCE_BUCKET="$bucket"
export CONFORMANCE_BUCKET2="$bucket2"
export CONFORMANCE_REGION="$region"
export CONFORMANCE_FAR_BUCKET="$far_bucket"
export CONFORMANCE_FAR_REGION="$far_region"
export CONFORMANCE_TMP="$tmp/work"
mkdir -p "$CONFORMANCE_TMP"

status=0
"$py" -m unittest -v tests/conformance/test_sdk.py "$@" || status=$?
if [[ $status -ne 0 ]]; then
  for name in main sts faults; do
    if [[ -s "$tmp/$name/stderr" ]]; then
      echo "---- emulator '$name' stderr ----" >&2
      tail -n 50 "$tmp/$name/stderr" >&2
    fi
  done
fi
exit "$status"
