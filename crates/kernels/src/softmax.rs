//! Softmax over the last dimension: forward and backward each one pass over the rows
//! ([`cpu::softmax_rows`], [`cpu::softmax_backward_rows`]).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;

use crate::cpu;
use crate::routing::{Route, flex_op, last_dim, new_tensor, route, shape_of, values};

fn softmax_forward(x: &FlexTensor) -> FlexTensor {
    let shape = shape_of(x);
    let xs = values(x);
    let y = cpu::softmax_rows(&xs, last_dim(&shape));
    new_tensor(y, shape)
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = FlexTensor; // the output

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let shape = shape_of(&y);
            let (ys, gs) = (values(&y), values(&g));
            let dx = cpu::softmax_backward_rows(&ys, &gs, last_dim(&shape));
            new_tensor(dx, shape)
        });
    }
}

/// Softmax over the last dimension.
pub fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match route(&x) {
        Route::Composed => burn::tensor::activation::softmax(x, D - 1),
        route => flex_op(x, route, SoftmaxBackward, |x| {
            let y = softmax_forward(x);
            (y.clone(), y)
        }),
    }
}
