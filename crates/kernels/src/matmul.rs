//! burn-flex's f32 matrix product, bit for bit, without the two passes its output costs:
//! [`matmul`], and [`linear_fp32`], burn's `linear` with it.
//!
//! burn-flex 0.22.1 allocates every product's output with `FlexTensor::empty`, which zero-fills
//! a `Vec<u8>` and then, since a byte vector is not 16-byte aligned as cubecl's `Bytes` demands,
//! copies it into a fresh allocation: a memset and a memcpy of the whole output before `gemm`
//! overwrites it. On a tiny model's training step (d_model 64, one thread, Intel Emerald
//! Rapids) the two were 13.5 % of the time, on small and medium 8-15 % with the rest of the
//! zero fills. Here the output is a `Vec<f32>` that `gemm` writes from uninitialised memory
//! (a `Vec<f32>` is all `f32` storage needs), with the same `gemm` calls as burn-flex (the same
//! sizes, strides, parallelism and batch loop, hence the same sums in the same order: the same
//! bits), except that a batch of products with one weight broadcast over it (burn's `linear`
//! keeps `[b, t, d]` batches whenever `t` is a multiple of 32) is one product per thread over
//! whole batches where gemm then sums every element in the same blocks (`same_sums`): the
//! weight packed once per thread instead of once per sequence. Under autodiff the backward step
//! is burn-autodiff's `Matmul` step with these products, that weight's gradient summed over the
//! batch in burn-flex's order as it is made (`summed_weight_grad`). The tests
//! (`crates/kernels/tests/kernels.rs`) hold both to burn's ops bit for bit.

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, broadcast_shape};
use burn::backend::flex::FlexTensor;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::Shape;
use burn_std::{MatmulTransformAction, MatmulTransformAnalysis, MatmulTransformPolicy};
use rayon::prelude::*;

use crate::routing::{Route, Tracked, new_tensor, plain, route, shape_of, tracked};

/// burn-flex's thresholds (`ops/matmul.rs`): a product of at least this many multiply-adds
/// splits itself over the threads ...
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;
/// ... and a batch of at least 4 products with this many in all splits its batch instead.
const BATCH_PARALLEL_THRESHOLD: usize = 128 * 128 * 128;

