//! `shaw`: relative position representations (Shaw, Uszkoreit, Vaswani 2018, NAACL, §3).
//!
//! `e_ij = q_i·(k_j + a^K_ij) / √dh` and `z_i = Σ_j α_ij (v_j + a^V_ij)`, with
//! `a^K_ij = w^K[clip(j - i, -k, k)]`, `a^V_ij = w^V[clip(j - i, -k, k)]`, learned tables of
//! `2k + 1` rows of size `dh`, one pair per layer shared across heads (the paper's setting).
//! `values = false` keeps only the key term (HF's "relative_key", with clipping). Offsets beyond
//! `±k` share one row, so any length works; in causal mode only offsets `-k..=0` are used.
//!
//! Implementation: the key term is `(q w^Kᵀ)[i, clip(j - i) + k]`, a gather; the value term is
//! `α` summed per label (`Σ_{j: clip(j - i) + k = l} α_ij`, a scatter-add) times `w^V`. For
//! training and inference on the CPU kernels the model hands the tables to the fused attention
//! kernel ([`ordo_kernels::attention()`], through [`RelativeTerms::tables`]), which does the
//! gather and the scatter per (sequence, head) in cache; attention maps and dropout on the
//! probabilities take [`RelativeTerms::key_scores`] / [`RelativeTerms::value_term`], which use
//! [`ordo_kernels::relative_gather`] / [`ordo_kernels::relative_scatter`] (each the other's
//! backward). All of it reaches the model through one hook, [`Positional::relative`]. Elsewhere (ndarray, wgpu) both are contractions with the one-hot map
//! `O[i, j, r] = 1` iff `clip(j - i) + k = r`, built once per forward: batched matmuls.
//! Tables are initialised N(0, 0.02²) like BERT-style relative embeddings, or N(0, `init_std`²).
//! At 0.02 the offset term `q·a^K` is tiny, so an encoder's attention starts out blind to
//! position; on `bigram_shift` (one bit per sentence) it then never leaves chance, while
//! `init_std = 1` learns it (0.52 -> 1.00; `notes/bigram-encoder.md`). A decoder gets order from
//! its causal mask and does not need it.

