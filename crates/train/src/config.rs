//! Run configuration files: strict TOML, `--set` overrides, validation before anything runs.
//!
//! ```toml
//! seed = 0
//! [model]            # ordo_model::ModelConfig
//! d_model = 64
//! [model.encoding]   # kind + that scheme's parameters
//! kind = "rope"
//! [task]             # crate::tasks::TaskConfig
//! kind = "copy"
//! [train]            # TrainConfig
//! steps = 1500
//! ```
//! Every error names the file (or the `--set` override), the dotted key and what was expected.

pub use crate::data::BatchLengths;
use crate::tasks::TaskConfig;
use ordo_model::ModelConfig;
pub use ordo_model::kernels::Precision;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The longest evaluation `ordo eval` and `ordo ablate` run by default, as a multiple of the
/// longest training length (what a config is checked against before it trains).
pub const EVAL_FACTOR: usize = 4;

/// Everything one training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name; the run directory is `<out_dir>/<name>`. Defaults to the config file's stem.
    #[serde(default)]
    pub name: String,
    /// Seed for data, initialisation and dropout.
    #[serde(default)]
    pub seed: u64,
    /// `cpu` (= `flex`), `flex`, `ndarray`, or `wgpu` (when built with the `wgpu` feature).
    #[serde(default = "default_device")]
    pub device: String,
    /// Directory that holds run directories.
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
    pub model: ModelConfig,
    pub task: TaskConfig,
    #[serde(default)]
    pub train: TrainConfig,
}

fn default_device() -> String {
    "cpu".into()
}
fn default_out_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// Optimisation and bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Linear warm-up steps from 0 to `lr`.
    pub warmup_steps: usize,
    /// Cosine decay ends at `lr * final_lr_fraction`.
    pub final_lr_fraction: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Clip the global gradient norm to this value; 0 disables clipping.
    pub grad_clip: f64,
    /// Steps between log lines (metrics.jsonl and the progress display).
    pub log_every: usize,
    /// Steps between evaluations on the held-out set (and at the end).
    pub eval_every: usize,
    /// Size of the held-out in-distribution set.
    pub eval_examples: usize,
    /// Steps between checkpoints (and at the end).
    pub checkpoint_every: usize,
    /// How a training batch's lengths are drawn: `"mixed"` (each example its own length) or
    /// `"single"` (one length per batch). Absent: `"single"` with randomized positions,
    /// `"mixed"` otherwise ([`RunConfig::batch_lengths`]); not written out when absent, so
    /// configs and runs from before the option are unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_lengths: Option<BatchLengths>,
    /// The number format of the model's dense products (linear layers, tied head): `"fp32"`
    /// (the default) or `"bf16"` (bf16 operands, fp32 sums; weights, optimizer state,
    /// checkpoints and everything else stay fp32: [`ordo_model::kernels::with_precision`]).
    /// `"bf16"` needs the cpu device and a CPU with AVX512-BF16. Not written out when fp32, so
    /// configs and runs from before the option are unchanged.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 32,
            lr: 1e-3,
            warmup_steps: 100,
            final_lr_fraction: 0.1,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.98,
            epsilon: 1e-8,
            grad_clip: 1.0,
            log_every: 25,
            eval_every: 250,
            eval_examples: 512,
            checkpoint_every: 250,
            batch_lengths: None,
            precision: Precision::Fp32,
        }
    }
}

/// A configuration error, ready to show a user.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{}--set {assignment}: {message}", origin.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Override {
        origin: Option<PathBuf>,
        assignment: String,
        message: String,
    },
    #[error("{origin}: `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

/// Reads `path`, applies `overrides` (`key.path=value`), deserialises strictly and validates.
/// The returned config is fully resolved (every default filled in).
pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig, ConfigError> {
    load_with_task(path, overrides, None).map(|(config, _)| config)
}

