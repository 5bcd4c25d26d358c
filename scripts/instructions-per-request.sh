#!/usr/bin/env bash
# Instructions per request, counted by callgrind, for the benches that take a loop
# spec in an environment variable (`RATELIMIT_LAYER_LOOP`, `GATEWAY_LOOP`).
#
#   scripts/instructions-per-request.sh VAR=NAME BINARY [RUNS] [VALGRIND ARGS...]
#
# Each run counts BINARY with VAR=NAME:$N1 and VAR=NAME:$N2 (defaults 20000 and 60000)
# and prints (count2 - count1) / (N2 - N1); then the median. One run is not a
# measurement: random hash keys and the heap move a count by a few per cent.
# Examples (run from the directory the bench expects):
#   scripts/instructions-per-request.sh RATELIMIT_LAYER_LOOP=palisade target/release/deps/ratelimit_layer-… 9
#   N1=2000 N2=6000 scripts/instructions-per-request.sh GATEWAY_LOOP=gateway <load bench> 5 \
#       --toggle-collect='load::in_process_loop*'
set -euo pipefail
spec=$1 binary=$2 runs=${3:-5}
shift $(( $# < 3 ? $# : 3 ))
var=${spec%%=*} name=${spec#*=}
n1=${N1:-20000} n2=${N2:-60000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
    local n=$1
    shift
    env "$var=$name:$n" valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$@" "$binary" \
        >/dev/null 2>&1
    sed -n 's/^totals: //p' "$out/cg"
}
results=()
for _ in $(seq "$runs"); do
    a=$(count "$n1" "$@")
    b=$(count "$n2" "$@")
    results+=("$(( (b - a) / (n2 - n1) ))")
done
sorted=$(printf '%s\n' "${results[@]}" | sort -n)
echo "$name: $(echo $sorted)"
echo "$name median: $(echo "$sorted" | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}')"
