//! bfloat16 matrix products with fp32 accumulation (`train.precision = "bf16"`), on the
//! AVX512-BF16 dot-product instruction.
//!
//! [`matmul`] computes `c[m × n] = a[m × k] · b[k × n]` where every element of `a` and `b` is
//! first rounded to bfloat16 (round to nearest, ties to even: [`to_bf16`]) and the products are
//! summed in fp32. A bf16 × bf16 product is exact in fp32, so the result differs from
//! [`matmul_reference`] (the same rounding, a plain sequential fp32 sum) only by the order of
//! the fp32 additions, and by `vdpbf16ps` treating subnormal inputs and outputs as zero.
//!
//! # The kernel
//! `gemm` 0.19 (which burn's flex backend and the fp32 path use) has no kernel that uses
//! AVX512-BF16 or AMX, and oneDNN is a C++ system library that not every machine has, so the
//! kernel is written here with `std::arch`'s stable intrinsics: `vdpbf16ps` multiplies 16 pairs of
//! bf16 and adds each pair's sum to one of 16 fp32 lanes. A block of [`MR`] rows × 32 columns
//! of `c` lives in `2·MR` zmm registers; each step along `k` takes two `k` at once: one 64-byte
//! load per 16 columns of `b` (the pairs `b[2p][j], b[2p+1][j]` interleaved, the layout the
//! instruction reads), one broadcast of the pair `a[i][2p], a[i][2p+1]` per row, and `2·MR`
//! dot products. The operands are packed once per product into those layouts, rounded to bf16
//! on the way, from any strides (a transposed operand costs no separate copy), and zero-padded
//! to whole blocks.
//!
//! # Where it runs
//! Only where the CPU has AVX512-BF16 (Intel Cooper Lake, Sapphire Rapids and newer; AMD Zen 4
//! and newer); [`unit()`] says so, or why not in words a user can act on. There is no slow
//! fallback on purpose: a bf16 run on a CPU without it is refused when the configuration is
//! checked, rather than running slower than fp32. Intel's AMX tiles (`tdpbf16ps`, 16 × 16
//! fp32 tiles) are several times faster again; they are reached through oneDNN
//! ([`crate::onednn`], [`Unit::OneDnn`]) where its library is installed, chosen by [`unit`]
//! (`ORDO_BF16_KERNEL`). The machine this was written on (a KVM guest on an Emerald Rapids Xeon)
//! hides AMX from its guests (CPUID leaf 7 reports no AMX-TILE): a kernel of ordo's own for
//! AMX could not have been tested here, oneDNN's is Intel's.

use std::sync::OnceLock;

use rayon::prelude::*;

/// The kernel that runs [`matmul`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// ordo's own kernel: AVX-512 with the BF16 extension, `vdpbf16ps` on zmm registers.
    Avx512Bf16,
    /// oneDNN's matmul primitive ([`crate::onednn`]): AMX tiles where the CPU has them.
    OneDnn,
}

impl Unit {
    /// `"AVX512-BF16"` (ordo's kernel) or `"oneDNN"`.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Avx512Bf16 => "AVX512-BF16",
            Unit::OneDnn => "oneDNN",
        }
    }

    /// The name with what it runs on: `"oneDNN 2.6.3 (avx512_core_amx)"`,
    /// `"AVX512-BF16 (ordo's kernel)"`.
    pub fn describe(self) -> String {
        match self {
            Unit::Avx512Bf16 => "AVX512-BF16 (ordo's kernel)".into(),
            Unit::OneDnn => match crate::onednn::library() {
                Ok(lib) => format!("oneDNN {} ({})", lib.version(), lib.isa_name()),
                Err(_) => "oneDNN".into(),
            },
        }
    }
}

/// The environment variable that picks the kernel: `auto` (the default), `ordo` or `onednn`.
pub const KERNEL_VAR: &str = "ORDO_BF16_KERNEL";

/// The unit that runs bf16 products in this process, or why there is none: [`KERNEL_VAR`]
/// `= ordo` ordo's kernel (needs AVX512-BF16), `= onednn` oneDNN (needs its library and a CPU
/// it runs bf16 on natively), `auto` or unset oneDNN where it runs on AMX tiles, else ordo's
/// kernel. Read once per process.
pub fn unit() -> Result<Unit, String> {
    static UNIT: OnceLock<Result<Unit, String>> = OnceLock::new();
    UNIT.get_or_init(|| choose(std::env::var(KERNEL_VAR).ok().as_deref()))
        .clone()
}

