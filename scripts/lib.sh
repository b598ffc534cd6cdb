# Helpers shared by demo.sh, bench.sh and fsx.sh; sourced once they have set `prog` (the
# prefix of their messages) and `mnt` (the mountpoint).
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

# Waits until $mnt is mounted by the cosmount process $1. Fails, saying why, if the process
# exits first or the mount does not appear within 30 s.
wait_mounted() {
  local pid="$1" i
  for ((i = 0; i < 600; i++)); do
    is_mounted && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$prog: cosmount exited before mounting" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "$prog: $mnt did not appear in /proc/self/mountinfo within 30 s" >&2
  return 1
}
