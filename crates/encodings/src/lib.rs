//! Positional encodings for ordo, one file per scheme, one switch to choose among them.
//!
//! Design: the configuration is data ([`PositionalEncodingConfig`]: a serde enum of schemes,
//! [`SchemeConfig`], tagged by `kind`, whose variants are each scheme's own config struct, plus
//! the options every scheme shares, such as randomized positions), and
//! [`PositionalEncodingConfig::init`] builds the module ([`PositionalEncoding`], an enum with
//! one variant per scheme). A scheme owns everything about itself, in its file: its config
//! struct (defaults, validation, parameter count: the [`Scheme`] trait), its module, its hooks
//! and what `ordo inspect` shows of it (the [`Positional`] trait). A scheme can act in exactly
//! these places:
//!
//! 1. `embed`: add an absolute signal to the token embeddings (sinusoidal, learned);
//! 2. `context`: build, once per forward pass, what every layer shares (bias tables, rotation
//!    angles, relative-offset maps), so no layer recomputes them;
//! 3. `rotate`: rotate queries and keys (RoPE);
//! 4. an additive logit bias after scaling, carried in the context (ALiBi, T5, FIRE);
//! 5. `relative`: relative terms inside attention, a key term added to `q kᵀ` and a value
//!    term added to the output, from per-layer tables indexed by the clipped offset (Shaw):
//!    one hook, which the model hands to ordo's attention kernel or computes term by term;
//! 6. `scores`: a term added to one layer's scaled logits, computed from what that layer sees
//!    ([`LayerInput`]: its input `x`, its rotated queries and keys): the schemes whose position
//!    signal depends on the content (CoPE counts gates of `q·k`, the forgetting gate reads `x`)
//!    or on `q` and `k` beyond a table lookup (Transformer-XL's `u·k_j` and `(q_i + v)·W_R R`,
//!    HF's `relative_key_query` key-side term). Tensors such a scheme builds once per pass
//!    (Transformer-XL's sinusoids, xPos' key tables) travel in the context's `own` list, which
//!    only the scheme reads.
//!
//! Hooks 1 and 2 receive the [`Positions`] of the tokens (`0..t`, or randomized positions: see
//! [`positions`]), so no scheme assumes its tokens sit at `0..t`. The transformer calls every
//! hook in every layer; a scheme that does not act there is a no-op.
//!
//! # Adding an encoding (FIRE, `fire.rs`, is the worked example)
//!
//! 1. Write `src/<name>.rs`, opening with the paper and the formula. In it, a config struct
//!    (`FireConfig`: `#[serde(deny_unknown_fields)]`, defaults by `#[serde(default = ..)]`)
//!    and the module (`Fire`, `#[derive(Module)]`).
//! 2. `impl Scheme for FireConfig`: `init` builds the module; `validate` names the offending
//!    field ([`EncodingConfigError`]); `parameters` counts what it adds to the model (for the
//!    memory estimate); `fit_to_length` only if a table must be sized to the training length.
//! 3. `impl Positional for Fire`: the hooks it needs (FIRE: `context`, a bias computed from the
//!    [`Positions`]), `max_len` if its reach is bounded, and `figures` for `ordo inspect`.
//! 4. In this file: `pub mod fire;` and one line in the `schemes!` list below
//!    (`"fire" => Fire(fire::FireConfig, fire::Fire),`). That line generates every dispatch:
//!    the config variant, the module variant, `kind`, [`KINDS`](PositionalEncodingConfig::KINDS)
//!    (which ablate's defaults, the bench, the plots' colours and the tests iterate), validation,
//!    parameter counts, figures.
//! 5. Tests in the file: golden values from the paper or its reference code, and the scheme's
//!    property (for a bias: shifting both positions changes nothing). Nothing in model, train,
//!    eval or cli changes: `ordo train`, `ablate`, `eval`, `inspect` and `bench` pick it up.
//!
//! Dimension legend used in shape comments: `b` batch, `h` heads, `t` sequence length
//! (`tq` queries, `tk` keys), `d` d_model, `dh` d_head, `r` relative labels (2k+1).

use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub mod alibi;
pub mod cope;
pub mod dpb;
pub mod figure;
pub mod fire;
pub mod fox;
pub mod hf_relative;
pub mod kerple;
pub mod learned;
pub mod none;
pub mod positions;
pub mod rope;
pub mod shaw;
pub mod sinusoidal;
pub mod t5;
pub mod transformer_xl;
pub mod xpos;

