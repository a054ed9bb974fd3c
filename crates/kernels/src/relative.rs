//! Shaw's relative terms alone: a gather by clipped offset and its adjoint, a scatter-add
//! ([`cpu::relative_gather`], [`cpu::relative_scatter`]), instead of contractions with a one-hot
//! `[t, t, 2k+1]` map. The backward step of each is the other.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::Shape;

use crate::cpu;
use crate::routing::{Route, flex_op, new_tensor, route, shape_of, values};

/// Which of the two ops; the backward step of each is the other.
#[derive(Debug, Clone, Copy)]
enum Relative {
    Gather,
    Scatter,
}

fn relative_forward(x: &FlexTensor, op: Relative, k: usize) -> FlexTensor {
    let shape = shape_of(x);
    let [n, t] = [shape[0], shape[1]];
    let r = 2 * k + 1;
    let xs = values(x);
    match op {
        Relative::Gather => {
            assert_eq!(
                shape[2], r,
                "relative_gather: last dimension must be 2k + 1"
            );
            let mut out = vec![0.0; n * t * t];
            cpu::relative_gather(&xs, t, k, &mut out);
            new_tensor(out, Shape::new([n, t, t]))
        }
        Relative::Scatter => {
            assert_eq!(shape[2], t, "relative_scatter: expects [n, t, t]");
            let mut out = vec![0.0; n * t * r];
            cpu::relative_scatter(&xs, t, k, &mut out);
            new_tensor(out, Shape::new([n, t, r]))
        }
    }
}

#[derive(Debug)]
struct RelativeBackward(Relative);

impl Backward<Flex, 1> for RelativeBackward {
    type State = usize; // k

    fn backward(self, ops: Ops<usize, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let adjoint = match self.0 {
            Relative::Gather => Relative::Scatter,
            Relative::Scatter => Relative::Gather,
        };
        let k = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            relative_forward(&g, adjoint, k)
        });
    }
}

fn relative(x: Tensor<3>, op: Relative, k: usize) -> Tensor<3> {
    match route(&x) {
        Route::Composed => panic!("relative ops need an accelerated device (see `accelerated`)"),
        route => flex_op(x, route, RelativeBackward(op), |x| {
            (relative_forward(x, op, k), k)
        }),
    }
}

/// `out[n, i, j] = x[n, i, clip(j - i, -k, k) + k]`: `[n, t, 2k+1]` -> `[n, t, t]` (Shaw's key
/// term, with `x = q wᵀ`). Only where [`accelerated`](crate::accelerated).
pub fn relative_gather(x: Tensor<3>, k: usize) -> Tensor<3> {
    relative(x, Relative::Gather, k)
}

/// `out[n, i, l] = Σ_{j: clip(j - i, -k, k) + k = l} p[n, i, j]`: `[n, t, t]` -> `[n, t, 2k+1]`
/// (Shaw's value term, with `p` the attention probabilities). Only where
/// [`accelerated`](crate::accelerated).
pub fn relative_scatter(p: Tensor<3>, k: usize) -> Tensor<3> {
    relative(p, Relative::Scatter, k)
}
