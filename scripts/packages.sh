# Installs the Debian packages a script needs when their commands are missing, so that the
# README's two commands (scripts/demo.sh, scripts/test.sh) are all a fresh Debian machine with
# Rust needs. Sourced; `prog` names the caller in messages.
# shellcheck shell=bash
# shellcheck disable=SC2154 # prog comes from the sourcing script

# need_packages COMMAND=PACKAGE ...: for every COMMAND not on PATH, installs PACKAGE with
# apt-get (through sudo when not root), saying what it installs. A COMMAND of the form
# `python3-venv` checks that `python3 -m venv` works instead.
need_packages() {
  local spec cmd pkg missing=()
  for spec in "$@"; do
    cmd="${spec%%=*}"
    pkg="${spec#*=}"
    case "$cmd" in
      python3-venv)
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=("$pkg")
        ;;
      *)
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
        ;;
    esac
  done
  [[ ${#missing[@]} == 0 ]] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$prog: missing packages ${missing[*]}, and this is not a Debian machine (no apt-get): install them by hand" >&2
    exit 2
  fi
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "$prog: missing packages ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
      exit 2
    fi
    sudo=(sudo)
  fi
  echo "$prog: installing the Debian packages this needs: ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}
