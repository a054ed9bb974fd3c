//! `rope`: rotary position embedding (Su et al. 2021, RoFormer, arXiv 2104.09864, eq. 15 and 34).
//!
//! `f(x, m) = R_{Θ,m} x`, block-diagonal 2x2 rotations by angles `m θ_i`,
//! `θ_i = base^(-2i/r)` for `i = 0..r/2`, where `r = fraction · dh` dims are rotated (the rest
//! pass through, as HF's `partial_rotary_factor`). Applied to queries and keys, never values, in
//! every layer, so `q_mᵀ k_n` depends on `n - m` only. Positions start at 0.
//!
//! Pair layouts: `interleaved` rotates `(x_{2i}, x_{2i+1})` (RoFormer eq. 34, GPT-J, Meta LLaMA,
//! burn's `RotaryEncoding`); `half` rotates `(x_i, x_{i+r/2})` (GPT-NeoX, HF Llama). They differ
//! by a fixed permutation of q/k dims. Angles are computed for any length.
//!
//! Past the training length (eval-time `scaling`), each following the code most users compare
//! with, Hugging Face's `transformers/modeling_rope_utils.py` (named in brackets):
//! - `linear` position interpolation (Chen et al. 2023; HF `linear`): `θ_i / s`.
//! - `ntk`-aware base scaling (bloc97): `base' = base · s^(r/(r-2))`.
//! - `dynamic` NTK (HF `dynamic`, `_compute_dynamic_ntk_parameters`; YaRN paper "Dynamic NTK"):
//!   the base grows with the length `n` of the forward pass, `base' = base · (s n / L - (s - 1))^(r/(r-2))`
//!   for `n > L`, plain RoPE for `n <= L`. Our tables are built per forward pass for its length,
//!   so this is HF evaluating each sequence from scratch (HF also keeps the largest length seen
//!   while generating; we have no such state).
//! - `yarn` (Peng et al. 2023, as HF `_compute_yarn_parameters` computes it, after the
//!   authors' jquesnelle/yarn): the pair indices where a pair makes `β_fast = 32` and
//!   `β_slow = 1` rotations over `L` (`find_correction_dim`), floored/ceiled, bound a ramp
//!   **linear in the pair index** between interpolated (`θ_i / s`) and original frequencies.
//! - `yarn_paper` (Peng et al. 2023 as the paper writes NTK-by-parts): the ramp `γ` is
//!   **linear in the number of rotations** `L/λ_i` between `α = 1` and `β = 32`. The two agree
//!   away from the ramp and differ on it; at small heads the difference is large (d_head 16,
//!   L 33, s 4: `yarn` keeps `[1, 0.625, 0.25, ..]` of each `θ_i`, `yarn_paper`
//!   `[0.353, 0.266, 0.25, ..]`). HF's lower bound is clamped to pair 0, so `yarn` always keeps
//!   pair 0's frequency.
//!
//! Both YaRNs carry the attention temperature `√(1/t) = 0.1 ln s + 1` (HF `get_mscale`), and
//! apply it as HF does: cos and sin are multiplied by it, so q and k each carry it and the
//! logits `q·k` carry its square, `1/t`, the paper's logit temperature.

