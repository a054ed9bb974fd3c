//! The fused CPU kernels against burn's composed ops: values and gradients, small shapes (one
//! thread) and large ones (split across threads), with and without autodiff. The kernels inside
//! whole models (a few training steps with every encoding, Shaw's terms against the scheme's
//! composed hooks) are tested in `crates/model/tests/kernels.rs`.

mod common;

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use common::{assert_all_close, gap, heads, noise, output_and_grads, projections, vals};
use ordo_kernels::{self as kernels, with_composed_ops};

/// `f(x)` and `d Σ(f(x) ⊙ w) / dx` for random `w`, on autodiff(flex).
fn value_and_grad<const D: usize>(
    f: &dyn Fn(Tensor<D>) -> Tensor<D>,
    x: &[f32],
    shape: [usize; D],
) -> (Vec<f32>, Vec<f32>) {
    let dev = Device::flex().autodiff();
    let xt = Tensor::<D>::from_data(TensorData::new(x.to_vec(), shape), &dev).require_grad();
    let w = Tensor::<D>::from_data(TensorData::new(noise(x.len(), 99, 1.0), shape), &dev);
    let y = f(xt.clone());
    let grads = (y.clone() * w).sum().backward();
    (vals(y), vals(xt.grad(&grads).expect("x has a gradient")))
}

/// Fused and composed agree on values and gradients (autodiff), and on values without autodiff.
fn check<const D: usize>(
    name: &str,
    f: &dyn Fn(Tensor<D>) -> Tensor<D>,
    x: &[f32],
    shape: [usize; D],
    tol: f32,
) {
    let (y, g) = value_and_grad(f, x, shape);
    let (y_ref, g_ref) = with_composed_ops(|| value_and_grad(f, x, shape));
    let plain = vals(f(Tensor::from_data(
        TensorData::new(x.to_vec(), shape),
        &Device::flex(),
    )));
    assert!(
        gap(&y, &y_ref) < tol,
        "{name} {shape:?}: values differ by {}",
        gap(&y, &y_ref)
    );
    assert!(
        gap(&g, &g_ref) < tol,
        "{name} {shape:?}: gradients differ by {}",
        gap(&g, &g_ref)
    );
    assert_eq!(
        plain, y,
        "{name} {shape:?}: the inference path gives other values"
    );
    // Not vacuous: the gradient is not all zeros.
    assert!(g.iter().any(|v| v.abs() > 1e-3), "{name}: zero gradient");
}

#[test]
fn softmax_matches_burn_with_masked_entries() {
    for shape in [[2, 3, 5, 7], [4, 4, 48, 48]] {
        let n: usize = shape.iter().product();
        let mut x = noise(n, 1, 4.0);
        // Mask some keys (never a whole row: column 0 stays).
        for (i, v) in x.iter_mut().enumerate() {
            if i % shape[3] != 0 && i % 5 == 2 {
                *v = f32::NEG_INFINITY;
            }
        }
        check("softmax", &kernels::softmax, &x, shape, 2e-6);
    }
}

#[test]
fn gelu_matches_burn() {
    for shape in [[3, 5, 7], [8, 64, 72]] {
        let n: usize = shape.iter().product();
        check("gelu", &kernels::gelu, &noise(n, 2, 6.0), shape, 1e-6);
    }
}

fn random_norm(d: usize, dev: &Device) -> LayerNorm {
    let mut norm = LayerNormConfig::new(d).init(dev);
    let gamma = noise(d, 3, 1.0)
        .into_iter()
        .map(|v| 1.0 + v)
        .collect::<Vec<_>>();
    norm.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [d]), dev));
    norm.beta = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(noise(d, 4, 0.5), [d]),
        dev,
    )));
    norm
}

