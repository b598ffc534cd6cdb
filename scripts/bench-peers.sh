#!/usr/bin/env bash
# cosmount beside its peers, s3fs and rclone (Debian packages), each mounting the same bucket of
# one SeaweedFS server (a real S3 server, verifying SigV4) in the same run, with the same
# workloads; runs are interleaved and the median of PEERS_REPEAT is shown. Then the same again
# through a TCP proxy that delays every request by PEERS_LATENCY_MS (a real network's round
# trip; this kernel has no netem). curl's GET and PUT of the same object on the same server are
# the ceiling. `scripts/bench.sh peers` runs this.
#
#   scripts/bench-peers.sh            loopback, then PEERS_LATENCY_MS
#   scripts/bench-peers.sh 0          loopback only
#   scripts/bench-peers.sh 10         through the proxy only
#
# Workloads: sequential write and cold read of the big object; creates of small files (4 KiB);
# a cold `ls -l` of them; `cat` of them all (cold); `cp -r` of a tree of small files in 100
# directories, then `rm -r` of it. Every figure is a rate (MiB/s, files/s, entries/s), so the
# ratio column is cosmount's figure over the best peer's: above 1, cosmount is ahead. CPU-s/GiB
# is user + system time of the mount process over the big write and read.
#
# Environment (defaults in brackets; the latency run uses the *_SLOW sizes):
#   PEERS_SIZE_MB [1024] PEERS_SIZE_MB_SLOW [256]   the big object
#   PEERS_FILES [1000]   PEERS_FILES_SLOW [200]     small files (creates, ls -l, cat)
#   PEERS_TREE [2000]    PEERS_TREE_SLOW [400]      files of the tree (cp -r, rm -r)
#   PEERS_REPEAT [3]     PEERS_LATENCY_MS [10]      PEERS_CLIENTS [cosmount s3fs rclone]
#   PEERS_CLIENTS may also name cosmount-cached: cosmount with the consistency rclone has by
#   default (its 5-minute directory cache: --metadata-ttl, --negative-ttl and --listing-ttl of
#   5m), shown with its own ratio to the best peer; cosmount-dio: cosmount with --direct-io
#   (mountpoint-s3 bypasses the page cache too unless it caches); and cosmount-fast: cosmount
#   with --fast-listing (no HEAD per listed entry, as mountpoint-s3 lists).
#   BENCH_SKIP_BUILD=1   do not run cargo build
# Needs root (page cache drops, mounts), fuse3, s3fs, rclone, curl, python3; SeaweedFS comes from
# PyPI through scripts/weed-venv.sh.
# shellcheck disable=SC2317 # cleanup is called by trap
set -euo pipefail
export LC_ALL=C

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
latencies=()
for arg in "$@"; do
  case "$arg" in
    -h | --help)
      usage
      exit 0
      ;;
    *[!0-9]* | "")
      echo "bench-peers: unknown argument '$arg' (a latency in ms, e.g. 0 or 10)" >&2
      exit 2
      ;;
    *) latencies+=("$arg") ;;
  esac
