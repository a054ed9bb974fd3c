//! `cope`: contextual position encoding (Golovneva, Wang, Weston, Sukhbaatar 2024, "Contextual
//! Position Encoding: Learning to Count What's Important", §3 and the listing of its appendix;
//! as lucidrains/x-transformers builds it, `CoPE`, `attn_use_cope`).
//!
//! Positions are counted by the content: a gate `g_ij = σ(z_ij)` per query and key from the
//! attention logits `z_ij = q_i·k_j/√dh` (keys after the query masked, so `g = 0` there), the
//! position of key `j` seen from query `i` is the number of gated keys from `j` to `i`,
//!
//! `p_ij = Σ_{k = j..i} g_ik`, clamped to `max_pos - 1`,
//!
//! and the logit gets the interpolated embedding of that fractional position,
//! `z_ij += (1 - w)·q_i·e[⌊p_ij⌋] + w·q_i·e[⌈p_ij⌉]`, `w = p_ij - ⌊p_ij⌋`, with `q_i` unscaled,
//! `e` a learned `[max_pos, dh]` table per layer shared by the heads, zero at the start. As the
//! paper's listing and x-transformers: `max_pos` 16 (x-transformers' `cope_max_pos`), the
//! gradient flows through `w` and the gates, not through the integer positions. Causal only
//! (x-transformers asserts "CoPE was designed for causal attention"), refused in an encoder.
//! Positions come from the content, so randomized positions cannot reach it (refused).
//! The gates here read `q·k/√dh` alone, which is x-transformers' input when CoPE is the only
//! position signal (there, other biases of the same layer would join the logits first).

use crate::invalid;
use crate::{EncodingConfigError, EncodingDims, LayerInput, PositionContext, Positional, Scheme};
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};

/// `kind = "cope"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopeConfig {
    /// Number of position embeddings; counted positions past `max_pos - 1` share the last.
    #[serde(default = "default_max_pos")]
    pub max_pos: usize,
}

fn default_max_pos() -> usize {
    16
}

impl Default for CopeConfig {
    fn default() -> Self {
        Self {
            max_pos: default_max_pos(),
        }
    }
}

impl Scheme for CopeConfig {
    type Module = Cope;

    fn validate(&self, _dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        if self.max_pos < 2 {
            return Err(invalid(
                "max_pos",
                format!(
                    "expected at least 2 position embeddings, got {}",
                    self.max_pos
                ),
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &EncodingDims, device: &Device) -> Cope {
        Cope {
            embeddings: Param::from_tensor(Tensor::zeros(
                [dims.n_layers, self.max_pos, dims.d_head()],
                device,
            )),
        }
    }

    fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
        (dims.n_layers as u64)
            .checked_mul(self.max_pos as u64)?
            .checked_mul(dims.d_head() as u64)
    }

    fn causal_only(&self) -> Option<&'static str> {
        Some(
            "its positions count the gated keys between a key and the query; x-transformers asserts it",
        )
    }

    fn positions_from_content(&self) -> bool {
        true
    }
}

#[derive(Module, Debug)]
pub struct Cope {
    /// `e` of every layer, `[n_layers, max_pos, dh]`.
    pub embeddings: Param<Tensor<3>>,
}

impl Cope {
    /// The counted positions `p_ij` `[b, h, t, t]` (0 above the diagonal) for logits `z`.
    pub fn positions(&self, logits: Tensor<4>) -> Tensor<4> {
        let [b, h, t, _] = logits.dims();
        let device = logits.device();
        // burn's `tril_mask` is true outside the lower triangle: the keys after the query.
        let future = Tensor::<2, Bool>::tril_mask([t, t], 0, &device)
            .unsqueeze::<4>()
            .expand([b, h, t, t]);
        let gates = sigmoid(logits).mask_fill(future, 0.0); // [b, h, t, t]
        let max = (self.embeddings.dims()[1] - 1) as f32;
        gates.flip([3]).cumsum(3).flip([3]).clamp_max(max)
    }

