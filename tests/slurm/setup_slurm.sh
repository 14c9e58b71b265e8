#!/usr/bin/env bash
# Start a real one-node SLURM cluster on 127.0.0.1 for the integration test (make test-slurm).
#
#   tests/slurm/setup_slurm.sh [STATE_DIR]        (default STATE_DIR: /tmp/expmae-slurm)
#
# Idempotent: installs Debian's slurm-wlm + munge only when missing, keeps an existing munge key,
# rewrites slurm.conf, and starts munged / slurmctld / slurmd only when the pid recorded for
# them in STATE_DIR/pids/ is not alive. Everything it owns lives under STATE_DIR:
#   slurm.conf, munge/ (key, socket, log), ctld/ (StateSaveLocation), spool/ (SlurmdSpoolDir),
#   log/ (daemon logs), pids/ (the pids teardown_slurm.sh stops, one file per daemon).
# munged gets its own key and socket (slurm.conf AuthInfo=socket=...), so a system munged, if
# any, is neither needed nor touched. No systemd is assumed: the daemons run in the foreground
# (-F / -D) in their own session, started from here, so $! is exactly the daemon's pid.
#
# Clients (sinfo, sbatch, snakemake) find the cluster through SLURM_CONF=STATE_DIR/slurm.conf;
# the same file is also installed as /etc/slurm/slurm.conf when that path is free or was written
# by this script before, so a plain `sinfo` works too; teardown_slurm.sh removes it again. A foreign
# /etc/slurm/slurm.conf is left alone.
#
# Env overrides: SLURMCTLD_PORT (6817), SLURMD_PORT (6818), SLURM_READY_TIMEOUT (90 s).
set -euo pipefail

STATE=${1:-/tmp/expmae-slurm}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
CONF=$STATE/slurm.conf
NODE=$(hostname -s)
CTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
READY_TIMEOUT=${SLURM_READY_TIMEOUT:-90}
MARKER="# written by expmae tests/slurm/setup_slurm.sh"
MUNGE_SOCKET=$STATE/munge/munge.socket.2
export SLURM_CONF=$CONF
T0=$SECONDS

log() { printf '[setup_slurm %3ds] %s\n' "$((SECONDS - T0))" "$*"; }