pub use alibi::{Alibi, AlibiDirection};
pub use cope::Cope;
pub use dpb::Dpb;
pub use figure::{Figure, FigureOption, FigureOptions, View};
pub use fire::Fire;
pub use fox::Fox;
pub use hf_relative::HfRelative;
pub use kerple::Kerple;
pub use learned::LearnedPositions;
pub use none::NoPosition;
pub use positions::{Placement, Positions};
pub use rope::{Rope, RopeLayout, RopeScaling, RopeTables};
pub use shaw::{RelativeMap, RelativeTerms, Shaw};
pub use sinusoidal::Sinusoidal;
pub use t5::T5Bias;
pub use transformer_xl::TransformerXl;
pub use xpos::Xpos;

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

/// The largest `randomized_positions` accepted: positions are drawn from `0..N` and schemes
/// with tables (learned, the sinusoid cache) size them by N.
pub const MAX_RANDOM_RANGE: usize = 1 << 20;

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> EncodingConfigError {
    EncodingConfigError {
        field,
        message: message.into(),
    }
}

/// Checks an optional initialisation std (`init_std` of the learned relative tables): absent,
/// or a positive finite number.
pub(crate) fn check_init_std(std: Option<f64>) -> Result<(), EncodingConfigError> {
    match std {
        Some(s) if !(s > 0.0 && s.is_finite()) => Err(invalid(
            "init_std",
            format!("expected a positive number, got {s}"),
        )),
        _ => Ok(()),
    }
}

/// The model-wide settings that decide how strong a position signal starts out (see
/// [`Scheme::encoder_weak_start`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InitScales {
    pub n_heads: usize,
    /// `model.embedding_std`.
    pub embedding_std: f64,
    /// `model.qk_bias_std` (absent: burn's default biases).
    pub qk_bias_std: Option<f64>,
}

/// The model settings to set, one `key = value` each, joined for a warning.
pub(crate) fn settings(list: &[&str]) -> String {
    list.iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// What an encoder (bidirectional model) with only a scheme's position signal can tell of word
/// order. A decoder gets order from its causal mask whatever the scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSeen {
    /// Nothing: permuting the input permutes the outputs (no position signal at all).
    Nothing,
    /// Only distances `|i - j|`: reversing the input reverses the outputs (no left from right).
    Distance,
    /// Order: neither a permutation nor the reversal of the input is mirrored in the outputs.
    Full,
}

/// What the [`Positional::scores`] hook of one attention layer reads.
pub struct LayerInput<'a> {
    /// The layer's index, `0..n_layers`.
    pub layer: usize,
    /// The attention input (the block's input after its layer norm), `[b, t, d]`.
    pub x: &'a Tensor<3>,
    /// Queries and keys after [`Positional::rotate`], not scaled, `[b, h, t, dh]`.
    pub q: &'a Tensor<4>,
    pub k: &'a Tensor<4>,
    /// The logits' scale `1/√dh`.
    pub scale: f64,
}

/// A scheme's config: what builds, checks and sizes it. One implementation per scheme file.
pub trait Scheme {
    /// The module it builds.
    type Module: Positional;
    /// Checks the parameters against the model dimensions, before anything is built.
    fn validate(&self, _dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        Ok(())
    }
    /// Builds the module (called only after `validate` succeeded).
    fn init(&self, dims: &EncodingDims, device: &Device) -> Self::Module;
    /// Number of trained parameters it adds to the model (`None` on overflow).
    fn parameters(&self, _dims: &EncodingDims) -> Option<u64> {
        Some(0)
    }
    /// Sizes whatever must reach position `reach - 1` (a learned table left at 0), or says
    /// why it cannot.
    fn fit_to_length(&mut self, _reach: usize) -> Result<(), EncodingConfigError> {
        Ok(())
    }
    /// What a report on encoders (bidirectional models) must say about this scheme, if
    /// anything (e.g. that it cannot tell left from right).
    fn encoder_note(&self) -> Option<&'static str> {
        None
    }
    /// What an encoder whose only position signal is this scheme can tell of word order
    /// (the model's property tests hold every scheme to what it declares here).
    fn order_seen(&self) -> OrderSeen {
        OrderSeen::Full
    }
    /// Why the scheme is defined for causal attention only, if it is: the config then refuses
    /// bidirectional mode with this reason.
    fn causal_only(&self) -> Option<&'static str> {
        None
    }
    /// Whether the scheme counts its positions from the content (CoPE, the forgetting gate)
    /// rather than reading [`Positions`]: randomized positions cannot reach it, so the config
    /// refuses them, and the positions property test does not apply.
    fn positions_from_content(&self) -> bool {
        false
    }
    /// In an encoder (bidirectional model) with these settings, whether the scheme's position
    /// signal starts too weak for attention to tell neighbouring positions apart, so that a
    /// task needing local order stays at chance (measured on `bigram_shift`,
    /// `notes/bigram-encoder.md`): why, and the settings that fix it.
    fn encoder_weak_start(&self, _init: &InitScales) -> Option<String> {
        None
    }
}