use crate::figure::{Figure, FigureOption, Heatmap, Lines, View};
use crate::{
    EncodingConfigError, EncodingDims, PositionContext, Positional, Positions, Scheme, invalid,
    table_2d,
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `kind = "rope"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeConfig {
    /// Frequency base θ (10000 in the paper).
    #[serde(default = "default_base")]
    pub base: f64,
    /// Fraction of each head's dimensions that is rotated (1.0 = all).
    #[serde(default = "default_fraction")]
    pub fraction: f64,
    /// How dimensions are paired for rotation.
    #[serde(default)]
    pub layout: RopeLayout,
    /// Frequency scaling for sequences longer than the training length (eval-time knob).
    #[serde(default)]
    pub scaling: RopeScaling,
}

fn default_base() -> f64 {
    10000.0
}
fn default_fraction() -> f64 {
    1.0
}

impl Default for RopeConfig {
    fn default() -> Self {
        Self {
            base: default_base(),
            fraction: default_fraction(),
            layout: RopeLayout::default(),
            scaling: RopeScaling::default(),
        }
    }
}

impl Scheme for RopeConfig {
    type Module = Rope;

    /// A scaling defined over the training context whose `original_max_len` is left at 0
    /// (absent) gets the longest training sequence.
    fn fit_to_length(&mut self, reach: usize) -> Result<(), EncodingConfigError> {
        if let Some(l) = self.scaling.original_max_len_mut()
            && *l == 0
        {
            *l = reach;
        }
        Ok(())
    }

    fn encoder_weak_start(&self, init: &crate::InitScales) -> Option<String> {
        let mut fix = Vec::new();
        let mut why = Vec::new();
        if init.qk_bias_std.is_none() {
            fix.push("model.qk_bias_std = 1.5");
            why.push(
                "RoPE's only offset term that does not depend on the words, `b_qᵀ R(j-i) b_k`, is \
                 ~0 with the default query/key biases (on bigram_shift such an encoder stayed at \
                 chance, 0.47-0.56)",
            );
        }
        if init.n_heads < 8 {
            fix.push("model.n_heads = 8");
            why.push(
                "with fewer than 8 heads fewer start near a neighbouring offset (4 heads and \
                 `qk_bias_std = 1.5`: 0.51-0.90 over 3 seeds; 8 heads: 0.81-1.00)",
            );
        }
        (!fix.is_empty()).then(|| format!("{}; set {}", why.join("; "), crate::settings(&fix)))
    }

    fn validate(&self, dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        validate(self.base, self.fraction, &self.scaling, dims.d_head())
    }

    fn init(&self, dims: &EncodingDims, _device: &Device) -> Rope {
        Rope::new(
            self.base,
            self.fraction,
            self.layout,
            self.scaling.clone(),
            dims.d_head(),
        )
    }
}

/// How dimensions are paired for rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RopeLayout {
    /// Pairs `(2i, 2i+1)`: RoFormer, GPT-J, burn.
    #[default]
    Interleaved,
    /// Pairs `(i, i + r/2)`: GPT-NeoX, HF Llama ("rotate half").
    Half,
}

/// Frequency scaling for sequences longer than those seen in training. `factor` is `s`;
/// `original_max_len` is `L`, the context the model was trained on (HF's
/// `original_max_position_embeddings`); absent or 0, loading a run config fills in the longest
/// training sequence ([`Scheme::fit_to_length`]), so that
/// `ordo eval RUN --set model.encoding.scaling.kind=yarn --set model.encoding.scaling.factor=4`
/// scales over the context the run was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RopeScaling {
    #[default]
    None,
    /// Position interpolation: positions divided by `factor` (HF `linear`).
    Linear { factor: f64 },
    /// NTK-aware: `base * factor^(r / (r - 2))`.
    Ntk { factor: f64 },
    /// Dynamic NTK (HF `dynamic`): NTK-aware with the factor `s n / L - (s - 1)` for a pass of
    /// `n > original_max_len` positions; unchanged up to `original_max_len`.
    Dynamic {
        factor: f64,
        #[serde(default)]
        original_max_len: usize,
    },
    /// YaRN as HF's `_compute_yarn_parameters` computes it: a ramp
    /// linear in the pair index between the floored/ceiled correction dims of `beta_fast` and
    /// `beta_slow` rotations; attention factor `0.1 ln s + 1`.
    Yarn {
        factor: f64,
        #[serde(default)]
        original_max_len: usize,
        #[serde(default = "yarn_beta_fast")]
        beta_fast: f64,
        #[serde(default = "yarn_beta_slow")]
        beta_slow: f64,
    },
    /// YaRN as the paper writes it: a ramp linear in the number of rotations `L/λ_i`, 0 below
    /// `alpha`, 1 above `beta`; attention factor `0.1 ln s + 1`.
    YarnPaper {
        factor: f64,
        #[serde(default)]
        original_max_len: usize,
        #[serde(default = "yarn_alpha")]
        alpha: f64,
        #[serde(default = "yarn_beta")]
        beta: f64,
    },
    /// Llama 3.1's scaling as HF's `_compute_llama3_parameters` computes it: wavelengths
    /// `2π/θ_i` shorter than `L / high_freq_factor` keep their frequency, longer than
    /// `L / low_freq_factor` are divided by `factor`, and in between interpolate with the smooth
    /// factor `(L / λ_i - low) / (high - low)`; attention factor 1.
    Llama3 {
        factor: f64,
        #[serde(default)]
        original_max_len: usize,
        #[serde(default = "llama3_low_freq_factor")]
        low_freq_factor: f64,
        #[serde(default = "llama3_high_freq_factor")]
        high_freq_factor: f64,
    },
    /// LongRoPE (Phi-3) as HF's `_compute_longrope_parameters` computes it: each `θ_i` divided
    /// by its own rescale factor, `long_factor[i]` when `factor > 1` (the context is extended
    /// past `L`), else `short_factor[i]`; cos and sin times `√(1 + ln s / ln L)` (1 for
    /// `s <= 1`). Both lists hold one positive factor per rotated pair (`r/2`).
    Longrope {
        factor: f64,
        #[serde(default)]
        original_max_len: usize,
        #[serde(default)]
        long_factor: Vec<f64>,
        #[serde(default)]
        short_factor: Vec<f64>,
    },
}

fn llama3_low_freq_factor() -> f64 {
    1.0
}
fn llama3_high_freq_factor() -> f64 {
    4.0
}

fn yarn_alpha() -> f64 {
    1.0
}
fn yarn_beta() -> f64 {
    32.0
}
fn yarn_beta_fast() -> f64 {
    32.0
}
fn yarn_beta_slow() -> f64 {
    1.0
}

impl RopeScaling {
    /// The scalings, by their config `kind` (`model.encoding.scaling.kind`).
    pub const KINDS: [&'static str; 7] = [
        "linear",
        "ntk",
        "dynamic",
        "yarn",
        "yarn_paper",
        "llama3",
        "longrope",
    ];

    /// The scaling of config kind `kind` with `factor` and every other parameter at its
    /// default; `original_max_len` is 0, for the caller to fill in (see
    /// [`original_max_len_mut`](Self::original_max_len_mut)). `None` for an unknown kind.
    pub fn from_kind(kind: &str, factor: f64) -> Option<Self> {
        let original_max_len = 0;
        Some(match kind {
            "linear" => Self::Linear { factor },
            "ntk" => Self::Ntk { factor },
            "dynamic" => Self::Dynamic {
                factor,
                original_max_len,
            },
            "yarn" => Self::Yarn {
                factor,
                original_max_len,
                beta_fast: yarn_beta_fast(),
                beta_slow: yarn_beta_slow(),
            },
            "yarn_paper" => Self::YarnPaper {
                factor,
                original_max_len,
                alpha: yarn_alpha(),
                beta: yarn_beta(),
            },
            "llama3" => Self::Llama3 {
                factor,
                original_max_len,
                low_freq_factor: llama3_low_freq_factor(),
                high_freq_factor: llama3_high_freq_factor(),
            },
            // Its per-pair factors have no default: given with `--set
            // model.encoding.scaling.long_factor=[..]` (and `short_factor`).
            "longrope" => Self::Longrope {
                factor,
                original_max_len,
                long_factor: Vec::new(),
                short_factor: Vec::new(),
            },
            _ => return None,
        })
    }

    /// The config `kind` (serde's tag).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Linear { .. } => "linear",
            Self::Ntk { .. } => "ntk",
            Self::Dynamic { .. } => "dynamic",
            Self::Yarn { .. } => "yarn",
            Self::YarnPaper { .. } => "yarn_paper",
            Self::Llama3 { .. } => "llama3",
            Self::Longrope { .. } => "longrope",
        }
    }

    /// The factor `s` (1 for `none`).
    pub fn factor(&self) -> f64 {
        match self {
            Self::None => 1.0,
            Self::Linear { factor }
            | Self::Ntk { factor }
            | Self::Dynamic { factor, .. }
            | Self::Yarn { factor, .. }
            | Self::YarnPaper { factor, .. }
            | Self::Llama3 { factor, .. }
            | Self::Longrope { factor, .. } => *factor,
        }
    }

    /// Mutable access to `L`, for filling it in ([`Scheme::fit_to_length`]: the longest
    /// training sequence).
    pub fn original_max_len_mut(&mut self) -> Option<&mut usize> {
        match self {
            Self::None | Self::Linear { .. } | Self::Ntk { .. } => None,
            Self::Dynamic {
                original_max_len, ..
            }
            | Self::Yarn {
                original_max_len, ..
            }
            | Self::YarnPaper {
                original_max_len, ..
            }
            | Self::Llama3 {
                original_max_len, ..
            }
            | Self::Longrope {
                original_max_len, ..
            } => Some(original_max_len),
        }
    }

    /// The original context length `L` of the scalings defined over it.
    pub fn original_max_len(&self) -> Option<usize> {
        self.clone().original_max_len_mut().copied()
    }

    /// YaRN's attention temperature `√(1/t) = 0.1 ln s + 1` (HF `get_mscale`, 1 for `s <= 1`),
    /// by which cos and sin are multiplied; 1 for the other scalings.
    pub fn attention_factor(&self) -> f64 {
        match self {
            Self::Yarn { factor, .. } | Self::YarnPaper { factor, .. } if *factor > 1.0 => {
                0.1 * factor.ln() + 1.0
            }
            Self::Longrope {
                factor,
                original_max_len,
                ..
            } if *factor > 1.0 && *original_max_len > 1 => {
                (1.0 + factor.ln() / (*original_max_len as f64).ln()).sqrt()
            }
            _ => 1.0,
        }
    }
}

