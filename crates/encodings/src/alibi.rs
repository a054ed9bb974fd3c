//! `alibi`: Attention with Linear Biases (Press, Smith, Lewis 2022, "Train Short, Test Long", §3).
//!
//! `score_ij = q_i·k_j/√dh + B_h(i, j)`. Decoder (causal mode): `B_h(i, j) = -m_h (i - j)` for
//! `j <= i`; the entries above the diagonal are 0 (they are masked). Nothing is added to the
//! embeddings and nothing is learned. Slopes: for `n` heads a power of two, `m_h = 2^(-8h/n)`,
//! `h = 1..n`; otherwise the paper's rule (fairseq `get_slopes`): the slopes of the nearest lower
//! power of two `c`, then every other slope of `2c`. The linear penalty keeps working past the
//! training length.
//!
//! The paper defines ALiBi for decoders only. Encoder (bidirectional mode), two variants, chosen
//! by `direction` in the config:
//!
//! * `symmetric` (the default; x-transformers' `AlibiPositionalBias`, the form proposed in
//!   ofirpress/attention_with_linear_biases issue 5): `B_h(i, j) = -m_h |i - j|`. The bias is
//!   symmetric, `B(i, j) = B(j, i)`, and depends only on `|i - j|`, so **an encoder whose only
//!   positional signal is this bias cannot tell left from right**: it is equivariant to reversing
//!   the sequence (reverse the input and the outputs come out reversed, exactly;
//!   `encoder_with_symmetric_alibi_is_reversal_equivariant` in `crates/model/tests/model.rs`). It
//!   still sees distances, so it is not a bag of words, but "a b" and "b a" at the same place
//!   look alike to every token outside the pair.
//! * `asymmetric`: keys before the query get half a slope less penalty,
//!   `B_h(i, j) = -m_h (|i - j| - 1/2)` for `j < i`, `-m_h |i - j|` for `j >= i`. This is the
//!   symmetry breaking of Ruoss et
//!   al. 2023 ("Randomized Positional Encodings Boost Length Generalization of Transformers",
//!   google-deepmind/randomized_positional_encodings, `compute_alibi_encodings_biases`: "we also
//!   add a constant factor of 0.5 to the lower triangle, to (arbitrarily) break the symmetry
//!   (otherwise, the model cannot distinguish left and right)"). Only for bidirectional mode: in
//!   a decoder every visible key is at or before the query, and there the offset would only
//!   move the diagonal against the rest of the row, so the config rejects it.

use crate::figure::{self, Figure, Lines, View};
use crate::{
    AttentionMode, EncodingConfigError, EncodingDims, PositionContext, Positional, Positions,
    Scheme, table_2d,
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `kind = "alibi"`: nothing to choose but an encoder's direction.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlibiConfig {
    /// Encoders only: `"symmetric"` (the default, `-m |i - j|`, cannot tell left from right)
    /// or `"asymmetric"` (keys before the query penalised half a slope less).
    #[serde(default, skip_serializing_if = "AlibiDirection::is_symmetric")]
    pub direction: AlibiDirection,
}

impl Scheme for AlibiConfig {
    type Module = Alibi;

    fn validate(&self, dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        validate(self.direction, dims.mode)
    }

    fn init(&self, dims: &EncodingDims, _device: &Device) -> Alibi {
        Alibi::new(dims.n_heads, dims.mode, self.direction)
    }

    fn order_seen(&self) -> crate::OrderSeen {
        if self.direction.is_symmetric() {
            crate::OrderSeen::Distance
        } else {
            crate::OrderSeen::Full
        }
    }

    fn encoder_note(&self) -> Option<&'static str> {
        Some(
            "`alibi` is the symmetric `-m|i-j|` unless `direction = \"asymmetric\"`; with only \
             it a model cannot tell left from right (reversing the input reverses the outputs).",
        )
    }
}

/// How an encoder's ALiBi treats keys before and after the query (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlibiDirection {
    /// `-m |i - j|`: cannot tell left from right.
    #[default]
    Symmetric,
    /// `-m (|i - j| - 1/2)` for keys before the query (Ruoss et al. 2023).
    Asymmetric,
}

