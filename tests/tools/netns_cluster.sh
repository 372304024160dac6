#!/usr/bin/env bash
# netns_cluster.sh: the pods of a StatefulSet as network namespaces on this host, named
# and addressed as behind a headless Service; the pod network of the StatefulSet
# emulation (tests/k8s/k8s_emulator.py). Needs root, iproute2, util-linux (unshare) and
# hostname.
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

command=${1:-}
shift || true
case $command in
  up) up "$@" ;;
  exec) exec_in "$@" ;;
  ip) load; member_index "${1:-}"; address_of "$1" ;;
  hosts) load; cat "$state/hosts" ;;
  down) down ;;
  help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) fail "unknown command '$command' (--help lists them)" ;;
esac