pub(crate) fn validate(
    base: f64,
    fraction: f64,
    scaling: &RopeScaling,
    d_head: usize,
) -> Result<(), EncodingConfigError> {
    if !(base > 1.0 && base.is_finite()) {
        return Err(invalid(
            "base",
            format!("expected a number > 1, got {base}"),
        ));
    }
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(invalid(
            "fraction",
            format!("expected a value in (0, 1], got {fraction}"),
        ));
    }
    let rotated = fraction * d_head as f64;
    if rotated.fract() != 0.0 || !(rotated as usize).is_multiple_of(2) {
        return Err(invalid(
            "fraction",
            format!(
                "fraction × d_head = {fraction} × {d_head} = {rotated} rotated dims; expected an even whole number"
            ),
        ));
    }
    if matches!(scaling, RopeScaling::None) {
        return Ok(());
    }
    let factor = scaling.factor();
    if !(factor >= 1.0 && factor.is_finite()) {
        return Err(invalid(
            "scaling.factor",
            format!("expected a factor >= 1, got {factor}"),
        ));
    }
    if scaling.original_max_len() == Some(0) {
        return Err(invalid(
            "scaling.original_max_len",
            "expected a positive length",
        ));
    }
    // Written negated so that NaN is rejected too.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    match scaling {
        RopeScaling::Yarn {
            beta_fast,
            beta_slow,
            ..
        } => {
            if !(*beta_slow > 0.0) {
                return Err(invalid(
                    "scaling.beta_slow",
                    format!("expected a number of rotations > 0, got {beta_slow}"),
                ));
            }
            if !(beta_fast > beta_slow) {
                return Err(invalid(
                    "scaling.beta_fast",
                    format!("expected beta_fast > beta_slow ({beta_slow}), got {beta_fast}"),
                ));
            }
        }
        RopeScaling::Llama3 {
            low_freq_factor,
            high_freq_factor,
            ..
        } if !(*low_freq_factor > 0.0 && high_freq_factor > low_freq_factor) => {
            return Err(invalid(
                "scaling.high_freq_factor",
                format!(
                    "expected 0 < low_freq_factor < high_freq_factor, got {low_freq_factor} and \
                     {high_freq_factor}"
                ),
            ));
        }
        RopeScaling::Longrope {
            long_factor,
            short_factor,
            ..
        } => {
            let pairs = (fraction * d_head as f64) as usize / 2;
            for (field, list) in [
                ("scaling.long_factor", long_factor),
                ("scaling.short_factor", short_factor),
            ] {
                if list.len() != pairs || !list.iter().all(|&f| f > 0.0 && f.is_finite()) {
                    return Err(invalid(
                        field,
                        format!(
                            "expected {pairs} positive factors (one per rotated pair), got {list:?}"
                        ),
                    ));
                }
            }
        }
        RopeScaling::YarnPaper { alpha, beta, .. } if !(alpha < beta) => {
            return Err(invalid(
                "scaling.beta",
                format!("expected beta > alpha ({alpha}), got {beta}"),
            ));
        }
        RopeScaling::Ntk { .. } | RopeScaling::Dynamic { .. } if rotated as usize <= 2 => {
            return Err(invalid(
                "scaling",
                format!(
                    "{} scaling needs more than 2 rotated dims (its exponent is r/(r-2))",
                    scaling.kind()
                ),
            ));
        }
        _ => {}
    }
    Ok(())
}

#[derive(Module, Debug)]
pub struct Rope {
    #[module(skip)]
    base: f64,
    #[module(skip)]
    rotated: usize,
    #[module(skip)]
    layout: RopeLayout,
    #[module(skip)]
    scaling: RopeScaling,
    #[module(skip)]
    d_head: usize,
}

impl Rope {
    pub fn new(
        base: f64,
        fraction: f64,
        layout: RopeLayout,
        scaling: RopeScaling,
        d_head: usize,
    ) -> Self {
        let rotated = (fraction * d_head as f64).round() as usize;
        assert!(
            rotated.is_multiple_of(2) && rotated > 0,
            "RoPE needs an even number of rotated dims"
        );
        Self {
            base,
            rotated,
            layout,
            scaling,
            d_head,
        }
    }

    /// Number of rotated dims per head.
    pub fn rotated_dims(&self) -> usize {
        self.rotated
    }

    /// The head size it was built for.
    pub fn d_head(&self) -> usize {
        self.d_head
    }

    /// Replaces the frequency scaling (an eval-time choice; nothing trained depends on it).
    pub fn set_scaling(&mut self, scaling: RopeScaling) {
        self.scaling = scaling;
    }

