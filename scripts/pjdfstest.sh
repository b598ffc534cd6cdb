#!/usr/bin/env bash
# Runs pjdfstest (the POSIX file-system test suite, the crates.io port of pjd's suite: nobody
# here wrote it) on a cosmount mount of a fresh cos-emulator and on a local directory of the
# same machine, in the same run, and compares the two.
#
#   scripts/pjdfstest.sh                 # exit 0 when every failure is on the expected list
#   scripts/pjdfstest.sh 'chmod::'       # only tests whose names contain this
#   PJD_KEEP=1 scripts/pjdfstest.sh      # keep the temporary directory (logs, outputs)
#
# tests/pjdfstest-expected-failures.txt lists the tests that pass locally but are expected to
# fail on a mount, each with a one-line reason. A test that fails on the mount, passes locally
# and is not on the list fails this script; a listed test that passes is reported, so the list
# can only shrink. Tests of hard links (`link::*`) are left out of both counts (cosmount
# refuses hard links by design). Needs fuse3 and pjdfstest (`cargo install pjdfstest`); runs
# as root (pjdfstest changes to its dummy users, nobody and daemon). COSMOUNT_SKIP_BUILD=1
# skips `cargo build --release --bins`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
filter=("$@")
expected_file="$root/tests/pjdfstest-expected-failures.txt"

prog=pjdfstest.sh
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
if [[ "$(id -u)" != 0 ]]; then
  echo "$prog: pjdfstest must run as root (it switches to its dummy users)" >&2
  exit 2
fi
stack_prepare pjdfstest "cargo install --locked pjdfstest"
stack_tmpdir pjdfstest
# The dummy users must reach the test directories.
chmod 755 "$tmp"
trap 'stack_stop; if [[ "${PJD_KEEP:-}" == 1 ]]; then echo "$prog: kept $tmp" >&2; else rm -rf "$tmp"; fi' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# allow_other: pjdfstest works as nobody and daemon too. default_permissions (always on)
# leaves the permission checks to the kernel, as on a local file system.
stack_start pjd-1250000000 --allow-other

# The optional features Linux file systems have (pjdfstest's ci/linux-ext4.toml, plus
# rename_ctime, which ext4 has too): their tests run on both sides.
cat >"$tmp/pjdfstest.toml" <<'EOF'
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
[settings]
naptime = 0.001
EOF

# Prints `name result` for every test in pjdfstest's output (result: ok, FAILED, skipped).
results() {
  awk 'NF >= 2 && $1 ~ /::/ && ($NF == "ok" || $NF == "FAILED" || $NF == "skipped") { print $1, $NF }' "$1" | sort
}

mkdir -p "$tmp/local"
chmod 755 "$tmp/local"
echo "$prog: pjdfstest on a local directory ($tmp/local)"
(cd "$tmp/local" && pjdfstest -c "$tmp/pjdfstest.toml" -p "$tmp/local" "${filter[@]}") >"$tmp/local.out" 2>&1 || true
echo "$prog: pjdfstest on the mount ($mnt)"
(cd "$mnt" && pjdfstest -c "$tmp/pjdfstest.toml" -p "$mnt" "${filter[@]}") >"$tmp/mount.out" 2>&1 || true
if ! is_mounted; then
  echo "$prog: the mount is gone after pjdfstest" >&2
  tail -n 40 "$tmp/cosmount.log" >&2
  exit 1
fi

results "$tmp/local.out" | grep -v '^link::' >"$tmp/local.res" || true
results "$tmp/mount.out" | grep -v '^link::' >"$tmp/mount.res" || true
local_ok="$(awk '$2 == "ok"' "$tmp/local.res" | wc -l)"
if [[ "$local_ok" == 0 ]]; then
  echo "$prog: nothing passed on the local directory: is pjdfstest working?" >&2
  tail -n 20 "$tmp/local.out" >&2
  exit 1
fi
# Tests that pass locally, with their result on the mount.
join <(awk '$2 == "ok" { print $1 }' "$tmp/local.res") "$tmp/mount.res" >"$tmp/both.res"
mount_ok="$(awk '$2 == "ok"' "$tmp/both.res" | wc -l)"
pct="$(awk -v a="$mount_ok" -v b="$local_ok" 'BEGIN { printf "%.1f", 100 * a / b }')"
echo "$prog: $mount_ok of the $local_ok tests that pass on a local directory pass on the mount ($pct%; link::* left out)"

sed -e 's/[[:space:]]*#.*//' -e '/^[[:space:]]*$/d' "$expected_file" | awk '{ print $1 }' | sort -u >"$tmp/expected"
awk '$2 != "ok" { print $1 }' "$tmp/both.res" >"$tmp/failed"
unexpected="$(comm -23 "$tmp/failed" "$tmp/expected")"
if [[ ${#filter[@]} == 0 ]]; then
  fixed="$(comm -12 <(awk '$2 == "ok" { print $1 }' "$tmp/both.res") "$tmp/expected")"
else
  fixed=""
fi
if [[ -n "$fixed" ]]; then
  echo "$prog: these tests on the expected-failures list now pass; take them off the list:"
  sed 's/^/  /' <<<"$fixed"
fi
if [[ -n "$unexpected" ]]; then
  echo "$prog: FAIL: these tests pass locally but fail on the mount, and are not expected to:" >&2
  while read -r t; do
    echo "  $t" >&2
    # pjdfstest prints the reason under the test's line.
    awk -v t="$t" '$1 == t { show = 1; next } show && /^[^[:space:]]/ { exit } show { print "      " $0 }' "$tmp/mount.out" | head -n 6 >&2
  done <<<"$unexpected"
  exit 1
fi
echo "$prog: PASS"