done
[[ ${#latencies[@]} -gt 0 ]] || latencies=(0 "${PEERS_LATENCY_MS:-10}")
REPEAT="${PEERS_REPEAT:-3}"
read -r -a CLIENTS <<<"${PEERS_CLIENTS:-cosmount s3fs rclone}"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
prog=bench-peers
missing=()
for tool in curl fusermount3 python3 s3fs rclone; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "bench-peers: missing ${missing[*]}: apt-get install fuse3 curl python3 s3fs rclone" >&2
  exit 1
fi
[[ "$(id -u)" == 0 ]] || {
  echo "bench-peers: run as root (it drops the page cache between cold runs)" >&2
  exit 1
}
if [[ "${BENCH_SKIP_BUILD:-}" != 1 ]]; then
  cargo build --release --bins --example latency_proxy >&2
fi
cosmount="$root/target/release/cosmount"
weed="$(scripts/weed-venv.sh)"

export AWS_ACCESS_KEY_ID="AKIDcosmountPEERS"
export AWS_SECRET_ACCESS_KEY="cosmount-peers-secret-key"
bucket="peers"
s3_port=8333

tmp="$(mktemp -d "${TMPDIR:-/tmp}/cosmount-peers.XXXXXX")"
tmp="$(cd "$tmp" && pwd -P)"
mnt="$tmp/mnt"
mkdir -p "$mnt" "$tmp/weed" "$tmp/cache"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
weed_pid="" proxy_pid="" mnt_pid="" client=""
# latency <TAB> workload <TAB> client <TAB> value, one sample a line; kept after the run.
raw="$root/target/bench-peers.raw.tsv"
mkdir -p "$root/target"
: >"$raw"

log() { printf 'bench-peers: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  set +e
  if [[ $status != 0 && -s "$tmp/client.log" ]]; then
    echo "---- last lines of the $client log ----" >&2
    tail -n 15 "$tmp/client.log" >&2
  fi
  unmount
  [[ -n "$proxy_pid" ]] && kill "$proxy_pid" 2>/dev/null
  if [[ -n "$weed_pid" ]]; then
    kill -9 "$weed_pid" 2>/dev/null
    wait "$weed_pid" 2>/dev/null
  fi
  remove_unless_mounted "$tmp"
  exit "$status"
}
trap_cleanup

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.2f", n / s }'; }
clk_tck="$(getconf CLK_TCK)"
cpu_s() { awk -v t="$clk_tck" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / t }' "/proc/$1/stat"; }
drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}
record() {
  [[ "$4" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "no figure for $2 of $3 (got '$4')"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$raw"
}

# curl, signed with SigV4 by curl itself.
s3curl() {
  curl -sS -f --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"
}

start_weed() {
  "$weed" mini -dir="$tmp/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -bucket="$bucket" \
    -webdav=false -admin.ui=false </dev/null >"$tmp/weed.log" 2>&1 &
  weed_pid=$!
  local i
  for ((i = 0; i < 600; i++)); do
    s3curl -o /dev/null -I "http://127.0.0.1:$s3_port/$bucket/" 2>/dev/null && return 0
    kill -0 "$weed_pid" 2>/dev/null || die "weed exited: $(tail -n 5 "$tmp/weed.log")"
    sleep 0.1
  done
  die "SeaweedFS did not answer within 60 s"
}

# A TCP proxy on 127.0.0.1:$2 to 127.0.0.1:$3 that hands each chunk a client sends to the
# server $1 ms after it arrived (in order): every request, its round trip, starts $1 ms later.
# examples/latency_proxy.rs: tokio, one thread, about half the CPU per request of the Python
# asyncio proxy it replaced, which shared these two cores with the clients it measured.
start_proxy() {
  "$root/target/release/examples/latency_proxy" "$1" "$2" "$3" >"$tmp/proxy.out" 2>&1 &
  proxy_pid=$!
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q listening "$tmp/proxy.out" 2>/dev/null && return 0
    kill -0 "$proxy_pid" 2>/dev/null || break
    sleep 0.05
  done
  die "the proxy did not start: $(cat "$tmp/proxy.out")"
}

# Mounts $bucket on $mnt with client $1 through port $2, in the foreground, in the background.
mount_client() {
  client="$1"
  local url="http://127.0.0.1:$2"
  case "$client" in
    cosmount | cosmount-cached | cosmount-dio | cosmount-fast)
      local extra=()
      case "$client" in
        cosmount-cached) extra=(--metadata-ttl 5m --negative-ttl 5m --listing-ttl 5m) ;;
        cosmount-dio) extra=(--direct-io) ;;
        cosmount-fast) extra=(--fast-listing) ;;
      esac
      "$cosmount" --api s3 --endpoint "$url" "$bucket" "$mnt" -f --cache-dir "$tmp/cache" \
        "${extra[@]}" </dev/null >"$tmp/client.log" 2>&1 &
      ;;
    s3fs)
      printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$tmp/passwd-s3fs"
      chmod 600 "$tmp/passwd-s3fs"
      s3fs "$bucket" "$mnt" -f -o "passwd_file=$tmp/passwd-s3fs,url=$url,use_path_request_style" \
        </dev/null >"$tmp/client.log" 2>&1 &
      ;;
    rclone)
      # Cache off: synchronous, as cosmount is. rclone reads AWS_CA_BUNDLE, which is not ours.
      env -u AWS_CA_BUNDLE RCLONE_CONFIG_PEERS_TYPE=s3 RCLONE_CONFIG_PEERS_PROVIDER=SeaweedFS \
        RCLONE_CONFIG_PEERS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
        RCLONE_CONFIG_PEERS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
        RCLONE_CONFIG_PEERS_ENDPOINT="$url" \
        rclone mount "peers:$bucket" "$mnt" --vfs-cache-mode off \
        </dev/null >"$tmp/client.log" 2>&1 &
      ;;
  esac
  mnt_pid=$!
  wait_mounted "$mnt_pid" "$client" || exit 1
}

