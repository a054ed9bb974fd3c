//! `xpos`: extrapolatable position embedding (Sun, Dong, Patra, Ma, Huang, Benhaim, Chaudhary,
//! Song, Wei, ACL 2023, "A Length-Extrapolatable Transformer", §3.2; as lucidrains/
//! x-transformers builds it, `RotaryEmbedding(use_xpos = True)` and `apply_rotary_pos_emb`).
//!
//! RoPE whose rotated pairs are also scaled, queries up and keys down, so that `q_i·k_j` decays
//! with the distance:
//!
//! `q'_i = R(i θ) q_i · ζ^((i - c)/γ)`, `k'_j = R(j θ) k_j · ζ^(-(j - c)/γ)`,
//! `ζ_k = (2k + 0.4 r) / (1.4 r)` for pair `k` of the `r` rotated dims,
//!
//! `γ = scale_base` (512, x-transformers' and the paper's default), `c = ⌊(p_max + 1)/2⌋` the
//! middle of the pass's positions (x-transformers' `max_pos // 2`; it cancels in `q'·k'`, which
//! depends on `ζ^((i - j)/γ)` only, and keeps the scales near 1). Pairs `(2k, 2k + 1)` as there;
//! dims past `r` (`fraction < 1`) are neither rotated nor scaled. Differences from
//! x-transformers, on purpose: it rotates `max(dh/2, 32)` dims of each head by default
//! (`rotary_emb_dim`), ordo rotates all (`fraction = 1.0`) as its `rope` does. Causal only, as
//! there (x-transformers asserts it; the scale is not symmetric in `i` and `j`, so keys after the
//! query would be scaled up), and the config refuses bidirectional mode. With randomized
//! positions `i` and `j` are the drawn positions.