#[test]
fn layer_norm_matches_burn_including_parameter_gradients() {
    for shape in [[3, 5, 24], [16, 64, 40]] {
        let d = shape[2];
        let n: usize = shape.iter().product();
        let x: Vec<f32> = noise(n, 5, 3.0).into_iter().map(|v| v + 1.5).collect();
        let dev = Device::flex().autodiff();
        let norm = random_norm(d, &dev);
        let inference = norm.clone().valid();
        let f = |x: Tensor<3>| match x.device().is_autodiff() {
            true => kernels::layer_norm(&norm, x),
            false => kernels::layer_norm(&inference, x),
        };
        check("layer_norm", &f, &x, shape, 2e-5);
        // γ and β gradients.
        let param_grads = || {
            let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), shape), &dev);
            let w = Tensor::<3>::from_data(TensorData::new(noise(n, 6, 1.0), shape), &dev);
            let grads = (kernels::layer_norm(&norm, xt) * w).sum().backward();
            let beta = norm.beta.as_ref().unwrap().val();
            (
                vals(norm.gamma.val().grad(&grads).unwrap()),
                vals(beta.grad(&grads).unwrap()),
            )
        };
        let (dg, db) = param_grads();
        let (dg_ref, db_ref) = with_composed_ops(param_grads);
        assert!(
            gap(&dg, &dg_ref) < 1e-4,
            "dγ differs by {}",
            gap(&dg, &dg_ref)
        );
        assert!(
            gap(&db, &db_ref) < 1e-4,
            "dβ differs by {}",
            gap(&db, &db_ref)
        );
    }
}

#[test]
fn layer_norm_gradients_are_the_same_bits_on_one_thread_and_on_three() {
    let (shape, d) = ([32, 64, 48], 48);
    let n: usize = shape.iter().product();
    let dev = Device::flex().autodiff();
    let norm = random_norm(d, &dev);
    let x = noise(n, 7, 2.0);
    let run = || {
        let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), shape), &dev).require_grad();
        let w = Tensor::<3>::from_data(TensorData::new(noise(n, 8, 1.0), shape), &dev);
        let grads = (kernels::layer_norm(&norm, xt.clone()) * w)
            .sum()
            .backward();
        (
            vals(xt.grad(&grads).unwrap()),
            vals(norm.gamma.val().grad(&grads).unwrap()),
        )
    };
    let pool = |k| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(k)
            .build()
            .unwrap()
    };
    let one = pool(1).install(run);
    let three = pool(3).install(run);
    assert!(one == three, "results depend on the number of threads");
}

/// The loss composed of burn's ops: what `ordo_model::masked_cross_entropy` computes where
/// [`kernels::fused_cross_entropy`] is false.
fn composed_cross_entropy(
    logits: Tensor<3>,
    targets: Tensor<2, Int>,
    weights: Tensor<2>,
) -> Tensor<1> {
    let [b, t, _] = logits.dims();
    let logp = log_softmax(logits, 2); // [b, t, v]
    let picked = logp.gather(2, targets.reshape([b, t, 1])).reshape([b, t]); // [b, t]
    let total = weights.clone().sum().clamp_min(1.0);
    (picked * weights).sum().neg() / total
}

fn cross_entropy_case(b: usize, t: usize, v: usize) {
    let n = b * t * v;
    let logits = noise(n, 9, 5.0);
    let targets: Vec<i64> = noise(b * t, 10, 1.0)
        .iter()
        .map(|u| ((u + 1.0) / 2.0 * v as f32) as i64 % v as i64)
        .collect();
    // Some positions do not count; one weight is fractional.
    let mut weights: Vec<f32> = (0..b * t)
        .map(|i| if i % 3 == 1 { 0.0 } else { 1.0 })
        .collect();
    weights[0] = 0.5;
    let run = |fused: bool| {
        let dev = Device::flex().autodiff();
        let x =
            Tensor::<3>::from_data(TensorData::new(logits.clone(), [b, t, v]), &dev).require_grad();
        let tg = Tensor::<2, Int>::from_data(TensorData::new(targets.clone(), [b, t]), &dev);
        let w = Tensor::<2>::from_data(TensorData::new(weights.clone(), [b, t]), &dev);
        let loss = if fused {
            assert!(
                kernels::fused_cross_entropy(&x),
                "flex logits take the kernel"
            );
            kernels::cross_entropy(x.clone(), &tg, &w)
        } else {
            assert!(!with_composed_ops(|| kernels::fused_cross_entropy(&x)));
            composed_cross_entropy(x.clone(), tg, w)
        } * 3.0;
        let grads = loss.backward();
        (vals(loss), vals(x.grad(&grads).unwrap()))
    };
    let (loss, g) = run(true);
    let (loss_ref, g_ref) = run(false);
    assert!(
        gap(&loss, &loss_ref) < 1e-6,
        "loss {loss:?} vs {loss_ref:?}"
    );
    assert!(
        gap(&g, &g_ref) < 1e-6,
        "gradient differs by {}",
        gap(&g, &g_ref)
    );
    assert!(loss[0] > 1.0, "implausible loss {loss:?}");
}

#[test]
fn cross_entropy_matches_burn() {
    cross_entropy_case(2, 5, 11);
    cross_entropy_case(8, 64, 96);
}