    /// Angular frequencies `θ_i`, `i = 0..r/2`, after scaling, for a forward pass over
    /// `seq_len` positions (only `dynamic` depends on it).
    pub fn frequencies(&self, seq_len: usize) -> Vec<f64> {
        let r = self.rotated as f64;
        let half = self.rotated / 2;
        let thetas = |base: f64| -> Vec<f64> {
            (0..half)
                .map(|i| base.powf(-((2 * i) as f64) / r))
                .collect()
        };
        let plain = thetas(self.base);
        match &self.scaling {
            RopeScaling::None => plain,
            RopeScaling::Linear { factor } => plain.iter().map(|t| t / factor).collect(),
            RopeScaling::Ntk { factor } => thetas(self.base * factor.powf(r / (r - 2.0))),
            RopeScaling::Dynamic {
                factor,
                original_max_len,
            } => {
                // HF uses max(seq_len, L), where the growth term is 1 up to rounding; we keep
                // the plain frequencies exactly.
                if seq_len <= *original_max_len {
                    return plain;
                }
                let growth = factor * seq_len as f64 / *original_max_len as f64 - (factor - 1.0);
                thetas(self.base * growth.powf(r / (r - 2.0)))
            }
            RopeScaling::Yarn {
                factor,
                original_max_len,
                beta_fast,
                beta_slow,
            } => {
                // The fractional pair index where pair `i` makes `rotations` turns over `L`:
                // L θ_i / 2π = rotations  <=>  i = r ln(L / (2π rotations)) / (2 ln base).
                let l = *original_max_len as f64;
                let correction_dim = |rotations: f64| {
                    r * (l / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * self.base.ln())
                };
                // HF's bounds: floored/ceiled, then clamped to [0, r - 1] (sic: r, not r/2).
                let low = correction_dim(*beta_fast).floor().max(0.0);
                let mut high = correction_dim(*beta_slow).ceil().min(r - 1.0);
                if low == high {
                    high += 0.001; // HF's guard against a zero-width ramp
                }
                plain
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        // keep = 1: original frequency; keep = 0: interpolated.
                        let keep = 1.0 - ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        t / factor * (1.0 - keep) + t * keep
                    })
                    .collect()
            }
            RopeScaling::YarnPaper {
                factor,
                original_max_len,
                alpha,
                beta,
            } => plain
                .iter()
                .map(|t| {
                    let rotations = *original_max_len as f64 * t / (2.0 * std::f64::consts::PI);
                    // gamma = 0: fully interpolated; gamma = 1: original frequency.
                    let gamma = ((rotations - alpha) / (beta - alpha)).clamp(0.0, 1.0);
                    (1.0 - gamma) * t / factor + gamma * t
                })
                .collect(),
            RopeScaling::Llama3 {
                factor,
                original_max_len,
                low_freq_factor,
                high_freq_factor,
            } => {
                let l = *original_max_len as f64;
                let (low_wavelen, high_wavelen) = (l / low_freq_factor, l / high_freq_factor);
                plain
                    .iter()
                    .map(|&t| {
                        let wavelen = 2.0 * std::f64::consts::PI / t;
                        if wavelen < high_wavelen {
                            t
                        } else if wavelen > low_wavelen {
                            t / factor
                        } else {
                            let smooth = (l / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * t / factor + smooth * t
                        }
                    })
                    .collect()
            }
            RopeScaling::Longrope {
                factor,
                long_factor,
                short_factor,
                ..
            } => {
                let ext = if *factor > 1.0 {
                    long_factor
                } else {
                    short_factor
                };
                plain.iter().zip(ext).map(|(t, e)| t / e).collect()
            }
        }
    }

    /// The multiplier on cos and sin: [`RopeScaling::attention_factor`]. q and k each carry
    /// it, so the logits carry its square (HF's convention, and the YaRN paper's).
    pub fn attention_factor(&self) -> f64 {
        self.scaling.attention_factor()
    }

    /// Row-major `[len, r/2]` table of angles `m θ_i`.
    pub fn angles(&self, len: usize) -> Vec<f64> {
        self.angles_at(&Positions::contiguous(len))
    }

    /// Row-major `[t, r/2]` angles `p θ_i` at `positions` (`dynamic` scaling reads the extent
    /// of the positions as the pass's length).
    pub fn angles_at(&self, positions: &Positions) -> Vec<f64> {
        let freqs = self.frequencies(positions.extent());
        positions
            .as_slice()
            .iter()
            .flat_map(|&m| freqs.iter().map(move |f| m as f64 * f))
            .collect()
    }

    /// The tables [`apply`](Self::apply) needs for `len` positions.
    pub fn tables(&self, len: usize, device: &Device) -> RopeTables {
        self.tables_at(&Positions::contiguous(len), device)
    }

    /// The tables for tokens at `positions`.
    pub fn tables_at(&self, positions: &Positions, device: &Device) -> RopeTables {
        let len = positions.len();
        let (r, dh, half) = (self.rotated, self.d_head, self.rotated / 2);
        // Dim `c < r` belongs to pair `i`; dims past `r` pass through (cos 1, sin 0).
        let pair = |c: usize| match self.layout {
            RopeLayout::Interleaved => c / 2,
            RopeLayout::Half => c % half,
        };
        let mag = self.attention_factor();
        let angles = self.angles_at(positions);
        let (mut cos, mut sin) = (Vec::with_capacity(len * dh), Vec::with_capacity(len * dh));
        for m in 0..len {
            for c in 0..dh {
                let (co, si) = if c < r {
                    let a = angles[m * half + pair(c)];
                    ((a.cos() * mag) as f32, (a.sin() * mag) as f32)
                } else {
                    (1.0, 0.0)
                };
                cos.push(co);
                sin.push(si);
            }
        }
        // `x @ rotation` puts each dim's partner, negated for the first of the pair, in its
        // place: interleaved `(x0, x1) -> (-x1, x0)`; half `(x_i, x_{i+r/2}) -> (-x_{i+r/2}, x_i)`.
        let mut rotation = vec![0f32; dh * dh];
        for i in 0..half {
            let (first, second) = match self.layout {
                RopeLayout::Interleaved => (2 * i, 2 * i + 1),
                RopeLayout::Half => (i, i + half),
            };
            rotation[second * dh + first] = -1.0; // out[first] = -x[second]
            rotation[first * dh + second] = 1.0; // out[second] = x[first]
        }
        RopeTables {
            cos: table_2d(cos, len, dh, device).unsqueeze::<4>(),
            sin: table_2d(sin, len, dh, device).unsqueeze::<4>(),
            rotation: table_2d(rotation, dh, dh, device).unsqueeze::<4>(),
        }
    }

    /// Rotates `x` `[b, h, t, dh]`: `x cos + (x R) sin`, elementwise with per-dim tables and a
    /// fixed signed permutation `R`. Equal, to the bit, to rotating each pair by slicing and
    /// stacking (the products by R's zeros are exact), and far fewer tensor operations: one
    /// matmul and three elementwise ones, with no copies for the layout or partial rotation.
    pub fn apply(&self, x: Tensor<4>, tables: &RopeTables) -> Tensor<4> {
        let partner = ordo_kernels::matmul(x.clone(), tables.rotation.clone()); // [b, h, t, dh]
        x * tables.cos.clone() + partner * tables.sin.clone()
    }
}

/// What [`Rope::apply`] needs for one sequence length.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// `cos(m θ_i)` at every dim of pair `i` (1 for dims passed through), `[1, 1, t, dh]`.
    pub cos: Tensor<4>,
    /// `sin(m θ_i)` likewise (0 for dims passed through), `[1, 1, t, dh]`.
    pub sin: Tensor<4>,
    /// The signed permutation `R` that maps each dim to its partner, `[1, 1, dh, dh]`.
    pub rotation: Tensor<4>,
}

impl Positional for Rope {
    fn context(&self, positions: &Positions, device: &Device) -> PositionContext {
        PositionContext {
            rope: Some(self.tables_at(positions, device)),
            ..PositionContext::empty(positions.len())
        }
    }

    fn figure_options(&self) -> &'static [FigureOption] {
        &[FigureOption {
            name: "decay_dims",
            help: "the head size of the long-term decay curve: an even number >= 2, or `model` \
                   for this model's rotated dims (default 128, RoFormer Figure 2's)",
            check: |v| decay_dims(v).map(|_| ()),
        }]
    }

    fn figures(&self, view: &View, _device: &Device) -> Vec<Figure> {
        let (len, half) = (view.len, self.rotated / 2);
        let angles = self.angles(len);
        let (d, which) = match decay_dims(view.option("decay_dims").unwrap_or("128")) {
            Ok(None) => (self.rotated, "this model's rotated dims"),
            Ok(Some(ROFORMER_DECAY_DIMS)) | Err(_) => (ROFORMER_DECAY_DIMS, "RoFormer Fig. 2's"),
            Ok(Some(d)) => (d, "dims"),
        };
        vec![
            Figure::Data {
                key: "angles",
                value: serde_json::json!(
                    angles
                        .chunks(half)
                        .map(|r| r.iter().map(|&a| a as f32).collect::<Vec<_>>())
                        .collect::<Vec<_>>()
                ),
            },
            Figure::Data {
                key: "frequencies",
                value: serde_json::json!(self.frequencies(len)),
            },
            Figure::Data {
                key: "attention_factor",
                value: serde_json::json!(self.attention_factor()),
            },
            Figure::Heatmap(Heatmap {
                file: "rope-cos-angles".into(),
                title: format!("rope: cos(m θ_i) [{len} positions x {half} pairs]"),
                x_label: "pair i",
                y_label: "position m",
                value_label: "cos(m θ_i)",
                values: angles
                    .chunks(half)
                    .map(|r| r.iter().map(|&a| a.cos() as f32 as f64).collect())
                    .collect(),
                sequential: false,
            }),
            Figure::Lines(Lines {
                file: "rope-decay".into(),
                title: format!("rope: long-term decay bound (RoFormer §3.4.3), d = {d} ({which})"),
                x_label: "relative distance",
                y_label: "(1/(d/2)) Σ |S_j|",
                series: [500.0, 10000.0, 1e6]
                    .iter()
                    .map(|&b| (format!("base {b}"), decay(b, d, len.max(2))))
                    .collect(),
                log_y: false,
                points: false,
            }),
        ]
    }

    fn rotate(&self, q: Tensor<4>, k: Tensor<4>, ctx: &PositionContext) -> (Tensor<4>, Tensor<4>) {
        let tables = ctx.rope.as_ref().expect("RoPE context holds its tables");
        (self.apply(q, tables), self.apply(k, tables))
    }
}

