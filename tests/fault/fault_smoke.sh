#!/usr/bin/env bash
# fault_smoke.sh STEAD_FAULT STEAD NETNS_SCRIPT RUN_DIR: one short stead-fault run with
# process faults only; passes when it exits 0 and its RESULT line shows operations that
# succeeded and at least one fault injected. Exit 77 (skip) when not root.
set -euo pipefail
(($# == 4)) || { echo "usage: $0 STEAD_FAULT STEAD NETNS_SCRIPT RUN_DIR" >&2; exit 2; }
fault=$1 stead=$2 script=$3 dir=$4
if [[ $(id -u) != 0 ]] || ! command -v ip >/dev/null; then
  echo "SKIP: needs root and iproute2 (network namespaces)"
  exit 77
fi
export CLUSTER_PREFIX=frun
# Whatever happens to stead-fault (a timeout kills it), its namespaces go.
trap '"$script" down >/dev/null 2>&1 || true' EXIT
rm -rf "$dir"
status=0
out=$(timeout -s INT 150 "$fault" --seed=1 --duration=20s --members=3 --clients=8 \
  --faults=kill,stop --stead="$stead" --netns-script="$script" --out="$dir" \
  --prefix=frun --subnet=10.79.10.0/24) || status=$?
echo "$out"
((status == 0)) || { echo "FAIL: stead-fault exited $status (logs in $dir)"; exit 1; }
result=$(grep '^RESULT ' <<<"$out") || { echo "FAIL: no RESULT line"; exit 1; }
ok=$(sed -n 's/.* ops_ok=\([0-9]*\).*/\1/p' <<<"$result")
faults=$(sed -n 's/.* faults=\([^ ]*\).*/\1/p' <<<"$result")
((${ok:-0} > 0)) || { echo "FAIL: no operation succeeded"; exit 1; }
[[ $faults =~ (kill|stop):[1-9] ]] || { echo "FAIL: no fault injected ($faults)"; exit 1; }
echo "PASS: $result"
