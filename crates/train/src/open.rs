//! Reopening a run directory: one [`RunDir::open`] for `ordo train --resume`, `ordo eval` and
//! `ordo inspect --checkpoint` alike.
//!
//! Opening checks, in this order and before anything is written: that the directory is a run
//! (`config.toml`), that its inputs are the ones it was trained on (`inputs.json`), that its
//! config (as stored, with any `--set` overrides applied) still loads and validates, reading the
//! run's own `tokenizer.json` (never a retrained BPE or the tokenizer file the config named),
//! and that this vocabulary has every token the task emits.

use crate::config::{ConfigError, RunConfig};
use crate::run_dir::{RunDir, RunDirError};
use crate::tasks::Generator;
use crate::vocab::{Vocab, VocabError};
use std::path::PathBuf;

/// A run directory reopened: what resuming, evaluating and inspecting a run all start from.
#[derive(Debug)]
pub struct OpenRun {
    pub dir: RunDir,
    /// The run's config as stored (the task as written), with the overrides applied.
    pub config: RunConfig,
    /// The run's task, loaded once, reading the run's tokenizer.
    pub generator: Generator,
    pub vocab: Vocab,
    /// The training step of the last checkpoint (`None`: killed before the first).
    pub checkpoint: Option<usize>,
}

/// Why a run directory cannot be reopened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{}: not a run directory (no config.toml)", .0.display())]
    NotARun(PathBuf),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("{}: {error}", dir.display())]
    Config { dir: PathBuf, error: ConfigError },
    #[error("{}: {error}", dir.display())]
    Vocab { dir: PathBuf, error: VocabError },
    #[error("{}: no checkpoint yet (training has not reached its first checkpoint)", .0.display())]
    NoCheckpoint(PathBuf),
    #[error(transparent)]
    Checkpoint(#[from] ordo_model::CheckpointError),
}

impl RunDir {
    /// Reopens this run (see the module docs), its config changed by `overrides` (`key=value`,
    /// as `--set`; none for resuming).
    pub fn open(&self, overrides: &[String]) -> Result<OpenRun, OpenError> {
        let dir = || self.path().to_path_buf();
        if !self.is_run() {
            return Err(OpenError::NotARun(dir()));
        }
        self.check_inputs()?;
        // Relative to the run directory, where the config's input paths start (the run
        // directory itself may be a relative path).
        let tokenizer = self.tokenizer();
        let tokenizer = tokenizer.strip_prefix(self.path()).unwrap_or(&tokenizer);
        let (config, generator) =
            crate::config::load_with_task(&self.config(), overrides, Some(tokenizer))
                .map_err(|error| OpenError::Config { dir: dir(), error })?;
        let vocab = Vocab::load(&self.tokenizer())
            .map_err(|error| OpenError::Vocab { dir: dir(), error })?;
        let (_, longest) = config.task.train_lengths();
        if let Some(token) = generator
            .symbols(longest)
            .into_iter()
            .find(|s| !vocab.contains(s))
        {
            return Err(OpenError::Vocab {
                dir: dir(),
                error: VocabError::TaskToken {
                    path: self.tokenizer(),
                    token,
                },
            });
        }
        Ok(OpenRun {
            dir: self.clone(),
            checkpoint: self.last_checkpoint()?,
            config,
            generator,
            vocab,
        })
    }
}

impl OpenRun {
    /// The model of the last checkpoint on `device`, with its training step; an error when there
    /// is no checkpoint yet.
    pub fn load_model(
        &self,
        device: &burn::prelude::Device,
    ) -> Result<(usize, ordo_model::Transformer), OpenError> {
        let step = self
            .checkpoint
            .ok_or_else(|| OpenError::NoCheckpoint(self.dir.path().to_path_buf()))?;
        let stem = self.dir.model_stem(step);
        let model = ordo_model::load_model(&self.config.model, self.vocab.len(), &stem, device)?;
        Ok((step, model))
    }
}
