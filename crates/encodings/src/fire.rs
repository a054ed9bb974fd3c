//! `fire`: Functional Interpolation for Relative Positions (Li, Ravichandran, Keysers, et al.
//! 2023, "Functional Interpolation for Relative Positions Improves Long Context Transformers",
//! arXiv 2310.04418, §3.2 eq. 5 and the PyTorch listing of its appendix).
//!
//! An additive logit bias per head, a learned function of the normalised log distance:
//!
//! `b_h(i, j) = f_θ( ψ(i - j) / ψ(max(L, i)) )_h`, `ψ(x) = log(c·|x| + 1)`,
//!
//! with `f_θ` an MLP `1 -> 32 -> heads` (ReLU), `c` learned (initial 0.1) and `L` a learned
//! threshold (`|m · L₀|`, `m` learned from 1, `L₀` = 512, not trained): "progressive
//! interpolation". For queries below `L` the normaliser is the constant `ψ(L)` and the bias is
//! a function of `i - j` alone; past it the normaliser grows with `i`, so the input of `f_θ`
//! stays in `[0, 1]` at any length (`|i - j| <= i` for `j <= i`). The reference adds `eps =
//! 1e-6` to the normaliser; so do we. Values and initial values follow the listing.
//!
//! Conventions of ours, each pinned by a test: one `f_θ`, `c` and `L` shared by all layers (as
//! ordo's T5 table: the bias is built once per forward pass); the bias is added after the
//! `1/√dh` scaling; the MLP's layers start as burn's `Linear` (Kaiming-uniform, PyTorch's
//! `nn.Linear` default). In bidirectional mode the formula is used as written, with `|i - j|`:
//! like symmetric ALiBi, **an encoder whose only positional signal is FIRE cannot tell left
//! from right**. With randomized positions (see [`crate::positions`]) `i` and `j` are the drawn
//! positions.

use crate::figure::{self, Figure, View};
use crate::{
    EncodingConfigError, EncodingDims, PositionContext, Positional, Positions, Scheme, invalid,
};
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// Added to the normaliser, as the reference.
const EPS: f64 = 1e-6;

/// `kind = "fire"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FireConfig {
    /// Width of the MLP's hidden layer (32 in the paper).
    #[serde(default = "default_width")]
    pub width: usize,
    /// Initial `c` of `ψ(x) = log(c·x + 1)` (0.1 in the paper).
    #[serde(default = "default_c")]
    pub c: f64,
    /// `L₀`, the initial threshold of the normaliser `ψ(max(L, i))` (512 in the paper).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

fn default_width() -> usize {
    32
}
fn default_c() -> f64 {
    0.1
}
fn default_threshold() -> f64 {
    512.0
}

impl Default for FireConfig {
    fn default() -> Self {
        Self {
            width: default_width(),
            c: default_c(),
            threshold: default_threshold(),
        }
    }
}

impl Scheme for FireConfig {
    type Module = Fire;

