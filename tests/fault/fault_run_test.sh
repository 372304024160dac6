#!/usr/bin/env bash
# fault_run_test.sh EXPECT RUN_DIR STEAD_FAULT [stead-fault flags...]: one stead-fault
# run as a test. EXPECT is
#   pass       the run exits 0: members converged, every checker ok, operations
#              succeeded, at least one fault was injected and every fault healed in
#              time;
#   violation  the run exits 1 with a checker's violation (a planted bug was caught).
# The namespaces are taken down whatever happens. Exit 77 (skip) when not root.
set -euo pipefail
(($# >= 3)) || { echo "usage: $0 pass|violation RUN_DIR STEAD_FAULT [flags...]" >&2; exit 2; }
expect=$1 dir=$2 fault=$3
shift 3
[[ $expect == pass || $expect == violation ]] || { echo "EXPECT is pass or violation" >&2; exit 2; }
if [[ $(id -u) != 0 ]] || ! command -v ip >/dev/null || ! command -v iptables >/dev/null; then
  echo "SKIP: needs root, iproute2 and iptables (network namespaces)"
  exit 77
fi
script=
prefix=frun
seconds=30
for arg in "$@"; do
  case $arg in
    --netns-script=*) script=${arg#*=} ;;
    --prefix=*) prefix=${arg#*=} ;;
    --duration=*s) [[ ${arg#*=} =~ ^([0-9]+)s$ ]] && seconds=${BASH_REMATCH[1]} ;;
  esac
done
[[ -n $script ]] || { echo "--netns-script is required" >&2; exit 2; }
# Whatever happens to stead-fault (a timeout interrupts it), its namespaces go.
trap 'CLUSTER_PREFIX=$prefix "$script" down >/dev/null 2>&1 || true' EXIT
rm -rf "$dir"
status=0
# The run, then bring-up, convergence and checking: bounded well past all of them.
out=$(timeout -s INT $((seconds + 180)) "$fault" --out="$dir" "$@") || status=$?
echo "$out"
result=$(grep '^RESULT ' <<<"$out") || { echo "FAIL: no RESULT line (exit $status, logs in $dir)"; exit 1; }
if [[ $expect == violation ]]; then
  ((status == 1)) || { echo "FAIL: the planted bug went unseen (exit $status, logs in $dir)"; exit 1; }
  [[ $result =~ =FAILED ]] || { echo "FAIL: no checker failed: $result"; exit 1; }
  echo "PASS: caught: $(grep '^CHECKS ' <<<"$out" | cut -c1-300)"
  exit 0
fi
((status == 0)) || { echo "FAIL: stead-fault exited $status (logs in $dir)"; exit 1; }
ok=$(sed -n 's/.* ops_ok=\([0-9]*\).*/\1/p' <<<"$result")
faults=$(sed -n 's/.* faults=\([^ ]*\).*/\1/p' <<<"$result")
((${ok:-0} > 0)) || { echo "FAIL: no operation succeeded"; exit 1; }
[[ $faults =~ :[1-9] ]] || { echo "FAIL: no fault injected ($faults)"; exit 1; }
[[ $result =~ converged=1 ]] || { echo "FAIL: members did not converge"; exit 1; }
[[ ! $result =~ =FAILED ]] || { echo "FAIL: a checker failed: $result"; exit 1; }
if grep ' FAILED' "$dir/faults.log"; then echo "FAIL: a fault was not injected or healed"; exit 1; fi
echo "PASS: $result"
