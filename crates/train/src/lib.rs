pub mod budget;
pub mod config;
pub mod data;
pub mod device;
pub mod metrics;
pub mod rng;
pub mod run_dir;
pub mod tasks;
#[doc(hidden)]
pub mod testing;
pub mod trainer;
pub mod vocab;
