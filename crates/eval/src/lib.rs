//! Evaluation of trained runs, separate from training: length extrapolation (`ordo eval`),
//! ablation grids (`ordo ablate`) and their reports (`ordo report`).

pub mod experiment_dir;
pub mod export;
pub mod extrapolation;
pub mod plot;
pub mod report;
pub mod stats;
pub mod summary;
pub mod tensorboard;

pub use extrapolation::{EvalOptions, EvalReport, evaluate_run};
pub mod ablate;
pub mod analyze;
pub mod inspect;