diagnose() {
    # On any failure: show what the daemons said, then fail loudly.
    echo "==================== SLURM setup FAILED: diagnostics ====================" >&2
    for f in "$STATE"/log/*.log "$STATE"/log/*.out "$STATE"/munge/munged.log; do
        [[ -s $f ]] || continue
        echo "---- tail -n 40 $f" >&2
        tail -n 40 "$f" >&2
    done
    for name in munged slurmctld slurmd; do
        local pidfile=$STATE/pids/$name.pid
        if [[ -f $pidfile ]]; then
            local pid; pid=$(<"$pidfile")
            if kill -0 "$pid" 2>/dev/null; then echo "$name: pid $pid alive" >&2
            else echo "$name: pid $pid DEAD" >&2; fi
        else
            echo "$name: not started" >&2
        fi
    done
    command -v sinfo >/dev/null && { sinfo -N -l 2>&1 || true; } >&2
    echo "(stop what was started with: tests/slurm/teardown_slurm.sh $STATE)" >&2
}
trap 'rc=$?; [[ $rc -ne 0 ]] && diagnose; exit $rc' EXIT

# ---------------------------------------------------------------- 1. packages
need_install=0
for bin in munged mungekey slurmctld slurmd sinfo sbatch srun squeue scontrol; do
    command -v "$bin" >/dev/null 2>&1 || need_install=1
done
if [[ $need_install == 1 ]]; then
    [[ $(id -u) == 0 ]] || { echo "slurm-wlm/munge missing and not root: cannot apt-get install" >&2; exit 1; }
    log "installing slurm-wlm munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >"$STATE/apt.log" 2>&1 || { cat "$STATE/apt.log" >&2; exit 1; }
    apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$STATE/apt.log" 2>&1 \
        || { tail -n 40 "$STATE/apt.log" >&2; exit 1; }
else
    log "slurm-wlm and munge already installed ($(slurmctld -V))"
fi

mkdir -p "$STATE"/{munge,ctld,spool,log,pids,run}
# munged wants its socket dir traversable by all (clients of any uid), the key itself 0400.
chmod 711 "$STATE/munge"

# ---------------------------------------------------------------- 2. munge key
if [[ ! -s $STATE/munge/munge.key ]]; then
    log "creating munge key $STATE/munge/munge.key"
    mungekey --create --keyfile="$STATE/munge/munge.key" --bits=1024
fi
chmod 400 "$STATE/munge/munge.key"

# ---------------------------------------------------------------- 3. slurm.conf
# Node shape as slurmd itself sees it (CPUs, sockets/cores/threads, RealMemory), so the
# node never registers as INVALID; fall back to nproc / free when slurmd -C says nothing.
shape=$(slurmd -C 2>/dev/null | head -n 1 | sed -n 's/^NodeName=[^ ]* //p')
if [[ -z $shape ]]; then
    shape="CPUs=$(nproc) RealMemory=$(free -m | awk '/^Mem:/ {print $2}')"
fi
tmpconf=$(mktemp "$STATE/slurm.conf.XXXXXX")
cat >"$tmpconf" <<EOF
$MARKER -- one node on 127.0.0.1, no accounting, no cgroups.
ClusterName=expmae
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroup.conf on purpose: plain /proc process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A node that was DOWN (e.g. after a restart) comes back once it registers with a valid config.
ReturnToService=2
# Finished jobs stay visible to squeue for an hour: snakemake-executor-plugin-slurm polls job
# status with squeue when accounting is off (needs MinJobAge >= 3x its first poll delay), and the
# pipeline test reads every job's final state at its end -- on a loaded 2-core CI box the tiny
# pipeline takes 15+ min, so the first jobs must still be listed then (300 s was too short).
MinJobAge=3600
InactiveLimit=0
KillWait=10
SlurmdTimeout=60
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $shape State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
conf_changed=1
if [[ -f $CONF ]] && cmp -s "$tmpconf" "$CONF"; then conf_changed=0; fi
mv -f "$tmpconf" "$CONF"
chmod 644 "$CONF"
log "slurm.conf: $CONF (NodeName=$NODE $shape)"

if [[ ! -e /etc/slurm/slurm.conf ]] || grep -qF "$MARKER" /etc/slurm/slurm.conf 2>/dev/null; then
    if [[ -w /etc/slurm || ( ! -e /etc/slurm && -w /etc ) ]]; then
        mkdir -p /etc/slurm && cp -f "$CONF" /etc/slurm/slurm.conf
    fi
else
    log "note: /etc/slurm/slurm.conf belongs to someone else; use SLURM_CONF=$CONF"
fi

# ---------------------------------------------------------------- 4. daemons
# alive NAME -> 0 when the recorded pid runs the program NAME (guards against pid reuse).
alive() {
    local pidfile=$STATE/pids/$1.pid pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

# start NAME CMD... : run CMD in the foreground of a new session, in the background of this
# script; setsid execs (no fork) because a background job is not a group leader, so $! is the
# daemon itself. The pid is recorded at once, before anything can fail.
start() {
    local name=$1; shift
    if alive "$name"; then
        log "$name already running (pid $(<"$STATE/pids/$name.pid"))"
        return 1
    fi
    setsid "$@" </dev/null >"$STATE/log/$name.out" 2>&1 &
    echo $! >"$STATE/pids/$name.pid"
    log "started $name (pid $!)"
}

wait_for() {  # wait_for SECONDS DESCRIPTION CMD... : poll CMD every 0.5 s
    local limit=$1 what=$2; shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then log "timed out after ${limit}s waiting for $what"; return 1; fi
        sleep 0.5
    done
}

daemon_alive_or_die() {
    alive "$1" || { log "$1 died right after start"; return 1; }
}

# munged refuses root-owned, group-writable paths etc.; --force accepts running as root here.
start munged munged --foreground --force \
    --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
    --seed-file="$STATE/munge/munged.seed" || true
munge_ok() { munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET"; }
wait_for 20 "munged socket" munge_ok || { daemon_alive_or_die munged; exit 1; }

# A config change only reaches running daemons through a restart: `scontrol reconfigure`
# cannot change ports or node shape, so say so instead of guessing.
if [[ $conf_changed == 1 ]] && { alive slurmctld || alive slurmd; }; then
    log "warning: slurm.conf changed while slurmctld/slurmd run; run teardown_slurm.sh and setup again to apply it"
fi

start slurmctld slurmctld -D -f "$CONF" || true
ctld_ok() { scontrol ping | grep -q 'is UP'; }
wait_for 30 "slurmctld to answer" ctld_ok || { daemon_alive_or_die slurmctld; exit 1; }

start slurmd slurmd -D -f "$CONF" -N "$NODE" || true

# ---------------------------------------------------------------- 5. ready?
node_state() { sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n 1; }
deadline=$((SECONDS + READY_TIMEOUT))
resumed=0
while :; do
    st=$(node_state)
    [[ $st == idle || $st == mix || $st == alloc ]] && break
    daemon_alive_or_die slurmd || exit 1
    daemon_alive_or_die slurmctld || exit 1
    # down/drain left over from an earlier run: resume once (ReturnToService=2 usually does it).
    if [[ $resumed == 0 && ( $st == down* || $st == drain* ) ]]; then
        scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        resumed=1
    fi
    if ((SECONDS >= deadline)); then log "node $NODE not idle after ${READY_TIMEOUT}s (state: '${st}')"; exit 1; fi
    sleep 0.5
done
log "node $NODE is $st"

# A batch job and an interactive step, end to end (munge credentials, slurmstepd, I/O).
out=$STATE/log/ready-check-%j.out
jobid=$(sbatch --parsable -p debug -t 1 --mem 50 -o "$out" --wrap 'hostname; echo "SLURM_JOB_ID=$SLURM_JOB_ID"') \
    || { log "sbatch --wrap hostname failed"; exit 1; }
jobid=${jobid%%;*}
# Poll ourselves: `sbatch --wait` backs off to 10 s between checks.
job_done() { [[ $(squeue -h -t all -j "$jobid" -o %T 2>/dev/null) == COMPLETED ]]; }
wait_for 60 "sbatch job $jobid to complete" job_done \
    || { log "state now: $(squeue -h -t all -j "$jobid" -o %T 2>&1)"; exit 1; }
got=$(cat "${out//%j/$jobid}")
grep -q "SLURM_JOB_ID=$jobid" <<<"$got" || { log "sbatch job $jobid wrote: $got"; exit 1; }
log "sbatch ok: job $jobid ran on $(head -n 1 <<<"$got")"
got=$(timeout 60 srun -p debug -t 1 --mem 50 -N 1 -n 1 hostname) || { log "srun hostname failed"; exit 1; }
log "srun ok: $got"
log "SLURM ready in $((SECONDS - T0))s -- export SLURM_CONF=$CONF; stop with tests/slurm/teardown_slurm.sh $STATE"
