//! `learned`: a trained table of absolute positions (GPT-2, BERT, nanoGPT), added to the
//! token embeddings: `x_t = e(token_t) + P[t]`, `P ∈ R^{max_len × d_model}`.
//!
//! Initialised N(0, 1/2) (std 1/√2), the same per-component RMS as the sinusoids, beside token
//! embeddings N(0, 1). Positions at or past `max_len` have no row: the scheme reports them as
//! unsupported through [`Positional::max_len`] and callers ask before building tensors. Rows
//! between the longest training length and `max_len` are never trained and stay at their init.

use crate::Positional;
use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct LearnedPositions {
    /// `[max_len, d_model]`
    pub table: Param<Tensor<2>>,
}

impl LearnedPositions {
    pub fn new(max_len: usize, d_model: usize, device: &Device) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: std::f64::consts::FRAC_1_SQRT_2,
        };
        Self {
            table: init.init([max_len, d_model], device),
        }
    }
}

impl Positional for LearnedPositions {
    fn embed(&self, x: Tensor<3>) -> Tensor<3> {
        let [_, t, _] = x.dims();
        let max_len = self.table.dims()[0];
        assert!(
            t <= max_len,
            "learned positions: sequence of {t} exceeds max_len {max_len} (check supports() first)"
        );
        let pe = self.table.val().slice_dim(0, 0..t); // [t, d]
        x + pe.unsqueeze::<3>() // [b, t, d]
    }

    fn max_len(&self) -> Option<usize> {
        Some(self.table.dims()[0])
    }
}