impl AlibiDirection {
    /// Whether this is the default (the config then omits the key, so that configs written
    /// before the option existed and configs written now read and print the same).
    pub fn is_symmetric(&self) -> bool {
        *self == AlibiDirection::Symmetric
    }
}

/// Checks `direction` against the attention mode.
pub fn validate(direction: AlibiDirection, mode: AttentionMode) -> Result<(), EncodingConfigError> {
    if direction == AlibiDirection::Asymmetric && mode == AttentionMode::Causal {
        return Err(EncodingConfigError {
            field: "direction",
            message:
                "\"asymmetric\" is for encoders (model.mode = \"bidirectional\"); a decoder sees \
                      only keys at or before the query, use \"symmetric\""
                    .to_string(),
        });
    }
    Ok(())
}

#[derive(Module, Debug)]
pub struct Alibi {
    #[module(skip)]
    slopes: Vec<f64>,
    #[module(skip)]
    mode: AttentionMode,
    #[module(skip)]
    direction: AlibiDirection,
}

/// ALiBi head slopes, in the paper's head order (not sorted when `n` is not a power of two).
pub fn slopes(n: usize) -> Vec<f64> {
    fn power_of_two(n: usize) -> Vec<f64> {
        let ratio = 2f64.powf(-8.0 / n as f64);
        (1..=n).map(|h| ratio.powi(h as i32)).collect()
    }
    assert!(n > 0, "ALiBi needs at least one head");
    if n.is_power_of_two() {
        return power_of_two(n);
    }
    let c = 1 << n.ilog2();
    let mut out = power_of_two(c);
    out.extend(slopes(2 * c).into_iter().step_by(2).take(n - c));
    out
}

impl Alibi {
    pub fn new(n_heads: usize, mode: AttentionMode, direction: AlibiDirection) -> Self {
        Self {
            slopes: slopes(n_heads),
            mode,
            direction,
        }
    }

    pub fn slopes(&self) -> &[f64] {
        &self.slopes
    }

    /// The distance that the slope multiplies for query `i` and key `j`.
    fn penalty(&self, i: usize, j: usize) -> f64 {
        let distance = match self.mode {
            AttentionMode::Causal => i.saturating_sub(j),
            AttentionMode::Bidirectional => i.abs_diff(j),
        } as f64;
        let before = j < i && self.direction == AlibiDirection::Asymmetric;
        if before { distance - 0.5 } else { distance }
    }

    /// The bias `[h, t, t]`.
    pub fn bias(&self, t: usize, device: &Device) -> Tensor<3> {
        self.bias_at(&Positions::contiguous(t), device)
    }

    /// The bias at positions `0..t` by offset, `[h, 2t - 1]`: column `t - 1 + j - i` holds
    /// query `i`'s bias for key `j` (the penalty depends on `j - i` alone), each value computed
    /// as [`Alibi::bias_at`] computes it.
    pub fn bias_by_offset(&self, t: usize, device: &Device) -> Tensor<2> {
        let h = self.slopes.len();
        let mut values = Vec::with_capacity(h * (2 * t - 1));
        for &m in &self.slopes {
            for c in 0..2 * t - 1 {
                values.push((-m * self.penalty(t - 1, c)) as f32);
            }
        }
        table_2d(values, h, 2 * t - 1, device)
    }

    /// The bias `[h, t, t]` for tokens at `positions`.
    pub fn bias_at(&self, positions: &Positions, device: &Device) -> Tensor<3> {
        let (h, t, p) = (self.slopes.len(), positions.len(), positions.as_slice());
        let mut values = Vec::with_capacity(h * t * t);
        for &m in &self.slopes {
            for &i in p {
                for &j in p {
                    values.push((-m * self.penalty(i, j)) as f32);
                }
            }
        }
        table_2d(values, h, t * t, device).reshape([h, t, t])
    }
}

impl Positional for Alibi {
    fn context(&self, positions: &Positions, device: &Device) -> PositionContext {
        crate::offset_bias_context(
            positions,
            device,
            |t| self.bias_by_offset(t, device),
            || self.bias_at(positions, device),
        )
    }