/// [`unit`]'s [`Unit::describe`], `None` where there is no bf16 unit: what reports and run
/// summaries record as the kernel of their bf16 products.
pub fn kernel() -> Option<String> {
    unit().ok().map(Unit::describe)
}

/// [`unit`]'s choice for a value of [`KERNEL_VAR`].
fn choose(var: Option<&str>) -> Result<Unit, String> {
    let onednn =
        || crate::onednn::library().and_then(|_| self_test(Unit::OneDnn).map(|()| Unit::OneDnn));
    match var.unwrap_or("auto") {
        "ordo" => own_kernel().map(|()| Unit::Avx512Bf16),
        "onednn" => onednn().map_err(|e| format!("{KERNEL_VAR}=onednn: {e}")),
        // oneDNN on AMX; ordo's kernel otherwise, and where oneDNN failed its self-test (the
        // run's summary names the kernel that ran).
        "auto" | "" => match crate::onednn::library() {
            Ok(lib) if lib.has_amx() => {
                onednn().or_else(|_| own_kernel().map(|()| Unit::Avx512Bf16))
            }
            _ => own_kernel().map(|()| Unit::Avx512Bf16),
        },
        other => Err(format!(
            "{KERNEL_VAR}: expected auto, ordo or onednn, got {other:?}"
        )),
    }
}

/// A product of every edge size checked against [`matmul_reference`] before a unit is used.
fn self_test(unit: Unit) -> Result<(), String> {
    let (m, n, k) = (13, 35, 21);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 5 % 13) as f32 - 6.0) / 8.0)
        .collect();
    let (mut got, mut want) = (vec![0.0; m * n], vec![0.0; m * n]);
    matmul_on(
        unit,
        View::rows(&a, k),
        View::transposed(&b, k),
        &mut got,
        m,
        n,
        k,
    );
    matmul_reference(
        View::rows(&a, k),
        View::transposed(&b, k),
        &mut want,
        m,
        n,
        k,
    );
    // Quarters and eighths are exact in bf16 and their products and sums in fp32: equal.
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{} failed its self-test (a {m}x{n}x{k} product of exact values came out different)",
            unit.describe()
        ))
    }
}

#[cfg(target_arch = "x86_64")]
fn own_kernel() -> Result<(), String> {
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16") {
        Ok(())
    } else {
        Err(
            "this CPU has no AVX512-BF16 (Intel Cooper Lake or Sapphire Rapids and newer, \
             AMD Zen 4 and newer have it); bf16 training needs it, use precision = \"fp32\""
                .into(),
        )
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn own_kernel() -> Result<(), String> {
    Err("bf16 products need AVX512-BF16, an x86-64 extension; use precision = \"fp32\"".into())
}

/// `x` rounded to the nearest bfloat16 (ties to even), as its 16 bits; a NaN stays a (quiet) NaN.
/// Branch-free, so that the packing loops vectorise.
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    let quiet = (bits >> 16) | 0x0040;
    (if bits & 0x7fff_ffff > 0x7f80_0000 {
        quiet
    } else {
        rounded
    }) as u16
}

/// The fp32 value of a bfloat16.
#[inline]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// A matrix operand: element `(i, j)` at `data[i * row + j * col]`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    /// Stride between rows.
    pub row: usize,
    /// Stride between columns.
    pub col: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> View<'a> {
        View {
            data,
            row: cols,
            col: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> View<'a> {
        View {
            data,
            row: 1,
            col: cols,
        }
    }

    #[inline]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row + j * self.col]
    }

    fn check(&self, rows: usize, cols: usize, name: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.row + (cols - 1) * self.col;
            assert!(
                last < self.data.len(),
                "bf16::matmul: operand {name} ({rows} x {cols}) reaches element {last} of {}",
                self.data.len()
            );
        }
    }
}

/// `c = a · b` with both operands rounded to bf16 and the sums in fp32, sequentially in `k`:
/// the definition [`matmul`] is tested against.
pub fn matmul_reference(a: View, b: View, c: &mut [f32], m: usize, n: usize, k: usize) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for p in 0..k {
                s += from_bf16(to_bf16(a.at(i, p))) * from_bf16(to_bf16(b.at(p, j)));
            }
            c[i * n + j] = s;
        }
    }
}

