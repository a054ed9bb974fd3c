pub mod config;
pub mod data;
pub mod device;
pub mod metrics;
pub mod rng;
pub mod tasks;
pub mod trainer;
pub mod vocab;
