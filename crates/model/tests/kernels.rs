//! The fused CPU kernels inside whole models: a few training steps with every encoding, and
//! Shaw's terms in the attention kernel against the scheme's composed hooks, each with the
//! kernels and with burn's composed ops. These need `ordo_model` and `ordo_encodings`; the
//! kernels alone against burn's ops are tested in `crates/kernels/tests/kernels.rs`, whose
//! helpers this file shares.

#[path = "../../kernels/tests/common/mod.rs"]
mod common;

use burn::module::{Module, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use common::{assert_all_close, gap, heads, noise, output_and_grads, projections, vals};
use ordo_model::kernels::{self, with_composed_ops};
use ordo_model::{
    AttentionMode, Batch, ModelConfig, PositionalEncodingConfig, masked_cross_entropy,
};

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
            let config = PositionalEncodingConfig::from_kind(kind, 32).unwrap();
            if !config.supports_mode(mode) {
                continue;
            }
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
    let config: PositionalEncodingConfig =
        ordo_encodings::SchemeConfig::Shaw(ordo_encodings::shaw::ShawConfig {
            max_distance: clip,
            values,
            init_std: None,
        })
        .into();
    let PositionalEncoding::Shaw(mut shaw) = config.init(&dims, &dev) else {
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
            shaw.relative().map(|r| r.tables(layer)),
            scale,
            causal,
        )
    } else {
        with_composed_ops(|| {
            let ctx = shaw.context(&ordo_encodings::Positions::contiguous(t), &dev);
            let qs = heads(q.clone()).mul_scalar(scale);
            let scores = qs.clone().matmul(heads(k.clone()).swap_dims(2, 3))
                + shaw.relative().unwrap().key_scores(&qs, layer, &ctx)
                + bias;
            let p = burn::tensor::activation::softmax(scores, 3);
            let mut out = p.clone().matmul(heads(v.clone()));
            if let Some(term) = shaw.relative().unwrap().value_term(&p, layer, &ctx) {
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
