//! `transformer_xl`: Transformer-XL's relative attention (Dai, Yang, Yang, Carbonell, Le,
//! Salakhutdinov, ACL 2019, §3.3, eq. after "relative positional encodings"), as
//! google-deepmind/randomized_positional_encodings computes it (`RELATIVE`,
//! `compute_attention_with_relative_encodings` in `models/positional_encodings.py`), which is
//! what Ruoss et al. 2023 randomize.
//!
//! Per layer and head, with learned global content and position biases `u_h`, `v_h` (`[dh]`)
//! and a learned projection `W_R` (`d -> d`, no bias) of fixed sinusoids `R` of size `d`:
//!
//! `logit_ij = ((q_i + u_h)·k_j + (q_i + v_h)·(W_R R(j - i))_h) / √dh`,
//!
//! `R(δ) = [sin(δ ω_0), ..., sin(δ ω_{d/2-1}), cos(δ ω_0), ..., cos(δ ω_{d/2-1})]`,
//! `ω_f = 10000^(-2f/d)` (the reference's `sinusoid_position_encoding`: sines then cosines, not
//! interleaved). The reference, in the encoder, takes `R` at `j - i` (its `relative_shift` of
//! positions `-T..T`); the paper writes `R_{i-j}`, the same up to the sign of the sine half of
//! `W_R`. ordo uses `j - i` in both modes (for a decoder the reference's causal shift indexes
//! `R` at `T - 1 - (i - j)`, which depends on the sequence length: not reproduced). `u`, `v` start
//! N(0, 0.02²) as the reference's; `W_R` as burn's `Linear` (the reference: haiku's truncated
//! normal, std `1/√d`). No absolute signal is added to the embeddings.
//!
//! Computed without the `[t, t, d]` table of projected sinusoids: since each (sin, cos) pair of
//! `R(p_j - p_i)` is the pair at `p_j` rotated by `-p_i ω`, `a_i·R(p_j - p_i) = a'_i·R(p_j)`
//! with `a_i = W_Rᵀ(q_i + v)` and `a'_i` its pairs rotated by `p_i ω`: two matmuls for any
//! positions, contiguous or randomized (then `p_j - p_i` are the drawn positions' offsets).

use crate::{
    EncodingConfigError, EncodingDims, LayerInput, PositionContext, Positional, Positions, Scheme,
    invalid, table_2d,
};
use burn::module::Param;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The std of `u` and `v` at initialisation (the reference's `RandomNormal(stddev=0.02)`).
pub const BIAS_INIT_STD: f64 = 0.02;

/// `kind = "transformer_xl"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerXlConfig {
    /// The sinusoids' longest wavelength over 2π (the reference's `max_time`, 10000).
    #[serde(default = "default_max_time")]
    pub max_time: f64,
}

fn default_max_time() -> f64 {
    10000.0
}

impl Default for TransformerXlConfig {
    fn default() -> Self {
        Self {
            max_time: default_max_time(),
        }
    }
}

impl Scheme for TransformerXlConfig {
    type Module = TransformerXl;

    fn validate(&self, dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        if !dims.d_model.is_multiple_of(2) {
            return Err(invalid(
                "kind",
                format!(
                    "transformer_xl's sinusoids need an even `model.d_model`, got {}",
                    dims.d_model
                ),
            ));
        }
        if !(self.max_time > 1.0 && self.max_time.is_finite()) {
            return Err(invalid(
                "max_time",
                format!("expected a number > 1, got {}", self.max_time),
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &EncodingDims, device: &Device) -> TransformerXl {
        let d = dims.d_model;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: BIAS_INIT_STD,
        };
        let shape = [dims.n_layers, dims.n_heads, dims.d_head()];
        TransformerXl {
            project: (0..dims.n_layers)
                .map(|_| LinearConfig::new(d, d).with_bias(false).init(device))
                .collect(),
            content_bias: normal.init(shape, device),
            position_bias: normal.init(shape, device),
            max_time: self.max_time,
        }
    }

    fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
        let d = dims.d_model as u64;
        let per_layer = d.checked_mul(d)?.checked_add(d.checked_mul(2)?)?;
        per_layer.checked_mul(dims.n_layers as u64)
    }
}

#[derive(Module, Debug)]
pub struct TransformerXl {
    /// `W_R` of every layer, `d -> d`.
    pub project: Vec<Linear>,
    /// `u`, `[n_layers, h, dh]`.
    pub content_bias: Param<Tensor<3>>,
    /// `v`, `[n_layers, h, dh]`.
    pub position_bias: Param<Tensor<3>>,
    #[module(skip)]
    max_time: f64,
}

impl TransformerXl {
    /// `sin(p ω_f)` and `cos(p ω_f)` at `positions`, each `[1, 1, t, d/2]`.
    pub fn sinusoids(&self, positions: &Positions, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let d = self.project[0].weight.dims()[0];
        let (half, t) = (d / 2, positions.len());
        let (mut sin, mut cos) = (Vec::with_capacity(t * half), Vec::with_capacity(t * half));
        for &p in positions.as_slice() {
            for f in 0..half {
                let angle = p as f64 * self.max_time.powf(-(2.0 * f as f64) / d as f64);
                sin.push(angle.sin() as f32);
                cos.push(angle.cos() as f32);
            }
        }
        (
            table_2d(sin, t, half, device).unsqueeze::<4>(),
            table_2d(cos, t, half, device).unsqueeze::<4>(),
        )
    }

