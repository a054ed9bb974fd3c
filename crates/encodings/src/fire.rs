//! `fire`: Functional Interpolation for Relative Positions (Li, You, Guruganesh, Ainslie,
//! Ontañón, Zaheer, Sanghai, Yang, Kumar, Bhojanapalli, ICLR 2024, "Functional Interpolation for
//! Relative Positions Improves Long Context Transformers", arXiv 2310.04418, §3.2 eq. 5 and the
//! PyTorch listing of its appendix).
//!
//! An additive logit bias per head, a learned function of the normalised log distance:
//!
//! `b_h(i, j) = f_θ( ψ(i - j) / ψ(max(L, i)) )_h`, `ψ(x) = log(c·|x| + 1)`,
//!
//! with `f_θ` an MLP `1 -> 32 -> heads` (ReLU), `c` learned (initial 0.1) and `L` a learned
//! threshold (`|m · L₀|`, `m` learned from 1, `L₀` not trained): "progressive interpolation".
//! For queries below `L` the normaliser is the constant `ψ(L)` and the bias is a function of
//! `i - j` alone; past it the normaliser grows with `i`, so the input of `f_θ` stays in `[0, 1]`
//! at any length (`|i - j| <= i` for `j <= i`). The reference adds `eps = 1e-6` to the
//! normaliser; so do we. Values and initial values follow the listing.
//!
//! `L₀`: the listing's 512 (`threshold`, the default) is a quarter of the paper's 2048-token
//! training length. At ordo's lengths (tens of tokens) 512 is never reached, so the normaliser is
//! the constant `ψ(512)` and `f_θ` sees only small inputs (its interpolation never engages).
//! `threshold_fraction = 0.25` keeps the paper's ratio instead: `L₀` = the fraction times the
//! longest training sequence (in positions, [`Scheme::fit_to_length`]'s reach: with randomized
//! positions, their range), resolved when the config is loaded and written out as `threshold`.
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

/// `L₀` when neither `threshold` nor `threshold_fraction` is set: the paper's 512.
pub const DEFAULT_THRESHOLD: f64 = 512.0;

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
    /// `L₀`, the initial threshold of the normaliser `ψ(max(L, i))`, in positions. Absent: 512
    /// (the paper's listing), or `threshold_fraction` times the longest training sequence when
    /// that is set; loading a config fills it in ([`Scheme::fit_to_length`]), so a resolved
    /// config always names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `L₀` as a fraction of the longest training sequence (in (0, 1]; the paper's ratio is
    /// 0.25: 512 of 2048). Absent (the default): `threshold` is absolute, and not written out, so
    /// configs without it read and print as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_fraction: Option<f64>,
}

fn default_width() -> usize {
    32
}
fn default_c() -> f64 {
    0.1
}