/// The places a positional scheme can act, and what it shows of itself. Every method has a
/// no-op default.
pub trait Positional {
    /// Absolute schemes add to the token embeddings `[b, t, d]` at `positions`.
    fn embed(&self, x: Tensor<3>, _positions: &Positions) -> Tensor<3> {
        x
    }
    /// Tables shared by every layer of one forward pass over tokens at `positions`.
    fn context(&self, positions: &Positions, _device: &Device) -> PositionContext {
        PositionContext::empty(positions.len())
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
    /// A term `[b or 1, h, t, t]` added to one layer's logits after the `1/√dh` scaling,
    /// computed from what the layer sees ([`LayerInput`]); it joins the position bias and the
    /// masks (keys after a causal query and padding stay hidden whatever it adds).
    fn scores(&self, _input: &LayerInput, _ctx: &PositionContext) -> Option<Tensor<4>> {
        None
    }
    /// Longest sequence the scheme can represent, if bounded.
    fn max_len(&self) -> Option<usize> {
        None
    }
    /// The scheme's learned scalars worth reporting, by name (FIRE: its threshold `L` and `c`):
    /// `ordo inspect --checkpoint` prints them and `eval.json` records them.
    fn learned_scalars(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
    /// The options its figures take (`ordo inspect KIND --figure NAME=VALUE`); none by default.
    fn figure_options(&self) -> &'static [figure::FigureOption] {
        &[]
    }
    /// What `ordo inspect` shows of it at `view.len` positions (numbers and pictures), with
    /// the options of [`Positional::figure_options`] given in `view` (already checked).
    fn figures(&self, _view: &View, _device: &Device) -> Vec<Figure> {
        Vec::new()
    }
}

/// What one forward pass shares between layers: built once by [`Positional::context`].
#[derive(Debug, Clone)]
pub struct PositionContext {
    pub seq_len: usize,
    /// Additive logit bias after scaling, `[1, h, t, t]` (ALiBi, T5, FIRE).
    pub bias: Option<Tensor<4>>,
    /// The same bias given by its `2t - 1` offsets instead, `[h, 2t - 1]` (the bias of query
    /// `i`, key `j` at column `t - 1 + j - i`), where it depends on `j - i` alone and a
    /// `[h, t, t]` matrix would be large: ALiBi, T5 and DPB set it instead of `bias` for
    /// inference beyond `ordo_kernels::attention::BLOCKED_FROM` positions at `0..t` on flex
    /// (`offset_bias_context`), where the attention kernel reads each row from it
    /// ([`ordo_kernels::attention_by_offset`]); everywhere else the model builds the matrix from
    /// it ([`PositionContext::dense_bias`]).
    pub bias_by_offset: Option<Tensor<2>>,
    /// RoPE's cos/sin tables and pair rotation.
    pub rope: Option<RopeTables>,
    /// Shaw's map from (query, key) to clipped offset label ([`RelativeMap`]), when the
    /// relative terms are composed from burn's ops rather than computed by ordo's kernel
    /// (devices without the kernels, and positions that are not `0..t`).
    pub relative: Option<RelativeMap>,
    /// Tensors the scheme built for its own hooks (`rotate`, `scores`), in the order its
    /// `context` put them; no other code reads them.
    pub own: Vec<Tensor<4>>,
}

impl PositionContext {
    pub fn empty(seq_len: usize) -> Self {
        Self {
            seq_len,
            bias: None,
            bias_by_offset: None,
            rope: None,
            relative: None,
            own: Vec::new(),
        }
    }

