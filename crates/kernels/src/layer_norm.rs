//! LayerNorm with its parameters: one op with three parents (input, γ, β), whose backward step
//! gives all three gradients ([`cpu::layer_norm`], [`cpu::layer_norm_backward`]).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::nn::LayerNorm;
use burn::prelude::*;
use burn::tensor::Shape;

use crate::cpu;
use crate::routing::{Route, Tracked, new_tensor, plain, route, shape_of, tracked, values};

/// burn's `LayerNormConfig` default, which every norm in the model uses.
const LAYER_NORM_EPS: f32 = 1e-5;

fn layer_norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
) -> (FlexTensor, cpu::RowStats) {
    let (xs, gs, bs) = (values(x), values(gamma), values(beta));
    let (y, stats) = cpu::layer_norm(&xs, &gs, &bs, LAYER_NORM_EPS);
    (new_tensor(y, shape_of(x)), stats)
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    /// The input, γ and the row statistics.
    type State = (FlexTensor, FlexTensor, cpu::RowStats);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gamma, stats) = ops.state;
        let g = grads.consume::<Flex>(&ops.node);
        let (xs, gs, gammas) = (values(&x), values(&g), values(&gamma));
        let (dx, dgamma, dbeta) = cpu::layer_norm_backward(&xs, &gs, &gammas, &stats);
        let [px, pgamma, pbeta] = ops.parents;
        let n = gammas.len();
        if let Some(node) = px {
            grads.register::<Flex>(node.id, new_tensor(dx, shape_of(&x)));
        }
        if let Some(node) = pgamma {
            grads.register::<Flex>(node.id, new_tensor(dgamma, Shape::new([n])));
        }
        if let Some(node) = pbeta {
            grads.register::<Flex>(node.id, new_tensor(dbeta, Shape::new([n])));
        }
    }
}

/// `norm.forward(x)` for a LayerNorm with a bias and the default epsilon (all of the model's).
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    let Some(beta) = norm.beta.as_ref() else {
        return norm.forward(x);
    };
    let gamma = norm.gamma.val();
    let route = match (route(&x), route(&gamma)) {
        (a, b) if a == b => a,
        _ => Route::Composed, // parameters and input on different devices: let burn say so
    };
    match route {
        Route::Plain => {
            let (gamma, beta) = (plain(gamma), plain(beta.val()));
            Tensor::from_primitive::<Flex>(layer_norm_forward(&plain(x), &gamma, &beta).0)
        }
        Route::Tracked => {
            let (x, gamma, beta) = (tracked(x), tracked(gamma), tracked(beta.val()));
            let out = match LayerNormBackward
                .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (y, stats) =
                        layer_norm_forward(x.primitive(), gamma.primitive(), beta.primitive());
                    let state = (x.primitive().clone(), gamma.primitive().clone(), stats);
                    prep.finish(state, y)
                }
                OpsKind::UnTracked(prep) => prep.finish(
                    layer_norm_forward(x.primitive(), gamma.primitive(), beta.primitive()).0,
                ),
            };
            Tensor::from_primitive::<Tracked>(out)
        }
        Route::Composed => norm.forward(x),
    }
}
