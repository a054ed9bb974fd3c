#!/usr/bin/env bash
# Checks ordo's GPU path (burn's wgpu backend) on this machine, by hand (not part of CI).
#
# Without a GPU it runs on Mesa's software Vulkan (lavapipe), installed from Debian's packages
# `mesa-vulkan-drivers` and `libvulkan1`; on a machine with a GPU and its Vulkan (or Metal/DX12)
# driver, it uses that. It:
#   1. builds ordo with `--features wgpu` (about 26 minutes cold on 2 cores);
#   2. trains a small copy model for STEPS steps on the CPU (flex) and on wgpu, same seed;
#   3. kills a second wgpu run part-way (after its first checkpoint) and resumes it
#      (`ordo train --resume`, on wgpu);
#   4. evaluates the wgpu run (`ordo eval --device wgpu`) and measures `ordo bench --device wgpu`;
#   5. compares the logged training losses of CPU, wgpu and resumed-wgpu runs: every logged loss
#      must agree within TOLERANCE (relative), default 1e-3. Both start from the same weights
#      (ordo draws them on the CPU for every device); GPU reductions sum in another order, so
#      bit equality is not expected: measured on lavapipe, 60 steps agree to ~1e-7. A wrong
#      kernel or lost optimizer state is far off.
# Exit 0 only if everything ran and the losses agree.
#
# Usage: scripts/wgpu-check.sh            (as root on Debian, for the apt step)
#   STEPS=60 TOLERANCE=1e-3 SKIP_APT=1 CARGO_TARGET_DIR=... scripts/wgpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-60}"
TOLERANCE="${TOLERANCE:-1e-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordo-target-wgpu}"
WORK="$(mktemp -d /tmp/ordo-wgpu-check.XXXXXX)"
say() { printf '== %s\n' "$*"; }

if [[ -z "${SKIP_APT:-}" ]] && ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
    say "installing Vulkan (mesa-vulkan-drivers libvulkan1)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi
# wgpu wants a runtime directory; without one it prints a harmless error.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$WORK/xdg}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

say "building ordo with --features wgpu (target dir $CARGO_TARGET_DIR)"
cargo build --release --features wgpu -p ordo-cli
ORDO="$CARGO_TARGET_DIR/release/ordo"

cat >"$WORK/copy.toml" <<EOF
seed = 7
[model]
d_model = 32
n_heads = 2
n_layers = 2
[model.encoding]
kind = "rope"
[task]
kind = "copy"
symbols = 8
max_len = 6
[train]
steps = $STEPS
batch_size = 16
log_every = 10
eval_every = $STEPS
eval_examples = 64
checkpoint_every = 10
EOF
common=(--set "out_dir=$WORK/runs" --quiet)

say "training on the CPU (flex)"
"$ORDO" train "$WORK/copy.toml" "${common[@]}" --set name=cpu --device cpu
say "training on wgpu"
time "$ORDO" train "$WORK/copy.toml" "${common[@]}" --set name=gpu --device wgpu

say "training on wgpu, killed after its first checkpoint, then resumed on wgpu"
"$ORDO" train "$WORK/copy.toml" "${common[@]}" --set name=killed --device wgpu &
pid=$!
until [[ -f "$WORK/runs/killed/checkpoint/state.json" ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "the run ended before its first checkpoint"; exit 1; fi
    sleep 1
done
kill -9 "$pid"
wait "$pid" || true
"$ORDO" train --resume "$WORK/runs/killed" --device wgpu --quiet

say "evaluating the wgpu run on wgpu"
"$ORDO" eval "$WORK/runs/gpu" --device wgpu --examples 16 --max-factor 2

say "benchmark on wgpu"
"$ORDO" bench --device wgpu --shapes tiny --encodings rope --eval-shapes none --steps 5 --warmup 1

say "comparing logged training losses (tolerance $TOLERANCE, relative)"
python3 - "$WORK/runs" "$TOLERANCE" <<'PY'
import json, sys
runs, tol = sys.argv[1], float(sys.argv[2])
def losses(name):
    out = {}
    for line in open(f"{runs}/{name}/metrics.jsonl"):
        r = json.loads(line)
        if r["kind"] == "train":
            out[r["step"]] = r["loss"]
    return out
cpu, gpu, resumed = losses("cpu"), losses("gpu"), losses("killed")
worst = 0.0
for step in sorted(cpu):
    for name, other in (("wgpu", gpu), ("resumed wgpu", resumed)):
        if step not in other:
            sys.exit(f"{name}: no loss logged at step {step}")
        rel = abs(other[step] - cpu[step]) / abs(cpu[step])
        worst = max(worst, rel)
        print(f"step {step:4d}  cpu {cpu[step]:.6f}  {name} {other[step]:.6f}  rel {rel:.1e}")
print(f"largest relative difference {worst:.1e} (tolerance {tol})")
sys.exit(0 if worst <= tol else 1)
PY
say "wgpu check passed; work files in $WORK"
