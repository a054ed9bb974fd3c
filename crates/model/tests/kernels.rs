//! The fused CPU kernels against burn's composed ops: values and gradients, small shapes (one
//! thread) and large ones (split across threads), with and without autodiff, and a few
//! training steps of the whole model.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use ordo_model::kernels::{self, with_composed_ops};
use ordo_model::{
    AttentionMode, Batch, ModelConfig, PositionalEncodingConfig, masked_cross_entropy,
};

/// Deterministic pseudo-random values in `[-scale, scale)`.
fn noise(n: usize, seed: u64, scale: f32) -> Vec<f32> {
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

fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest `|a - b| / (1 + |b|)`.
fn gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

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
    let run = || {
        let dev = Device::flex().autodiff();
        let x =
            Tensor::<3>::from_data(TensorData::new(logits.clone(), [b, t, v]), &dev).require_grad();
        let tg = Tensor::<2, Int>::from_data(TensorData::new(targets.clone(), [b, t]), &dev);
        let w = Tensor::<2>::from_data(TensorData::new(weights.clone(), [b, t]), &dev);
        let loss = masked_cross_entropy(x.clone(), tg, w) * 3.0;
        let grads = loss.backward();
        (vals(loss), vals(x.grad(&grads).unwrap()))
    };
    let (loss, g) = run();
    let (loss_ref, g_ref) = with_composed_ops(run);
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

/// Five AdamW steps of a small model: the loss curve with the kernels and with burn's ops.
fn losses(kind: &str, mode: AttentionMode) -> Vec<f32> {
    let dev = Device::flex().autodiff();
    dev.seed(3);
    let cfg = ModelConfig {
        d_model: 32,
        n_heads: 4,
        n_layers: 2,
        d_ff: 64,
        mode,
        encoding: PositionalEncodingConfig::from_kind(kind, 32).unwrap(),
        ..ModelConfig::default()
    };
    let mut model = cfg.init(16, &dev);
    let mut optim = AdamWConfig::new().init();
    let tokens: Vec<i64> = (0..4 * 9).map(|i| (i * 7 % 16) as i64).collect();
    let batch = Batch {
        tokens: Tensor::from_data(TensorData::new(tokens.clone(), [4, 9]), &dev),
        lengths: vec![9, 7, 9, 4], // padded rows
    };
    let targets = Tensor::<2, Int>::from_data(
        TensorData::new(
            tokens.iter().map(|t| (t + 1) % 16).collect::<Vec<_>>(),
            [4, 9],
        ),
        &dev,
    );
    let weights = Tensor::<2>::ones([4, 9], &dev);
    let mut out = Vec::new();
    for _ in 0..5 {
        let loss = masked_cross_entropy(model.forward(&batch), targets.clone(), weights.clone());
        out.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    model.num_params(); // the model is still usable
    out
}

#[test]
fn training_steps_with_the_kernels_follow_burns_ops() {
    for mode in [AttentionMode::Causal, AttentionMode::Bidirectional] {
        for kind in PositionalEncodingConfig::KINDS {
            let fused = losses(kind, mode);
            let composed = with_composed_ops(|| losses(kind, mode));
            let g = gap(&fused, &composed);
            assert!(g < 1e-4, "{kind} {mode:?}: {fused:?} vs {composed:?}");
            assert!(
                fused[4] < fused[0],
                "{kind} {mode:?}: loss did not fall {fused:?}"
            );
        }
    }
}

/// Shaw's gather and scatter against contractions with the one-hot map `O[i, j, l]`.
#[test]
fn relative_gather_and_scatter_match_the_one_hot_contractions() {
    use ordo_encodings::EncodingDims;
    use ordo_encodings::shaw::Shaw;
    let dev = Device::flex().autodiff();
    for (n, t, k) in [(3, 7, 2), (4, 40, 16), (2, 5, 0)] {
        let r = 2 * k + 1;
        let dims = EncodingDims {
            d_model: 8,
            n_heads: 1,
            n_layers: 1,
            mode: AttentionMode::Causal,
        };
        let one_hot = Shaw::new(k, true, &dims, &dev).one_hot(t, &dev); // [t, t, r]
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

/// Three `[b, t, h·dh]` projections (q, k, v; noise seeds `seed..seed + 3`), to differentiate
/// on an autodiff device.
fn projections(dev: &Device, [b, h, t, dh]: [usize; 4], seed: u64) -> [Tensor<3>; 3] {
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
fn output_and_grads(
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
fn assert_all_close(case: &str, names: &[&str], got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{case}: number of results");
    for ((name, g), w) in names.iter().zip(got).zip(want) {
        assert!(gap(g, w) < 2e-5, "{case}: {name} differs by {}", gap(g, w));
        assert!(g.iter().any(|v| v.abs() > 1e-3), "{case}: {name} all zeros");
    }
}

/// The model's head split: a `[b, h, t, dh]` view of a `[b, t, h·dh]` projection.
fn heads(x: Tensor<3>, h: usize) -> Tensor<4> {
    let [b, t, d] = x.dims();
    x.reshape([b, t, h, d / h]).swap_dims(1, 2)
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

/// Output and gradients (q, k, v, key table, value table) of attention with Shaw's terms:
/// `fused` through the kernel (the tables handed over), else through the scheme's own
/// composed hooks (one-hot contractions).
/// On a device without autodiff (`dev`), only the output.
fn shaw_case(dev: &Device, clip: usize, values: bool, fused: bool, causal: bool) -> Vec<Vec<f32>> {
    use ordo_encodings::{EncodingDims, Positional, PositionalEncoding};
    let dev = dev.clone();
    let (b, h, t, dh) = (2, 3, 9, 4);
    let d = h * dh;
    let dims = EncodingDims {
        d_model: d,
        n_heads: h,
        n_layers: 2,
        mode: AttentionMode::Bidirectional,
    };
    let PositionalEncoding::Shaw(mut shaw) = (PositionalEncodingConfig::Shaw {
        max_distance: clip,
        values,
    })
    .init(&dims, &dev) else {
        unreachable!()
    };
    // Tables large enough to matter next to q kᵀ (the init's are N(0, 0.02²)).
    let r = 2 * clip + 1;
    let table = |seed| {
        let x = TensorData::new(noise(2 * r * dh, seed, 1.0), [2, r, dh]);
        Param::from_tensor(Tensor::<3>::from_data(x, &dev))
    };
    shaw.keys = table(25);
    if values {
        shaw.values = Some(table(26));
    }
    let [q, k, v] = projections(&dev, [b, h, t, dh], 21);
    let heads = |x: Tensor<3>| heads(x, h);
    // Padding mask: the second sequence has 6 real tokens.
    let mask: Vec<f32> = (0..b * t * t)
        .map(|i| {
            if (i / (t * t) == 1 && i % t >= 6) || (causal && !fused && i % t > (i / t) % t) {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let bias = Tensor::<4>::from_data(TensorData::new(mask, [b, 1, t, t]), &dev);
    let scale = (dh as f32).powf(-0.5);
    let layer = 1;
    let out = if fused {
        kernels::attention(
            heads(q.clone()),
            heads(k.clone()),
            heads(v.clone()),
            Some(bias),
            shaw.relative_tables(layer),
            scale,
            causal,
        )
    } else {
        with_composed_ops(|| {
            let ctx = shaw.context(t, &dev);
            let qs = heads(q.clone()).mul_scalar(scale);
            let scores = qs.clone().matmul(heads(k.clone()).swap_dims(2, 3))
                + shaw.key_scores(&qs, layer, &ctx).unwrap()
                + bias;
            let p = burn::tensor::activation::softmax(scores, 3);
            let mut out = p.clone().matmul(heads(v.clone()));
            if let Some(term) = shaw.value_term(&p, layer, &ctx) {
                out = out + term;
            }
            out.swap_dims(1, 2).reshape([b, t, d])
        })
    };
    let (mut result, grads) = output_and_grads(out, [q, k, v], 24);
    let Some(grads) = grads else {
        return result;
    };
    // Only `layer`'s slice of the tables has a gradient.
    let table_grad =
        |p: &Param<Tensor<3>>| vals(p.grad(&grads).unwrap().slice_dim(0, layer..layer + 1));
    result.push(table_grad(&shaw.keys));
    result.extend(shaw.values.as_ref().map(table_grad));
    result
}

#[test]
fn attention_core_with_shaw_terms_matches_the_schemes_composed_hooks() {
    for (clip, values, causal) in [
        (2, true, false),
        (2, false, false),
        (1, true, false),
        (16, true, false),
        (2, true, true),
    ] {
        let dev = Device::flex().autodiff();
        let got = shaw_case(&dev, clip, values, true, causal);
        let want = shaw_case(&dev, clip, values, false, causal);
        let plain = shaw_case(&Device::flex(), clip, values, true, causal);
        assert_eq!(
            plain[0], got[0],
            "k = {clip}, values {values}: inference output"
        );
        let case = format!("k = {clip}, values {values}");
        let names = ["output", "dq", "dk", "dv", "dkeys", "dvalues"];
        assert_all_close(&case, &names, &got, &want);
    }
}