impl Default for FireConfig {
    fn default() -> Self {
        Self {
            width: default_width(),
            c: default_c(),
            threshold: None,
            threshold_fraction: None,
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
        if let Some(t) = self.threshold
            && !(t > 0.0 && t.is_finite())
        {
            return Err(invalid(
                "threshold",
                format!("expected a length > 0, got {t}"),
            ));
        }
        if let Some(f) = self.threshold_fraction {
            check_fraction(f)?;
            if self.threshold.is_none() {
                return Err(invalid(
                    "threshold_fraction",
                    "not resolved to a threshold: it is a fraction of the longest training \
                     sequence, which only loading a run config (fit_to_length) knows",
                ));
            }
        }
        Ok(())
    }

    /// Resolves `L₀`: `threshold_fraction × reach` when the fraction is set (a `threshold`
    /// given beside it must be that same value: a resolved config names both), else the given
    /// `threshold`, else 512.
    fn fit_to_length(&mut self, reach: usize) -> Result<(), EncodingConfigError> {
        let Some(fraction) = self.threshold_fraction else {
            self.threshold.get_or_insert(DEFAULT_THRESHOLD);
            return Ok(());
        };
        check_fraction(fraction)?;
        let want = fraction * reach as f64;
        match self.threshold {
            None => self.threshold = Some(want),
            Some(t) if (t - want).abs() <= 1e-9 * want.abs().max(1.0) => {}
            Some(t) => {
                return Err(invalid(
                    "threshold",
                    format!(
                        "`threshold` = {t} and `threshold_fraction` = {fraction} are both set and \
                         disagree: the fraction of the longest training sequence ({reach} \
                         positions) is {want}; set only one of them"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn init(&self, dims: &EncodingDims, device: &Device) -> Fire {
        Fire {
            hidden: LinearConfig::new(1, self.width).init(device),
            out: LinearConfig::new(self.width, dims.n_heads).init(device),
            c: Param::from_tensor(Tensor::from_floats([self.c as f32], device)),
            multiplier: Param::from_tensor(Tensor::from_floats([1.0], device)),
            threshold: self.threshold.unwrap_or(DEFAULT_THRESHOLD),
        }
    }

    fn order_seen(&self) -> crate::OrderSeen {
        crate::OrderSeen::Distance
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

fn check_fraction(f: f64) -> Result<(), EncodingConfigError> {
    if f > 0.0 && f <= 1.0 {
        Ok(())
    } else {
        Err(invalid(
            "threshold_fraction",
            format!("expected a fraction in (0, 1] of the longest training sequence, got {f}"),
        ))
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
    /// `L₀`, the threshold the learned multiplier scales.
    pub fn initial_threshold(&self) -> f64 {
        self.threshold
    }

    /// The learned threshold `L = |m · L₀|`, in positions.
    pub fn learned_threshold(&self) -> f64 {
        (crate::values(self.multiplier.val())[0] as f64 * self.threshold).abs()
    }

    /// The learned `c` of `ψ(x) = log(c·|x| + 1)`.
    pub fn learned_c(&self) -> f64 {
        crate::values(self.c.val())[0] as f64
    }

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

    fn learned_scalars(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("threshold", self.learned_threshold()),
            ("c", self.learned_c()),
        ]
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
                value: serde_json::json!(self.learned_threshold()),
            },
            Figure::Data {
                key: "initial_threshold",
                value: serde_json::json!(self.threshold),
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
            threshold: Some(threshold),
            ..FireConfig::default()
        }
        .init(&dims, &Device::flex())
    }

    fn dims() -> EncodingDims {
        EncodingDims {
            d_model: 16,
            n_heads: 4,
            n_layers: 2,
            mode: AttentionMode::Causal,
        }
    }

    fn resolved(text: &str, reach: usize) -> Result<FireConfig, EncodingConfigError> {
        let mut cfg: FireConfig = toml::from_str(text).unwrap();
        cfg.fit_to_length(reach)?;
        cfg.validate(&dims())?;
        Ok(cfg)
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
        let mut cfg: FireConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, FireConfig::default());
        assert_eq!((cfg.width, cfg.c, cfg.threshold), (32, 0.1, None));
        cfg.fit_to_length(17).unwrap();
        assert_eq!(cfg.threshold, Some(512.0));
        let dims = dims();
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

    #[test]
    fn threshold_fraction_resolves_against_the_longest_training_sequence() {
        // A quarter of the reach (17 positions here), as the paper's 512 of
        // 2048; the module starts from it and the learned L is m·L₀ with m = 1 at init.
        let cfg = resolved("threshold_fraction = 0.25", 17).unwrap();
        assert_eq!(cfg.threshold, Some(4.25));
        let f = cfg.init(&dims(), &Device::flex());
        assert_eq!(f.initial_threshold(), 4.25);
        assert!((f.learned_threshold() - 4.25).abs() < 1e-9);
        assert!((f.learned_c() - 0.1).abs() < 1e-7);
        assert_eq!(
            f.learned_scalars()
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>(),
            ["threshold", "c"]
        );
        // Through the shared config: with randomized positions the reach is their range.
        let mut shared: crate::PositionalEncodingConfig =
            toml::from_str("kind = \"fire\"\nthreshold_fraction = 0.5\nrandomized_positions = 64")
                .unwrap();
        shared.fit_to_length(17).unwrap();
        assert_eq!(
            shared.scheme,
            crate::SchemeConfig::Fire(FireConfig {
                threshold: Some(32.0),
                threshold_fraction: Some(0.5),
                ..FireConfig::default()
            })
        );
        shared.validate(&dims()).unwrap();
    }

    #[test]
    fn with_the_fraction_the_normaliser_engages_at_training_lengths() {
        // Sequences of 16 positions, L₀ = 0.25 x 16 = 4: every query past L has its farthest
        // key at input 1 (the interpolation regime), as the paper's 2048-token training does
        // past 512. The absolute default leaves the normaliser at ψ(512): the farthest input
        // at the longest training length is ψ(15)/ψ(512) = 0.23.
        let t = 16;
        let dev = Device::flex();
        let positions = Positions::contiguous(t);
        let cfg = resolved("threshold_fraction = 0.25", t).unwrap();
        let scaled = crate::values(
            cfg.init(&dims(), &dev)
                .normalized_distance(&positions, &dev),
        );
        for i in 4..t {
            assert!((at(&scaled, t, i, 0) - 1.0).abs() < 1e-5, "query {i}");
        }
        let old = resolved("", t).unwrap();
        let fixed = crate::values(
            old.init(&dims(), &dev)
                .normalized_distance(&positions, &dev),
        );
        let want = (2.5f64.ln() / (52.2f64.ln() + EPS)) as f32;
        assert!((at(&fixed, t, 15, 0) - want).abs() < 1e-5);
        assert!(fixed.iter().all(|&x| x < 0.24));
    }

    #[test]
    fn threshold_fraction_errors_name_the_field() {
        for (text, field) in [
            ("threshold_fraction = 0.0", "threshold_fraction"),
            ("threshold_fraction = 1.5", "threshold_fraction"),
            ("threshold_fraction = -0.25", "threshold_fraction"),
            ("threshold_fraction = nan", "threshold_fraction"),
            // Both set and disagreeing: which one to use is the user's call.
            ("threshold = 100.0\nthreshold_fraction = 0.25", "threshold"),
        ] {
            let err = resolved(text, 16).unwrap_err();
            assert_eq!(err.field, field, "{text}: {err}");
        }
        let err = resolved("threshold = 100.0\nthreshold_fraction = 0.25", 16).unwrap_err();
        assert!(err.message.contains("threshold_fraction"), "{err}");
        // Both set and agreeing is a resolved config read back: accepted.
        assert_eq!(
            resolved("threshold = 4.0\nthreshold_fraction = 0.25", 16)
                .unwrap()
                .threshold,
            Some(4.0)
        );
        // A fraction never resolved against a training length cannot build a module.
        let unresolved: FireConfig = toml::from_str("threshold_fraction = 0.25").unwrap();
        assert_eq!(
            unresolved.validate(&dims()).unwrap_err().field,
            "threshold_fraction"
        );
    }

    #[test]
    fn configs_without_the_fraction_write_what_they_always_did() {
        // What a resolved `kind = "fire"` wrote before the option existed (run directories'
        // config.toml, which `ordo ablate` compares key by key): nothing new.
        let mut old: crate::PositionalEncodingConfig = toml::from_str("kind = \"fire\"").unwrap();
        old.fit_to_length(17).unwrap();
        let written = toml::to_string(&old).unwrap();
        assert_eq!(
            written,
            "kind = \"fire\"\nwidth = 32\nc = 0.1\nthreshold = 512.0\n"
        );
        let back: crate::PositionalEncodingConfig = toml::from_str(&written).unwrap();
        assert_eq!(back, old);
        // With the fraction: both written, and reading them back resolves to the same config.
        let mut new: crate::PositionalEncodingConfig =
            toml::from_str("kind = \"fire\"\nthreshold_fraction = 0.25").unwrap();
        new.fit_to_length(17).unwrap();
        let written = toml::to_string(&new).unwrap();
        assert!(
            written.contains("threshold = 4.25") && written.contains("threshold_fraction = 0.25")
        );
        let mut back: crate::PositionalEncodingConfig = toml::from_str(&written).unwrap();
        back.fit_to_length(17).unwrap();
        assert_eq!(back, new);
    }
}
