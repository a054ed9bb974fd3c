//! From examples to tensors: token ids, targets and loss weights, batches with padding.
//!
//! Decoder (`causal`): the sequence is `prompt ++ answer`; the model reads all but the last
//! token and predicts the next one; only predictions of answer tokens carry loss.
//! Encoder (`bidirectional`): the model reads `prompt ++ [MASK] * |answer|` and predicts the
//! answer at the masked positions.
//! Either way, exact match on the answer positions under teacher forcing equals greedy decoding
//! of the answer: the first wrong token is the same in both.

use crate::rng::Rng;
use crate::tasks::{Example, Generator, TaskConfig, TaskConfigError};
use crate::vocab::Vocab;
use burn::prelude::*;
use ordo_model::{AttentionMode, Batch};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How the lengths of a training batch's examples are drawn.
///
/// A forward pass places all rows of its batch on one draw of randomized positions, sized for
/// the longest row; in a batch of mixed lengths a short row then sits on the smallest of the
/// positions drawn for the longest (reverse, lengths 1-8, batch 32: a length-2 row on the
/// bottom of ~17 draws from `0..N`, spacing ~N/17), while in evaluation, one length per
/// forward pass, the same row spreads over all of `0..N`. One length per batch, as Ruoss et
/// al.'s training loop draws it (`experiments/training.py`: one length per step from the
/// curriculum, uniform over `1..L`), makes the distributions the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchLengths {
    /// Each example's length is drawn on its own, uniformly from the training lengths.
    Mixed,
    /// One length per batch, drawn uniformly from the training lengths, shared by its examples.
    Single,
}

impl BatchLengths {
    pub fn name(&self) -> &'static str {
        match self {
            BatchLengths::Mixed => "mixed",
            BatchLengths::Single => "single",
        }
    }
}

/// One example as ids: `input`, `target` and `weight` have the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub input: Vec<u32>,
    pub target: Vec<u32>,
    /// 1 where the target is an answer token, else 0.
    pub weight: Vec<f32>,
    /// The task's length measure of the example.
    pub len: usize,
}

impl Encoded {
    pub fn tokens(&self) -> usize {
        self.input.len()
    }
}

/// Encodes an example for the given attention mode.
pub fn encode(example: &Example, len: usize, mode: AttentionMode, vocab: &Vocab) -> Encoded {
    let prompt: Vec<u32> = example.prompt.iter().map(|t| vocab.id(t)).collect();
    let answer: Vec<u32> = example.answer.iter().map(|t| vocab.id(t)).collect();
    match mode {
        AttentionMode::Causal => {
            let seq: Vec<u32> = prompt.iter().chain(&answer).copied().collect();
            let n = seq.len() - 1;
            let weight = (0..n)
                .map(|k| if k + 1 >= prompt.len() { 1.0 } else { 0.0 })
                .collect();
            Encoded {
                input: seq[..n].to_vec(),
                target: seq[1..].to_vec(),
                weight,
                len,
            }
        }
        AttentionMode::Bidirectional => {
            let mut input = prompt.clone();
            input.extend(std::iter::repeat_n(vocab.mask, answer.len()));
            let mut target = prompt.clone();
            target.extend(&answer);
            let mut weight = vec![0.0; prompt.len()];
            weight.extend(std::iter::repeat_n(1.0, answer.len()));
            Encoded {
                input,
                target,
                weight,
                len,
            }
        }
    }
}

/// Number of model positions an example occupies in the given mode.
pub fn positions(example: &Example, mode: AttentionMode) -> usize {
    let tokens = example.prompt.len() + example.answer.len();
    match mode {
        AttentionMode::Causal => tokens - 1,
        AttentionMode::Bidirectional => tokens,
    }
}