    fn validate(&self, _dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        if self.width == 0 {
            return Err(invalid("width", "expected a hidden width >= 1"));
        }
        if !(self.c > 0.0 && self.c.is_finite()) {
            return Err(invalid(
                "c",
                format!("expected a number > 0, got {}", self.c),
            ));
        }
        if !(self.threshold > 0.0 && self.threshold.is_finite()) {
            return Err(invalid(
                "threshold",
                format!("expected a length > 0, got {}", self.threshold),
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &EncodingDims, device: &Device) -> Fire {
        Fire {
            hidden: LinearConfig::new(1, self.width).init(device),
            out: LinearConfig::new(self.width, dims.n_heads).init(device),
            c: Param::from_tensor(Tensor::from_floats([self.c as f32], device)),
            multiplier: Param::from_tensor(Tensor::from_floats([1.0], device)),
            threshold: self.threshold,
        }
    }

    fn encoder_note(&self) -> Option<&'static str> {
        Some(
            "`fire` reads `|i-j|` in an encoder, as its reference code; with only it a model \
             cannot tell left from right (reversing the input reverses the outputs).",
        )
    }

    fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
        // Linear(1, w) + Linear(w, h), with biases; c; the threshold's multiplier.
        let (w, h) = (self.width as u64, dims.n_heads as u64);
        w.checked_mul(2)?
            .checked_add(w.checked_mul(h)?)?
            .checked_add(h)?
            .checked_add(2)
    }
}

#[derive(Module, Debug)]
pub struct Fire {
    /// `f_θ`'s first layer, `1 -> width`.
    pub hidden: Linear,
    /// `f_θ`'s second layer, `width -> heads`.
    pub out: Linear,
    /// `c`, `[1]`.
    pub c: Param<Tensor<1>>,
    /// `m` of the threshold `L = |m · L₀|`, `[1]`.
    pub multiplier: Param<Tensor<1>>,
    #[module(skip)]
    threshold: f64,
}

impl Fire {
    /// The input of `f_θ`, `ψ(i - j) / (ψ(max(L, i)) + eps)`, `[t, t]` for tokens at `positions`.
    pub fn normalized_distance(&self, positions: &Positions, device: &Device) -> Tensor<2> {
        let (p, t) = (positions.as_slice(), positions.len());
        let distance: Vec<f32> = p
            .iter()
            .flat_map(|&i| p.iter().map(move |&j| i.abs_diff(j) as f32))
            .collect();
        let distance = crate::table_2d(distance, t, t, device); // [t, t]
        let query: Vec<f32> = p.iter().map(|&i| i as f32).collect();
        let query = crate::table_2d(query, t, 1, device); // [t, 1]
        let c = self.c.val().reshape([1, 1]);
        let psi = |x: Tensor<2>| (x * c.clone()).abs().add_scalar(1.0).log();
        let threshold = self
            .multiplier
            .val()
            .mul_scalar(self.threshold)
            .abs()
            .reshape([1, 1])
            .expand([t, 1]);
        let normaliser = psi(query.max_pair(threshold)).add_scalar(EPS); // [t, 1]
        psi(distance) / normaliser // [t, t]
    }

    /// The bias `[h, t, t]` for tokens at `positions`.
    pub fn bias_at(&self, positions: &Positions, device: &Device) -> Tensor<3> {
        let t = positions.len();
        let x = self
            .normalized_distance(positions, device)
            .reshape([t * t, 1]);
        let hidden = burn::tensor::activation::relu(self.hidden.forward(x)); // [t*t, w]
        let out = self.out.forward(hidden); // [t*t, h]
        let h = out.dims()[1];
        out.reshape([t, t, h]).permute([2, 0, 1]) // [h, t, t]
    }
}

impl Positional for Fire {
    fn context(&self, positions: &Positions, device: &Device) -> PositionContext {
        PositionContext {
            bias: Some(self.bias_at(positions, device).unsqueeze::<4>()), // [1, h, t, t]
            ..PositionContext::empty(positions.len())
        }
    }

