#!/usr/bin/env bash
# A single-node SLURM 22.05 cluster on Debian 12, without systemd, as root, for CI and for
# trying profiles/slurm on a workstation:  bash .ci/slurm.sh up|down|status
#
#   up      install munge, slurm-wlm (+ slurmdbd, mariadb-server) if missing, write the
#           configs, start munged, mariadbd + slurmdbd (so `sacct` works: the executor
#           plugin's default status command), slurmctld and slurmd, wait until the node is
#           idle. Idempotent: a daemon whose pid file names a live process is left alone.
#   down    stop the daemons (in reverse order); a daemon that is not running is skipped.
#   status  sinfo + which daemons are alive.
#
# WITH_DBD=0 skips MariaDB/slurmdbd (no accounting): then run snakemake with
# `--slurm-status-command squeue` (see profiles/slurm/config.yaml).
# Logs: /var/log/slurm/{slurmctld,slurmd,slurmdbd,mariadb}.log
set -euo pipefail
WITH_DBD=${WITH_DBD:-1}
H=$(hostname -s)
RUN=/run/slurm
LOGDIR=/var/log/slurm
T0=$(date +%s.%N)
log() { echo "[slurm.sh +$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N)-$T0}")s] $*"; }
# waitfor CMD: poll CMD for up to 60 s.
waitfor() {
  for _ in $(seq 1 120); do
    eval "$1" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  log "TIMEOUT waiting for: $1" >&2
  return 1
}
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() {
  alive "$1" || { rm -f "$1"; return 0; }
  local p
  p=$(cat "$1")
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$p" 2>/dev/null || { log "stopped $2 ($p)"; return 0; }
    sleep 0.25
  done
  kill -9 "$p" 2>/dev/null || true
  log "killed $2 ($p)"
}

install_packages() {
  local need=()
  command -v munged >/dev/null || need+=(munge)
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null || need+=(slurm-wlm)
  if [ "$WITH_DBD" = 1 ]; then
    command -v slurmdbd >/dev/null || need+=(slurmdbd)
    command -v mariadbd >/dev/null || need+=(mariadb-server)
  fi
  [ ${#need[@]} -eq 0 ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  log "installed ${need[*]}"
}

start_munge() {
  alive /run/munge/munged.pid && return 0
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
  waitfor "munge -n | unmunge"
  log "munged up"
}

start_mariadb() {
  alive /run/mysqld/mysqld.pid && return 0
  install -d -o mysql -g root /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  nohup /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
    --socket=/run/mysqld/mysqld.sock --bind-address=127.0.0.1 \
    --innodb-buffer-pool-size=64M >"$LOGDIR/mariadb.log" 2>&1 &
  waitfor "mariadb-admin ping"
  waitfor "[ -s /run/mysqld/mysqld.pid ]"
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  log "mariadbd up"
}

write_configs() {
  local acct="AccountingStorageType=accounting_storage/none"
  if [ "$WITH_DBD" = 1 ]; then
    # job_comment: sacct shows the plugin's --comment (rule_<name>_wildcards_<...>).
    acct=$'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\nAccountingStoreFlags=job_comment'
    cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGDIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm /etc/slurm/slurmdbd.conf
    chmod 0600 /etc/slurm/slurmdbd.conf
  fi
  local mem
  mem=$(($(free -m | awk '/^Mem:/{print $2}') * 8 / 10))
  # proctrack/linuxproc + task/none: no cgroups needed (containers, VMs without systemd).
  cat >/etc/slurm/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=$H
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
MpiDefault=none
$acct
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGDIR/jobcomp.log
NodeName=$H CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {
  install_packages
  getent hosts "$H" >/dev/null || echo "127.0.0.1 $H" >>/etc/hosts
  install -d -o slurm -g slurm "$RUN" /var/spool/slurmctld "$LOGDIR"
  install -d /var/spool/slurmd
  start_munge
  [ "$WITH_DBD" = 1 ] && start_mariadb
  write_configs
  if [ "$WITH_DBD" = 1 ] && ! alive "$RUN/slurmdbd.pid"; then
    /usr/sbin/slurmdbd
    waitfor "sacctmgr -n list cluster"
    log "slurmdbd up"
  fi
  alive "$RUN/slurmctld.pid" || { /usr/sbin/slurmctld; log "slurmctld started"; }
  alive "$RUN/slurmd.pid" || { /usr/sbin/slurmd; log "slurmd started"; }
  # A node left down/drained by an earlier run is brought back.
  if sinfo -h -o %T 2>/dev/null | grep -Eq 'down|drain'; then
    scontrol update NodeName="$H" State=RESUME || true
  fi
  waitfor "sinfo -h -o %T | grep -qx idle"
  if [ "$WITH_DBD" = 1 ]; then waitfor "sacct -n -X -S now-1minutes >/dev/null"; fi
  log "cluster up"
  sinfo
}

down() {
  stop "$RUN/slurmd.pid" slurmd
  stop "$RUN/slurmctld.pid" slurmctld
  stop "$RUN/slurmdbd.pid" slurmdbd
  stop /run/mysqld/mysqld.pid mariadbd
  stop /run/munge/munged.pid munged
}

status() {
  local f
  for f in /run/munge/munged.pid /run/mysqld/mysqld.pid "$RUN"/slurmdbd.pid \
    "$RUN"/slurmctld.pid "$RUN"/slurmd.pid; do
    if alive "$f"; then echo "alive: $f"; else echo "dead:  $f"; fi
  done
  sinfo 2>/dev/null || true
}

case "${1:-}" in
  up | down | status) "$1" ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