use crate::rope::{self, Rope, RopeLayout, RopeScaling, RopeTables};
use crate::{
    EncodingConfigError, EncodingDims, PositionContext, Positional, Positions, Scheme, invalid,
    table_2d,
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `kind = "xpos"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XposConfig {
    /// RoPE's frequency base θ.
    #[serde(default = "default_base")]
    pub base: f64,
    /// Fraction of each head's dimensions that is rotated and scaled.
    #[serde(default = "default_fraction")]
    pub fraction: f64,
    /// `γ`, the distance over which the scale changes by a factor `ζ`.
    #[serde(default = "default_scale_base")]
    pub scale_base: f64,
}

fn default_base() -> f64 {
    10000.0
}
fn default_fraction() -> f64 {
    1.0
}
fn default_scale_base() -> f64 {
    512.0
}

impl Default for XposConfig {
    fn default() -> Self {
        Self {
            base: default_base(),
            fraction: default_fraction(),
            scale_base: default_scale_base(),
        }
    }
}

impl Scheme for XposConfig {
    type Module = Xpos;

    fn validate(&self, dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        if !(self.scale_base > 0.0 && self.scale_base.is_finite()) {
            return Err(invalid(
                "scale_base",
                format!("expected a positive number, got {}", self.scale_base),
            ));
        }
        rope::validate(
            self.base,
            self.fraction,
            &RopeScaling::default(),
            dims.d_head(),
        )
    }

    fn causal_only(&self) -> Option<&'static str> {
        Some(
            "its scale grows with the query's position and shrinks with the key's, so keys \
             after a query would be scaled up; x-transformers asserts it too",
        )
    }

    fn init(&self, dims: &EncodingDims, _device: &Device) -> Xpos {
        Xpos {
            rope: Rope::new(
                self.base,
                self.fraction,
                RopeLayout::Interleaved,
                RopeScaling::default(),
                dims.d_head(),
            ),
            scale_base: self.scale_base,
        }
    }
}

#[derive(Module, Debug)]
pub struct Xpos {
    pub rope: Rope,
    #[module(skip)]
    scale_base: f64,
}

impl Xpos {
    /// The per-dim scale `[t, dh]` of the queries at `positions` (the keys take its inverse).
    pub fn scale_at(&self, positions: &Positions) -> Vec<f32> {
        let (p, dh, r) = (
            positions.as_slice(),
            self.rope.d_head(),
            self.rope.rotated_dims(),
        );
        let centre = (positions.extent() / 2) as f64;
        let mut out = Vec::with_capacity(p.len() * dh);
        for &m in p {
            let power = (m as f64 - centre) / self.scale_base;
            for c in 0..dh {
                out.push(if c < r {
                    let k = (c / 2) as f64;
                    let zeta = (2.0 * k + 0.4 * r as f64) / (1.4 * r as f64);
                    zeta.powf(power) as f32
                } else {
                    1.0
                });
            }
        }
        out
    }

    /// The rotation tables of the queries and of the keys at `positions`.
    pub fn tables_at(&self, positions: &Positions, device: &Device) -> (RopeTables, RopeTables) {
        let plain = self.rope.tables_at(positions, device);
        let (t, dh) = (positions.len(), self.rope.d_head());
        let scale = table_2d(self.scale_at(positions), t, dh, device).unsqueeze::<4>(); // [1, 1, t, dh]
        let keys = RopeTables {
            cos: plain.cos.clone() / scale.clone(),
            sin: plain.sin.clone() / scale.clone(),
            rotation: plain.rotation.clone(),
        };
        let queries = RopeTables {
            cos: plain.cos * scale.clone(),
            sin: plain.sin * scale,
            rotation: plain.rotation,
        };
        (queries, keys)
    }
}

impl Positional for Xpos {
    /// The factor `ζ_k^((i - j)/γ)` that xPos puts on pair `k` of `q_i·k_j`, against the
    /// distance `i - j`, for the first, middle and last rotated pairs.
    fn figures(&self, view: &crate::View, _device: &Device) -> Vec<crate::Figure> {
        let r = self.rope.rotated_dims();
        let pairs = [0, r / 4, r / 2 - 1];
        let series = pairs
            .iter()
            .map(|&k| {
                let zeta = (2.0 * k as f64 + 0.4 * r as f64) / (1.4 * r as f64);
                let points = (0..view.len)
                    .map(|d| (d as f64, zeta.powf(d as f64 / self.scale_base)))
                    .collect();
                (format!("pair {k} (ζ = {zeta:.3})"), points)
            })
            .collect();
        vec![crate::Figure::Lines(crate::figure::Lines {
            file: "xpos-scale".into(),
            title: format!("xpos: scale of q_i·k_j per pair, γ = {}", self.scale_base),
            x_label: "distance i - j",
            y_label: "ζ^((i - j)/γ)",
            series,
            log_y: false,
            points: false,
        })]
    }

    /// The queries' tables in `rope`, the keys' cos and sin in `own`.
    fn context(&self, positions: &Positions, device: &Device) -> PositionContext {
        let (queries, keys) = self.tables_at(positions, device);
        PositionContext {
            rope: Some(queries),
            own: vec![keys.cos, keys.sin],
            ..PositionContext::empty(positions.len())
        }
    }

    fn rotate(&self, q: Tensor<4>, k: Tensor<4>, ctx: &PositionContext) -> (Tensor<4>, Tensor<4>) {
        let queries = ctx.rope.as_ref().expect("xpos context holds its tables");
        let keys = RopeTables {
            cos: ctx.own[0].clone(),
            sin: ctx.own[1].clone(),
            rotation: queries.rotation.clone(),
        };
        (self.rope.apply(q, queries), self.rope.apply(k, &keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttentionMode, PositionalEncodingConfig, SchemeConfig};

    fn xpos(d_head: usize) -> Xpos {
        let dims = EncodingDims {
            d_model: 2 * d_head,
            n_heads: 2,
            n_layers: 1,
            mode: AttentionMode::Causal,
        };
        XposConfig {
            scale_base: 4.0,
            ..XposConfig::default()
        }
        .init(&dims, &Device::flex())
    }

    /// Golden values: x-transformers' `RotaryEmbedding(8, use_xpos = True, scale_base = 4)`,
    /// `forward(arange(5))`, then `apply_rotary_pos_emb` on `q = k = 0.1·(1..=8)` at every
    /// position, with `scale` for the queries and `scale ** -1` for the keys, run with torch in
    /// float32: rows 0 and 4 of each.
    #[test]
    fn rotation_and_scale_match_x_transformers() {
        let dev = Device::flex();
        let x = xpos(8);
        let t = 5;
        let ctx = x.context(&Positions::contiguous(t), &dev);
        let row: Vec<f32> = (1..=8).map(|v| v as f32 * 0.1).collect();
        let input = Tensor::<1>::from_floats(row.as_slice(), &dev)
            .reshape([1, 1, 1, 8])
            .expand([1, 1, t, 8]);
        let (q, k) = x.rotate(input.clone(), input, &ctx);
        let (q, k) = (crate::values(q), crate::values(k));
        for (what, got, want) in [
            ("q row 0", &q[..8], &GOLDEN_Q0),
            ("q row 4", &q[32..40], &GOLDEN_Q4),
            ("k row 0", &k[..8], &GOLDEN_K0),
            ("k row 4", &k[32..40], &GOLDEN_K4),
        ] {
            for (c, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                assert!((a - b).abs() < 1e-5, "{what} dim {c}: {a} vs {b}");
            }
        }
    }

    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN_Q0: [f32; 8] = [
        0.187083, 0.374166, 0.440280, 0.587040, 0.623610, 0.748331, 0.772348, 0.882684,
    ];
    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN_Q4: [f32; 8] = [
        0.045967, -0.110330, 0.082142, 0.330642, 0.381334, 0.496717, 0.631524, 0.727594,
    ];
    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN_K0: [f32; 8] = [
        0.053452, 0.106904, 0.204416, 0.272554, 0.400892, 0.481070, 0.634429, 0.725062,
    ];
    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN_K4: [f32; 8] = [
        0.160884, -0.386156, 0.176920, 0.712152, 0.593185, 0.772671, 0.768811, 0.885766,
    ];

    /// `q'_i·k'_j` depends on `i - j` only: shifting both positions changes nothing.
    #[test]
    fn scores_are_shift_invariant() {
        let dev = Device::flex();
        let x = xpos(8);
        let score = |i: usize, j: usize| {
            let p = Positions::new(vec![j, i]);
            let ctx = x.context(&p, &dev);
            let v = Tensor::<1>::from_floats([0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.6, -0.1], &dev)
                .reshape([1, 1, 1, 8])
                .expand([1, 1, 2, 8]);
            let (q, k) = x.rotate(v.clone(), v, &ctx);
            let q = q.slice_dim(2, 1..2);
            let k = k.slice_dim(2, 0..1);
            crate::values(q.matmul(k.swap_dims(2, 3)))[0]
        };
        for (i, j) in [(3, 1), (9, 2), (6, 5)] {
            let a = score(i, j);
            let b = score(i + 7, j + 7);
            assert!((a - b).abs() < 1e-4, "({i},{j}) {a} vs {b}");
        }
    }

    #[test]
    fn encoders_are_refused() {
        let dims = EncodingDims {
            d_model: 16,
            n_heads: 2,
            n_layers: 1,
            mode: AttentionMode::Bidirectional,
        };
        let config = PositionalEncodingConfig::from(SchemeConfig::Xpos(XposConfig::default()));
        assert!(!config.supports_mode(AttentionMode::Bidirectional));
        let err = config.validate(&dims).unwrap_err();
        assert_eq!(err.field, "kind");
        assert!(err.message.contains("causal"), "{}", err.message);
    }
}
