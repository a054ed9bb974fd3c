//! Row kernels on plain `f32` slices: the forward and backward passes of softmax, GELU, LayerNorm
//! and cross-entropy, each one pass (or two) over memory instead of the 5-10 tensor ops that
//! burn's autodiff composes them from.
//!
//! `exp` and `erf` are polynomial approximations written so that the compiler vectorises them
//! (no libm calls in the loops); every entry point is compiled for the baseline x86-64 target,
//! for AVX2 + FMA and for AVX-512, and picks the widest at run time.
//!
//! - `exp`: Cephes' `expf` (range reduction by ln 2 split in two constants, degree-6
//!   polynomial); within 2 ulp of libm's `expf` on the range that matters here; exactly 0 below
//!   -87.3 (so `exp(-inf) = 0`, which masking relies on).
//! - `erf`: Abramowitz & Stegun 7.1.26 (the formula PyTorch's vectorised CPU GELU uses too):
//!   1.5e-7 absolute from the formula, 5e-7 once evaluated in f32 (cancellation in `1 - p·e`
//!   near 0). In GELU, `0.5 x (1 + erf)`, that is at most `2.5e-7 |x|`.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Below this many elements a kernel runs on the calling thread: splitting costs more than it saves.
const PARALLEL_MIN: usize = 1 << 15;

/// The blocks of a [`fresh`] buffer, each zeroed as the worker that takes it reaches it.
type Blocks<'a> = rayon::iter::Map<
    rayon::slice::ChunksMut<'a, MaybeUninit<f32>>,
    for<'b> fn(&'b mut [MaybeUninit<f32>]) -> &'b mut [f32],
>;

/// Rows of length `n` per parallel block of a `len`-element kernel: all of them (one block on
/// the calling thread's task) below [`PARALLEL_MIN`], else about `PARALLEL_MIN / 4` elements'
/// worth; at least 1.
fn block_rows(len: usize, n: usize) -> usize {
    if len < PARALLEL_MIN {
        len / n.max(1)
    } else {
        PARALLEL_MIN / 4 / n.max(1)
    }
    .max(1)
}

/// A block of spare capacity, zeroed: from here on it is plain initialised `f32`.
fn zeroed(block: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for v in block.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every element was initialised just above, and `MaybeUninit<f32>` has the layout
    // of `f32`.
    unsafe { &mut *(block as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A new `len`-element output for a kernel that assigns every element: `kernel` gets the
/// buffer's blocks of `block` elements as a parallel iterator and must drive all of them (each
/// use below ends in `for_each`). A block is zeroed by the thread that takes it, just before the
/// kernel writes it and while it is in cache, where `vec![0.0; len]` zero-fills the whole buffer
/// first in one serial pass on the calling thread (4.5 % of a small training step was that
/// `memset`, with the other core idle). The blocks are the ones the kernels always used, so
/// the results are the same bits.
fn fresh(len: usize, block: usize, kernel: impl FnOnce(Blocks<'_>)) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let zero: for<'b> fn(&'b mut [MaybeUninit<f32>]) -> &'b mut [f32] = zeroed;
    kernel(spare.par_chunks_mut(block.max(1)).map(zero));
    // SAFETY: the kernel drove every block, and each was zeroed before it was handed out (then
    // assigned by the kernel), so all `len` elements are initialised.
    unsafe { out.set_len(len) };
    out
}

/// `exp(x)` for `x ≤ 88`; 0 for `x < -87.3` (including `-inf`).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4; // ln 2, high part (exact in few bits)
    const C2: f32 = -2.121_944_4e-4; // ln 2 - C1
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND; // round(x / ln 2)
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32); // the same n, as an integer
    let r = xc - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(((k + 127) as u32) << 23);
    if x < -87.0 { 0.0 } else { e * scale }
}

/// `erf(x)` to 5e-7 absolute, given `e = exp(-x²)` (callers often need it anyway).
#[inline(always)]
fn erf_with(x: f32, e: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let t = 1.0 / (1.0 + P * x.abs());
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    let y = 1.0 - poly * e;
    if x < 0.0 { -y } else { y }
}

/// `erf(x)` to 5e-7 absolute.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_with(x, exp(-x * x))
}

/// Compiles `$body` (loops over `#[inline(always)]` helpers) three times, for baseline x86-64,
/// for AVX2 + FMA (8 lanes) and for AVX-512 (16 lanes), and runs the widest the CPU supports.
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                $(#[$attr])*
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn fast512($($arg: $ty),*) $(-> $ret)? $body
                $(#[$attr])*
                #[target_feature(enable = "avx2,fma")]
                fn fast($($arg: $ty),*) $(-> $ret)? $body
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has just been checked for the features `fast512` is compiled for.
                    return unsafe { fast512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has just been checked for the features `fast` is compiled for.
                    return unsafe { fast($($arg),*) };
                }
            }
            $body
        }
    };
}

