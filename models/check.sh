#!/usr/bin/env bash
# Model-checks each protocol model exhaustively with spin, then each of its
# broken variants, each of which must fail. Needs spin and gcc. One line per
# run; exit 0 only when every result is as expected.
set -u
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 2
status=0

# check MODEL VARIANT: VARIANT empty for the model itself.
check() {
  local model=$1 variant=$2
  local name=${model%.pml}${variant:+/$variant}
  local define=${variant:+-DBROKEN_$variant}
  rm -f pan pan.* "$model"
  cp "$here/$model" . || { echo "$name: missing"; status=2; return; }
  if ! { spin $define -a "$model" >/dev/null && gcc -O2 -DSAFETY -o pan pan.c 2>/dev/null; }; then
    echo "$name: could not build"
    status=2
    return
  fi
  local out errors states complete=yes ok want what=""
  out=$(./pan -m100000 2>&1)
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' <<<"$out")
  states=$(sed -n 's/^ *\([0-9]*\) states, stored.*/\1/p' <<<"$out")
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
    echo "$name: as expected (errors=$errors, states=$states${variant:+, $what})"
  else
    echo "$name: UNEXPECTED, wanted $want (errors=$errors, complete=$complete)"
    status=1
  fi
}

for variant in "" FLAG_RELEASE NO_MSCOUNT NO_TOMBSTONE DEAD_DROPS_ONCE DESTROY_DEAD_ONCE LOSS_KEEPS_ONCE HOME_DROPS_AT_ONCE NO_WATERMARK ONCE_HOME_NOTIFIES; do
  check release.pml "$variant"
done
for variant in "" NO_POSITION MERGED_LANES NO_LANE_END; do
  check lanes.pml "$variant"
done
for variant in "" NO_MOVED_WAIT NO_DRAIN NO_SO_WAIT NO_POOL; do
  check moves.pml "$variant"
done
for variant in "" NO_EMBARGO NO_PARK NO_CLAIM_WAIT NO_QUEUED NO_QUEUE_WAIT QUEUE_WAIT_IF_SHORTENED LATE_BLOCKED; do
  check embargo.pml "$variant"
done
for variant in "" KEEP_POOL NO_RETURNING NO_FRESH; do
  check pool.pml "$variant"
done
for variant in "" NO_MARKER NO_BEHIND; do
  check relayed.pml "$variant"
done
exit $status