/// [`load`], also returning the task's generator that validation built, for the run to use
/// (a task is loaded once per run). With `run_tokenizer` (a run directory's `tokenizer.json`,
/// relative to `path`'s directory or absolute) the task is checked and loaded reading it
/// ([`crate::tasks::TaskConfig::reading_tokenizer`]); the config returned keeps the task as
/// written.
pub fn load_with_task(
    path: &Path,
    overrides: &[String],
    run_tokenizer: Option<&Path>,
) -> Result<(RunConfig, crate::tasks::Generator), ConfigError> {
    let text = crate::read_input(path).map_err(|cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
    for assignment in overrides {
        apply_override(&mut table, assignment).map_err(|e| match e {
            ConfigError::Override {
                assignment,
                message,
                ..
            } => ConfigError::Override {
                origin: Some(path.to_path_buf()),
                assignment,
                message,
            },
            other => other,
        })?;
    }
    let origin = if overrides.is_empty() {
        path.display().to_string()
    } else {
        format!(
            "{} (with --set {})",
            path.display(),
            overrides.join(" --set ")
        )
    };
    let mut config = from_table(table, &origin)?;
    if config.name.is_empty() {
        config.name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
    }
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let written = run_tokenizer.map(|file| {
        let written = config.task.clone();
        config.task = written.reading_tokenizer(file);
        written
    });
    let generator = config.resolve_and_validate(base_dir, &origin)?;
    if let Some(written) = written {
        config.task = written;
    }
    Ok((config, generator))
}

/// Deserialises a TOML table into a [`RunConfig`], naming the offending key on error.
pub fn from_table(table: toml::Table, origin: &str) -> Result<RunConfig, ConfigError> {
    let deserializer = toml::Value::Table(table);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid {
            origin: origin.to_string(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: friendly(&e.into_inner().to_string()),
        }
    })
}

/// serde's wording, in the words a config file uses, without toml's repeated key path.
pub fn friendly(message: &str) -> String {
    let message = message.split("\nin `").next().unwrap_or(message).trim();
    message
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected f64", "expected a number")
}

/// Every leaf of a table by its dotted key (`model.encoding.base`), the inverse of the dotted
/// keys [`apply_override`] takes; tables nest, anything else (arrays included) is a leaf.
pub fn leaves(table: &toml::Table) -> std::collections::BTreeMap<String, toml::Value> {
    fn walk(
        prefix: &str,
        table: &toml::Table,
        out: &mut std::collections::BTreeMap<String, toml::Value>,
    ) {
        for (key, value) in table {
            let key = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(t) => walk(&key, t, out),
                leaf => {
                    out.insert(key, leaf.clone());
                }
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk("", table, &mut out);
    out
}

/// Applies `a.b.c=value` to `table`. The value is read as TOML (`3`, `1e-3`, `true`, `"x"`,
/// `[1, 2]`); anything that is not valid TOML is taken as a string (`kind=rope`).
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let fail = |message: String| ConfigError::Override {
        origin: None,
        assignment: assignment.to_string(),
        message,
    };
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| fail("expected key.path=value".into()))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if key.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err(fail(format!("`{key}` is not a dotted key path")));
    }
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let mut node = table;
    for (depth, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry.as_table_mut().ok_or_else(|| {
            fail(format!(
                "`{}` is a value, not a section",
                parts[..=depth].join(".")
            ))
        })?;
    }
    node.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

impl RunConfig {
    /// How training batches draw their lengths: `train.batch_lengths`, or, when absent, one
    /// length per batch with randomized positions and mixed lengths otherwise (see
    /// [`BatchLengths`]).
    pub fn batch_lengths(&self) -> BatchLengths {
        self.train
            .batch_lengths
            .unwrap_or(if self.model.encoding.placement().is_randomized() {
                BatchLengths::Single
            } else {
                BatchLengths::Mixed
            })
    }

