//! `relative_key` and `relative_key_query`: Hugging Face's relative position embeddings for
//! BERT-style attention (`position_embedding_type`, `BertSelfAttention` in transformers 4.x
//! `modeling_bert.py`), after Shaw et al. 2018 and Huang, Liang, Xu, Xiang, ACL Findings 2020,
//! "Improve Transformer Models with Better Relative Position Embeddings", method 4.
//!
//! One table `E` of `2k + 1` rows of `dh` per layer, shared by the heads, indexed by the offset
//! between query and key; the logits, before the `1/√dh` scaling, get
//!
//! * `relative_key`: `q_i·E[j - i]` (Shaw's key term without the value term: the same as
//!   `shaw` with `values = false`, here under HF's name and with HF's table size);
//! * `relative_key_query`: `q_i·E[j - i] + k_j·E[j - i]` (the same row in both terms).
//!
//! HF indexes `E` by `i - j + M - 1` (`M = max_position_embeddings`); ordo by `clip(j - i) + k`,
//! the same rows in the opposite order (the golden test reverses HF's table). HF's table has
//! `2M - 1` rows, so every offset below `M` has its own and longer inputs are an error; ordo's
//! `max_distance` (`k`) is, when absent, the longest training sequence minus one (loading a run
//! config fills it in), so every offset seen in training has its own row, as in HF, and offsets
//! past it share the farthest trained row (Shaw's clipping) rather than failing. HF initialises
//! `E` as BERT does, N(0, 0.02²): so does ordo (`init_std` to change it). With randomized
//! positions the offsets are the drawn positions'.

use crate::shaw::{DEFAULT_INIT_STD, RelativeTerms, Shaw};
use crate::{
    EncodingConfigError, EncodingDims, LayerInput, PositionContext, Positional, Positions, Scheme,
    invalid,
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The table size when nothing else sets it (no training length known).
pub const DEFAULT_MAX_DISTANCE: usize = 16;

macro_rules! hf_relative_config {
    ($(#[doc = $doc:literal])* $name:ident, $key_query:literal) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// `k`: offsets beyond ±k share one row. Absent: the longest training sequence
            /// minus one (filled in when a run config is loaded).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub max_distance: Option<usize>,
            /// Std of the table's initialisation; absent = 0.02 (BERT's `initializer_range`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub init_std: Option<f64>,
        }

        impl Scheme for $name {
            type Module = HfRelative;

            fn validate(&self, dims: &EncodingDims) -> Result<(), EncodingConfigError> {
                validate(self.max_distance, self.init_std, dims)
            }

            fn fit_to_length(&mut self, reach: usize) -> Result<(), EncodingConfigError> {
                self.max_distance.get_or_insert(reach.saturating_sub(1).max(1));
                Ok(())
            }

            fn init(&self, dims: &EncodingDims, device: &Device) -> HfRelative {
                HfRelative::new(self.max_distance, self.init_std, $key_query, dims, device)
            }

            fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
                parameters(self.max_distance, dims)
            }
        }
    };
}

hf_relative_config!(
    /// `kind = "relative_key"`.
    RelativeKeyConfig,
    false
);
hf_relative_config!(
    /// `kind = "relative_key_query"`.
    RelativeKeyQueryConfig,
    true
);

fn validate(
    max_distance: Option<usize>,
    init_std: Option<f64>,
    _dims: &EncodingDims,
) -> Result<(), EncodingConfigError> {
    if max_distance == Some(0) {
        return Err(invalid("max_distance", "expected a distance >= 1"));
    }
    crate::check_init_std(init_std)
}

fn parameters(max_distance: Option<usize>, dims: &EncodingDims) -> Option<u64> {
    let k = max_distance.unwrap_or(DEFAULT_MAX_DISTANCE) as u64;
    let rows = k.checked_mul(2)?.checked_add(1)?;
    (dims.n_layers as u64)
        .checked_mul(rows)?
        .checked_mul(dims.d_head() as u64)
}

#[derive(Module, Debug)]
pub struct HfRelative {
    /// The table of every layer, as Shaw's key table (`values` absent).
    pub table: Shaw,
    #[module(skip)]
    key_query: bool,
}

impl HfRelative {
    fn new(
        max_distance: Option<usize>,
        init_std: Option<f64>,
        key_query: bool,
        dims: &EncodingDims,
        device: &Device,
    ) -> Self {
        let k = max_distance.unwrap_or(DEFAULT_MAX_DISTANCE);
        let std = init_std.unwrap_or(DEFAULT_INIT_STD);
        Self {
            table: Shaw::new(k, false, std, dims, device),
            key_query,
        }
    }

    /// The key-side term `k_j·E[j - i]`, not scaled, `[b, h, t, t]`: Shaw's contraction of
    /// `k` with the table reversed (`E[j - i]` is row `2k - label(j, i)`), transposed.
    pub fn key_side(&self, k: &Tensor<4>, layer: usize, ctx: &PositionContext) -> Tensor<4> {
        let terms = self.table.relative().expect("a key table");
        let reversed = Shaw::layer_table(terms.keys, layer).flip([0]); // [2k+1, dh]
        terms.scores_with(k, reversed, ctx).swap_dims(2, 3)
    }
}

