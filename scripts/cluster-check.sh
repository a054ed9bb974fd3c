#!/usr/bin/env bash
# Checks, on one machine, the two cluster setups that plain shards on one file system do not
# cover (README "On a cluster"):
#   1. containers: every shard in a PID namespace of its own (`unshare --pid --fork
#      --mount-proc`, as docker, Kubernetes, enroot or apptainer --containall give), so every
#      ordo is pid 1; more array tasks than cells, and every shard started twice;
#   2. node-local locks: one directory mounted twice with bindfs (FUSE), so that flock on one
#      mount does not see flock on the other, as two nodes on BeeGFS, Lustre `localflock` or NFS
#      `local_lock=flock` do; shards and duplicates run from both mounts at once.
# Each part runs experiments/slurm_check.toml (6 cells of 300 steps) and compares report.md and
# every cell's eval.json byte for byte with a plain `ordo ablate` of the same file, and checks
# that every cell was trained exactly once (one "done in" line per cell over all processes).
#
#   sudo scripts/cluster-check.sh              # as root: unshare and FUSE mounts need it
#   ORDO_BIN=target/release/ordo SHARDS=8 sudo -E scripts/cluster-check.sh
#
# Installs `bindfs` with apt-get if missing. Unmounts what it mounts and removes its temporary
# directory on exit, also on failure or Ctrl-C. Not part of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$(date +%s)
say() { echo "== [$(date +%H:%M:%S), +$(($(date +%s) - start))s] $*"; }

[ "$(id -u)" = 0 ] || { echo "run as root (unshare --pid and FUSE mounts need it)" >&2; exit 1; }
ORDO_BIN=${ORDO_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/ordo}
if [ ! -x "$ORDO_BIN" ]; then
    say "building ordo"
    cargo build --release
fi
ORDO_BIN=$(realpath "$ORDO_BIN")
SHARDS=${SHARDS:-8}
command -v bindfs >/dev/null || { say "installing bindfs"; apt-get install -y --no-install-recommends bindfs >/dev/null; }

work=$(mktemp -d /tmp/ordo-cluster-check.XXXXXX)
mounts=()
cleanup() {
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || fusermount -u "$m" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

# A copy of the tree the experiment reads (configs, data, the experiment file), at `$1`.
stage() {
    mkdir -p "$1/experiments"
    cp -r "$root/configs" "$root/data" "$1/"
    cp "$root/experiments/slurm_check.toml" "$1/experiments/"
}

# Compares `$1/experiments/slurm_check` with the reference run, and counts trainings in logs `$2`.
compare() {
    local dir=$1/experiments/slurm_check logs=$2
    cmp "$work/ref/experiments/slurm_check/report.md" "$dir/report.md"
    local n=0
    for eval in "$work"/ref/experiments/slurm_check/runs/*/eval.json; do
        cell=$(basename "$(dirname "$eval")")
        cmp "$eval" "$dir/runs/$cell/eval.json"
        n=$((n + 1))
    done
    local trained
    trained=$(cat "$logs"/*.out | grep -c " done in " || true)
    echo "identical: report.md and $n eval.json files; cells trained: $trained (expected $n)"
    [ "$trained" = "$n" ]
    if ls "$dir"/runs/*/.claim >/dev/null 2>&1; then echo "claims left behind" >&2; return 1; fi
}

# Runs shards 1..SHARDS of `$2`, each twice, concurrently; `$1` wraps each command; logs in `$3`.
# Exit codes 0 (done, or an empty shard) and 4 (cells held by a twin) are expected.
shards() {
    local wrap=$1 exp=$2 logs=$3 pids=() codes=0
    mkdir -p "$logs"
    for twin in a b; do
        for i in $(seq 1 "$SHARDS"); do
            $wrap "$ORDO_BIN" ablate "$exp" --shard "$i/$SHARDS" >"$logs/$i$twin.out" 2>&1 &
            pids+=($!)
        done
    done
    for p in "${pids[@]}"; do
        wait "$p" || { c=$?; [ "$c" = 4 ] || { echo "a shard exited $c" >&2; codes=1; }; }
    done
    grep -h "^error\|FAILED\|panicked" -A3 "$logs"/*.out >&2 && codes=1
    return $codes
}

say "reference: plain ordo ablate"
stage "$work/ref"
(cd "$work/ref" && "$ORDO_BIN" ablate experiments/slurm_check.toml >/dev/null 2>&1)

say "1. $SHARDS shards x 2, each in its own PID namespace (every ordo is pid 1)"
stage "$work/pidns"
(cd "$work/pidns" && shards "unshare --pid --fork --mount-proc" experiments/slurm_check.toml "$work/logs-pidns")
"$ORDO_BIN" report "$work/pidns/experiments/slurm_check" >/dev/null
compare "$work/pidns" "$work/logs-pidns"

say "2. one directory, two bindfs mounts (flock on one does not see the other)"
mkdir -p "$work/shared" "$work/mount-a" "$work/mount-b"
stage "$work/shared"
bindfs "$work/shared" "$work/mount-a" && mounts+=("$work/mount-a")
bindfs "$work/shared" "$work/mount-b" && mounts+=("$work/mount-b")
mkdir -p "$work/logs-fuse"
pids=()
for side in a b; do
    for i in $(seq 1 "$SHARDS"); do
        (cd "$work/mount-$side" && exec "$ORDO_BIN" ablate experiments/slurm_check.toml --shard "$i/$SHARDS") \
            >"$work/logs-fuse/$i$side.out" 2>&1 &
        pids+=($!)
    done
done
failed=0
for p in "${pids[@]}"; do
    wait "$p" || { c=$?; [ "$c" = 4 ] || { echo "a shard exited $c" >&2; failed=1; }; }
done
[ "$failed" = 0 ] || { grep -h "^error" -A3 "$work"/logs-fuse/*.out | head -20 >&2; exit 1; }
{ grep -h "note: .*FUSE" "$work"/logs-fuse/*.out || echo "(no node-local-lock note printed)"; } | sed -n 1p
"$ORDO_BIN" report "$work/mount-a/experiments/slurm_check" >/dev/null
compare "$work/shared" "$work/logs-fuse"

say "cluster-check passed"
