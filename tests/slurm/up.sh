#!/usr/bin/env bash
# Start a throw-away single-node SLURM cluster (slurmctld + slurmd on this machine) for the
# integration tests, with an optional number of fake GPUs.
#
# Environment:
#   LFSGAN_SLURM_DIR   state dir (required; e.g. a pytest tmp dir). Holds state, spool, logs,
#                      pid files, the job-completion log and `env.sh`.
#   LFSGAN_SLURM_GPUS  number of fake GPUs on the node (default 1; 0 = no GRES at all).
#   LFSGAN_SLURM_CPUS  CPUs the node advertises (default: nproc).
#   LFSGAN_SLURM_MIN_JOB_AGE  seconds a finished job stays visible to squeue (default 3600).
#
# Written and removed again by tests/slurm/down.sh:
#   /etc/slurm/slurm.conf, /etc/slurm/gres.conf. The compiled-in path is required: the
#   snakemake slurm-jobstep drops SLURM_CONF inside jobs, so a config elsewhere breaks the
#   `srun` that every job runs (slurm-jobstep drops SLURM_CONF from the environment of that srun, so only the default path works).
#
# Design choices, each needed on a machine without systemd/cgroups/slurmdbd:
#   - no accounting daemon: AccountingStorageType=accounting_storage/none (so `sacct` does not
#     work; the profile must use `slurm-status-command: squeue`), and SLURM's own record of every
#     finished job goes to $LFSGAN_SLURM_DIR/jobcomp.txt (JobCompType=jobcomp/filetxt);
#   - proctrack/linuxproc, task/none, jobacct_gather/none (no cgroups);
#   - DefMemPerCPU so a job without --mem does not take the whole node;
#   - MinJobAge (default 3600 s) keeps finished jobs visible to `squeue`/`scontrol`: the
#     profile's squeue status checks need >= 3 x init-seconds, and the tests read each job's
#     comment (`rule_<name>`, set by the snakemake plugin; jobcomp/filetxt does not record it);
#   - fake GPUs: GresTypes=gpu, Gres=gpu:N, and one character device per GPU in gres.conf
#     (/dev/null, /dev/zero, ...; at most 5). A GPU without File= is dropped by slurmd and the
#     node drained (pitfall P3); a regular file is rejected ("not a valid character or block
#     device") and CUDA_VISIBLE_DEVICES is then not set in jobs.
#
# Prints the daemons' PIDs and the state dir, and writes them to $LFSGAN_SLURM_DIR/env.sh.
set -euo pipefail

D="${LFSGAN_SLURM_DIR:?set LFSGAN_SLURM_DIR to a temporary directory for the SLURM state}"
GPUS="${LFSGAN_SLURM_GPUS:-1}"
CPUS="${LFSGAN_SLURM_CPUS:-$(nproc)}"
CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
# shellcheck source=tests/slurm/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

die() { echo "up.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (starts slurmd and munged)"
command -v slurmctld >/dev/null || die "slurm is not installed: run tests/slurm/install.sh"
FAKE_DEVS=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom)
case "$GPUS" in ''|*[!0-9]*) die "LFSGAN_SLURM_GPUS must be a whole number, got '$GPUS'";; esac
[ "$GPUS" -le "${#FAKE_DEVS[@]}" ] || die "at most ${#FAKE_DEVS[@]} fake GPUs (LFSGAN_SLURM_GPUS=$GPUS)"
for f in "$CONF" "$GRES_CONF"; do
    if [ -e "$f" ] && ! grep -qF "$MARK" "$f"; then
        die "$f exists and was not written by this script; refusing to overwrite a real SLURM config"
    fi
done
running="$(running_pids slurmctld) $(running_pids slurmd)"
if [ -n "${running// }" ]; then
    die "slurmctld/slurmd already running (pids: $(echo $running)); stop them first (tests/slurm/down.sh)"
fi