/// Number of model positions of an example of length `len`, counted without building one
/// (`None` if the count overflows).
pub fn positions_at(task: &TaskConfig, len: usize, mode: AttentionMode) -> Option<usize> {
    let (prompt, answer) = task.example_size(len)?;
    let tokens = prompt.checked_add(answer)?;
    Some(match mode {
        AttentionMode::Causal => tokens - 1,
        AttentionMode::Bidirectional => tokens,
    })
}

/// Number of model positions of the longest training example (after checking the task's
/// config and inputs; no example is built).
pub fn longest_sequence(
    task: &TaskConfig,
    mode: AttentionMode,
    base_dir: &Path,
) -> Result<usize, TaskConfigError> {
    task.validate(base_dir)?;
    let (_, max_len) = task.train_lengths();
    positions_at(task, max_len, mode).ok_or_else(|| TaskConfigError {
        field: "max_len",
        message: format!("{max_len} is too large to count positions for"),
    })
}

/// Which data an example is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    /// Fresh draws for synthetic tasks; the held-out text for `lm`.
    HeldOut,
}

/// Draws `n` examples with lengths uniform in `lengths`.
pub fn sample(
    generator: &Generator,
    rng: &mut Rng,
    n: usize,
    (lo, hi): (usize, usize),
    split: Split,
    mode: AttentionMode,
    vocab: &Vocab,
) -> Vec<Encoded> {
    (0..n)
        .map(|_| {
            let len = generator.draw_length(rng, lo, hi);
            let example = match split {
                Split::Train => generator.example(rng, len),
                Split::HeldOut => generator.held_out(rng, len),
            };
            encode(&example, len, mode, vocab)
        })
        .collect()
}

/// Draws one training batch of `n` examples, the lengths as `batch_lengths` says: each its own
/// ([`BatchLengths::Mixed`], exactly [`sample`]'s draws) or one length, drawn uniformly from
/// `lengths`, for the whole batch ([`BatchLengths::Single`]).
#[allow(clippy::too_many_arguments)]
pub fn training_batch(
    generator: &Generator,
    rng: &mut Rng,
    n: usize,
    (lo, hi): (usize, usize),
    batch_lengths: BatchLengths,
    mode: AttentionMode,
    vocab: &Vocab,
) -> Vec<Encoded> {
    match batch_lengths {
        BatchLengths::Mixed => sample(generator, rng, n, (lo, hi), Split::Train, mode, vocab),
        BatchLengths::Single => {
            let len = generator.draw_length(rng, lo, hi);
            (0..n)
                .map(|_| encode(&generator.example(rng, len), len, mode, vocab))
                .collect()
        }
    }
}

/// Tensors for a batch of encoded examples, right-padded to the longest.
pub struct Tensors {
    pub batch: Batch,
    /// `[b, t]`
    pub targets: Tensor<2, Int>,
    /// `[b, t]`
    pub weights: Tensor<2>,
}

pub fn collate(items: &[Encoded], pad: u32, device: &Device) -> Tensors {
    let b = items.len();
    let t = items.iter().map(Encoded::tokens).max().unwrap_or(0);
    let mut input = Vec::with_capacity(b * t);
    let mut target = Vec::with_capacity(b * t);
    let mut weight = Vec::with_capacity(b * t);
    for item in items {
        let fill = t - item.tokens();
        input.extend(item.input.iter().map(|&x| x as i64));
        input.extend(std::iter::repeat_n(pad as i64, fill));
        target.extend(item.target.iter().map(|&x| x as i64));
        target.extend(std::iter::repeat_n(pad as i64, fill));
        weight.extend(&item.weight);
        weight.extend(std::iter::repeat_n(0.0f32, fill));
    }
    Tensors {
        batch: Batch {
            tokens: Tensor::from_data(TensorData::new(input, [b, t]), device),
            lengths: items.iter().map(Encoded::tokens).collect(),
        },
        targets: Tensor::from_data(TensorData::new(target, [b, t]), device),
        weights: Tensor::from_data(TensorData::new(weight, [b, t]), device),
    }
}