    fn layer_bias(bias: &Param<Tensor<3>>, layer: usize) -> Tensor<4> {
        let [_, h, dh] = bias.dims();
        bias.val()
            .slice_dim(0, layer..layer + 1)
            .reshape([1, h, 1, dh])
    }

    /// The term `(u·k_j + (q_i + v)·(W_R R(p_j - p_i)))`, not scaled, `[b, h, t, t]`, from
    /// the sinusoids at the positions (`sin`, `cos`: `[1, 1, t, d/2]`).
    pub fn term(
        &self,
        q: &Tensor<4>,
        k: &Tensor<4>,
        layer: usize,
        sin: Tensor<4>,
        cos: Tensor<4>,
    ) -> Tensor<4> {
        let [_, h, _, dh] = q.dims();
        let d = h * dh;
        let u = Self::layer_bias(&self.content_bias, layer); // [1, h, 1, dh]
        let v = Self::layer_bias(&self.position_bias, layer);
        let content = ordo_kernels::matmul(k.clone(), u.swap_dims(2, 3)).swap_dims(2, 3); // [b, h, 1, tk]
        // W_R's columns of head h, as [h, dh, d]: a = (q + v) W_hᵀ, [b, h, t, d].
        let w = self.project[layer]
            .weight
            .val()
            .reshape([d, h, dh])
            .permute([1, 2, 0])
            .unsqueeze::<4>(); // [1, h, dh, d]
        let a = ordo_kernels::matmul(q.clone() + v, w); // [b, h, tq, d]
        let half = d / 2;
        let a_sin = a.clone().slice_dim(3, 0..half);
        let a_cos = a.slice_dim(3, half..d);
        // a'·R(p_j): the pairs of a rotated by the query's angle.
        let rotated = Tensor::cat(
            vec![
                a_sin.clone() * cos.clone() + a_cos.clone() * sin.clone(),
                a_cos * cos.clone() - a_sin * sin.clone(),
            ],
            3,
        ); // [b, h, tq, d]
        let keys = Tensor::cat(vec![sin, cos], 3).swap_dims(2, 3); // [1, 1, d, tk]
        ordo_kernels::matmul(rotated, keys) + content // [b, h, tq, tk]
    }
}

impl Positional for TransformerXl {
    /// The sinusoids at the positions, `own = [sin, cos]`.
    fn context(&self, positions: &Positions, device: &Device) -> PositionContext {
        let (sin, cos) = self.sinusoids(positions, device);
        PositionContext {
            own: vec![sin, cos],
            ..PositionContext::empty(positions.len())
        }
    }

    /// The position term with no content (`q = k = 0`): `v·(W_R R(j - i))_h / √dh`, layer 0's
    /// (at initialisation `v` is small and `W_R` random; with `--checkpoint`, the trained).
    fn figures(&self, view: &crate::View, device: &Device) -> Vec<crate::Figure> {
        let (h, dh, t) = (view.dims.n_heads, view.dims.d_head(), view.len);
        let zeros = Tensor::<4>::zeros([1, h, t, dh], device);
        let (sin, cos) = self.sinusoids(&Positions::contiguous(t), device);
        let bias = self
            .term(&zeros, &zeros, 0, sin, cos)
            .mul_scalar((dh as f64).powf(-0.5));
        let bias = crate::values(bias);
        let mut out = vec![crate::figure::bias_data("position_term_layer0", &bias, t)];
        out.extend(crate::figure::bias_maps(
            view,
            "position term v·W_R R(j-i), layer 0",
            &bias,
        ));
        out
    }

