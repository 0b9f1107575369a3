#!/usr/bin/env bash
# Model-checks release.pml exhaustively with spin, then each broken variant,
# each of which must fail. Needs spin and gcc. One line per model; exit 0 only
# when every result is as expected.
set -u
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/release.pml" "$work/" && cd "$work" || exit 2
status=0
for variant in "" FLAG_RELEASE NO_MSCOUNT NO_TOMBSTONE DEAD_DROPS_ONCE DESTROY_DEAD_ONCE LOSS_KEEPS_ONCE HOME_DROPS_AT_ONCE NO_WATERMARK; do
  name=${variant:-release}
  define=${variant:+-DBROKEN_$variant}
  rm -f pan pan.*
  if ! { spin $define -a release.pml >/dev/null && gcc -O2 -DSAFETY -o pan pan.c 2>/dev/null; }; then
    echo "$name: could not build"
    status=2
    continue
  fi
  out=$(./pan -m100000 2>&1)
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' <<<"$out")
  states=$(sed -n 's/^ *\([0-9]*\) states, stored.*/\1/p' <<<"$out")
  complete=yes
  grep -q "max search depth too small\|search not completed" <<<"$out" && complete=no
  if [ -z "$variant" ]; then
    ok=$([ "$errors" = 0 ] && [ $complete = yes ] && echo yes)
    want="no errors over the full state space"
  else
    ok=$([ "${errors:-0}" -ge 1 ] && echo yes)
    want="a violation"
    [ -n "$ok" ] && what=$(grep -m1 -o "assertion violated.*\|invalid end state.*" <<<"$out")
  fi
  if [ -n "$ok" ]; then
    echo "$name: as expected (errors=$errors, states=$states${variant:+, ${what:-}})"
  else
    echo "$name: UNEXPECTED, wanted $want (errors=$errors, complete=$complete)"
    status=1
  fi
done
exit $status
