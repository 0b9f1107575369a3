#!/bin/sh
# User-space instructions per round trip (both nodes together) of the raw
# transport ping-pong, the ping-pong with each pong on a new stream, and the
# netmsg null RPC, in `netmsg-bench rpc`'s arrangement (b), side by side
# under callgrind: each subject runs N and 3N rounds, and the difference over
# 2N cancels the setup. Instruction counts are stable on a noisy machine
# where latencies are not. Needs valgrind and a release build:
#   cargo build --release -p netmsg-bench && sh bench/callgrind-rpc.sh [N]
set -eu
bin=${NETMSG_BENCH:-target/release/netmsg-bench}
n=${1:-1000}
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" rpc-subject "$1" --rounds "$2" 2>&1 >/dev/null |
        sed -n 's/.*Collected : //p'
}
for subject in transport fresh netmsg; do
    short=$(count "$subject" "$n")
    long=$(count "$subject" $((3 * n)))
    echo "$subject $(((long - short) / (2 * n)))"
done | awk '
    { count[$1] = $2; order[NR] = $1 }
    END {
        for (i = 1; i <= NR; i++)
            printf "%-10s %9d instructions per round trip %6.2fx\n", order[i], count[order[i]], count[order[i]] / count["transport"]
    }'
