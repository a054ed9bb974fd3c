//! `kerple`: kernelized relative positional embeddings (Chi, Fan, Ramadge, Rudnicky, NeurIPS
//! 2022, "KERPLE: Kernelized Relative Positional Embedding for Length Extrapolation", §4.1;
//! reference code chijames/KERPLE, `megatron/mpu/layers.py`, `ParallelKerpleLog` and
//! `ParallelKerplePower`).
//!
//! An additive logit bias per head from a conditionally positive definite kernel of the
//! distance, with two learned scalars per head, `r1, r2 > 0`:
//!
//! * `variant = "log"` (the default; the paper's best): `b_h(i, j) = -r1·log(1 + r2·|i - j|)`;
//! * `variant = "power"`: `b_h(i, j) = -r1·|i - j|^r2`, `r2` in `(0, 2]`.
//!
//! As the reference: the bias is added after the `1/√dh` scaling, one set of scalars shared by
//! every layer (the reference builds one module and hands it to each layer); initialisation
//! `U(0, 2)` for the log variant's `r1` (`bias_p`) and `U(0, 1)` for its `r2` (`bias_a`); for
//! the power variant `U(0, 1)` for `r1` (`bias_a`) and `U(0, 2)` for the exponent `r2`
//! (`bias_p`). The reference keeps them positive by clamping the parameters' data to `>= 0.01`
//! (the exponent also to `<= 2`) before each use. ordo uses the clamped value in the forward
//! pass and passes the gradient straight through to the parameter (the parameter itself is not
//! rewritten): a scalar pushed below the bound acts as the bound and still learns, as the
//! reference's does. In causal mode the distance is `i - j` for `j <= i` (the reference's
//! `tril`; the rest is masked); in bidirectional mode `|i - j|` (the reference is causal only),
//! so **an encoder whose only positional signal is KERPLE cannot tell left from right**.
//! With randomized positions `i` and `j` are the drawn positions.

use crate::figure::{self, Figure, View};
use crate::{
    AttentionMode, EncodingDims, PositionContext, Positional, Positions, Scheme, table_2d,
};
use burn::module::Param;
use burn::nn::Initializer;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The reference's lower bound of every scalar (`eps = 1e-2`).
pub const EPS: f64 = 1e-2;
/// The power variant's upper bound of the exponent.
pub const MAX_POWER: f64 = 2.0;

/// Which kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KerpleVariant {
    /// `-r1·log(1 + r2·|i - j|)`.
    #[default]
    Log,
    /// `-r1·|i - j|^r2`.
    Power,
}

/// `kind = "kerple"`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KerpleConfig {
    /// `"log"` (default) or `"power"`.
    #[serde(default)]
    pub variant: KerpleVariant,
}

impl Scheme for KerpleConfig {
    type Module = Kerple;

    fn init(&self, dims: &EncodingDims, device: &Device) -> Kerple {
        let uniform = |max: f64| Initializer::Uniform { min: 0.0, max };
        // (r1, r2) as the reference draws them for each variant.
        let (r1_max, r2_max) = match self.variant {
            KerpleVariant::Log => (2.0, 1.0),
            KerpleVariant::Power => (1.0, 2.0),
        };
        Kerple {
            r1: uniform(r1_max).init([dims.n_heads], device),
            r2: uniform(r2_max).init([dims.n_heads], device),
            variant: self.variant,
            mode: dims.mode,
        }
    }

    fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
        (dims.n_heads as u64).checked_mul(2)
    }

    fn order_seen(&self) -> crate::OrderSeen {
        crate::OrderSeen::Distance
    }

    fn encoder_note(&self) -> Option<&'static str> {
        Some(
            "`kerple` reads `|i-j|` in an encoder (its reference is causal only); with only it a \
             model cannot tell left from right.",
        )
    }
}

#[derive(Module, Debug)]
pub struct Kerple {
    /// `r1` per head, `[h]`.
    pub r1: Param<Tensor<1>>,
    /// `r2` per head, `[h]`.
    pub r2: Param<Tensor<1>>,
    #[module(skip)]
    variant: KerpleVariant,
    #[module(skip)]
    mode: AttentionMode,
}

