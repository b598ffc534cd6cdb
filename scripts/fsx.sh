#!/usr/bin/env bash
# Runs fsx (File System eXerciser, the crates.io port of Apple's/FreeBSD's fsx: an independent
# checker nobody here wrote) on a file inside a cosmount mount of a fresh cos-emulator. fsx
# applies a seeded random sequence of writes, reads, truncations, mmap reads/writes, fsyncs
# and close/reopens to one file, and checks every byte it reads (and the size after each op)
# against its own copy.
#
#   scripts/fsx.sh [OPS]          # OPS operations (default 10000); exit status is fsx's
#   FSX_SEED=123 scripts/fsx.sh   # replay a seed (printed at the start)
#   FSX_FLEN=4194304 FSX_OPSIZE=262144 FSX_PART_SIZE=1M scripts/fsx.sh   # the defaults
#
# Needs fuse3 (fusermount3, /dev/fuse) and fsx (`cargo install fsx`). COSMOUNT_SKIP_BUILD=1
# skips `cargo build --release --bins`. The options fsx runs with are in the fsx.toml below,
# with the reason for every operation left out.
set -euo pipefail

ops="${1:-10000}"
if [[ ! "$ops" =~ ^[1-9][0-9]*$ ]]; then
  echo "fsx.sh: OPS must be a positive number, not '$ops'" >&2
  exit 2
fi
seed="${FSX_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
# 4 MiB file, operations up to 256 KiB, 1 MiB parts: every commit of a file over 1 MiB is a
# multipart upload (with Upload Part - Copy of unchanged parts), parts go up while fsx writes.
flen="${FSX_FLEN:-4194304}"
opsize="${FSX_OPSIZE:-262144}"
part_size="${FSX_PART_SIZE:-1M}"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v fsx >/dev/null 2>&1; then
  echo "fsx.sh: fsx is not installed: run 'cargo install fsx'" >&2
  exit 2
fi
if ! command -v fusermount3 >/dev/null 2>&1 || [[ ! -e /dev/fuse ]]; then
  echo "fsx.sh: FUSE is not available (no fusermount3 or /dev/fuse)" >&2
  exit 2
fi
if [[ "${COSMOUNT_SKIP_BUILD:-}" != 1 ]]; then
  cargo build --release --bins
fi
cosmount="$root/target/release/cosmount"
emulator="$root/target/release/cos-emulator"
for bin in "$cosmount" "$emulator"; do
  if [[ ! -x "$bin" ]]; then
    echo "fsx.sh: $bin is missing; run 'cargo build --release --bins'" >&2
    exit 2
  fi
done

bucket="fsx-1250000000"
secret_id="AKIDcosmountFSX"
secret_key="cosmount-fsx-secret-key"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/cosmount-fsx.XXXXXX")"
tmp="$(cd "$tmp" && pwd -P)" # mountinfo shows resolved paths
mnt="$tmp/mnt"
mkdir -p "$mnt" "$tmp/cache" "$tmp/artifacts"
emu_pid=""
mount_pid=""

prog=fsx.sh
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  if is_mounted; then
    fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
  fi
  local pid i
  for pid in "$mount_pid" "$emu_pid"; do
    [[ -n "$pid" ]] || continue
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      ((i == 20)) && kill "$pid" 2>/dev/null
      sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "${FSX_KEEP:-}" == 1 ]]; then
    echo "fsx.sh: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# The emulator on a free port; its first line says where.
"$emulator" --listen 127.0.0.1:0 --data-dir "$tmp/data" \
  --secret-id "$secret_id" --secret-key "$secret_key" --bucket "$bucket" \
  </dev/null >"$tmp/emulator.out" 2>"$tmp/emulator.err" &
emu_pid=$!
if ! url="$(emulator_url "$emu_pid" "$tmp/emulator.out")"; then
  cat "$tmp/emulator.err" >&2
  exit 2
fi

COS_SECRET_ID="$secret_id" COS_SECRET_KEY="$secret_key" RUST_LOG="${RUST_LOG:-info}" \
  "$cosmount" "$bucket" "$mnt" --endpoint "$url" -f \
  --cache-dir "$tmp/cache" --part-size "$part_size" \
  </dev/null >"$tmp/cosmount.log" 2>&1 &
mount_pid=$!
if ! wait_mounted "$mount_pid"; then
  cat "$tmp/cosmount.log" >&2
  exit 2
fi

# fsx's configuration. Everything cosmount supports on one descriptor is on; left out:
# - posix_fallocate and punch_hole: cosmount implements no fallocate(2) (EOPNOTSUPP), and
#   fsx treats any error as fatal;
# - nothing else. mmap reads and writes (MAP_SHARED, msync) go through the kernel page cache
#   and FUSE writes of the same handle; close_open commits (flush) and reopens; fsync and
#   fdatasync commit; copy_file_range falls back to the kernel's read/write copy; sendfile
#   and posix_fadvise are page-cache reads.
# All of fsx's operations use one descriptor at a time, which is what docs/SEMANTICS.md
# promises byte-exact behaviour for ("Reading a file being written through the same
# descriptor returns what was written"); close_open checks that what was committed is what
# the next descriptor reads.
cat >"$tmp/fsx.toml" <<EOF
flen = $flen
[opsize]
max = $opsize
[weights]
close_open = 2
read = 10
write = 10
mapread = 5
mapwrite = 5
invalidate = 1
truncate = 3
fsync = 2
fdatasync = 1
posix_fallocate = 0
punch_hole = 0
sendfile = 2
posix_fadvise = 1
copy_file_range = 2
EOF

echo "fsx.sh: fsx -N $ops -S $seed on $mnt/fsxfile (cosmount --part-size $part_size, flen $flen, op size up to $opsize)"
status=0
start=$(date +%s.%N)
fsx -N "$ops" -S "$seed" -f "$tmp/fsx.toml" -P "$tmp/artifacts" "$mnt/fsxfile" || status=$?
end=$(date +%s.%N)
elapsed="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"

if [[ $status -eq 0 ]]; then
  echo "fsx.sh: PASS: $ops operations in ${elapsed}s (seed $seed)"
else
  echo "fsx.sh: FAIL: fsx exited with $status after ${elapsed}s (seed $seed); replay with FSX_SEED=$seed" >&2
  for f in "$tmp/artifacts"/*; do
    [[ -e "$f" ]] && echo "fsx.sh: artifact $(basename "$f") ($(stat -c %s "$f") bytes)" >&2
  done
  echo "---- last lines of the cosmount log ----" >&2
  grep -v ' INFO ' "$tmp/cosmount.log" | tail -n 40 >&2 || true
fi
exit "$status"