/// burn-flex's `get_parallelism`.
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// One operand matrix: first element, (row, column) strides.
#[derive(Clone, Copy)]
struct Matrix {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

/// `out[m × n] = a[m × k] · b[k × n]`, `out` row-major and written without being read: the call
/// burn-flex's `gemm_call` makes.
///
/// # Safety
/// `a` and `b` must address valid `m × k` and `k × n` matrices, `out` `m · n` writable elements.
unsafe fn gemm_into(
    (m, n, k): (usize, usize, usize),
    out: *mut f32,
    a: Matrix,
    b: Matrix,
    parallelism: gemm::Parallelism,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            n as isize,
            false,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A flex f32 tensor's storage pointer at element `offset` past its layout's start.
fn at(x: &FlexTensor, offset: isize) -> *const f32 {
    let data = x.storage::<f32>();
    let start = x.layout().start_offset() as isize + offset;
    assert!(
        start >= 0 && (start as usize) <= data.len(),
        "matmul: operand offset outside its storage"
    );
    // In bounds: checked just above (the matrix itself by the layout's own invariants).
    data[start as usize..].as_ptr()
}

/// The last two strides (row, column).
fn matrix_strides(x: &FlexTensor) -> (isize, isize) {
    let s = x.layout().strides();
    (s[s.len() - 2], s[s.len() - 1])
}

/// burn-flex's `broadcast_batch_elem_strides`: per broadcast batch dimension, the operand's
/// element stride (0 where it has size 1 or lacks the dimension).
fn batch_strides(batch: &[usize], strides: &[isize], len: usize) -> Vec<isize> {
    let missing = len - batch.len();
    (0..len)
        .map(|i| match i.checked_sub(missing) {
            Some(j) if batch[j] > 1 => strides[j],
            _ => 0,
        })
        .collect()
}

/// Whether batch `b` of an operand with these batch strides starts at `b · m · rs` for every
/// flat `b`: its `m`-row matrices one after the other, a `(batches · m) × k` matrix with row
/// stride `rs`.
fn tiles(batch: &[usize], strides: &[isize], m: usize, rs: isize) -> bool {
    let mut want = m as isize * rs;
    for (&n, &s) in batch.iter().zip(strides).rev() {
        if n > 1 && s != want {
            return false;
        }
        want *= n as isize;
    }
    true
}

/// Whether gemm 0.19 computes every element of an `m × n × k` product and of the same product
/// with `rows` rows (more or fewer of the same rows) as the same sum: the same route and the
/// same blocks along `k`. Its special routes (`k <= 2`, a side of 1, `m · n <= 256`:
/// `gemm_common`'s `gemm_basic_generic`) are left alone; on the main route an element is a
/// chain of fused multiply-adds over each block of `kc` terms, and `kc` is `min(k, 512)` when
/// both sides are at most 64, else `kernel_params`'s, which is at least `min(k, 512)` and
/// depends on `k` alone. So: both on the main route, and `k <= 512` (one block either way) or
/// both on the same side of the 64 × 64 rule. (A mismatch is caught by the kernels test
/// `dense_products_are_burns_to_the_bit`: `k` 513-1100 with 64 × 24 per batch.)
fn same_sums((m, n, k): (usize, usize, usize), rows: usize) -> bool {
    let small = |m: usize| m <= 64 && n <= 64;
    let main = |m: usize| m > 1 && m * n > 256;
    k > 2 && n > 1 && main(m) && main(rows) && (k <= 512 || small(m) == small(rows))
}

/// The gradient of a right operand broadcast over a batch (`[1, k, n]`, a weight, against
/// `lhs` `[B, m, k]` and the output's gradient `g` `[B, m, n]`): `Σ_b lhs_bᵀ · g_b`.
/// burn-autodiff makes it as the batch of products `lhsᵀ · g` (`[B, k, n]`, one gemm call per
/// batch) summed over the batch by burn-flex's `sum_dim(0)` (`reduce_first_dim_f32`: a zeroed
/// accumulator to which each batch's product is added in batch order, on one thread). Here
/// each thread takes whole rows of the result, multiplies each batch's rows into a buffer of
/// its own and adds it in batch order: the same products (`same_sums` for the rows a thread
/// takes) and the same additions, without the `[B, k, n]` intermediate and the serial pass over
/// it. `None` where that does not hold (other ranks, broadcasts or routes).
fn summed_weight_grad(lhs: &FlexTensor, g: &FlexTensor, rhs: &Shape) -> Option<FlexTensor> {
    let (ls, gs) = (shape_of(lhs), shape_of(g));
    if ls.num_dims() != 3 || gs.num_dims() != 3 || rhs.num_dims() != 3 || rhs[0] != 1 {
        return None;
    }
    let (batches, m, k, n) = (ls[0], ls[1], ls[2], gs[2]);
    if batches < 2 || gs[0] != batches || gs[1] != m || rhs[1] != k || rhs[2] != n {
        return None;
    }
    // Small products (tiny's 64³) gain nothing from being split by rows: twice as many gemm
    // calls as there are batches, against a sum over a small intermediate (measured: a tiny
    // step 1.06x slower with them split, a small one 0.96x).
    if k * n * m < BATCH_PARALLEL_THRESHOLD {
        return None;
    }
    let (per_task, last) = split(k);
    // Each batch's product is `k × n × m` (`lhs_bᵀ · g_b`); a task computes `per_task` rows.
    if !(same_sums((k, n, m), per_task) && same_sums((k, n, m), last)) {
        return None;
    }
    let (l_bs, (l_rs, l_cs)) = (lhs.layout().strides()[0], matrix_strides(lhs));
    let (g_bs, (g_rs, g_cs)) = (g.layout().strides()[0], matrix_strides(g));
    // The accumulator starts at zero, as burn-flex's does (`0.0 + p` is `p` but for -0.0).
    let mut out = vec![0.0f32; k * n];
    out.par_chunks_mut(per_task * n)
        .enumerate()
        .for_each(|(task, acc)| {
            let rows = acc.len() / n;
            let r0 = (task * per_task) as isize;
            let mut part = vec![0.0f32; rows * n];
            for b in 0..batches as isize {
                // Rows r0.. of lhs_bᵀ: columns r0.. of lhs_b.
                let a = Matrix {
                    ptr: at(lhs, b * l_bs + r0 * l_cs),
                    rs: l_cs,
                    cs: l_rs,
                };
                let gb = Matrix {
                    ptr: at(g, b * g_bs),
                    rs: g_rs,
                    cs: g_cs,
                };
                // SAFETY: `a` is `rows × m` inside `lhs` (columns r0..r0 + rows of batch b),
                // `gb` is batch b's `m × n` of `g`, `part` holds `rows · n`.
                unsafe {
                    gemm_into(
                        (rows, n, m),
                        part.as_mut_ptr(),
                        a,
                        gb,
                        gemm::Parallelism::None,
                    )
                };
                for (o, &p) in acc.iter_mut().zip(&part) {
                    *o += p;
                }
            }
        });
    Some(new_tensor(out, rhs.clone()))
}

/// `count` items (rows, batches) in one run per thread: `(items per run, items in the last)`.
fn split(count: usize) -> (usize, usize) {
    let tasks = rayon::current_num_threads().clamp(1, count.max(1));
    let per_task = count.div_ceil(tasks).max(1);
    (
        per_task,
        count - (count.div_ceil(per_task).max(1) - 1) * per_task,
    )
}

/// Whether a batch of `m × n × k` products can run as one product per thread over whole
/// batches: the right operand broadcast (every batch stride 0), the left one's batches tiling
/// one matrix (`tiles`), and each task's product summing as one batch's does (`same_sums`).
/// `Some(batches per task)`.
fn fold(
    batch: &[usize],
    l_bs: &[isize],
    r_bs: &[isize],
    (m, n, k): (usize, usize, usize),
    l_rs: isize,
) -> Option<usize> {
    let batches: usize = batch.iter().product();
    let (per_task, last) = split(batches);
    (batches > 1
        && r_bs.iter().all(|&s| s == 0)
        && tiles(batch, l_bs, m, l_rs)
        && same_sums((m, n, k), per_task * m)
        && same_sums((m, n, k), last * m))
    .then_some(per_task)
}

/// burn-flex's `batch_elem_offset`: the element offset of flat batch index `b`.
fn batch_offset(b: usize, shape: &[usize], strides: &[isize]) -> isize {
    let mut rest = b;
    let mut offset = 0isize;
    for (&n, &s) in shape.iter().zip(strides).rev() {
        offset += (rest % n) as isize * s;
        rest /= n;
    }
    offset
}

/// `lhs · rhs` for f32 flex tensors `[.., m, k]` and `[.., k, n]` (batch dimensions broadcast,
/// any strides): burn-flex 0.22.1's `matmul`, the same `gemm` calls in the same order, into an
/// output that is neither zero-filled nor copied.
pub(crate) fn product(lhs: &FlexTensor, rhs: &FlexTensor) -> FlexTensor {
    let (ls, rs) = (shape_of(lhs), shape_of(rhs));
    let (lr, rr) = (ls.num_dims(), rs.num_dims());
    assert!(lr >= 2 && rr >= 2, "matmul requires at least 2D tensors");
    let (m, k, n) = (ls[lr - 2], ls[lr - 1], rs[rr - 1]);
    assert_eq!(k, rs[rr - 2], "matmul: inner dimensions must match");
    let (l_rs, l_cs) = matrix_strides(lhs);
    let (r_rs, r_cs) = matrix_strides(rhs);

    // The broadcast batch shape (burn-flex's `broadcast_batch_dims`, left-padded with 1s).
    let (lb, rb) = (&ls.as_slice()[..lr - 2], &rs.as_slice()[..rr - 2]);
    let len = lb.len().max(rb.len());
    let padded = |b: &[usize], i: usize| i.checked_sub(len - b.len()).map_or(1, |j| b[j]);
    let batch: Vec<usize> = (0..len)
        .map(|i| {
            let (l, r) = (padded(lb, i), padded(rb, i));
            assert!(
                l == r || l == 1 || r == 1,
                "matmul: batch dimensions not broadcastable: {lb:?} vs {rb:?}"
            );
            l.max(r)
        })
        .collect();
    let batches: usize = batch.iter().product();
    let l_bs = batch_strides(lb, &lhs.layout().strides()[..lr - 2], len);
    let r_bs = batch_strides(rb, &rhs.layout().strides()[..rr - 2], len);

    let matrix = m * n;
    let total = batches * matrix;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let one = |dst: *mut f32, b: usize, parallelism| {
        let a = Matrix {
            ptr: at(lhs, batch_offset(b, &batch, &l_bs)),
            rs: l_rs,
            cs: l_cs,
        };
        let bm = Matrix {
            ptr: at(rhs, batch_offset(b, &batch, &r_bs)),
            rs: r_rs,
            cs: r_cs,
        };
        // SAFETY: `a`, `bm` lie inside their tensors (their layouts describe these matrices),
        // `dst` is this product's own `m · n` elements of `out`'s capacity.
        unsafe { gemm_into((m, n, k), dst, a, bm, parallelism) };
    };
    if k == 0 {
        // Nothing to sum: burn-flex's zero-filled output is what gemm leaves.
        out.resize(total, 0.0);
    } else if total > 0 {
        let spare = &mut out.spare_capacity_mut()[..total];
        let per_matrix = matrix.saturating_mul(k);
        let all = batches.saturating_mul(per_matrix);
        let by_batch = batches >= 4 && all >= BATCH_PARALLEL_THRESHOLD;
        let ptr = |chunk: &mut [MaybeUninit<f32>]| chunk.as_mut_ptr().cast::<f32>();
        if lr == 2 && rr == 2 {
            // burn-flex's `matmul_2d_strided`.
            one(ptr(spare), 0, parallelism(m, n, k));
        } else if let Some(per_task) = fold(&batch, &l_bs, &r_bs, (m, n, k), l_rs) {
            // A right operand broadcast over the batch (a weight) and a left one whose batches
            // lie one after the other (`[b, t, d]` activations): one product per thread, each
            // of the rows of `per_task` whole batches, instead of one product per batch: the
            // weight is packed once per thread instead of once per sequence. The same bits as
            // burn-flex's loop (`same_sums`).
            spare
                .par_chunks_mut(per_task * matrix)
                .enumerate()
                .for_each(|(task, chunk)| {
                    let rows = chunk.len() / n;
                    let a = Matrix {
                        ptr: at(lhs, (task * per_task * m) as isize * l_rs),
                        rs: l_rs,
                        cs: l_cs,
                    };
                    let bm = Matrix {
                        ptr: at(rhs, 0),
                        rs: r_rs,
                        cs: r_cs,
                    };
                    // SAFETY: the batches of `lhs` tile a `batches · m × k` matrix at these
                    // strides (`fold`), of which this task takes `rows` from its first batch;
                    // `rhs` is one `k × n` matrix for all of them; `chunk` holds `rows · n`.
                    unsafe { gemm_into((rows, n, k), ptr(chunk), a, bm, gemm::Parallelism::None) };
                });
        } else if per_matrix >= PARALLEL_THRESHOLD && !by_batch {
            for (b, chunk) in spare.chunks_mut(matrix).enumerate() {
                one(ptr(chunk), b, gemm::Parallelism::Rayon(0));
            }
        } else if all >= BATCH_PARALLEL_THRESHOLD && batches > 1 {
            spare
                .par_chunks_mut(matrix)
                .enumerate()
                .for_each(|(b, chunk)| one(ptr(chunk), b, gemm::Parallelism::None));
        } else {
            for (b, chunk) in spare.chunks_mut(matrix).enumerate() {
                one(ptr(chunk), b, gemm::Parallelism::None);
            }
        }
        // SAFETY: every product wrote each of its `m · n` elements (gemm with `read_dst` false
        // and k > 0 assigns the whole output), and the products tile `0..total`.
        unsafe { out.set_len(total) };
    }
    let mut shape = batch;
    shape.extend([m, n]);
    new_tensor(out, Shape::from(shape))
}

/// `lhs.matmul(rhs)`, its products (forward and backward) burn-flex's made without the zero
/// fill and copy (the module's `product`); burn's own op off flex, under gradient
/// checkpointing, inside [`with_composed_ops`](crate::with_composed_ops), and where one operand
/// is tracked and the other not.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    let route = match (route(&lhs), route(&rhs)) {
        (a, b) if a == b => a,
        _ => Route::Composed,
    };
    match route {
        Route::Composed => lhs.matmul(rhs),
        Route::Plain => Tensor::from_primitive::<Flex>(product(&plain(lhs), &plain(rhs))),
        Route::Tracked => {
            let (lhs, rhs) = (tracked(lhs), tracked(rhs));
            let out = match MatmulBackward
                .prepare::<NoCheckpointing>([lhs.node(), rhs.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = product(lhs.primitive(), rhs.primitive());
                    prep.finish((lhs.primitive().clone(), rhs.primitive().clone()), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(product(lhs.primitive(), rhs.primitive())),
            };
            Tensor::from_primitive::<Tracked>(out)
        }
    }
}

/// burn-autodiff's `Matmul` step: `dlhs = dy · rhsᵀ`, `drhs = lhsᵀ · dy`, each summed over the
/// batch dimensions its operand broadcast.
#[derive(Debug)]
struct MatmulBackward;

impl Backward<Flex, 2> for MatmulBackward {
    /// The operands.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (lhs, rhs) = ops.state;
        let g = grads.consume::<Flex>(&ops.node);
        let transpose = |x: &FlexTensor| {
            let rank = shape_of(x).num_dims();
            x.transpose(rank - 2, rank - 1)
        };
        let [pl, pr] = ops.parents;
        if let Some(node) = pl {
            let d = product(&g, &transpose(&rhs));
            grads.register::<Flex>(node.id, broadcast_shape::<Flex>(d, &shape_of(&lhs)));
        }
        if let Some(node) = pr {
            let shape = shape_of(&rhs);
            let d = summed_weight_grad(&lhs, &g, &shape)
                .unwrap_or_else(|| broadcast_shape::<Flex>(product(&transpose(&lhs), &g), &shape));
            grads.register::<Flex>(node.id, d);
        }
    }
}

/// `linear.forward(x)` in fp32: burn-backend 0.22.1's default `linear` (which the dispatch
/// backend runs: its batch-folding policy, its reshapes and its bias add, each the same op), with
/// [`matmul`] for its product.
pub(crate) fn linear_fp32<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    let w = linear.weight.val();
    let flex = route(&x);
    if D == 1 || flex == Route::Composed || route(&w) != flex {
        // burn's own (a vector input gains a batch dimension there: no such call in ordo).
        return linear.forward(x);
    }
    let bias = linear.bias.as_ref().map(|b| b.val());
    let [d_in, d_out] = w.dims();
    let analysis = MatmulTransformAnalysis::from_shapes(&x.shape(), &w.shape());
    match MatmulTransformPolicy::default().action(&analysis) {
        MatmulTransformAction::MergeBatches { rows } => {
            let mut dims = x.dims();
            dims[D - 1] = d_out;
            let y = matmul(x.reshape([rows, d_in]), w);
            let y = match bias {
                Some(b) => y + b.reshape([1, d_out]),
                None => y,
            };
            y.reshape(dims)
        }
        MatmulTransformAction::Keep => {
            // burn's `unsqueeze_leading` leaves a weight of x's rank as it is (no reshape op).
            let w = if D == 2 {
                same_rank(w, flex)
            } else {
                w.unsqueeze::<D>()
            };
            let y = matmul(x, w);
            match bias {
                Some(b) => y + b.unsqueeze::<D>(),
                None => y,
            }
        }
    }
}

/// `x` typed with rank `E` (= `D`), without an op: the same primitive.
fn same_rank<const D: usize, const E: usize>(x: Tensor<D>, route: Route) -> Tensor<E> {
    assert_eq!(D, E, "same_rank: ranks differ");
    match route {
        Route::Plain => Tensor::from_primitive::<Flex>(plain(x)),
        Route::Tracked => Tensor::from_primitive::<Tracked>(tracked(x)),
        Route::Composed => unreachable!("linear_fp32 takes burn's own linear off flex"),
    }
}
