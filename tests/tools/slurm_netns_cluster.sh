#!/usr/bin/env bash
# A real, small Slurm cluster on this machine for tests: slurmctld and N slurmd "nodes", each in
# its own network namespace, joined through a bridge in a hub namespace by veth pairs. Every
# address (10.77.0.0/24) exists only inside those namespaces; nothing is routed anywhere else.
# munged runs privately (own key, socket and state under DIR). Needs root, iproute2, slurm-wlm
# and munge (tools/install_deps.sh installs them).
#
#   slurm_netns_cluster.sh up DIR NODES CPUS   start; writes DIR/slurm.conf and DIR/env
#   slurm_netns_cluster.sh down DIR            stop every daemon and delete the namespaces
#   slurm_netns_cluster.sh exec DIR CMD...     run CMD in the controller's namespace with SLURM_CONF
#
# Namespaces are named after DIR's basename (tsl<hash>-{hub,ctl,nK}), so two clusters can coexist.
set -euo pipefail
cmd="$1"; dir="$2"
tag="tsl$(echo -n "$dir" | md5sum | cut -c1-6)"
ns() { echo "$tag-$1"; }
# nsenter, not `ip netns exec`: the latter remounts /sys, which hides /sys/fs/cgroup from slurmd.
in_ns() { local n="$1"; shift; nsenter --net="/run/netns/$(ns "$n")" "$@"; }

down() {
  for f in "$dir"/*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f" 2>/dev/null || true)"
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for f in "$dir"/*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  # Daemons of this cluster whose pid file was lost (they all name DIR on their command line).
  for p in $(pgrep -f -- "$dir/" 2>/dev/null || true); do
    [ "$p" != "$$" ] && kill -9 "$p" 2>/dev/null || true
  done
  for n in $(ip netns list | awk '{print $1}' | grep "^$tag-" || true); do
    # Processes still inside (job steps) go with their namespace.
    for p in $(ip netns pids "$n" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
}

case "$cmd" in
  down) down; exit 0 ;;
  exec)
    shift 2
    exec nsenter --net="/run/netns/$(ns ctl)" env SLURM_CONF="$dir/slurm.conf" "$@" ;;
  up) ;;
  *) echo "usage: $0 up|down|exec DIR ..." >&2; exit 2 ;;
esac

nodes="${3:-2}"; cpus="${4:-2}"
down
mkdir -p "$dir"/{state,log,munge}
chmod 755 "$dir/munge"  # munged wants its socket directory searchable by all

# Network: hub namespace with a bridge; ctl = 10.77.0.1, node K = 10.77.0.(10+K).
ip netns add "$(ns hub)"
ip -n "$(ns hub)" link add br0 type bridge
ip -n "$(ns hub)" link set br0 up
attach() {  # name address
  local name="$1" addr="$2"
  ip netns add "$(ns "$name")"
  ip -n "$(ns "$name")" link set lo up
  ip link add "$tag$name" type veth peer name eth0 netns "$(ns "$name")"
  ip link set "$tag$name" netns "$(ns hub)"
  ip -n "$(ns hub)" link set "$tag$name" master br0 up
  ip -n "$(ns "$name")" addr add "$addr/24" dev eth0
  ip -n "$(ns "$name")" link set eth0 up
}
attach ctl 10.77.0.1
for k in $(seq 1 "$nodes"); do attach "n$k" "10.77.0.$((10 + k))"; done

# munge: a private daemon (the socket is a file, so every namespace reaches it).
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"

host="$(hostname -s)"
{
  echo "ClusterName=tidaltest"
  echo "SlurmctldHost=$host(10.77.0.1)"
  echo "SlurmUser=root"
  echo "SlurmdUser=root"
  echo "AuthType=auth/munge"
  echo "AuthInfo=socket=$dir/munge/munge.socket"
  echo "CredType=cred/munge"
  echo "StateSaveLocation=$dir/state"
  echo "SlurmdSpoolDir=$dir/spool-%n"
  echo "SlurmctldPidFile=$dir/slurmctld.pid"
  echo "SlurmdPidFile=$dir/slurmd-%n.pid"
  echo "SlurmctldLogFile=$dir/log/slurmctld.log"
  echo "SlurmdLogFile=$dir/log/slurmd-%n.log"
  echo "ProctrackType=proctrack/linuxproc"
  echo "TaskPlugin=task/none"
  echo "JobAcctGatherType=jobacct_gather/none"
  echo "AccountingStorageType=accounting_storage/none"
  echo "SchedulerType=sched/backfill"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_CPU"
  echo "MpiDefault=none"
  echo "ReturnToService=2"
  echo "SlurmdTimeout=30"
  echo "InactiveLimit=0"
  echo "KillWait=2"
  echo "MinJobAge=60"
  # The nodes share this machine's cores: take the CPU counts below as given instead of draining
  # a node whose slurmd sees fewer cores than configured ("Low socket*core*thread count").
  echo "SlurmdParameters=config_overrides"
  for k in $(seq 1 "$nodes"); do
    echo "NodeName=n$k NodeAddr=10.77.0.$((10 + k)) CPUs=$cpus State=UNKNOWN"
  done
  echo "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
} > "$dir/slurm.conf"
echo "export SLURM_CONF=$dir/slurm.conf" > "$dir/env"

in_ns ctl slurmctld -f "$dir/slurm.conf"
for k in $(seq 1 "$nodes"); do
  mkdir -p "$dir/spool-n$k"
  in_ns "n$k" slurmd -f "$dir/slurm.conf" -N "n$k"
done

# Wait (bounded) until every node is idle.
for i in $(seq 1 60); do
  idle="$(in_ns ctl env SLURM_CONF="$dir/slurm.conf" sinfo -h -N -o '%N %t' 2>/dev/null | grep -c idle || true)"
  [ "$idle" -ge "$nodes" ] && { echo "slurm test cluster up: $nodes nodes x $cpus CPUs ($tag)"; exit 0; }
  sleep 0.5
done
echo "slurm test cluster did not come up; logs in $dir/log" >&2
in_ns ctl env SLURM_CONF="$dir/slurm.conf" sinfo -N >&2 || true
exit 1