/// The instruction-set tier the CPU kernels run at on this machine: `avx512` (AVX-512F with
/// AVX2 and FMA), `avx2` (AVX2 and FMA), or `portable` (the plain build). Runs record it: two
/// nodes at different tiers can differ in the last bits of a result.
pub fn tier() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if avx2 && std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if avx2 {
            return "avx2";
        }
    }
    "portable"
}

/// A new output of `input`'s size, `f(rows_in, rows_out)` run over blocks of whole rows (in
/// parallel when there is enough work; [`fresh`]).
fn for_rows<F>(input: &[f32], row: usize, f: F) -> Vec<f32>
where
    F: Fn(&[f32], &mut [f32]) + Sync + Send,
{
    let block = block_rows(input.len(), row) * row;
    fresh(input.len(), block, |blocks| {
        input
            .par_chunks(block.max(1))
            .zip(blocks)
            .for_each(|(i, o)| f(i, o))
    })
}

/// Two inputs of the same shape, one output.
fn for_rows2<F>(a: &[f32], b: &[f32], row: usize, f: F) -> Vec<f32>
where
    F: Fn(&[f32], &[f32], &mut [f32]) + Sync + Send,
{
    let block = block_rows(a.len(), row) * row;
    fresh(a.len(), block, |blocks| {
        a.par_chunks(block.max(1))
            .zip(b.par_chunks(block.max(1)))
            .zip(blocks)
            .for_each(|((a, b), o)| f(a, b, o))
    })
}

/// Maximum of a row, with 8 independent lanes so that it vectorises.
#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for l in lanes {
        m = m.max(l);
    }
    m
}

/// Sum of a row in 8 lanes.
#[inline(always)]
fn row_sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    chunks.remainder().iter().sum::<f32>() + lanes.iter().sum::<f32>()
}

/// Dot product of two rows in 8 lanes.
#[inline(always)]
fn row_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    tail + lanes.iter().sum::<f32>()
}

/// `y = softmax(x)` over rows of length `n`.
pub fn softmax_rows(x: &[f32], n: usize) -> Vec<f32> {
    for_rows(x, n, |x, y| {
        y.copy_from_slice(x);
        softmax_rows_in_place(y, None, n);
    })
}

/// `dx = y ⊙ (g - Σ g ⊙ y)` over rows of length `n`: the gradient through `y = softmax(x)`.
pub fn softmax_backward_rows(y: &[f32], g: &[f32], n: usize) -> Vec<f32> {
    for_rows2(y, g, n, |y, g, dx| {
        dx.copy_from_slice(g);
        softmax_backward_in_place(y, dx, n);
    })
}

multiversion! {
    /// `s = softmax(s + bias)` over rows of length `n`, in place, on this thread.
    pub fn softmax_rows_in_place(s: &mut [f32], bias: Option<&[f32]>, n: usize) {
        if let Some(bias) = bias {
            for (x, &b) in s.iter_mut().zip(bias) {
                *x += b;
            }
        }
        for row in s.chunks_exact_mut(n) {
            let m = row_max(row);
            for x in row.iter_mut() {
                *x = exp(*x - m);
            }
            let inv = 1.0 / row_sum(row);
            for x in row.iter_mut() {
                *x *= inv;
            }
        }
    }
}

multiversion! {
    /// `g = y ⊙ (g - Σ g ⊙ y)` over rows of length `n`, in place, on this thread.
    pub fn softmax_backward_in_place(y: &[f32], g: &mut [f32], n: usize) {
        for (yr, gr) in y.chunks_exact(n).zip(g.chunks_exact_mut(n)) {
            let dot = row_dot(yr, gr);
            for (gv, &yv) in gr.iter_mut().zip(yr) {
                *gv = yv * (*gv - dot);
            }
        }
    }
}

const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

multiversion! {
    fn gelu_block(x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            let u = v * std::f32::consts::FRAC_1_SQRT_2;
            *o = 0.5 * v * (1.0 + erf_with(u, exp(-u * u)));
        }
    }
}

