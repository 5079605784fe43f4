#!/usr/bin/env bash
# dispatch/slurm/local_cluster.sh up|down|status: a private Slurm cluster on
# this machine, for Spindle's tests and for trying the Slurm backend.
#
#   up      starts munged, slurmctld and two slurmd daemons (nodes n1 and n2,
#           each its own port and spool directory); exits 0 once both nodes
#           answer.  Idempotent: a cluster already up is left as it is.
#   down    stops them and removes the state directory.  Idempotent.
#   status  exits 0 when the controller and both nodes answer.
#
# Every command prints the line to export, `export SLURM_CONF=...`, on stdout
# (diagnostics go to stderr).  Nothing outside the state directory is
# touched: no /etc, no systemd.  The state directory is $SPINDLE_SLURM_DIR,
# by default /tmp/spindle-slurm.  Installs slurm-wlm and munge with apt-get
# when missing.  Needs root (or passwordless sudo, which it re-runs under):
# slurmd starts job steps as the submitting user.  The daemons run in a
# session of their own: they outlive whoever ran `up` (a test, a CI step).
#
# Ports: slurmctld $SPINDLE_SLURM_PORT (default 16817), slurmd n1 and n2 the
# two ports after it.
set -euo pipefail
# The daemons live in sbin, which a minimal PATH (Bazel tests) lacks.
export PATH="$PATH:/usr/sbin:/sbin"

DIR=${SPINDLE_SLURM_DIR:-/tmp/spindle-slurm}
PORT=${SPINDLE_SLURM_PORT:-16817}
CONF=$DIR/slurm.conf
NODES=(n1 n2)

say() { echo "local_cluster: $*" >&2; }
die() { say "$*"; exit 1; }

usage() { die "usage: $0 up|down|status"; }
[[ $# -eq 1 ]] || usage
cmd=$1
case $cmd in up|down|status) ;; *) usage ;; esac

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    exec sudo -n SPINDLE_SLURM_DIR="$DIR" SPINDLE_SLURM_PORT="$PORT" "$0" "$cmd"
  fi
  die "needs root or passwordless sudo (slurmd runs steps as their user)"
fi

ensure_packages() {
  local missing=()
  command -v slurmctld >/dev/null 2>&1 || missing+=(slurm-wlm)
  command -v munged >/dev/null 2>&1 || missing+=(munge)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "missing ${missing[*]} and no apt-get to install them"
  say "installing ${missing[*]}"
  # The packages' own daemons are not wanted (this script runs private
  # ones): a policy-rc.d keeps their init scripts from starting them.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" &&
      made_policy=1
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y
             -o DPkg::Lock::Timeout=600)
  if ! "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2; then
    # munge's postinst makes its key as the munge user (su munge), which
    # fails where that user cannot run /bin/sh (a root directory of mode
    # 0700); a key made here, as root, lets it finish.
    if [[ -d /etc/munge && ! -e /etc/munge/munge.key ]]; then
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
      chmod 400 /etc/munge/munge.key
    fi
    dpkg --configure -a >&2 ||
      { "${apt[@]}" update >&2 || true
        "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2; } ||
      true
  fi
  [[ $made_policy -eq 1 ]] && rm -f "$policy"
  if ! command -v slurmctld >/dev/null 2>&1 ||
     ! command -v munged >/dev/null 2>&1 ||
     ! dpkg --audit >/dev/null 2>&1 || [[ -n $(dpkg --audit 2>/dev/null) ]]; then
    # Leave the package system consistent for whatever runs next.
    dpkg --configure -a >/dev/null 2>&1 ||
      "${apt[@]}" purge slurm-wlm slurmd slurmctld slurm-client munge >&2 || true
    die "could not install ${missing[*]}"
  fi
}

