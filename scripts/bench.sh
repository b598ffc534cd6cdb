#!/usr/bin/env bash
# cosmount's speed goals, measured as RATIOS against a baseline taken in the same run on the
# same machine (docs/PERFORMANCE.md explains the method and every workload).
#
#   scripts/bench.sh                 all workloads: read write ttfb randread list create stat cache
#   scripts/bench.sh NAME [NAME...]  only those
#   scripts/bench.sh peers [MS...]   cosmount beside s3fs and rclone on one SeaweedFS, at
#                                    loopback and 10 ms (scripts/bench-peers.sh; see its help)
#
# Starts its own cos-emulator (temporary data directory, free port) and mounts its bucket with
# target/release/cosmount; everything is unmounted, stopped and removed on exit, also on failure.
# Prints one table and writes bench-results.json in the repository root.
#
# Environment (defaults in brackets):
#   BENCH_SIZE_MB [1024]    size of the big object (read, write, ttfb, randread)
#   BENCH_OBJECTS [10000]   objects in the directory listed by `list`
#   BENCH_FILES [1000]      files created by `create` and stat'ed by `stat`
#   BENCH_RUNTIME [15]      seconds of each random-read run
#   BENCH_REPEAT [3]        runs of each side (the median is reported; RSS is the maximum)
#   BENCH_TTFB_TRIES [7]    time-to-first-byte tries of each side (median)
#   BENCH_SKIP_BUILD=1      do not run cargo build
#   BENCH_STRICT=1          exit with status 3 when a target is missed
# Needs curl, fio, fusermount3 (fuse3), python3; root to drop the page cache.
# shellcheck disable=SC2317 # the run_* workloads and cleanup are called indirectly
set -euo pipefail
export LC_ALL=C # decimal points in $EPOCHREALTIME and printf

ALL_WORKLOADS=(read write ttfb randread list create stat cache)

usage() {
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
}

if [[ "${1:-}" == peers ]]; then
  shift
  exec "$(dirname "$0")/bench-peers.sh" "$@"
fi
selected=()
for arg in "$@"; do
  case "$arg" in
    -h | --help)
      usage
      exit 0
      ;;
    read | write | ttfb | randread | list | create | stat | cache) selected+=("$arg") ;;
    *)
      echo "bench: unknown workload '$arg' (one of: ${ALL_WORKLOADS[*]})" >&2
      exit 2
      ;;
  esac
done
if [[ ${#selected[@]} == 0 ]]; then
  selected=("${ALL_WORKLOADS[@]}")
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# ---- what the machine must have (nothing is installed here) ----
missing=()
for tool in curl fio fusermount3 python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in
      fusermount3) missing+=("fusermount3 (apt-get install fuse3)") ;;
      *) missing+=("$tool (apt-get install $tool)") ;;
    esac
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "bench: missing tools; install them and run again:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
if [[ ! -e /dev/fuse || ! -r /dev/fuse || ! -w /dev/fuse ]]; then
  echo "bench: /dev/fuse is missing or not readable and writable for $(id -un): FUSE cannot mount here" >&2
  exit 1
fi

positive_int() {
  local name="$1" value="$2"
  if ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
    echo "bench: $name must be a positive integer, got '$value'" >&2
    exit 2
  fi
}
SIZE_MB="${BENCH_SIZE_MB:-1024}"
OBJECTS="${BENCH_OBJECTS:-10000}"
FILES="${BENCH_FILES:-1000}"
RUNTIME="${BENCH_RUNTIME:-15}"
REPEAT="${BENCH_REPEAT:-3}"
TTFB_TRIES="${BENCH_TTFB_TRIES:-7}"
for v in SIZE_MB OBJECTS FILES RUNTIME REPEAT TTFB_TRIES; do
  positive_int "BENCH_$v" "${!v}"
done
# The mount's defaults, used explicitly on both sides of the write comparison.
PART_SIZE=8M
CONCURRENCY=8

if [[ "${BENCH_SKIP_BUILD:-}" != 1 ]]; then
  echo "bench: cargo build --release --bins --examples" >&2
  cargo build --release --bins --examples
fi
cosmount="$root/target/release/cosmount"
emulator="$root/target/release/cos-emulator"
cosbench="$root/target/release/examples/cosbench"
fuse_floor="$root/target/release/examples/fuse_floor"
for bin in "$cosmount" "$emulator" "$cosbench" "$fuse_floor"; do
  if [[ ! -x "$bin" ]]; then
    echo "bench: $bin is missing; run 'cargo build --release --bins --examples'" >&2
    exit 1
  fi
done

bucket="bench-1250000000"
export COS_BUCKET="$bucket"
export COS_SECRET_ID="AKIDcosmountBENCH"
export COS_SECRET_KEY="cosmount-bench-secret-key"
unset COS_SESSION_TOKEN

tmp="$(mktemp -d "${TMPDIR:-/tmp}/cosmount-bench.XXXXXX")"
tmp="$(cd "$tmp" && pwd -P)" # mountinfo shows resolved paths
mnt="$tmp/mnt"
mkdir -p "$mnt" "$tmp/cache" "$tmp/data"
raw="$tmp/raw.tsv" # workload <TAB> metric <TAB> value, one sample a line
: >"$raw"
emu_pid=""
mnt_pid=""
floor_pid=""
old_pids=() # mount processes unmounted but maybe still exiting

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

prog=bench
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  set +e
  if [[ $status != 0 ]]; then
    log "failed (exit status $status); cleaning up"
    if [[ -s "$tmp/cosmount.log" ]]; then
      echo "---- last lines of the cosmount log ----" >&2
      tail -n 20 "$tmp/cosmount.log" >&2
    fi
    if [[ -s "$tmp/emulator.err" ]]; then
      echo "---- last lines of the emulator log ----" >&2
      tail -n 20 "$tmp/emulator.err" >&2
    fi
  fi
  local m p
  for m in "$mnt" "$tmp/floor-mnt"; do
    if mnt="$m" is_mounted; then
      fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null
    fi
  done
  for p in $mnt_pid $floor_pid "${old_pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    fi
  done
  if [[ -n "$emu_pid" ]]; then
    kill "$emu_pid" 2>/dev/null
    wait "$emu_pid" 2>/dev/null
  fi
  remove_unless_mounted "$tmp"
  exit "$status"
}
trap_cleanup

