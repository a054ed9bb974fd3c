//! `dpb`: dynamic position bias (x-transformers' `DynamicPositionBias`, after SwinV2's
//! log-spaced continuous position bias, Liu et al. 2022 §3.4; lucidrains/x-transformers,
//! `x_transformers.py`).
//!
//! An additive logit bias per head, an MLP of the signed offset:
//!
//! `b_h(i, j) = MLP(x)_h`, `x = i - j`, or `sign(i - j)·log(1 + |i - j|)` with
//! `log_distance = true`,
//!
//! the MLP `1 -> w -> ... -> w -> heads` with SiLU after every hidden layer (`depth` hidden
//! layers, x-transformers' default 2), `w = d_model / 4` unless `width` is set (x-transformers
//! builds it with `dim = dim // 4`), no normalisation (its `norm = False` default). As there:
//! one MLP shared by every layer, evaluated once per forward pass at the offsets present and
//! looked up for each pair; the bias is added after the `1/√dh` scaling; the layers start as
//! burn's `Linear` (PyTorch's `nn.Linear` default). The offset is signed in both modes, so an
//! encoder sees order. With randomized positions `i` and `j` are the drawn positions.

use crate::figure::{self, Figure, View};
use crate::{EncodingConfigError, EncodingDims, PositionContext, Positional, Positions, Scheme};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `kind = "dpb"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpbConfig {
    /// Hidden width; absent: `d_model / 4` (at least 1), x-transformers' choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    /// Number of hidden layers (x-transformers' `dynamic_pos_bias_mlp_depth`, default 2).
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Feed `sign(x)·log(1 + |x|)` rather than the offset `x` itself.
    #[serde(default)]
    pub log_distance: bool,
}

fn default_depth() -> usize {
    2
}

impl Default for DpbConfig {
    fn default() -> Self {
        Self {
            width: None,
            depth: default_depth(),
            log_distance: false,
        }
    }
}

impl DpbConfig {
    fn width(&self, dims: &EncodingDims) -> usize {
        self.width.unwrap_or((dims.d_model / 4).max(1))
    }
}

impl Scheme for DpbConfig {
    type Module = Dpb;

    fn validate(&self, _dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        if self.width == Some(0) {
            return Err(crate::invalid("width", "expected a hidden width >= 1"));
        }
        if self.depth == 0 {
            return Err(crate::invalid(
                "depth",
                "expected at least 1 hidden layer (x-transformers asserts depth >= 1)",
            ));
        }
        Ok(())
    }

    fn init(&self, dims: &EncodingDims, device: &Device) -> Dpb {
        let w = self.width(dims);
        let mut layers = vec![LinearConfig::new(1, w).init(device)];
        for _ in 1..self.depth {
            layers.push(LinearConfig::new(w, w).init(device));
        }
        Dpb {
            hidden: layers,
            out: LinearConfig::new(w, dims.n_heads).init(device),
            log_distance: self.log_distance,
        }
    }

    fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
        let (w, h) = (self.width(dims) as u64, dims.n_heads as u64);
        let first = w.checked_mul(2)?;
        let middle = (self.depth as u64 - 1).checked_mul(w.checked_mul(w)?.checked_add(w)?)?;
        let last = w.checked_mul(h)?.checked_add(h)?;
        first.checked_add(middle)?.checked_add(last)
    }
}

#[derive(Module, Debug)]
pub struct Dpb {
    /// `1 -> w`, then `w -> w` for each further hidden layer; SiLU after each.
    pub hidden: Vec<Linear>,
    /// `w -> heads`.
    pub out: Linear,
    #[module(skip)]
    log_distance: bool,
}

impl Dpb {
    /// The MLP's output `[n, h]` at offsets `[n]`.
    pub fn at_offsets(&self, offsets: &[i64], device: &Device) -> Tensor<2> {
        let inputs: Vec<f32> = offsets
            .iter()
            .map(|&x| {
                let x = x as f64;
                if self.log_distance {
                    (x.signum() * (x.abs() + 1.0).ln()) as f32
                } else {
                    x as f32
                }
            })
            .collect();
        let mut x = crate::table_2d(inputs, offsets.len(), 1, device);
        for layer in &self.hidden {
            x = burn::tensor::activation::silu(layer.forward(x));
        }
        self.out.forward(x)
    }

    /// The bias at positions `0..t` by offset, `[h, 2t - 1]`: column `t - 1 + j - i` holds the
    /// MLP at `i - j`. At `0..t` the distinct offsets [`Dpb::bias_at`] feeds the MLP are all of
    /// `-(t-1)..=t-1` in this order, so the MLP sees the same input and gives the same bits.
    pub fn bias_by_offset(&self, t: usize, device: &Device) -> Tensor<2> {
        let last = t as i64 - 1;
        let table = self.at_offsets(&(-last..=last).collect::<Vec<_>>(), device); // [2t - 1, h]
        // Column c is i - j = t - 1 - c: the table's row 2t - 2 - c.
        let rows: Vec<i64> = (0..=2 * last).rev().collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [2 * t - 1]), device);
        table.select(0, rows).transpose() // [h, 2t - 1]
    }

    /// The bias `[h, t, t]` for tokens at `positions`: the MLP at each distinct offset
    /// `i - j` present, looked up per pair.
    pub fn bias_at(&self, positions: &Positions, device: &Device) -> Tensor<3> {
        let (p, t) = (positions.as_slice(), positions.len());
        let pairs: Vec<i64> = p
            .iter()
            .flat_map(|&i| p.iter().map(move |&j| i as i64 - j as i64))
            .collect();
        let mut distinct = pairs.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let index: Vec<i64> = pairs
            .iter()
            .map(|o| distinct.binary_search(o).expect("present") as i64)
            .collect();
        let table = self.at_offsets(&distinct, device); // [n, h]
        let h = table.dims()[1];
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [t * t]), device);
        table.select(0, index).reshape([t, t, h]).permute([2, 0, 1]) // [h, t, t]
    }
}

impl Positional for Dpb {
    fn context(&self, positions: &Positions, device: &Device) -> PositionContext {
        crate::offset_bias_context(
            positions,
            device,
            |t| self.bias_by_offset(t, device),
            || self.bias_at(positions, device),
        )
    }

    fn figures(&self, view: &View, device: &Device) -> Vec<Figure> {
        let bias = crate::values(self.bias_at(&Positions::contiguous(view.len), device));
        let mut out = vec![figure::bias_data("bias", &bias, view.len)];
        out.extend(figure::bias_maps(view, "bias", &bias));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AttentionMode;
    use burn::module::Param;

    fn set(linear: &mut Linear, weight: &[f32], bias: &[f32], dev: &Device) {
        let [i, o] = linear.weight.dims();
        // burn's Linear stores `[in, out]`; the golden weights are PyTorch's `[out, in]`.
        let w = Tensor::<1>::from_floats(weight, dev)
            .reshape([o, i])
            .transpose();
        linear.weight = Param::from_tensor(w);
        linear.bias = Some(Param::from_tensor(Tensor::from_floats(bias, dev)));
    }

    /// Golden values: x-transformers' `DynamicPositionBias(dim = 2, heads = 2, depth = 2,
    /// log_distance = ...)` with these weights, `forward(4, 4)` (`[h, i, j]`), run with torch in float32.
    #[test]
    fn bias_matches_x_transformers() {
        let dev = Device::flex();
        let dims = EncodingDims {
            d_model: 8,
            n_heads: 2,
            n_layers: 1,
            mode: AttentionMode::Causal,
        };
        for (log_distance, want) in [(false, GOLDEN_LINEAR), (true, GOLDEN_LOG)] {
            let mut dpb = DpbConfig {
                log_distance,
                ..DpbConfig::default()
            }
            .init(&dims, &dev);
            set(&mut dpb.hidden[0], &[0.5, -0.3], &[0.1, 0.2], &dev);
            set(
                &mut dpb.hidden[1],
                &[0.4, -0.2, 0.7, 0.1],
                &[0.0, -0.1],
                &dev,
            );
            set(&mut dpb.out, &[1.0, -0.5, 0.3, 0.8], &[0.05, -0.05], &dev);
            let b = crate::values(dpb.bias_at(&Positions::contiguous(4), &dev));
            for (k, (&got, &want)) in b.iter().zip(want.iter()).enumerate() {
                assert!(
                    (got - want).abs() < 1e-5,
                    "log {log_distance} at {k}: {got} vs {want}"
                );
            }
        }
    }

    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN_LINEAR: [f32; 32] = [
        0.062226, 0.031981, 0.004544, -0.021745, 0.093915, 0.062226, 0.031981, 0.004544, 0.121968,
        0.093915, 0.062226, 0.031981, 0.141289, 0.121968, 0.093915, 0.062226, -0.070505, -0.133716,
        -0.159240, -0.161338, 0.048790, -0.070505, -0.133716, -0.159240, 0.240609, 0.048790,
        -0.070505, -0.133716, 0.508843, 0.240609, 0.048790, -0.070505,
    ];
    // Printed by torch with 6 decimals, as they are.
    #[allow(clippy::excessive_precision)]
    const GOLDEN_LOG: [f32; 32] = [
        0.062226, 0.040944, 0.029163, 0.021102, 0.084293, 0.062226, 0.040944, 0.029163, 0.096944,
        0.084293, 0.062226, 0.040944, 0.105520, 0.096944, 0.084293, 0.062226, -0.070505, -0.119123,
        -0.137637, -0.147151, 0.005083, -0.070505, -0.119123, -0.137637, 0.064289, 0.005083,
        -0.070505, -0.119123, 0.113698, 0.064289, 0.005083, -0.070505,
    ];

    /// A function of the offset: shifting both positions changes nothing, and randomized
    /// positions look up the offsets they have.
    #[test]
    fn bias_is_shift_invariant() {
        let dev = Device::flex();
        let dims = EncodingDims {
            d_model: 16,
            n_heads: 2,
            n_layers: 1,
            mode: AttentionMode::Bidirectional,
        };
        let dpb = DpbConfig::default().init(&dims, &dev);
        let a = crate::values(dpb.bias_at(&Positions::new(vec![0, 2, 3, 7]), &dev));
        let b = crate::values(dpb.bias_at(&Positions::new(vec![5, 7, 8, 12]), &dev));
        assert_eq!(a, b);
        let direct = crate::values(dpb.at_offsets(&[7, -7], &dev));
        // (3, 0) is offset 7, (0, 3) offset -7: head 0 and head 1.
        assert_eq!(a[3 * 4], direct[0]);
        assert_eq!(a[3], direct[2]);
        assert_eq!(a[16 + 3], direct[3]);
    }

    /// The offsets of long inference describe the matrix `bias_at` builds, to the bit, and the
    /// context hands them out only for inference beyond the kernel's blocked length on flex.
    #[test]
    fn the_bias_by_offset_is_the_matrix() {
        let dev = Device::flex();
        let long = ordo_kernels::attention::BLOCKED_FROM + 1;
        for log_distance in [false, true] {
            let dims = EncodingDims {
                d_model: 8,
                n_heads: 2,
                n_layers: 1,
                mode: AttentionMode::Causal,
            };
            let dpb = DpbConfig {
                log_distance,
                ..DpbConfig::default()
            }
            .init(&dims, &dev);
            let values = |x: Tensor<4>| x.into_data().try_to_vec::<f32>().unwrap();
            for t in [1, 7, 40, long] {
                let expanded = ordo_kernels::expand_offsets(dpb.bias_by_offset(t, &dev), t);
                let want = dpb.bias_at(&Positions::contiguous(t), &dev).unsqueeze();
                let (got, want) = (values(expanded), values(want));
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "log {log_distance} t {t}"
                );
            }
            let ctx = |t: usize, dev: &Device| dpb.context(&Positions::contiguous(t), dev);
            assert!(ctx(long, &dev).bias_by_offset.is_some() && ctx(long, &dev).bias.is_none());
            assert!(ctx(long - 1, &dev).bias.is_some());
        }
    }
}