/// Rows of `c` per register block.
pub const MR: usize = 12;
/// Columns of `c` per register block (two zmm of 16 fp32).
const NR: usize = 32;

/// Two bf16 (`lo` in the low half) as the 32-bit lane `vdpbf16ps` reads.
#[inline]
fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | (to_bf16(hi) as u32) << 16
}

/// Packs the `lines` lines of a panel as pairs along `k`: element `p` of line `r` is
/// `data[r * ls + p * ps]`, and the pair `p` of line `r` goes to `dst[p * width + r]` (an odd
/// `k`'s last pair is padded with zero). Lines past `lines` stay as they are (zeros).
fn pack_panel(
    data: &[f32],
    (ls, ps): (usize, usize),
    lines: usize,
    k: usize,
    width: usize,
    dst: &mut [u32],
) {
    let pairs = k.div_ceil(2);
    if ps == 1 {
        // Each line contiguous (a row-major `a`, a transposed `b`): rounded a line at a time
        // into pairs, then spread.
        let mut line_pairs = vec![0u32; pairs];
        for r in 0..lines {
            let line = &data[r * ls..r * ls + k];
            for (out, two) in line_pairs.iter_mut().zip(line.chunks_exact(2)) {
                *out = pair(two[0], two[1]);
            }
            if k % 2 == 1 {
                line_pairs[pairs - 1] = pair(line[k - 1], 0.0);
            }
            for (p, &v) in line_pairs.iter().enumerate() {
                dst[p * width + r] = v;
            }
        }
    } else if ls == 1 {
        // The lines side by side (a transposed `a`, a row-major `b`): element `p` of every
        // line is one contiguous run.
        for p in 0..pairs {
            let out = &mut dst[p * width..p * width + lines];
            let lo = &data[2 * p * ps..2 * p * ps + lines];
            if 2 * p + 1 < k {
                let hi = &data[(2 * p + 1) * ps..(2 * p + 1) * ps + lines];
                for ((o, &x), &y) in out.iter_mut().zip(lo).zip(hi) {
                    *o = pair(x, y);
                }
            } else {
                for (o, &x) in out.iter_mut().zip(lo) {
                    *o = pair(x, 0.0);
                }
            }
        }
    } else {
        for p in 0..pairs {
            for r in 0..lines {
                let hi = if 2 * p + 1 < k {
                    data[r * ls + (2 * p + 1) * ps]
                } else {
                    0.0
                };
                dst[p * width + r] = pair(data[r * ls + 2 * p * ps], hi);
            }
        }
    }
}

/// An operand of `lines` lines along `k` (line `r`, element `p` at `data[r * ls + p * ps]`) in
/// panels of `width` lines, each panel [`pack_panel`]'s layout: `a` [m × k] as panels of [`MR`]
/// rows, `b` [k × n] as panels of [`NR`] columns (two zmm loads). Lines past `lines` are zeros.
fn pack(data: &[f32], (ls, ps): (usize, usize), lines: usize, k: usize, width: usize) -> Vec<u32> {
    let pairs = k.div_ceil(2);
    let mut out = vec![0u32; lines.div_ceil(width) * pairs * width];
    out.par_chunks_mut(pairs * width)
        .enumerate()
        .for_each(|(panel, dst)| {
            let first = panel * width;
            let lines = width.min(lines - first);
            pack_panel(&data[first * ls..], (ls, ps), lines, k, width, dst);
        });
    out
}

/// `c[m × n] = a[m × k] · b[k × n]` in bf16 with fp32 sums (see the module doc), `c` row-major.
///
/// # Panics
/// If [`unit()`] is an error (callers check it once, when the configuration is read), or an
/// operand does not hold its `m`, `n`, `k` elements.
pub fn matmul(a: View, b: View, c: &mut [f32], m: usize, n: usize, k: usize) {
    let unit = unit().unwrap_or_else(|why| panic!("bf16::matmul: {why}"));
    matmul_on(unit, a, b, c, m, n, k);
}

