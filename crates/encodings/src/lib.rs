//! Positional encodings for ordo, one file per scheme, one switch to choose among them.
//!
//! Design: the configuration is data ([`PositionalEncodingConfig`], a serde enum tagged by
//! `kind` whose variants carry their own parameters, unknown keys rejected), and
//! [`PositionalEncodingConfig::init`] builds the module ([`PositionalEncoding`], an enum with
//! one variant per scheme). A scheme can act in exactly these places, all named by the
//! [`Positional`] trait:
//!
//! 1. `embed`: add an absolute signal to the token embeddings (sinusoidal, learned);
//! 2. `context`: build, once per forward pass, what every layer shares (bias tables, rotation
//!    angles, relative-offset maps), so no layer recomputes them;
//! 3. `rotate`: rotate queries and keys (RoPE);
//! 4. an additive logit bias after scaling, carried in the context (ALiBi, T5);
//! 5. `relative`: relative terms inside attention, a key term added to `q kᵀ` and a value
//!    term added to the output, from per-layer tables indexed by the clipped offset (Shaw):
//!    one hook, which the model hands to ordo's attention kernel or computes term by term.
//!
//! The transformer calls every hook in every layer; a scheme that does not act there is a
//! no-op. Adding a scheme means one new file, a config variant, a module variant and one arm
//! in each `match` below, and nothing in the model, trainer or evaluator.
//!
//! Dimension legend used in shape comments: `b` batch, `h` heads, `t` sequence length
//! (`tq` queries, `tk` keys), `d` d_model, `dh` d_head, `r` relative labels (2k+1).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub mod alibi;
pub mod learned;
pub mod none;
pub mod rope;
pub mod shaw;
pub mod sinusoidal;
pub mod t5;

pub use alibi::{Alibi, AlibiDirection};
pub use learned::LearnedPositions;
pub use none::NoPosition;
pub use rope::{Rope, RopeLayout, RopeScaling, RopeTables};
pub use shaw::{RelativeTerms, Shaw};
pub use sinusoidal::Sinusoidal;
pub use t5::T5Bias;

/// Whether a query may see keys after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AttentionMode {
    /// Decoder: query `i` attends to keys `j <= i`.
    #[default]
    Causal,
    /// Encoder: every query attends to every key.
    Bidirectional,
}

/// The positional encoding, as written in a config file under `[model.encoding]`.
///
/// ```toml
/// [model.encoding]
/// kind = "rope"
/// base = 10000.0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PositionalEncodingConfig {
    /// No positional signal (NoPE), the control.
    // Written `None {}` rather than `None` so that serde rejects stray keys after `kind`.
    None {},
    /// Vaswani et al. 2017 fixed sinusoids added to the token embeddings.
    Sinusoidal {
        /// Wavelength base (10000 in the paper).
        #[serde(default = "default_base")]
        base: f64,
    },
    /// A trained table of `max_len` absolute positions added to the token embeddings.
    Learned {
        /// Number of positions in the table; longer sequences are unsupported. `0` (the
        /// default) asks the trainer to size it to the longest training sequence.
        #[serde(default)]
        max_len: usize,
    },
    /// T5 bucketed relative bias (Raffel et al. 2020), one table shared by all layers.
    T5 {
        /// Number of buckets (32 in T5).
        #[serde(default = "default_t5_buckets")]
        num_buckets: usize,
        /// Distance at which the logarithmic buckets saturate (128 in T5).
        #[serde(default = "default_t5_max_distance")]
        max_distance: usize,
    },
    /// Shaw et al. 2018 relative position representations, per layer.
    Shaw {
        /// Clipping distance `k`: offsets beyond ±k share one embedding.
        #[serde(default = "default_shaw_k")]
        max_distance: usize,
        /// Whether the value term `a^V` is used (the paper's full method) or keys only.
        #[serde(default = "default_true")]
        values: bool,
    },
    /// RoFormer rotary position embedding (Su et al. 2021).
    Rope {
        /// Frequency base θ (10000 in the paper).
        #[serde(default = "default_base")]
        base: f64,
        /// Fraction of each head's dimensions that is rotated (1.0 = all).
        #[serde(default = "default_fraction")]
        fraction: f64,
        /// How dimensions are paired for rotation.
        #[serde(default)]
        layout: RopeLayout,
        /// Frequency scaling for sequences longer than the training length (eval-time knob).
        #[serde(default)]
        scaling: RopeScaling,
    },
    /// ALiBi linear biases (Press et al. 2022); nothing is added to the embeddings.
    Alibi {
        /// Encoders only: `"symmetric"` (the default, `-m |i - j|`, cannot tell left from
        /// right) or `"asymmetric"` (keys before the query penalised half a slope less).
        #[serde(default, skip_serializing_if = "AlibiDirection::is_symmetric")]
        direction: AlibiDirection,
    },
}

