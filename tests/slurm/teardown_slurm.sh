#!/usr/bin/env bash
# Stop the daemons tests/slurm/setup_slurm.sh started, by the pids it recorded -- never by name.
#
#   tests/slurm/teardown_slurm.sh [STATE_DIR]     (default STATE_DIR: /tmp/expmae-slurm)
#
# Order: cancel our cluster's jobs (so no slurmstepd is left behind), then slurmd, slurmctld,
# munged; each gets SIGTERM, then SIGKILL after 20 s. A pid is only signalled while
# /proc/PID/comm still names that daemon (a recycled pid is left alone). STATE_DIR is kept
# (munge key, slurm state, logs); setup_slurm.sh reuses it. Exit 1 if a daemon survives.
# The copy setup_slurm.sh put at /etc/slurm/slurm.conf (recognised by its marker line) is
# removed: left behind, it points every client at a controller that is gone, and the SLURM
# executor plugin's `scontrol show config` then stalls each later `snakemake` start by ~9 s.
set -uo pipefail

STATE=${1:-/tmp/expmae-slurm}
[[ -d $STATE ]] || { echo "[teardown_slurm] nothing to do: $STATE does not exist"; exit 0; }
STATE=$(cd "$STATE" && pwd)
export SLURM_CONF=$STATE/slurm.conf

log() { echo "[teardown_slurm] $*"; }

ours() {  # ours NAME -> prints the pid when the recorded pid still runs NAME
    local pidfile=$STATE/pids/$1.pid pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
    echo "$pid"
}

# Jobs still queued or running on our private cluster (e.g. a test that failed midway).
if ours slurmctld >/dev/null && [[ -f $SLURM_CONF ]]; then
    jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
        log "cancelling leftover jobs: $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 1 30); do
            [[ -z $(squeue -h -t R,CG,PD -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
fi

status=0
for name in slurmd slurmctld munged; do
    pidfile=$STATE/pids/$name.pid
    if ! pid=$(ours "$name"); then
        [[ -f $pidfile ]] && log "$name (pid $(<"$pidfile")) is not running"
        rm -f "$pidfile"
        continue
    fi
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM for 20 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null
        sleep 0.5
    fi
    if kill -0 "$pid" 2>/dev/null; then
        log "ERROR: $name (pid $pid) is still alive"
        status=1
    else
        log "stopped $name (pid $pid)"
        rm -f "$pidfile"
    fi
done
MARKER="# written by expmae tests/slurm/setup_slurm.sh"
if grep -qF "$MARKER" /etc/slurm/slurm.conf 2>/dev/null; then
    rm -f /etc/slurm/slurm.conf && log "removed /etc/slurm/slurm.conf (ours)"
fi
exit $status
