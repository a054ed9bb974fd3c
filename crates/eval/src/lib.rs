//! Evaluation of trained runs, separate from training: length extrapolation (`ordo eval`),
//! ablation grids (`ordo ablate`) and their reports (`ordo report`).

pub mod extrapolation;

pub use extrapolation::{EvalOptions, EvalReport, evaluate_run};
