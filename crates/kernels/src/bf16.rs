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
//! AVX512-BF16 or AMX, and oneDNN would be a C++ system library behind a feature, so the kernel
//! is written here with `std::arch`'s stable intrinsics: `vdpbf16ps` multiplies 16 pairs of
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
//! fp32 tiles) would be several times faster again; the machine this was written on (a KVM
//! guest on an Emerald Rapids Xeon) hides AMX from its guests (CPUID leaf 7 reports no
//! AMX-TILE), so an AMX kernel could not be tested here and is not shipped.

use std::sync::OnceLock;

use rayon::prelude::*;

/// The hardware that runs [`matmul`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// AVX-512 with the BF16 extension: `vdpbf16ps` on zmm registers.
    Avx512Bf16,
}

impl Unit {
    /// `"AVX512-BF16"`.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Avx512Bf16 => "AVX512-BF16",
        }
    }
}

/// The unit that runs bf16 products on this machine, or why there is none.
pub fn unit() -> Result<Unit, String> {
    static UNIT: OnceLock<Result<Unit, String>> = OnceLock::new();
    UNIT.get_or_init(detect).clone()
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Result<Unit, String> {
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16") {
        Ok(Unit::Avx512Bf16)
    } else {
        Err(
            "this CPU has no AVX512-BF16 (Intel Cooper Lake or Sapphire Rapids and newer, \
             AMD Zen 4 and newer have it); bf16 training needs it, use precision = \"fp32\""
                .into(),
        )
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Result<Unit, String> {
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
    let pairs = k.div_ceil(2);
    let (mp, np) = (m.div_ceil(MR), n.div_ceil(NR));
    let ap = pack(a.data, (a.row, a.col), m, k, MR);
    let bp = pack(b.data, (b.col, b.row), n, k, NR);
    match unit {
        Unit::Avx512Bf16 => {
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
                            // SAFETY: `unit()` found AVX512-BF16; the panels hold `pairs`
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
    #[test]
    fn the_kernel_matches_the_reference_where_the_cpu_has_it() {
        if let Err(why) = unit() {
            eprintln!("skipped on this CPU: {why}");
            return;
        }
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
                matmul(av, bv, &mut got, m, n, k);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    // Only the order of fp32 sums of k terms of magnitude < 1 differs.
                    assert!(
                        (g - w).abs() <= 1e-6 * k as f32,
                        "{m}x{n}x{k} [{i}]: {g} vs {w}"
                    );
                }
            }
        }
    }
}