/// The `decay_dims` figure option: an even number of dims >= 2, or `model` (`None`: the
/// model's rotated dims).
pub fn decay_dims(text: &str) -> Result<Option<usize>, String> {
    if text == "model" {
        return Ok(None);
    }
    text.parse()
        .ok()
        .filter(|&d: &usize| d >= 2 && d.is_multiple_of(2))
        .map(Some)
        .ok_or_else(|| format!("expected an even number of dims >= 2 or `model`, got {text:?}"))
}

/// RoFormer §3.4.3 long-term decay: the bound `(1/(d/2)) Σ_{j=1}^{d/2} |S_j|` on the relative
/// score at distance `m`, with `S_j = Σ_{k<j} e^{i m θ_k}`, for distances `0..len`.
pub fn decay(base: f64, d_head: usize, len: usize) -> Vec<(f64, f64)> {
    let half = d_head / 2;
    let theta: Vec<f64> = (0..half)
        .map(|i| base.powf(-((2 * i) as f64) / d_head as f64))
        .collect();
    (0..len)
        .map(|m| {
            let (mut re, mut im, mut total) = (0.0f64, 0.0f64, 0.0f64);
            for t in &theta {
                re += (m as f64 * t).cos();
                im += (m as f64 * t).sin();
                total += (re * re + im * im).sqrt();
            }
            (m as f64, total / half as f64)
        })
        .collect()
}

