//! What can stop a run, each error with the file or directory it is about.

use crate::run_dir::{RunDirError, WithPath};
use std::path::PathBuf;

/// Errors a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Io(#[from] WithPath<std::io::Error>),
    #[error(transparent)]
    Json(#[from] WithPath<serde_json::Error>),
    #[error(transparent)]
    Vocab(#[from] WithPath<crate::vocab::VocabError>),
    /// The optimizer's state could not be written or read back.
    #[error(transparent)]
    Optimizer(#[from] WithPath<burn::store::RecordError>),
    #[error("{}: --device: {}", .0.path.display(), .0.error)]
    Device(WithPath<crate::device::DeviceError>),
    #[error("{}: train.precision = \"bf16\" cannot run here: {why}", .dir.display())]
    Precision {
        dir: std::path::PathBuf,
        why: String,
    },
    #[error("{}: task.{}: {}", .0.path.display(), .0.error.field, .0.error.message)]
    Task(WithPath<crate::tasks::TaskConfigError>),
    #[error(
        "the {what} became {value} at step {step}; stopped. {}. Lower `train.lr` or raise `train.warmup_steps`.",
        match kept {
            Some(kept) => format!("The last good checkpoint (step {kept}) is kept in {}", dir.display()),
            None => format!("No checkpoint was written yet in {}", dir.display()),
        }
    )]
    NonFinite {
        /// `training loss`, `gradient norm`, `held-out loss` or `parameters`.
        what: &'static str,
        value: f64,
        step: usize,
        kept: Option<usize>,
        dir: PathBuf,
    },
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] ordo_model::CheckpointError),
    #[error(transparent)]
    Open(#[from] crate::open::OpenError),
    #[error(
        "{dir} already holds a finished or started run; use `ordo train --resume {dir}` to continue it or choose another `name`"
    )]
    Exists { dir: PathBuf },
    #[error(
        "{dir} exists and holds files that are not a run ({found}); choose another `name` or \
         `out_dir`, or move them away"
    )]
    NotARun { dir: PathBuf, found: String },
}
