//! `learned`: a trained table of absolute positions (GPT-2, BERT, nanoGPT), added to the
//! token embeddings: `x_t = e(token_t) + P[t]`, `P ∈ R^{max_len × d_model}`.
//!
//! Initialised N(0, 1/2) (std 1/√2), the same per-component RMS as the sinusoids, beside token
//! embeddings N(0, 1). Positions at or past `max_len` have no row: the scheme reports them as
//! unsupported through [`Positional::max_len`] and callers ask before building tensors. Rows
//! between the longest training length and `max_len` are never trained and stay at their init.

use crate::figure::{self, Figure, View};
use crate::{EncodingConfigError, EncodingDims, Positional, Positions, Scheme, invalid};
use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `kind = "learned"`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedConfig {
    /// Number of positions in the table; longer sequences are unsupported. `0` (the default)
    /// asks the trainer to size it to the longest training sequence (with randomized
    /// positions, to their range).
    #[serde(default)]
    pub max_len: usize,
}

impl Scheme for LearnedConfig {
    type Module = LearnedPositions;

    fn validate(&self, _dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        if self.max_len == 0 {
            return Err(invalid(
                "max_len",
                "expected a positive number of positions (ordo train resolves 0 to the longest training sequence)",
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &EncodingDims, device: &Device) -> LearnedPositions {
        LearnedPositions::new(self.max_len, dims.d_model, device)
    }

    fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
        (self.max_len as u64).checked_mul(dims.d_model as u64)
    }

    fn fit_to_length(&mut self, reach: usize) -> Result<(), EncodingConfigError> {
        if self.max_len == 0 {
            self.max_len = reach;
        } else if self.max_len < reach {
            return Err(invalid(
                "max_len",
                format!(
                    "the learned table has {} positions but the longest training sequence has \
                     {reach} tokens; expected max_len >= {reach}",
                    self.max_len
                ),
            ));
        }
        Ok(())
    }
}

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
    fn embed(&self, x: Tensor<3>, positions: &Positions) -> Tensor<3> {
        let max_len = self.table.dims()[0];
        let reach = positions.extent();
        assert!(
            reach <= max_len,
            "learned positions: position {} exceeds max_len {max_len} (check supports() first)",
            reach.saturating_sub(1)
        );
        let pe = if positions.is_contiguous() {
            self.table.val().slice_dim(0, 0..positions.len()) // [t, d]
        } else {
            let rows: Vec<i64> = positions.as_slice().iter().map(|&p| p as i64).collect();
            let rows =
                Tensor::<1, Int>::from_data(TensorData::new(rows, [positions.len()]), &x.device());
            self.table.val().select(0, rows) // [t, d]
        };
        x + pe.unsqueeze::<3>() // [b, t, d]
    }

    fn max_len(&self) -> Option<usize> {
        Some(self.table.dims()[0])
    }

    fn figures(&self, view: &View, _device: &Device) -> Vec<Figure> {
        let n = view.len.min(self.table.dims()[0]);
        let table = crate::values(self.table.val().slice_dim(0, 0..n));
        figure::absolute_table(view, "learned table", &table)
    }
}
