//! The model's dense products (linear layers and the tied output head) and the precision they
//! run in: [`Precision`], [`with_precision`], [`linear`], [`dense`].
//!
//! In fp32 (the default) these are burn's own ops with burn-flex's products made by
//! [`crate::matmul()`] (the same `gemm` calls without the zero fill and copy of each output), so
//! fp32 results stay bit-identical to burn's. Inside [`with_precision`]`(Bf16, ..)`
//! on flex, the product `x · w` is one op whose forward and backward products
//! (`y = x w`, `dx = dy wᵀ`, `dw = xᵀ dy`) run in bf16 with fp32 sums ([`crate::bf16`]): what
//! PyTorch's CPU autocast does to a linear layer. Everything else stays fp32: the weights (the
//! master copy the optimizer updates and checkpoints store), the optimizer state, the bias
//! add, the activations, LayerNorm, softmax, the loss, the gradients, and the attention core
//! (scores and the product with the values), whose per-(sequence, head) products are small.
//! On any other device (ndarray, wgpu) and under gradient checkpointing, bf16 falls back to
//! fp32 products: [`bf16_runs_on`] says which; training refuses a bf16 run where it would.

use std::cell::Cell;

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::nn::Linear;
use burn::prelude::*;

use crate::bf16::{self, View};
use crate::routing::{Route, Tracked, new_tensor, plain, route, scoped, shape_of, tracked, values};

/// The number format of the dense matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 throughout (burn-flex's products, bit for bit: [`crate::matmul()`]).
    #[default]
    Fp32,
    /// bf16 operands, fp32 sums and results ([`crate::bf16::matmul`]).
    Bf16,
}

impl Precision {
    /// `"fp32"` or `"bf16"`, as configurations spell it.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether it is the default, fp32 (what serialisers leave out).
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("expected fp32 or bf16, got {other:?}")),
        }
    }
}

thread_local! {
    static PRECISION: Cell<Precision> = const { Cell::new(Precision::Fp32) };
}

/// Runs `f` with the dense products of the model (on this thread) in `precision`. The backward
/// pass of an op created inside runs in the op's precision wherever it is called.
pub fn with_precision<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    scoped(&PRECISION, precision, f)
}

/// The precision [`with_precision`] set on this thread.
pub fn precision() -> Precision {
    PRECISION.get()
}

/// Whether dense products on `device` run in bf16 when asked to: flex without gradient
/// checkpointing, and a CPU with a bf16 unit ([`bf16::unit`]). `Err` says why not.
pub fn bf16_runs_on(device: &Device) -> Result<(), String> {
    bf16::unit()?;
    if crate::accelerated(device) {
        Ok(())
    } else {
        Err(
            "bf16 products run on the cpu (flex) device without gradient checkpointing; \
             this device would compute them in fp32"
                .into(),
        )
    }
}

/// `linear.forward(x)`, its product in the current [`precision`].
pub fn linear<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    if precision() == Precision::Fp32 {
        return crate::matmul::linear_fp32(linear, x);
    }
    let y = dense(x, linear.weight.val(), false);
    match &linear.bias {
        Some(b) => y + b.val().unsqueeze(),
        None => y,
    }
}

/// `x · w` (`x · wᵀ` if `transposed`) for `x` `[.., k]` and `w` `[k, n]` (`[n, k]`), in the
/// current [`precision`].
pub fn dense<const D: usize>(x: Tensor<D>, w: Tensor<2>, transposed: bool) -> Tensor<D> {
    let fp32 = |x: Tensor<D>, w: Tensor<2>| {
        let w = if transposed { w.transpose() } else { w };
        crate::matmul::matmul(x, w.unsqueeze())
    };
    if precision() == Precision::Fp32 || bf16::unit().is_err() {
        return fp32(x, w);
    }
    let route = match (route(&x), route(&w)) {
        (a, b) if a == b => a,
        _ => Route::Composed,
    };
    match route {
        Route::Plain => Tensor::from_primitive::<Flex>(forward(&plain(x), &plain(w), transposed)),
        Route::Tracked => {
            let (x, w) = (tracked(x), tracked(w));
            let step = DenseBackward { transposed };
            let out = match step
                .prepare::<NoCheckpointing>([x.node(), w.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = forward(x.primitive(), w.primitive(), transposed);
                    prep.finish((x.primitive().clone(), w.primitive().clone()), y)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(forward(x.primitive(), w.primitive(), transposed))
                }
            };
            Tensor::from_primitive::<Tracked>(out)
        }
        Route::Composed => fp32(x, w),
    }
}

/// `(rows, k, n)` of `x` `[.., k]` times `w`.
fn dims(x: &FlexTensor, w: &FlexTensor, transposed: bool) -> (usize, usize, usize) {
    let (xs, ws) = (shape_of(x), shape_of(w));
    let k = xs[xs.num_dims() - 1];
    let (wk, n) = if transposed {
        (ws[1], ws[0])
    } else {
        (ws[0], ws[1])
    };
    assert_eq!(k, wk, "dense: x [.., {k}] times a weight with {wk} rows");
    (xs.num_elements() / k.max(1), k, n)
}

/// The weight as the right operand `[k, n]`.
fn weight_view(w: &[f32], k: usize, n: usize, transposed: bool) -> View<'_> {
    if transposed {
        View::transposed(w, k) // stored [n, k]
    } else {
        View::rows(w, n)
    }
}

