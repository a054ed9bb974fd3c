//! Training one run: from a config (`ordo train CONFIG.toml`) to a run directory that holds
//! everything needed to resume it exactly, evaluate it or inspect it.
//!
//! The design, in the order a run meets it:
//! - [`config`] reads and validates a [`config::RunConfig`] (model, task, training, device)
//!   before anything is allocated; [`budget`] estimates its memory and refuses what does not
//!   fit, from the model config and the sizes alone.
//! - [`run_dir`] owns the run directory's layout, its lock and claim (safe on one machine and
//!   across nodes), and every write (atomic, [`run_dir::write_atomic`]); [`open`] reopens a run
//!   (config, vocabulary, generator, last checkpoint) for resume, eval and inspect alike.
//! - [`trainer`] is one [`trainer::Trainer`] (start a run or resume one, then run) whose loop
//!   samples a batch ([`data`]), calls the exported [`trainer::step`] (what `ordo bench`
//!   times), and hands its events to the [`hooks`] (metrics log, progress); it evaluates
//!   ([`metrics`]), checkpoints, and stops at the first non-finite value.
//! - The tasks, their vocabulary and the seeded generator are the burn-free `ordo-tasks` crate,
//!   re-exported here under their old paths; the model and its encodings are `ordo-model`'s.
//!   Nothing here names a positional scheme.

pub mod budget;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod hooks;
pub mod metrics;
pub mod open;
pub mod run_dir;
#[doc(hidden)]
pub mod testing;
pub mod trainer;

// The tasks, their vocabulary and the seeded generator live in the burn-free `ordo-tasks`
// crate; their paths under `ordo_train` stay as they were.
pub use ordo_tasks as tasks;
pub use ordo_tasks::{check_regular, read_input, rng, vocab};
