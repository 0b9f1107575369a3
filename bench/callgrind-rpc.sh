#!/bin/sh
# User-space instructions per round trip (both nodes together) of the raw
# transport ping-pong, the ping-pong with each pong on a new stream, and the
# netmsg null RPC, in `netmsg-bench rpc`'s arrangement (b), side by side
# under callgrind: each subject runs N and 3N rounds, and the difference over
# 2N cancels the setup. Instruction counts are far steadier than latencies
# on a noisy machine. Needs valgrind and a release build:
#   cargo build --release -p netmsg-bench && sh bench/callgrind-rpc.sh [N]
set -eu
bin=${NETMSG_BENCH:-target/release/netmsg-bench}
n=${1:-1000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Prints the run's instructions, and those whose source is netmsg's or the
# Mach model's own (not the library code inlined into them). The total moves
# by up to about 1 k per round trip between runs of one binary (timer and
# polling paths in tokio and quinn run as the run's pace allows); the second
# count does not, so it shows a change in netmsg's own work.
count() {
    file="$out/$1.$2"
    total=$(valgrind --tool=callgrind --callgrind-out-file="$file" "$bin" rpc-subject "$1" --rounds "$2" 2>&1 >/dev/null |
        sed -n 's/.*Collected : //p')
    own=$(callgrind_annotate --auto=no --threshold=100 "$file" 2>/dev/null |
        awk '$0 ~ /(^|[ \/])(netmsg|mach)\/src\// && $0 !~ /=>/ { gsub(",", "", $1); sum += $1 } END { print sum + 0 }')
    echo "$total $own"
}
for subject in transport fresh netmsg; do
    short=$(count "$subject" "$n")
    long=$(count "$subject" $((3 * n)))
    echo "$subject $short $long"
done | awk -v n="$n" '
    {
        order[NR] = $1
        count[$1] = ($4 - $2) / (2 * n)
        own[$1] = ($5 - $3) / (2 * n)
    }
    END {
        for (i = 1; i <= NR; i++) {
            s = order[i]
            printf "%-10s %9d instructions per round trip %6.2fx (netmsg and mach source: %d)\n", s, count[s], count[s] / count["transport"], own[s]
        }
    }'
