//! `t5`: the bucketed relative position bias of T5 (Raffel et al. 2020, JMLR, §2.1).
//!
//! `score_ij = q_i·k_j/√dh + B[bucket(j - i), h]`, with one learned table `B ∈ R^{buckets × heads}`
//! shared by all layers (as T5 computes it in the first layer and passes it on). Buckets follow
//! HF `T5Attention._relative_position_bucket`: with `n` buckets (halved in bidirectional mode,
//! the upper half for keys after the query), distances below `n/2` get their own bucket, larger
//! ones share logarithmically wider buckets up to `max_distance`, beyond which all distances share
//! the last bucket. That saturation is what lets T5 run at any length.
//!
//! Convention choices: the bias is added after the usual `1/√dh` scaling (T5 itself does not
//! scale logits; x-transformers scales and adds); the table is initialised N(0, σ²) with
//! σ = d_model^-1/2 as HF does with `factor = 1`, or `init_std`.
//!
//! `init_std`: with HF's σ (0.125 at d_model 64) neighbouring buckets differ by a fraction of a
//! logit, so attention starts out almost blind to position; a decoder gets order from its causal
//! mask anyway, but an encoder trained on one bit per sentence (`bigram_shift`) then never leaves
//! chance. σ = 3 makes each head start out attending to a few offsets, which it learns from
//! (encoder bigram shift 0.52 -> 0.95-0.98; `notes/bigram-encoder.md`).