/// `y = x Φ(x)`, the exact (erf) GELU.
pub fn gelu(x: &[f32]) -> Vec<f32> {
    for_rows(x, 1, gelu_block)
}

multiversion! {
    fn gelu_backward_block(x: &[f32], g: &[f32], dx: &mut [f32]) {
        for ((d, &v), &gv) in dx.iter_mut().zip(x).zip(g) {
            let u = v * std::f32::consts::FRAC_1_SQRT_2;
            let e = exp(-u * u);
            let cdf = 0.5 * (1.0 + erf_with(u, e));
            *d = gv * (cdf + v * FRAC_1_SQRT_2PI * e);
        }
    }
}

/// `dx = g (Φ(x) + x φ(x))`: the gradient through the exact GELU.
pub fn gelu_backward(x: &[f32], g: &[f32]) -> Vec<f32> {
    for_rows2(x, g, 1, gelu_backward_block)
}

/// Per-row statistics kept by the LayerNorm forward pass for its backward pass.
#[derive(Debug, Clone)]
pub struct RowStats {
    pub mean: Vec<f32>,
    /// `1 / sqrt(var + eps)`, with the biased variance (as PyTorch and burn).
    pub rstd: Vec<f32>,
}

multiversion! {
    fn layer_norm_block(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
        y: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
    ) {
        let n = gamma.len();
        let inv_n = 1.0 / n as f32;
        for (((xr, yr), m), r) in x
            .chunks_exact(n)
            .zip(y.chunks_exact_mut(n))
            .zip(mean.iter_mut())
            .zip(rstd.iter_mut())
        {
            let mu = row_sum(xr) * inv_n;
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = v - mu;
            }
            let var = row_dot(yr, yr) * inv_n;
            let rs = 1.0 / (var + eps).sqrt();
            for ((o, &g), &b) in yr.iter_mut().zip(gamma).zip(beta) {
                *o = *o * rs * g + b;
            }
            *m = mu;
            *r = rs;
        }
    }
}

/// `y = (x - mean) / sqrt(var + eps) γ + β` over rows of length `γ.len()`.
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> (Vec<f32>, RowStats) {
    let n = gamma.len();
    let rows = x.len() / n;
    let mut stats = RowStats {
        mean: vec![0.0; rows],
        rstd: vec![0.0; rows],
    };
    let block_rows = block_rows(x.len(), n);
    let y = fresh(x.len(), block_rows * n, |blocks| {
        x.par_chunks(block_rows * n)
            .zip(blocks)
            .zip(stats.mean.par_chunks_mut(block_rows))
            .zip(stats.rstd.par_chunks_mut(block_rows))
            .for_each(|(((x, y), m), r)| layer_norm_block(x, gamma, beta, eps, y, m, r))
    });
    (y, stats)
}

multiversion! {
    #[allow(clippy::too_many_arguments)] // one slice per tensor the step reads or writes
    fn layer_norm_backward_block(
        x: &[f32],
        g: &[f32],
        gamma: &[f32],
        mean: &[f32],
        rstd: &[f32],
        dx: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        let n = gamma.len();
        let inv_n = 1.0 / n as f32;
        for ((((xr, gr), dr), &mu), &rs) in x
            .chunks_exact(n)
            .zip(g.chunks_exact(n))
            .zip(dx.chunks_exact_mut(n))
            .zip(mean)
            .zip(rstd)
        {
            // dr holds x̂ first, then the gradient.
            let mut sum_dxhat = 0.0f32;
            let mut sum_dxhat_xhat = 0.0f32;
            let mut lanes_a = [0.0f32; 8];
            let mut lanes_b = [0.0f32; 8];
            for (i, (((d, &xv), &gv), &ga)) in
                dr.iter_mut().zip(xr).zip(gr).zip(gamma).enumerate()
            {
                let xhat = (xv - mu) * rs;
                *d = xhat;
                let dxhat = gv * ga;
                lanes_a[i % 8] += dxhat;
                lanes_b[i % 8] += dxhat * xhat;
            }
            for l in 0..8 {
                sum_dxhat += lanes_a[l];
                sum_dxhat_xhat += lanes_b[l];
            }
            let ma = sum_dxhat * inv_n;
            let mb = sum_dxhat_xhat * inv_n;
            for ((((d, &gv), &ga), dg), db) in dr
                .iter_mut()
                .zip(gr)
                .zip(gamma)
                .zip(dgamma.iter_mut())
                .zip(dbeta.iter_mut())
            {
                let xhat = *d;
                *dg += gv * xhat;
                *db += gv;
                *d = rs * (gv * ga - ma - xhat * mb);
            }
        }
    }
}