/// The one-hot `[t, t, 2k+1]` map `O[i, j, l] = 1` where `l = clip(j - i, -k, k) + k` (Shaw et
/// al. 2018, section 3.2: relative positions clipped to `k`), as `ordo_encodings::shaw` builds
/// it for its composed path.
fn one_hot(t: usize, k: usize, dev: &Device) -> Tensor<3> {
    let r = 2 * k + 1;
    let mut values = vec![0f32; t * t * r];
    for i in 0..t {
        for j in 0..t {
            let l = (j as i64 - i as i64).clamp(-(k as i64), k as i64) + k as i64;
            values[(i * t + j) * r + l as usize] = 1.0;
        }
    }
    Tensor::from_data(TensorData::new(values, [t, t, r]), dev)
}

/// Shaw's gather and scatter against contractions with the one-hot map `O[i, j, l]`.
#[test]
fn relative_gather_and_scatter_match_the_one_hot_contractions() {
    let dev = Device::flex().autodiff();
    for (n, t, k) in [(3, 7, 2), (4, 40, 16), (2, 5, 0)] {
        let r = 2 * k + 1;
        let one_hot = one_hot(t, k, &dev); // [t, t, r]
        // gather: [n, t, r] -> [n, t, t]
        let x = Tensor::<3>::from_data(TensorData::new(noise(n * t * r, 11, 1.0), [n, t, r]), &dev)
            .require_grad();
        let w = Tensor::<3>::from_data(TensorData::new(noise(n * t * t, 12, 1.0), [n, t, t]), &dev);
        let run = |fused: bool| {
            let y = if fused {
                kernels::relative_gather(x.clone(), k)
            } else {
                // [t, n, r] x [t, r, t] -> [t, n, t]
                let y = x
                    .clone()
                    .swap_dims(0, 1)
                    .matmul(one_hot.clone().swap_dims(1, 2));
                y.swap_dims(0, 1)
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            (vals(y), vals(x.grad(&grads).unwrap()))
        };
        let ((y, g), (y_ref, g_ref)) = (run(true), run(false));
        assert!(
            gap(&y, &y_ref) < 1e-6 && gap(&g, &g_ref) < 1e-5,
            "gather n{n} t{t} k{k}"
        );
        // scatter: [n, t, t] -> [n, t, r]
        let p = Tensor::<3>::from_data(TensorData::new(noise(n * t * t, 13, 1.0), [n, t, t]), &dev)
            .require_grad();
        let w = Tensor::<3>::from_data(TensorData::new(noise(n * t * r, 14, 1.0), [n, t, r]), &dev);
        let run = |fused: bool| {
            let y = if fused {
                kernels::relative_scatter(p.clone(), k)
            } else {
                // [t, n, t] x [t, t, r] -> [t, n, r]
                p.clone()
                    .swap_dims(0, 1)
                    .matmul(one_hot.clone())
                    .swap_dims(0, 1)
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            (vals(y), vals(p.grad(&grads).unwrap()))
        };
        let ((y, g), (y_ref, g_ref)) = (run(true), run(false));
        assert!(
            gap(&y, &y_ref) < 1e-5 && gap(&g, &g_ref) < 1e-6,
            "scatter n{n} t{t} k{k}"
        );
        assert!(g.iter().any(|v| v.abs() > 1e-3), "zero gradient");
    }
}

/// A strided view (a transpose) as input: the kernels read it in logical order.
#[test]
fn kernels_read_strided_inputs_in_logical_order() {
    let (shape, n) = ([3, 4, 5, 6], 3 * 4 * 5 * 6);
    let x = noise(n, 21, 3.0);
    let f = |x: Tensor<4>| kernels::softmax(x.swap_dims(2, 3)).swap_dims(2, 3);
    let (y, g) = value_and_grad(&|x| kernels::gelu(f(x)), &x, shape);
    let (y_ref, g_ref) = with_composed_ops(|| value_and_grad(&|x| kernels::gelu(f(x)), &x, shape));
    assert!(
        gap(&y, &y_ref) < 2e-6,
        "values differ by {}",
        gap(&y, &y_ref)
    );
    assert!(
        gap(&g, &g_ref) < 2e-6,
        "gradients differ by {}",
        gap(&g, &g_ref)
    );
}

/// Output and the gradients of q, k, v (and the bias, when it is tracked) of the attention core
/// (`causal`: in the bias and by the kernel's flag),
/// with q, k, v given as head-split views of `[b, t, h·dh]` projections (strided, as the model
/// passes them).
/// On a device without autodiff (`dev`), only the output.
fn attention_case(
    dev: &Device,
    [b, h, t, dh]: [usize; 4],
    bias_shape: Option<[usize; 4]>,
    causal: bool,
    tracked_bias: bool,
) -> Vec<Vec<f32>> {
    let dev = dev.clone();
    let [q, k, v] = projections(&dev, [b, h, t, dh], 11);
    let heads = |x: Tensor<3>| heads(x, h);
    let bias = bias_shape.map(|shape| {
        let n: usize = shape.iter().product();
        let mut values = noise(n, 14, 1.5);
        for (idx, v) in values.iter_mut().enumerate() {
            let (i, j) = ((idx / t) % t, idx % t);
            if causal && j > i {
                *v = f32::NEG_INFINITY;
            }
        }
        let x = Tensor::<4>::from_data(TensorData::new(values, shape), &dev);
        if tracked_bias && dev.is_autodiff() {
            x.require_grad()
        } else {
            x
        }
    });
    let out = kernels::attention(
        heads(q.clone()),
        heads(k.clone()),
        heads(v.clone()),
        bias.clone(),
        None,
        (dh as f32).powf(-0.5),
        causal,
    );
    let (mut result, grads) = output_and_grads(out, [q, k, v], 15);
    let Some(grads) = grads else {
        return result;
    };
    if tracked_bias {
        result.push(vals(bias.unwrap().grad(&grads).expect("a bias gradient")));
    }
    result
}

#[test]
fn attention_core_matches_burn_for_every_bias_layout() {
    for (dims, bias, causal, tracked) in [
        ([2, 3, 5, 4], None, false, false),
        ([2, 3, 5, 4], None, true, false),
        ([2, 3, 5, 4], Some([1, 1, 5, 5]), true, false),
        ([2, 3, 5, 4], Some([2, 1, 5, 5]), false, false),
        ([2, 3, 5, 4], Some([1, 3, 5, 5]), true, true),
        ([2, 3, 5, 4], Some([2, 3, 5, 5]), false, true),
        ([4, 4, 40, 16], Some([4, 4, 40, 40]), true, true),
    ] {
        let dev = Device::flex().autodiff();
        let got = attention_case(&dev, dims, bias, causal, tracked);
        let want = with_composed_ops(|| attention_case(&dev, dims, bias, causal, tracked));
        // Inference (no autodiff) keeps no probabilities but gives the same output.
        let plain = attention_case(&Device::flex(), dims, bias, causal, tracked);
        assert_eq!(plain[0], got[0], "{dims:?} bias {bias:?}: inference output");
        let case = format!("{dims:?} bias {bias:?}");
        assert_all_close(&case, &["output", "dq", "dk", "dv", "dbias"], &got, &want);
    }
}

#[test]
fn long_inference_runs_in_query_blocks_and_matches_burn() {
    use ordo_kernels::attention::kernel::{BLOCKED_FROM, QUERY_BLOCK};
    // Longer than BLOCKED_FROM, and not a multiple of the block: a partial last block.
    let t = BLOCKED_FROM + QUERY_BLOCK / 2 + 3;
    for (bias, causal) in [
        (None, true),
        (None, false),
        (Some([1, 2, t, t]), true),
        (Some([2, 1, t, t]), false),
    ] {
        let dims = [2, 2, t, 8];
        let got = attention_case(&Device::flex(), dims, bias, causal, false);
        let want = with_composed_ops(|| attention_case(&Device::flex(), dims, bias, causal, false));
        let case = format!("t {t} bias {bias:?} causal {causal}");
        assert_all_close(&case, &["output"], &got, &want);
    }
}

/// A linear layer `d_in -> d_out` with noise weights (and bias), on `dev`.
fn noise_linear(
    d_in: usize,
    d_out: usize,
    bias: bool,
    seed: u64,
    dev: &Device,
) -> burn::nn::Linear {
    let mut linear = burn::nn::LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .init(dev);
    let w = TensorData::new(noise(d_in * d_out, seed, 1.0), [d_in, d_out]);
    linear.weight = Param::from_tensor(Tensor::from_data(w, dev));
    if bias {
        let b = TensorData::new(noise(d_out, seed + 1, 1.0), [d_out]);
        linear.bias = Some(Param::from_tensor(Tensor::from_data(b, dev)));
    }
    linear
}

/// Reads one parameter's gradient.
type GradOf = Box<dyn Fn(&burn::tensor::Gradients) -> Vec<f32>>;

fn grad_of<const D: usize>(t: Tensor<D>) -> GradOf {
    Box::new(move |g| vals(t.grad(g).expect("a parameter gradient")))
}

/// The layer's output, and the gradients of its weight and bias.
fn linear_out<const D: usize>(l: &burn::nn::Linear, x: Tensor<D>) -> (Tensor<D>, Vec<GradOf>) {
    let mut params = vec![grad_of(l.weight.val())];
    params.extend(l.bias.as_ref().map(|b| grad_of(b.val())));
    (kernels::linear(l, x), params)
}

/// `f(x)`, and the gradients of `Σ f(x) ⊙ w` for noise `w` with respect to `x` and to the
/// parameters `f` names, on autodiff(flex).
fn outputs_and_grads<const D: usize>(
    f: &dyn Fn(Tensor<D>) -> (Tensor<D>, Vec<GradOf>),
    x: &[f32],
    shape: [usize; D],
) -> Vec<Vec<f32>> {
    let dev = Device::flex().autodiff();
    let xt = Tensor::<D>::from_data(TensorData::new(x.to_vec(), shape), &dev).require_grad();
    let (y, params) = f(xt.clone());
    let w = Tensor::<D>::from_data(
        TensorData::new(noise(y.shape().num_elements(), 77, 1.0), y.dims()),
        &dev,
    );
    let grads = (y.clone() * w).sum().backward();
    let mut out = vec![vals(y), vals(xt.grad(&grads).expect("x has a gradient"))];
    out.extend(params.iter().map(|p| p(&grads)));
    out
}

/// burn's product and ordo's agree to the bit: values and every gradient under autodiff (ordo's
/// against `with_composed_ops`, where `kernels::linear`, `dense` and `matmul` are burn's own
/// ops), and the inference path's values.
fn same_bits<const D: usize>(
    case: &str,
    f: &dyn Fn(Tensor<D>) -> (Tensor<D>, Vec<GradOf>),
    shape: [usize; D],
) {
    let x = noise(shape.iter().product(), 5, 1.5);
    let got = outputs_and_grads(f, &x, shape);
    let want = with_composed_ops(|| outputs_and_grads(f, &x, shape));
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let differ = g
            .iter()
            .zip(w)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ,
            0,
            "{case}: result {i} differs in {differ} of {} elements",
            g.len()
        );
        assert!(
            g.iter().any(|v| v.abs() > 1e-3),
            "{case}: result {i} all zeros"
        );
    }
    let plain = Tensor::<D>::from_data(TensorData::new(x, shape), &Device::flex());
    assert_eq!(vals(f(plain).0), got[0], "{case}: the inference path");
}

