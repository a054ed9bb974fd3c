//! The attention core as one op on the CPU:
//! `out = softmax(α q kᵀ + bias [+ causal mask]) v`, heads merged (`[b, h, t, dh]` in, `[b, t, h·dh]` out).
//!
//! Composed of burn's ops this is a scale, a matmul, a broadcast add, a softmax, a matmul and a
//! head transpose copy, each a pass over a `[b, h, t, t]` or `[b, h, t, dh]` tensor, and again
//! as many in the backward pass. Here the forward pass and the backward pass are each one
//! parallel loop over the `b·h` (sequence, head) pairs; one pair's `t × t` scores stay in cache
//! from the product to the softmax to the product with `v` (inference of sequences longer
//! than [`BLOCKED_FROM`]: [`QUERY_BLOCK`] queries at a time, so that they still do). `q`, `k` and `v` are read through
//! their strides (the head-split view of a projection is not copied), the output is written
//! heads-merged, and the gradients of `q`, `k`, `v` are written in the projection's
//! `[b, t, h, dh]` memory order, so that the head merge on the way back costs no copy either.
//!
//! Backward, per pair, with `P` the saved probabilities and `dO` the incoming gradient:
//! `dV = Pᵀ dO`, `dP = dO vᵀ`, `dS = P ⊙ (dP - rowsum(dP ⊙ P))`, `dQ = α dS k`,
//! `dK = α dSᵀ q`, `dbias = dS` summed over the dimensions the bias broadcasts.

use rayon::prelude::*;

use crate::cpu;

/// Sizes of one call: `b` sequences, `h` heads, `t` positions, `dh` per head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub b: usize,
    pub h: usize,
    pub t: usize,
    pub dh: usize,
}

impl Dims {
    fn pairs(&self) -> usize {
        self.b * self.h
    }
    /// Elements of one heads-merged row.
    fn d(&self) -> usize {
        self.h * self.dh
    }
    /// Offset of pair `n`'s first element in a `[b, t, h, dh]` buffer.
    fn merged_offset(&self, n: usize) -> usize {
        let (bi, hi) = (n / self.h, n % self.h);
        bi * self.t * self.d() + hi * self.dh
    }
}

/// A `[b, h, t, dh]` operand read through element strides from `offset` in `data`.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    /// Strides of the `b`, `h`, `t` and `dh` dimensions, in elements.
    pub strides: [usize; 4],
}

impl Operand<'_> {
    /// Checks that every element of a `dims`-shaped view lies inside `data`.
    fn check(&self, dims: Dims, what: &str) {
        let last = [dims.b, dims.h, dims.t, dims.dh]
            .iter()
            .zip(self.strides)
            .map(|(&n, s)| (n.max(1) - 1) * s)
            .sum::<usize>();
        assert!(
            self.offset + last < self.data.len(),
            "attention: `{what}` view reaches outside its storage"
        );
    }

    /// Pointer to pair `n`'s `[t, dh]` matrix.
    fn pair(&self, n: usize, h: usize) -> *const f32 {
        let at = self.offset + (n / h) * self.strides[0] + (n % h) * self.strides[1];
        // In bounds by `check`.
        self.data[at..].as_ptr()
    }

    fn rs(&self) -> isize {
        self.strides[2] as isize
    }

    fn cs(&self) -> isize {
        self.strides[3] as isize
    }
}

/// An additive `[b or 1, h or 1, t, t]` bias, contiguous; or, `by_offset`, one that depends on
/// the key's offset from the query only, `[b or 1, h or 1, 2t - 1]`: the bias of query `i` and
/// key `j` at `t - 1 + j - i` (row `i` is then the slice from `t - 1 - i`).
#[derive(Debug, Clone, Copy)]
pub struct Bias<'a> {
    pub data: &'a [f32],
    /// Whether the bias has one matrix per sequence (else one for all) ...
    pub per_sequence: bool,
    /// ... and one per head.
    pub per_head: bool,
    /// Whether each matrix is given by its `2t - 1` offsets (only for the blocked inference of
    /// [`forward`]: no probabilities, no relative terms, `t` > [`BLOCKED_FROM`]).
    pub by_offset: bool,
}