fn forward(x: &FlexTensor, w: &FlexTensor, transposed: bool) -> FlexTensor {
    let (rows, k, n) = dims(x, w, transposed);
    let (xs, ws) = (values(x), values(w));
    let mut y = vec![0.0; rows * n];
    bf16::matmul(
        View::rows(&xs, k),
        weight_view(&ws, k, n, transposed),
        &mut y,
        rows,
        n,
        k,
    );
    let mut shape = shape_of(x);
    let last = shape.num_dims() - 1;
    shape[last] = n;
    new_tensor(y, shape)
}

#[derive(Debug)]
struct DenseBackward {
    transposed: bool,
}

impl Backward<Flex, 2> for DenseBackward {
    /// The input and the weight.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let g = grads.consume::<Flex>(&ops.node);
        let (rows, k, n) = dims(&x, &w, self.transposed);
        let (xs, ws, gs) = (values(&x), values(&w), values(&g));
        let [px, pw] = ops.parents;
        if let Some(node) = px {
            // dx [rows, k] = dy [rows, n] · wᵀ.
            let wt = if self.transposed {
                View::rows(&ws, k) // the stored [n, k] is (wᵀ)ᵀ
            } else {
                View::transposed(&ws, n)
            };
            let mut dx = vec![0.0; rows * k];
            bf16::matmul(View::rows(&gs, n), wt, &mut dx, rows, k, n);
            grads.register::<Flex>(node.id, new_tensor(dx, shape_of(&x)));
        }
        if let Some(node) = pw {
            let mut dw = vec![0.0; k * n];
            if self.transposed {
                // The stored [n, k]: dyᵀ [n, rows] · x [rows, k].
                bf16::matmul(
                    View::transposed(&gs, n),
                    View::rows(&xs, k),
                    &mut dw,
                    n,
                    k,
                    rows,
                );
            } else {
                // [k, n] = xᵀ [k, rows] · dy [rows, n].
                bf16::matmul(
                    View::transposed(&xs, k),
                    View::rows(&gs, n),
                    &mut dw,
                    k,
                    n,
                    rows,
                );
            }
            grads.register::<Flex>(node.id, new_tensor(dw, shape_of(&w)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().expect("f32")
    }

    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn gap(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// The op's output and both gradients against fp32 products of the bf16-rounded operands
    /// (what the op computes, up to the order of fp32 sums), for both weight layouts.
    #[test]
    fn bf16_dense_is_fp32_products_of_rounded_operands() {
        if bf16::unit().is_err() {
            return;
        }
        let dev = Device::flex().autodiff();
        let flex = Device::flex();
        let (rows, k, n) = (37, 45, 29);
        let round = |v: &[f32]| -> Vec<f32> {
            v.iter()
                .map(|&x| bf16::from_bf16(bf16::to_bf16(x)))
                .collect()
        };
        let t2 = |v: Vec<f32>, shape: [usize; 2], d: &Device| {
            Tensor::<2>::from_data(TensorData::new(v, shape), d)
        };
        let (x, dy) = (noise(rows * k, 1), noise(rows * n, 2));
        for transposed in [false, true] {
            let w = noise(k * n, 3);
            let wshape = if transposed { [n, k] } else { [k, n] };
            let xa = t2(x.clone(), [rows, k], &dev).require_grad();
            let wa = t2(w.clone(), wshape, &dev).require_grad();
            let y = with_precision(Precision::Bf16, || {
                dense(xa.clone(), wa.clone(), transposed)
            });
            let grads = (y.clone() * t2(dy.clone(), [rows, n], &dev))
                .sum()
                .backward();
            let (dx, dw) = (xa.grad(&grads).unwrap(), wa.grad(&grads).unwrap());
            // The reference: fp32 products of rounded values.
            let wr = t2(round(&w), wshape, &flex);
            let w_kn = if transposed { wr.transpose() } else { wr };
            let (xr, dyr) = (
                t2(round(&x), [rows, k], &flex),
                t2(round(&dy), [rows, n], &flex),
            );
            let want_y = vals(xr.clone().matmul(w_kn.clone()));
            let want_dx = vals(dyr.clone().matmul(w_kn.transpose()));
            let dw_kn = xr.transpose().matmul(dyr);
            let want_dw = vals(if transposed { dw_kn.transpose() } else { dw_kn });
            let y = vals(y);
            assert!(gap(&y, &want_y) < 1e-5, "y, transposed {transposed}");
            assert!(
                gap(&vals(dx), &want_dx) < 1e-5,
                "dx, transposed {transposed}"
            );
            assert!(
                gap(&vals(dw), &want_dw) < 1e-5,
                "dw, transposed {transposed}"
            );
            // Not vacuous: the fp32 product of the unrounded operands differs.
            let w32 = t2(w.clone(), wshape, &flex);
            let fp32 = t2(x.clone(), [rows, k], &flex).matmul(if transposed {
                w32.transpose()
            } else {
                w32
            });
            assert!(gap(&y, &vals(fp32)) > 1e-3);
            // The inference path (no autodiff) gives the same values.
            let plain = with_precision(Precision::Bf16, || {
                dense(
                    t2(x.clone(), [rows, k], &flex),
                    t2(w.clone(), wshape, &flex),
                    transposed,
                )
            });
            assert_eq!(vals(plain), y);
        }
    }
}
