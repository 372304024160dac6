#!/usr/bin/env bash
# netns_cluster.sh: the pods of a StatefulSet as network namespaces on this host, named
# and addressed as behind a headless Service; the pod network of the StatefulSet
# emulation (tests/k8s/k8s_emulator.py). Needs root, iproute2, util-linux (unshare) and
# hostname; the network faults iptables, and for delay the nfq_delay helper (built
# from tests/tools/nfq_delay.c with libnetfilter_queue).
#
#   netns_cluster.sh up N SUBNET    members 0..N-1 on a bridge; SUBNET is a.b.c.0/24,
#                                   the host side of the bridge a.b.c.1, member I
#                                   a.b.c.(10+I)
#   netns_cluster.sh exec I CMD...  runs CMD in member I with the pod's hostname and
#                                   hosts file and POD_NAME, POD_NAMESPACE, POD_IP,
#                                   POD_FQDN set; CMD replaces this script, so a caller's
#                                   child PID is CMD's
#   netns_cluster.sh ip I           prints member I's address
#   netns_cluster.sh hosts          prints a hosts file that names every member
#   netns_cluster.sh down           kills what runs in the members and removes the
#                                   namespaces, links, route and files (nothing up: a
#                                   no-op)
#
# Network faults (iptables in the members' namespaces; each adds to those in force,
# idempotently, until heal; "host" is the host side of the bridge, where clients run):
#   partition I [J|host ...]        drops every packet between member I and each one
#                                   named (default: every other member and the host),
#                                   both directions
#   bridge A B                      partition A B: cuts A from B only, so that any third
#                                   member still reaches both
#   loss I PCT                      drops PCT% (0..100) of the packets arriving at member
#                                   I; 0 removes the fault
#   delay I MS [JITTER_MS]          holds each packet arriving at member I for MS plus a
#                                   random 0..JITTER_MS ms, in order (no reordering), by
#                                   the nfq_delay helper named by NETNS_NFQ_DELAY, which
#                                   runs in the member on NFQUEUE queue I; MS 0 removes it.
#                                   The jitter is drawn from NETNS_NFQ_SEED + I when that
#                                   is set (a run's faults replay by seed)
#   heal I|all                      removes every fault of member I (partitions with it
#                                   on either side, loss, delay), or of all members
#   faults                          prints the faults in force, one a line, as
#                                   "partition I J|host", "loss I PCT",
#                                   "delay I MS JITTER_MS"
#
# Names come from the environment, as the StatefulSet has them (defaults in brackets):
#   CLUSTER_STS [kv]  CLUSTER_SVC [kv-headless]  CLUSTER_NAMESPACE [default]
#   CLUSTER_DOMAIN [cluster.local]  CLUSTER_PREFIX [$CLUSTER_STS]
#   CLUSTER_STATE_DIR [/run/stead-netns/$CLUSTER_PREFIX]
# Member I is namespace $CLUSTER_PREFIX-I, and its names resolve in every member and in
# the hosts file: STS-I.SVC.NAMESPACE.svc.DOMAIN and its shorter forms (.svc,
# .NAMESPACE, SVC), and the Service SVC.NAMESPACE.svc.DOMAIN (and shorter) to every
# member. Clusters with different prefixes and subnets run side by side.
set -euo pipefail

sts=${CLUSTER_STS:-kv}
svc=${CLUSTER_SVC:-kv-headless}
namespace=${CLUSTER_NAMESPACE:-default}
domain=${CLUSTER_DOMAIN:-cluster.local}
prefix=${CLUSTER_PREFIX:-$sts}
state=${CLUSTER_STATE_DIR:-/run/stead-netns/$prefix}

fail() { echo "netns_cluster: $*" >&2; exit 1; }

[[ $prefix =~ ^[a-z0-9][a-z0-9-]*$ ]] || fail "CLUSTER_PREFIX '$prefix' is not [a-z0-9-]+"
# Link names have at most 15 characters.
link_prefix=${prefix:0:8}
bridge=$link_prefix-br

