#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for testing `ebda sweep slurm`
# against the real scheduler (Debian's slurm-wlm + munge; run as root).
#
#   scripts/slurm-local.sh install      # apt-get install slurm-wlm munge (if missing)
#   scripts/slurm-local.sh start DIR    # munged, slurmctld, slurmd; config and state in DIR
#   scripts/slurm-local.sh stop DIR
#
# After `start`, point the client commands at the cluster with
#   export SLURM_CONF=DIR/slurm.conf
# The node has this machine's CPUs and memory and one partition, `debug`.
set -euo pipefail

cmd=${1:?usage: slurm-local.sh install|start DIR|stop DIR}

case "$cmd" in
install)
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q slurm-wlm munge >/dev/null
  fi
  slurmctld -V
  ;;
start)
  dir=$(mkdir -p "${2:?start needs a directory}" && cd "$2" && pwd)
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p "$dir/state" "$dir/spool" /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
  fi
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged 2>/dev/null || /usr/sbin/munged --force
  fi
  # Ports above the defaults: a machine's own SLURM keeps 6817/6818.
  cat > "$dir/slurm.conf" <<EOF
ClusterName=ebda-local
SlurmctldHost=$host
SlurmctldPort=${SLURM_LOCAL_PORT:-16817}
SlurmdPort=$(( ${SLURM_LOCAL_PORT:-16817} + 1 ))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
KillWait=10
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -f "$SLURM_CONF" -c
  slurmd -f "$SLURM_CONF"
  for _ in $(seq 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "SLURM up: SLURM_CONF=$SLURM_CONF ($host, $cpus CPUs, ${mem} MB)"
      exit 0
    fi
    sleep 1
  done
  echo "SLURM did not come up; logs:" >&2
  tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
  exit 1
  ;;
stop)
  dir=${2:?stop needs a directory}
  for d in slurmd slurmctld; do
    if [ -f "$dir/$d.pid" ]; then kill "$(cat "$dir/$d.pid")" 2>/dev/null || true; fi
  done
  ;;
*)
  echo "usage: slurm-local.sh install|start DIR|stop DIR" >&2
  exit 2
  ;;
esac