use crate::figure::{self, Figure, Heatmap, View};
use crate::{
    AttentionMode, EncodingConfigError, EncodingDims, PositionContext, Positional, Positions,
    Scheme, invalid,
};
use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `kind = "t5"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct T5Config {
    /// Number of buckets (32 in T5).
    #[serde(default = "default_buckets")]
    pub num_buckets: usize,
    /// Distance at which the logarithmic buckets saturate (128 in T5).
    #[serde(default = "default_max_distance")]
    pub max_distance: usize,
    /// Std of the table's initialisation; absent = `d_model^-1/2` (HF T5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_std: Option<f64>,
}

fn default_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}

impl Default for T5Config {
    fn default() -> Self {
        Self {
            num_buckets: default_buckets(),
            max_distance: default_max_distance(),
            init_std: None,
        }
    }
}

impl Scheme for T5Config {
    type Module = T5Bias;

    fn encoder_weak_start(&self, init: &crate::InitScales) -> Option<String> {
        let mut fix = Vec::new();
        let mut why = Vec::new();
        if self.init_std.is_none() {
            fix.push("model.encoding.init_std = 3.0");
            why.push(
                "T5's table starts N(0, d_model^-1/2), so its buckets differ by a fraction of a \
                 logit (on bigram_shift such an encoder stayed at chance, 0.51-0.53 over 3 seeds \
                 with 8 heads; `init_std = 3.0`: 0.999-1.000)",
            );
        }
        if init.n_heads < 8 {
            fix.push("model.n_heads = 8");
            why.push(
                "with fewer than 8 heads fewer start near a neighbouring offset (4 heads and \
                 `init_std = 3.0`: 0.58-0.91 over 3 seeds, some seeds not learning)",
            );
        }
        (!fix.is_empty()).then(|| format!("{}; set {}", why.join("; "), crate::settings(&fix)))
    }

    fn validate(&self, dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        validate(self.num_buckets, self.max_distance, dims.mode)?;
        crate::check_init_std(self.init_std)
    }

    fn init(&self, dims: &EncodingDims, device: &Device) -> T5Bias {
        T5Bias::new(
            self.num_buckets,
            self.max_distance,
            dims.n_heads,
            self.init_std
                .unwrap_or_else(|| (dims.d_model as f64).powf(-0.5)),
            dims.mode,
            device,
        )
    }

    fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
        (self.num_buckets as u64).checked_mul(dims.n_heads as u64)
    }
}

#[derive(Module, Debug)]
pub struct T5Bias {
    /// `[num_buckets, n_heads]`
    pub table: Param<Tensor<2>>,
    #[module(skip)]
    max_distance: usize,
    #[module(skip)]
    mode: AttentionMode,
}

pub(crate) fn validate(
    num_buckets: usize,
    max_distance: usize,
    mode: AttentionMode,
) -> Result<(), EncodingConfigError> {
    let n = match mode {
        AttentionMode::Causal => num_buckets,
        AttentionMode::Bidirectional => num_buckets / 2,
    };
    let min = if mode == AttentionMode::Causal { 2 } else { 4 };
    if num_buckets < min {
        return Err(invalid(
            "num_buckets",
            format!("expected at least {min} buckets in {mode:?} mode, got {num_buckets}"),
        ));
    }
    if max_distance <= n / 2 {
        return Err(invalid(
            "max_distance",
            format!(
                "expected more than {} (the exact-bucket range, num_buckets/{}), got {max_distance}",
                n / 2,
                if mode == AttentionMode::Causal { 2 } else { 4 }
            ),
        ));
    }
    Ok(())
}

/// The bucket of relative position `rel = key - query` (HF's "memory - context").
pub fn bucket(rel: i64, bidirectional: bool, num_buckets: usize, max_distance: usize) -> usize {
    let mut n = num_buckets as i64;
    let mut ret = 0;
    let dist = if bidirectional {
        n /= 2;
        if rel > 0 {
            ret += n;
        }
        rel.abs()
    } else {
        (-rel).max(0)
    };
    let max_exact = n / 2;
    let b = if dist < max_exact {
        dist
    } else {
        // Float32 as in the reference implementations.
        let ratio = (dist as f32 / max_exact as f32).ln()
            / (max_distance as f32 / max_exact as f32).ln()
            * (n - max_exact) as f32;
        (max_exact + ratio as i64).min(n - 1)
    };
    (ret + b) as usize
}

impl T5Bias {
    pub fn new(
        num_buckets: usize,
        max_distance: usize,
        n_heads: usize,
        init_std: f64,
        mode: AttentionMode,
        device: &Device,
    ) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: init_std,
        };
        Self {
            table: init.init([num_buckets, n_heads], device),
            max_distance,
            mode,
        }
    }

    pub fn num_buckets(&self) -> usize {
        self.table.dims()[0]
    }

    /// Row-major `[t, t]` bucket map for queries `i` (rows) and keys `j` (columns).
    pub fn bucket_map(&self, t: usize) -> Vec<usize> {
        self.bucket_map_at(&Positions::contiguous(t))
    }

    /// The bucket map for tokens at `positions`.
    pub fn bucket_map_at(&self, positions: &Positions) -> Vec<usize> {
        let bidirectional = self.mode == AttentionMode::Bidirectional;
        let p = positions.as_slice();
        let mut out = Vec::with_capacity(p.len() * p.len());
        for &i in p {
            for &j in p {
                out.push(bucket(
                    j as i64 - i as i64,
                    bidirectional,
                    self.num_buckets(),
                    self.max_distance,
                ));
            }
        }
        out
    }

    /// The bias `[h, t, t]` for `t` positions.
    pub fn bias(&self, t: usize, device: &Device) -> Tensor<3> {
        self.bias_at(&Positions::contiguous(t), device)
    }

    /// The bias at positions `0..t` by offset, `[h, 2t - 1]`: column `t - 1 + j - i` holds the
    /// table's entry for the bucket of `j - i` (what [`T5Bias::bias_at`] puts at `(i, j)`).
    pub fn bias_by_offset(&self, t: usize, device: &Device) -> Tensor<2> {
        let bidirectional = self.mode == AttentionMode::Bidirectional;
        let idx: Vec<i64> = (0..2 * t - 1)
            .map(|c| {
                let offset = c as i64 - (t as i64 - 1);
                bucket(offset, bidirectional, self.num_buckets(), self.max_distance) as i64
            })
            .collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [2 * t - 1]), device);
        self.table.val().select(0, idx).transpose() // [h, 2t - 1]
    }

    /// The bias `[h, t, t]` for tokens at `positions`.
    pub fn bias_at(&self, positions: &Positions, device: &Device) -> Tensor<3> {
        let (h, t) = (self.table.dims()[1], positions.len());
        let idx: Vec<i64> = self
            .bucket_map_at(positions)
            .into_iter()
            .map(|b| b as i64)
            .collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [t * t]), device);
        self.table
            .val()
            .select(0, idx) // [t*t, h]
            .reshape([t, t, h])
            .permute([2, 0, 1]) // [h, t, t]
    }
}

impl Positional for T5Bias {
    fn context(&self, positions: &Positions, device: &Device) -> PositionContext {
        crate::offset_bias_context(
            positions,
            device,
            |t| self.bias_by_offset(t, device),
            || self.bias_at(positions, device),
        )
    }

    fn figures(&self, view: &View, device: &Device) -> Vec<Figure> {
        let len = view.len;
        let map = self.bucket_map(len);
        let bias = crate::values(self.bias(len, device));
        let mut out = vec![
            Figure::Data {
                key: "buckets",
                value: serde_json::json!(map.chunks(len).collect::<Vec<_>>()),
            },
            figure::bias_data("bias", &bias, len),
            Figure::Heatmap(Heatmap {
                file: "t5-buckets".into(),
                title: format!(
                    "t5 buckets ({:?}, {} buckets)",
                    view.dims.mode,
                    self.num_buckets()
                ),
                x_label: "key position j",
                y_label: "query position i",
                value_label: "bucket",
                values: map
                    .chunks(len)
                    .map(|r| r.iter().map(|&b| b as f64).collect())
                    .collect(),
                sequential: true,
            }),
        ];
        out.extend(figure::bias_maps(view, "bias", &bias));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causal(d: i64) -> usize {
        bucket(-d, false, 32, 128)
    }

    #[test]
    fn causal_buckets_32_128_match_the_reference_boundaries() {
        for d in 0..16 {
            assert_eq!(causal(d), d as usize);
        }
        // REFERENCES.md §2: first distance of each log bucket 16..31.
        let starts = [
            16, 19, 21, 24, 27, 31, 35, 40, 46, 52, 59, 67, 77, 87, 99, 113,
        ];
        for (k, &s) in starts.iter().enumerate() {
            assert_eq!(causal(s), 16 + k, "distance {s}");
            assert_eq!(causal(s - 1), 15 + k, "distance {}", s - 1);
        }
        assert_eq!(causal(1000), 31);
        // Keys after the query (masked anyway) fall into bucket 0.
        assert_eq!(bucket(5, false, 32, 128), 0);
    }

    #[test]
    fn bidirectional_buckets_32_128() {
        let bi = |rel: i64| bucket(rel, true, 32, 128);
        assert_eq!(bi(0), 0);
        for d in 1..8 {
            assert_eq!(bi(-d), d as usize);
            assert_eq!(bi(d), 16 + d as usize);
        }
        assert_eq!(bi(1), 17);
        assert_eq!(bi(8), 24);
        assert_eq!(bi(64), 30);
        assert_eq!(bi(90), 30);
        assert_eq!(bi(91), 31);
        assert_eq!(bi(5000), 31);
        assert_eq!(bi(-5000), 15);
        assert!((8..16).contains(&bi(-8)));
    }

    #[test]
    fn small_configs() {
        let c16 = |d: i64| bucket(-d, false, 16, 64);
        let starts = [8, 11, 14, 18, 23, 30, 39, 50];
        for (k, &s) in starts.iter().enumerate() {
            assert_eq!(c16(s), 8 + k, "16/64 distance {s}");
            assert_eq!(c16(s - 1), 7 + k, "16/64 distance {}", s - 1);
        }
        let c8 = |d: i64| bucket(-d, false, 8, 32);
        let starts = [4, 7, 12, 20];
        for (k, &s) in starts.iter().enumerate() {
            assert_eq!(c8(s), 4 + k, "8/32 distance {s}");
            assert_eq!(c8(s - 1), 3 + k);
        }
    }

    #[test]
    fn bias_is_the_table_read_at_the_bucket_and_shift_invariant() {
        let dev = Device::flex();
        for mode in [AttentionMode::Causal, AttentionMode::Bidirectional] {
            let t5 = T5Bias::new(16, 32, 3, 12f64.powf(-0.5), mode, &dev);
            let table: Vec<f32> = t5.table.val().into_data().try_to_vec::<f32>().unwrap();
            let t = 40;
            let bias: Vec<f32> = t5.bias(t, &dev).into_data().try_to_vec::<f32>().unwrap();
            let map = t5.bucket_map(t);
            for h in 0..3 {
                for i in 0..t {
                    for j in 0..t {
                        let got = bias[h * t * t + i * t + j];
                        assert_eq!(got, table[map[i * t + j] * 3 + h]);
                        if i + 7 < t && j + 7 < t {
                            assert_eq!(got, bias[h * t * t + (i + 7) * t + j + 7]);
                        }
                    }
                }
            }
        }
    }

    /// The offsets of long inference describe the matrix `bias_at` builds, to the bit; the
    /// context hands them out only for inference beyond the kernel's blocked length at `0..t`
    /// on flex (training needs the table's gradient through the matrix).
    #[test]
    fn the_bias_by_offset_is_the_matrix() {
        let dev = Device::flex();
        let long = ordo_kernels::attention::BLOCKED_FROM + 1;
        for mode in [AttentionMode::Causal, AttentionMode::Bidirectional] {
            let t5 = T5Bias::new(16, 32, 3, 12f64.powf(-0.5), mode, &dev);
            let values = |x: Tensor<4>| x.into_data().try_to_vec::<f32>().unwrap();
            for t in [1, 7, 40, long] {
                let expanded = ordo_kernels::expand_offsets(t5.bias_by_offset(t, &dev), t);
                assert_eq!(
                    values(expanded),
                    values(t5.bias(t, &dev).unsqueeze()),
                    "{mode:?} t {t}"
                );
            }
            let ctx = |t: usize, dev: &Device| t5.context(&Positions::contiguous(t), dev);
            let long_ctx = ctx(long, &dev);
            assert!(long_ctx.bias.is_none() && long_ctx.bias_by_offset.is_some());
            for other in [ctx(long - 1, &dev), ctx(long, &dev.clone().autodiff())] {
                assert!(other.bias.is_some() && other.bias_by_offset.is_none());
            }
        }
    }
}