netns_of() { echo "$prefix-$1"; }
host_veth() { echo "$link_prefix-h$1"; }
address_of() { echo "$net.$((10 + $1))"; }
pod_of() { echo "$sts-$1"; }
fqdn_of() { echo "$sts-$1.$svc.$namespace.svc.$domain"; }

need_root() { [[ $(id -u) == 0 ]] || fail "needs root"; }

# Sets members, net (a.b.c) and subnet from the state of the cluster that is up.
load() {
  [[ -f $state/cluster ]] || fail "no cluster '$prefix' is up (netns_cluster.sh up N SUBNET)"
  # shellcheck source=/dev/null
  source "$state/cluster"
}

member_index() {
  [[ ${1:-} =~ ^[0-9]+$ ]] && (($1 < members)) || fail "no member '${1:-}' (0..$((members - 1)))"
}

# The hosts file of member $1, or of the host side for "host" (no pod name of its own).
hosts_file() {
  local self=$1 i names
  echo "127.0.0.1 localhost"
  echo "::1 localhost ip6-localhost ip6-loopback"
  for ((i = 0; i < members; i++)); do
    names="$(fqdn_of "$i") $sts-$i.$svc.$namespace.svc $sts-$i.$svc.$namespace $sts-$i.$svc"
    [[ $self == "$i" ]] && names+=" $(pod_of "$i")"
    echo "$(address_of "$i") $names"
  done
  for ((i = 0; i < members; i++)); do
    echo "$(address_of "$i") $svc.$namespace.svc.$domain $svc.$namespace.svc $svc.$namespace $svc"
  done
}

# (grep reads all its input: with pipefail, a `grep -q` that stops early can fail the
# writer of the pipe, and so the test.)
netns_exists() { ip netns list | awk '{print $1}' | grep -x "$1" >/dev/null; }

