# Helpers shared by demo.sh, bench.sh, fsx.sh and pjdfstest.sh; sourced once they have set
# `prog` (the prefix of their messages); `mnt` (the mountpoint) must be set before the helpers
# that use it run.
# shellcheck shell=bash
# shellcheck disable=SC2154 # prog and mnt come from the sourcing script

# Whether $mnt is mounted (mountinfo's fifth field is the mountpoint, spaces written as \040).
is_mounted() {
  MNT="${mnt// /\\040}" awk '$5 == ENVIRON["MNT"] { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# Prints the URL of the emulator started as process $1 once the first line of its standard
# output (the file $2) is `listening on http://...`. Fails, saying why, if the process exits
# first or prints nothing for 10 s.
emulator_url() {
  local pid="$1" out="$2" line="" i
  for ((i = 0; i < 200; i++)); do
    if [[ -s "$out" ]]; then
      IFS= read -r line <"$out" || true
      if [[ "$line" == "listening on http://"* ]]; then
        echo "${line#listening on }"
        return 0
      fi
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$prog: the emulator exited before listening" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "$prog: the emulator did not print its address within 10 s" >&2
  return 1
}

# Waits until $mnt is mounted by the process $1 (a cosmount, or the client named $2). Fails,
# saying why, if the process exits first or the mount does not appear within 30 s.
wait_mounted() {
  local pid="$1" name="${2:-cosmount}" i
  for ((i = 0; i < 600; i++)); do
    is_mounted && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$prog: $name exited before mounting" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "$prog: $mnt did not appear in /proc/self/mountinfo within 30 s" >&2
  return 1
}

# Unmounts $mnt, retrying while it is busy for up to $2 tenths of a second (100), then waits up
# to 20 s for the mount's process $1 to exit. Fails if $mnt is still mounted; the process may
# still be running (the caller decides what to do with it).
unmount_wait() {
  local pid="$1" tries="${2:-100}" i
  for ((i = 0; i < tries; i++)); do
    fusermount3 -u "$mnt" 2>/dev/null || true
    is_mounted || break
    sleep 0.1
  done
  is_mounted && return 1
  for ((i = 0; i < 400; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
}

# Stops process $1: waits up to 1 s for it to exit by itself, then SIGTERM, then SIGKILL after
# 5 s in all.
stop_process() {
  local pid="$1" i
  [[ -n "$pid" ]] || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    ((i == 20)) && kill "$pid" 2>/dev/null
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Checks what a script that mounts needs: the tool $1 (installed as $2 says), FUSE, and the
# release binaries (built first unless COSMOUNT_SKIP_BUILD=1). Exits 2, saying what is missing.
stack_prepare() {
  local tool="$1" install="$2" bin
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$prog: $tool is not installed: run '$install'" >&2
    exit 2
  fi
  if ! command -v fusermount3 >/dev/null 2>&1 || [[ ! -e /dev/fuse ]]; then
    echo "$prog: FUSE is not available (no fusermount3 or /dev/fuse)" >&2
    exit 2
  fi
  if [[ "${COSMOUNT_SKIP_BUILD:-}" != 1 ]]; then
    (cd "$root" && cargo build --release --bins)
  fi
  for bin in "$root/target/release/cosmount" "$root/target/release/cos-emulator"; do
    if [[ ! -x "$bin" ]]; then
      echo "$prog: $bin is missing; run 'cargo build --release --bins'" >&2
      exit 2
    fi
  done
}

# Makes the temporary directory $tmp (named after $1, path resolved as mountinfo shows it) and
# sets $mnt inside it.
stack_tmpdir() {
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/cosmount-$1.XXXXXX")"
  tmp="$(cd "$tmp" && pwd -P)"
  mnt="$tmp/mnt"
}

# Starts a cos-emulator serving bucket $1 (data under $tmp/data) and mounts it on $mnt in the
# foreground, with the rest of the arguments added to cosmount's command line (logs in
# $tmp/cosmount.log, staging files in $tmp/cache). Needs $root (the checkout) and $tmp; sets
# emu_pid, mount_pid and url. Exits 2, showing the log, if either does not come up.
stack_start() {
  local bucket="$1"
  shift
  local secret_id="AKIDcosmountTEST" secret_key="cosmount-test-secret-key"
  mkdir -p "$tmp/cache"
  "$root/target/release/cos-emulator" --listen 127.0.0.1:0 --data-dir "$tmp/data" \
    --secret-id "$secret_id" --secret-key "$secret_key" --bucket "$bucket" \
    </dev/null >"$tmp/emulator.out" 2>"$tmp/emulator.err" &
  emu_pid=$!
  if ! url="$(emulator_url "$emu_pid" "$tmp/emulator.out")"; then
    cat "$tmp/emulator.err" >&2
    exit 2
  fi
  mkdir -p "$mnt"
  COS_SECRET_ID="$secret_id" COS_SECRET_KEY="$secret_key" RUST_LOG="${RUST_LOG:-info}" \
    "$root/target/release/cosmount" "$bucket" "$mnt" --endpoint "$url" -f \
    --cache-dir "$tmp/cache" "$@" \
    </dev/null >"$tmp/cosmount.log" 2>&1 &
  mount_pid=$!
  if ! wait_mounted "$mount_pid"; then
    cat "$tmp/cosmount.log" >&2
    exit 2
  fi
}

# Unmounts $mnt and stops what stack_start started.
stack_stop() {
  if is_mounted; then
    fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
  fi
  stop_process "${mount_pid:-}"
  stop_process "${emu_pid:-}"
}

# Runs the caller's `cleanup` on exit, and exits with the conventional status on INT, TERM and
# HUP (so that `cleanup` runs then too).
trap_cleanup() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

# Removes the temporary directory $1, unless $mnt is still mounted: never rm -rf through a live
# mount, which would delete the bucket's objects.
remove_unless_mounted() {
  if is_mounted; then
    echo "$prog: $mnt is still mounted; leaving $1 in place" >&2
  else
    rm -rf "$1"
  fi
}