mkdir -p "$D"/{state,spool,log,run}
D="$(cd "$D" && pwd)"
# Never leave a half-started cluster behind: a slurm.conf without a live controller makes every
# SLURM client (and `snakemake`, whose slurm plugin calls `scontrol show config`) hang.
trap 'echo "up.sh: failed; cleaning up with down.sh" >&2; LFSGAN_SLURM_DIR="$D" bash "$(dirname "${BASH_SOURCE[0]}")/down.sh" >&2' ERR
mkdir -p /etc/slurm

# --- munge -----------------------------------------------------------------------------------
# /run/munge is normally created by systemd-tmpfiles, which this machine does not run.
[ -d /run/munge ] || : > "$D/run/created_run_munge"
install -d -o munge -g munge -m 0755 /run/munge
[ -s /etc/munge/munge.key ] || runuser -u munge -- /usr/sbin/mungekey --create
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    echo "up.sh: munged already running; leaving it alone"
    : > "$D/run/munged.external"
else
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 100); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || { echo "up.sh: munged did not start" >&2; false; }
    cp /run/munge/munged.pid "$D/run/munged.pid"
fi

# --- slurm.conf / gres.conf --------------------------------------------------------------------
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))  # leave 10% to the OS
DEF_MEM_PER_CPU=$(( MEM_MB / CPUS ))
NODE_GRES=""
[ "$GPUS" -gt 0 ] && NODE_GRES="Gres=gpu:$GPUS"

cat > "$CONF" <<EOF
$MARK
ClusterName=lfsgan-ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${LFSGAN_SLURMCTLD_PORT:-6817}
SlurmdPort=${LFSGAN_SLURMD_PORT:-6818}
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$DEF_MEM_PER_CPU
MinJobAge=${LFSGAN_SLURM_MIN_JOB_AGE:-3600}
ReturnToService=2
$( [ "$GPUS" -gt 0 ] && echo "GresTypes=gpu" )
NodeName=localhost CPUs=$CPUS RealMemory=$MEM_MB $NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

if [ "$GPUS" -gt 0 ]; then
    # one distinct character device per fake GPU (see the header)
    {
        echo "$MARK"
        for i in $(seq 0 $((GPUS - 1))); do
            echo "NodeName=localhost Name=gpu File=${FAKE_DEVS[$i]}"
        done
    } > "$GRES_CONF"
else
    rm -f "$GRES_CONF"
fi

# --- daemons -----------------------------------------------------------------------------------
slurmctld -c          # -c: start from a clean state (no jobs from an earlier fixture)
slurmd -N localhost

state=""
for _ in $(seq 300); do
    state="$(timeout 2 sinfo -h -N -o %T 2>/dev/null | head -1 || true)"
    [ "$state" = idle ] && break
    # stop waiting if the controller died (e.g. a fatal config error; see its log)
    if [ -s "$D/run/slurmctld.pid" ] && ! alive "$(cat "$D/run/slurmctld.pid")"; then break; fi
    sleep 0.1
done
if [ "$state" != idle ]; then
    echo "up.sh: node never became idle (state: '${state:-no answer}'); daemon logs:" >&2
    tail -n 20 "$D/log/slurmctld.log" "$D/log/slurmd.log" >&2 || true
    false  # -> ERR trap: down.sh
fi
trap - ERR

CTLD_PID=$(cat "$D/run/slurmctld.pid")
SLURMD_PID=$(cat "$D/run/slurmd.pid")
MUNGED_PID=$(cat "$D/run/munged.pid" 2>/dev/null || echo external)
cat > "$D/env.sh" <<EOF
LFSGAN_SLURM_DIR=$D
SLURMCTLD_PID=$CTLD_PID
SLURMD_PID=$SLURMD_PID
MUNGED_PID=$MUNGED_PID
JOBCOMP=$D/jobcomp.txt
FAKE_GPUS=$GPUS
EOF
echo "up.sh: SLURM up: slurmctld=$CTLD_PID slurmd=$SLURMD_PID munged=$MUNGED_PID gpus=$GPUS cpus=$CPUS"
echo "up.sh: state dir $D (logs in $D/log, job completions in $D/jobcomp.txt)"
