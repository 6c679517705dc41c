#!/usr/bin/env bash
# Fuzzes the library's fuzz targets (src/fuzz) with AFL++ on stable Rust,
# through the `afl` crate's `cargo afl`. Usage:
#   scripts/fuzz.sh [TARGET|all] [SECONDS]      (make fuzz TARGET=x SECONDS=n)
# One afl-fuzz process at a time, at the lowest priority: each target runs
# SECONDS (default 600) from the stored corpus fuzz/corpus/TARGET plus the
# library's seeds. Afterwards the queue is minimised back into
# fuzz/corpus/TARGET, and every crash or hang is copied to
# fuzz/regressions/TARGET/, where tests/fuzz_corpus.rs (make test) runs it
# until it is fixed and for ever after. Per-target figures (execs, run
# time, crashes, hangs) are appended to fuzz/out/log.
set -euo pipefail

cd "$(dirname "$0")/.."
target=${1:-all}
seconds=${2:-600}
root=$PWD/fuzz
out=$root/out

if ! cargo afl --version >/dev/null 2>&1; then
  echo "fuzz: cargo afl missing; run scripts/setup.sh fuzz" >&2
  exit 1
fi
(cd fuzz && cargo afl build --release)
bin=$root/target/release/vireo-fuzz

targets=("$target")
if [ "$target" = all ]; then
  mapfile -t targets < <("$bin" 2>&1 | sed -n 's/^targets: //p' | tr ' ' '\n')
fi

# afl-fuzz wants these on a machine it does not own: no CPU governor or
# core_pattern changes, no UI (logs instead), no binding to a core that
# another helper's job uses.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 \
  AFL_NO_AFFINITY=1 AFL_AUTORESUME=1
# The coverage map the instrumented binary needs (larger than afl-fuzz's
# default, which it refuses to guess).
# AFL++'s instrumentation prints the size and exits with 255.
AFL_MAP_SIZE=$(AFL_DUMP_MAP_SIZE=1 "$bin" virtio_blk || true)
if ! [[ $AFL_MAP_SIZE =~ ^[0-9]+$ ]]; then
  echo "fuzz: cannot read the coverage map size of $bin: '$AFL_MAP_SIZE'" >&2
  exit 1
fi
export AFL_MAP_SIZE

seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
"$bin" --seeds "$seeds"

for t in "${targets[@]}"; do
  input=$seeds/$t
  mkdir -p "$root/corpus/$t" "$root/regressions/$t" "$out"
  cp -n "$root/corpus/$t"/* "$input"/ 2>/dev/null || true
  echo "fuzz: $t for ${seconds}s"
  # -t: 2 s per input is a hang (targets take milliseconds). No -m: an
  # address-space limit breaks the Rust runtime's reservations; memory
  # growth is what tests/fuzz_corpus.rs measures on the stored inputs.
  nice -n 19 cargo afl fuzz -i "$input" -o "$out/$t" -V "$seconds" -t 2000 \
    "$bin" "$t" >"$out/$t.log" 2>&1 || { tail -20 "$out/$t.log"; exit 1; }
  stats=$out/$t/default/fuzzer_stats
  field() { awk -v k="$1" '$1 == k {print $3}' "$stats"; }
  echo "$(date -u +%FT%TZ) $t run_time=$(field run_time)s execs=$(field execs_done)" \
    "corpus=$(field corpus_count) crashes=$(field saved_crashes) hangs=$(field saved_hangs)" \
    | tee -a "$out/log"
  for kind in crashes hangs; do
    for f in "$out/$t/default/$kind"/id:*; do
      [ -e "$f" ] || continue
      name=$(basename "$f" | tr ':,' '__' | cut -c1-60)
      cp -n "$f" "$root/regressions/$t/$kind-$name"
    done
  done
  # The stored corpus: the queue minimised to inputs that each add coverage.
  min=$(mktemp -d)
  if nice -n 19 cargo afl cmin -i "$out/$t/default/queue" -o "$min/c" -t 2000 -- "$bin" "$t" >/dev/null 2>&1; then
    rm -f "$root/corpus/$t"/*
    for f in "$min/c"/*; do
      cp "$f" "$root/corpus/$t/$(sha1sum "$f" | cut -c1-16)"
    done
  fi
  rm -rf "$min"
done