/// `x` clamped to `[min, max]` in the forward pass, with the identity's gradient.
fn clamped(x: Tensor<1>, min: f64, max: f64) -> Tensor<1> {
    let bound = x.clone().clamp(min, max);
    x.clone() + (bound - x).detach()
}

impl Kerple {
    /// The scalars in use, `(r1, r2)` per head, after the reference's clamps.
    pub fn scalars(&self) -> (Tensor<1>, Tensor<1>) {
        let r2_max = match self.variant {
            KerpleVariant::Log => f64::INFINITY,
            KerpleVariant::Power => MAX_POWER,
        };
        (
            clamped(self.r1.val(), EPS, f64::INFINITY),
            clamped(self.r2.val(), EPS, r2_max),
        )
    }

    /// The distance `[t, t]` the kernel reads.
    fn distance(&self, positions: &Positions, device: &Device) -> Tensor<2> {
        let (p, t) = (positions.as_slice(), positions.len());
        let values = p
            .iter()
            .flat_map(|&i| {
                p.iter().map(move |&j| match self.mode {
                    AttentionMode::Causal => i.saturating_sub(j),
                    AttentionMode::Bidirectional => i.abs_diff(j),
                } as f32)
            })
            .collect();
        table_2d(values, t, t, device)
    }

    /// The bias `[h, t, t]` for tokens at `positions`.
    pub fn bias_at(&self, positions: &Positions, device: &Device) -> Tensor<3> {
        let t = positions.len();
        let (r1, r2) = self.scalars();
        let h = r1.dims()[0];
        let per_head = |x: Tensor<1>| x.reshape([h, 1, 1]);
        let distance = self.distance(positions, device).unsqueeze::<3>(); // [1, t, t]
        let kernel = match self.variant {
            KerpleVariant::Log => (distance * per_head(r2)).add_scalar(1.0).log(),
            KerpleVariant::Power => {
                // `d^r2 = exp(r2·ln d)` for d > 0 and 0 at d = 0, without ln 0 in the graph.
                let nonzero = distance.clone().greater_elem(0.0).float();
                let log_d = (distance + nonzero.clone().neg().add_scalar(1.0)).log();
                (log_d * per_head(r2)).exp() * nonzero
            }
        }; // [h, t, t]
        (kernel * per_head(r1)).neg().reshape([h, t, t])
    }
}

impl Positional for Kerple {
    fn context(&self, positions: &Positions, device: &Device) -> PositionContext {
        PositionContext {
            bias: Some(self.bias_at(positions, device).unsqueeze::<4>()), // [1, h, t, t]
            ..PositionContext::empty(positions.len())
        }
    }

    fn learned_scalars(&self) -> Vec<(&'static str, f64)> {
        let (r1, r2) = self.scalars();
        let mean = |x: Tensor<1>| {
            let v = crate::values(x);
            v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64
        };
        vec![("r1_mean", mean(r1)), ("r2_mean", mean(r2))]
    }

