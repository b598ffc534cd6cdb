#!/usr/bin/env bash
# cosmount in one minute: builds the binaries, starts the bundled COS emulator on a free port,
# mounts its bucket, and uses it with ordinary tools (mkdir, cp/dd, ls, cat, find, du, md5sum,
# mv, chmod, stat, ln -s), then unmounts and mounts again to show that the data persisted.
#
#   scripts/demo.sh           # everything is removed at the end (also when a step fails)
#   scripts/demo.sh --keep    # leave the mount and the emulator running to play with
#
# Needs Rust (cargo) and fuse3 (fusermount3, /dev/fuse), which it installs with apt-get when it
# is missing. COSMOUNT_SKIP_BUILD=1 skips the build.
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "demo: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# Checked first: no point in a long build on a machine that cannot mount.
prog=demo
# shellcheck source=scripts/packages.sh
source "$root/scripts/packages.sh"
need_packages fusermount3=fuse3
if [[ ! -e /dev/fuse ]]; then
  echo "demo: FUSE is not available: /dev/fuse is missing (in a container, run it with --device /dev/fuse)" >&2
  exit 1
fi
if [[ ! -r /dev/fuse || ! -w /dev/fuse ]]; then
  echo "demo: /dev/fuse is not readable and writable for $(id -un) ($(stat -c %A /dev/fuse)); run as a user who can open it (it is normally mode 0666)" >&2
  exit 1
fi
if [[ "${COSMOUNT_SKIP_BUILD:-}" != 1 ]]; then
  cargo build --release --bins
fi
cosmount="$root/target/release/cosmount"
emulator="$root/target/release/cos-emulator"
for bin in "$cosmount" "$emulator"; do
  if [[ ! -x "$bin" ]]; then
    echo "demo: $bin is missing; run 'cargo build --release --bins' (or drop COSMOUNT_SKIP_BUILD)" >&2
    exit 1
  fi
done

# Headers in bold when writing to a terminal.
if [[ -t 1 ]]; then
  bold=$'\033[1m' plain=$'\033[0m'
else
  bold="" plain=""
fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
# Prints a command line as it would be typed.
show() {
  local line="" a
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./%=:,+@-]+$ ]]; then line+=" $a"; else line+=" '$a'"; fi
  done
  printf '%s$%s%s\n' "$bold" "$line" "$plain"
}
# Runs a command inside the mountpoint (in a subshell, so the mount is never kept busy).
in_mnt() {
  show "$@"
  (cd "$mnt" && "$@")
}
# The same for a shell command line (redirections, loops).
sh_mnt() {
  printf '%s$ %s%s\n' "$bold" "$1" "$plain"
  (cd "$mnt" && sh -c "$1")
}

bucket="demo-1250000000"
secret_id="AKIDcosmountDEMO"
secret_key="cosmount-demo-secret-key"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/cosmount-demo.XXXXXX")"
tmp="$(cd "$tmp" && pwd -P)" # mountinfo shows resolved paths
mnt="$tmp/mnt"
mkdir -p "$mnt" "$tmp/cache"
emu_pid=""
finished=0

prog=demo
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

# The PID of this demo's cosmount process: the only one whose command line names this
# (unique) temporary mountpoint.
mount_pid() {
  pgrep -f -- "cosmount $bucket $mnt " | head -n 1 || true
}

# Unmounts and waits (up to 10 s) for the cosmount process to finish and exit.
unmount() {
  local pid i
  pid="$(mount_pid)"
  fusermount3 -u "$mnt"
  if [[ -n "$pid" ]]; then
    for ((i = 0; i < 200; i++)); do
      kill -0 "$pid" 2>/dev/null || return 0
      sleep 0.05
    done
    echo "demo: cosmount (pid $pid) did not exit within 10 s after unmounting; stopping it" >&2
    kill "$pid" 2>/dev/null || true
  fi
}