/// A noise tensor on `dev`, tracked there.
fn param<const D: usize>(shape: [usize; D], seed: u64, dev: &Device) -> Tensor<D> {
    let x = TensorData::new(noise(shape.iter().product(), seed, 1.0), shape);
    let x = Tensor::from_data(x, dev);
    if dev.is_autodiff() {
        x.require_grad()
    } else {
        x
    }
}

/// `kernels::linear`, `kernels::dense` and `kernels::matmul` (fp32) make burn-flex's products
/// without its output's zero fill and copy: the same bits as burn's ops, forward and backward,
/// on every path burn takes (batches folded into rows or kept; products split over threads, over
/// the batch, or not at all; broadcast and strided operands).
#[test]
fn dense_products_are_burns_to_the_bit() {
    let linear_case = |name: &str, shape: [usize; 3], d_out: usize, bias: bool| {
        let f = move |x: Tensor<3>| {
            linear_out(&noise_linear(shape[2], d_out, bias, 11, &x.device()), x)
        };
        same_bits(name, &f, shape);
    };
    // Rows not a multiple of 32: burn folds the batches into one [b·t, d] product.
    linear_case("folded", [3, 5, 7], 9, true);
    linear_case("folded, no bias", [4, 33, 24], 40, false);
    // Rows a multiple of 32: a batch of products, one after another ...
    linear_case("batched", [3, 64, 48], 40, true);
    // ... split over the batch (at least 4 products, 2M multiply-adds in all) ...
    linear_case("split over the batch", [6, 96, 128], 128, true);
    // ... each split over the threads (192³ multiply-adds each, fewer than 4 products).
    linear_case("split over threads", [2, 256, 256], 256, true);
    // Kept batches with a weight broadcast over them run as one product per thread over whole
    // batches (`kernels::matmul`) where gemm's blocks along `k` stay those of one batch's
    // product: always up to k = 512; past it the blocks depend on whether both sides are at
    // most 64, so 64 x 128 per batch folds (192 x 128 rows with 2 threads), 64 x 24 does not
    // (192 x 24 would sum in other blocks: folding it fails the test).
    for k in [256, 512, 513, 700, 1024, 1100] {
        linear_case(&format!("batched, k {k}"), [5, 64, k], 24, true);
        linear_case(&format!("batched, k {k}, n 128"), [5, 64, k], 128, true);
    }
    // The weight's gradient, summed over the batch, is made one thread per block of its rows
    // (`kernels::matmul`) where each block's product sums as the whole's: with t = 608 > 512
    // terms, 160 x 32 split in two (80 rows) keeps gemm's blocks, 120 x 32 split in two (60
    // rows) would not (computing that one split fails the test).
    for d_in in [160, 120] {
        linear_case(
            &format!("weight gradient, t 608, {d_in} x 32"),
            [2, 608, d_in],
            32,
            true,
        );
    }
    // A 2-D input: one product (here large enough to split over the threads).
    same_bits(
        "2-D",
        &|x: Tensor<2>| linear_out(&noise_linear(200, 150, true, 13, &x.device()), x),
        [300, 200],
    );
    // A 4-D input, folded.
    same_bits(
        "4-D",
        &|x: Tensor<4>| linear_out(&noise_linear(8, 6, true, 17, &x.device()), x),
        [2, 3, 5, 8],
    );
    // The tied head: the weight read transposed (strides, no copy).
    same_bits(
        "dense, transposed weight",
        &|x: Tensor<3>| {
            let w = param([17, 24], 19, &x.device());
            (kernels::dense(x, w.clone(), true), vec![grad_of(w)])
        },
        [4, 33, 24],
    );
    // matmul with a broadcast left operand and a strided (transposed) right one.
    same_bits(
        "matmul, broadcast and strided",
        &|x: Tensor<3>| {
            let r = param([3, 7, 6], 23, &x.device());
            (
                kernels::matmul(x, r.clone().swap_dims(1, 2)),
                vec![grad_of(r)],
            ) // [1, 5, 6] · [3, 6, 7]
        },
        [1, 5, 6],
    );
}