fn default_base() -> f64 {
    10000.0
}
fn default_t5_buckets() -> usize {
    32
}
fn default_t5_max_distance() -> usize {
    128
}
fn default_shaw_k() -> usize {
    16
}
fn default_true() -> bool {
    true
}
fn default_fraction() -> f64 {
    1.0
}

impl Default for PositionalEncodingConfig {
    fn default() -> Self {
        Self::Rope {
            base: default_base(),
            fraction: default_fraction(),
            layout: RopeLayout::default(),
            scaling: RopeScaling::default(),
        }
    }
}

/// The model dimensions a scheme needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodingDims {
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub mode: AttentionMode,
}

impl EncodingDims {
    pub fn d_head(&self) -> usize {
        self.d_model / self.n_heads
    }
}

/// A configuration error: which field (relative to `[model.encoding]`) and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct EncodingConfigError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> EncodingConfigError {
    EncodingConfigError {
        field,
        message: message.into(),
    }
}

impl PositionalEncodingConfig {
    /// The config `kind` string of this scheme.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None {} => "none",
            Self::Sinusoidal { .. } => "sinusoidal",
            Self::Learned { .. } => "learned",
            Self::T5 { .. } => "t5",
            Self::Shaw { .. } => "shaw",
            Self::Rope { .. } => "rope",
            Self::Alibi { .. } => "alibi",
        }
    }

    /// All scheme kinds, in the order reports list them.
    pub const KINDS: [&'static str; 7] = [
        "none",
        "sinusoidal",
        "learned",
        "t5",
        "shaw",
        "rope",
        "alibi",
    ];

    /// The default configuration of a scheme given by its `kind` (`learned` gets `max_len`).
    pub fn from_kind(kind: &str, max_len: usize) -> Option<Self> {
        // Built through serde so that the defaults live in one place (the attributes above).
        let mut value = serde_json::json!({ "kind": kind });
        if kind == "learned" {
            value["max_len"] = max_len.into();
        }
        serde_json::from_value(value).ok()
    }

    /// Checks the parameters against the model dimensions, before anything is built.
    pub fn validate(&self, dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        match self {
            Self::None {} => Ok(()),
            Self::Alibi { direction } => alibi::validate(*direction, dims.mode),
            Self::Sinusoidal { base } => {
                if !(*base > 1.0 && base.is_finite()) {
                    return Err(invalid(
                        "base",
                        format!("expected a number > 1, got {base}"),
                    ));
                }
                if !dims.d_model.is_multiple_of(2) {
                    return Err(invalid(
                        "kind",
                        format!(
                            "sinusoidal needs an even d_model (sin/cos pairs), got {}",
                            dims.d_model
                        ),
                    ));
                }
                Ok(())
            }
            Self::Learned { max_len } => {
                if *max_len == 0 {
                    return Err(invalid(
                        "max_len",
                        "expected a positive number of positions (ordo train resolves 0 to the longest training sequence)",
                    ));
                }
                Ok(())
            }
            Self::T5 {
                num_buckets,
                max_distance,
            } => t5::validate(*num_buckets, *max_distance, dims.mode),
            Self::Shaw { max_distance, .. } => {
                if *max_distance == 0 {
                    return Err(invalid(
                        "max_distance",
                        "expected a clipping distance k >= 1",
                    ));
                }
                Ok(())
            }
            Self::Rope {
                base,
                fraction,
                scaling,
                ..
            } => rope::validate(*base, *fraction, scaling, dims.d_head()),
        }
    }

    /// Builds the module.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) would fail: call it first at a config boundary.
    pub fn init(&self, dims: &EncodingDims, device: &Device) -> PositionalEncoding {
        if let Err(e) = self.validate(dims) {
            panic!("invalid positional encoding config: {e}");
        }
        match self {
            Self::None {} => PositionalEncoding::None(NoPosition::new()),
            Self::Sinusoidal { base } => {
                PositionalEncoding::Sinusoidal(Sinusoidal::new(*base, dims.d_model))
            }
            Self::Learned { max_len } => {
                PositionalEncoding::Learned(LearnedPositions::new(*max_len, dims.d_model, device))
            }
            Self::T5 {
                num_buckets,
                max_distance,
            } => PositionalEncoding::T5(T5Bias::new(
                *num_buckets,
                *max_distance,
                dims.n_heads,
                dims.d_model,
                dims.mode,
                device,
            )),
            Self::Shaw {
                max_distance,
                values,
            } => PositionalEncoding::Shaw(Shaw::new(*max_distance, *values, dims, device)),
            Self::Rope {
                base,
                fraction,
                layout,
                scaling,
            } => PositionalEncoding::Rope(Rope::new(
                *base,
                *fraction,
                *layout,
                scaling.clone(),
                dims.d_head(),
            )),
            Self::Alibi { direction } => {
                PositionalEncoding::Alibi(Alibi::new(dims.n_heads, dims.mode, *direction))
            }
        }
    }
}