up() {
  need_root
  command -v ip >/dev/null || fail "no 'ip' command (apt-get install iproute2)"
  local count=${1:-} i ns
  [[ $count =~ ^[0-9]+$ ]] && ((count >= 1 && count <= 200)) ||
    fail "usage: up N SUBNET (N in 1..200)"
  [[ ${2:-} =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] || fail "usage: up N SUBNET (SUBNET a.b.c.0/24)"
  members=$count net=${BASH_REMATCH[1]} subnet=$2
  [[ ! -e $state/cluster ]] || fail "cluster '$prefix' is already up ($state); run down first"
  ! ip -4 -o addr show | grep " inet $net\." >/dev/null || fail "$subnet overlaps an address here"
  ! ip -4 route show | awk '{print $1}' | grep -x "$subnet" >/dev/null ||
    fail "$subnet is routed already"
  ! ip link show "$bridge" >/dev/null 2>&1 || fail "link $bridge exists already"
  for ((i = 0; i < members; i++)); do
    ! netns_exists "$(netns_of "$i")" || fail "namespace $(netns_of "$i") exists already"
  done

  # The state first: a failure from here on is undone by down, which reads it.
  mkdir -p "$state"
  printf 'members=%s\nnet=%s\nsubnet=%s\n' "$members" "$net" "$subnet" > "$state/cluster"
  trap 'echo "netns_cluster: up failed; removing what it made" >&2; down >/dev/null 2>&1' ERR

  ip link add "$bridge" type bridge
  ip addr add "$net.1/24" dev "$bridge"
  ip link set "$bridge" up
  # Should the bridge go, the subnet stays unreachable rather than routed off the host.
  ip route add unreachable "$subnet" metric 4095
  for ((i = 0; i < members; i++)); do
    ns=$(netns_of "$i")
    ip netns add "$ns"
    ip link add "$(host_veth "$i")" type veth peer name eth0 netns "$ns"
    ip link set "$(host_veth "$i")" master "$bridge" up
    ip -n "$ns" addr add "$(address_of "$i")/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    # `ip netns exec` mounts the files of /etc/netns/NS over those of /etc.
    mkdir -p "/etc/netns/$ns"
    hosts_file "$i" > "/etc/netns/$ns/hosts"
  done
  hosts_file host > "$state/hosts"
  trap - ERR
  for ((i = 0; i < members; i++)); do
    echo "$(netns_of "$i") $(address_of "$i") $(fqdn_of "$i")"
  done
}

exec_in() {
  load
  need_root
  local i=${1:-}
  member_index "$i"
  shift
  (($# > 0)) || fail "usage: exec I CMD..."
  local pod
  pod=$(pod_of "$i")
  # A UTS namespace of its own, so that the hostname is the pod's as in Kubernetes.
  # shellcheck disable=SC2016  # $HOSTNAME and $@ expand in that shell
  exec ip netns exec "$(netns_of "$i")" unshare --uts -- \
    env HOSTNAME="$pod" POD_NAME="$pod" POD_NAMESPACE="$namespace" \
    POD_IP="$(address_of "$i")" POD_FQDN="$(fqdn_of "$i")" \
    sh -c 'hostname "$HOSTNAME" && exec "$@"' sh "$@"
}

# Signals every process in member $1's namespace.
signal_member() {
  ip netns pids "$(netns_of "$1")" 2>/dev/null | xargs -r kill -s "$2" 2>/dev/null || true
}

down() {
  need_root
  if [[ ! -f $state/cluster ]]; then
    echo "netns_cluster: nothing of '$prefix' to remove" >&2
    return 0
  fi
  load
  local i attempt left
  for ((i = 0; i < members; i++)); do signal_member "$i" TERM; done
  # Up to 2 s for a graceful exit, then SIGKILL.
  for ((attempt = 0; attempt < 40; attempt++)); do
    left=0
    for ((i = 0; i < members; i++)); do
      [[ -z $(ip netns pids "$(netns_of "$i")" 2>/dev/null) ]] || left=1
    done
    ((left)) || break
    sleep 0.05
  done
  for ((i = 0; i < members; i++)); do signal_member "$i" KILL; done
  for ((i = 0; i < members; i++)); do
    ip link del "$(host_veth "$i")" 2>/dev/null || true
    ip netns del "$(netns_of "$i")" 2>/dev/null || true
    rm -rf "/etc/netns/$(netns_of "$i")"
  done
  rmdir /etc/netns 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
  ip route del unreachable "$subnet" metric 4095 2>/dev/null || true
  rm -rf "$state"
  rmdir "$(dirname "$state")" 2>/dev/null || true
  echo "netns_cluster: cluster '$prefix' removed" >&2
}

# Network faults. Those in force are the lines of $state/faults, in the form `faults`
# prints. Each command rewrites that file, then rebuilds from it the chains stead-in
# and stead-out of every member, which INPUT and OUTPUT jump to, each with one
# iptables-restore (atomic: no moment without the faults that stay). Only eth0 is
# filtered, so a member still reaches itself. Drops come before the NFQUEUE rule: a
# packet the helper lets go leaves the chain accepted.

fault_setup() {
  load
  need_root
  command -v iptables-restore >/dev/null || fail "no 'iptables-restore' (apt-get install iptables)"
}

fault_lines() { if [[ -f $state/faults ]]; then cat "$state/faults"; fi; }

# Replaces the faults with the lines on stdin, each once.
save_faults() {
  sort -u > "$state/faults.new"
  mv "$state/faults.new" "$state/faults"
}

# A member index or "host" (the bridge's address, where the host's clients come from).
peer_check() { [[ ${1:-} == host ]] || member_index "${1:-}"; }
peer_address() { if [[ $1 == host ]]; then echo "$net.1"; else address_of "$1"; fi; }

# The partition line of two peers: members in increasing order, the host last.
partition_line() {
  if [[ $2 == host ]] || (($1 < $2)); then echo "partition $1 $2"; else echo "partition $2 $1"; fi
}

apply_member() {
  local m=$1 kind a b peer drops="" loss="" queue="" ns
  ns=$(netns_of "$m")
  while read -r kind a b _; do
    case $kind in
      partition)
        peer=""
        [[ $a == "$m" ]] && peer=$b
        [[ $b == "$m" ]] && peer=$a
        [[ -n $peer ]] || continue
        peer=$(peer_address "$peer")
        drops+="-A stead-in -i eth0 -s $peer -j DROP"$'\n'
        drops+="-A stead-out -o eth0 -d $peer -j DROP"$'\n'
        ;;
      loss)
        [[ $a == "$m" ]] || continue
        if ((b >= 100)); then
          loss="-A stead-in -i eth0 -j DROP"$'\n'
        else
          loss="-A stead-in -i eth0 -m statistic --mode random"
          loss+=" --probability $(printf '0.%02d' "$b") -j DROP"$'\n'
        fi
        ;;
      delay)
        [[ $a == "$m" ]] || continue
        # Bypass: should the helper die, packets pass undelayed rather than vanish.
        queue="-A stead-in -i eth0 -j NFQUEUE --queue-num $m --queue-bypass"$'\n'
        ;;
    esac
  done < <(fault_lines)
  printf '*filter\n:stead-in - [0:0]\n:stead-out - [0:0]\n%s%s%sCOMMIT\n' \
    "$drops" "$loss" "$queue" | ip netns exec "$ns" iptables-restore -w --noflush ||
    fail "iptables-restore failed in $ns"
  ip netns exec "$ns" iptables -w -C INPUT -j stead-in 2>/dev/null ||
    ip netns exec "$ns" iptables -w -I INPUT 1 -j stead-in
  ip netns exec "$ns" iptables -w -C OUTPUT -j stead-out 2>/dev/null ||
    ip netns exec "$ns" iptables -w -I OUTPUT 1 -j stead-out
}