    /// The term `[b, h, t, t]` added to layer `layer`'s logits `z` for unscaled queries `q`.
    pub fn term(&self, q: &Tensor<4>, logits: Tensor<4>, layer: usize) -> Tensor<4> {
        let [_, p, dh] = self.embeddings.dims();
        let e = self
            .embeddings
            .val()
            .slice_dim(0, layer..layer + 1)
            .reshape([p, dh]); // [P, dh]
        let at = ordo_kernels::matmul(q.clone(), e.transpose().unsqueeze::<4>()); // [b, h, t, P]
        let pos = self.positions(logits);
        let floor = pos.clone().detach().floor();
        let w = pos.clone() - floor.clone();
        let ceil = pos.detach().ceil();
        let low = at.clone().gather(3, floor.int());
        let high = at.gather(3, ceil.int());
        high * w.clone() + low * w.neg().add_scalar(1.0)
    }
}

impl Positional for Cope {
    /// The positions counted when every gate is one half (`q·k = 0`), `(i - j + 1)/2` clamped,
    /// and the norms of each layer's position embeddings (0 at initialisation).
    fn figures(&self, view: &crate::View, device: &Device) -> Vec<crate::Figure> {
        let t = view.len;
        let positions = crate::values(self.positions(Tensor::zeros([1, 1, t, t], device)));
        let [_, p, dh] = self.embeddings.dims();
        let norms: Vec<Vec<f32>> = crate::values(self.embeddings.val())
            .chunks(p * dh)
            .map(|layer| {
                layer
                    .chunks(dh)
                    .map(|e| e.iter().map(|x| x * x).sum::<f32>().sqrt())
                    .collect()
            })
            .collect();
        let mut out = vec![
            crate::Figure::Data {
                key: "embedding_norms",
                value: serde_json::json!(norms),
            },
            crate::figure::bias_data("positions_at_half_gates", &positions, t),
        ];
        out.push(crate::Figure::Heatmap(crate::figure::Heatmap {
            file: "cope-positions-half-gates".into(),
            title: "cope: counted position p_ij with every gate 1/2".into(),
            x_label: "key position j",
            y_label: "query position i",
            value_label: "counted position",
            values: crate::figure::rows(&positions, t)
                .into_iter()
                .enumerate()
                .map(|(i, row)| {
                    row.into_iter()
                        .enumerate()
                        .map(|(j, v)| if j > i { f64::NAN } else { v })
                        .collect()
                })
                .collect(),
            sequential: true,
        }));
        out
    }

    fn scores(&self, input: &LayerInput, _ctx: &PositionContext) -> Option<Tensor<4>> {
        let logits = ordo_kernels::matmul(input.q.clone(), input.k.clone().swap_dims(2, 3))
            .mul_scalar(input.scale); // [b, h, t, t]
        Some(self.term(input.q, logits, input.layer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttentionMode;

    /// Golden values: x-transformers' `CoPE(dim = 2, heads = 1, max_pos = 4)` with
    /// `pos_emb = [[0.1, -0.2], [0.3, 0.4], [-0.5, 0.6], [0.7, 0.8]]`, called as its `Attend`
    /// calls it (`sim` scaled and causally masked with `-finfo.max`), on `q = k` below, run with
    /// torch in float32; the lower triangle (the rest is masked).
    #[test]
    fn term_matches_x_transformers() {
        let dev = Device::flex();
        let dims = EncodingDims {
            d_model: 2,
            n_heads: 1,
            n_layers: 1,
            mode: AttentionMode::Causal,
        };
        let mut cope = CopeConfig { max_pos: 4 }.init(&dims, &dev);
        cope.embeddings = Param::from_tensor(
            Tensor::<1>::from_floats([0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, 0.8], &dev)
                .reshape([1, 4, 2]),
        );
        let q =
            Tensor::<1>::from_floats([1.0, 0.5, -0.3, 2.0, 0.8, -1.2, 1.5, 1.5, -2.0, 0.4], &dev)
                .reshape([1, 1, 5, 2]);
        let input = LayerInput {
            layer: 0,
            x: &Tensor::zeros([1, 5, 2], &dev),
            q: &q,
            k: &q,
            scale: 2f64.powf(-0.5),
        };
        let got = crate::values(cope.scores(&input, &PositionContext::empty(5)).unwrap());
        for i in 0..5 {
            for j in 0..=i {
                let k = i * 5 + j;
                assert!(
                    (got[k] - GOLDEN[k]).abs() < 1e-5,
                    "({i},{j}): {} vs {}",
                    got[k],
                    GOLDEN[k]
                );
            }
        }
    }

    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN: [f32; 25] = [
        0.353813, 0.000000, 0.000000, 0.000000, 0.000000, 1.073988, 0.650096, -0.430000, -0.430000,
        -0.430000, -0.664503, -0.210372, -0.135379, 0.320000, 0.320000, 2.250000, 0.599769,
        0.729917, 1.002181, -0.150000, 0.684604, 1.192173, 0.049782, -0.264082, -0.431978,
    ];

    /// Counted positions: at most `max_pos - 1`, at least the query's own gate, and they fall
    /// from the query back to the first key.
    #[test]
    fn positions_count_the_gates_back_from_the_query() {
        let dev = Device::flex();
        let dims = EncodingDims {
            d_model: 8,
            n_heads: 2,
            n_layers: 1,
            mode: AttentionMode::Causal,
        };
        let cope = CopeConfig { max_pos: 64 }.init(&dims, &dev);
        let logits = Tensor::<4>::random([1, 2, 6, 6], burn::tensor::Distribution::Default, &dev);
        let p = crate::values(cope.positions(logits));
        for h in 0..2 {
            for i in 0..6 {
                let row = &p[h * 36 + i * 6..h * 36 + i * 6 + 6];
                assert!(row[i] > 0.0 && row[i] < 1.0, "{row:?}");
                for j in 0..i {
                    assert!(row[j] > row[j + 1], "{row:?}");
                }
                assert!(row[i + 1..].iter().all(|&v| v == 0.0), "{row:?}");
            }
        }
    }
}
