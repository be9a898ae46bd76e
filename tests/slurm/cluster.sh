#!/usr/bin/env bash
# A one-node SLURM cluster on this machine for tests/test_slurm.py (root; Debian's slurmctld,
# slurmd and munge). `start DIR` installs what is missing (apt), writes DIR/slurm.conf and starts
# munged, slurmctld and slurmd; `stop DIR` stops them. Prints the SLURM_CONF to export.
# NODES=2 (tests/test_multinode.py): two slurmd on this machine, nodes n1 and n2 at NodeAddr
# 127.0.0.1 and 127.0.0.2 (names that do not resolve), ports SLURMD_PORT + 1 and + 2.
set -euo pipefail
cmd="$1"; dir="$(realpath -m "$2")"; nodes="${NODES:-1}"
if [ "$cmd" = stop ]; then
  for f in "$dir"/slurmd*.pid "$dir"/slurmctld.pid; do  # each daemon by the pid it wrote
    [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  for d in slurmd slurmctld; do pkill -f "$d -f $dir/slurm.conf" || true; done
  exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  (apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1 ||
   (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1)) ||
   { echo "cannot install slurmctld slurmd slurm-client munge" >&2; exit 3; }
fi
PATH="$PATH:/usr/sbin:/usr/bin"  # where apt put them (a PATH without them: ../shared/tools/bare-path)
mkdir -p "$dir/spool" "$dir/state" "$dir/log" /run/munge /var/lib/munge /var/log/munge /etc/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c munged 2>/dev/null || munged --force
host="$(hostname -s)"
cpus="$(nproc)"
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat > "$dir/slurm.conf" <<CONF
ClusterName=limotest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.%n.log
SlurmctldPort=${SLURMCTLD_PORT:-6917}
SlurmdPort=${SLURMD_PORT:-6918}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
KillWait=20
MinJobAge=3600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
CONF
port="${SLURMD_PORT:-6918}"
if [ "$nodes" = 1 ]; then
  names=("$host")
  echo "NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN" >> "$dir/slurm.conf"
else  # each slurmd on a port and an address of its own; the machine's CPUs and memory told to both
  names=()
  for i in $(seq "$nodes"); do
    names+=("n$i")
    echo "NodeName=n$i NodeHostname=$host NodeAddr=127.0.0.$i Port=$((port + i)) CPUs=$cpus RealMemory=$mem State=UNKNOWN" >> "$dir/slurm.conf"
  done
fi
nodelist="$(IFS=,; echo "${names[*]}")"
echo "PartitionName=debug Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES" >> "$dir/slurm.conf"
mkdir -p "${names[@]/#/$dir/spool/}"
export SLURM_CONF="$dir/slurm.conf"
slurmctld -f "$SLURM_CONF"
if [ "$nodes" = 1 ]; then
  slurmd -f "$SLURM_CONF"
else
  for n in "${names[@]}"; do slurmd -f "$SLURM_CONF" -N "$n"; done
fi
for _ in $(seq 60); do
  up="$(sinfo -h -N -o %t 2>/dev/null | grep -cE '^(idle|mix|alloc)' || true)"
  if [ "$up" = "$nodes" ]; then echo "$SLURM_CONF"; exit 0; fi
  sleep 1
done
echo "the nodes did not come up: $(sinfo -N 2>&1 | tail -3); see $dir/log" >&2
exit 4