use crate::figure::{Figure, Heatmap, View};
use crate::{
    EncodingConfigError, EncodingDims, PositionContext, Positional, Positions, Scheme, invalid,
};
use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `kind = "shaw"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShawConfig {
    /// Clipping distance `k`: offsets beyond ±k share one embedding.
    #[serde(default = "default_k")]
    pub max_distance: usize,
    /// Whether the value term `a^V` is used (the paper's full method) or keys only.
    #[serde(default = "default_true")]
    pub values: bool,
    /// Std of the tables' initialisation; absent = 0.02 (BERT-style relative embeddings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_std: Option<f64>,
}

fn default_k() -> usize {
    16
}
fn default_true() -> bool {
    true
}

impl Default for ShawConfig {
    fn default() -> Self {
        Self {
            max_distance: default_k(),
            values: default_true(),
            init_std: None,
        }
    }
}

impl Scheme for ShawConfig {
    type Module = Shaw;

    fn encoder_weak_start(&self, _init: &crate::InitScales) -> Option<String> {
        self.init_std.is_none().then(|| {
            format!(
                "Shaw's tables start N(0, 0.02²), a key term of ~0.01 logits (on bigram_shift such \
                 an encoder stayed at chance, 0.51-0.53 over 3 seeds; `init_std = 1.0`: \
                 0.99-1.00 with 4 or 8 heads); set {}",
                crate::settings(&["model.encoding.init_std = 1.0"])
            )
        })
    }

    fn validate(&self, _dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        if self.max_distance == 0 {
            return Err(invalid(
                "max_distance",
                "expected a clipping distance k >= 1",
            ));
        }
        crate::check_init_std(self.init_std)
    }

    fn init(&self, dims: &EncodingDims, device: &Device) -> Shaw {
        let std = self.init_std.unwrap_or(DEFAULT_INIT_STD);
        Shaw::new(self.max_distance, self.values, std, dims, device)
    }

    fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
        // Per layer a key table and (with values) a value table of 2k+1 rows of d_head.
        let labels = (self.max_distance as u64).checked_mul(2)?.checked_add(1)?;
        let tables = if self.values { 2 } else { 1 };
        (dims.n_layers as u64)
            .checked_mul(tables)?
            .checked_mul(labels)?
            .checked_mul(dims.d_head() as u64)
    }
}

#[derive(Module, Debug)]
pub struct Shaw {
    /// `[n_layers, 2k+1, dh]`
    pub keys: Param<Tensor<3>>,
    /// `[n_layers, 2k+1, dh]`, absent when `values = false`.
    pub values: Option<Param<Tensor<3>>>,
    #[module(skip)]
    k: usize,
}

/// The clipped relative label `clip(j - i, -k, k) + k` in `0..2k+1`.
pub fn label(i: usize, j: usize, k: usize) -> usize {
    let rel = (j as i64 - i as i64).clamp(-(k as i64), k as i64);
    (rel + k as i64) as usize
}

/// BERT-style relative embeddings' initialisation std.
pub const DEFAULT_INIT_STD: f64 = 0.02;

impl Shaw {
    pub fn new(
        k: usize,
        values: bool,
        init_std: f64,
        dims: &EncodingDims,
        device: &Device,
    ) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: init_std,
        };
        let shape = [dims.n_layers, 2 * k + 1, dims.d_head()];
        Self {
            keys: init.init(shape, device),
            values: values.then(|| init.init(shape, device)),
            k,
        }
    }

    pub fn clip(&self) -> usize {
        self.k
    }

    /// Row-major `[t, t]` map of relative labels.
    pub fn label_map(&self, t: usize) -> Vec<usize> {
        self.label_map_at(&Positions::contiguous(t))
    }

    /// The label map for tokens at `positions`.
    pub fn label_map_at(&self, positions: &Positions) -> Vec<usize> {
        let p = positions.as_slice();
        p.iter()
            .flat_map(|&i| p.iter().map(move |&j| (i, j)))
            .map(|(i, j)| label(i, j, self.k))
            .collect()
    }

    /// The labels `[t, t]` of tokens at `positions`, as a tensor.
    pub fn labels_at(&self, positions: &Positions, device: &Device) -> Tensor<2, Int> {
        let t = positions.len();
        let labels: Vec<i64> = self
            .label_map_at(positions)
            .into_iter()
            .map(|l| l as i64)
            .collect();
        Tensor::from_data(TensorData::new(labels, [t, t]), device)
    }

    /// The one-hot `[t, t, 2k+1]` map `O`.
    pub fn one_hot(&self, t: usize, device: &Device) -> Tensor<3> {
        self.one_hot_at(&Positions::contiguous(t), device)
    }

    /// The one-hot map for tokens at `positions`.
    pub fn one_hot_at(&self, positions: &Positions, device: &Device) -> Tensor<3> {
        let (r, t) = (2 * self.k + 1, positions.len());
        let mut values = vec![0f32; t * t * r];
        for (ij, l) in self.label_map_at(positions).into_iter().enumerate() {
            values[ij * r + l] = 1.0;
        }
        Tensor::from_data(TensorData::new(values, [t, t, r]), device)
    }

    /// `layer`'s `[2k+1, dh]` rows of a `[n_layers, 2k+1, dh]` table.
    pub fn layer_table(table: &Param<Tensor<3>>, layer: usize) -> Tensor<2> {
        let [_, r, dh] = table.dims();
        table.val().slice_dim(0, layer..layer + 1).reshape([r, dh])
    }
}

impl Positional for Shaw {
    fn context(&self, positions: &Positions, device: &Device) -> PositionContext {
        // Ordo's kernel computes the terms for positions `0..t` itself; elsewhere (and for
        // randomized positions) they are composed from the one-hot map.
        let composed = !ordo_kernels::accelerated(device) || !positions.is_contiguous();
        PositionContext {
            relative: composed.then(|| RelativeMap {
                labels: self.labels_at(positions, device),
                one_hot: self
                    .values
                    .is_some()
                    .then(|| self.one_hot_at(positions, device)),
            }),
            ..PositionContext::empty(positions.len())
        }
    }

    fn figures(&self, view: &View, _device: &Device) -> Vec<Figure> {
        let (len, k) = (view.len, self.k as i64);
        let offsets: Vec<Vec<i64>> = self
            .label_map(len)
            .chunks(len)
            .map(|r| r.iter().map(|&l| l as i64 - k).collect())
            .collect();
        vec![
            Figure::Data {
                key: "relative_index",
                value: serde_json::json!(offsets),
            },
            Figure::Heatmap(Heatmap {
                file: "shaw-relative-index".into(),
                title: format!("shaw: clip(j - i, -{k}, {k})"),
                x_label: "key position j",
                y_label: "query position i",
                value_label: "relative index",
                values: offsets
                    .iter()
                    .map(|r| r.iter().map(|&o| o as f64).collect())
                    .collect(),
                sequential: false,
            }),
        ]
    }

    fn relative(&self) -> Option<RelativeTerms<'_>> {
        Some(RelativeTerms {
            clip: self.k,
            keys: &self.keys,
            values: self.values.as_ref(),
        })
    }
}

/// Where the relative terms are composed from burn's ops rather than ordo's kernel (devices
/// without the kernels, and positions that are not `0..t`): the label of every (query, key)
/// pair, and, for the value term only, the one-hot map `O[i, j, r] = 1` iff the label is `r`.
#[derive(Debug, Clone)]
pub struct RelativeMap {
    /// `clip(p_j - p_i) + k`, `[tq, tk]`.
    pub labels: Tensor<2, Int>,
    /// `[tq, tk, 2k+1]`, present when the scheme has a value term.
    pub one_hot: Option<Tensor<3>>,
}

/// Relative terms inside attention: per layer a key table and (optionally) a value table of
/// `2k + 1` rows of `dh`, indexed by the clipped offset `clip(j - i, -k, k) + k`. Borrowed from
/// the scheme without touching its parameters.
#[derive(Debug, Clone, Copy)]
pub struct RelativeTerms<'a> {
    pub clip: usize,
    /// `[n_layers, 2k+1, dh]`
    pub keys: &'a Param<Tensor<3>>,
    /// `[n_layers, 2k+1, dh]`
    pub values: Option<&'a Param<Tensor<3>>>,
}

impl RelativeTerms<'_> {
    /// Whether there is a value term (it needs the attention probabilities: the model must
    /// either hand the tables to ordo's kernel or keep the probabilities).
    pub fn has_values(&self) -> bool {
        self.values.is_some()
    }

    /// `layer`'s tables, for the fused attention kernel ([`ordo_kernels::attention()`]), which
    /// computes both terms without `[b, h, t, t]` intermediates.
    pub fn tables(&self, layer: usize) -> ordo_kernels::RelativeTables {
        ordo_kernels::RelativeTables {
            clip: self.clip,
            keys: Some(Shaw::layer_table(self.keys, layer)),
            values: self.values.map(|v| Shaw::layer_table(v, layer)),
        }
    }

    /// Relative-key scores `[b, h, tq, tk]` added to `q kᵀ` before the `1/√dh` scaling. Linear
    /// in `q` (the model passes `q / √dh` and adds the result to the scaled scores).
    pub fn key_scores(&self, q: &Tensor<4>, layer: usize, ctx: &PositionContext) -> Tensor<4> {
        self.scores_with(q, Shaw::layer_table(self.keys, layer), ctx)
    }

    /// `(x wᵀ)[i, clip(j - i) + k]`, `[b, h, t, t]`, for `x` `[b, h, t, dh]` and a table `w`
    /// `[2k+1, dh]`: the key term's contraction with any table (HF's `relative_key_query`
    /// takes it with the key table reversed for its key-side term).
    pub fn scores_with(&self, q: &Tensor<4>, w: Tensor<2>, ctx: &PositionContext) -> Tensor<4> {
        let [b, h, t, dh] = q.dims();
        let r = w.dims()[0];
        let qw = ordo_kernels::matmul(q.clone().reshape([b * h * t, dh]), w.transpose()); // [b*h*t, r]
        let qw = qw.reshape([b * h, t, r]);
        let Some(map) = &ctx.relative else {
            let scores = ordo_kernels::relative_gather(qw, self.clip);
            return scores.reshape([b, h, t, t]); // [b, h, tq, tk]
        };
        // Each score is one element of `q wᵀ`: a gather by label, `[b*h, tq, tk]` (no
        // `[t, t, r]` one-hot map, which a long table would make large).
        let labels = map.labels.clone().unsqueeze::<3>().expand([b * h, t, t]);
        qw.gather(2, labels).reshape([b, h, t, t]) // [b, h, tq, tk]
    }

    /// Relative-value term `[b, h, tq, dh]` added to `softmax(..) v` (`None` without values).
    pub fn value_term(
        &self,
        probs: &Tensor<4>,
        layer: usize,
        ctx: &PositionContext,
    ) -> Option<Tensor<4>> {
        let values = self.values?;
        let [b, h, t, _] = probs.dims();
        let w = Shaw::layer_table(values, layer); // [r, dh]
        let [r, dh] = w.dims();
        let Some(one_hot) = ctx.relative.as_ref().and_then(|m| m.one_hot.clone()) else {
            let per_label =
                ordo_kernels::relative_scatter(probs.clone().reshape([b * h, t, t]), self.clip);
            let out = ordo_kernels::matmul(per_label.reshape([b * h * t, r]), w); // [b*h*t, dh]
            return Some(out.reshape([b, h, t, dh]));
        };
        let p = probs.clone().reshape([b * h, t, t]).swap_dims(0, 1); // [tq, b*h, tk]
        let per_label = ordo_kernels::matmul(p, one_hot); // [tq, b*h, tk] x [tq, tk, r] = [tq, b*h, r]
        let out = ordo_kernels::matmul(per_label.reshape([t * b * h, r]), w); // [tq*b*h, dh]
        Some(
            out.reshape([t, b * h, dh])
                .swap_dims(0, 1)
                .reshape([b, h, t, dh]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttentionMode;

    #[test]
    fn labels_clip_signed_offsets() {
        assert_eq!(label(5, 5, 2), 2);
        assert_eq!(label(5, 6, 2), 3);
        assert_eq!(label(5, 4, 2), 1);
        assert_eq!(label(5, 0, 2), 0);
        assert_eq!(label(0, 9, 2), 4);
        for i in 0..20 {
            for j in 0..20 {
                assert_eq!(label(i, j, 3), label(i + 11, j + 11, 3));
            }
        }
    }

    #[test]
    fn key_and_value_terms_match_the_paper_formula_elementwise() {
        let dev = Device::flex();
        let dims = EncodingDims {
            d_model: 8,
            n_heads: 2,
            n_layers: 2,
            mode: AttentionMode::Bidirectional,
        };
        let shaw = Shaw::new(2, true, DEFAULT_INIT_STD, &dims, &dev);
        let (b, h, t, dh) = (2, 2, 7, 4);
        let q = Tensor::<4>::random(
            [b, h, t, dh],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let p = Tensor::<4>::random([b, h, t, t], burn::tensor::Distribution::Default, &dev);
        let ctx = shaw.context(&Positions::contiguous(t), &dev);
        let layer = 1;
        let terms = shaw.relative().unwrap();
        let ks: Vec<f32> = terms
            .key_scores(&q, layer, &ctx)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let vt: Vec<f32> = terms
            .value_term(&p, layer, &ctx)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let qv: Vec<f32> = q.into_data().try_to_vec::<f32>().unwrap();
        let pv: Vec<f32> = p.into_data().try_to_vec::<f32>().unwrap();
        let wk: Vec<f32> = shaw.keys.val().into_data().try_to_vec::<f32>().unwrap();
        let wv: Vec<f32> = shaw
            .values
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let r = 5;
        let w = |tab: &[f32], l: usize, d: usize| tab[layer * r * dh + l * dh + d];
        for bh in 0..b * h {
            for i in 0..t {
                for j in 0..t {
                    let l = label(i, j, 2);
                    let want: f32 = (0..dh)
                        .map(|d| qv[(bh * t + i) * dh + d] * w(&wk, l, d))
                        .sum();
                    let got = ks[(bh * t + i) * t + j];
                    assert!(
                        (got - want).abs() < 1e-5,
                        "key term {bh} {i} {j}: {got} vs {want}"
                    );
                }
                for d in 0..dh {
                    let want: f32 = (0..t)
                        .map(|j| pv[(bh * t + i) * t + j] * w(&wv, label(i, j, 2), d))
                        .sum();
                    let got = vt[(bh * t + i) * dh + d];
                    assert!(
                        (got - want).abs() < 1e-5,
                        "value term {bh} {i} {d}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