    fn figures(&self, view: &View, device: &Device) -> Vec<Figure> {
        let positions = Positions::contiguous(view.len);
        let input = crate::values(self.normalized_distance(&positions, device));
        let bias = crate::values(self.bias_at(&positions, device));
        let mut out = vec![
            Figure::Data {
                key: "normalized_distance",
                value: serde_json::json!(input.chunks(view.len).collect::<Vec<_>>()),
            },
            Figure::Data {
                key: "c",
                value: serde_json::json!(crate::values(self.c.val())[0]),
            },
            Figure::Data {
                key: "threshold",
                value: serde_json::json!(
                    (crate::values(self.multiplier.val())[0] as f64 * self.threshold).abs()
                ),
            },
            figure::bias_data("bias", &bias, view.len),
        ];
        out.extend(figure::bias_maps(view, "bias", &bias));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttentionMode;

    fn fire(mode: AttentionMode, threshold: f64) -> Fire {
        let dims = EncodingDims {
            d_model: 16,
            n_heads: 4,
            n_layers: 2,
            mode,
        };
        FireConfig {
            threshold,
            ..FireConfig::default()
        }
        .init(&dims, &Device::flex())
    }

    fn at(v: &[f32], t: usize, i: usize, j: usize) -> f32 {
        v[i * t + j]
    }

    #[test]
    fn normalized_distance_matches_the_reference_listing() {
        // The appendix listing with init_c = 0.1, init_L = 512, eps = 1e-6, in f64 (python):
        // log(|0.1 (i - j)| + 1) / (log(|0.1 max(i, 512)| + 1) + 1e-6).
        let golden = [
            (5, 2, 0.066_336),
            (100, 7, 0.589_657_3),
            (600, 100, 0.956_445),
            (600, 0, 0.999_999_8),
            (3, 3, 0.0),
        ];
        let f = fire(AttentionMode::Causal, 512.0);
        let t = 601;
        let v = crate::values(f.normalized_distance(&Positions::contiguous(t), &Device::flex()));
        for (i, j, want) in golden {
            let got = at(&v, t, i, j);
            assert!((got - want).abs() < 2e-6, "({i}, {j}): {got} vs {want}");
        }
    }

    #[test]
    fn bias_is_the_mlp_of_the_normalized_distance_per_head() {
        // f_θ computed by hand from the module's own weights: checks the layout [h, i, j].
        let f = fire(AttentionMode::Causal, 512.0);
        let t = 6;
        let dev = Device::flex();
        let positions = Positions::contiguous(t);
        let x = crate::values(f.normalized_distance(&positions, &dev));
        let bias = crate::values(f.bias_at(&positions, &dev));
        let w1 = crate::values(f.hidden.weight.val()); // [1, w]
        let b1 = crate::values(f.hidden.bias.as_ref().unwrap().val());
        let w2 = crate::values(f.out.weight.val()); // [w, h]
        let b2 = crate::values(f.out.bias.as_ref().unwrap().val());
        let (w, h) = (b1.len(), b2.len());
        for head in 0..h {
            for i in 0..t {
                for j in 0..t {
                    let input = x[i * t + j] as f64;
                    let want: f64 = b2[head] as f64
                        + (0..w)
                            .map(|k| {
                                let a = (w1[k] as f64 * input + b1[k] as f64).max(0.0);
                                a * w2[k * h + head] as f64
                            })
                            .sum::<f64>();
                    let got = bias[head * t * t + i * t + j] as f64;
                    assert!((got - want).abs() < 1e-5, "head {head} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn below_the_threshold_the_bias_depends_only_on_the_offset() {
        let f = fire(AttentionMode::Causal, 512.0);
        let dev = Device::flex();
        let (t, shift) = (10, 7);
        let a = crate::values(f.bias_at(&Positions::contiguous(t), &dev));
        let b = crate::values(f.bias_at(&Positions::new((shift..shift + t).collect()), &dev));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
    }

    #[test]
    fn past_the_threshold_the_input_stays_in_unit_range_at_any_length() {
        // Progressive interpolation: with L = 8, queries far past it still give inputs in
        // [0, 1], the farthest key of each query exactly 1 (up to eps).
        let f = fire(AttentionMode::Causal, 8.0);
        let t = 300;
        let v = crate::values(f.normalized_distance(&Positions::contiguous(t), &Device::flex()));
        for i in 0..t {
            for j in 0..=i {
                let x = at(&v, t, i, j);
                assert!((0.0..=1.0).contains(&x), "({i}, {j}): {x}");
            }
            if i >= 8 {
                assert!((at(&v, t, i, 0) - 1.0).abs() < 1e-5, "query {i}");
            }
        }
        // Below L the normaliser is ψ(L): query 4's farthest key is ψ(4)/ψ(8) < 1.
        let want = (1.4f64.ln() / (1.8f64.ln() + EPS)) as f32;
        assert!((at(&v, t, 4, 0) - want).abs() < 1e-6);
    }

    #[test]
    fn bidirectional_fire_is_symmetric() {
        let f = fire(AttentionMode::Bidirectional, 512.0);
        let t = 7;
        let bias = crate::values(f.bias_at(&Positions::contiguous(t), &Device::flex()));
        for head in 0..4 {
            for i in 0..t {
                for j in 0..t {
                    let (a, b) = (
                        bias[head * t * t + i * t + j],
                        bias[head * t * t + j * t + i],
                    );
                    assert!((a - b).abs() < 1e-6, "head {head} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn config_defaults_validation_and_parameter_count() {
        let cfg: FireConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, FireConfig::default());
        assert_eq!((cfg.width, cfg.c, cfg.threshold), (32, 0.1, 512.0));
        let dims = EncodingDims {
            d_model: 16,
            n_heads: 4,
            n_layers: 2,
            mode: AttentionMode::Causal,
        };
        for (text, field) in [
            ("width = 0", "width"),
            ("c = 0.0", "c"),
            ("threshold = -1.0", "threshold"),
        ] {
            let bad: FireConfig = toml::from_str(text).unwrap();
            assert_eq!(bad.validate(&dims).unwrap_err().field, field, "{text}");
        }
        assert!(toml::from_str::<FireConfig>("slope = 1").is_err());
        use burn::module::Module;
        let f = cfg.init(&dims, &Device::flex());
        assert_eq!(cfg.parameters(&dims), Some(f.num_params() as u64));
    }
}