    fn figures(&self, view: &View, device: &Device) -> Vec<Figure> {
        let bias = crate::values(self.bias(view.len, device));
        let mut out = vec![
            Figure::Data {
                key: "slopes",
                value: serde_json::json!(self.slopes),
            },
            figure::bias_data("bias", &bias, view.len),
        ];
        out.extend(figure::bias_maps(view, "bias", &bias));
        out.push(Figure::Lines(Lines {
            file: "alibi-slopes".into(),
            title: "alibi: head slopes (paper order)".into(),
            x_label: "head",
            y_label: "slope m",
            series: vec![(
                "slope".to_string(),
                self.slopes
                    .iter()
                    .enumerate()
                    .map(|(h, &m)| (h as f64, m))
                    .collect(),
            )],
            log_y: true,
            points: true,
        }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_match_the_paper() {
        let eight: Vec<f64> = (1..=8).map(|h| 1.0 / 2f64.powi(h)).collect();
        assert_eq!(slopes(8), eight);
        assert_eq!(
            slopes(6),
            vec![0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]
        );
        assert_eq!(slopes(1), vec![2f64.powi(-8)]);
        assert_eq!(slopes(3), vec![2f64.powi(-4), 2f64.powi(-8), 2f64.powi(-2)]);
        let s12 = slopes(12);
        assert_eq!(&s12[..8], &eight[..]);
        for (k, e) in [0.5, 1.5, 2.5, 3.5].iter().enumerate() {
            assert!((s12[8 + k] - 2f64.powf(-e)).abs() < 1e-15);
        }
        let s16 = slopes(16);
        assert!(
            (s16[0] - 2f64.powf(-0.5)).abs() < 1e-15 && (s16[15] - 2f64.powi(-8)).abs() < 1e-15
        );
    }

    #[test]
    fn bias_is_minus_slope_times_distance_and_shift_invariant() {
        let dev = Device::flex();
        for mode in [AttentionMode::Causal, AttentionMode::Bidirectional] {
            let alibi = Alibi::new(4, mode, AlibiDirection::Symmetric);
            let t = 30;
            let b: Vec<f32> = alibi.bias(t, &dev).into_data().try_to_vec::<f32>().unwrap();
            let at = |h: usize, i: usize, j: usize| b[h * t * t + i * t + j];
            assert_eq!(at(0, 5, 2), -0.25 * 3.0);
            assert_eq!(at(3, 9, 0), -(2f32.powi(-8)) * 9.0);
            let upper = if mode == AttentionMode::Causal {
                0.0
            } else {
                -0.25 * 3.0
            };
            assert_eq!(at(0, 2, 5), upper);
            for h in 0..4 {
                for i in 0..t - 5 {
                    for j in 0..t - 5 {
                        assert_eq!(at(h, i, j), at(h, i + 5, j + 5));
                    }
                }
            }
        }
    }

    /// The offsets of long inference describe the matrix `bias_at` builds, to the bit, in every
    /// mode and direction; the context hands them out only for inference beyond the kernel's
    /// blocked length at `0..t` on flex, and the matrix everywhere else.
    #[test]
    fn the_bias_by_offset_is_the_matrix() {
        let dev = Device::flex();
        let long = ordo_kernels::attention::BLOCKED_FROM + 1;
        for mode in [AttentionMode::Causal, AttentionMode::Bidirectional] {
            for direction in [AlibiDirection::Symmetric, AlibiDirection::Asymmetric] {
                let alibi = Alibi::new(4, mode, direction);
                for t in [1, 7, 40] {
                    let expanded = ordo_kernels::expand_offsets(alibi.bias_by_offset(t, &dev), t);
                    let expanded: Vec<f32> = expanded.into_data().try_to_vec::<f32>().unwrap();
                    let want = bias_values(&alibi, t);
                    assert!(
                        expanded
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{mode:?} {direction:?} t {t}"
                    );
                }
                let ctx = |t: usize, dev: &Device| alibi.context(&Positions::contiguous(t), dev);
                let long_ctx = ctx(long, &dev);
                assert!(long_ctx.bias.is_none() && long_ctx.bias_by_offset.is_some());
                let want = bias_values(&alibi, long);
                let dense: Vec<f32> = long_ctx
                    .dense_bias()
                    .unwrap()
                    .into_data()
                    .try_to_vec()
                    .unwrap();
                assert_eq!(dense, want, "{mode:?} {direction:?}: dense_bias");
                for other in [ctx(long - 1, &dev), ctx(long, &dev.clone().autodiff())] {
                    assert!(other.bias.is_some() && other.bias_by_offset.is_none());
                }
            }
        }
    }

    fn bias_values(alibi: &Alibi, t: usize) -> Vec<f32> {
        alibi
            .bias(t, &Device::flex())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn asymmetric_encoder_bias_matches_the_randomized_pe_reference() {
        // google-deepmind/randomized_positional_encodings, `compute_alibi_encodings_biases` for
        // (h, t, T) = (4, 4, 4), worked out from its numpy code by hand: the matrix
        // `-sum(tri(k=-i)) - sum(tri(k=-i).T) + 0.5 tri(k=-1)` is
        //   [ 0.0, -1.0, -2.0, -3.0]
        //   [-0.5,  0.0, -1.0, -2.0]
        //   [-1.5, -0.5,  0.0, -1.0]
        //   [-2.5, -1.5, -0.5,  0.0]
        // times each head's slope (1/4, 1/16, 1/64, 1/256 for 4 heads).
        let unit = [
            [0.0, -1.0, -2.0, -3.0],
            [-0.5, 0.0, -1.0, -2.0],
            [-1.5, -0.5, 0.0, -1.0],
            [-2.5, -1.5, -0.5, 0.0],
        ];
        let alibi = Alibi::new(4, AttentionMode::Bidirectional, AlibiDirection::Asymmetric);
        let b = bias_values(&alibi, 4);
        for (h, m) in [0.25f32, 0.0625, 0.015625, 0.00390625].iter().enumerate() {
            for i in 0..4 {
                for j in 0..4 {
                    assert_eq!(b[h * 16 + i * 4 + j], m * unit[i][j], "head {h} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn symmetric_encoder_bias_cannot_tell_left_from_right_and_asymmetric_can() {
        let t = 20;
        let symmetric = Alibi::new(4, AttentionMode::Bidirectional, AlibiDirection::Symmetric);
        let asymmetric = Alibi::new(4, AttentionMode::Bidirectional, AlibiDirection::Asymmetric);
        let (s, a) = (bias_values(&symmetric, t), bias_values(&asymmetric, t));
        let at = |b: &[f32], h: usize, i: usize, j: usize| b[h * t * t + i * t + j];
        for (h, &m) in slopes(4).iter().enumerate() {
            for i in 0..t {
                for j in 0..t {
                    // Symmetric: B(i, j) = B(j, i), and reversing positions (i -> t-1-i) maps
                    // the bias onto itself.
                    assert_eq!(at(&s, h, i, j), at(&s, h, j, i));
                    assert_eq!(at(&s, h, i, j), at(&s, h, t - 1 - i, t - 1 - j));
                    // Asymmetric: a key `d` before the query scores m/2 more than the key `d`
                    // after it; keys at or after the query are as in the symmetric form.
                    if j < i {
                        let gap = at(&a, h, i, j) - at(&a, h, j, i);
                        assert!((gap - (m / 2.0) as f32).abs() < 1e-6, "{gap}");
                    } else {
                        assert_eq!(at(&a, h, i, j), at(&s, h, i, j));
                    }
                }
            }
        }
        // Shift invariance holds for both.
        for i in 0..t - 3 {
            for j in 0..t - 3 {
                assert_eq!(at(&a, 1, i, j), at(&a, 1, i + 3, j + 3));
            }
        }
    }

    #[test]
    fn asymmetric_direction_is_rejected_for_decoders() {
        let e = validate(AlibiDirection::Asymmetric, AttentionMode::Causal).unwrap_err();
        assert_eq!(e.field, "direction");
        assert!(e.message.contains("bidirectional"), "{e}");
        validate(AlibiDirection::Asymmetric, AttentionMode::Bidirectional).unwrap();
        validate(AlibiDirection::Symmetric, AttentionMode::Causal).unwrap();
    }
}
