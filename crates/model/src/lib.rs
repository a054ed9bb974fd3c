//! The transformer that ordo trains: a pre-LN encoder or decoder whose positional encoding is
//! one module ([`ordo_encodings::PositionalEncoding`]) handed to every block.
//!
//! The model knows nothing of tasks or training; the trainer knows nothing of positions.

pub mod checkpoint;
pub mod config;
pub mod loss;
pub mod transformer;

pub use checkpoint::{CheckpointError, checkpoint_files, load_model};
pub use config::{ModelConfig, ModelConfigError};
pub use loss::masked_cross_entropy;
pub use ordo_encodings::{AttentionMode, PositionalEncodingConfig};
pub use ordo_kernels as kernels;
pub use transformer::{Batch, Transformer};