    fn figures(&self, view: &View, device: &Device) -> Vec<Figure> {
        let bias = crate::values(self.bias_at(&Positions::contiguous(view.len), device));
        let (r1, r2) = self.scalars();
        let mut out = vec![
            Figure::Data {
                key: "r1",
                value: serde_json::json!(crate::values(r1)),
            },
            Figure::Data {
                key: "r2",
                value: serde_json::json!(crate::values(r2)),
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

    fn kerple(variant: KerpleVariant, mode: AttentionMode, r1: &[f32], r2: &[f32]) -> Kerple {
        let dev = Device::flex();
        let dims = EncodingDims {
            d_model: 8,
            n_heads: r1.len(),
            n_layers: 1,
            mode,
        };
        let mut k = KerpleConfig { variant }.init(&dims, &dev);
        k.r1 = Param::from_tensor(Tensor::from_floats(r1, &dev));
        k.r2 = Param::from_tensor(Tensor::from_floats(r2, &dev));
        k
    }

    /// Golden values: the reference's `forward` (`-bias_p*log(1+bias_a*diff)` and
    /// `-bias_a*diff.pow(bias_p)` on its `tril` distance matrix, parameters clamped as it clamps
    /// them) run with torch in float32 for t = 4, heads with (r1, r2) = (1.5, 0.3),
    /// (0.005, 2.5) (both below/above the bounds, clamped); rows 3 and 1.
    #[test]
    fn bias_matches_the_reference() {
        let dev = Device::flex();
        let p = Positions::contiguous(4);
        let log = kerple(
            KerpleVariant::Log,
            AttentionMode::Causal,
            &[1.5, 0.005],
            &[0.3, 2.5],
        );
        let b = crate::values(log.bias_at(&p, &dev));
        let want_log = [
            // head 0, row 3: -1.5 ln(1 + 0.3 d), d = 3, 2, 1, 0
            [-0.962_781, -0.705_005, -0.393_546, 0.0],
            // head 1 (r1 clamped to 0.01), row 3: -0.01 ln(1 + 2.5 d)
            [-0.021_401, -0.017_918, -0.012_528, 0.0],
        ];
        for h in 0..2 {
            for j in 0..4 {
                let got = b[h * 16 + 3 * 4 + j];
                assert!((got - want_log[h][j]).abs() < 1e-4, "log h{h} j{j}: {got}");
            }
            // Above the diagonal: the tril's 0.
            assert_eq!(b[h * 16 + 4 + 2], 0.0);
        }
        let power = kerple(
            KerpleVariant::Power,
            AttentionMode::Causal,
            &[1.5, 0.005],
            &[0.3, 2.5],
        );
        let b = crate::values(power.bias_at(&p, &dev));
        let want_power = [
            // head 0, row 3: -1.5 d^0.3
            [-2.085_584, -1.846_717, -1.5, 0.0],
            // head 1: r1 -> 0.01, r2 -> 2 (the exponent's upper bound): -0.01 d^2
            [-0.09, -0.04, -0.01, 0.0],
        ];
        for h in 0..2 {
            for j in 0..4 {
                let got = b[h * 16 + 3 * 4 + j];
                assert!(
                    (got - want_power[h][j]).abs() < 1e-4,
                    "power h{h} j{j}: {got}"
                );
            }
        }
    }

    /// The bias depends on the distance only: shifting both positions changes nothing, and an
    /// encoder's is symmetric.
    #[test]
    fn bias_is_shift_invariant_and_symmetric_in_an_encoder() {
        let dev = Device::flex();
        for variant in [KerpleVariant::Log, KerpleVariant::Power] {
            let k = kerple(
                variant,
                AttentionMode::Bidirectional,
                &[0.7, 1.2],
                &[0.4, 1.1],
            );
            let a = crate::values(k.bias_at(&Positions::new(vec![0, 2, 3, 7]), &dev));
            let b = crate::values(k.bias_at(&Positions::new(vec![5, 7, 8, 12]), &dev));
            assert_eq!(a, b, "{variant:?}");
            for h in 0..2 {
                for i in 0..4 {
                    for j in 0..4 {
                        assert_eq!(a[h * 16 + i * 4 + j], a[h * 16 + j * 4 + i]);
                    }
                }
            }
        }
    }

    /// The clamp passes the gradient through, and the power kernel has none from `d = 0`
    /// (no `ln 0` in the graph: every gradient is finite).
    #[test]
    fn gradients_are_finite_and_pass_the_clamp() {
        let dev = Device::flex().autodiff();
        let dims = EncodingDims {
            d_model: 8,
            n_heads: 2,
            n_layers: 1,
            mode: AttentionMode::Causal,
        };
        for variant in [KerpleVariant::Log, KerpleVariant::Power] {
            let mut k = KerpleConfig { variant }.init(&dims, &dev);
            k.r1 = Param::from_tensor(Tensor::from_floats([0.001, 1.0], &dev).require_grad());
            k.r2 = Param::from_tensor(Tensor::from_floats([0.5, 3.0], &dev).require_grad());
            let bias = k.bias_at(&Positions::contiguous(5), &dev);
            let grads = bias.sum().backward();
            for p in [&k.r1, &k.r2] {
                let g = crate::values(p.val().grad(&grads).expect("gradient"));
                assert!(
                    g.iter().all(|x| x.is_finite() && *x != 0.0),
                    "{variant:?} {g:?}"
                );
            }
        }
    }
}