impl Bias<'_> {
    fn matrices(&self, dims: Dims) -> usize {
        (if self.per_sequence { dims.b } else { 1 }) * (if self.per_head { dims.h } else { 1 })
    }

    /// Elements of one matrix.
    fn matrix_len(&self, t: usize) -> usize {
        if self.by_offset { 2 * t - 1 } else { t * t }
    }

    /// Pair `n`'s matrix.
    fn matrix(&self, n: usize, dims: Dims) -> &[f32] {
        let len = self.matrix_len(dims.t);
        &self.data[self.index(n, dims) * len..][..len]
    }

    /// Row `i` of a matrix (from [`Bias::matrix`]), its first `keys` entries.
    fn row<'m>(&self, matrix: &'m [f32], i: usize, t: usize, keys: usize) -> &'m [f32] {
        let start = if self.by_offset { t - 1 - i } else { i * t };
        &matrix[start..start + keys]
    }

    /// Index of pair `n`'s matrix.
    fn index(&self, n: usize, dims: Dims) -> usize {
        let bi = if self.per_sequence { n / dims.h } else { 0 };
        let hi = if self.per_head { n % dims.h } else { 0 };
        bi * (if self.per_head { dims.h } else { 1 }) + hi
    }
}

/// A raw output pointer shared by the workers; each pair writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: the loops below hand each pair its own disjoint elements of the buffer.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    fn at(self, offset: usize) -> *mut f32 {
        // SAFETY (of the callers): `offset` is inside the buffer this pointer came from.
        unsafe { self.0.add(offset) }
    }
}

/// Pair `n`'s `[t, t]` matrix: its own chunk of a shared `[b, h, t, t]` buffer when there is
/// one (checked to hold every pair's), else this thread's scratch matrix.
fn pair_matrix(shared: Option<Shared>, n: usize, tt: usize, scratch: &mut [f32]) -> &mut [f32] {
    match shared {
        // SAFETY: pair n's chunk, written by this pair only.
        Some(buffer) => unsafe { std::slice::from_raw_parts_mut(buffer.at(n * tt), tt) },
        None => scratch,
    }
}

/// Checks `q`, `k`, `v` against `dims` and the relative tables against `dh`.
fn check_inputs(dims: Dims, [q, k, v]: [&Operand; 3], relative: &Option<Relative>) {
    for (x, name) in [(q, "q"), (k, "k"), (v, "v")] {
        x.check(dims, name);
    }
    if let Some(rel) = relative {
        rel.check(dims.dh);
    }
}

/// `dst[m × n] = α · a[m × k] · b[k × n]` (`+=` if `accumulate`), every matrix given by a
/// pointer and (row, column) strides; one thread.
///
/// # Safety
/// Every pointer with its strides must address valid memory for its matrix, `dst` writable and
/// not overlapping the others.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, isize, isize),
    a: (*const f32, isize, isize),
    b: (*const f32, isize, isize),
    alpha: f32,
    accumulate: bool,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.2,
            dst.1,
            accumulate,
            a.0,
            a.2,
            a.1,
            b.0,
            b.2,
            b.1,
            1.0,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Shaw's relative terms (see `ordo_encodings::shaw`): with `l(i, j) = clip(j - i, -k, k) + k`,
/// the scores gain `α q_i · keys[l(i, j)]` and the output `Σ_j p_ij values[l(i, j)]`.
#[derive(Debug, Clone, Copy)]
pub struct Relative<'a> {
    /// `k`, the clip distance.
    pub clip: usize,
    /// `[2k+1, dh]` each, contiguous.
    pub keys: Option<&'a [f32]>,
    pub values: Option<&'a [f32]>,
}