    /// The additive bias as a `[1, h, t, t]` matrix: `bias`, or the one `bias_by_offset`
    /// describes (a constant, the same values).
    pub fn dense_bias(&self) -> Option<Tensor<4>> {
        self.bias.clone().or_else(|| {
            self.bias_by_offset
                .clone()
                .map(|offsets| ordo_kernels::expand_offsets(offsets, self.seq_len))
        })
    }
}

/// Generates, from one line per scheme, the config enum, the module enum and every dispatch.
macro_rules! schemes {
    ($($(#[doc = $doc:literal])* $kind:literal => $variant:ident($config:ty, $module:ty),)*) => {
        /// One scheme's config, as written under `[model.encoding]`: `kind` and its fields.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum SchemeConfig {
            $($(#[doc = $doc])* #[serde(rename = $kind)] $variant($config),)*
        }

        /// The positional encoding module: one variant per scheme.
        ///
        /// The variant names are part of checkpoint record paths: keep them stable.
        // One per model, built once: boxing the larger variants (FIRE's MLP) would save
        // nothing and add an indirection to every hook call.
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum PositionalEncoding {
            $($variant($module),)*
        }

        impl SchemeConfig {
            /// Every scheme's `kind`, in the order of the list (reports, plots, defaults).
            pub const KINDS: &'static [&'static str] = &[$($kind),*];

            /// The config `kind` string of this scheme.
            pub fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => $kind,)* }
            }
            pub fn validate(&self, dims: &EncodingDims) -> Result<(), EncodingConfigError> {
                match self { $(Self::$variant(c) => c.validate(dims),)* }
            }
            fn build(&self, dims: &EncodingDims, device: &Device) -> PositionalEncoding {
                match self { $(Self::$variant(c) => PositionalEncoding::$variant(c.init(dims, device)),)* }
            }
            pub fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
                match self { $(Self::$variant(c) => c.parameters(dims),)* }
            }
            fn fit(&mut self, reach: usize) -> Result<(), EncodingConfigError> {
                match self { $(Self::$variant(c) => c.fit_to_length(reach),)* }
            }
            pub fn encoder_note(&self) -> Option<&'static str> {
                match self { $(Self::$variant(c) => c.encoder_note(),)* }
            }
            pub fn order_seen(&self) -> OrderSeen {
                match self { $(Self::$variant(c) => c.order_seen(),)* }
            }
            pub fn causal_only(&self) -> Option<&'static str> {
                match self { $(Self::$variant(c) => c.causal_only(),)* }
            }
            pub fn positions_from_content(&self) -> bool {
                match self { $(Self::$variant(c) => c.positions_from_content(),)* }
            }
            pub fn encoder_weak_start(&self, init: &InitScales) -> Option<String> {
                match self { $(Self::$variant(c) => c.encoder_weak_start(init),)* }
            }
        }

        impl PositionalEncoding {
            /// The `kind` of the scheme.
            pub fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => $kind,)* }
            }
            /// The one dispatching `match` of the module.
            pub fn scheme(&self) -> &dyn Positional {
                match self { $(Self::$variant(s) => s,)* }
            }
        }
    };
}

schemes! {
    /// No positional signal (NoPE), the control.
    "none" => None(none::NoneConfig, NoPosition),
    /// Vaswani et al. 2017 fixed sinusoids added to the token embeddings.
    "sinusoidal" => Sinusoidal(sinusoidal::SinusoidalConfig, Sinusoidal),
    /// A trained table of absolute positions added to the token embeddings.
    "learned" => Learned(learned::LearnedConfig, LearnedPositions),
    /// T5 bucketed relative bias (Raffel et al. 2020), one table shared by all layers.
    "t5" => T5(t5::T5Config, T5Bias),
    /// Shaw et al. 2018 relative position representations, per layer.
    "shaw" => Shaw(shaw::ShawConfig, Shaw),
    /// RoFormer rotary position embedding (Su et al. 2021).
    "rope" => Rope(rope::RopeConfig, Rope),
    /// ALiBi linear biases (Press et al. 2022).
    "alibi" => Alibi(alibi::AlibiConfig, Alibi),
    /// FIRE, a learned function of the normalised log distance (Li et al., ICLR 2024).
    "fire" => Fire(fire::FireConfig, Fire),
    /// KERPLE kernelized relative bias, log or power kernel (Chi et al. 2022).
    "kerple" => Kerple(kerple::KerpleConfig, Kerple),
    /// x-transformers' dynamic position bias: an MLP of the (log) offset, per head.
    "dpb" => Dpb(dpb::DpbConfig, Dpb),
    /// xPos, rotary with an exponential decay of `q·k` (Sun et al. 2023), causal only.
    "xpos" => Xpos(xpos::XposConfig, Xpos),
    /// The Forgetting Transformer's data-dependent decay (Lin et al. 2025), per layer.
    "fox" => Fox(fox::FoxConfig, Fox),
    /// CoPE, positions counted by gates of `q·k` (Golovneva et al. 2024), causal only.
    "cope" => Cope(cope::CopeConfig, Cope),
    /// Transformer-XL relative attention (Dai et al. 2019) as DeepMind's `RELATIVE`.
    "transformer_xl" => TransformerXl(transformer_xl::TransformerXlConfig, TransformerXl),
    /// Hugging Face's `relative_key`: Shaw's key term, one table per layer.
    "relative_key" => RelativeKey(hf_relative::RelativeKeyConfig, HfRelative),
    /// Hugging Face's `relative_key_query` (Huang et al. 2020, method 4): key and query terms.
    "relative_key_query" => RelativeKeyQuery(hf_relative::RelativeKeyQueryConfig, HfRelative),
}

