#!/usr/bin/env bash
# Stop the SLURM cluster started by tests/slurm/up.sh and undo what it changed outside its
# state dir: cancel every job, stop slurmd, slurmctld and (if up.sh started it) munged by their
# pid files, wait until they have exited, and remove /etc/slurm/{slurm,gres}.conf.
# The state dir itself ($LFSGAN_SLURM_DIR: logs, jobcomp.txt) is left for the caller to inspect
# and delete (the pytest fixture keeps it under pytest's temporary directory).
#
# Safe to run twice, or after a failed up.sh.
set -uo pipefail

D="${LFSGAN_SLURM_DIR:?set LFSGAN_SLURM_DIR to the directory given to up.sh}"
# shellcheck source=tests/slurm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_pid() {  # stop_pid NAME PID: SIGTERM, wait up to 20 s, then SIGKILL
    local name=$1 pid=$2
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 200); do alive "$pid" || { echo "down.sh: $name ($pid) stopped"; return 0; }; sleep 0.1; done
    echo "down.sh: $name ($pid) ignored SIGTERM for 20 s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
    echo "down.sh: $name ($pid) still alive" >&2
    return 1
}

rc=0
if [ -s "$D/run/slurmctld.pid" ] && alive "$(cat "$D/run/slurmctld.pid")"; then
    jobs="$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ')"
    if [ -n "${jobs// }" ]; then
        echo "down.sh: cancelling jobs $jobs"
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null
        for _ in $(seq 300); do
            [ -z "$(timeout 5 squeue -h -t PENDING,RUNNING,SUSPENDED,COMPLETING -o %i 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
fi

# slurmd first (it owns the job steps), then the controller, then munge.
for name in slurmd slurmctld munged; do
    pidfile="$D/run/$name.pid"
    [ -s "$pidfile" ] || continue
    stop_pid "$name" "$(cat "$pidfile")" || rc=1
    rm -f "$pidfile"
done
[ -e "$D/run/created_run_munge" ] && rmdir /run/munge 2>/dev/null
rm -f "$D/run/created_run_munge" "$D/run/munged.external"

for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
    if [ -e "$f" ]; then
        if grep -qF "$MARK" "$f"; then rm -f "$f"; else echo "down.sh: leaving $f (not written by up.sh)" >&2; fi
    fi
done
echo "down.sh: SLURM down; state dir kept at $D"
exit $rc