impl Relative<'_> {
    fn labels(&self) -> usize {
        2 * self.clip + 1
    }

    fn check(&self, dh: usize) {
        for table in [self.keys, self.values].into_iter().flatten() {
            assert_eq!(
                table.len(),
                self.labels() * dh,
                "attention: relative table size"
            );
        }
    }
}

/// Inference of sequences longer than this (no probabilities kept, no relative terms) runs
/// [`QUERY_BLOCK`] queries at a time (`forward_blocked`); shorter ones, and every training
/// step, take the whole `[t, t]` matrix at once, as before this path existed (so every result
/// at these lengths, the quick study's included, is unchanged to the bit).
pub const BLOCKED_FROM: usize = 256;

/// Queries per block of `forward_blocked`: a `[128, t]` block of scores stays in L2 up to
/// `t` of several thousand, where the whole `[t, t]` matrix (4 MiB at `t` = 1024) does not.
pub const QUERY_BLOCK: usize = 128;

/// [`forward`] without probabilities or relative terms for long sequences, a block of queries
/// at a time: the block's scores (with a causal mask, only the keys up to its last query: the
/// rest would be zeros in the product with the values), its softmax and its product with the
/// values. Each row's values are the same functions as the whole-matrix path computes; the
/// matrix products see other sizes, so results may differ from it in the last bits.
#[allow(clippy::too_many_arguments)]
fn forward_blocked(
    dims: Dims,
    scale: f32,
    q: Operand,
    k: Operand,
    v: Operand,
    bias: Option<Bias>,
    causal: bool,
    out: &mut [f32],
) {
    let Dims { h, t, dh, .. } = dims;
    let d = dims.d() as isize;
    let out_ptr = Shared(out.as_mut_ptr());
    (0..dims.pairs()).into_par_iter().for_each_init(
        || vec![0.0f32; QUERY_BLOCK * t],
        |scores, n| {
            let o = out_ptr.at(dims.merged_offset(n));
            let (qn, kn, vn) = (q.pair(n, h), k.pair(n, h), v.pair(n, h));
            let b = bias.as_ref().map(|b| (b, b.matrix(n, dims)));
            for i0 in (0..t).step_by(QUERY_BLOCK) {
                let rows = QUERY_BLOCK.min(t - i0);
                let keys = if causal { i0 + rows } else { t };
                let p = &mut scores[..rows * keys];
                // SAFETY: the operands were checked by `forward`; rows i0.. of q and of this
                // pair's `[t, dh]` block of `out` (row stride d), the first `keys` rows of k
                // and v, and `p` is this thread's own `[rows, keys]` buffer.
                unsafe {
                    product(
                        (rows, keys, dh),
                        (p.as_mut_ptr(), keys as isize, 1),
                        (qn.offset(i0 as isize * q.rs()), q.rs(), q.cs()),
                        (kn, k.cs(), k.rs()), // kᵀ
                        scale,
                        false,
                    );
                }
                for (r, row) in p.chunks_exact_mut(keys).enumerate() {
                    let i = i0 + r;
                    if causal {
                        row[i + 1..].fill(f32::NEG_INFINITY);
                    }
                    let bias_row = b.map(|(b, m)| b.row(m, i, t, keys));
                    cpu::softmax_rows_in_place(row, bias_row, keys);
                }
                // SAFETY: as above.
                unsafe {
                    product(
                        (rows, dh, keys),
                        (o.offset(i0 as isize * d), d, 1),
                        (p.as_ptr(), keys as isize, 1),
                        (vn, v.rs(), v.cs()),
                        1.0,
                        false,
                    );
                }
            }
        },
    );
}

