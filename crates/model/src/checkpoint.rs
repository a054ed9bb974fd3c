//! Saving and loading a model together with the config that built it.
//!
//! A checkpoint is two files: `<stem>.bpk` (burnpack weights) and `<stem>.json` (the
//! [`ModelConfig`] and vocabulary size). Loading checks the config first, so a checkpoint of one
//! positional scheme never loads into a model of another (schemes without parameters, such as
//! `rope` and `alibi`, would otherwise load silently). The model crate writes no file itself:
//! [`checkpoint_files`] gives the files' names and bytes to the run directory, which writes
//! them atomically.

use crate::{ModelConfig, Transformer};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not a valid checkpoint description: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "{path}: checkpoint was trained with encoding `{found}`, but the model is configured with `{expected}`"
    )]
    EncodingMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: checkpoint model config differs from the requested one in `{field}`")]
    ConfigMismatch { path: PathBuf, field: String },
    #[error("{path}: could not load weights: {message}")]
    Weights { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    model: ModelConfig,
    vocab_size: usize,
}

fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut p = stem.as_os_str().to_owned();
    p.push(".");
    p.push(ext);
    PathBuf::from(p)
}

/// The two files of a checkpoint of `model` (built from `config` for `vocab_size` tokens):
/// `(<stem>.bpk, its weights)` and `(<stem>.json, its config)`, for the caller to write (a run
/// directory writes them atomically, [`load_model`] reads them back).
pub fn checkpoint_files(
    model: &Transformer,
    config: &ModelConfig,
    vocab_size: usize,
    stem: &Path,
) -> Result<[(PathBuf, Vec<u8>); 2], CheckpointError> {
    let weights = with_ext(stem, "bpk");
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| CheckpointError::Weights {
            path: weights.clone(),
            message: format!("{e:?}"),
        })?;
    let meta = Meta {
        model: config.clone(),
        vocab_size,
    };
    let text = serde_json::to_string_pretty(&meta).expect("config serialises");
    Ok([
        (weights, bytes.to_vec()),
        (with_ext(stem, "json"), text.into_bytes()),
    ])
}

/// Reads the config a checkpoint was saved with: `(model config, vocab size)`.
pub fn read_config(stem: &Path) -> Result<(ModelConfig, usize), CheckpointError> {
    let path = with_ext(stem, "json");
    let text = std::fs::read_to_string(&path).map_err(|cause| CheckpointError::Io {
        path: path.clone(),
        cause,
    })?;
    let meta: Meta = serde_json::from_str(&text).map_err(|e| CheckpointError::Format {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok((meta.model, meta.vocab_size))
}

/// Builds a model from `config` and loads the checkpoint at `stem` into it, after checking that
/// the checkpoint was saved from the same config (the positional scheme first).
pub fn load_model(
    config: &ModelConfig,
    vocab_size: usize,
    stem: &Path,
    device: &Device,
) -> Result<Transformer, CheckpointError> {
    let meta_path = with_ext(stem, "json");
    let (saved, saved_vocab) = read_config(stem)?;
    if saved.encoding.kind() != config.encoding.kind() {
        return Err(CheckpointError::EncodingMismatch {
            path: meta_path,
            found: saved.encoding.kind().into(),
            expected: config.encoding.kind().into(),
        });
    }
    let mismatch = |field: &str| CheckpointError::ConfigMismatch {
        path: meta_path.clone(),
        field: field.into(),
    };
    if saved_vocab != vocab_size {
        return Err(mismatch("vocab_size"));
    }
    let checks = [
        ("d_model", saved.d_model != config.d_model),
        ("n_heads", saved.n_heads != config.n_heads),
        ("n_layers", saved.n_layers != config.n_layers),
        ("d_ff", saved.d_ff() != config.d_ff()),
        ("mode", saved.mode != config.mode),
        (
            "tie_embeddings",
            saved.tie_embeddings != config.tie_embeddings,
        ),
    ];
    if let Some((field, _)) = checks.iter().find(|(_, differs)| *differs) {
        return Err(mismatch(field));
    }
    let weights = with_ext(stem, "bpk");
    let bytes = std::fs::read(&weights).map_err(|cause| CheckpointError::Io {
        path: weights.clone(),
        cause,
    })?;
    let weights_err = |e: burn::store::RecordError| CheckpointError::Weights {
        path: weights.clone(),
        message: match format!("{e:?}") {
            m if m.contains("Missing tensors") => format!(
                "{m}; the file does not hold this model's parameters (written by another \
                 version of ordo, whose layout differed?)"
            ),
            m => m,
        },
    };
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(weights_err)?;
    config
        .init(vocab_size, device)
        .try_load_record(record)
        .map_err(weights_err)
}