mount_bucket() {
  printf '%s$ COS_SECRET_ID=... COS_SECRET_KEY=... cosmount %s %s --endpoint %s --cache-dir %s --log-file %s%s\n' \
    "$bold" "$bucket" "$mnt" "$url" "$tmp/cache" "$tmp/cosmount.log" "$plain"
  COS_SECRET_ID="$secret_id" COS_SECRET_KEY="$secret_key" \
    "$cosmount" "$bucket" "$mnt" --endpoint "$url" \
    --cache-dir "$tmp/cache" --log-file "$tmp/cosmount.log"
  if ! is_mounted; then
    echo "demo: cosmount returned but $mnt is not mounted" >&2
    exit 1
  fi
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  if [[ $keep == 1 && $finished == 1 ]]; then
    exit "$status"
  fi
  if [[ $status != 0 ]]; then
    echo "demo: failed (exit status $status); cleaning up" >&2
    for log in "$tmp/cosmount.log" "$tmp/emulator.err"; do
      if [[ -s "$log" ]]; then
        echo "---- last lines of $(basename "$log") ----" >&2
        tail -n 20 "$log" >&2
      fi
    done
  fi
  if is_mounted; then
    unmount 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
  fi
  if [[ -n "$emu_pid" ]]; then
    kill "$emu_pid" 2>/dev/null || true
    wait "$emu_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap_cleanup

step "Starting the bundled COS emulator (bucket $bucket, data in $tmp/data)"
# setsid: its own session, so that with --keep it outlives this script and its terminal.
launcher=()
if command -v setsid >/dev/null 2>&1; then
  launcher=(setsid)
fi
"${launcher[@]}" "$emulator" --listen 127.0.0.1:0 --data-dir "$tmp/data" \
  --secret-id "$secret_id" --secret-key "$secret_key" --bucket "$bucket" \
  </dev/null >"$tmp/emulator.out" 2>"$tmp/emulator.err" &
emu_pid=$!
url="$(emulator_url "$emu_pid" "$tmp/emulator.out")" || exit 1
echo "listening on $url"

step "Mounting the bucket (cosmount returns once the mount is ready)"
mount_bucket
MNT="${mnt// /\\040}" awk '$5 == ENVIRON["MNT"] { print "mounted:", $(NF - 1), "on", $5 }' /proc/self/mountinfo

step "Creating a sample tree through the mount with ordinary tools"
printf '%s$ cd %s%s\n' "$bold" "$mnt" "$plain"
in_mnt mkdir -p docs/guide logs/2024/01 data
sh_mnt 'echo "Hello from cosmount: this file is an object in a COS bucket." > README.txt'
sh_mnt 'echo "cosmount mounts one bucket as a directory." > docs/guide/intro.txt'
sh_mnt 'printf "1. build\n2. mount\n3. use ls, cp, mv...\n" > docs/guide/setup.txt'
# shellcheck disable=SC2016 # expanded by the inner shell
sh_mnt 'for i in 1 2 3; do echo "2024-01-0$i app started"; done > logs/2024/01/app.log'
in_mnt ln -s logs/2024/01/app.log latest.log
echo "# 64 MiB of random bytes, made locally, then written through the mount (multipart upload)"
dd if=/dev/urandom of="$tmp/random.src" bs=1M count=64 status=none
start_ns="$(date +%s%N)"
in_mnt dd if="$tmp/random.src" of=data/random.bin bs=4M status=none
elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))
echo "64 MiB written and uploaded in ${elapsed_ms} ms (close returns once the object is stored)"

step "ls -l: the top of the bucket"
in_mnt ls -l

step "ls -lR: every directory (a directory is a 'dir/' marker object or a key prefix)"
in_mnt ls -lR

step "cat: reading a file"
in_mnt cat docs/guide/intro.txt
in_mnt cat latest.log

step "find: walking the tree"
in_mnt find . -type f

step "du -sh: the total size"
in_mnt du -sh .

step "md5sum: the 64 MiB file read back through the mount vs the local source"
src_md5="$(md5sum <"$tmp/random.src" | cut -d' ' -f1)"
in_mnt md5sum data/random.bin
mnt_md5="$(cd "$mnt" && md5sum <data/random.bin | cut -d' ' -f1)"
echo "source: $src_md5"
if [[ "$src_md5" == "$mnt_md5" ]]; then
  echo "identical"
else
  echo "demo: MISMATCH: the file read back differs from what was written" >&2
  exit 1
fi

step "mv: renaming a file (server-side copy, then delete)"
in_mnt mv docs/guide/setup.txt docs/setup.txt
in_mnt ls -l docs docs/guide

step "Parallel jobs appending to one log: every line is kept"
# shellcheck disable=SC2016 # expanded by the inner shell
sh_mnt 'for job in 1 2 3 4; do (for i in $(seq 1 25); do echo "job $job line $i" >> logs/jobs.log; done) & done; wait'
lines="$(wc -l <"$mnt/logs/jobs.log")"
echo "logs/jobs.log holds $lines lines (4 jobs x 25 appends)"
if [[ "$lines" != 100 ]]; then
  echo "demo: LOST LINES: expected 100" >&2
  exit 1
fi

step "mkfifo: special files work as on a local disk"
in_mnt mkfifo data/pipe
sh_mnt '(echo "through a FIFO on the mount" > data/pipe &); cat data/pipe'
in_mnt rm data/pipe

step "chmod and stat: modes live in the object's x-cos-meta-mode"
in_mnt chmod 600 README.txt
in_mnt stat README.txt

step "Unmounting, then mounting again: everything is still there"
printf '%s$ fusermount3 -u %s%s\n' "$bold" "$mnt" "$plain"
unmount
printf '%s$ ls -A %s%s   (empty: nothing is mounted)\n' "$bold" "$mnt" "$plain"
ls -A "$mnt"
mount_bucket
in_mnt ls -l
in_mnt stat -c '%A %n' README.txt
in_mnt readlink latest.log
in_mnt md5sum data/random.bin

finished=1
if [[ $keep == 1 ]]; then
  step "Left running (--keep)"
  cat <<EOF
Bucket $bucket is mounted on
  $mnt
served by the emulator at $url (pid $emu_pid, data in $tmp/data).
Use it with any tool, e.g.:
  ls -l $mnt
  cp /etc/services $mnt/docs/
Other COS clients reach the emulator at $url with SecretId $secret_id
and SecretKey $secret_key (the mount's log: $tmp/cosmount.log).
To stop everything:
  fusermount3 -u $mnt
  kill $emu_pid
  rm -rf $tmp
EOF
else
  step "Cleaning up"
  printf '%s$ fusermount3 -u %s%s\n' "$bold" "$mnt" "$plain"
  unmount
  kill "$emu_pid"
  wait "$emu_pid" 2>/dev/null || true
  emu_pid=""
  rm -rf "$tmp"
  echo "emulator stopped, $tmp removed"
fi
echo "demo finished in ${SECONDS}s"