/// Forward pass: fills `out` (`[b, t, h·dh]`) and, if given, `probs` (`[b, h, t, t]`, the
/// softmax, which the backward pass needs). `causal` hides each query's future keys (on top of
/// `bias`).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    dims: Dims,
    scale: f32,
    q: Operand,
    k: Operand,
    v: Operand,
    bias: Option<Bias>,
    relative: Option<Relative>,
    causal: bool,
    probs: Option<&mut [f32]>,
    out: &mut [f32],
) {
    let Dims { h, t, dh, .. } = dims;
    let tt = t * t;
    check_inputs(dims, [&q, &k, &v], &relative);
    if let Some(bias) = &bias {
        assert_eq!(
            bias.data.len(),
            bias.matrices(dims) * bias.matrix_len(t),
            "attention: bias size"
        );
    }
    let r = relative.map_or(0, |rel| rel.labels());
    assert_eq!(out.len(), dims.pairs() * t * dh, "attention: out size");
    if probs.is_none() && relative.is_none() && t > BLOCKED_FROM {
        forward_blocked(dims, scale, q, k, v, bias, causal, out);
        return;
    }
    assert!(
        !bias.is_some_and(|b| b.by_offset),
        "attention: a bias by offset only for inference beyond {BLOCKED_FROM} positions"
    );
    let d = dims.d() as isize;
    let out_ptr = Shared(out.as_mut_ptr());
    let probs = probs.map(|p| {
        assert_eq!(p.len(), dims.pairs() * tt, "attention: probs size");
        Shared(p.as_mut_ptr())
    });
    (0..dims.pairs()).into_par_iter().for_each_init(
        || Scratch {
            // Without `probs` (inference), one `[t, t]` matrix per thread.
            matrix: vec![0.0; if probs.is_some() { 0 } else { tt }],
            per_label: vec![0.0; t * r],
            d_per_label: Vec::new(),
        },
        |scratch, n| {
            let p = pair_matrix(probs, n, tt, &mut scratch.matrix);
            let per_label = &mut scratch.per_label;
            let o = out_ptr.at(dims.merged_offset(n));
            let qn = (q.pair(n, h), q.rs(), q.cs());
            // SAFETY: operands and tables checked above; `p` is this pair's own `[t, t]` chunk,
            // `o` its own `[t, dh]` block (row stride d) of `out`, `per_label` this thread's.
            unsafe {
                product(
                    (t, t, dh),
                    (p.as_mut_ptr(), t as isize, 1),
                    qn,
                    (k.pair(n, h), k.cs(), k.rs()), // kᵀ
                    scale,
                    false,
                );
            }
            if let Some(Relative {
                clip,
                keys: Some(keys),
                ..
            }) = relative
            {
                // SAFETY: as above; `keys` is `[r, dh]`, read transposed.
                unsafe {
                    product(
                        (t, r, dh),
                        (per_label.as_mut_ptr(), r as isize, 1),
                        qn,
                        (keys.as_ptr(), 1, dh as isize),
                        1.0,
                        false,
                    );
                }
                cpu::relative_gather_add(per_label, t, clip, scale, p);
            }
            let b = bias.map(|b| &b.data[b.index(n, dims) * tt..][..tt]);
            if causal {
                // Key j > i is in query i's future.
                for (i, row) in p.chunks_exact_mut(t).enumerate() {
                    row[i + 1..].fill(f32::NEG_INFINITY);
                }
            }
            cpu::softmax_rows_in_place(p, b, t);
            // SAFETY: as above.
            unsafe {
                product(
                    (t, dh, t),
                    (o, d, 1),
                    (p.as_ptr(), t as isize, 1),
                    (v.pair(n, h), v.rs(), v.cs()),
                    1.0,
                    false,
                );
            }
            if let Some(Relative {
                clip,
                values: Some(values),
                ..
            }) = relative
            {
                cpu::relative_scatter_matrix(p, t, clip, 1.0, per_label);
                // SAFETY: as above.
                unsafe {
                    product(
                        (t, dh, r),
                        (o, d, 1),
                        (per_label.as_ptr(), r as isize, 1),
                        (values.as_ptr(), dh as isize, 1),
                        1.0,
                        true,
                    );
                }
            }
        },
    );
}

