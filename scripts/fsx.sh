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

prog=fsx.sh
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
stack_prepare fsx "cargo install fsx"
stack_tmpdir fsx
mkdir -p "$tmp/artifacts"

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  stack_stop
  if [[ "${FSX_KEEP:-}" == 1 ]]; then
    echo "fsx.sh: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit "$status"
}
trap_cleanup

stack_start fsx-1250000000 --part-size "$part_size"

# fsx's configuration. Everything cosmount supports on one descriptor is on; left out:
# - punch_hole: cosmount's fallocate(2) only extends files (mode 0), and fsx treats any
#   error (EOPNOTSUPP) as fatal;
# - nothing else. mmap reads and writes (MAP_SHARED, msync) go through the kernel page cache
#   and FUSE writes of the same handle; close_open commits (flush) and reopens; fsync and
#   fdatasync commit; copy_file_range falls back to the kernel's read/write copy; sendfile
#   and posix_fadvise are page-cache reads.
# fsx uses one descriptor at a time (the reference-model test, tests/model.rs, covers several);
# close_open checks that what was committed is what the next descriptor reads.
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
posix_fallocate = 1
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