/// [`matmul`] on a given unit (both are tested, and timed by `ordo bench --gemm`, where the
/// machine has them).
///
/// # Panics
/// If the unit is not available here ([`unit`] checks that), or an operand does not hold its
/// `m`, `n`, `k` elements.
pub fn matmul_on(unit: Unit, a: View, b: View, c: &mut [f32], m: usize, n: usize, k: usize) {
    a.check(m, k, "a");
    b.check(k, n, "b");
    assert_eq!(c.len(), m * n, "bf16::matmul: c holds m x n elements");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    match unit {
        Unit::OneDnn => {
            let lib = crate::onednn::library().unwrap_or_else(|why| panic!("bf16::matmul: {why}"));
            lib.matmul(a, b, c, m, n, k);
        }
        Unit::Avx512Bf16 => {
            if let Err(why) = own_kernel() {
                panic!("bf16::matmul: {why}");
            }
            let pairs = k.div_ceil(2);
            let (mp, np) = (m.div_ceil(MR), n.div_ceil(NR));
            let ap = pack(a.data, (a.row, a.col), m, k, MR);
            let bp = pack(b.data, (b.col, b.row), n, k, NR);
            // Bands of row panels, one task each; within a band, each panel of `b` is used
            // for every row panel while it is in cache.
            const BAND: usize = 4;
            c.par_chunks_mut(BAND * MR * n)
                .enumerate()
                .for_each(|(band, rows)| {
                    let mut out = [0f32; MR * NR];
                    let first = band * BAND;
                    for jp in 0..np {
                        let bpanel = &bp[jp * pairs * NR..(jp + 1) * pairs * NR];
                        let (j0, width) = (jp * NR, (n - jp * NR).min(NR));
                        for ip in first..(first + BAND).min(mp) {
                            let apanel = &ap[ip * pairs * MR..(ip + 1) * pairs * MR];
                            // SAFETY: `own_kernel()` found AVX512-BF16; the panels hold `pairs`
                            // steps each.
                            unsafe { avx512::block(apanel, bpanel, &mut out) };
                            let i0 = (ip - first) * MR;
                            for r in 0..MR.min(m - ip * MR) {
                                let row = (i0 + r) * n + j0;
                                rows[row..row + width]
                                    .copy_from_slice(&out[r * NR..r * NR + width]);
                            }
                        }
                    }
                });
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// `out[MR × NR] = Σ_p apanel[p] ⊗ bpanel[p]` over the pairs of `k` in the panels.
    ///
    /// # Safety
    /// The CPU has AVX-512F and AVX512-BF16; `bpanel` holds `NR / MR` times as many lanes as
    /// `apanel`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn block(apanel: &[u32], bpanel: &[u32], out: &mut [f32; MR * NR]) {
        let pairs = apanel.len() / MR;
        debug_assert_eq!(bpanel.len(), pairs * NR);
        let mut lo = [_mm512_setzero_ps(); MR];
        let mut hi = [_mm512_setzero_ps(); MR];
        let (a, b) = (apanel.as_ptr(), bpanel.as_ptr());
        for p in 0..pairs {
            // SAFETY: p < pairs, so 32 lanes from p·NR and MR lanes from p·MR are in bounds.
            unsafe {
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR).cast()));
                let b1: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16).cast()));
                for r in 0..MR {
                    let ar: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(p * MR + r) as i32));
                    lo[r] = _mm512_dpbf16_ps(lo[r], ar, b0);
                    hi[r] = _mm512_dpbf16_ps(hi[r], ar, b1);
                }
            }
        }
        for r in 0..MR {
            // SAFETY: `out` holds MR rows of NR = 32 floats.
            unsafe {
                _mm512_storeu_ps(out.as_mut_ptr().add(r * NR), lo[r]);
                _mm512_storeu_ps(out.as_mut_ptr().add(r * NR + 16), hi[r]);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    pub(super) unsafe fn block(_: &[u32], _: &[u32], _: &mut [f32; super::MR * super::NR]) {
        unreachable!("unit() is an error off x86-64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(from_bf16(to_bf16(1.0 + 2f32.powi(-8))), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to the even one, 1 + 2^-6.
        assert_eq!(
            from_bf16(to_bf16(1.0 + 3.0 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-6)
        );
        // Just above halfway rounds up.
        assert_eq!(
            from_bf16(to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20))),
            1.0 + 2f32.powi(-7)
        );
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        // The largest finite fp32 rounds up to infinity, as in every bf16 conversion.
        assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY);
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Every edge of the blocking (sizes off the 12/32 grid, odd k) and every packing path:
    /// each operand row-major, transposed, and with neither stride 1.
    /// The units this machine has: ordo's kernel where the CPU has AVX512-BF16, oneDNN where
    /// its library loads and runs bf16 natively.
    fn units() -> Vec<Unit> {
        let mut units = Vec::new();
        match own_kernel() {
            Ok(()) => units.push(Unit::Avx512Bf16),
            Err(why) => eprintln!("ordo's kernel skipped on this CPU: {why}"),
        }
        match crate::onednn::library() {
            Ok(_) => units.push(Unit::OneDnn),
            Err(why) => eprintln!("oneDNN skipped: {why}"),
        }
        units
    }

    #[test]
    fn the_kernels_match_the_reference_where_the_machine_has_them() {
        for unit in units() {
            every_layout_matches_the_reference(unit);
        }
    }

    fn every_layout_matches_the_reference(unit: Unit) {
        for &(m, n, k) in &[
            (1, 1, 1),
            (16, 16, 32),
            (33, 17, 31),
            (70, 50, 97),
            (64, 256, 256),
            (13, 33, 2),
            (25, 64, 300),
        ] {
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            // The same matrices stored transposed, and with padded rows (neither stride 1).
            let transpose = |x: &[f32], rows: usize, cols: usize| -> Vec<f32> {
                (0..rows * cols)
                    .map(|i| x[(i % rows) * cols + i / rows])
                    .collect()
            };
            let (at, bt) = (transpose(&a, m, k), transpose(&b, k, n));
            // Every other element, every other row: neither stride is 1 (the generic path).
            let spread = |x: &[f32], cols: usize| -> Vec<f32> {
                x.chunks(cols)
                    .flat_map(|r| {
                        let row: Vec<f32> = r.iter().flat_map(|&v| [v, 7.0]).collect();
                        row.into_iter().chain(std::iter::repeat_n(7.0, 2 * cols))
                    })
                    .collect()
            };
            let (asp, bsp) = (spread(&a, k), spread(&b, n));
            fn strided(data: &[f32], cols: usize) -> View<'_> {
                View {
                    data,
                    row: 4 * cols,
                    col: 2,
                }
            }
            let mut want = vec![0.0; m * n];
            matmul_reference(View::rows(&a, k), View::rows(&b, n), &mut want, m, n, k);
            let lefts = [
                View::rows(&a, k),
                View::transposed(&at, m),
                strided(&asp, k),
            ];
            let rights = [
                View::rows(&b, n),
                View::transposed(&bt, k),
                strided(&bsp, n),
            ];
            for (av, bv) in lefts
                .iter()
                .flat_map(|a| rights.iter().map(move |b| (*a, *b)))
            {
                let mut got = vec![f32::NAN; m * n];
                matmul_on(unit, av, bv, &mut got, m, n, k);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    // Only the order of fp32 sums of k terms of magnitude < 1 differs.
                    assert!(
                        (g - w).abs() <= 1e-6 * k as f32,
                        "{unit:?} {m}x{n}x{k} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// The kernel variable: each value's unit or its error, and a clear error for a bad value.
    #[test]
    fn the_kernel_variable_picks_the_unit_or_says_why_not() {
        let bad = choose(Some("mkl")).unwrap_err();
        assert!(bad.contains(KERNEL_VAR) && bad.contains("\"mkl\""), "{bad}");
        assert_eq!(
            choose(Some("ordo")).ok(),
            own_kernel().ok().map(|()| Unit::Avx512Bf16)
        );
        match (choose(Some("onednn")), crate::onednn::library()) {
            (Ok(u), Ok(_)) => assert_eq!(u, Unit::OneDnn),
            (Err(e), Err(why)) => assert!(e.contains(KERNEL_VAR) && e.contains(&why), "{e}"),
            (got, lib) => panic!("onednn: {got:?} with the library {:?}", lib.err()),
        }
        // auto: oneDNN only on AMX, else ordo's kernel where the CPU has it.
        let amx = crate::onednn::library().is_ok_and(|l| l.has_amx());
        let auto = choose(None);
        if amx {
            assert_eq!(auto, Ok(Unit::OneDnn));
        } else {
            assert_eq!(
                auto.clone().ok(),
                own_kernel().ok().map(|()| Unit::Avx512Bf16)
            );
        }
        assert_eq!(choose(Some("auto")), auto);
    }
}