/// The head size of RoFormer's Figure 2 (the decay curve, base 10000, distances up to 256). The
/// paper does not print it; the figure's own curve, read from the vector path in the arXiv
/// PDF, is [`decay`] at d = 128 to within 0.002 at distances 50-250 (d = 112 and 144 are off by
/// 1.3 and 1.5 on average). At a small model's head size (16 rotated dims by default) the bound
/// oscillates and the decay is hard to see, so `ordo inspect rope` draws this size unless told
/// otherwise.
pub const ROFORMER_DECAY_DIMS: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_decay_reproduces_roformer_figure_2_at_128_dims() {
        // Values of RoFormer's Figure 2 (arXiv 2104.09864v5), read from the curve's vector path
        // in the PDF: axis ticks 50-250 and 8-20 give the scale; each value is the path
        // linearly interpolated at the integer distance.
        let figure = [
            (50, 12.628),
            (100, 10.225),
            (150, 7.589),
            (200, 7.245),
            (250, 6.549),
        ];
        let curve = decay(10000.0, ROFORMER_DECAY_DIMS, 256);
        for (m, want) in figure {
            let (x, got) = curve[m];
            assert_eq!(x, m as f64);
            assert!((got - want).abs() < 0.01, "distance {m}: {got} vs {want}");
        }
        // Distance 0: |S_j| = j, so the mean is (d/2 + 1)/2.
        assert_eq!(curve[0].1, 32.5);
        // Half the size is far off the figure.
        let small = decay(10000.0, 64, 256);
        assert!((small[50].1 - 12.628).abs() > 1.0, "{}", small[50].1);
    }

    #[test]
    fn decay_dims_parse() {
        assert_eq!(decay_dims("128").unwrap(), Some(128));
        assert_eq!(decay_dims("model").unwrap(), None);
        for bad in ["7", "0", "x", ""] {
            let err = decay_dims(bad).unwrap_err();
            assert!(err.contains("even"), "{bad}: {err}");
        }
    }
    use burn::tensor::Distribution;

    fn vec4(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn golden_vector_matches_burn_test() {
        // burn's own RotaryEncoding test: d = 4, θ = 1e4, position 1, x = [5, 6, 7, 8].
        let dev = Device::flex();
        let rope = Rope::new(10000.0, 1.0, RopeLayout::Interleaved, RopeScaling::None, 4);
        let x = Tensor::<1>::from_floats([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &dev)
            .reshape([1, 1, 2, 4]);
        let tables = rope.tables(2, &dev);
        let out = vec4(rope.apply(x, &tables));
        let want = [1.0, 2.0, 3.0, 4.0, -2.3473, 7.4492, 6.9197, 8.0696];
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-3, "{out:?}");
        }
    }

    #[test]
    fn interleaved_matches_burn_rotary_encoding() {
        let dev = Device::flex();
        let (t, dh) = (24, 16);
        let rope = Rope::new(10000.0, 1.0, RopeLayout::Interleaved, RopeScaling::None, dh);
        let burns = burn::nn::RotaryEncodingConfig::new(t, dh).init(&dev);
        let x = Tensor::<4>::random([2, 3, t, dh], Distribution::Normal(0.0, 1.0), &dev);
        let tables = rope.tables(t, &dev);
        let diff: f32 = (rope.apply(x.clone(), &tables) - burns.forward(x))
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-4, "max difference {diff}");
    }

    #[test]
    fn half_matches_the_rotate_half_formula() {
        // HF Llama: x * cat(cos, cos) + rotate_half(x) * cat(sin, sin), rotate_half(x) = [-x2, x1].
        let dev = Device::flex();
        let (t, dh) = (9, 8);
        let rope = Rope::new(500.0, 1.0, RopeLayout::Half, RopeScaling::None, dh);
        let x = Tensor::<4>::random([1, 2, t, dh], Distribution::Normal(0.0, 1.0), &dev);
        let tables = rope.tables(t, &dev);
        let got = vec4(rope.apply(x.clone(), &tables));
        let xv = vec4(x);
        let angles = rope.angles(t);
        for h in 0..2 {
            for m in 0..t {
                let row = &xv[(h * t + m) * dh..(h * t + m + 1) * dh];
                for c in 0..dh {
                    let a = angles[m * 4 + c % 4];
                    let rot_half = if c < 4 { -row[c + 4] } else { row[c - 4] };
                    let want = row[c] * a.cos() as f32 + rot_half * a.sin() as f32;
                    let g = got[(h * t + m) * dh + c];
                    assert!((g - want).abs() < 1e-5, "h {h} m {m} c {c}: {g} vs {want}");
                }
            }
        }
    }

    #[test]
    fn score_depends_only_on_offset() {
        let dev = Device::flex();
        let dh = 8;
        for layout in [RopeLayout::Interleaved, RopeLayout::Half] {
            for fraction in [1.0, 0.5] {
                let rope = Rope::new(10000.0, fraction, layout, RopeScaling::None, dh);
                let t = 30;
                let q = Tensor::<1>::from_floats([0.3, -1.2, 0.8, 0.5, -0.7, 1.1, 0.2, -0.4], &dev);
                let k = Tensor::<1>::from_floats([1.0, 0.4, -0.6, 0.9, 0.3, -1.5, 0.7, 0.1], &dev);
                // The same q at every position, the same k at every position.
                let qs = q.reshape([1, 1, 1, dh]).repeat_dim(2, t);
                let ks = k.reshape([1, 1, 1, dh]).repeat_dim(2, t);
                let tables = rope.tables(t, &dev);
                let qr = rope.apply(qs, &tables);
                let kr = rope.apply(ks, &tables);
                let s: Vec<f32> = qr
                    .matmul(kr.swap_dims(2, 3))
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                let score = |i: usize, j: usize| s[i * t + j];
                for i in 0..t - 9 {
                    for j in 0..t - 9 {
                        assert!(
                            (score(i, j) - score(i + 9, j + 9)).abs() < 1e-4,
                            "{layout:?} {fraction}: ({i},{j})"
                        );
                    }
                }
                // ...and does depend on the offset.
                assert!((score(5, 5) - score(5, 0)).abs() > 1e-3);
            }
        }
    }

    #[test]
    fn partial_rotation_leaves_the_rest_untouched() {
        let dev = Device::flex();
        let rope = Rope::new(
            10000.0,
            0.25,
            RopeLayout::Interleaved,
            RopeScaling::None,
            16,
        );
        assert_eq!(rope.rotated_dims(), 4);
        let x = Tensor::<4>::random([1, 1, 5, 16], Distribution::Normal(0.0, 1.0), &dev);
        let tables = rope.tables(5, &dev);
        let out = rope.apply(x.clone(), &tables);
        let diff: f32 = (out.clone().slice_dim(3, 4..16) - x.clone().slice_dim(3, 4..16))
            .abs()
            .max()
            .into_scalar();
        assert_eq!(diff, 0.0);
        let moved: f32 = (out.slice_dim(3, 0..4) - x.slice_dim(3, 0..4))
            .abs()
            .max()
            .into_scalar();
        assert!(moved > 1e-3);
    }

    fn freqs(scaling: RopeScaling, d_head: usize, seq_len: usize) -> Vec<f64> {
        Rope::new(10000.0, 1.0, RopeLayout::Half, scaling, d_head).frequencies(seq_len)
    }

    fn assert_rel_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: {got:?}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * w.abs(),
                "{what}: pair {i}: {g} vs {w}\n{got:?}"
            );
        }
    }

    fn yarn(factor: f64, original_max_len: usize) -> RopeScaling {
        let mut s = RopeScaling::from_kind("yarn", factor).unwrap();
        *s.original_max_len_mut().unwrap() = original_max_len;
        s
    }

    fn yarn_paper(factor: f64, original_max_len: usize) -> RopeScaling {
        let mut s = RopeScaling::from_kind("yarn_paper", factor).unwrap();
        *s.original_max_len_mut().unwrap() = original_max_len;
        s
    }

    /// Llama 3.1's scaling against HF's `_compute_llama3_parameters` (run with torch, float32):
    /// base 10000, 16 rotated dims, factor 8, original context 32, low/high frequency factors
    /// 1 and 4. Pair 0 (wavelength 6.3 < 8) is kept, pair 1 (19.9, between 8 and 32) is
    /// smoothed, the rest (> 32) divided by 8.
    #[test]
    fn llama3_scaling_matches_hf() {
        let golden = [
            1.0,
            0.095_839_977_264_404_3,
            0.012_500_000_186_264_515,
            0.003_952_847_328_037_023_5,
            0.001_249_999_972_060_322_8,
            0.000_395_284_732_803_702_35,
            0.000_125_000_005_937_181_4,
            3.952_847_328_037_023_5e-5,
        ];
        let mut scaling = RopeScaling::from_kind("llama3", 8.0).unwrap();
        *scaling.original_max_len_mut().unwrap() = 32;
        let got = freqs(scaling.clone(), 16, 1);
        for (i, (g, want)) in got.iter().zip(golden).enumerate() {
            // HF works in float32.
            assert!(((g - want) / want).abs() < 1e-6, "pair {i}: {g} vs {want}");
        }
        assert_eq!(scaling.attention_factor(), 1.0);
        assert_eq!(scaling.kind(), "llama3");
        // The frequency factors are checked.
        let bad = RopeScaling::Llama3 {
            factor: 8.0,
            original_max_len: 32,
            low_freq_factor: 4.0,
            high_freq_factor: 1.0,
        };
        let e = validate(10000.0, 1.0, &bad, 16).unwrap_err();
        assert_eq!(e.field, "scaling.high_freq_factor");
    }

    /// LongRoPE against HF's `_compute_longrope_parameters` (run with torch, float32): base
    /// 10000, 8 rotated dims, original context 32; factor 4 takes `long_factor`, factor 1
    /// `short_factor`; the attention factor `√(1 + ln 4 / ln 32)`.
    #[test]
    fn longrope_scaling_matches_hf() {
        let scaling = |factor: f64| RopeScaling::Longrope {
            factor,
            original_max_len: 32,
            long_factor: vec![1.0, 1.5, 3.0, 4.0],
            short_factor: vec![1.0, 1.0, 1.25, 1.5],
        };
        let long = [
            1.0,
            0.066_666_670_143_604_28,
            0.003_333_333_414_047_956_5,
            0.000_250_000_011_874_362_8,
        ];
        let short = [
            1.0,
            0.100_000_001_490_116_12,
            0.008_000_000_379_979_61,
            0.000_666_666_659_526_526_9,
        ];
        for (factor, golden) in [(4.0, long), (1.0, short)] {
            let got = freqs(scaling(factor), 8, 1);
            for (i, (g, want)) in got.iter().zip(golden).enumerate() {
                assert!(
                    ((g - want) / want).abs() < 1e-6,
                    "factor {factor}, pair {i}: {g} vs {want}"
                );
            }
        }
        assert!((scaling(4.0).attention_factor() - 1.183_215_956_619_923_2).abs() < 1e-12);
        assert_eq!(scaling(1.0).attention_factor(), 1.0);
        // One factor per rotated pair, each positive; none given is an error naming the list.
        let e = validate(
            10000.0,
            1.0,
            &RopeScaling::Longrope {
                factor: 4.0,
                original_max_len: 32,
                long_factor: vec![1.0; 3],
                short_factor: vec![1.0; 4],
            },
            8,
        )
        .unwrap_err();
        assert_eq!(e.field, "scaling.long_factor");
        let mut empty = RopeScaling::from_kind("longrope", 4.0).unwrap();
        *empty.original_max_len_mut().unwrap() = 32;
        assert!(validate(10000.0, 1.0, &empty, 8).is_err());
    }

    #[test]
    fn scalings_follow_their_definitions() {
        let plain = freqs(RopeScaling::None, 64, 1);
        assert!((plain[1] - 10000f64.powf(-2.0 / 64.0)).abs() < 1e-15);
        let linear = freqs(RopeScaling::Linear { factor: 4.0 }, 64, 1);
        assert!(
            plain
                .iter()
                .zip(&linear)
                .all(|(p, l)| (p / 4.0 - l).abs() < 1e-15)
        );
        let ntk = freqs(RopeScaling::Ntk { factor: 4.0 }, 64, 1);
        let base = 10000.0 * 4f64.powf(64.0 / 62.0);
        assert!((ntk[0] - 1.0).abs() < 1e-15); // the highest frequency is kept
        assert!((ntk[31] - base.powf(-62.0 / 64.0)).abs() < 1e-15);
        // NTK's lowest frequency equals interpolation's: θ_last / s.
        assert!((ntk[31] - plain[31] / 4.0).abs() < 1e-12);
        // Both YaRNs: high frequencies (many rotations) untouched, low ones interpolated, the
        // rest in between.
        for scaling in [yarn(4.0, 2048), yarn_paper(4.0, 2048)] {
            let y = freqs(scaling.clone(), 64, 1);
            assert!((y[0] - plain[0]).abs() < 1e-15, "{scaling:?}");
            assert!((y[31] - plain[31] / 4.0).abs() < 1e-15, "{scaling:?}");
            assert!(
                y.iter()
                    .zip(&plain)
                    .all(|(y, p)| *y <= *p + 1e-15 && *y >= p / 4.0 - 1e-15),
                "{scaling:?}"
            );
        }
    }

    // Golden values for `yarn`: Hugging Face transformers, `modeling_rope_utils.py`,
    // `_compute_yarn_parameters` (find_correction_dim, find_correction_range with truncate,
    // linear_ramp_factor, beta_fast 32, beta_slow 1), evaluated by hand in float64 with
    // python3 (HF computes in float32 and agrees to ~1e-7).
    #[test]
    fn yarn_matches_hf_compute_yarn_parameters() {
        // The example: d_head 16, L 33, s 4. Correction range (0, 2): the ramp is
        // linear in the pair index, so θ_i is kept by 1, 0.5, 0 -> [1, 0.625, 0.25, ..] of θ_i.
        let hf = [
            1.0,
            0.19764235376052372,
            0.025,
            0.007905694150420948,
            0.0025,
            0.0007905694150420947,
            0.00025,
            7.905694150420948e-05,
        ];
        assert_rel_close(&freqs(yarn(4.0, 33), 16, 1), &hf, 1e-12, "d16 L33 s4");
        // Typical: d_head 64, L 2048, s 4; correction range (8, 21).
        let hf = [
            1.0,
            0.7498942093324559,
            0.5623413251903491,
            0.4216965034285823,
            0.31622776601683794,
            0.23713737056616555,
            0.17782794100389226,
            0.1333521432163324,
            0.1,
            0.0706631081870968,
            0.049745578766838564,
            0.03487105701428661,
            0.024325212770525993,
            0.016873235982592546,
            0.011627211527177573,
            0.00794983930712751,
            0.005384615384615384,
            0.0036052606217906536,
            0.002379136375805323,
            0.0015408141471428968,
            0.0009730085108210396,
            0.0005928434264154137,
            0.00044456985250973074,
            0.000333380358040831,
            0.00025,
            0.00018747355233311394,
            0.00014058533129758727,
            0.00010542412585714557,
            7.905694150420948e-05,
            5.9284342641541385e-05,
            4.445698525097307e-05,
            3.33380358040831e-05,
        ];
        assert_rel_close(&freqs(yarn(4.0, 2048), 64, 1), &hf, 1e-12, "d64 L2048 s4");
        // Llama-sized: d_head 128, L 4096, s 8; correction range (20, 46): pairs 0-20 kept,
        // 46-63 divided by 8, a ramp of step 1/26 in between.
        let got = freqs(yarn(8.0, 4096), 128, 1);
        let plain = freqs(RopeScaling::None, 128, 1);
        let want: Vec<f64> = (0..64)
            .map(|i| {
                let keep = 1.0 - ((i as f64 - 20.0) / 26.0).clamp(0.0, 1.0);
                plain[i] * (keep + (1.0 - keep) / 8.0)
            })
            .collect();
        assert_rel_close(&got, &want, 1e-12, "d128 L4096 s8 ramp");
        let hf = [
            (21, 0.0470579194992012),
            (33, 0.004871049318900367),
            (45, 0.00024431526615366936),
            (46, 0.0001666901790204155),
        ];
        for (i, w) in hf {
            assert!(
                (got[i] - w).abs() <= 1e-12 * w,
                "pair {i}: {} vs {w}",
                got[i]
            );
        }
        // The attention factor HF returns with them.
        assert_eq!(yarn(4.0, 33).attention_factor(), 1.138629436111989);
        assert_eq!(yarn(8.0, 4096).attention_factor(), 1.2079441541679836);
    }

    #[test]
    fn yarn_paper_ramps_in_rotations() {
        // The paper's γ(r) with r = L θ_i / 2π, α 1, β 32, evaluated by hand (python3): the
        // issue's example, where it differs from HF's ramp ([1, 0.625, 0.25, ..]).
        let plain = freqs(RopeScaling::None, 16, 1);
        let got = freqs(yarn_paper(4.0, 33), 16, 1);
        let ratio: Vec<f64> = got.iter().zip(&plain).map(|(g, p)| g / p).collect();
        let want = [0.352874, 0.265989, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25];
        for (g, w) in ratio.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{ratio:?}");
        }
        // Pair 0 makes 33/2π = 5.252 rotations: γ = (5.252 - 1)/31.
        let gamma = (33.0 / (2.0 * std::f64::consts::PI) - 1.0) / 31.0;
        assert!((ratio[0] - (gamma + (1.0 - gamma) / 4.0)).abs() < 1e-15);
        let hf = freqs(yarn(4.0, 33), 16, 1);
        assert!(
            (hf[0] - got[0]).abs() > 0.5,
            "the two YaRNs must differ here"
        );
        // d_head 64, L 2048, s 4: the same ends as HF's, different in between.
        let got = freqs(yarn_paper(4.0, 2048), 64, 1);
        let plain = freqs(RopeScaling::None, 64, 1);
        for (i, w) in [
            (8, 1.0),
            (9, 0.817163),
            (15, 0.330966),
            (20, 0.250744),
            (21, 0.25),
        ] {
            assert!(
                (got[i] / plain[i] - w).abs() < 1e-6,
                "pair {i}: {}",
                got[i] / plain[i]
            );
        }
    }

    #[test]
    fn attention_factor_is_hf_get_mscale_on_q_and_k_so_logits_get_its_square() {
        // HF `get_mscale(s) = 0.1 ln s + 1` (1 for s <= 1), values by hand (python3).
        for (s, want) in [
            (1.0, 1.0),
            (2.0, 1.0693147180559945),
            (4.0, 1.138629436111989),
            (8.0, 1.2079441541679836),
            (16.0, 1.2772588722239782),
        ] {
            assert_eq!(yarn(s, 64).attention_factor(), want, "yarn {s}");
            assert_eq!(yarn_paper(s, 64).attention_factor(), want, "yarn_paper {s}");
        }
        for kind in ["linear", "ntk", "dynamic"] {
            let s = RopeScaling::from_kind(kind, 4.0).unwrap();
            assert_eq!(s.attention_factor(), 1.0, "{kind}");
        }
        // Applied as HF applies it: cos and sin both carry it (cos² + sin² = factor² in every
        // rotated dim), so each rotated q and k is `factor` times longer than a pure rotation
        // would leave it, and every logit `factor²` larger.
        let dev = Device::flex();
        let (t, dh) = (12, 16);
        let scaled = Rope::new(10000.0, 1.0, RopeLayout::Half, yarn(4.0, 8), dh);
        let f = scaled.attention_factor() as f32;
        let tables = scaled.tables(t, &dev);
        let (cos, sin) = (vec4(tables.cos.clone()), vec4(tables.sin.clone()));
        for (c, s) in cos.iter().zip(&sin) {
            assert!((c * c + s * s - f * f).abs() < 1e-5, "{c}² + {s}² vs {f}²");
        }
        let rotation_only = RopeTables {
            cos: tables.cos.clone() / f,
            sin: tables.sin.clone() / f,
            rotation: tables.rotation.clone(),
        };
        let x = Tensor::<4>::random([1, 2, t, dh], Distribution::Normal(0.0, 1.0), &dev);
        let y = scaled.apply(x.clone(), &tables);
        let z = scaled.apply(x.clone(), &rotation_only);
        let norms = |v: Tensor<4>| vec4(v.powi_scalar(2).sum_dim(3).sqrt());
        for ((a, b), c) in norms(y.clone()).iter().zip(norms(z.clone())).zip(norms(x)) {
            assert!(
                (b - c).abs() < 1e-4 * c,
                "a rotation keeps norms: {b} vs {c}"
            );
            assert!((a - f * c).abs() < 1e-4 * a, "{a} vs {f} x {c}");
        }
        let logits = |v: Tensor<4>| vec4(v.clone().matmul(v.swap_dims(2, 3)));
        for (a, b) in logits(y).iter().zip(logits(z)) {
            assert!(
                (a - f * f * b).abs() < 1e-4 * (1.0 + a.abs()),
                "{a} vs {f}² x {b}"
            );
        }
    }

    // Golden values: HF `_compute_dynamic_ntk_parameters` (the "dynamic" rope type),
    // `base * ((factor * seq_len / max_position_embeddings) - (factor - 1)) ** (dim / (dim - 2))`,
    // evaluated by hand in float64 with python3.
    #[test]
    fn dynamic_ntk_is_plain_up_to_the_original_length_and_hf_past_it() {
        let dynamic = |factor: f64, original_max_len: usize| RopeScaling::Dynamic {
            factor,
            original_max_len,
        };
        let plain16 = freqs(RopeScaling::None, 16, 1);
        for n in [1, 20, 32, 33] {
            assert_eq!(freqs(dynamic(4.0, 33), 16, n), plain16, "seq_len {n}");
        }
        // Twice the original length: base 10000 * 5^(16/14).
        let hf = [
            1.0,
            0.25127376217164404,
            0.06313850355589193,
            0.01586504932637669,
            0.003986470631277377,
            0.0010016954733078351,
            0.0002516997901283654,
            6.324555320336759e-05,
        ];
        assert_rel_close(
            &freqs(dynamic(4.0, 33), 16, 66),
            &hf,
            1e-12,
            "d16 L33 s4 n66",
        );
        let base = |f: &[f64], r: f64| f[1].powf(-r / 2.0);
        let got = freqs(dynamic(4.0, 33), 16, 66);
        assert!((base(&got, 16.0) / 62924.947532091326 - 1.0).abs() < 1e-12);
        // d_head 64, L 2048, s 4.
        let got = freqs(dynamic(4.0, 2048), 64, 4096);
        assert!((base(&got, 64.0) / 52664.43433636452 - 1.0).abs() < 1e-12);
        assert!((got[31] / 2.667042864326648e-05 - 1.0).abs() < 1e-12);
        let got = freqs(dynamic(4.0, 2048), 64, 3000);
        assert!((base(&got, 64.0) / 29579.412156269467 - 1.0).abs() < 1e-12);
        assert!((got[1] / 0.7249058039023651 - 1.0).abs() < 1e-12);
        assert_eq!(
            freqs(dynamic(4.0, 2048), 64, 2048),
            freqs(RopeScaling::None, 64, 1)
        );
        // The tables a forward pass uses follow its length.
        let dev = Device::flex();
        let rope = Rope::new(10000.0, 1.0, RopeLayout::Half, dynamic(4.0, 33), 16);
        let cos = vec4(rope.tables(66, &dev).cos);
        let want = (65.0 * hf[1]).cos();
        assert!(
            (cos[65 * 16 + 1] as f64 - want).abs() < 1e-6,
            "{}",
            cos[65 * 16 + 1]
        );
        let cos = vec4(rope.tables(33, &dev).cos);
        assert!((cos[32 * 16 + 1] as f64 - (32.0 * plain16[1]).cos()).abs() < 1e-6);
    }

    #[test]
    fn scaling_kinds_build_parse_and_validate() {
        let dims = crate::EncodingDims {
            d_model: 64,
            n_heads: 4,
            n_layers: 1,
            mode: crate::AttentionMode::Causal,
        };
        for kind in RopeScaling::KINDS {
            let mut s = RopeScaling::from_kind(kind, 2.0).unwrap();
            assert_eq!(s.kind(), kind);
            assert_eq!(s.factor(), 2.0);
            // The serde tag is the same name, and a config with that kind parses back.
            let value = serde_json::to_value(&s).unwrap();
            assert_eq!(value["kind"], kind);
            if s.original_max_len().is_some() {
                assert!(validate(10000.0, 1.0, &s, 16).is_err(), "{kind}: L = 0");
                *s.original_max_len_mut().unwrap() = 16;
            }
            // LongRoPE's per-pair factors have no default: one per rotated pair is required.
            if let RopeScaling::Longrope {
                long_factor,
                short_factor,
                ..
            } = &mut s
            {
                *long_factor = vec![2.0; 8];
                *short_factor = vec![1.0; 8];
            }
            validate(10000.0, 1.0, &s, 16).unwrap();
            let text = format!(
                "kind = \"rope\"\n[scaling]\n{}",
                toml::to_string(&s).unwrap()
            );
            let cfg: crate::PositionalEncodingConfig = toml::from_str(&text).unwrap();
            cfg.validate(&dims).unwrap();
        }
        assert!(RopeScaling::from_kind("warp", 2.0).is_none());
        assert!(RopeScaling::from_kind("none", 2.0).is_none());
        let err = |text: &str| {
            let cfg: crate::PositionalEncodingConfig =
                toml::from_str(&format!("kind = \"rope\"\n[scaling]\n{text}")).unwrap();
            cfg.validate(&dims).unwrap_err().field
        };
        assert_eq!(
            err("kind = \"yarn\"\nfactor = 4.0\noriginal_max_len = 16\nbeta_fast = 1.0"),
            "scaling.beta_fast"
        );
        assert_eq!(
            err("kind = \"yarn\"\nfactor = 4.0\noriginal_max_len = 16\nbeta_slow = 0.0"),
            "scaling.beta_slow"
        );
        assert_eq!(
            err("kind = \"yarn_paper\"\nfactor = 4.0\noriginal_max_len = 16\nbeta = 0.5"),
            "scaling.beta"
        );
        assert_eq!(
            err("kind = \"dynamic\"\nfactor = 0.5\noriginal_max_len = 16"),
            "scaling.factor"
        );
        // Each YaRN takes its own source's parameter names, and only those.
        let parse = |text: &str| {
            toml::from_str::<crate::PositionalEncodingConfig>(&format!(
                "kind = \"rope\"\n[scaling]\n{text}"
            ))
        };
        assert!(
            parse("kind = \"yarn\"\nfactor = 4.0\noriginal_max_len = 16\nalpha = 1.0").is_err()
        );
        assert!(
            parse("kind = \"yarn_paper\"\nfactor = 4.0\noriginal_max_len = 16\nbeta_fast = 1.0")
                .is_err()
        );
    }
}