impl Positional for HfRelative {
    fn context(&self, positions: &Positions, device: &Device) -> PositionContext {
        self.table.context(positions, device)
    }

    fn relative(&self) -> Option<RelativeTerms<'_>> {
        self.table.relative()
    }

    fn scores(&self, input: &LayerInput, ctx: &PositionContext) -> Option<Tensor<4>> {
        self.key_query.then(|| {
            self.key_side(input.k, input.layer, ctx)
                .mul_scalar(input.scale)
        })
    }

    fn figures(&self, view: &crate::View, device: &Device) -> Vec<crate::Figure> {
        self.table.figures(view, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttentionMode;
    use burn::module::Param;

    /// Golden values: transformers 4.46's `BertSelfAttention` (`hidden_size = 4`, 2 heads,
    /// `max_position_embeddings = 3`, query and key projections the identity without bias) on
    /// `x = 0.1·n - 0.5` `[1, 3, 4]`, its logits `attention_scores` before the softmax (scaled
    /// by `1/√dh`), `distance_embedding.weight = 0.1·n - 0.4` (`[5, 2]`), both position
    /// embedding types, run with torch in float32.
    #[test]
    fn logits_match_hugging_face() {
        for dev in [Device::flex(), {
            #[allow(deprecated)]
            Device::ndarray()
        }] {
            for (key_query, want) in [(false, GOLDEN_KEY), (true, GOLDEN_KEY_QUERY)] {
                let dims = EncodingDims {
                    d_model: 4,
                    n_heads: 2,
                    n_layers: 1,
                    mode: AttentionMode::Bidirectional,
                };
                let mut m = HfRelative::new(Some(2), None, key_query, &dims, &dev);
                // HF's rows i - j + 2 = 0..5 are ordo's rows 4..=0.
                let hf: Vec<f32> = (0..10).map(|n| 0.1 * n as f32 - 0.4).collect();
                let hf = Tensor::<1>::from_floats(hf.as_slice(), &dev).reshape([5, 2]);
                m.table.keys = Param::from_tensor(hf.flip([0]).reshape([1, 5, 2]));
                let x: Vec<f32> = (0..12).map(|n| 0.1 * n as f32 - 0.5).collect();
                let x = Tensor::<1>::from_floats(x.as_slice(), &dev).reshape([1, 3, 4]);
                let heads = x.clone().reshape([1, 3, 2, 2]).swap_dims(1, 2); // [1, 2, 3, 2]
                let ctx = m.context(&Positions::contiguous(3), &dev);
                let scale = 2f64.powf(-0.5);
                let q = heads.clone().mul_scalar(scale);
                let mut logits = q.clone().matmul(heads.clone().swap_dims(2, 3))
                    + m.relative().unwrap().key_scores(&q, 0, &ctx);
                let input = LayerInput {
                    layer: 0,
                    x: &x,
                    q: &heads,
                    k: &heads,
                    scale,
                };
                if let Some(term) = m.scores(&input, &ctx) {
                    logits = logits + term;
                }
                for (i, (got, want)) in crate::values(logits).iter().zip(want).enumerate() {
                    assert!(
                        (got - want).abs() < 1e-5,
                        "key_query {key_query} at {i}: {got} vs {want}"
                    );
                }
            }
        }
    }

    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN_KEY: [f32; 18] = [
        0.261630, 0.134350, 0.007071, 0.021213, 0.007071, -0.007071, 0.007071, 0.106066, 0.205061,
        0.077782, 0.007071, -0.063640, 0.007071, 0.049497, 0.091924, 0.162635, 0.318198, 0.473762,
    ];
    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN_KEY_QUERY: [f32; 18] = [
        0.233345, 0.148492, -0.162635, -0.134350, 0.007071, -0.077782, -0.275772, 0.091924,
        0.233345, 0.063640, -0.021213, -0.332340, -0.077782, 0.063640, -0.021213, 0.007071,
        0.374767, 0.516188,
    ];

    #[test]
    fn the_table_covers_the_training_offsets() {
        let mut c = RelativeKeyQueryConfig::default();
        c.fit_to_length(40).unwrap();
        assert_eq!(c.max_distance, Some(39));
        let mut given = RelativeKeyConfig {
            max_distance: Some(4),
            init_std: None,
        };
        given.fit_to_length(40).unwrap();
        assert_eq!(given.max_distance, Some(4));
        let dims = EncodingDims {
            d_model: 8,
            n_heads: 2,
            n_layers: 3,
            mode: AttentionMode::Causal,
        };
        assert_eq!(c.parameters(&dims), Some(3 * 79 * 4));
        let zero = RelativeKeyConfig {
            max_distance: Some(0),
            init_std: None,
        };
        assert_eq!(zero.validate(&dims).unwrap_err().field, "max_distance");
    }
}