apply_all() {
  local i
  for ((i = 0; i < members; i++)); do apply_member "$i"; done
}

# The delay helper of member $1, if it runs (a PID reused by another process is not it).
delay_pid() {
  local file=$state/delay-$1.pid pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep nfq_delay >/dev/null &&
    echo "$pid"
}

stop_delay() {
  local pid attempt
  if pid=$(delay_pid "$1"); then
    # TERM: it lets go of the packets it holds before exiting.
    kill -TERM "$pid" 2>/dev/null || true
    for ((attempt = 0; attempt < 40; attempt++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$state/delay-$1.pid" "$state/delay-$1.log"
}

start_delay() {
  local i=$1 helper=${NETNS_NFQ_DELAY:-} log=$state/delay-$1.log pid attempt
  [[ -n $helper ]] ||
    fail "delay needs the nfq_delay helper: set NETNS_NFQ_DELAY to its path" \
      "(build/<preset>/tests/tools/nfq_delay)"
  [[ -x $helper ]] || fail "NETNS_NFQ_DELAY '$helper' is not an executable"
  helper=$(realpath "$helper")
  : > "$log"
  # Its own session, so it outlives this script and the caller's process group; down
  # kills it with everything else in the member.
  local seed=()
  if [[ -n ${NETNS_NFQ_SEED:-} ]]; then
    [[ $NETNS_NFQ_SEED =~ ^[0-9]+$ ]] || fail "NETNS_NFQ_SEED '$NETNS_NFQ_SEED' is not a number"
    seed=($(((10#$NETNS_NFQ_SEED + i) % 2147483648)))
  fi
  setsid ip netns exec "$(netns_of "$i")" "$helper" "$i" "$2" "$3" "${seed[@]}" \
    </dev/null >"$log" 2>&1 &
  pid=$!
  echo "$pid" > "$state/delay-$i.pid"
  # The NFQUEUE rule only once the queue is bound (up to 5 s).
  for ((attempt = 0; attempt < 100; attempt++)); do
    ! grep -x ready "$log" >/dev/null || return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$state/delay-$i.pid"
  fail "nfq_delay for member $i did not start: $(cat "$log")"
}

# The faults in force; a delay whose helper died (its packets now pass undelayed) says so.
faults() {
  load
  local kind a rest
  while read -r kind a rest; do
    if [[ $kind == delay ]] && ! delay_pid "$a" >/dev/null; then
      echo "$kind $a $rest (helper not running)"
    else
      echo "$kind $a $rest"
    fi
  done < <(fault_lines)
}

partition() {
  fault_setup
  local i=${1:-} peer peers lines=() j
  member_index "$i"
  shift
  peers=("$@")
  if ((${#peers[@]} == 0)); then
    for ((j = 0; j < members; j++)); do ((j == i)) || peers+=("$j"); done
    peers+=(host)
  fi
  for peer in "${peers[@]}"; do
    peer_check "$peer"
    [[ $peer != "$i" ]] || fail "member $i cannot be cut from itself"
    lines+=("$(partition_line "$i" "$peer")")
  done
  { fault_lines; printf '%s\n' "${lines[@]}"; } | save_faults
  apply_all
}

loss() {
  fault_setup
  local i=${1:-} pct=${2:-}
  member_index "$i"
  [[ $pct =~ ^[0-9]+$ ]] && ((10#$pct <= 100)) || fail "usage: loss I PCT (PCT in 0..100)"
  {
    fault_lines | awk -v m="$i" '!($1 == "loss" && $2 == m)'
    ((pct == 0)) || echo "loss $i $((10#$pct))"
  } | save_faults
  apply_all
}

delay() {
  fault_setup
  local i=${1:-} ms=${2:-} jitter=${3:-0} line
  member_index "$i"
  [[ $ms =~ ^[0-9]+$ && $jitter =~ ^[0-9]+$ ]] && ((10#$ms <= 3600000 && 10#$jitter <= 3600000)) ||
    fail "usage: delay I MS [JITTER_MS] (each in 0..3600000)"
  line="delay $i $((10#$ms)) $((10#$jitter))"
  # The same delay again: the helper in force stays.
  if fault_lines | grep -x "$line" >/dev/null && delay_pid "$i" >/dev/null; then return 0; fi
  # First the rule goes, then the helper: no packet is queued with no one to take it.
  fault_lines | awk -v m="$i" '!($1 == "delay" && $2 == m)' | save_faults
  apply_member "$i"
  stop_delay "$i"
  ((10#$ms + 10#$jitter > 0)) || return 0
  start_delay "$i" "$ms" "$jitter"
  { fault_lines; echo "$line"; } | save_faults
  apply_member "$i"
}

heal() {
  fault_setup
  local target=${1:-} i
  [[ -n $target ]] || fail "usage: heal I|all"
  if [[ $target == all ]]; then
    : | save_faults
  else
    member_index "$target"
    fault_lines | awk -v m="$target" \
      '!(($1 == "partition" && ($2 == m || $3 == m)) || (($1 == "loss" || $1 == "delay") && $2 == m))' |
      save_faults
  fi
  apply_all
  for ((i = 0; i < members; i++)); do
    if [[ $target == all || $target == "$i" ]]; then stop_delay "$i"; fi
  done
}

command=${1:-}
shift || true
case $command in
  up) up "$@" ;;
  exec) exec_in "$@" ;;
  ip) load; member_index "${1:-}"; address_of "$1" ;;
  hosts) load; cat "$state/hosts" ;;
  down) down ;;
  partition) partition "$@" ;;
  bridge)
    (($# == 2)) || fail "usage: bridge A B"
    partition "$@"
    ;;
  heal) heal "$@" ;;
  delay) delay "$@" ;;
  loss) loss "$@" ;;
  faults) faults ;;
  help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) fail "unknown command '$command' (--help lists them)" ;;
esac