/// Gradients through [`layer_norm`]: `(dx, dγ, dβ)`.
pub fn layer_norm_backward(
    x: &[f32],
    g: &[f32],
    gamma: &[f32],
    stats: &RowStats,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = gamma.len();
    let block_rows = block_rows(x.len(), n);
    let mut sums = None;
    let dx = fresh(x.len(), block_rows * n, |blocks| {
        sums = x
            .par_chunks(block_rows * n)
            .zip(g.par_chunks(block_rows * n))
            .zip(blocks)
            .zip(stats.mean.par_chunks(block_rows))
            .zip(stats.rstd.par_chunks(block_rows))
            .map(|((((x, g), dx), m), r)| {
                let (mut dgamma, mut dbeta) = (vec![0.0; n], vec![0.0; n]);
                layer_norm_backward_block(x, g, gamma, m, r, dx, &mut dgamma, &mut dbeta);
                (dgamma, dbeta)
            })
            // Collected in block order and summed in that order: the same bits whatever the
            // threads.
            .collect::<Vec<_>>()
            .into_iter()
            .reduce(|(mut ga, mut ba), (gb, bb)| {
                ga.iter_mut().zip(gb).for_each(|(a, b)| *a += b);
                ba.iter_mut().zip(bb).for_each(|(a, b)| *a += b);
                (ga, ba)
            });
    });
    let (dgamma, dbeta) = sums.unwrap_or_else(|| (vec![0.0; n], vec![0.0; n]));
    (dx, dgamma, dbeta)
}

multiversion! {
    fn log_sum_exp_block(x: &[f32], lse: &mut [f32]) {
        let n = x.len() / lse.len();
        for (xr, l) in x.chunks_exact(n).zip(lse.iter_mut()) {
            let m = row_max(xr);
            let mut lanes = [0.0f32; 8];
            for (i, &v) in xr.iter().enumerate() {
                lanes[i % 8] += exp(v - m);
            }
            *l = m + lanes.iter().sum::<f32>().ln();
        }
    }
}

/// `log Σ exp` of each row of length `n`.
pub fn log_sum_exp_rows(x: &[f32], n: usize) -> Vec<f32> {
    let rows = x.len() / n;
    let mut lse = vec![0.0; rows];
    if x.len() < PARALLEL_MIN {
        log_sum_exp_block(x, &mut lse);
        return lse;
    }
    let block_rows = (PARALLEL_MIN / 4 / n).max(1);
    x.par_chunks(block_rows * n)
        .zip(lse.par_chunks_mut(block_rows))
        .for_each(|(x, l)| log_sum_exp_block(x, l));
    lse
}

multiversion! {
    fn cross_entropy_backward_block(
        x: &[f32],
        lse: &[f32],
        targets: &[usize],
        scale: &[f32],
        dx: &mut [f32],
    ) {
        let n = x.len() / lse.len();
        for ((((xr, dr), &l), &t), &s) in x
            .chunks_exact(n)
            .zip(dx.chunks_exact_mut(n))
            .zip(lse)
            .zip(targets)
            .zip(scale)
        {
            if s == 0.0 {
                dr.fill(0.0);
                continue;
            }
            for (d, &v) in dr.iter_mut().zip(xr) {
                *d = s * exp(v - l);
            }
            dr[t] -= s;
        }
    }
}

/// Gradient of `Σ_rows scale[r] (lse[r] - x[r, targets[r]])` with respect to `x`:
/// `scale[r] (softmax(x[r]) - onehot(targets[r]))`.
pub fn cross_entropy_backward(
    x: &[f32],
    lse: &[f32],
    targets: &[usize],
    scale: &[f32],
) -> Vec<f32> {
    let rows = lse.len();
    let n = x.len() / rows.max(1);
    let block_rows = block_rows(x.len(), n);
    fresh(x.len(), block_rows * n, |blocks| {
        x.par_chunks(block_rows * n)
            .zip(blocks)
            .zip(lse.par_chunks(block_rows))
            .zip(targets.par_chunks(block_rows))
            .zip(scale.par_chunks(block_rows))
            .for_each(|((((x, dx), l), t), s)| cross_entropy_backward_block(x, l, t, s, dx))
    })
}

