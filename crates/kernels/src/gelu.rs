//! The exact GELU with a vectorised `erf` ([`cpu::gelu`], [`cpu::gelu_backward`]).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;

use crate::cpu;
use crate::routing::{Route, flex_op, new_tensor, route, shape_of, values};

fn gelu_forward(x: &FlexTensor) -> FlexTensor {
    let xs = values(x);
    let y = cpu::gelu(&xs);
    new_tensor(y, shape_of(x))
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor; // the input

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let (xs, gs) = (values(&x), values(&g));
            let dx = cpu::gelu_backward(&xs, &gs);
            new_tensor(dx, shape_of(&x))
        });
    }
}

/// The exact GELU, `x Φ(x)`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match route(&x) {
        Route::Composed => burn::tensor::activation::gelu(x),
        route => flex_op(x, route, GeluBackward, |x| (gelu_forward(x), x.clone())),
    }
}
