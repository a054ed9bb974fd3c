#!/usr/bin/env bash
# Checks ordo on a real scheduler: starts a one-node Slurm cluster on this machine, runs an
# experiment as a job array with experiments/slurm.sbatch (`ordo ablate --shard`), gathers it with
# `ordo report`, and compares the report (and every cell's eval.json) with a single-machine run of
# the same experiment. Exit status 0 only if they are identical.
#
#   sudo scripts/slurm-check.sh [EXPERIMENT.toml]     # default: experiments/slurm_check.toml
#
# Needs root on Debian (or a derivative): installs `slurm-wlm` and `munge` with apt-get unless
# they are installed. Everything else lives in a fresh temporary directory: the Slurm config and
# state, munged's socket, both copies of the experiment. Nothing under /etc is written except a
# munge key (/etc/munge/munge.key) when there is none. munged runs as the `munge` user, slurmctld
# and slurmd as root, on their own ports and munge socket (no clash with a cluster already set up
# on the machine); all three are stopped on exit, also on failure or Ctrl-C.
#
# Environment:
#   ORDO_BIN=/path/to/ordo   use this binary instead of building one (`cargo build --release`,
#                            honouring CARGO_TARGET_DIR)
#   SHARDS=3                 array size (--array=1-SHARDS)
#   KEEP=1                   keep the temporary directory also on success (it is kept on failure)
#   SLURM_PORT=16817         slurmctld's port; slurmd uses the next one
#   TIMEOUT=3600             give up (and cancel the array) after this many seconds
set -euo pipefail

cd "$(dirname "$0")/.."
repo="$PWD"
experiment="${1:-experiments/slurm_check.toml}"
shards="${SHARDS:-3}"
port="${SLURM_PORT:-16817}"
timeout="${TIMEOUT:-3600}"
t0=$SECONDS

step() { printf '\n== [%s, +%ds] %s\n' "$(date +%T)" "$((SECONDS - t0))" "$*"; }
die() {
    echo "slurm-check: $*" >&2
    exit 1
}

