#!/usr/bin/env bash
# Checks and measures ordo's bf16 products on oneDNN (crates/kernels/src/onednn.rs) against its
# own AVX512-BF16 kernel on this machine, by hand (not part of CI).
#
# oneDNN is the route to Intel's AMX tiles (Sapphire Rapids and newer): ordo opens
# `libdnnl.so.2` at run time, which Debian 12 / Ubuntu 22.04 install from the package `libdnnl2`
# (`libdnnl-dev` adds the header that one test checks ordo's constants against). It:
#   1. installs libdnnl2 and libdnnl-dev if the library is missing (needs root; SKIP_APT=1 skips);
#   2. runs the bf16 tests of the kernels and of training with ORDO_BF16_KERNEL=onednn (every
#      operand layout against the reference, and a short copy run that must track fp32 and
#      resume exactly) and with ORDO_BF16_KERNEL=ordo where the CPU has AVX512-BF16;
#   3. measures `ordo bench --gemm --precision bf16` with each kernel, alternating, PAIRS times
#      (default 2), and prints the bf16 kernel each used ("oneDNN 2.6.3 (avx512_core_amx)" means
#      AMX tiles) and the tokens/s, beside one fp32 run.
# Exit 0 only if every test passed. Run it on a quiet machine: the figures are only comparable
# between runs of the same call.
#
# Usage: sudo scripts/onednn-check.sh
#   PAIRS=3 SHAPES=small,medium SKIP_APT=1 CARGO_TARGET_DIR=... scripts/onednn-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS="${PAIRS:-2}"
SHAPES="${SHAPES:-tiny,small,medium}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordo-target}"
say() { printf '== %s\n' "$*"; }

if [[ -z "${SKIP_APT:-}" ]] && ! ldconfig -p | grep -q 'libdnnl\.so\.2 '; then
    say "installing oneDNN (libdnnl2 libdnnl-dev)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libdnnl2 libdnnl-dev >/dev/null
fi
flags=$(grep -m1 '^flags' /proc/cpuinfo | grep -o -w 'avx512_bf16\|amx_bf16\|amx_tile' | tr '\n' ' ' || true)
say "CPU:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) (${flags:-no bf16 instructions})"

say "tests with ORDO_BF16_KERNEL=onednn"
ORDO_BF16_KERNEL=onednn cargo test --release -p ordo-kernels --lib -- bf16 onednn
ORDO_BF16_KERNEL=onednn cargo test --release -p ordo-train --test train -- bf16
kernels=(onednn)
if grep -q -m1 -w avx512_bf16 /proc/cpuinfo; then
    say "tests with ORDO_BF16_KERNEL=ordo"
    ORDO_BF16_KERNEL=ordo cargo test --release -p ordo-train --test train -- bf16
    kernels=(ordo onednn)
fi

cargo build --release -p ordo-cli
ORDO="$CARGO_TARGET_DIR/release/ordo"
for pair in $(seq "$PAIRS"); do
    for kernel in "${kernels[@]}"; do
        say "bf16 on $kernel (pair $pair)"
        ORDO_BF16_KERNEL=$kernel "$ORDO" bench --shapes "$SHAPES" --encodings none,rope \
            --eval-shapes none --steps 8 --precision bf16 --gemm 2>/dev/null |
            grep -E '^(bf16 products|matrix products|tiny |small |medium )' |
            grep -v ' x w \| dy \| xᵀ '
    done
done
say "fp32"
"$ORDO" bench --shapes "$SHAPES" --encodings none,rope --eval-shapes none --steps 8 2>/dev/null |
    grep -E '^(tiny|small|medium) '
say "all oneDNN checks passed"
