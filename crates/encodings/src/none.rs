//! `none`: no positional signal at all (NoPE), the control.
//!
//! Causal decoders can still infer positions from the causal mask (Haviv et al. 2022);
//! a bidirectional encoder without positions is a bag-of-words model: its outputs are
//! permutation-equivariant (Kazemnejad et al. 2023 §2), which our tests check.
//! Past the training length nothing changes: there is no position to extrapolate (and
//! randomized positions change nothing either: no position is read).

use crate::{EncodingDims, Positional, Scheme};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// `kind = "none"`: no parameters.
// A struct with braces rather than a unit, so that serde rejects stray keys after `kind`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoneConfig {}

impl Scheme for NoneConfig {
    type Module = NoPosition;
    fn init(&self, _dims: &EncodingDims, _device: &Device) -> NoPosition {
        NoPosition::new()
    }
    fn order_seen(&self) -> crate::OrderSeen {
        crate::OrderSeen::Nothing
    }
}

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
