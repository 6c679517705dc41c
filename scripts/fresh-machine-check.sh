#!/usr/bin/env bash
# The README's promise, checked as a newcomer meets it: clones the
# repository into an empty directory and, with an empty CARGO_HOME and a
# fresh VIREO_HOME, runs the README's setup:
#
#   make setup-run build   the first half of `make run` (the demo that
#                          follows waits for a person, so it is left out)
#   make setup-test        what `make test` installs first
#   cargo test --test flatpak --test layers
#                          the tests that need what setup made (every crate
#                          of Cargo.lock in cargo's cache) and the map
#   make test              with --full: every test tier
#
# and prints how long each step took, how much disk the clone, its build
# and the cargo cache took, and which step failed first, if one did.
#
# Usage: scripts/fresh-machine-check.sh [--full] [--keep] [REPOSITORY]
#   REPOSITORY  what to clone (default: this checkout's repository, at its
#               current commit; uncommitted changes are not part of it)
#   --full      also run `make test` (about 25 minutes on 2 cores)
#   --keep      keep the scratch directory (printed at the end)
set -uo pipefail

full=false
keep=false
repo=
for arg in "$@"; do
  case "$arg" in
    --full) full=true ;;
    --keep) keep=true ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    -*) echo "unknown option $arg" >&2; exit 2 ;;
    *) repo=$arg ;;
  esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
repo=${repo:-$here}
commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo "(not a git checkout)")

scratch=$(mktemp -d "${TMPDIR:-/tmp}/vireo-fresh.XXXXXX")
checkout=$scratch/vireo
export CARGO_HOME=$scratch/cargo-home
export VIREO_HOME=$scratch/vireo-home
export CARGO_TARGET_DIR=$checkout/target
mkdir -p "$CARGO_HOME" "$VIREO_HOME"
# Cargo itself stays where rustup put it; only its home (registry, cache,
# config) starts empty.
unset CARGO RUSTC_WRAPPER CARGO_BUILD_TARGET_DIR

log=$scratch/log
mkdir -p "$log"
summary=()
failed=
total_start=$(date +%s)

# Runs one step, logging its output to $log/NAME.log; stops at the first
# failure and says where to read why.
step() {
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo "== $name: $*"
  if (cd "$checkout" 2>/dev/null || cd "$scratch"; "$@") >"$log/$name.log" 2>&1; then
    local took=$(($(date +%s) - start))
    summary+=("$(printf '%-16s ok      %5d s' "$name" "$took")")
    echo "   ok in ${took} s"
  else
    local took=$(($(date +%s) - start))
    summary+=("$(printf '%-16s FAILED  %5d s' "$name" "$took")")
    failed=$name
    echo "   FAILED after ${took} s; the last lines of $log/$name.log:"
    tail -n 30 "$log/$name.log" | sed 's/^/   | /'
    return 1
  fi
}

size() {
  du -sh "$1" 2>/dev/null | cut -f1
}

run_steps() {
  step clone git clone --quiet "$repo" "$checkout" || return
  step setup-run-build make setup-run build || return
  step setup-test make setup-test || return
  step setup-tests cargo test --release --test flatpak --test layers || return
  if $full; then
    step make-test make test || return
  fi
}

run_steps
total=$(($(date +%s) - total_start))

echo
echo "Fresh-machine check of $repo at $commit"
echo "  CARGO_HOME=$CARGO_HOME (empty at the start), VIREO_HOME=$VIREO_HOME"
for line in "${summary[@]}"; do
  echo "  $line"
done
echo "  total            $total s"
echo "  disk: checkout and build $(size "$checkout"), cargo home $(size "$CARGO_HOME"), all $(size "$scratch")"
if [ -n "$failed" ]; then
  echo "  first failure: $failed (log: $log/$failed.log)"
fi
if $keep || [ -n "$failed" ]; then
  echo "  kept: $scratch"
else
  rm -rf "$scratch"
fi
[ -z "$failed" ]