/// Row `i`'s keys, by Shaw's clipped relative label `clip(j - i, -k, k) + k`, in three runs:
/// `0..lo` (label 0), `lo..hi` (label `j - i + k`), `hi..t` (label `2k`).
#[inline(always)]
fn label_runs(i: usize, t: usize, k: usize) -> (usize, usize) {
    (i.saturating_sub(k).min(t), (i + k + 1).min(t))
}

multiversion! {
    /// `out[i, j] += α x[i, label(i, j)]` for one `[t, 2k+1]` matrix `x` and `[t, t]` `out`.
    pub fn relative_gather_add(x: &[f32], t: usize, k: usize, alpha: f32, out: &mut [f32]) {
        let r = 2 * k + 1;
        for (i, (xi, oi)) in x.chunks_exact(r).zip(out.chunks_exact_mut(t)).enumerate() {
            let (lo, hi) = label_runs(i, t, k);
            let (first, last) = (alpha * xi[0], alpha * xi[2 * k]);
            oi[..lo].iter_mut().for_each(|o| *o += first);
            // Label of key j in lo..hi is j + k - i.
            let offset = lo + k - i;
            for (o, &x) in oi[lo..hi].iter_mut().zip(&xi[offset..]) {
                *o += alpha * x;
            }
            oi[hi..].iter_mut().for_each(|o| *o += last);
        }
    }
}

multiversion! {
    /// `out[i, l] = α Σ_{j: label(i, j) = l} p[i, j]` for one `[t, t]` matrix `p` and
    /// `[t, 2k+1]` `out` (overwritten): the adjoint of [`relative_gather_add`].
    pub fn relative_scatter_matrix(p: &[f32], t: usize, k: usize, alpha: f32, out: &mut [f32]) {
        let r = 2 * k + 1;
        for (i, (pi, oi)) in p.chunks_exact(t).zip(out.chunks_exact_mut(r)).enumerate() {
            let (lo, hi) = label_runs(i, t, k);
            oi.fill(0.0);
            let offset = lo + k - i;
            for (o, &v) in oi[offset..].iter_mut().zip(&pi[lo..hi]) {
                *o = alpha * v;
            }
            oi[0] += alpha * row_sum(&pi[..lo]);
            oi[2 * k] += alpha * row_sum(&pi[hi..]);
        }
    }
}

/// `out[n, i, j] = x[n, i, label(i, j)]`: `x` is `[rows, t, 2k+1]`, `out` `[rows, t, t]`.
pub fn relative_gather(x: &[f32], t: usize, k: usize, out: &mut [f32]) {
    let r = 2 * k + 1;
    x.par_chunks(t * r)
        .zip(out.par_chunks_mut(t * t))
        .for_each(|(x, out)| {
            out.fill(0.0);
            relative_gather_add(x, t, k, 1.0, out);
        });
}

/// The adjoint of [`relative_gather`]: `out[n, i, l] = Σ_{j: label(i, j) = l} p[n, i, j]`,
/// `p` `[rows, t, t]`, `out` `[rows, t, 2k+1]` (overwritten).
pub fn relative_scatter(p: &[f32], t: usize, k: usize, out: &mut [f32]) {
    let r = 2 * k + 1;
    p.par_chunks(t * t)
        .zip(out.par_chunks_mut(t * r))
        .for_each(|(p, out)| relative_scatter_matrix(p, t, k, 1.0, out));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> i64 {
        (a.to_bits() as i64 - b.to_bits() as i64).abs()
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.0 {
            worst = worst.max(ulps(exp(x), x.exp()));
            x += 0.001_37;
        }
        assert!(worst <= 2, "worst {worst} ulp");
    }

    #[test]
    fn exp_underflows_to_exactly_zero() {
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1e9), 0.0);
        assert_eq!(exp(-88.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn erf_is_within_its_bound_of_libm() {
        let mut worst = 0.0f64;
        let mut x = -6.0f64;
        while x < 6.0 {
            let got = erf(x as f32) as f64;
            worst = worst.max((got - libm_erf(x)).abs());
            x += 0.000_73;
        }
        assert!(worst < 5e-7, "worst absolute error {worst}");
    }

    /// erf by its Maclaurin series (|x| < 3) and continued fraction (beyond), in f64.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while term.abs() > 1e-17 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) = exp(-x²)/(x√π) · 1/(1 + 1/(2x²)/(1 + 2/(2x²)/(1 + ...)))
            let a = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + f);
            (1.0 - erfc).copysign(x)
        }
    }
}
