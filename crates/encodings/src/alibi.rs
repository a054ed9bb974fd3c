//! `alibi`: Attention with Linear Biases (Press, Smith, Lewis 2022, "Train Short, Test Long", §3).
//!
//! `score_ij = q_i·k_j/√dh - m_h (i - j)` for `j <= i` (decoder), and `- m_h |i - j|` in encoder
//! mode (the symmetric form x-transformers uses). Nothing is added to the embeddings and nothing
//! is learned. Slopes: for `n` heads a power of two, `m_h = 2^(-8h/n)`, `h = 1..n`; otherwise the
//! paper's rule (fairseq `get_slopes`): the slopes of the nearest lower power of two `c`, then
//! every other slope of `2c`. In causal mode the entries above the diagonal are 0 (they are
//! masked). The linear penalty keeps working past the training length.

use crate::{AttentionMode, PositionContext, Positional, table_2d};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Alibi {
    #[module(skip)]
    slopes: Vec<f64>,
    #[module(skip)]
    mode: AttentionMode,
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
    pub fn new(n_heads: usize, mode: AttentionMode) -> Self {
        Self {
            slopes: slopes(n_heads),
            mode,
        }
    }

    pub fn slopes(&self) -> &[f64] {
        &self.slopes
    }

    /// The bias `[h, t, t]`.
    pub fn bias(&self, t: usize, device: &Device) -> Tensor<3> {
        let h = self.slopes.len();
        let mut values = Vec::with_capacity(h * t * t);
        for &m in &self.slopes {
            for i in 0..t {
                for j in 0..t {
                    let distance = match self.mode {
                        AttentionMode::Causal => i.saturating_sub(j),
                        AttentionMode::Bidirectional => i.abs_diff(j),
                    };
                    values.push((-m * distance as f64) as f32);
                }
            }
        }
        table_2d(values, h, t * t, device).reshape([h, t, t])
    }
}

impl Positional for Alibi {
    fn context(&self, seq_len: usize, device: &Device) -> PositionContext {
        PositionContext {
            bias: Some(self.bias(seq_len, device).unsqueeze::<4>()), // [1, h, t, t]
            ..PositionContext::empty(seq_len)
        }
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
            let alibi = Alibi::new(4, mode);
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
}