[[ "$(id -u)" -eq 0 ]] || die "run as root (installs packages, starts slurmctld and slurmd as root)"
command -v apt-get >/dev/null || die "needs apt-get (Debian or a derivative)"
[[ -f "$experiment" ]] || die "$experiment: no such experiment file"
case "$experiment" in
    experiments/*.toml) ;;
    *) die "$experiment: expected experiments/NAME.toml (relative to the repository root)" ;;
esac
name="$(basename "$experiment" .toml)"

# ---------------------------------------------------------------------------------------------
step "packages: slurm-wlm, munge"
if dpkg-query -W -f='${db:Status-Abbrev}\n' slurmctld slurmd slurm-client munge 2>/dev/null |
    grep -c '^ii' | grep -qx 4; then
    echo "already installed: $(dpkg-query -W -f='${Package} ${Version}  ' slurmctld slurmd slurm-client munge)"
else
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge
fi
for tool in munged mungekey slurmctld slurmd sbatch sinfo squeue scancel setpriv; do
    command -v "$tool" >/dev/null || die "$tool not found after installing slurm-wlm and munge"
done

# ---------------------------------------------------------------------------------------------
if [[ -n "${ORDO_BIN:-}" ]]; then
    step "ordo: $ORDO_BIN (ORDO_BIN)"
    ordo="$(realpath "$ORDO_BIN")"
else
    step "ordo: cargo build --release"
    nice -n 10 cargo build --release --bin ordo
    ordo="$(realpath "${CARGO_TARGET_DIR:-target}/release/ordo")"
fi
[[ -x "$ordo" ]] || die "$ordo: not an executable"
echo "ordo binary: $ordo"

# ---------------------------------------------------------------------------------------------
work="$(mktemp -d /tmp/ordo-slurm-check.XXXXXX)"
chmod 755 "$work" # munged runs as `munge` and must reach its directory below
mkdir -p "$work/munge" "$work/slurm/state" "$work/slurm/spool" "$work/logs"
chown munge:munge "$work/munge"
chmod 755 "$work/munge" # munged: "execute permissions for all required" on its socket's directory
munge_socket="$work/munge/munged.socket"
export SLURM_CONF="$work/slurm/slurm.conf"
pids=()
slurm_up=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if ((${#pids[@]})); then
        step "stopping the cluster"
        local jobs=""
        # (squeue retries for a minute when slurmctld is not there)
        ((slurm_up)) && jobs="$(timeout 20 squeue -h -o %A 2>/dev/null | sort -u | tr "\n" " ")"
        if [[ -n "${jobs// /}" ]]; then
            echo "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs
            for _ in $(seq 30); do
                [[ -z "$(timeout 20 squeue -h 2>/dev/null)" ]] && break
                sleep 1
            done
        fi
        # slurmd, slurmctld, munged: the reverse of the start order.
        for ((k = ${#pids[@]} - 1; k >= 0; k--)); do
            kill "${pids[k]}" 2>/dev/null
        done
        for pid in "${pids[@]}"; do
            for _ in $(seq 20); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            if kill -0 "$pid" 2>/dev/null; then
                echo "pid $pid did not stop on SIGTERM; SIGKILL"
                kill -9 "$pid"
            fi
            wait "$pid" 2>/dev/null
        done
        echo "stopped munged, slurmctld, slurmd"
    fi
    if ((rc == 0)) && [[ "${KEEP:-0}" != 1 ]]; then
        rm -rf "$work"
    else
        echo "kept $work (slurm/*.log, munge/munged.log, logs/ hold the daemons' and jobs' output)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
step "munge: key, munged as user munge (socket $munge_socket)"
key=/etc/munge/munge.key
if [[ ! -s "$key" ]]; then
    echo "no $key: creating one"
    install -d -o munge -g munge -m 700 /etc/munge
    mungekey --create --keyfile="$key"
    chown munge:munge "$key"
    chmod 400 "$key"
fi
setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground --key-file="$key" --socket="$munge_socket" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
    --seed-file="$work/munge/munged.seed" \
    >"$work/munge/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 20); do
    [[ -S "$munge_socket" ]] && break
    sleep 0.5
done
munge --socket="$munge_socket" -n </dev/null | unmunge --socket="$munge_socket" >/dev/null ||
    die "munged does not answer; see $work/munge/munged.log"
echo "munged answers (pid ${pids[-1]})"

# ---------------------------------------------------------------------------------------------
node="$(hostname -s)"
node_line="$(slurmd -C | grep '^NodeName=')" || die "slurmd -C printed no node line"
step "slurm.conf: one node, $node_line"
cat >"$SLURM_CONF" <<EOF
# Written by scripts/slurm-check.sh: a one-node cluster on this machine.
ClusterName=ordocheck
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_socket
StateSaveLocation=$work/slurm/state
SlurmdSpoolDir=$work/slurm/spool
SlurmctldPidFile=$work/slurm/slurmctld.pid
SlurmdPidFile=$work/slurm/slurmd.pid
SlurmctldLogFile=$work/slurm/slurmctld.log
SlurmdLogFile=$work/slurm/slurmd.log
# No cgroups: processes are tracked through /proc, tasks are not bound to CPUs.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=check Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
sed 's/^/  /' "$SLURM_CONF"

step "slurmctld and slurmd (root)"
slurmctld -D -f "$SLURM_CONF" >"$work/slurm/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$node" >"$work/slurm/slurmd.out" 2>&1 &
pids+=($!)
slurm_up=1
state=""
for _ in $(seq 60); do
    state="$(sinfo -h -n "$node" -o %t 2>/dev/null || true)"
    [[ "$state" == idle ]] && break
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null ||
            die "a daemon exited (pid $pid); see $work/slurm/*.log and *.out"
    done
    sleep 1
done
[[ "$state" == idle ]] || die "node $node is '${state:-unknown}', not idle, after 60 s; see $work/slurm/*.log"
sinfo
started=$SECONDS

# ---------------------------------------------------------------------------------------------
# Two copies of the experiment with the same name and the same relative task paths, so that the
# two reports can be compared byte for byte (the report names the experiment and its task files).
for copy in single array; do
    mkdir -p "$work/$copy/experiments"
    cp "$experiment" "$work/$copy/experiments/"
    cp -r configs data "$work/$copy/"
done

step "job array: sbatch --array=1-$shards experiments/slurm.sbatch experiments/$name.toml (in $work/array)"
export ORDO_BIN="$ordo"
array_start=$SECONDS
job="$(cd "$work/array" &&
    sbatch --parsable --array="1-$shards" --output="$work/logs/%x-%A_%a.out" \
        "$repo/experiments/slurm.sbatch" "experiments/$name.toml")"
job="${job%%;*}"
echo "submitted job array $job"
# Poll rather than `sbatch --wait`, which backs off to 30 s between its checks.
last=""
while [[ -n "$(squeue -h -j "$job" -o %i 2>/dev/null || echo unknown)" ]]; do
    now="$(squeue -h -j "$job" -o '%i %T' | sort | tr '\n' ' ' || true)"
    [[ "$now" != "$last" ]] && echo "  +$((SECONDS - array_start))s: $now"
    last="$now"
    ((SECONDS - array_start < timeout)) || die "the job array is still running after ${timeout}s"
    sleep 2
done
array_time=$((SECONDS - array_start))
for log in "$work"/logs/*.out; do
    echo "--- $(basename "$log")"
    sed 's/^/  /' "$log"
done
# Without accounting (sacct), slurmctld remembers finished jobs for MinJobAge (300 s).
states="$(scontrol -o show job "$job" | awk '{
    for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v); f[k] = v }
    print "task " f["ArrayTaskId"] ": " f["JobState"] ", exit code " f["ExitCode"] }' | sort)"
echo "$states" | sed 's/^/  /'
[[ "$(grep -c ': COMPLETED, exit code 0:0$' <<<"$states")" == "$shards" ]] ||
    die "not every array task completed with exit code 0 (task logs above)"
echo "job array finished in ${array_time}s"

step "gather: ordo report $work/array/experiments/$name"
"$ordo" report "$work/array/experiments/$name"

step "single-machine reference: ordo ablate experiments/$name.toml (in $work/single)"
single_start=$SECONDS
(cd "$work/single" && nice -n 10 "$ordo" ablate "experiments/$name.toml")
single_time=$((SECONDS - single_start))
echo "single-machine run finished in ${single_time}s"

# ---------------------------------------------------------------------------------------------
step "compare: report.md and every cell's eval.json"
single="$work/single/experiments/$name"
array="$work/array/experiments/$name"
for dir in "$single" "$array"; do
    [[ -f "$dir/report.md" ]] || die "$dir/report.md: missing"
done
differ=0
if ! diff -u "$single/report.md" "$array/report.md"; then
    echo "report.md differs (- single machine, + job array)"
    differ=1
fi
cells_single="$(cd "$single/runs" && ls)"
cells_array="$(cd "$array/runs" && ls)"
if [[ "$cells_single" != "$cells_array" ]]; then
    echo "the cells differ:"
    diff <(echo "$cells_single") <(echo "$cells_array") || true
    differ=1
fi
n=0
for cell in $cells_single; do
    if ! cmp -s "$single/runs/$cell/eval.json" "$array/runs/$cell/eval.json"; then
        echo "$cell/eval.json differs:"
        diff "$single/runs/$cell/eval.json" "$array/runs/$cell/eval.json" | head -20 || true
        differ=1
    fi
    n=$((n + 1))
done
((differ == 0)) || die "the job array's report differs from the single-machine one"
echo "identical: report.md and $n eval.json files"
echo "times: cluster up after $((started - t0))s; job array ${array_time}s ($shards tasks); single machine ${single_time}s"
step "slurm-check passed"