unmount() {
  [[ -n "$mnt_pid" ]] || return 0
  unmount_wait "$mnt_pid" 200 || true
  kill "$mnt_pid" 2>/dev/null || true
  wait "$mnt_pid" 2>/dev/null || true
  mnt_pid=""
}

# A fresh mount with a cold page cache.
fresh() {
  unmount
  drop_caches
  mount_client "$1" "$2"
}

# Python writes N small files (4 KiB) into DIR, one open/write/close each: one process for all.
create_files() {
  python3 - "$1" "$2" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
data = os.urandom(4096)
for i in range(n):
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(data)
EOF
}

# Runs every workload once with client $1 through port $2 at latency $3.
one_round() {
  local c="$1" port="$2" lat="$3" t0 t1 c0 c1 bytes=$((size_mb << 20))
  # Names of this round's own (rclone's rm -r leaves SeaweedFS an empty directory behind).
  local created="created-$c-$lat-$r" copied="tree-$c-$lat-$r"
  # Write of the big object (timed through the close, which commits it).
  fresh "$c" "$port"
  c0="$(cpu_s "$mnt_pid")"
  t0="$(now)"
  dd if="$tmp/big.src" of="$mnt/written-$c" bs=1M 2>/dev/null
  t1="$(now)"
  c1="$(cpu_s "$mnt_pid")"
  record "$lat" write "$c" "$(rate "$size_mb" "$(elapsed "$t0" "$t1")")"
  record "$lat" write_cpu "$c" "$(awk -v a="$c0" -v b="$c1" -v n="$bytes" 'BEGIN { printf "%.3f", (b - a) * 1073741824 / n }')"
  [[ "$(stat -c %s "$mnt/written-$c")" == "$bytes" ]] || die "$c wrote a file of the wrong size"
  rm -f "$mnt/written-$c"
  # Cold read of the object curl put.
  fresh "$c" "$port"
  c0="$(cpu_s "$mnt_pid")"
  t0="$(now)"
  cat "$mnt/big.bin" >/dev/null
  t1="$(now)"
  c1="$(cpu_s "$mnt_pid")"
  record "$lat" read "$c" "$(rate "$size_mb" "$(elapsed "$t0" "$t1")")"
  record "$lat" read_cpu "$c" "$(awk -v a="$c0" -v b="$c1" -v n="$bytes" 'BEGIN { printf "%.3f", (b - a) * 1073741824 / n }')"
  # Creates.
  mkdir "$mnt/$created"
  t0="$(now)"
  create_files "$mnt/$created" "$files"
  t1="$(now)"
  record "$lat" create "$c" "$(rate "$files" "$(elapsed "$t0" "$t1")")"
  # Cold ls -l and cat of the small files (all clients list the same files).
  fresh "$c" "$port"
  t0="$(now)"
  local n
  n="$(ls -l "$mnt/small" | grep -c '^-')"
  t1="$(now)"
  [[ "$n" == "$files" ]] || die "$c listed $n of $files files"
  record "$lat" ls_l "$c" "$(rate "$files" "$(elapsed "$t0" "$t1")")"
  fresh "$c" "$port"
  t0="$(now)"
  cat "$mnt"/small/* >/dev/null
  t1="$(now)"
  record "$lat" cat "$c" "$(rate "$files" "$(elapsed "$t0" "$t1")")"
  # cp -r and rm -r of a tree.
  t0="$(now)"
  cp -r "$tmp/tree" "$mnt/$copied"
  t1="$(now)"
  record "$lat" cp_r "$c" "$(rate "$tree_files" "$(elapsed "$t0" "$t1")")"
  t0="$(now)"
  rm -r "$mnt/$copied" "$mnt/$created"
  t1="$(now)"
  record "$lat" rm_r "$c" "$(rate "$((tree_files + files))" "$(elapsed "$t0" "$t1")")"
  unmount
}

# curl's PUT and GET of the big object: the ceiling of one stream on this server.
ceiling() {
  local port="$1" lat="$2" t0 t1
  t0="$(now)"
  s3curl -o /dev/null -T "$tmp/big.src" "http://127.0.0.1:$port/$bucket/big.bin"
  t1="$(now)"
  record "$lat" write curl "$(rate "$size_mb" "$(elapsed "$t0" "$t1")")"
  drop_caches
  t0="$(now)"
  s3curl -o /dev/null "http://127.0.0.1:$port/$bucket/big.bin"
  t1="$(now)"
  record "$lat" read curl "$(rate "$size_mb" "$(elapsed "$t0" "$t1")")"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med() { awk -F'\t' -v l="$1" -v w="$2" -v c="$3" '$1 == l && $2 == w && $3 == c { print $4 }' "$raw" | median; }

print_table() {
  local lat="$1" w c line best v
  printf '\n%s\n' "== latency ${lat} ms added to every request: ${size_mb} MiB object, ${files} small files, tree of ${tree_files}; medians of ${REPEAT} =="
  printf '%-22s' "workload"
  for c in "${CLIENTS[@]}"; do printf '%16s' "$c"; done
  printf '%12s' "curl"
  for c in "${CLIENTS[@]}"; do
    case "$c" in
      cosmount) printf '%14s' "vs best peer" ;;
      cosmount-*) printf '%16s' "${c#cosmount-} vs best" ;;
    esac
  done
  printf '\n'
  for w in write read create ls_l cat cp_r rm_r write_cpu read_cpu; do
    case "$w" in
      write | read) line="$w MiB/s" ;;
      ls_l) line="cold ls -l entries/s" ;;
      write_cpu | read_cpu) line="${w%_cpu} CPU-s/GiB" ;;
      cp_r | rm_r) line="${w/_/ -} files/s" ;;
      *) line="$w files/s" ;;
    esac
    printf '%-22s' "$line"
    best=""
    for c in "${CLIENTS[@]}"; do
      v="$(med "$lat" "$w" "$c")"
      printf '%16s' "$v"
      if [[ "$c" != cosmount* && "$v" != "-" ]]; then
        best="$(awk -v a="$best" -v b="$v" -v cpu="${w##*_}" 'BEGIN { if (a == "") print b; else if (cpu == "cpu") print (b < a ? b : a); else print (b > a ? b : a) }')"
      fi
    done
    printf '%12s' "$(med "$lat" "$w" curl)"
    for c in "${CLIENTS[@]}"; do
      [[ "$c" == cosmount* ]] || continue
      local width=16
      [[ "$c" == cosmount ]] && width=14
      v="$(med "$lat" "$w" "$c")"
      if [[ -n "$best" && "$v" != "-" ]]; then
        # A ratio above 1 means cosmount is ahead (for CPU, it spends less).
        awk -v a="$v" -v b="$best" -v cpu="${w##*_}" -v wd="$((width - 1))" 'BEGIN { if (cpu == "cpu") r = (a > 0 ? b / a : 0); else r = (b > 0 ? a / b : 0); printf "%*.2fx", wd, r }'
      else
        printf '%*s' "$width" "-"
      fi
    done
    printf '\n'
  done
}

start_weed
log "SeaweedFS $("$weed" version 2>/dev/null | awk '{ print $3 }') on 127.0.0.1:$s3_port (pid $weed_pid)"
for lat in "${latencies[@]}"; do
  if [[ "$lat" == 0 ]]; then
    port=$s3_port size_mb="${PEERS_SIZE_MB:-1024}" files="${PEERS_FILES:-1000}" tree_files="${PEERS_TREE:-2000}"
  else
    [[ -n "$proxy_pid" ]] && kill "$proxy_pid" 2>/dev/null
    start_proxy "$lat" 18433 "$s3_port"
    port=18433 size_mb="${PEERS_SIZE_MB_SLOW:-256}" files="${PEERS_FILES_SLOW:-200}" tree_files="${PEERS_TREE_SLOW:-400}"
  fi
  log "latency $lat ms: preparing ${size_mb} MiB, ${files} small files, a tree of ${tree_files}"
  head -c "$((size_mb << 20))" /dev/urandom >"$tmp/big.src"
  rm -rf "$tmp/tree"
  for ((d = 0; d < 100; d++)); do
    mkdir -p "$tmp/tree/d$d"
    for ((f = d; f < tree_files; f += 100)); do head -c 2048 /dev/urandom >"$tmp/tree/d$d/f$f"; done
  done
  # The small files every client lists and reads, written once (by cosmount, whose attribute
  # names s3fs shares).
  mount_client cosmount "$port"
  rm -rf "$mnt/small"
  mkdir "$mnt/small"
  create_files "$mnt/small" "$files"
  unmount
  for ((r = 1; r <= REPEAT; r++)); do
    ceiling "$port" "$lat"
    for c in "${CLIENTS[@]}"; do
      log "latency $lat ms, run $r/$REPEAT: $c"
      one_round "$c" "$port" "$lat"
    done
  done
  print_table "$lat" | tee -a "$tmp/table.txt"
  mount_client cosmount "$port"
  rm -rf "$mnt/small" "$mnt/big.bin"
  unmount
done
cp "$tmp/table.txt" "$root/bench-peers.txt"
log "table written to bench-peers.txt"