/// The positional encoding, as written in a config file under `[model.encoding]`: the scheme
/// (`kind` and its parameters) and the options every scheme shares.
///
/// ```toml
/// [model.encoding]
/// kind = "rope"
/// base = 10000.0
/// randomized_positions = 64   # optional: Ruoss et al. 2023, see `positions`
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionalEncodingConfig {
    #[serde(flatten)]
    pub scheme: SchemeConfig,
    /// Randomized positions (Ruoss et al. 2023): each forward pass places its `t` tokens at an
    /// ordered random subset of `0..N`, `N` this value (at least the longest training
    /// sequence; the paper takes `N` much larger than every training and test length: its
    /// reference code draws from 0..2048 for training length 40 and tests up to 500, and
    /// ordo's shipped study takes `N` >= 4x the longest evaluated sequence). Absent or 0: `0..t`
    /// (0 lets an experiment's grid compare both: `"model.encoding.randomized_positions" =
    /// [0, 320]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomized_positions: Option<usize>,
}

impl From<SchemeConfig> for PositionalEncodingConfig {
    fn from(scheme: SchemeConfig) -> Self {
        Self {
            scheme,
            randomized_positions: None,
        }
    }
}

impl Default for PositionalEncodingConfig {
    fn default() -> Self {
        SchemeConfig::Rope(rope::RopeConfig::default()).into()
    }
}

impl PositionalEncodingConfig {
    /// Every scheme's `kind`: [`SchemeConfig::KINDS`].
    pub const KINDS: &'static [&'static str] = SchemeConfig::KINDS;

    /// The config `kind` string of this scheme.
    pub fn kind(&self) -> &'static str {
        self.scheme.kind()
    }

    /// Whether the scheme is defined in this attention mode (a causal-only scheme is not, in an
    /// encoder).
    pub fn supports_mode(&self, mode: AttentionMode) -> bool {
        mode == AttentionMode::Causal || self.scheme.causal_only().is_none()
    }

    /// What an encoder with only this scheme can tell of word order ([`OrderSeen`]).
    pub fn order_seen(&self) -> OrderSeen {
        self.scheme.order_seen()
    }

    /// The default configuration of a scheme given by its `kind`, sized for sequences of up
    /// to `max_len` tokens (a learned table gets `max_len` rows).
    pub fn from_kind(kind: &str, max_len: usize) -> Option<Self> {
        // Built through serde so that the defaults live in one place (each config struct).
        let scheme: SchemeConfig =
            serde_json::from_value(serde_json::json!({ "kind": kind })).ok()?;
        let mut config = Self::from(scheme);
        config.fit_to_length(max_len).ok()?;
        Some(config)
    }

    /// `N` when positions are randomized (`randomized_positions` set and not 0).
    fn random_range(&self) -> Option<usize> {
        self.randomized_positions.filter(|&n| n > 0)
    }

    /// How the model places its tokens.
    pub fn placement(&self) -> Placement {
        match self.random_range() {
            Some(max_position) => Placement::Randomized { max_position },
            None => Placement::Contiguous,
        }
    }

    /// Sizes the scheme for training sequences of up to `longest` tokens (with randomized
    /// positions, for positions up to `randomized_positions - 1`), or says which field is too
    /// small.
    pub fn fit_to_length(&mut self, longest: usize) -> Result<(), EncodingConfigError> {
        let reach = match self.random_range() {
            Some(n) if n < longest => {
                return Err(invalid(
                    "randomized_positions",
                    format!(
                        "positions are drawn from 0..{n} but the longest sequence to place has \
                         {longest} tokens; expected at least {longest} (the paper draws from a \
                         range much larger than every training and evaluated length)"
                    ),
                ));
            }
            Some(n) => n,
            None => longest,
        };
        self.scheme.fit(reach)
    }

    /// Checks the parameters against the model dimensions, before anything is built.
    pub fn validate(&self, dims: &EncodingDims) -> Result<(), EncodingConfigError> {
        if let Some(n) = self.random_range()
            && n > MAX_RANDOM_RANGE
        {
            return Err(invalid(
                "randomized_positions",
                format!("expected at most {MAX_RANDOM_RANGE}, got {n}"),
            ));
        }
        if let Some(why) = self.scheme.causal_only()
            && dims.mode == AttentionMode::Bidirectional
        {
            return Err(invalid(
                "kind",
                format!(
                    "`{}` is defined for causal attention only ({why}); use it with \
                     `model.mode = \"causal\"`",
                    self.kind()
                ),
            ));
        }
        if self.random_range().is_some() && self.scheme.positions_from_content() {
            return Err(invalid(
                "randomized_positions",
                format!(
                    "`{}` counts its positions from the content, not from where the tokens \
                     sit: randomized positions would not reach it; remove the option (or set \
                     it to 0)",
                    self.kind()
                ),
            ));
        }
        if let Some(n) = self.random_range() {
            // A table sized by hand must reach every position that can be drawn.
            self.scheme.clone().fit(n)?;
        }
        self.scheme.validate(dims)
    }

    /// Number of trained parameters the scheme adds (`None` on overflow).
    pub fn parameters(&self, dims: &EncodingDims) -> Option<u64> {
        self.scheme.parameters(dims)
    }

    /// Builds the module.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) would fail: call it first at a config boundary.
    pub fn init(&self, dims: &EncodingDims, device: &Device) -> PositionalEncoding {
        if let Err(e) = self.validate(dims) {
            panic!("invalid positional encoding config: {e}");
        }
        self.scheme.build(dims, device)
    }
}