    /// Fills in derived defaults and checks every constraint, naming the key on error. Returns
    /// the task's generator it built to check the task.
    pub fn resolve_and_validate(
        &mut self,
        base_dir: &Path,
        origin: &str,
    ) -> Result<crate::tasks::Generator, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let generator = self
            .task
            .generator(base_dir)
            .map_err(|e| invalid(&format!("task.{}", e.field), e.message))?;
        self.task.resolve_defaults();
        let (_, max_len) = self.task.train_lengths();
        let longest =
            crate::data::positions_at(&self.task, max_len, self.model.mode).ok_or_else(|| {
                invalid(
                    "task.max_len",
                    format!("{max_len} is too large to count positions for"),
                )
            })?;
        self.model
            .encoding
            .fit_to_length(longest)
            .map_err(|e| invalid(&format!("model.encoding.{}", e.field), e.message))?;
        self.model
            .validate()
            .map_err(|e| invalid(&format!("model.{}", e.field()), e.message().to_string()))?;
        self.train
            .validate()
            .map_err(|(k, m)| invalid(&format!("train.{k}"), m))?;
        let device =
            crate::device::parse(&self.device).map_err(|e| invalid("device", e.to_string()))?;
        if self.train.precision == Precision::Bf16 {
            ordo_model::kernels::bf16_runs_on(&device.autodiff()).map_err(|why| {
                invalid(
                    "train.precision",
                    format!(
                        "\"bf16\" cannot run here: {why} (device = {:?})",
                        self.device
                    ),
                )
            })?;
        }
        // Last: the sizes are known to be valid, and nothing has been allocated for them.
        self.check_memory(&generator, EVAL_FACTOR)
            .map_err(|e| invalid("(sizes)", e.to_string()))?;
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(invalid(
                "name",
                format!("expected a plain directory name, got {:?}", self.name),
            ));
        }
        Ok(generator)
    }

    /// Refuses a config whose estimated peak memory ([`crate::budget`]), training or evaluating
    /// up to `eval_factor` times the longest training length, exceeds the memory available.
    pub fn check_memory(
        &self,
        generator: &crate::tasks::Generator,
        eval_factor: usize,
    ) -> Result<crate::budget::Estimate, crate::budget::BudgetError> {
        let (_, max_len) = self.task.train_lengths();
        let mode = self.model.mode;
        let eval_len = max_len.checked_mul(eval_factor);
        let sizes = crate::budget::Sizes {
            batch_size: self.train.batch_size,
            vocab: generator.vocab_estimate(eval_len.unwrap_or(usize::MAX)),
            train_positions: crate::data::positions_at(&self.task, max_len, mode).map(|t| t as u64),
            eval_positions: eval_len
                .and_then(|len| crate::data::positions_at(&self.task, len, mode))
                .map(|t| t as u64),
        };
        crate::budget::check(&self.model, sizes, crate::budget::limit()?)
    }

    /// The run directory.
    pub fn run_dir(&self) -> PathBuf {
        self.out_dir.join(&self.name)
    }

    /// The config as TOML text (what `--check` prints and `config.toml` holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises to TOML")
    }
}

/// The most held-out examples a training run evaluates (`train.eval_examples`).
pub const MAX_EVAL_EXAMPLES: usize = 1_000_000;

impl TrainConfig {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("log_every", self.log_every),
            ("eval_every", self.eval_every),
            ("eval_examples", self.eval_examples),
            ("checkpoint_every", self.checkpoint_every),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err((key, "expected a positive integer, got 0".into()));
            }
        }
        // Held-out examples are generated up front: a huge count would hang or abort later.
        if self.eval_examples > MAX_EVAL_EXAMPLES {
            return Err((
                "eval_examples",
                format!(
                    "expected at most {MAX_EVAL_EXAMPLES}, got {}",
                    self.eval_examples
                ),
            ));
        }
        let ranges = [
            ("lr", self.lr, 0.0, 10.0),
            ("final_lr_fraction", self.final_lr_fraction, 0.0, 1.0),
            ("weight_decay", self.weight_decay, 0.0, 10.0),
            ("beta1", self.beta1, 0.0, 1.0),
            ("beta2", self.beta2, 0.0, 1.0),
            ("epsilon", self.epsilon, 0.0, 1.0),
            ("grad_clip", self.grad_clip, 0.0, 1e6),
        ];
        for (key, value, lo, hi) in ranges {
            if !(value >= lo && value <= hi) || (key == "lr" && value == 0.0) {
                return Err((
                    key,
                    format!("expected a value in [{lo}, {hi}], got {value}"),
                ));
            }
        }
        // Values that always diverge: AdamW's moment averages never forget with β = 1 (its bias
        // correction divides by 1 - β^t = 0), and ε = 0 divides by zero where a gradient is 0.
        for (key, value) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if value >= 1.0 {
                return Err((key, format!("expected a value in [0, 1), got {value}")));
            }
        }
        if self.epsilon <= 0.0 {
            return Err((
                "epsilon",
                format!("expected a value in (0, 1], got {}", self.epsilon),
            ));
        }
        Ok(())
    }
}
