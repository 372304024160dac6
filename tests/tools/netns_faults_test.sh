#!/usr/bin/env bash
# netns_faults_test.sh: each network fault of netns_cluster.sh does what it says, seen
# with real TCP and UDP sockets between 3 members and the host (netns_probe.py).
#
#   netns_faults_test.sh NFQ_DELAY    (the nfq_delay helper; as root)
#
# Uses CLUSTER_PREFIX fnet on 10.79.11.0/24, and brings the cluster down on exit.
# Exits 77 (skip) when not root or a tool is missing.
set -euo pipefail

skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) == 0 ]] || skip "needs root (network namespaces, iptables)"
for tool in ip iptables iptables-restore python3 setsid timeout; do
  command -v "$tool" >/dev/null || skip "no '$tool'"
done
helper=${1:-}
[[ -n $helper && -x $helper ]] ||
  skip "no nfq_delay helper (libnetfilter-queue-dev absent when it was built)"

here=$(cd "$(dirname "$0")" && pwd)
cluster=$here/netns_cluster.sh
probe=$here/netns_probe.py
export CLUSTER_PREFIX=fnet NETNS_NFQ_DELAY=$helper
unset CLUSTER_STATE_DIR
net=10.79.11
tcp_port=7000
udp_port=7001
failures=0

# A run that died before its trap left its cluster behind: remove it.
"$cluster" down 2>/dev/null
trap '"$cluster" down >/dev/null 2>&1 || true' EXIT
"$cluster" up 3 "$net.0/24" >/dev/null
for i in 0 1 2; do
  "$cluster" exec "$i" python3 "$probe" serve "$tcp_port" "$udp_port" 300 \
    </dev/null >/dev/null 2>&1 &
done

address() { if [[ $1 == host ]]; then echo "$net.1"; else echo "$net.$((10 + $1))"; fi; }

# Runs the probe from member $1 (or the host) with the rest of the arguments.
probe_from() {
  local from=$1
  shift
  if [[ $from == host ]]; then
    timeout 10 python3 "$probe" "$@"
  else
    timeout 10 "$cluster" exec "$from" python3 "$probe" "$@"
  fi
}

# The TCP echo round trip in ms from $1 to $2, or nothing when it fails within $3 s.
rtt() { probe_from "$1" tcp "$(address "$2")" "$tcp_port" "$3" 2>/dev/null || true; }

check() {
  if [[ $2 == ok ]]; then
    echo "ok: $1"
  else
    echo "FAILED: $1 ($2)"
    failures=$((failures + 1))
  fi
}
reaches() {
  local got
  got=$(rtt "$1" "$2" 5)
  if [[ -n $got ]]; then check "$1 reaches $2" ok; else check "$1 reaches $2" "no echo in 5 s"; fi
}
cut_off() {
  local got
  got=$(rtt "$1" "$2" 1)
  if [[ -z $got ]]; then check "$1 is cut from $2" ok; else check "$1 is cut from $2" "echo in $got ms"; fi
}
faults_are() {
  local got
  got=$("$cluster" faults | paste -sd, -)
  if [[ $got == "$1" ]]; then check "faults: '$1'" ok; else check "faults: '$1'" "got '$got'"; fi
}

# The servers start (up to 10 s).
for i in 0 1 2; do
  for ((attempt = 0; attempt < 50; attempt++)); do
    [[ -z $(rtt host "$i" 1) ]] || break
    sleep 0.2
  done
done

echo "--- no fault"
reaches 1 0
reaches host 0
reaches 0 2
faults_are ""

echo "--- partition 0: member 0 from everyone, both directions"
"$cluster" partition 0
"$cluster" partition 0  # idempotent
faults_are "partition 0 1,partition 0 2,partition 0 host"
cut_off 1 0
cut_off 2 0
cut_off host 0
cut_off 0 1
reaches 1 2
reaches host 1
echo "--- heal 0"
"$cluster" heal 0
faults_are ""
reaches 1 0
reaches host 0
reaches 0 2

echo "--- partition 0 host: the clients on the host only"
"$cluster" partition 0 host
cut_off host 0
reaches 1 0
reaches host 1
"$cluster" heal all

