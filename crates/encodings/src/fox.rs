//! `fox`: the Forgetting Transformer's forget gate (Lin, Nikishin, He, Courville, ICLR 2025,
//! "Forgetting Transformer: Softmax Attention with a Forget Gate", §2, eq. 3-4; as lucidrains/
//! x-transformers builds it, `DataDependentAlibi`, "data-dependent ALiBi").
//!
//! Each token `l` gets, per head, a forget gate `f_l = σ(w_h·x_l + b_h)` from the layer's
//! attention input `x_l`, and the logits get the log of the gates between key and query:
//!
//! `D_ij = Σ_{l = j+1..i} log f_l = c_i - c_j`, `c_i = Σ_{l <= i} log f_l`,
//!
//! a decay that the content chooses (with every `f = const` it is ALiBi with slope `-log f`).
//! As x-transformers: one `Linear(d, heads)` per layer, its bias set to 5 (`bias_init`, gates
//! start near 1, barely forgetting) and its weights as PyTorch's `nn.Linear` (burn's
//! Kaiming-uniform default), the term added after the `1/√dh` scaling. In bidirectional mode,
//! as x-transformers, a second set of gates for keys after the query: `D_ij = c'_j - c'_i` for
//! `j > i` (from `Linear(d, 2·heads)`, the second half). There is no position table: the decay
//! counts the tokens in between, so randomized positions cannot reach it (refused), and nothing
//! limits the length.

use crate::{AttentionMode, invalid};
use crate::{EncodingConfigError, EncodingDims, LayerInput, PositionContext, Positional, Scheme};
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::log_sigmoid;
use serde::{Deserialize, Serialize};

/// `kind = "fox"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoxConfig {
    /// The gates' initial bias (x-transformers' `bias_init`, 5: `σ(5) = 0.993`).
    #[serde(default = "default_bias")]
    pub bias_init: f64,
}

fn default_bias() -> f64 {
    5.0
}

impl Default for FoxConfig {
    fn default() -> Self {
        Self {
            bias_init: default_bias(),
        }
    }
}

impl Scheme for FoxConfig {
    type Module = Fox;

