//! `sinusoidal`: Vaswani et al. 2017, "Attention Is All You Need", §3.5.
//!
//! `PE(pos, 2i) = sin(pos / base^(2i/d_model))`, `PE(pos, 2i+1) = cos(pos / base^(2i/d_model))`,
//! with `base = 10000`: the paper's *interleaved* layout (as burn's `generate_sinusoids`), not the
//! concatenated halves some code uses (equivalent up to a permutation of embedding dims).
//! Added once to the token embeddings. Token embeddings are initialised N(0, 1); each sinusoid
//! component has RMS 1/√2, so position and content start at comparable scale.
//!
//! For every offset `k`, `PE(pos + k) = M_k PE(pos)` where `M_k` is block-diagonal with 2x2
//! rotations that do not depend on `pos` ([`shift_matrix`]). The table is computed for any
//! length: past the training length the model sees unseen absolute phases.

use crate::figure::{self, Figure, FigureOption, View};
use crate::{EncodingConfigError, EncodingDims, Positional, Positions, Scheme, invalid, table_2d};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `kind = "sinusoidal"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinusoidalConfig {
    /// Wavelength base (10000 in the paper).
    #[serde(default = "default_base")]
    pub base: f64,
}

fn default_base() -> f64 {
    10000.0
}

impl Default for SinusoidalConfig {
    fn default() -> Self {
        Self {
            base: default_base(),
        }
    }
}

impl Scheme for SinusoidalConfig {
    type Module = Sinusoidal;

    fn encoder_weak_start(&self, init: &crate::InitScales) -> Option<String> {
        (init.embedding_std >= 1.0).then(|| {
            format!(
                "token embeddings N(0, {}²) drown the sinusoids (RMS 1/√2, neighbouring positions \
                 97 % alike); on bigram_shift a sinusoidal encoder with N(0, 1) embeddings stayed \
                 at chance (0.50-0.52, 3000 steps), with `model.embedding_std = 0.3` it reached \
                 0.68-0.75 (3 seeds); set {}",
                init.embedding_std,
                crate::settings(&["model.embedding_std = 0.3"])
            )
        })
    }

    fn validate(&self, dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        let base = self.base;
        if !(base > 1.0 && base.is_finite()) {
            return Err(invalid(
                "base",
                format!("expected a number > 1, got {base}"),
            ));
        }
        if !dims.d_model.is_multiple_of(2) {
            return Err(invalid(
                "kind",
                format!(
                    "sinusoidal needs an even d_model (sin/cos pairs), got {}",
                    dims.d_model
                ),
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &EncodingDims, _device: &Device) -> Sinusoidal {
        Sinusoidal::new(self.base, dims.d_model)
    }
}

#[derive(Module, Debug)]
pub struct Sinusoidal {
    #[module(skip)]
    base: f64,
    #[module(skip)]
    d_model: usize,
}

impl Sinusoidal {
    pub fn new(base: f64, d_model: usize) -> Self {
        assert!(
            d_model.is_multiple_of(2),
            "sinusoidal encoding needs an even d_model, got {d_model}"
        );
        Self { base, d_model }
    }

    /// The `[len, d_model]` table as a tensor.
    pub fn table(&self, len: usize, device: &Device) -> Tensor<2> {
        self.table_at(&Positions::contiguous(len), device)
    }

    /// The `[t, d_model]` rows at `positions`.
    pub fn table_at(&self, positions: &Positions, device: &Device) -> Tensor<2> {
        let t = positions.len();
        let rows = sinusoid_rows(positions.as_slice(), self.d_model, self.base);
        table_2d(rows, t, self.d_model, device)
    }
}

/// Angular frequency of pair `i`: `base^(-2i/d_model)`.
pub fn frequency(i: usize, d_model: usize, base: f64) -> f64 {
    base.powf(-((2 * i) as f64) / d_model as f64)
}

/// Row-major `[len, d_model]` table, interleaved sin/cos, computed in f64.
pub fn sinusoid_table(len: usize, d_model: usize, base: f64) -> Vec<f32> {
    sinusoid_rows(&(0..len).collect::<Vec<_>>(), d_model, base)
}

/// Row-major `[positions, d_model]` rows of the table at `positions`.
pub fn sinusoid_rows(positions: &[usize], d_model: usize, base: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(positions.len() * d_model);
    for &pos in positions {
        for c in 0..d_model {
            let angle = pos as f64 * frequency(c / 2, d_model, base);
            out.push(if c % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    out
}

/// The `[d_model, d_model]` matrix `M_k` (row-major) with `PE(pos + k) = M_k PE(pos)`.
///
/// For pair `i` with `ω = base^(-2i/d)`: `sin((p+k)ω) = cos(kω) sin(pω) + sin(kω) cos(pω)` and
/// `cos((p+k)ω) = -sin(kω) sin(pω) + cos(kω) cos(pω)`, a rotation that depends only on `k`.
pub fn shift_matrix(k: i64, d_model: usize, base: f64) -> Vec<f64> {
    let mut m = vec![0.0; d_model * d_model];
    for i in 0..d_model / 2 {
        let (s, c) = (k as f64 * frequency(i, d_model, base)).sin_cos();
        let (a, b) = (2 * i, 2 * i + 1);
        m[a * d_model + a] = c;
        m[a * d_model + b] = s;
        m[b * d_model + a] = -s;
        m[b * d_model + b] = c;
    }
    m
}

impl Positional for Sinusoidal {
    fn embed(&self, x: Tensor<3>, positions: &Positions) -> Tensor<3> {
        let pe = self.table_at(positions, &x.device()); // [t, d]
        x + pe.unsqueeze::<3>() // [b, t, d]
    }

    fn figure_options(&self) -> &'static [FigureOption] {
        &[FigureOption {
            name: "check_shift",
            help: "K: check PE(pos+K) = M_K PE(pos) over the positions shown, with M_K from the \
                   closed form (a positive integer)",
            check: |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|&k| k > 0)
                    .map(|_| ())
                    .ok_or_else(|| format!("expected a positive integer K, got {v:?}"))
            },
        }]
    }

    fn figures(&self, view: &View, _device: &Device) -> Vec<Figure> {
        let table = sinusoid_table(view.len, self.d_model, self.base);
        let mut out = figure::absolute_table(view, "sinusoid table", &table);
        if let Some(k) = view.option("check_shift").and_then(|k| k.parse().ok()) {
            let worst = check_shift(k, view.len, self.d_model, self.base);
            out.push(Figure::Data {
                key: "shift_check",
                value: serde_json::json!({ "k": k, "max_abs_error": worst }),
            });
            out.push(Figure::Note(format!(
                "max |PE(pos+{k}) - M_{k} PE(pos)| over pos 0..{} = {worst:.3e}",
                view.len
            )));
        }
        out
    }
}

/// Largest `|PE(pos + k) - M_k PE(pos)|` over `pos` in `0..len`, with `M_k` from the closed form
/// ([`shift_matrix`]).
pub fn check_shift(k: usize, len: usize, d_model: usize, base: f64) -> f64 {
    let table = sinusoid_table(len + k, d_model, base);
    let m = shift_matrix(k as i64, d_model, base);
    let mut worst: f64 = 0.0;
    for pos in 0..len {
        for r in 0..d_model {
            let predicted: f64 = (0..d_model)
                .map(|c| m[r * d_model + c] * table[pos * d_model + c] as f64)
                .sum();
            let actual = table[(pos + k) * d_model + r] as f64;
            worst = worst.max((predicted - actual).abs());
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_values_match_the_paper_and_burn() {
        // REFERENCES.md §5, burn's generate_sinusoids test vector (d = 6).
        let t = sinusoid_table(3, 6, 10000.0);
        let pos1 = [0.84147, 0.54030, 0.04640, 0.99892, 0.00215, 1.0];
        let pos2 = [0.90930, -0.41615, 0.09270, 0.99569, 0.00431, 0.99999];
        for c in 0..6 {
            assert!(
                (t[6 + c] - pos1[c]).abs() < 1e-5,
                "pos 1 dim {c}: {}",
                t[6 + c]
            );
            assert!(
                (t[12 + c] - pos2[c]).abs() < 1e-5,
                "pos 2 dim {c}: {}",
                t[12 + c]
            );
        }
        // Position 0 is sin(0) = 0, cos(0) = 1.
        assert_eq!(&t[..6], &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn golden_values_match_burn_generate_sinusoids() {
        let dev = Device::flex();
        let ours = Sinusoidal::new(10000.0, 8).table(20, &dev);
        let burns = burn::nn::generate_sinusoids(20, 8, 10000, &dev);
        let diff: f32 = (ours - burns).abs().max().into_scalar();
        assert!(diff < 1e-4, "max difference {diff}");
    }

    #[test]
    fn shift_is_a_position_independent_rotation() {
        let (d, len, base) = (16, 200, 10000.0);
        let table = sinusoid_table(len + 40, d, base);
        for k in [1i64, 3, 17, 40] {
            let m = shift_matrix(k, d, base);
            let mut worst: f64 = 0.0;
            for pos in 0..len {
                for r in 0..d {
                    let predicted: f64 = (0..d)
                        .map(|c| m[r * d + c] * table[pos * d + c] as f64)
                        .sum();
                    let actual = table[(pos + k as usize) * d + r] as f64;
                    worst = worst.max((predicted - actual).abs());
                }
            }
            assert!(worst < 1e-5, "k = {k}: worst error {worst}");
            // M_k is orthogonal (a rotation): M_k M_kᵀ = I.
            for r in 0..d {
                for c in 0..d {
                    let dot: f64 = (0..d).map(|x| m[r * d + x] * m[c * d + x]).sum();
                    let want = if r == c { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-12);
                }
            }
        }
        // And it is not the identity: the shift is real.
        let m = shift_matrix(1, d, base);
        assert!((m[0] - 1.0).abs() > 1e-3);
    }

    #[test]
    fn dot_product_depends_on_distance_and_is_symmetric() {
        let (d, base) = (64, 10000.0);
        let t = sinusoid_table(100, d, base);
        let dot = |i: usize, j: usize| -> f64 {
            (0..d)
                .map(|c| t[i * d + c] as f64 * t[j * d + c] as f64)
                .sum()
        };
        for k in [1, 5, 20] {
            let a = dot(10, 10 + k);
            let b = dot(50, 50 + k);
            let c = dot(50, 50 - k);
            assert!(
                (a - b).abs() < 1e-4 && (b - c).abs() < 1e-4,
                "k={k}: {a} {b} {c}"
            );
        }
        assert!(dot(10, 10) > dot(10, 11) && dot(10, 11) > dot(10, 14));
    }
}