/// What one forward pass shares between layers: built once by [`Positional::context`].
#[derive(Debug, Clone)]
pub struct PositionContext {
    pub seq_len: usize,
    /// Additive logit bias after scaling, `[1, h, t, t]` (ALiBi, T5).
    pub bias: Option<Tensor<4>>,
    /// RoPE's cos/sin tables and pair rotation.
    pub rope: Option<RopeTables>,
    /// Shaw's one-hot map from (query, key) to clipped offset label, `[t, t, r]`.
    pub relative: Option<Tensor<3>>,
}

impl PositionContext {
    pub fn empty(seq_len: usize) -> Self {
        Self {
            seq_len,
            bias: None,
            rope: None,
            relative: None,
        }
    }
}

/// The places a positional scheme can act. Every method has a no-op default.
pub trait Positional {
    /// Absolute schemes add to the token embeddings `[b, t, d]`.
    fn embed(&self, x: Tensor<3>) -> Tensor<3> {
        x
    }
    /// Tables shared by every layer of one forward pass over `seq_len` positions.
    fn context(&self, seq_len: usize, _device: &Device) -> PositionContext {
        PositionContext::empty(seq_len)
    }
    /// Rotates queries and keys `[b, h, t, dh]` (RoPE).
    fn rotate(&self, q: Tensor<4>, k: Tensor<4>, _ctx: &PositionContext) -> (Tensor<4>, Tensor<4>) {
        (q, k)
    }
    /// Relative terms inside attention (Shaw): the key and value tables of every layer, with
    /// what computes the terms from them ([`RelativeTerms`]). Asking touches no parameter (a
    /// lazily initialised one would draw from the generator out of turn).
    fn relative(&self) -> Option<RelativeTerms<'_>> {
        None
    }
    /// Longest sequence the scheme can represent, if bounded.
    fn max_len(&self) -> Option<usize> {
        None
    }
}

