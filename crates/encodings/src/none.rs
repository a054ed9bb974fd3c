//! `none`: no positional signal at all (NoPE), the control.
//!
//! Causal decoders can still infer positions from the causal mask (Haviv et al. 2022);
//! a bidirectional encoder without positions is a bag-of-words model: its outputs are
//! permutation-equivariant (Kazemnejad et al. 2023 §2), which our tests check.
//! Past the training length nothing changes: there is no position to extrapolate.

use crate::Positional;
use burn::prelude::*;

/// The null object: every hook keeps its default no-op.
#[derive(Module, Debug)]
pub struct NoPosition {}

impl NoPosition {
    pub fn new() -> Self {
        Self {}
    }
}

impl Default for NoPosition {
    fn default() -> Self {
        Self::new()
    }
}

impl Positional for NoPosition {}
