pub mod budget;
pub mod config;
pub mod data;
pub mod device;
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
