//! `[model]` in a config file.

use ordo_encodings::{AttentionMode, EncodingDims, PositionalEncodingConfig};
use serde::{Deserialize, Serialize};

/// Model hyper-parameters. Unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Width of the residual stream.
    #[serde(default = "default_d_model")]
    pub d_model: usize,
    /// Attention heads; must divide `d_model`.
    #[serde(default = "default_n_heads")]
    pub n_heads: usize,
    /// Transformer blocks.
    #[serde(default = "default_n_layers")]
    pub n_layers: usize,
    /// Hidden width of the MLP; 0 means `4 * d_model`.
    #[serde(default)]
    pub d_ff: usize,
    /// Dropout on embeddings, attention probabilities and residual branches.
    #[serde(default)]
    pub dropout: f64,
    /// `causal` (decoder) or `bidirectional` (encoder).
    #[serde(default)]
    pub mode: AttentionMode,
    /// Share the token embedding with the output head.
    #[serde(default)]
    pub tie_embeddings: bool,
    /// Standard deviation of the token embeddings' N(0, σ²) initialisation. 1.0 (the default)
    /// gives each component RMS 1 (Vaswani's `√d · N(0, 1/d)`), against which an absolute
    /// positional signal (RMS 1/√2) is small: an encoder, which has no causal mask to tell order,
    /// then learns local order slowly (`notes/bigram-encoder.md`; `configs/bigram_shift_encoder.toml`
    /// uses 0.3). Written out only when it differs from 1.0.
    #[serde(
        default = "default_embedding_std",
        skip_serializing_if = "is_default_embedding_std"
    )]
    pub embedding_std: f64,
    /// Standard deviation of an N(0, σ²) initialisation of the query and key projections'
    /// biases; absent (the default) keeps burn's `U(±1/√d)`. RoPE's only offset term that does
    /// not depend on the words is `b_qᵀ R(j - i) b_k`, which that default makes ~0: a RoPE
    /// encoder then starts out blind to position and, on one bit per sentence (`bigram_shift`),
    /// never leaves chance; 1.5 lets it learn (`notes/bigram-encoder.md`). Without RoPE the
    /// biases add nothing positional: `b_q·k_j`, a term per key's content, and terms the same for
    /// every key of a query, which softmax ignores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qk_bias_std: Option<f64>,
    /// The positional encoding: `kind` plus that scheme's parameters.
    #[serde(default)]
    pub encoding: PositionalEncodingConfig,
}

fn default_d_model() -> usize {
    64
}
fn default_n_heads() -> usize {
    4
}
fn default_n_layers() -> usize {
    2
}
fn default_embedding_std() -> f64 {
    1.0
}
fn is_default_embedding_std(std: &f64) -> bool {
    *std == default_embedding_std()
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            d_model: default_d_model(),
            n_heads: default_n_heads(),
            n_layers: default_n_layers(),
            d_ff: 0,
            dropout: 0.0,
            mode: AttentionMode::Causal,
            tie_embeddings: false,
            embedding_std: default_embedding_std(),
            qk_bias_std: None,
            encoding: PositionalEncodingConfig::default(),
        }
    }
}

/// What is wrong in `[model]`: a field of its own, or one of its encoding's (kept as the
/// scheme's error, so a caller that names encoding parameters its own way can).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelConfigError {
    #[error("`{field}`: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("`encoding.{}`: {}", .0.field, .0.message)]
    Encoding(ordo_encodings::EncodingConfigError),
}

impl ModelConfigError {
    /// The field relative to `[model]`, dotted (`encoding.fraction`).
    pub fn field(&self) -> String {
        match self {
            ModelConfigError::Field { field, .. } => field.to_string(),
            ModelConfigError::Encoding(e) => format!("encoding.{}", e.field),
        }
    }

    /// What was expected.
    pub fn message(&self) -> &str {
        match self {
            ModelConfigError::Field { message, .. }
            | ModelConfigError::Encoding(ordo_encodings::EncodingConfigError { message, .. }) => {
                message
            }
        }
    }
}

impl ModelConfig {
    pub fn d_ff(&self) -> usize {
        if self.d_ff == 0 {
            4 * self.d_model
        } else {
            self.d_ff
        }
    }

    pub fn dims(&self) -> EncodingDims {
        EncodingDims {
            d_model: self.d_model,
            n_heads: self.n_heads,
            n_layers: self.n_layers,
            mode: self.mode,
        }
    }

    /// For an encoder (`mode = "bidirectional"`) whose position signal starts too weak for
    /// attention to tell neighbouring positions apart, what `ordo train --check`, the training
    /// log, the run's records and the report say: why, and the settings that fix it (those of
    /// `configs/bigram_shift_encoder.toml`). `None` for a decoder, which gets order from its
    /// causal mask, and for schemes with nothing to scale (`none`, `learned`, and ALiBi and
    /// FIRE, whose encoder notes say they cannot tell left from right).
    pub fn encoder_warning(&self) -> Option<String> {
        if self.mode != AttentionMode::Bidirectional {
            return None;
        }
        let init = ordo_encodings::InitScales {
            n_heads: self.n_heads,
            embedding_std: self.embedding_std,
            qk_bias_std: self.qk_bias_std,
        };
        let why = self.encoding.scheme.encoder_weak_start(&init)?;
        Some(format!(
            "this `{}` encoder's position signal starts too weak to learn local order: {why} \
             (as configs/bigram_shift_encoder.toml does; measurements in notes/bigram-encoder.md)",
            self.encoding.kind()
        ))
    }

    /// Checks every constraint before anything is built.
    pub fn validate(&self) -> Result<(), ModelConfigError> {
        let err =
            |field: &'static str, message: String| Err(ModelConfigError::Field { field, message });
        for (field, value) in [
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("n_layers", self.n_layers),
        ] {
            if value == 0 {
                return err(field, "expected a positive integer, got 0".into());
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return err(
                "n_heads",
                format!(
                    "d_model ({}) must be divisible by n_heads ({})",
                    self.d_model, self.n_heads
                ),
            );
        }
        for (field, std) in [
            ("embedding_std", Some(self.embedding_std)),
            ("qk_bias_std", self.qk_bias_std),
        ] {
            if let Some(std) = std
                && !(std > 0.0 && std.is_finite())
            {
                return err(field, format!("expected a positive number, got {std}"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return err(
                "dropout",
                format!("expected a value in [0, 1), got {}", self.dropout),
            );
        }
        self.encoding
            .validate(&self.dims())
            .map_err(ModelConfigError::Encoding)
    }
}