    fn validate(&self, _dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        if !self.bias_init.is_finite() {
            return Err(invalid(
                "bias_init",
                format!("expected a finite number, got {}", self.bias_init),
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &EncodingDims, device: &Device) -> Fox {
        let gates = match dims.mode {
            AttentionMode::Causal => dims.n_heads,
            AttentionMode::Bidirectional => 2 * dims.n_heads,
        };
        let layers = (0..dims.n_layers)
            .map(|_| {
                let mut linear = LinearConfig::new(dims.d_model, gates).init(device);
                linear.bias = Some(Param::from_tensor(
                    Tensor::<1>::ones([gates], device).mul_scalar(self.bias_init),
                ));
                linear
            })
            .collect();
        Fox {
            gates: layers,
            mode: dims.mode,
        }
    }

    fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
        let per_head = match dims.mode {
            AttentionMode::Causal => 1,
            AttentionMode::Bidirectional => 2,
        };
        let gates = (dims.n_heads as u64).checked_mul(per_head)?;
        (dims.d_model as u64)
            .checked_add(1)?
            .checked_mul(gates)?
            .checked_mul(dims.n_layers as u64)
    }

    fn positions_from_content(&self) -> bool {
        true
    }
}

#[derive(Module, Debug)]
pub struct Fox {
    /// Per layer, `d -> heads` (bidirectional: `d -> 2·heads`).
    pub gates: Vec<Linear>,
    #[module(skip)]
    mode: AttentionMode,
}

impl Fox {
    /// The decay `[b, h, t, t]` of one layer for its attention input `x` `[b, t, d]`.
    pub fn decay(&self, x: &Tensor<3>, layer: usize) -> Tensor<4> {
        let logs = log_sigmoid(self.gates[layer].forward(x.clone())); // [b, t, g]
        let c = logs.swap_dims(1, 2).cumsum(2); // [b, g, t]
        let h = c.dims()[1]
            / if self.mode == AttentionMode::Causal {
                1
            } else {
                2
            };
        let forward = c.clone().slice_dim(1, 0..h);
        // `c_i - c_j` at [b, h, i, j].
        let pairwise = |c: Tensor<3>| c.clone().unsqueeze_dim::<4>(3) - c.unsqueeze_dim::<4>(2);
        let before = pairwise(forward); // [b, h, t, t]
        match self.mode {
            AttentionMode::Causal => before,
            AttentionMode::Bidirectional => {
                let after = pairwise(c.slice_dim(1, h..2 * h)).neg(); // c'_j - c'_i
                before.tril(0) + after.triu(0)
            }
        }
    }
}

impl Positional for Fox {
    /// The decay of layer 0 for a zero input, where every gate is `σ(b)`: ALiBi with slope
    /// `-log σ(b_h)` per head (the starting point; the content moves it).
    fn figures(&self, view: &crate::View, device: &Device) -> Vec<crate::Figure> {
        let x = Tensor::<3>::zeros([1, view.len, view.dims.d_model], device);
        let decay = crate::values(self.decay(&x, 0));
        let mut out = vec![crate::figure::bias_data(
            "decay_at_zero_input_layer0",
            &decay,
            view.len,
        )];
        out.extend(crate::figure::bias_maps(
            view,
            "decay at zero input, layer 0",
            &decay,
        ));
        out
    }

    fn scores(&self, input: &LayerInput, _ctx: &PositionContext) -> Option<Tensor<4>> {
        Some(self.decay(input.x, input.layer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: x-transformers' `DataDependentAlibi(dim = 3, heads = 2, causal = ...)`
    /// with these weights (`bias_init` 5 left as it sets it, then the weights copied in) on
    /// `x = 0.1·(1..=12)` as `[1, 4, 3]`, run with torch in float32; the causal test compares
    /// the lower triangle (the rest is masked).
    #[test]
    fn decay_matches_x_transformers() {
        let dev = Device::flex();
        for (mode, weight, want) in [
            (AttentionMode::Causal, &W_CAUSAL[..], &GOLDEN_CAUSAL[..]),
            (
                AttentionMode::Bidirectional,
                &W_BIDIRECTIONAL[..],
                &GOLDEN_BIDIRECTIONAL[..],
            ),
        ] {
            let dims = EncodingDims {
                d_model: 3,
                n_heads: 2,
                n_layers: 1,
                mode,
            };
            let mut fox = FoxConfig::default().init(&dims, &dev);
            let out = weight.len() / 3;
            let w = Tensor::<1>::from_floats(weight, &dev)
                .reshape([out, 3])
                .transpose(); // PyTorch's [out, in] -> burn's [in, out]
            fox.gates[0].weight = Param::from_tensor(w);
            let x = Tensor::<1>::from_floats(
                (1..=12)
                    .map(|v| v as f32 * 0.1)
                    .collect::<Vec<_>>()
                    .as_slice(),
                &dev,
            )
            .reshape([1, 4, 3]);
            let got = crate::values(fox.decay(&x, 0));
            for h in 0..2 {
                for i in 0..4 {
                    for j in 0..4 {
                        if mode == AttentionMode::Causal && j > i {
                            continue;
                        }
                        let k = h * 16 + i * 4 + j;
                        assert!(
                            (got[k] - want[k]).abs() < 1e-5,
                            "{mode:?} h{h} ({i},{j}): {} vs {}",
                            got[k],
                            want[k]
                        );
                    }
                }
            }
        }
    }

    const W_CAUSAL: [f32; 6] = [0.5, -1.0, 0.3, -0.7, 0.2, 0.9];
    const W_BIDIRECTIONAL: [f32; 12] = [
        0.5, -1.0, 0.3, -0.7, 0.2, 0.9, 1.1, 0.4, -0.6, -0.2, -0.8, 0.5,
    ];
    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN_CAUSAL: [f32; 32] = [
        0.000000, 0.007568, 0.015603, 0.024132, -0.007568, 0.000000, 0.008034, 0.016564, -0.015603,
        -0.008034, 0.000000, 0.008529, -0.024132, -0.016564, -0.008529, 0.000000, 0.000000,
        0.004690, 0.008851, 0.012542, -0.004690, 0.000000, 0.004161, 0.007852, -0.008851,
        -0.004161, 0.000000, 0.003691, -0.012542, -0.007852, -0.003691, 0.000000,
    ];
    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN_BIDIRECTIONAL: [f32; 32] = [
        0.000000, -0.005080, -0.008959, -0.011923, -0.007568, 0.000000, -0.003880, -0.006843,
        -0.015603, -0.008034, 0.000000, -0.002963, -0.024132, -0.016564, -0.008529, 0.000000,
        0.000000, -0.008034, -0.017363, -0.028193, -0.004690, 0.000000, -0.009329, -0.020159,
        -0.008851, -0.004161, 0.000000, -0.010830, -0.012542, -0.007852, -0.003691, 0.000000,
    ];

    /// The decay only grows with the tokens in between, and is 0 on the diagonal.
    #[test]
    fn decay_is_nonpositive_and_monotone() {
        let dev = Device::flex();
        let dims = EncodingDims {
            d_model: 8,
            n_heads: 2,
            n_layers: 2,
            mode: AttentionMode::Causal,
        };
        let fox = FoxConfig { bias_init: 0.0 }.init(&dims, &dev);
        let x = Tensor::<3>::random([2, 6, 8], burn::tensor::Distribution::Default, &dev);
        let d = crate::values(fox.decay(&x, 1));
        for bh in 0..4 {
            for i in 0..6 {
                assert!(d[bh * 36 + i * 6 + i].abs() < 1e-6);
                for j in 1..=i {
                    assert!(d[bh * 36 + i * 6 + j - 1] < d[bh * 36 + i * 6 + j]);
                }
            }
        }
    }
}