echo "--- bridge 0 1: member 2 sees both"
"$cluster" bridge 0 1
faults_are "partition 0 1"
cut_off 0 1
cut_off 1 0
reaches 2 0
reaches 2 1
reaches 0 2
reaches host 0

echo "--- cumulative, and heal I removes only member I's faults"
"$cluster" partition 2 0
faults_are "partition 0 1,partition 0 2"
cut_off 2 0
cut_off 1 0
"$cluster" heal 1
faults_are "partition 0 2"
reaches 1 0
cut_off 2 0
"$cluster" heal all
reaches 2 0

echo "--- loss"
"$cluster" loss 0 100
faults_are "loss 0 100"
cut_off 1 0
cut_off host 0
reaches 1 2
"$cluster" loss 0 0
faults_are ""
reaches 1 0
"$cluster" loss 0 100
"$cluster" heal 0
reaches host 0
"$cluster" loss 0 50
read -r _ received _ _ _ _ < <(probe_from 1 udp "$(address 0)" "$udp_port" 200 1) || true
if ((received >= 20 && received <= 180)); then
  check "loss 0 50 drops about half" ok
else
  check "loss 0 50 drops about half" "$received of 200 came back"
fi
"$cluster" heal 0

echo "--- delay"
out=$(NETNS_NFQ_DELAY="" "$cluster" delay 0 200 2>&1) || true
if [[ $out == *NETNS_NFQ_DELAY* ]]; then
  check "delay without the helper fails clearly" ok
else
  check "delay without the helper fails clearly" "'$out'"
fi
"$cluster" delay 0 200
"$cluster" delay 0 200  # idempotent
faults_are "delay 0 200 0"
for from in 1 host; do
  got=$(rtt "$from" 0 5)
  if [[ -n $got ]] && (($(printf '%.0f' "$got") >= 200)); then
    check "$from to 0 takes >= 200 ms" ok
  else
    check "$from to 0 takes >= 200 ms" "'$got' ms"
  fi
done
got=$(rtt 1 2 5)
if [[ -n $got ]] && (($(printf '%.0f' "$got") < 200)); then
  check "1 to 2 is not delayed" ok
else
  check "1 to 2 is not delayed" "'$got' ms"
fi
# A jitter larger than the gaps between packets: a netem-like jitter would reorder them.
NETNS_NFQ_SEED=7 "$cluster" delay 0 50 100
faults_are "delay 0 50 100"
helper_pid=$(cat /run/stead-netns/fnet/delay-0.pid)
got=$(tr '\0' ' ' < "/proc/$helper_pid/cmdline")
if [[ $got == *"nfq_delay 0 50 100 7 " ]]; then
  check "the helper of member 0 has queue 0 and seed 7" ok
else
  check "the helper of member 0 has queue 0 and seed 7" "'$got'"
fi
read -r _ received _ in_order _ first_ms < <(probe_from 1 udp "$(address 0)" "$udp_port" 200 2) ||
  true
if ((received == 200 && in_order == 1)) && (($(printf '%.0f' "$first_ms") >= 50)); then
  check "delay 0 50 100 keeps the order of 200 datagrams" ok
else
  check "delay 0 50 100 keeps the order of 200 datagrams" \
    "received $received, in order $in_order, first after $first_ms ms"
fi
kill -KILL "$helper_pid"
sleep 0.2
faults_are "delay 0 50 100 (helper not running)"
"$cluster" heal 0
faults_are ""
got=$(rtt 1 0 5)
if [[ -n $got ]] && (($(printf '%.0f' "$got") < 200)); then
  check "heal 0 removes the delay" ok
else
  check "heal 0 removes the delay" "'$got' ms"
fi
if for pid in $(ip netns pids fnet-0); do cat "/proc/$pid/comm" 2>/dev/null; done |
  grep -x nfq_delay >/dev/null; then
  check "heal 0 stops the helper" "nfq_delay still runs in fnet-0"
else
  check "heal 0 stops the helper" ok
fi

echo "--- heal all clears every kind"
"$cluster" partition 1 2
"$cluster" loss 2 100
"$cluster" delay 1 10
"$cluster" heal all
faults_are ""
reaches 1 2
reaches host 2

((failures == 0)) || { echo "$failures check(s) failed"; exit 1; }
echo "all checks passed"
