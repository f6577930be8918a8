#!/usr/bin/env bash
# Long fuzzing runs: every target (or the ones named) for DURATION each, one after the other,
# with the same summary as the smoke test (.ci/fuzz-smoke).
#
#   fuzz/run-long.sh 2h               every target for two hours
#   fuzz/run-long.sh 30m jwt_signed   one target for thirty minutes
#
# DURATION is seconds, or a number followed by s, m or h. The corpora in fuzz/corpus/ grow as the
# runs find new inputs; crashes are left in fuzz/artifacts/<target>/ (save a real one under
# fuzz/regressions/<target>/ and replay it with `cargo +nightly fuzz run <target> <file>`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -lt 1 ]; then
  echo "usage: fuzz/run-long.sh DURATION [TARGET…]   (DURATION: 3600, 90m, 4h)" >&2
  exit 2
fi
duration="$1"
shift
case "$duration" in
  *h) seconds=$(( ${duration%h} * 3600 )) ;;
  *m) seconds=$(( ${duration%m} * 60 )) ;;
  *s) seconds="${duration%s}" ;;
  *) seconds="$duration" ;;
esac
echo "== fuzzing each target for ${seconds} s"
FUZZ_SECONDS="$seconds" FUZZ_TIMEOUT="${FUZZ_TIMEOUT:-30}" exec .ci/fuzz-smoke "$@"