/// The positional encoding module: one variant per scheme.
///
/// The variant names are part of checkpoint record paths: keep them stable.
#[derive(Module, Debug)]
pub enum PositionalEncoding {
    None(NoPosition),
    Sinusoidal(Sinusoidal),
    Learned(LearnedPositions),
    T5(T5Bias),
    Shaw(Shaw),
    Rope(Rope),
    Alibi(Alibi),
}

impl PositionalEncoding {
    /// The one dispatching `match`.
    pub fn scheme(&self) -> &dyn Positional {
        match self {
            Self::None(s) => s,
            Self::Sinusoidal(s) => s,
            Self::Learned(s) => s,
            Self::T5(s) => s,
            Self::Shaw(s) => s,
            Self::Rope(s) => s,
            Self::Alibi(s) => s,
        }
    }

    /// Whether a sequence of `len` positions can be encoded.
    pub fn supports(&self, len: usize) -> bool {
        self.scheme().max_len().is_none_or(|m| len <= m)
    }
}

/// Host-side helper: a `[rows, cols]` f32 table as a tensor.
pub(crate) fn table_2d(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    assert_eq!(
        values.len(),
        rows * cols,
        "table of {rows}x{cols} has {} values",
        values.len()
    );
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PositionalEncodingConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        assert_eq!(
            parse("kind = \"t5\"").unwrap(),
            PositionalEncodingConfig::T5 {
                num_buckets: 32,
                max_distance: 128
            }
        );
        let err = parse("kind = \"rope\"\nbase = 10.0\nbogus = 1").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = parse("kind = \"alibi\"\nslope = 1").unwrap_err();
        assert!(err.to_string().contains("slope"), "{err}");
        // ALiBi's direction: symmetric by default and then not written out, so configs from
        // before the option read and print as they did.
        let alibi = parse("kind = \"alibi\"").unwrap();
        assert_eq!(
            alibi,
            PositionalEncodingConfig::Alibi {
                direction: AlibiDirection::Symmetric
            }
        );
        assert_eq!(toml::to_string(&alibi).unwrap().trim(), "kind = \"alibi\"");
        let asymmetric = parse("kind = \"alibi\"\ndirection = \"asymmetric\"").unwrap();
        assert_eq!(
            asymmetric,
            PositionalEncodingConfig::Alibi {
                direction: AlibiDirection::Asymmetric
            }
        );
        assert_eq!(
            parse(&toml::to_string(&asymmetric).unwrap()).unwrap(),
            asymmetric
        );
        let err = parse("kind = \"alibi\"\ndirection = \"left\"").unwrap_err();
        assert!(err.to_string().contains("left"), "{err}");
        let err = parse("kind = \"nope\"").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn from_kind_covers_every_scheme() {
        for kind in PositionalEncodingConfig::KINDS {
            let cfg = PositionalEncodingConfig::from_kind(kind, 64).unwrap();
            assert_eq!(cfg.kind(), kind);
        }
        assert!(PositionalEncodingConfig::from_kind("xpos", 64).is_none());
    }

    #[test]
    fn validation_names_the_field() {
        let dims = EncodingDims {
            d_model: 64,
            n_heads: 4,
            n_layers: 2,
            mode: AttentionMode::Causal,
        };
        let rope = parse("kind = \"rope\"\nfraction = 0.3").unwrap();
        let err = rope.validate(&dims).unwrap_err();
        assert_eq!(err.field, "fraction");
        let learned = parse("kind = \"learned\"\nmax_len = 0").unwrap();
        assert_eq!(learned.validate(&dims).unwrap_err().field, "max_len");
        let t5 = parse("kind = \"t5\"\nnum_buckets = 1").unwrap();
        assert_eq!(t5.validate(&dims).unwrap_err().field, "num_buckets");
    }
}
