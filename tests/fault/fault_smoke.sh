#!/usr/bin/env bash
# fault_smoke.sh STEAD_FAULT STEAD NETNS_SCRIPT RUN_DIR [FAULTS [FLAG...]]: one short
# stead-fault run with the kinds FAULTS (default kill,stop: process faults only) and the
# extra stead-fault flags; passes when it exits 0, its RESULT line shows operations that
# succeeded and at least one fault of FAULTS injected, and no heal failed. Exit 77
# (skip) when not root. FAULT_SMOKE_PREFIX and FAULT_SMOKE_SUBNET override the namespaces
# (default frun on 10.79.10.0/24).
set -euo pipefail
(($# >= 4)) || { echo "usage: $0 STEAD_FAULT STEAD NETNS_SCRIPT RUN_DIR [FAULTS [FLAG...]]" >&2; exit 2; }
fault=$1 stead=$2 script=$3 dir=$4 kinds=${5:-kill,stop}
shift $(($# < 5 ? $# : 5))
if [[ $(id -u) != 0 ]] || ! command -v ip >/dev/null; then
  echo "SKIP: needs root and iproute2 (network namespaces)"
  exit 77
fi
prefix=${FAULT_SMOKE_PREFIX:-frun} subnet=${FAULT_SMOKE_SUBNET:-10.79.10.0/24}
export CLUSTER_PREFIX=$prefix
# Whatever happens to stead-fault (a timeout kills it), its namespaces go.
trap '"$script" down >/dev/null 2>&1 || true' EXIT
rm -rf "$dir"
status=0
out=$(timeout -s INT 150 "$fault" --seed=1 --duration=20s --members=3 --clients=8 \
  --faults="$kinds" --stead="$stead" --netns-script="$script" --out="$dir" \
  --prefix="$prefix" --subnet="$subnet" "$@") || status=$?
echo "$out"
((status == 0)) || { echo "FAIL: stead-fault exited $status (logs in $dir)"; exit 1; }
result=$(grep '^RESULT ' <<<"$out") || { echo "FAIL: no RESULT line"; exit 1; }
ok=$(sed -n 's/.* ops_ok=\([0-9]*\).*/\1/p' <<<"$result")
faults=$(sed -n 's/.* faults=\([^ ]*\).*/\1/p' <<<"$result")
((${ok:-0} > 0)) || { echo "FAIL: no operation succeeded"; exit 1; }
[[ $faults =~ (^|,)(${kinds//,/|}):[1-9] ]] || { echo "FAIL: no fault injected ($faults)"; exit 1; }
if grep ' heal .* FAILED' "$dir/faults.log"; then echo "FAIL: a heal failed"; exit 1; fi
echo "PASS: $result"