/// A bias given by its offsets gives the kernel's long inference the same output, to the bit, as
/// the `[1, h, t, t]` matrix it describes; short sequences and autodiff take the matrix itself.
#[test]
fn a_bias_by_offset_is_its_matrix_to_the_bit() {
    use ordo_kernels::attention::kernel::{BLOCKED_FROM, QUERY_BLOCK};
    let long = BLOCKED_FROM + QUERY_BLOCK / 2 + 3;
    for (t, hb, causal) in [
        (long, 2, true),
        (long, 1, false),
        (long, 2, false),
        (9, 2, true),
    ] {
        let dims = [2, 2, t, 8];
        let offsets = noise(hb * (2 * t - 1), 31, 2.0);
        for dev in [Device::flex(), Device::flex().autodiff()] {
            let [q, k, v] = projections(&dev, dims, 11).map(|x| heads(x, 2));
            let table =
                || Tensor::<2>::from_data(TensorData::new(offsets.clone(), [hb, 2 * t - 1]), &dev);
            let scale = 8f32.powf(-0.5);
            let got = kernels::attention_by_offset(
                q.clone(),
                k.clone(),
                v.clone(),
                table(),
                scale,
                causal,
            );
            let matrix = kernels::expand_offsets(table(), t);
            // The matrix: entry (i, j) is column t - 1 + j - i.
            let m = vals(matrix.clone());
            assert_eq!(m[(t - 1) * t], offsets[0], "(t-1, 0)");
            assert_eq!(m[t - 1], offsets[2 * t - 2], "(0, t-1)");
            assert_eq!(m[5 * t + 5], offsets[t - 1], "(5, 5)");
            let want = kernels::attention(q, k, v, Some(matrix), None, scale, causal);
            let case = format!(
                "t {t}, {hb} bias rows, causal {causal}, autodiff {}",
                dev.is_autodiff()
            );
            let (got, want) = (vals(got), vals(want));
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{case}"
            );
            assert!(got.iter().any(|x| x.abs() > 1e-3), "{case}: all zeros");
        }
    }
}
