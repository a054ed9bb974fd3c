//! Fused CPU kernels for what dominates a small transformer's step after the matrix products:
//! the attention core (scores, bias, Shaw's relative terms, softmax, product with the values:
//! [`attention()`], [`mod@attention`]), softmax, GELU, LayerNorm and the cross-entropy loss; and
//! Shaw's relative terms alone as a gather and a scatter-add (instead of contractions with a
//! one-hot `[t, t, 2k+1]` map).
//!
//! Under autodiff burn 0.22 builds softmax, LayerNorm and log-softmax out of 5-10 tensor ops,
//! each with its own pass over memory in the forward and again in the backward pass, and its
//! GELU calls libm's scalar `erff`. Here each is one forward op and one backward op (burn's
//! backend-extension route: the tensor's primitive, a `Backward` step registered by hand), with
//! vectorised `exp`/`erf` ([`cpu`]).
//!
//! Only the flex backend (f32, no gradient checkpointing) takes this path; every other device
//! (ndarray, wgpu) gets burn's composed ops, which compute the same functions. The tests
//! (`crates/kernels/tests/kernels.rs`) compare the two, forward and gradients, and
//! [`with_composed_ops`] lets any caller do the same (`ordo bench --composed-ops`);
//! `crates/model/tests/kernels.rs` does it for whole models.
//!
//! # Modules
//! One module per op, each with its forward pass, its `Backward` step and its public entry
//! point (re-exported here):
//! - `routing`: which path an op takes ([`with_composed_ops`], [`accelerated`]) and the helpers
//!   the ops share (flex primitives in and out, a one-input op with its backward step);
//! - `softmax` ([`softmax()`]), `gelu` ([`gelu()`]), `layer_norm` ([`layer_norm()`]), `loss`
//!   ([`cross_entropy`], [`fused_cross_entropy`]), `relative` ([`relative_gather`],
//!   [`relative_scatter`]): the autodiff ops around the row kernels of [`cpu`];
//! - [`mod@attention`] ([`attention()`], [`RelativeTables`]): the op in `attention/mod.rs` and
//!   its CPU kernel, the loops over (sequence, head) pairs, in [`attention::kernel`] beside it.
//!   The kernel is specific to this one op (unlike [`cpu`], whose row kernels several ops
//!   share) and at 500 lines too long to sit in the same file as the op, hence a directory;
//!   its items stay reachable as `attention::{Dims, forward, backward, ...}`.
//! - [`cpu`]: the vectorised row kernels on plain `f32` slices.
//! - `matmul` ([`matmul()`]): burn-flex's fp32 matrix product to the bit, without the zero
//!   fill and realignment copy burn-flex spends on every output; `dense` runs fp32 on it.
//! - `dense` ([`linear`], [`dense()`], [`with_precision`], [`Precision`]): the model's dense
//!   products in the run's precision, and [`bf16`]: the bf16 matrix product with fp32 sums on
//!   AVX512-BF16 that `train.precision = "bf16"` runs them with.
//!
//! The crate sits below `encodings` (Shaw uses the relative ops) and `model`, which re-exports
//! it as `ordo_model::kernels`.

pub mod attention;
pub mod bf16;
pub mod cpu;
mod dense;
mod gelu;
mod layer_norm;
mod loss;
mod matmul;
pub mod onednn;
mod relative;
mod routing;
mod softmax;

pub use attention::{RelativeTables, attention, attention_by_offset, expand_offsets};
pub use dense::{Precision, bf16_runs_on, dense, linear, precision, with_precision};
pub use gelu::gelu;
pub use layer_norm::layer_norm;
pub use loss::{cross_entropy, fused_cross_entropy};
pub use matmul::matmul;
pub use relative::{relative_gather, relative_scatter};
pub use routing::{accelerated, with_composed_ops};
pub use softmax::softmax;