# Exit 0 when pid file $1 names a live process.
# A zombie (killed, not yet reaped by whoever adopted it) is not alive.
alive() {
  [[ -f $1 ]] || return 1
  local state
  state=$(awk '{print $3}' "/proc/$(cat "$1")/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# Exit 0 when every daemon of ours runs, the controller answers and every
# node is up (not down, not not-responding).  The pid files come first:
# slurmctld notices a dead slurmd only after SlurmdTimeout.
cluster_up() {
  [[ -f $CONF ]] || return 1
  local f
  for f in "$DIR/munge/munged.pid" "$DIR/slurmctld.pid" \
           "${NODES[@]/#/$DIR/slurmd-}"; do
    [[ $f == *.pid ]] || f=$f.pid
    alive "$f" || return 1
  done
  SLURM_CONF=$CONF scontrol ping 2>/dev/null | grep -q 'is UP' || return 1
  local states
  states=$(SLURM_CONF=$CONF sinfo -h -N -o '%N %t' 2>/dev/null) || return 1
  local n
  for n in "${NODES[@]}"; do
    grep -Eq "^$n (idle|alloc|mix|comp)\$" <<<"$states" || return 1
  done
}

write_config() {
  local cpus
  cpus=$(nproc)
  mkdir -p "$DIR"/munge "$DIR"/ctld "$DIR"/log
  for n in "${NODES[@]}"; do mkdir -p "$DIR/spool/$n"; done
  cat >"$CONF" <<CONF
# Written by Spindle's dispatch/slurm/local_cluster.sh: a private cluster.
ClusterName=spindle
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
# A step's processes by process group: a kill reaches a child forked while
# it is sent (linuxproc's /proc walk can miss one, which then holds the
# step's streams open for a minute).
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Low latency: the builtin scheduler starts a job as soon as it fits, a
# dead slurmd is noticed within seconds, scancel escalates fast.
SchedulerType=sched/builtin
SchedulerParameters=sched_min_interval=0
SlurmdTimeout=5
SlurmctldTimeout=5
MessageTimeout=5
KillWait=1
InactiveLimit=0
MinJobAge=5
ReturnToService=2
NodeName=n1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((PORT + 1)) CPUs=$cpus State=UNKNOWN
NodeName=n2 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((PORT + 2)) CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  # slurmd reads a cgroup.conf beside slurm.conf only with cgroup plugins;
  # none are configured.
}

start_munge() {
  local m=$DIR/munge
  alive "$m/munged.pid" && return 0
  chmod 700 "$m"
  [[ -f $m/munge.key ]] || {
    dd if=/dev/urandom of="$m/munge.key" bs=1024 count=1 status=none
    chmod 400 "$m/munge.key"
  }
  setsid -w munged --force --key-file="$m/munge.key" --socket="$m/munge.socket" \
    --pid-file="$m/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$m/munge.seed" >&2 || die "munged did not start: see $DIR/log/munged.log"
}

start_daemons() {
  alive "$DIR/slurmctld.pid" ||
    SLURM_CONF=$CONF setsid -w slurmctld -f "$CONF" -i >&2 ||
    die "slurmctld did not start: see $DIR/log/slurmctld.log"
  local n
  for n in "${NODES[@]}"; do
    alive "$DIR/slurmd-$n.pid" ||
      SLURM_CONF=$CONF setsid -w slurmd -f "$CONF" -N "$n" >&2 ||
      die "slurmd -N $n did not start: see $DIR/log/slurmd-$n.log"
  done
}

stop_all() {
  local f
  for f in "$DIR"/slurmd-*.pid "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    [[ -f $f ]] || continue
    local pid
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

case $cmd in
  status)
    if cluster_up; then
      echo "export SLURM_CONF=$CONF"
      exit 0
    fi
    say "not up (state directory $DIR)"
    exit 1
    ;;
  down)
    stop_all
    rm -rf "$DIR"
    say "down"
    echo "export SLURM_CONF=$CONF"
    ;;
  up)
    if cluster_up; then
      say "already up"
      echo "export SLURM_CONF=$CONF"
      exit 0
    fi
    ensure_packages
    # A cluster that is partly up (a daemon died) keeps its configuration.
    [[ -f $CONF ]] || write_config
    start_munge
    start_daemons
    for _ in $(seq 100); do
      if cluster_up; then
        say "up: nodes ${NODES[*]}"
        echo "export SLURM_CONF=$CONF"
        exit 0
      fi
      # A node that registered before the controller was ready comes back.
      SLURM_CONF=$CONF scontrol update nodename=n1,n2 state=resume \
        >/dev/null 2>&1 || true
      sleep 0.1
    done
    die "the cluster did not come up within 10 s: see $DIR/log"
    ;;
esac
