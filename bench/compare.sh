#!/usr/bin/env bash
# ordo vs PyTorch + x-transformers on this machine: training and evaluation tokens/s and peak
# memory, side by side with their ratio (ordo / PyTorch). Optional; never part of CI.
#
#   bench/compare.sh [OPTIONS...]
#
# OPTIONS go to both `ordo bench` and bench/pytorch_bench.py, which share these:
#   --shapes tiny,small,medium  --encodings none,sinusoidal,learned,t5,shaw,rope,alibi
#   --eval-shapes small  --eval-factors 1,4,8  --eval-tokens 8192  --steps 10  --warmup 2  --seed 0
# e.g. `bench/compare.sh --shapes tiny --encodings rope,alibi --steps 5`.
#
# Both also time matrix products (`--gemm`: the square 2048³ limit and each shape's dense products,
# PyTorch in fp32 and bfloat16), and PyTorch's training is measured in every variant a PyTorch
# user picks: TRAIN_VARIANTS (default math,fused,compile,bf16,bf16-compile; see
# bench/README.md). torch.compile takes ~0.5-1 min per model on 2 cores.
#
# Environment: OUT_DIR (default runs/bench: ordo.json, pytorch.json, compare.txt),
# CARGO_TARGET_DIR (default $HOME/.cache/ordo-target, as CI), PYTHON (default python3, to create
# the virtual environment), ORDO (an ordo executable to use instead of building one),
# SKIP_ORDO=1 / SKIP_PYTORCH=1 to reuse the other tool's last JSON. On a CPU with AVX512-BF16,
# ordo's training and evaluation are measured a second time with `--precision bf16`
# (ordo-bf16.json; ORDO_BF16=0 skips it) and set beside PyTorch's autocast variants.
#
# The first run creates bench/.venv and installs torch 2.x and x-transformers from PyPI. PyPI's
# Linux torch wheel is the CUDA build: with its nvidia-* dependencies the environment is ~5.5 GB,
# though everything here runs on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/bench/.venv
OUT_DIR=${OUT_DIR:-$ROOT/runs/bench}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ordo-target}
TORCH_SPEC='torch==2.*'
XT_SPEC='x-transformers==2.31.10'

# 1. The Python environment (idempotent).
if ! "$VENV/bin/python" -c 'import torch, x_transformers' >/dev/null 2>&1; then
    echo "== creating $VENV and installing $TORCH_SPEC $XT_SPEC (a few GB from PyPI, minutes)" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --progress-bar off "$TORCH_SPEC" "$XT_SPEC"
fi
"$VENV/bin/python" - <<'EOF' >&2
import torch
from importlib.metadata import version
print(f"== torch {torch.__version__}, x-transformers {version('x-transformers')}")
EOF

# 2. ordo, built in release mode (unless ORDO names an executable).
if [[ -z "${SKIP_ORDO:-}" && -z "${ORDO:-}" ]]; then
    echo "== cargo build --release -p ordo-cli" >&2
    cargo build --release --quiet -p ordo-cli
fi
ORDO=${ORDO:-$CARGO_TARGET_DIR/release/ordo}

# Raised priority where permitted (root or CAP_SYS_NICE), else as is.
if nice -n -5 true 2>/dev/null; then
    PRIO=(nice -n -5)
    echo "== running both benchmarks at nice -5" >&2
else
    PRIO=()
    echo "== nice -n -5 not permitted: running at normal priority" >&2
fi

# x-transformers has no FIRE: unless told otherwise, both measure the encodings both have.
if [[ " $* " != *" --encodings "* && " $* " != *" --encodings="* ]]; then
    set -- --encodings none,sinusoidal,learned,t5,shaw,rope,alibi "$@"
fi

TRAIN_VARIANTS=${TRAIN_VARIANTS:-math,fused,compile,bf16,bf16-compile}
set -- --gemm "$@"

mkdir -p "$OUT_DIR"
grep -m1 '^model name' /proc/cpuinfo >&2 || true
# 3. One after the other, never side by side: each wants every core.
if [[ -z "${SKIP_ORDO:-}" ]]; then
    echo "== ordo bench --json $*" >&2
    "${PRIO[@]}" "$ORDO" bench --json --out "$OUT_DIR/ordo.json" "$@" >/dev/null \
        || echo "== ordo bench reported failures (see above); comparing what it measured" >&2
fi
BF16_JSON=()
if grep -qw avx512_bf16 /proc/cpuinfo && [[ "${ORDO_BF16:-1}" != 0 ]]; then
    if [[ -z "${SKIP_ORDO:-}" ]]; then
        # Without --gemm: the fp32 run's --gemm already timed every product in bf16 too.
        args=()
        for a in "$@"; do [[ "$a" != --gemm ]] && args+=("$a"); done
        echo "== ordo bench --json --precision bf16 ${args[*]}" >&2
        "${PRIO[@]}" "$ORDO" bench --json --precision bf16 --out "$OUT_DIR/ordo-bf16.json" \
            "${args[@]}" >/dev/null \
            || echo "== ordo bench --precision bf16 reported failures (see above)" >&2
    fi
    [[ -f "$OUT_DIR/ordo-bf16.json" ]] && BF16_JSON=("$OUT_DIR/ordo-bf16.json")
fi
if [[ -z "${SKIP_PYTORCH:-}" ]]; then
    echo "== bench/pytorch_bench.py --json $*" >&2
    "${PRIO[@]}" "$VENV/bin/python" bench/pytorch_bench.py --json --out "$OUT_DIR/pytorch.json" \
        --train-variants "$TRAIN_VARIANTS" "$@" >/dev/null \
        || echo "== pytorch_bench.py reported failures (see above); comparing what it measured" >&2
fi

# 4. Side by side.
"$VENV/bin/python" bench/pytorch_bench.py --compare "$OUT_DIR/ordo.json" "$OUT_DIR/pytorch.json" \
    "${BF16_JSON[@]}" | tee "$OUT_DIR/compare.txt"
echo "wrote $OUT_DIR/ordo.json, $OUT_DIR/pytorch.json, $OUT_DIR/compare.txt" >&2