    fn scores(&self, input: &LayerInput, ctx: &PositionContext) -> Option<Tensor<4>> {
        let (sin, cos) = (ctx.own[0].clone(), ctx.own[1].clone());
        Some(
            self.term(input.q, input.k, input.layer, sin, cos)
                .mul_scalar(input.scale),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttentionMode;

    /// Golden values: the reference's `compute_attention_with_relative_encodings(q, k,
    /// causal=False)` (haiku, jax 0.10, float32) for `b = 1, t = 4, h = 2, dh = 2`, `q[b, t, h,
    /// dh] = 0.1·n - 0.7`, `k = cos(n)` (`n` the flat index), `W_R[in, out] = 0.05·n - 0.3`,
    /// `u = [[0.1, -0.2], [0.3, 0.05]]`, `v = [[-0.4, 0.2], [0.15, 0.25]]`: its logits `[b, h,
    /// t, t]` before the `1/√dh` scaling, `q·k` plus this scheme's term.
    #[test]
    fn logits_match_the_reference() {
        let dev = Device::flex();
        let (t, h, dh) = (4, 2, 2);
        let dims = EncodingDims {
            d_model: h * dh,
            n_heads: h,
            n_layers: 1,
            mode: AttentionMode::Bidirectional,
        };
        let mut xl = TransformerXlConfig::default().init(&dims, &dev);
        let n = t * h * dh;
        let w: Vec<f32> = (0..16).map(|i| 0.05 * i as f32 - 0.3).collect();
        xl.project[0].weight =
            Param::from_tensor(Tensor::<1>::from_floats(w.as_slice(), &dev).reshape([4, 4]));
        xl.content_bias = Param::from_tensor(
            Tensor::<1>::from_floats([0.1, -0.2, 0.3, 0.05], &dev).reshape([1, 2, 2]),
        );
        xl.position_bias = Param::from_tensor(
            Tensor::<1>::from_floats([-0.4, 0.2, 0.15, 0.25], &dev).reshape([1, 2, 2]),
        );
        let flat = |f: &dyn Fn(usize) -> f32| {
            let v: Vec<f32> = (0..n).map(f).collect();
            Tensor::<1>::from_floats(v.as_slice(), &dev)
                .reshape([1, t, h, dh])
                .swap_dims(1, 2) // the reference's [b, t, h, dh] -> [b, h, t, dh]
        };
        let q = flat(&|i| 0.1 * i as f32 - 0.7);
        let k = flat(&|i| (i as f32).cos());
        let ctx = xl.context(&Positions::contiguous(t), &dev);
        let input = LayerInput {
            layer: 0,
            x: &Tensor::zeros([1, t, h * dh], &dev),
            q: &q,
            k: &k,
            scale: 1.0,
        };
        let logits = q.clone().matmul(k.clone().swap_dims(2, 3)) + xl.scores(&input, &ctx).unwrap();
        for (i, (got, want)) in crate::values(logits).iter().zip(GOLDEN).enumerate() {
            assert!((got - want).abs() < 1e-4, "at {i}: {got} vs {want}");
        }
    }

    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN: [f32; 32] = [
        -1.672242, -0.033439, 0.810641, -1.469179, -0.841340, -0.262736, 0.323150, -0.520225,
        0.246399, -0.056207, 0.050900, 0.226663, 1.031240, 0.187256, 0.122510, 1.309291, 0.114727,
        -0.643711, 0.087503, 0.150390, 0.078781, 0.434729, -0.035773, 0.048724, -0.158013,
        1.681712, 0.223549, 0.191635, -0.829036, 2.530086, 0.485887, 0.736002,
    ];

    /// The position term depends on `p_j - p_i` only: shifting every position changes nothing.
    #[test]
    fn term_is_shift_invariant() {
        let dev = Device::flex();
        let dims = EncodingDims {
            d_model: 8,
            n_heads: 2,
            n_layers: 1,
            mode: AttentionMode::Causal,
        };
        let xl = TransformerXlConfig::default().init(&dims, &dev);
        let q = Tensor::<4>::random([1, 2, 4, 4], burn::tensor::Distribution::Default, &dev);
        let k = Tensor::<4>::random([1, 2, 4, 4], burn::tensor::Distribution::Default, &dev);
        let at = |p: Vec<usize>| {
            let (sin, cos) = xl.sinusoids(&Positions::new(p), &dev);
            crate::values(xl.term(&q, &k, 0, sin, cos))
        };
        let a = at(vec![0, 3, 4, 9]);
        let b = at(vec![20, 23, 24, 29]);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
}
