//! Evaluation of a model on a fixed set of encoded examples: loss, token accuracy, exact match.

use crate::data::{Encoded, collate};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use ordo_model::{Transformer, masked_cross_entropy};
use serde::{Deserialize, Serialize};

/// Metrics over a set of examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean cross-entropy per answer token (nats).
    pub loss: f64,
    /// Fraction of answer tokens predicted correctly (teacher forcing).
    pub token_accuracy: f64,
    /// Fraction of examples whose every answer token is correct (= greedy decoding).
    pub exact_match: f64,
    /// Number of examples.
    pub examples: usize,
}

impl Metrics {
    pub fn perplexity(&self) -> f64 {
        self.loss.exp()
    }
}

/// How one example fared: what a bootstrap over examples resamples.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleOutcome {
    /// Every answer token right.
    pub exact: bool,
    /// Summed cross-entropy of the example's scored answer tokens (nats).
    pub loss: f64,
    /// Scored answer tokens.
    pub tokens: f64,
    /// The cross-entropy of each scored answer token, in order (nats).
    pub token_losses: Vec<f32>,
}

/// Evaluates `model` (no autodiff) on `items` in batches of `batch_size`, grouping examples of
/// similar token length to limit padding.
pub fn evaluate(
    model: &Transformer,
    items: &[Encoded],
    batch_size: usize,
    pad: u32,
    device: &Device,
) -> Metrics {
    evaluate_inner(model, items, batch_size, pad, device, None)
}

/// [`evaluate`], and each example's outcome, in the order of `items`. The metrics are computed
/// exactly as by [`evaluate`] (same numbers); the per-example losses come from a separate
/// log-softmax, so their sum can differ from `loss * tokens` in the last float digits.
pub fn evaluate_examples(
    model: &Transformer,
    items: &[Encoded],
    batch_size: usize,
    pad: u32,
    device: &Device,
) -> (Metrics, Vec<ExampleOutcome>) {
    let mut outcomes = vec![
        ExampleOutcome {
            exact: false,
            loss: f64::NAN,
            tokens: 0.0,
            token_losses: Vec::new(),
        };
        items.len()
    ];
    let metrics = evaluate_inner(model, items, batch_size, pad, device, Some(&mut outcomes));
    (metrics, outcomes)
}

/// The batches [`evaluate`] forms, as indices into `items`: examples sorted by token length
/// (to limit padding) in chunks of `batch_size`.
///
/// With randomized positions every example is a batch of its own. A forward pass draws one
/// set of positions for its whole batch, so batches of many examples would measure a length
/// under one draw (the same for every encoding of a seed, as the draw is seeded by the
/// tokens), and a shorter example padded beside longer ones would sit on the smallest of
/// positions drawn for the longest. One example per pass gives every example its own draw of
/// exactly its own length, as a training batch of one length does (`train.batch_lengths =
/// "single"`), so a length-`n` sequence meets the same distribution of positions in training
/// and in evaluation, and a bootstrap over the examples resamples the draws with them.
pub fn eval_batches(model: &Transformer, items: &[Encoded], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].tokens());
    let size = if model.placement().is_randomized() {
        1
    } else {
        batch_size.max(1)
    };
    order.chunks(size).map(<[usize]>::to_vec).collect()
}

fn evaluate_inner(
    model: &Transformer,
    items: &[Encoded],
    batch_size: usize,
    pad: u32,
    device: &Device,
    mut outcomes: Option<&mut [ExampleOutcome]>,
) -> Metrics {
    let (mut loss_sum, mut tokens, mut correct, mut exact) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    for chunk in eval_batches(model, items, batch_size) {
        let chunk = &chunk[..];
        let batch_items: Vec<Encoded> = chunk.iter().map(|&i| items[i].clone()).collect();
        let t = collate(&batch_items, pad, device);
        let logits = model.forward(&t.batch); // [b, t, v]
        let n_answer: f32 = t.weights.clone().sum().into_scalar();
        let loss: f32 = masked_cross_entropy(logits.clone(), t.targets.clone(), t.weights.clone())
            .into_scalar();
        // Per example: its summed loss, and the loss of each scored token in order.
        let example_loss: Option<Vec<(f32, Vec<f32>)>> = outcomes.is_some().then(|| {
            let [b, len, _] = logits.dims();
            let logp = log_softmax(logits.clone(), 2); // [b, t, v]
            let picked = logp
                .gather(2, t.targets.clone().reshape([b, len, 1]))
                .reshape([b, len]); // [b, t]
            let nll = (picked * t.weights.clone()).neg();
            let sums = nll
                .clone()
                .sum_dim(1) // [b, 1]
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let each = nll.into_data().try_to_vec::<f32>().unwrap();
            let weights = t.weights.clone().into_data().try_to_vec::<f32>().unwrap();
            (0..b)
                .map(|k| {
                    let row = k * len..(k + 1) * len;
                    let scored = each[row.clone()]
                        .iter()
                        .zip(&weights[row])
                        .filter(|(_, w)| **w > 0.0)
                        .map(|(l, _)| *l)
                        .collect();
                    (sums[k], scored)
                })
                .collect()
        });
        let predicted = logits.argmax(2).squeeze_dim::<2>(2); // [b, t]
        let hits = predicted.equal(t.targets).float() * t.weights.clone(); // [b, t]
        let per_example: Vec<f32> = hits.sum_dim(1).into_data().try_to_vec::<f32>().unwrap();
        loss_sum += loss as f64 * n_answer as f64;
        tokens += n_answer as f64;
        for (k, &h) in per_example.iter().enumerate() {
            correct += h as f64;
            let needed: f32 = batch_items[k].weight.iter().sum();
            if h >= needed {
                exact += 1;
            }
            if let (Some(out), Some(losses)) = (outcomes.as_deref_mut(), &example_loss) {
                out[chunk[k]] = ExampleOutcome {
                    exact: h >= needed,
                    loss: losses[k].0 as f64,
                    tokens: needed as f64,
                    token_losses: losses[k].1.clone(),
                };
            }
        }
    }
    Metrics {
        loss: if tokens > 0.0 {
            loss_sum / tokens
        } else {
            f64::NAN
        },
        token_accuracy: if tokens > 0.0 {
            correct / tokens
        } else {
            f64::NAN
        },
        exact_match: exact as f64 / items.len().max(1) as f64,
        examples: items.len(),
    }
}