# Keeps one sample; a figure that is not a number (a step whose output could not be parsed)
# stops the run here, in the main shell.
record() {
  [[ "$3" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "no figure for $1 $2 (got '$3')"
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$raw"
}

# The value of NAME in a line of `name=value` pairs (cosbench's output).
field() {
  local name="$1" line="$2" kv
  for kv in $line; do
    if [[ "$kv" == "$name="* ]]; then
      echo "${kv#*=}"
      return 0
    fi
  done
  die "no $name in: $line"
}

# Seconds between two $EPOCHREALTIME values; MiB/s of BYTES in SECONDS.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
# CPU seconds (user + system) process $1 has used so far, from /proc/PID/stat.
clk_tck="$(getconf CLK_TCK)"
cpu_s() { awk -v t="$clk_tck" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / t }' "/proc/$1/stat"; }
# CPU seconds per GiB: $1 seconds for $2 bytes.
per_gib() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.3f", c * 1073741824 / n }'; }
# Runs a command and prints "USER SYS" CPU seconds of it (bash's `time`); its output is dropped.
cpu_of() {
  local TIMEFORMAT='%U %S'
  { time "$@" >/dev/null 2>&1; } 2>&1
}
mib_s() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", n / 1048576 / s }'; }

# Drops the kernel page cache (root only). The benchmark goes on without it: a fresh mount has
# no cached pages of its own anyway.
drop_caches() {
  sync
  if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
    if [[ -z "${warned_drop:-}" ]]; then
      log "cannot drop the page cache (needs root); relying on fresh mounts for cold reads"
      warned_drop=1
    fi
  fi
}

presign() { "$cosbench" presign "$@"; }
delete_object() { curl -sS -f -o /dev/null -X DELETE "$(presign DELETE "$1")"; }

# ---- the emulator and the mount ----

start_emulator() {
  "$emulator" --listen 127.0.0.1:0 --data-dir "$tmp/data" \
    --secret-id "$COS_SECRET_ID" --secret-key "$COS_SECRET_KEY" --bucket "$bucket" \
    </dev/null >"$tmp/emulator.out" 2>"$tmp/emulator.err" &
  emu_pid=$!
  COS_ENDPOINT="$(emulator_url "$emu_pid" "$tmp/emulator.out")" || exit 1
  export COS_ENDPOINT
  log "emulator at $COS_ENDPOINT (pid $emu_pid), data in $tmp/data"
}

# Mounts the bucket on $mnt with the given extra options, in the foreground, in the background.
mount_start() {
  [[ -z "$mnt_pid" ]] || die "internal: a mount is already running"
  echo "==== cosmount $* ====" >>"$tmp/cosmount.log"
  "$cosmount" "$bucket" "$mnt" --endpoint "$COS_ENDPOINT" -f \
    --cache-dir "$tmp/cache" "$@" </dev/null >>"$tmp/cosmount.log" 2>&1 &
  mnt_pid=$!
  if ! wait_mounted "$mnt_pid"; then
    kill -0 "$mnt_pid" 2>/dev/null || mnt_pid=""
    exit 1
  fi
}

# Unmounts and waits (up to 20 s) for the process to exit.
mount_stop() {
  [[ -n "$mnt_pid" ]] || return 0
  unmount_wait "$mnt_pid" || die "cannot unmount $mnt (busy?)"
  if kill -0 "$mnt_pid" 2>/dev/null; then
    log "cosmount (pid $mnt_pid) still running 20 s after unmount; stopping it"
    kill "$mnt_pid" 2>/dev/null || true
    old_pids+=("$mnt_pid")
  fi
  wait "$mnt_pid" 2>/dev/null || true
  mnt_pid=""
}

# Resets the mount's peak RSS (VmHWM) and reads it, in KiB.
reset_hwm() { echo 5 >"/proc/$mnt_pid/clear_refs"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$mnt_pid/status"; }

# ---- shared data ----

big_bytes=$((SIZE_MB * 1048576))
big_ready=""
# A local file of random bytes and the object `big` made of it.
prepare_big() {
  [[ -n "$big_ready" ]] && return 0
  log "making a ${SIZE_MB} MiB object"
  dd if=/dev/urandom of="$tmp/big.src" bs=1M count="$SIZE_MB" status=none
  "$cosbench" multipart big "$tmp/big.src" "$PART_SIZE" "$CONCURRENCY" >/dev/null
  big_ready=1
}

# ---- workloads ----

run_read() {
  prepare_big
  drop_caches
  # The emulator's copy is read once untimed, so both sides read it from its page cache: what
  # is compared is the client side, not the emulator's disk.
  curl -sS -f -o /dev/null "$(presign GET big)"
  local rep out used
  for ((rep = 1; rep <= REPEAT; rep++)); do
    out="$(curl -sS -f -o /dev/null -w '%{size_download} %{time_total}' "$(presign GET big)")"
    [[ "${out% *}" == "$big_bytes" ]] || die "curl read ${out% *} of $big_bytes bytes"
    record read curl_mib_s "$(mib_s "${out% *}" "${out#* }")"
    # curl's own CPU for the same GET (an untimed run: `time` is not free).
    used="$(cpu_of curl -sS -f -o /dev/null "$(presign GET big)")"
    record read curl_cpu_s_gib "$(per_gib "$(awk -v u="${used% *}" -v s="${used#* }" 'BEGIN { print u + s }')" "$big_bytes")"

    read_through_mount ""
    # Reported beside it: the same read with the page cache bypassed.
    read_through_mount dio_ --direct-io
  done
}

# One timed `dd` of the big object through a fresh mount with the given options; its metrics
# are recorded under names starting with TAG.
read_through_mount() {
  local tag=$1 t0 t1 c0 c1 used
  shift
  mount_start "$@"
  reset_hwm
  c0="$(cpu_s "$mnt_pid")"
  t0=$EPOCHREALTIME
  used="$(cpu_of dd if="$mnt/big" of=/dev/null bs=1M status=none)"
  t1=$EPOCHREALTIME
  c1="$(cpu_s "$mnt_pid")"
  record read "${tag}mount_mib_s" "$(mib_s "$big_bytes" "$(elapsed "$t0" "$t1")")"
  record read "${tag}mount_cpu_s_gib" "$(per_gib "$(elapsed "$c0" "$c1")" "$big_bytes")"
  record read "${tag}reader_sys_s_gib" "$(per_gib "${used#* }" "$big_bytes")"
  record read "${tag}rss_kib" "$(hwm_kib)"
  mount_stop
}

run_write() {
  prepare_big
  local rep out key
  for ((rep = 1; rep <= REPEAT; rep++)); do
    cat "$tmp/big.src" >/dev/null # the source stays in the page cache for every side

    key="write/curl-$rep"
    out="$(curl -sS -f -o /dev/null -H 'Expect:' -T "$tmp/big.src" \
      -w '%{size_upload} %{time_total}' "$(presign PUT "$key")")"
    [[ "${out% *}" == "$big_bytes" ]] || die "curl sent ${out% *} of $big_bytes bytes"
    record write curl_mib_s "$(mib_s "${out% *}" "${out#* }")"
    delete_object "$key"

    key="write/multipart-$rep"
    out="$("$cosbench" multipart "$key" "$tmp/big.src" "$PART_SIZE" "$CONCURRENCY")"
    record write multipart_mib_s "$(field mib_per_s "$out")"
    delete_object "$key"

    write_through_mount "" "$rep"
    # Reported beside it: the same write with the page cache bypassed.
    write_through_mount dio_ "$rep" --direct-io
  done
}

# One timed `dd` of the big file into a fresh mount with the given options (close commits);
# its metrics are recorded under names starting with TAG.
write_through_mount() {
  local tag=$1 rep=$2 t0 t1 c0 c1 e0 e1 used size
  shift 2
  mount_start --part-size "$PART_SIZE" --max-concurrency "$CONCURRENCY" "$@"
  mkdir -p "$mnt/write"
  reset_hwm
  c0="$(cpu_s "$mnt_pid")"
  e0="$(cpu_s "$emu_pid")"
  t0=$EPOCHREALTIME
  used="$(cpu_of dd if="$tmp/big.src" of="$mnt/write/mount-$rep" bs=1M status=none)"
  t1=$EPOCHREALTIME
  c1="$(cpu_s "$mnt_pid")"
  e1="$(cpu_s "$emu_pid")"
  record write "${tag}mount_mib_s" "$(mib_s "$big_bytes" "$(elapsed "$t0" "$t1")")"
  record write "${tag}mount_cpu_s_gib" "$(per_gib "$(elapsed "$c0" "$c1")" "$big_bytes")"
  record write "${tag}writer_sys_s_gib" "$(per_gib "${used#* }" "$big_bytes")"
  record write "${tag}emulator_cpu_s_gib" "$(per_gib "$(elapsed "$e0" "$e1")" "$big_bytes")"
  record write "${tag}rss_kib" "$(hwm_kib)"
  size="$(stat -c %s "$mnt/write/mount-$rep")"
  [[ "$size" == "$big_bytes" ]] || die "the mount stored $size of $big_bytes bytes"
  rm "$mnt/write/mount-$rep"
  mount_stop
}

run_ttfb() {
  prepare_big
  local try out secs
  for ((try = 1; try <= TTFB_TRIES; try++)); do
    # A whole-object GET, abandoned after its first byte (curl still reports its timing).
    out="$({ curl -s -w '%{stderr}ttfb=%{time_starttransfer}\n' "$(presign GET big)" \
      | head -c 1 >/dev/null; } 2>&1 || true)"
    record ttfb curl_s "$(field ttfb "$out")"

    # A fresh mount: nothing cached, neither the name nor the data.
    mount_start
    reset_hwm
    secs="$(python3 - "$mnt/big" <<'EOF'
import os, sys, time
t = time.perf_counter()
fd = os.open(sys.argv[1], os.O_RDONLY)
b = os.read(fd, 1)
t = time.perf_counter() - t
os.close(fd)
assert len(b) == 1
print(f"{t:.6f}")
EOF
)"
    record ttfb mount_s "$secs"
    record ttfb rss_kib "$(hwm_kib)"
    mount_stop
  done
}

run_randread() {
  prepare_big
  local rep out iops
  for ((rep = 1; rep <= REPEAT; rep++)); do
    out="$("$cosbench" randread big 4 "$RUNTIME")"
    record randread direct_iops "$(field iops "$out")"

    # O_DIRECT: each 4 KiB read reaches the mount as one FUSE read, as each baseline read is
    # one GET; the page cache (and kernel readahead) would otherwise serve part of them.
    mount_start
    reset_hwm
    fio --name=rr --rw=randread --bs=4k --numjobs=4 --direct=1 --invalidate=1 \
      --norandommap --randrepeat=0 --time_based --runtime="$RUNTIME" \
      --filename="$mnt/big" --ioengine=psync --group_reporting \
      --output-format=json --output="$tmp/fio.json" >/dev/null
    iops="$(python3 -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["jobs"][0]["read"]["iops"], 1))' "$tmp/fio.json")"
    record randread mount_iops "$iops"
    record randread rss_kib "$(hwm_kib)"
    mount_stop
  done
}

run_list() {
  log "putting $OBJECTS small objects under list/"
  "$cosbench" put-small list/ "$OBJECTS" 64 1K >/dev/null
  local rep out t0 t1 t2 mode n
  for ((rep = 1; rep <= REPEAT; rep++)); do
    out="$("$cosbench" list list/)"
    [[ "$(field objects "$out")" == "$OBJECTS" ]] || die "LIST found $(field objects "$out") objects"
    record list raw_list_s "$(field seconds "$out")"
  done
  for mode in default fast; do
    for ((rep = 1; rep <= REPEAT; rep++)); do
      if [[ $mode == fast ]]; then mount_start --fast-listing; else mount_start; fi
      reset_hwm
      t0=$EPOCHREALTIME
      # shellcheck disable=SC2012 # counting ls -l's lines is the point
      n="$(ls -l "$mnt/list" | wc -l)"
      t1=$EPOCHREALTIME
      ls -l "$mnt/list" >/dev/null
      t2=$EPOCHREALTIME
      [[ "$n" == $((OBJECTS + 1)) ]] || die "ls -l showed $((n - 1)) of $OBJECTS entries"
      record list "${mode}_cold_s" "$(elapsed "$t0" "$t1")"
      record list "${mode}_warm_s" "$(elapsed "$t1" "$t2")"
      record list "${mode}_rss_kib" "$(hwm_kib)"
      mount_stop
    done
  done
}

run_create() {
  local rep out p
  for ((rep = 1; rep <= REPEAT; rep++)); do
    for p in 1 8; do
      out="$("$cosbench" put-small "create/direct-$rep-$p/" "$FILES" "$p" 4K)"
      record create "direct_p${p}_files_s" "$(field files_per_s "$out")"
    done
    # Default: every lookup of a new name asks COS (another client may have made it). Cached:
    # the opt-in caches that answer a new directory's lookups from memory.
    for mode in default cached; do
      if [[ $mode == cached ]]; then
        mount_start --negative-ttl 1s --listing-ttl 1s
      else
        mount_start
      fi
      mkdir -p "$mnt/create"
      reset_hwm
      for p in 1 8; do
        mkdir "$mnt/create/$mode-$rep-$p"
        out="$("$cosbench" create-files "$mnt/create/$mode-$rep-$p" "$FILES" "$p" 4K)"
        record create "${mode}_p${p}_files_s" "$(field files_per_s "$out")"
      done
      record create "${mode}_rss_kib" "$(hwm_kib)"
      mount_stop
    done
  done
}

run_stat() {
  log "putting $FILES objects under stat/ and the same files in a local directory"
  "$cosbench" put-small stat/ "$FILES" 32 4K >/dev/null
  mkdir "$tmp/local-stat"
  "$cosbench" create-files "$tmp/local-stat" "$FILES" 8 4K >/dev/null
  local rep out
  for ((rep = 1; rep <= REPEAT; rep++)); do
    out="$("$cosbench" stat-files "$tmp/local-stat")"
    record stat local_us "$(field us_per_stat "$out")"

    mount_start
    reset_hwm
    out="$("$cosbench" stat-files "$mnt/stat")"
    [[ "$(field files "$out")" == "$FILES" ]] || die "the mount listed $(field files "$out") of $FILES files"
    record stat mount_us "$(field us_per_stat "$out")"
    record stat rss_kib "$(hwm_kib)"
    mount_stop
  done
}

# Records, as cache/<name>, the MiB/s of reading big file $1 with the page cache dropped.
# With a third argument `remote`, the emulator's copy of `big` is read once after the drop,
# untimed (as in run_read): the emulator then serves it from memory, as a remote COS would,
# instead of reading it from the disk that the data cache writes to.
timed_big_read() {
  local t0
  drop_caches
  if [[ "${3:-}" == remote ]]; then
    curl -sS -f -o /dev/null "$(presign GET big)"
  fi
  t0=$EPOCHREALTIME
  dd if="$1" of=/dev/null bs=1M status=none
  record cache "$2" "$(mib_s "$big_bytes" "$(elapsed "$t0" "$EPOCHREALTIME")")"
}

# Records, as cache/<name>, the seconds to cat every file of directory $1, page cache dropped.
timed_cat_all() {
  local t0
  drop_caches
  t0=$EPOCHREALTIME
  cat "$1"/* >/dev/null
  record cache "$2" "$(elapsed "$t0" "$EPOCHREALTIME")"
}

# The FUSE floor: examples/fuse_floor serves the local copy of the small files by passthrough,
# with every name and attribute in memory (the least any FUSE server does per file: an OPEN
# and a RELEASE). What it costs beyond the local directory is FUSE's own price on this host.
floor_start() {
  local mnt="$tmp/floor-mnt"
  mkdir -p "$mnt"
  "$fuse_floor" "$1" "$mnt" </dev/null >>"$tmp/cosmount.log" 2>&1 &
  floor_pid=$!
  wait_mounted "$floor_pid" fuse_floor || die "the FUSE floor server did not mount"
}
floor_stop() {
  local mnt="$tmp/floor-mnt"
  [[ -n "$floor_pid" ]] || return 0
  unmount_wait "$floor_pid" || die "cannot unmount $mnt"
  floor_pid=""
}

run_cache() {
  prepare_big
  log "putting $FILES small objects under small/ and the same files in a local directory"
  "$cosbench" put-small small/ "$FILES" 32 4K >/dev/null
  mkdir -p "$tmp/local-small"
  "$cosbench" create-files "$tmp/local-small" "$FILES" 8 4K >/dev/null
  local rep dir mode pair
  for ((rep = 1; rep <= REPEAT; rep++)); do
    # Cold, with the cache off and on (a fresh cache directory), interleaved.
    dir="$tmp/data-cache-$rep"
    for mode in off on; do
      if [[ $mode == on ]]; then mount_start --data-cache "$dir"; else mount_start; fi
      timed_big_read "$mnt/big" "cold_${mode}_mib_s" remote
      cat "$mnt/small"/* >/dev/null
      mount_stop
    done
    # Warm: a remount on the filled cache, interleaved with the baselines (the same bytes on
    # the local disk). On these VMs a file's first read from the virtual disk runs at about
    # 0.5-0.8 GB/s and later ones at about 2.2 (the host caches what the guest read), for a
    # local file and the cache's file alike: both are read once, untimed, before the pairs.
    mount_start --data-cache "$dir"
    cat "$mnt/big" "$tmp/big.src" >/dev/null
    mount_stop
    for ((pair = 1; pair <= 3; pair++)); do
      timed_big_read "$tmp/big.src" local_read_mib_s
      mount_start --data-cache "$dir"
      reset_hwm
      timed_big_read "$mnt/big" warm_read_mib_s
      timed_cat_all "$mnt/small" warm_small_s
      record cache rss_kib "$(hwm_kib)"
      mount_stop
      timed_cat_all "$tmp/local-small" local_small_s
      floor_start "$tmp/local-small"
      timed_cat_all "$tmp/floor-mnt" floor_small_s
      floor_stop
    done
    rm -rf "$dir"
  done
}

# ---- run ----

start_emulator
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
# CPU pressure (the share of time something waited for a CPU, averaged over 60 s): on a shared
# host it says how much the figures are worth; empty where the kernel has no PSI.
cpu_pressure() { awk '/^some/ { sub("avg60=", "", $3); print $3 }' /proc/pressure/cpu 2>/dev/null || true; }
psi_start="$(cpu_pressure)"
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain -- src 2>/dev/null)" ]]; then
  revision+="+uncommitted-src-changes"
fi
started=$EPOCHREALTIME
for w in "${selected[@]}"; do
  log "== $w"
  # No workload pays for the writeback of the one before (write leaves gigabytes behind).
  sync
  w_start=$EPOCHREALTIME
  "run_$w"
  record "$w" wall_s "$(elapsed "$w_start" "$EPOCHREALTIME")"
done
total_s="$(elapsed "$started" "$EPOCHREALTIME")"

# ---- report ----
status=0
python3 - "$raw" "$root/bench-results.json" "$total_s" "$(nproc)" "$(uname -r)" \
  "$SIZE_MB" "$OBJECTS" "$FILES" "$RUNTIME" "$REPEAT" "$TTFB_TRIES" "$PART_SIZE" "$CONCURRENCY" \
  "${BENCH_STRICT:-0}" "$load_start" "$revision" "$psi_start" <<'EOF' || status=$?
import datetime, json, statistics, sys

(raw_path, out_path, total_s, nproc, kernel, size_mb, objects, files, runtime, repeat,
 ttfb_tries, part_size, concurrency, strict, load_start, revision, psi_start) = sys.argv[1:]
load_end = " ".join(open("/proc/loadavg").read().split()[:3])
try:
    psi_end = open("/proc/pressure/cpu").read().split()[2].split("=")[1]
except (OSError, IndexError):
    psi_end = ""
psi_text = f"; CPU pressure {psi_start or '?'}% -> {psi_end or '?'}%" if psi_start or psi_end else ""
raw = {}
for line in open(raw_path):
    w, metric, value = line.rstrip("\n").split("\t")
    raw.setdefault(w, {}).setdefault(metric, []).append(float(value))

def med(w, m):
    return statistics.median(raw[w][m])

def peak_mib(w, m="rss_kib"):
    return max(raw[w][m]) / 1024

rows = []

def row(workload, mount, mount_txt, base, base_txt, ratio_kind, target, rss, note=""):
    """ratio_kind: 'higher' (mount/base >= target), 'lower' (mount/base <= target),
    'abs_lower' (mount <= target, no baseline), None (reported only)."""
    ratio = mount / base if base else None
    if ratio_kind == "higher":
        met, target_txt = ratio >= target, f">= {target:g}x"
    elif ratio_kind == "lower":
        met, target_txt = ratio <= target, f"<= {target:g}x"
    elif ratio_kind == "abs_lower":
        met, target_txt = mount <= target, f"<= {target:g} s"
    else:
        met, target_txt = None, "-"
    rows.append({
        "workload": workload, "mount": mount, "mount_text": mount_txt, "baseline": base,
        "baseline_text": base_txt, "ratio": ratio, "target": target_txt, "met": met,
        "peak_rss_mib": None if rss is None else round(rss, 1), "note": note,
    })
    return rows[-1]

if "read" in raw:
    m, b = med("read", "mount_mib_s"), med("read", "curl_mib_s")
    row("read (seq, cold)", m, f"{m:.0f} MiB/s", b, f"curl {b:.0f} MiB/s", "higher", 0.90,
        peak_mib("read"))
    c, cc, rs = (med("read", "mount_cpu_s_gib"), med("read", "curl_cpu_s_gib"),
                 med("read", "reader_sys_s_gib"))
    row("read CPU of the mount", c, f"{c:.2f} s/GiB", None,
        f"curl {cc:.2f}, dd's sys {rs:.2f} s/GiB", "abs_lower", 0.6, peak_mib("read"))
    if "dio_mount_mib_s" in raw["read"]:
        m, c = med("read", "dio_mount_mib_s"), med("read", "dio_mount_cpu_s_gib")
        rs = med("read", "dio_reader_sys_s_gib")
        rss = peak_mib("read", "dio_rss_kib")
        row("read (seq, cold, --direct-io)", m, f"{m:.0f} MiB/s", b, f"curl {b:.0f} MiB/s",
            None, None, rss, "reported, no target")
        row("read CPU of the mount (--direct-io)", c, f"{c:.2f} s/GiB", None,
            f"curl {cc:.2f}, dd's sys {rs:.2f} s/GiB", None, None, rss, "reported, no target")
if "write" in raw:
    m = med("write", "mount_mib_s")
    c, mp = med("write", "curl_mib_s"), med("write", "multipart_mib_s")
    b = max(c, mp)
    rss = peak_mib("write")
    r = row("write (seq, incl. close)", m, f"{m:.0f} MiB/s", b,
            f"curl -T {c:.0f} / multipart {mp:.0f} MiB/s", "higher", 0.80, rss)
    r["met"] = r["met"] and rss <= 256
    r["target"] += ", RSS <= 256 MiB"
    c, ws, ec = (med("write", "mount_cpu_s_gib"), med("write", "writer_sys_s_gib"),
                 med("write", "emulator_cpu_s_gib"))
    row("write CPU of the mount", c, f"{c:.2f} s/GiB", None,
        f"dd's sys {ws:.2f}, emulator {ec:.2f} s/GiB", "abs_lower", 0.6, rss)
    if "dio_mount_mib_s" in raw["write"]:
        m, dc = med("write", "dio_mount_mib_s"), med("write", "dio_mount_cpu_s_gib")
        ws = med("write", "dio_writer_sys_s_gib")
        rss = peak_mib("write", "dio_rss_kib")
        row("write (seq, incl. close, --direct-io)", m, f"{m:.0f} MiB/s", b,
            f"curl -T {med('write', 'curl_mib_s'):.0f} / multipart {mp:.0f} MiB/s", None, None,
            rss, "reported, no target")
        row("write CPU of the mount (--direct-io)", dc, f"{dc:.2f} s/GiB", None,
            f"dd's sys {ws:.2f}, emulator {med('write', 'dio_emulator_cpu_s_gib'):.2f} s/GiB",
            None, None, rss, "reported, no target")
if "ttfb" in raw:
    m, b = med("ttfb", "mount_s"), med("ttfb", "curl_s")
    row("ttfb (fresh mount)", m, f"{m * 1000:.2f} ms", b, f"curl {b * 1000:.2f} ms", "lower", 1.5,
        peak_mib("ttfb"))
if "randread" in raw:
    m, b = med("randread", "mount_iops"), med("randread", "direct_iops")
    row("randread 4k x4", m, f"{m:.0f} IOPS", b, f"GETs {b:.0f} IOPS", "higher", 0.80,
        peak_mib("randread"))
if "list" in raw:
    b = med("list", "raw_list_s")
    for mode, label in (("default", "default"), ("fast", "--fast-listing")):
        if f"{mode}_cold_s" not in raw["list"]:
            continue
        rss = peak_mib("list", f"{mode}_rss_kib")
        c, w = med("list", f"{mode}_cold_s"), med("list", f"{mode}_warm_s")
        row(f"ls -l cold ({label})", c, f"{c:.3f} s", b, f"LIST {b:.3f} s", "lower", 1.5, rss)
        row(f"ls -l warm ({label})", w, f"{w:.3f} s", None, "-", "abs_lower", 0.2, rss)
if "create" in raw:
    for mode, label in (("default", ""), ("cached", " (--negative-ttl, --listing-ttl 1s)")):
        rss = peak_mib("create", f"{mode}_rss_kib")
        m, b = med("create", f"{mode}_p1_files_s"), med("create", "direct_p1_files_s")
        row(f"create 4k serial{label}", m, f"{m:.0f} files/s", b, f"PUT {b:.0f} files/s",
            None, None, rss, "reported, no target")
        m, b = med("create", f"{mode}_p8_files_s"), med("create", "direct_p8_files_s")
        if mode == "default":
            row(f"create 4k x8{label}", m, f"{m:.0f} files/s", b, f"PUT {b:.0f} files/s",
                "higher", 0.70, rss)
        else:
            row(f"create 4k x8{label}", m, f"{m:.0f} files/s", b, f"PUT {b:.0f} files/s",
                None, None, rss, "reported, no target")
if "stat" in raw:
    m, b = med("stat", "mount_us"), med("stat", "local_us")
    row("stat warm", m, f"{m:.2f} us", b, f"local {b:.2f} us", "lower", 3, peak_mib("stat"))
if "cache" in raw:
    rss = peak_mib("cache")
    m, b = med("cache", "warm_read_mib_s"), med("cache", "local_read_mib_s")
    row("read warm (--data-cache)", m, f"{m:.0f} MiB/s", b, f"local file {b:.0f} MiB/s",
        "higher", 0.90, rss)
    m, b = med("cache", "warm_small_s"), med("cache", "local_small_s")
    # Times: the mount's speed relative to the local directory's is local time / mount time.
    r = row(f"cat {files} small warm (--data-cache)", m, f"{m:.3f} s", b,
            f"local dir {b:.3f} s", "lower", 1 / 0.7, rss)
    f = med("cache", "floor_small_s")
    row(f"cat {files} small warm, FUSE floor", f, f"{f:.3f} s", b, f"local dir {b:.3f} s",
        None, None, None, "a minimal passthrough FUSE server (examples/fuse_floor)")
    row(f"cat {files} small warm, against the floor", m, f"{m:.3f} s", f,
        f"FUSE floor {f:.3f} s", None, None, rss, "reported, no target")
    m, b = med("cache", "cold_on_mib_s"), med("cache", "cold_off_mib_s")
    r = row("read cold, cache on vs off", m, f"{m:.0f} MiB/s", b, f"cache off {b:.0f} MiB/s",
            "higher", 0.95, rss)

headers = ["workload", "mount", "baseline", "ratio", "target", "met?", "peak RSS"]
table = [[r["workload"], r["mount_text"], r["baseline_text"],
          "-" if r["ratio"] is None else f"{r['ratio']:.2f}", r["target"],
          "-" if r["met"] is None else ("yes" if r["met"] else "NO"),
          "-" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.0f} MiB"] for r in rows]
widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]
def line(cells):
    return "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(cells)) + " |"
print()
print(line(headers))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for t in table:
    print(line(t))
judged = [r for r in rows if r["met"] is not None]
met = sum(1 for r in judged if r["met"])
print(f"\n{met} of {len(judged)} targets met; ratios are mount / baseline, medians of "
      f"{repeat} runs ({ttfb_tries} for ttfb); {nproc} CPUs, kernel {kernel}; "
      f"load {load_start} -> {load_end}{psi_text}; took {float(total_s):.0f} s")

result = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "nproc": int(nproc),
    "kernel": kernel,
    "revision": revision,
    "loadavg_start": load_start,
    "loadavg_end": load_end,
    "cpu_pressure_avg60_start": psi_start,
    "cpu_pressure_avg60_end": psi_end,
    "settings": {
        "size_mb": int(size_mb), "objects": int(objects), "files": int(files),
        "randread_runtime_s": int(runtime), "repeat": int(repeat),
        "ttfb_tries": int(ttfb_tries), "part_size": part_size,
        "max_concurrency": int(concurrency),
    },
    "results": rows,
    "targets_met": met,
    "targets_judged": len(judged),
    "raw": raw,
    "total_seconds": float(total_s),
}
with open(out_path, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
print(f"wrote {out_path}")
if strict == "1" and met < len(judged):
    sys.exit(3)
EOF
exit "$status"
