//! The weighted cross-entropy loss from logits: the log-sum-exp of each row in the forward pass,
//! `softmax - one-hot` scaled by the weights in the backward pass
//! ([`cpu::log_sum_exp_rows`], [`cpu::cross_entropy_backward`]).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::Shape;

use crate::cpu;
use crate::routing::{Route, flex_op, last_dim, new_tensor, route, shape_of, values};

/// Loss value and what its backward pass needs.
fn cross_entropy_forward(
    logits: &FlexTensor,
    targets: &[usize],
    weights: &[f32],
) -> (FlexTensor, Vec<f32>) {
    let shape = shape_of(logits);
    let v = last_dim(&shape);
    let xs = values(logits);
    let lse = cpu::log_sum_exp_rows(&xs, v);
    let total = weights.iter().sum::<f32>().max(1.0);
    let mut sum = 0.0f64;
    for (r, ((&l, &t), &w)) in lse.iter().zip(targets).zip(weights).enumerate() {
        if w != 0.0 {
            sum += (w * (l - xs[r * v + t])) as f64;
        }
    }
    (
        new_tensor(vec![(sum / total as f64) as f32], Shape::new([1])),
        lse,
    )
}

#[derive(Debug, Clone)]
struct CrossEntropyState {
    logits: FlexTensor,
    lse: Vec<f32>,
    targets: Vec<usize>,
    weights: Vec<f32>,
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl Backward<Flex, 1> for CrossEntropyBackward {
    type State = CrossEntropyState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let g = values(&g)[0];
            let total = s.weights.iter().sum::<f32>().max(1.0);
            let scale: Vec<f32> = s.weights.iter().map(|w| g * w / total).collect();
            let xs = values(&s.logits);
            let dx = cpu::cross_entropy_backward(&xs, &s.lse, &s.targets, &scale);
            new_tensor(dx, shape_of(&s.logits))
        });
    }
}

/// Whether [`cross_entropy`] runs on the kernels for these logits (otherwise the caller composes
/// burn's ops).
pub fn fused_cross_entropy(logits: &Tensor<3>) -> bool {
    !matches!(route(logits), Route::Composed)
}

/// Mean negative log-likelihood of `targets` where `weights` is non-zero (weighted by it):
/// `Σ w (logsumexp(z) - z[target]) / max(Σ w, 1)`. Only for logits that
/// [`fused_cross_entropy`] accepts.
pub fn cross_entropy(
    logits: Tensor<3>,
    targets: &Tensor<2, Int>,
    weights: &Tensor<2>,
) -> Tensor<1> {
    let route = route(&logits);
    let targets: Vec<usize> = targets
        .to_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("int targets")
        .into_iter()
        .map(|t| t as usize)
        .collect();
    let weights: Vec<f32> = weights
        .to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float weights");
    let [b, t, v] = logits.dims();
    assert!(
        targets.len() == b * t && weights.len() == b * t,
        "cross_entropy: logits [{b}, {t}, {v}] need targets and weights [{b}, {t}]"
    );
    assert!(
        targets.iter().all(|&id| id < v),
        "cross_entropy: a target is outside the vocabulary ({v})"
    );
    flex_op(logits, route, CrossEntropyBackward, |x| {
        let (loss, lse) = cross_entropy_forward(x, &targets, &weights);
        let state = CrossEntropyState {
            logits: x.clone(),
            lse,
            targets,
            weights,
        };
        (loss, state)
    })
}