/// Gradients of [`forward`]'s inputs.
pub struct Grads<'a> {
    /// `[b, t, h, dh]` each (the memory order of a heads-merged projection).
    pub q: &'a mut [f32],
    pub k: &'a mut [f32],
    pub v: &'a mut [f32],
    /// `[b, h, t, t]`: the gradient of the scores, wanted when the bias is tracked (sum it
    /// over the bias's broadcast dimensions with [`reduce_bias`]).
    pub scores: Option<&'a mut [f32]>,
    /// `[2k+1, dh]` each, for the relative tables that [`forward`] was given.
    pub keys: Option<&'a mut [f32]>,
    pub values: Option<&'a mut [f32]>,
}

/// Per-thread buffers of [`forward`] and [`backward`].
struct Scratch {
    /// `[t, t]`, unless the probabilities (forward) or the scores gradient (backward) are kept.
    matrix: Vec<f32>,
    /// `[t, 2k+1]`.
    per_label: Vec<f32>,
    d_per_label: Vec<f32>,
}

/// Backward pass of [`forward`] with `probs` its output and `dout` (`[b, t, h·dh]`,
/// contiguous) the gradient of `out`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dims: Dims,
    scale: f32,
    q: Operand,
    k: Operand,
    v: Operand,
    relative: Option<Relative>,
    probs: &[f32],
    dout: &[f32],
    grads: Grads,
) {
    let Dims { h, t, dh, .. } = dims;
    let tt = t * t;
    let pairs = dims.pairs();
    let size = pairs * t * dh;
    check_inputs(dims, [&q, &k, &v], &relative);
    let (keys, values) = relative.map_or((None, None), |rel| (rel.keys, rel.values));
    let clip = relative.map_or(0, |rel| rel.clip);
    let r = relative.map_or(0, |rel| rel.labels());
    assert_eq!(probs.len(), pairs * tt, "attention: probs size");
    assert_eq!(dout.len(), size, "attention: dout size");
    assert!(
        grads.q.len() == size && grads.k.len() == size && grads.v.len() == size,
        "attention: gradient sizes"
    );
    let d = dims.d() as isize;
    let [dq, dk, dv] = [grads.q, grads.k, grads.v].map(|g| Shared(g.as_mut_ptr()));
    let dscores = grads.scores.map(|s| {
        assert_eq!(s.len(), pairs * tt, "attention: scores gradient size");
        Shared(s.as_mut_ptr())
    });
    // Each pair's share of a table's gradient, summed below in pair order (the same bits
    // however the pairs were spread over threads).
    let mut key_parts = vec![0.0f32; if keys.is_some() { pairs * r * dh } else { 0 }];
    let mut value_parts = vec![0.0f32; if values.is_some() { pairs * r * dh } else { 0 }];
    let (key_parts_ptr, value_parts_ptr) = (
        Shared(key_parts.as_mut_ptr()),
        Shared(value_parts.as_mut_ptr()),
    );
    (0..pairs).into_par_iter().for_each_init(
        || Scratch {
            matrix: vec![0.0; if dscores.is_some() { 0 } else { tt }],
            per_label: vec![0.0; t * r],
            d_per_label: vec![0.0; t * r],
        },
        |scratch, n| {
            // dS goes straight into the scores gradient when it is wanted.
            let ds = pair_matrix(dscores, n, tt, &mut scratch.matrix);
            let p = &probs[n * tt..][..tt];
            let at = dims.merged_offset(n);
            let go = (dout[at..].as_ptr(), d, 1);
            let qn = (q.pair(n, h), q.rs(), q.cs());
            // SAFETY (every block below): operands and tables checked above; each pair writes
            // its own `[t, dh]` blocks (row stride d) of dq, dk, dv, its own `ds` and its own
            // `[r, dh]` parts of the tables' gradients; the scratch buffers are this thread's.
            unsafe {
                product(
                    (t, dh, t),
                    (dv.at(at), d, 1),
                    (p.as_ptr(), 1, t as isize), // Pᵀ
                    go,
                    1.0,
                    false,
                );
                product(
                    (t, t, dh),
                    (ds.as_mut_ptr(), t as isize, 1),
                    go,
                    (v.pair(n, h), v.cs(), v.rs()), // vᵀ
                    1.0,
                    false,
                );
            }
            if let Some(values) = values {
                // Through the value term: dP += gather(dO valuesᵀ); dvalues += scatter(P)ᵀ dO.
                let (pl, dpl) = (&mut scratch.per_label, &mut scratch.d_per_label);
                cpu::relative_scatter_matrix(p, t, clip, 1.0, pl);
                unsafe {
                    product(
                        (t, r, dh),
                        (dpl.as_mut_ptr(), r as isize, 1),
                        go,
                        (values.as_ptr(), 1, dh as isize), // valuesᵀ
                        1.0,
                        false,
                    );
                    product(
                        (r, dh, t),
                        (value_parts_ptr.at(n * r * dh), dh as isize, 1),
                        (pl.as_ptr(), 1, r as isize), // scatter(P)ᵀ
                        go,
                        1.0,
                        false,
                    );
                }
                cpu::relative_gather_add(dpl, t, clip, 1.0, ds);
            }
            cpu::softmax_backward_in_place(p, ds, t);
            unsafe {
                product(
                    (t, dh, t),
                    (dq.at(at), d, 1),
                    (ds.as_ptr(), t as isize, 1),
                    (k.pair(n, h), k.rs(), k.cs()),
                    scale,
                    false,
                );
                product(
                    (t, dh, t),
                    (dk.at(at), d, 1),
                    (ds.as_ptr(), 1, t as isize), // dSᵀ
                    qn,
                    scale,
                    false,
                );
            }
            if let Some(keys) = keys {
                // Through the key term: with dL = α scatter(dS), dq += dL keys, dkeys += dLᵀ q.
                let dl = &mut scratch.d_per_label;
                cpu::relative_scatter_matrix(ds, t, clip, scale, dl);
                unsafe {
                    product(
                        (t, dh, r),
                        (dq.at(at), d, 1),
                        (dl.as_ptr(), r as isize, 1),
                        (keys.as_ptr(), dh as isize, 1),
                        1.0,
                        true,
                    );
                    product(
                        (r, dh, t),
                        (key_parts_ptr.at(n * r * dh), dh as isize, 1),
                        (dl.as_ptr(), 1, r as isize), // dLᵀ
                        qn,
                        1.0,
                        false,
                    );
                }
            }
        },
    );
    for (parts, out) in [(key_parts, grads.keys), (value_parts, grads.values)] {
        if let Some(out) = out {
            assert_eq!(out.len(), r * dh, "attention: table gradient size");
            out.fill(0.0);
            for part in parts.chunks_exact(r * dh) {
                for (o, &x) in out.iter_mut().zip(part) {
                    *o += x;
                }
            }
        }
    }
}

/// Sums a `[b, h, t, t]` scores gradient over the dimensions `bias` broadcasts: the bias's
/// gradient, `[b or 1, h or 1, t, t]`.
pub fn reduce_bias(dims: Dims, per_sequence: bool, per_head: bool, dscores: &[f32]) -> Vec<f32> {
    let tt = dims.t * dims.t;
    let layout = Bias {
        by_offset: false,
        data: &[],
        per_sequence,
        per_head,
    };
    let mut out = vec![0.0f32; layout.matrices(dims) * tt];
    for (n, s) in dscores.chunks_exact(tt).enumerate() {
        let o = &mut out[layout.index(n, dims) * tt..][..tt];
        for (o, &s) in o.iter_mut().zip(s) {
            *o += s;
        }
    }
    out
}
