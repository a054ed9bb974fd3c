//! Cross-entropy on selected positions only (answer tokens, never padding or the prompt).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// Mean negative log-likelihood of `targets` over positions where `weights` is 1.
///
/// # Shapes
/// - logits: `[b, t, v]`; targets: `[b, t]` (any valid id where the weight is 0); weights: `[b, t]`.
pub fn masked_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    weights: Tensor<2>,
) -> Tensor<1> {
    if crate::kernels::fused_cross_entropy(&logits) {
        return crate::kernels::cross_entropy(logits, &targets, &weights);
    }
    let [b, t, _] = logits.dims();
    let logp = log_softmax(logits, 2); // [b, t, v]
    let picked = logp.gather(2, targets.reshape([b, t, 1])).reshape([b, t]); // [b, t]
    let total = weights.clone().sum().clamp_min(1.0);
    (picked * weights).sum().neg() / total
}
