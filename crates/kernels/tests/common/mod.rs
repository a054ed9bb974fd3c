//! Helpers of the kernel tests: deterministic noise, distances, and the attention core's inputs
//! and results. Shared with `crates/model/tests/kernels.rs` (which includes this file by path),
//! so that the end-to-end tests there measure the same way.

// Each test crate that includes this file uses only some of it.
#![allow(dead_code)]

use burn::prelude::*;

/// Deterministic pseudo-random values in `[-scale, scale)`.
pub fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

pub fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest `|a - b| / (1 + |b|)`.
pub fn gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

/// Three `[b, t, h·dh]` projections (q, k, v; noise seeds `seed..seed + 3`), to differentiate
/// on an autodiff device.
pub fn projections(dev: &Device, [b, h, t, dh]: [usize; 4], seed: u64) -> [Tensor<3>; 3] {
    [0, 1, 2].map(|i| {
        let x = TensorData::new(noise(b * t * h * dh, seed + i, 2.0), [b, t, h * dh]);
        let x = Tensor::<3>::from_data(x, dev);
        if dev.is_autodiff() {
            x.require_grad()
        } else {
            x
        }
    })
}

/// The output's values and, on an autodiff device, the gradients of `Σ out ⊙ w` (`w` noise from
/// `seed`) with respect to q, k and v, after it; the gradients too, for the caller's other inputs.
pub fn output_and_grads(
    out: Tensor<3>,
    qkv: [Tensor<3>; 3],
    seed: u64,
) -> (Vec<Vec<f32>>, Option<burn::tensor::Gradients>) {
    if !out.device().is_autodiff() {
        return (vec![vals(out)], None);
    }
    let shape = out.dims();
    let w = TensorData::new(noise(shape.iter().product(), seed, 1.0), shape);
    let w = Tensor::<3>::from_data(w, &out.device());
    let grads = (out.clone() * w).sum().backward();
    let mut result = vec![vals(out)];
    for x in qkv {
        result.push(vals(x.grad(&grads).expect("q, k and v have gradients")));
    }
    (result, Some(grads))
}

/// Output and gradients (`names`, in order) of the kernel agree with the reference's within
/// 2e-5, and none is all zeros.
pub fn assert_all_close(case: &str, names: &[&str], got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{case}: number of results");
    for ((name, g), w) in names.iter().zip(got).zip(want) {
        assert!(gap(g, w) < 2e-5, "{case}: {name} differs by {}", gap(g, w));
        assert!(g.iter().any(|v| v.abs() > 1e-3), "{case}: {name} all zeros");
    }
}

/// The model's head split: a `[b, h, t, dh]` view of a `[b, t, h·dh]` projection.
pub fn heads(x: Tensor<3>, h: usize) -> Tensor<4> {
    let [b, t, d] = x.dims();
    x.reshape([b, t, h, d / h]).swap_dims(1, 2)
}
