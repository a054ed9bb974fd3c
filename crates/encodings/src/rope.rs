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
//! Past the training length (eval-time `scaling`): `linear` position interpolation
//! (Chen et al. 2023, `m -> m/s`); `ntk`-aware base scaling (`base' = base · s^(r/(r-2))`);
//! `yarn` (Peng et al. 2023): per-frequency ramp between interpolated and original frequencies by
//! the number of rotations `L/λ_i` over the original context (α = 1, β = 32), and attention
//! temperature `√(1/t) = 0.1 ln s + 1` applied to both q and k.

use crate::{EncodingConfigError, PositionContext, Positional, invalid, table_2d};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

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

/// Frequency scaling for sequences longer than those seen in training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RopeScaling {
    #[default]
    None,
    /// Position interpolation: positions divided by `factor`.
    Linear { factor: f64 },
    /// NTK-aware: `base * factor^(r / (r - 2))`.
    Ntk { factor: f64 },
    /// YaRN with its default ramp `alpha = 1`, `beta = 32` over `original_max_len`.
    Yarn {
        factor: f64,
        original_max_len: usize,
        #[serde(default = "yarn_alpha")]
        alpha: f64,
        #[serde(default = "yarn_beta")]
        beta: f64,
    },
}

fn yarn_alpha() -> f64 {
    1.0
}
fn yarn_beta() -> f64 {
    32.0
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
    let factor = match scaling {
        RopeScaling::None => return Ok(()),
        RopeScaling::Linear { factor } | RopeScaling::Ntk { factor } => *factor,
        RopeScaling::Yarn {
            factor,
            original_max_len,
            alpha,
            beta,
        } => {
            if *original_max_len == 0 {
                return Err(invalid(
                    "scaling.original_max_len",
                    "expected a positive length",
                ));
            }
            // Written negated so that NaN is rejected too.
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            if !(alpha < beta) {
                return Err(invalid(
                    "scaling.beta",
                    format!("expected beta > alpha ({alpha}), got {beta}"),
                ));
            }
            *factor
        }
    };
    if !(factor >= 1.0 && factor.is_finite()) {
        return Err(invalid(
            "scaling.factor",
            format!("expected a factor >= 1, got {factor}"),
        ));
    }
    if rotated as usize <= 2 && matches!(scaling, RopeScaling::Ntk { .. }) {
        return Err(invalid(
            "scaling",
            "ntk scaling needs more than 2 rotated dims",
        ));
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

    /// Replaces the frequency scaling (an eval-time choice; nothing trained depends on it).
    pub fn set_scaling(&mut self, scaling: RopeScaling) {
        self.scaling = scaling;
    }

    /// Angular frequencies `θ_i`, `i = 0..r/2`, after scaling.
    pub fn frequencies(&self) -> Vec<f64> {
        let r = self.rotated as f64;
        let theta = |base: f64, i: usize| base.powf(-((2 * i) as f64) / r);
        let half = self.rotated / 2;
        match &self.scaling {
            RopeScaling::None => (0..half).map(|i| theta(self.base, i)).collect(),
            RopeScaling::Linear { factor } => {
                (0..half).map(|i| theta(self.base, i) / factor).collect()
            }
            RopeScaling::Ntk { factor } => {
                let base = self.base * factor.powf(r / (r - 2.0));
                (0..half).map(|i| theta(base, i)).collect()
            }
            RopeScaling::Yarn {
                factor,
                original_max_len,
                alpha,
                beta,
            } => (0..half)
                .map(|i| {
                    let t = theta(self.base, i);
                    let rotations = *original_max_len as f64 * t / (2.0 * std::f64::consts::PI);
                    // gamma = 0: fully interpolated; gamma = 1: original frequency.
                    let gamma = ((rotations - alpha) / (beta - alpha)).clamp(0.0, 1.0);
                    (1.0 - gamma) * t / factor + gamma * t
                })
                .collect(),
        }
    }

    /// Multiplier on cos/sin (YaRN's attention temperature, applied to q and k); 1 otherwise.
    pub fn magnitude(&self) -> f64 {
        match &self.scaling {
            RopeScaling::Yarn { factor, .. } => 0.1 * factor.ln() + 1.0,
            _ => 1.0,
        }
    }

    /// Row-major `[len, r/2]` table of angles `m θ_i`.
    pub fn angles(&self, len: usize) -> Vec<f64> {
        let freqs = self.frequencies();
        (0..len)
            .flat_map(|m| freqs.iter().map(move |f| m as f64 * f))
            .collect()
    }

    /// The tables [`apply`](Self::apply) needs for `len` positions.
    pub fn tables(&self, len: usize, device: &Device) -> RopeTables {
        let (r, dh, half) = (self.rotated, self.d_head, self.rotated / 2);
        // Dim `c < r` belongs to pair `i`; dims past `r` pass through (cos 1, sin 0).
        let pair = |c: usize| match self.layout {
            RopeLayout::Interleaved => c / 2,
            RopeLayout::Half => c % half,
        };
        let mag = self.magnitude();
        let angles = self.angles(len);
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
        let partner = x.clone().matmul(tables.rotation.clone()); // [b, h, t, dh]
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
    fn context(&self, seq_len: usize, device: &Device) -> PositionContext {
        PositionContext {
            rope: Some(self.tables(seq_len, device)),
            ..PositionContext::empty(seq_len)
        }
    }

    fn rotate(&self, q: Tensor<4>, k: Tensor<4>, ctx: &PositionContext) -> (Tensor<4>, Tensor<4>) {
        let tables = ctx.rope.as_ref().expect("RoPE context holds its tables");
        (self.apply(q, tables), self.apply(k, tables))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn scalings_follow_their_definitions() {
        let f = |s: RopeScaling| Rope::new(10000.0, 1.0, RopeLayout::Half, s, 64).frequencies();
        let plain = f(RopeScaling::None);
        assert!((plain[1] - 10000f64.powf(-2.0 / 64.0)).abs() < 1e-15);
        let linear = f(RopeScaling::Linear { factor: 4.0 });
        assert!(
            plain
                .iter()
                .zip(&linear)
                .all(|(p, l)| (p / 4.0 - l).abs() < 1e-15)
        );
        let ntk = f(RopeScaling::Ntk { factor: 4.0 });
        let base = 10000.0 * 4f64.powf(64.0 / 62.0);
        assert!((ntk[0] - 1.0).abs() < 1e-15); // the highest frequency is kept
        assert!((ntk[31] - base.powf(-62.0 / 64.0)).abs() < 1e-15);
        // NTK's lowest frequency equals interpolation's: θ_last / s.
        assert!((ntk[31] - plain[31] / 4.0).abs() < 1e-12);
        let yarn = f(RopeScaling::Yarn {
            factor: 4.0,
            original_max_len: 2048,
            alpha: 1.0,
            beta: 32.0,
        });
        // High frequencies (many rotations) untouched, low ones interpolated.
        assert!((yarn[0] - plain[0]).abs() < 1e-15);
        assert!((yarn[31] - plain[31] / 4.0).abs() < 1e-15);
        assert!(
            yarn.iter()
                .zip(&plain)
                .all(|(y, p)| *y <= *p + 1e-15 && *y >= p / 4.0 - 1e-15)
        );
    }
}
