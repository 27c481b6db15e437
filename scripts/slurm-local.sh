#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests/slurm.rs (and for trying `synth slurm`):
#
#   scripts/slurm-local.sh start    # install if needed, configure, start; wait until the node is idle
#   scripts/slurm-local.sh stop     # stop the daemons this script started
#   scripts/slurm-local.sh status   # sinfo, or why not
#
# Idempotent: `start` installs Debian's slurmctld, slurmd, slurm-client and munge with apt-get
# only when they are missing (root needed; `apt-get update` first when the package lists lack
# them), writes /etc/slurm/slurm.conf only when it is absent or was written by this script
# (a real cluster's configuration is never touched), and starts only the daemons that are not
# running. No systemd: munged, slurmctld and slurmd run as plain daemons with their pid files,
# logs and state under $SLURM_LOCAL_DIR (default /var/lib/synth-slurm).
#
# The node is `localhost` with 2 CPUs (SLURM_LOCAL_CPUS), proctrack/linuxproc and task/none
# (no cgroups needed), select/cons_tres by core, and no accounting. SlurmUser is root.
set -euo pipefail

state=${SLURM_LOCAL_DIR:-/var/lib/synth-slurm}
cpus=${SLURM_LOCAL_CPUS:-2}
conf=/etc/slurm/slurm.conf
marker="# Written by synth's scripts/slurm-local.sh"

say() { echo "slurm-local: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

install() {
  local missing=()
  command -v munged >/dev/null || missing+=(munge)
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  [ ${#missing[@]} -eq 0 ] && return
  [ "$(id -u)" -eq 0 ] || fail "installing ${missing[*]} needs root"
  say "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq || fail "apt-get update"
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]}"
}

configure() {
  if [ -f "$conf" ] && ! grep -qxF "$marker" "$conf"; then
    fail "$conf exists and was not written by this script: this machine has its own Slurm; not touching it"
  fi
  mkdir -p "$state"/ctld "$state"/d "$state"/log "$state"/run /etc/slurm
  local host
  host=$(hostname -s)
  local text
  text="$marker
ClusterName=synth-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/run/slurmctld.pid
SlurmdPidFile=$state/run/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
JobRequeue=1
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=3600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP"
  if [ "$(cat "$conf" 2>/dev/null)" != "$text" ]; then
    printf '%s\n' "$text" >"$conf.tmp" && mv "$conf.tmp" "$conf"
    say "wrote $conf"
    # A running controller reads the new configuration.
    if running slurmctld; then scontrol reconfigure || true; fi
  fi
}

# Whether the daemon whose pid file is given runs.
running() {
  local pidfile
  case $1 in
    munged) pidfile=/run/munge/munged.pid ;;
    *) pidfile=$state/run/$1.pid ;;
  esac
  [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start_daemons() {
  if ! running munged; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    runuser -u munge -- munged || fail "munged did not start (see /var/log/munge/munged.log)"
    say "started munged"
  fi
  munge -n | unmunge >/dev/null || fail "munge does not work"
  if ! running slurmctld; then
    slurmctld || fail "slurmctld did not start (see $state/log/slurmctld.log)"
    say "started slurmctld"
  fi
  if ! running slurmd; then
    slurmd -N localhost || fail "slurmd did not start (see $state/log/slurmd.log)"
    say "started slurmd"
  fi
}

wait_idle() {
  local state_now=""
  for _ in $(seq 1 60); do
    state_now=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    case $state_now in
      idle* | mixed* | allocated*) say "node localhost is $state_now"; return ;;
      down* | drain*) scontrol update nodename=localhost state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  fail "node localhost is not idle after 60 s (state: ${state_now:-none}); see $state/log/"
}

stop() {
  for daemon in slurmd slurmctld; do
    if running "$daemon"; then
      local pid
      pid=$(cat "$state/run/$daemon.pid")
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      say "stopped $daemon"
    fi
  done
  if running munged; then
    kill "$(cat /run/munge/munged.pid)"
    say "stopped munged"
  fi
}

case ${1:-start} in
  start)
    install
    configure
    start_daemons
    wait_idle
    ;;
  stop) stop ;;
  status) sinfo || fail "no controller answers" ;;
  *) fail "usage: $0 start|stop|status" ;;
esac