impl PositionalEncoding {
    /// Whether a sequence of `len` positions can be encoded.
    pub fn supports(&self, len: usize) -> bool {
        self.scheme().max_len().is_none_or(|m| len <= m)
    }
}

/// The context of a scheme whose one table is a bias that depends on `j - i` alone (ALiBi, T5,
/// DPB): its offsets ([`PositionContext::bias_by_offset`], from `by_offset(t)`) for inference on
/// flex at positions `0..t` beyond the attention kernel's blocked length, where a `[h, t, t]`
/// matrix is large (32 MiB at 8 heads and 1024 positions) and the kernel reads each row from
/// the offsets instead; the `[h, t, t]` matrix (`matrix()`) everywhere else.
pub(crate) fn offset_bias_context(
    positions: &Positions,
    device: &Device,
    by_offset: impl FnOnce(usize) -> Tensor<2>,
    matrix: impl FnOnce() -> Tensor<3>,
) -> PositionContext {
    let t = positions.len();
    let pays = positions.is_contiguous()
        && t > ordo_kernels::attention::BLOCKED_FROM
        && !device.is_autodiff()
        && ordo_kernels::accelerated(device);
    if pays {
        PositionContext {
            bias_by_offset: Some(by_offset(t)),
            ..PositionContext::empty(t)
        }
    } else {
        PositionContext {
            bias: Some(matrix().unsqueeze::<4>()), // [1, h, t, t]
            ..PositionContext::empty(t)
        }
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

/// Host-side helper: the values of an f32 tensor.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
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
            SchemeConfig::T5(t5::T5Config {
                num_buckets: 32,
                max_distance: 128,
                init_std: None,
            })
            .into()
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
            SchemeConfig::Alibi(alibi::AlibiConfig {
                direction: AlibiDirection::Symmetric
            })
            .into()
        );
        assert_eq!(toml::to_string(&alibi).unwrap().trim(), "kind = \"alibi\"");
        let asymmetric = parse("kind = \"alibi\"\ndirection = \"asymmetric\"").unwrap();
        assert_eq!(
            asymmetric,
            SchemeConfig::Alibi(alibi::AlibiConfig {
                direction: AlibiDirection::Asymmetric
            })
            .into()
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
        for &kind in PositionalEncodingConfig::KINDS {
            let cfg = PositionalEncodingConfig::from_kind(kind, 64).unwrap();
            assert_eq!(cfg.kind(), kind);
        }
        assert!(PositionalEncodingConfig::from_kind("nope", 64).is_none());
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

    /// Every scheme reads the positions it is given: at positions `p` each hook's output is
    /// the rows (and columns) `p` of its output at `0..extent`. A new scheme passes this, or
    /// randomized positions would silently not reach it.
    #[test]
    fn every_scheme_reads_the_positions_it_is_given() {
        use burn::tensor::Distribution;
        let dev = Device::flex();
        let p = Positions::new(vec![1, 4, 5, 9]);
        let full = Positions::contiguous(p.extent());
        let (t, n) = (p.len(), full.len());
        let close =
            |a: f32, b: f32, what: &str| assert!((a - b).abs() < 1e-5, "{what}: {a} vs {b}");
        for mode in [AttentionMode::Causal, AttentionMode::Bidirectional] {
            let dims = EncodingDims {
                d_model: 16,
                n_heads: 2,
                n_layers: 2,
                mode,
            };
            for &kind in PositionalEncodingConfig::KINDS {
                let what = format!("{kind} {mode:?}");
                let config = PositionalEncodingConfig::from_kind(kind, 64).unwrap();
                if !config.supports_mode(mode) {
                    continue;
                }
                let module = config.init(&dims, &dev);
                let scheme = module.scheme();
                let x = Tensor::<3>::random([1, n, 16], burn::tensor::Distribution::Default, &dev);
                let rows: Vec<i64> = p.as_slice().iter().map(|&i| i as i64).collect();
                let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [t]), &dev);
                let x_p = x.clone().select(1, rows.clone());
                let e_full = values(scheme.embed(x, &full).select(1, rows.clone()));
                let e_p = values(scheme.embed(x_p, &p));
                for (a, b) in e_full.iter().zip(&e_p) {
                    close(*a, *b, &format!("{what} embed"));
                }
                let (cf, cp) = (scheme.context(&full, &dev), scheme.context(&p, &dev));
                // The scores hook reads the positions (not the other tokens) too: at `p` it is
                // the rows and columns `p` of the full one, for the queries and keys there.
                if !config.scheme.positions_from_content() {
                    let heads = |seed: f64| {
                        Tensor::<4>::random([1, 2, n, 8], Distribution::Uniform(-seed, seed), &dev)
                    };
                    let (q, k) = (heads(1.0), heads(2.0));
                    let x = Tensor::<3>::random([1, n, 16], Distribution::Default, &dev);
                    let full_input = LayerInput {
                        layer: 1,
                        x: &x,
                        q: &q,
                        k: &k,
                        scale: 0.5,
                    };
                    let (q_p, k_p) = (
                        q.clone().select(2, rows.clone()),
                        k.clone().select(2, rows.clone()),
                    );
                    let x_p = x.clone().select(1, rows.clone());
                    let p_input = LayerInput {
                        layer: 1,
                        x: &x_p,
                        q: &q_p,
                        k: &k_p,
                        scale: 0.5,
                    };
                    if let (Some(sf), Some(sp)) = (
                        scheme.scores(&full_input, &cf),
                        scheme.scores(&p_input, &cp),
                    ) {
                        let sub = sf.select(2, rows.clone()).select(3, rows.clone());
                        for (a, b) in values(sub).iter().zip(&values(sp)) {
                            close(*a, *b, &format!("{what} scores"));
                        }
                    }
                }
                if let (Some(bf), Some(bp)) = (cf.bias, cp.bias) {
                    let sub = bf.select(2, rows.clone()).select(3, rows.clone());
                    for (a, b) in values(sub).iter().zip(&values(bp)) {
                        close(*a, *b, &format!("{what} bias"));
                    }
                }
                if let (Some(rf), Some(rp)) = (cf.rope, cp.rope) {
                    let cos = values(rf.cos.select(2, rows.clone()));
                    let sin = values(rf.sin.select(2, rows.clone()));
                    for (a, b) in cos.iter().zip(&values(rp.cos)) {
                        close(*a, *b, &format!("{what} cos"));
                    }
                    for (a, b) in sin.iter().zip(&values(rp.sin)) {
                        close(*a, *b, &format!("{what} sin"));
                    }
                }
                if let PositionalEncoding::Shaw(shaw) = &module {
                    // Positions that are not 0..t always take the one-hot map.
                    let map = shaw
                        .one_hot_at(&full, &dev)
                        .select(0, rows.clone())
                        .select(1, rows.clone());
                    let got = cp.relative.expect("label map for randomized positions");
                    let one_hot = got.one_hot.expect("Shaw's values need the one-hot map");
                    assert_eq!(values(map), values(one_hot), "{what} relative");
                    let labels = shaw
                        .labels_at(&full, &dev)
                        .select(0, rows.clone())
                        .select(1, rows.clone());
                    assert_eq!(labels.into_data(), got.labels.into_data(), "{what} labels");
                }
            }
        }
    }

    #[test]
    fn randomized_positions_are_an_option_of_every_scheme() {
        let dims = EncodingDims {
            d_model: 16,
            n_heads: 2,
            n_layers: 2,
            mode: AttentionMode::Causal,
        };
        for &kind in PositionalEncodingConfig::KINDS {
            let text = format!("kind = \"{kind}\"\nrandomized_positions = 64");
            let mut cfg = parse(&text).unwrap();
            assert_eq!(cfg.kind(), kind);
            assert_eq!(cfg.placement(), Placement::Randomized { max_position: 64 });
            cfg.fit_to_length(16).unwrap();
            if cfg.scheme.positions_from_content() {
                // Refused with a message that says why, naming the option.
                let err = cfg.validate(&dims).unwrap_err();
                assert_eq!(err.field, "randomized_positions", "{kind}");
                assert!(err.message.contains("content"), "{}", err.message);
                continue;
            }
            cfg.validate(&dims).unwrap();
            // It round-trips through TOML, and stays out of configs that do not use it.
            assert_eq!(parse(&toml::to_string(&cfg).unwrap()).unwrap(), cfg);
        }
        let plain = parse("kind = \"rope\"").unwrap();
        assert!(!toml::to_string(&plain).unwrap().contains("randomized"));
        // A learned table spans the whole range positions are drawn from.
        let mut learned = parse("kind = \"learned\"\nrandomized_positions = 64").unwrap();
        learned.fit_to_length(16).unwrap();
        assert_eq!(
            learned.scheme,
            SchemeConfig::Learned(learned::LearnedConfig { max_len: 64 })
        );
        let small = parse("kind = \"learned\"\nmax_len = 32\nrandomized_positions = 64").unwrap();
        assert_eq!(small.validate(&dims).unwrap_err().field, "max_len");
        // The range must hold the longest training sequence.
        let mut short = parse("kind = \"alibi\"\nrandomized_positions = 8").unwrap();
        assert_eq!(
            short.fit_to_length(16).unwrap_err().field,
            "randomized_positions"
        );
        // 0 is off, so that a grid can compare with and without.
        let mut zero = parse("kind = \"alibi\"\nrandomized_positions = 0").unwrap();
        zero.fit_to_length(16).unwrap();
        zero.validate(&dims).unwrap();
        assert_eq!(zero.placement(), Placement::Contiguous);
        // Unknown keys are still refused beside the shared option.
        let err = parse("kind = \"t5\"\nrandomized_positions = 8\nbogus = 1").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    /// The spread of the learned relative tables at initialisation: the convention when
    /// `init_std` is absent (HF T5 `d_model^-1/2`, BERT-style 0.02 for Shaw), the given std when
    /// present, and nothing else about the scheme changes.
    #[test]
    fn init_std_sets_the_relative_tables_spread() {
        fn spread(v: &[f32]) -> f64 {
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        }
        let dims = EncodingDims {
            d_model: 64,
            n_heads: 16,
            n_layers: 2,
            mode: AttentionMode::Bidirectional,
        };
        let dev = Device::flex();
        // 1024 (t5: 64 buckets x 16 heads) and 2 x 2112 (shaw) draws: the sample std is
        // within 5 % of σ at 2 standard errors, 20 % is a wide margin.
        for (text, want) in [
            ("kind = \"t5\"\nnum_buckets = 64", 64f64.powf(-0.5)),
            ("kind = \"t5\"\nnum_buckets = 64\ninit_std = 3.0", 3.0),
            ("kind = \"shaw\"\nmax_distance = 32", shaw::DEFAULT_INIT_STD),
            ("kind = \"shaw\"\nmax_distance = 32\ninit_std = 1.0", 1.0),
        ] {
            let config = parse(text).unwrap();
            config.validate(&dims).unwrap();
            let drawn = match config.init(&dims, &dev) {
                PositionalEncoding::T5(t5) => values(t5.table.val()),
                PositionalEncoding::Shaw(shaw) => {
                    let mut v = values(shaw.keys.val());
                    v.extend(values(shaw.values.expect("values").val()));
                    v
                }
                _ => unreachable!("{text}"),
            };
            let got = spread(&drawn);
            assert!(
                (got / want - 1.0).abs() < 0.2,
                "{text}: std {got}, want {want}"
            );
            // Absent is not written out: a resolved config reads as it always did.
            let written = toml::to_string(&config).unwrap();
            assert_eq!(
                written.contains("init_std"),
                text.contains("init_std"),
                "{written}"
            );
        }
        for kind in ["t5", "shaw"] {
            for bad in ["0.0", "-1.0", "nan", "inf"] {
                let config = parse(&format!("kind = \"{kind}\"\ninit_std = {bad}")).unwrap();
                let err = config.validate(&dims).unwrap_err();
                assert_eq!(err.field, "init_std", "{kind} {bad}");
                assert!(err.message.contains("positive"), "{}", err.message);
            }
        }
    }
}
