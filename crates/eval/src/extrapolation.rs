//! `ordo eval RUN_DIR`: a trained model on freshly generated sets at each length.
//!
//! For every length `n` (default `1..=4L`, `L` the longest training length) the task generates
//! `examples` new examples (seeded by the run's seed and `n`, so every encoding of a study sees
//! the same data) and we measure exact match, token accuracy and loss. Lengths a model cannot
//! represent (a learned table too short, a vocabulary without the needed tokens) are recorded
//! as n/a with the reason. Means are reported over three buckets ([`Bucket`]): in-distribution
//! `[min, L]`, near `(L, 2L]` and far `(2L, F·L]`, `F` the evaluation's `max_factor` (4 by
//! default).
//!
//! Each length also keeps what a bootstrap over its examples needs ([`Outcomes`]): the count of
//! exactly right examples (exact match is Bernoulli per example, so the count is enough) and,
//! when the headline is perplexity, each window's summed loss and token count. `eval.json` files
//! written before these fields existed still load; their reports show no interval.

use burn::prelude::*;
use ordo_model::kernels::with_precision;
use ordo_model::{AttentionMode, Transformer};
use ordo_train::config::{Precision, RunConfig};
use ordo_train::data;
use ordo_train::metrics::{Metrics, evaluate_examples};
use ordo_train::rng::Rng;
use ordo_train::run_dir::{AtPath, EvalVariant, RunDir, RunDirError, RunLock, WithPath};
use ordo_train::vocab::Vocab;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest `max_factor` accepted (`ordo eval --max-factor`, an experiment's `[eval]`): the
/// evaluation cost grows with its square.
pub const MAX_FACTOR: usize = 64;
/// The most examples per length (and examples per forward pass) an evaluation accepts.
pub const MAX_EXAMPLES: usize = 1_000_000;
/// The longest length `--lengths` accepts, and the most lengths it may name.
pub const MAX_LENGTH: usize = 1 << 20;
pub const MAX_LENGTHS: usize = 10_000;
/// The most tokens an exact-match evaluation generates at one length (`examples × length`):
/// beyond it, generating the examples alone would take gigabytes.
pub const MAX_EVAL_TOKENS: usize = 1 << 26;

/// `examples` and `batch_size` when not given, and the reach `max_factor` stands for when
/// absent (4: lengths up to four times the longest training length).
pub const DEFAULT_EXAMPLES: usize = 128;
pub const DEFAULT_BATCH_SIZE: usize = 128;
pub const DEFAULT_MAX_FACTOR: usize = 4;

/// How a trained run is evaluated: `ordo eval`'s options (clap) and an experiment's `[eval]`
/// table (serde), one definition with one set of defaults and one [`EvalOptions::validate`].
/// `[eval]` takes `max_factor`, `examples` and `batch_size`; the others are `ordo eval`'s
/// alone (an `[eval]` naming one is refused as an unknown field).
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalOptions {
    /// Lengths to test, e.g. `1-16,24,32,64` (default: every length from the task's shortest
    /// up to --max-factor times the longest training length).
    #[arg(long)]
    #[serde(skip)]
    pub lengths: Option<Lengths>,
    /// Test up to this multiple of the longest training length (without --lengths; default 4).
    /// Tasks that evaluate fixed multiples (`lm`: 1, 2, 4 and 8 times the context) refuse it.
    #[arg(long, value_name = "FACTOR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_factor: Option<usize>,
    /// Fresh examples per length (lm: the scored text is the first EXAMPLES × context
    /// held-out tokens, the same at every length).
    #[arg(long, default_value_t = DEFAULT_EXAMPLES)]
    pub examples: usize,
    /// Examples per forward pass.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Evaluate with the run's encoding changed: a key under `model.encoding.`, e.g.
    /// `--set model.encoding.scaling.kind=yarn --set model.encoding.scaling.factor=4`
    /// (repeatable). The scheme checks the result as it checks a training config; the
    /// evaluation is written to `eval-<overrides>.json`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    #[serde(skip)]
    pub overrides: Vec<String>,
    /// lm only: windows STRIDE tokens apart, each scoring its last STRIDE predictions,
    /// instead of consecutive blocks of the context length. Either way every length scores
    /// the same text, each token once.
    #[arg(long, value_name = "STRIDE")]
    #[serde(skip)]
    pub sliding: Option<usize>,
    /// Device (default: the run's).
    #[arg(long)]
    #[serde(skip)]
    pub device: Option<String>,
    /// Number format of the dense products, fp32 or bf16 (default: the run's
    /// `train.precision`); recorded in `eval.json`.
    #[arg(long)]
    #[serde(skip)]
    pub precision: Option<Precision>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            lengths: None,
            max_factor: None,
            examples: DEFAULT_EXAMPLES,
            batch_size: DEFAULT_BATCH_SIZE,
            overrides: Vec::new(),
            sliding: None,
            device: None,
            precision: None,
        }
    }
}

/// Lengths to evaluate, parsed from `1-16,32,64` ([`parse_lengths`]): sorted, distinct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lengths(pub Vec<usize>);

impl std::str::FromStr for Lengths {
    type Err = OptionError;
    fn from_str(text: &str) -> Result<Self, OptionError> {
        parse_lengths(text).map(Lengths)
    }
}

/// The prefix every evaluation override's key starts with: only the encoding can change at
/// evaluation time (the weights are the run's).
pub const OVERRIDE_PREFIX: &str = "model.encoding.";

impl EvalOptions {
    /// The reach in multiples of the longest training length.
    pub fn max_factor(&self) -> usize {
        self.max_factor.unwrap_or(DEFAULT_MAX_FACTOR)
    }

    /// Checks what can be checked without the run: counts positive and within their limits
    /// (`max_factor` at most [`MAX_FACTOR`], `examples` and `batch_size` at most
    /// [`MAX_EXAMPLES`]), a positive stride, overrides under [`OVERRIDE_PREFIX`] (not its
    /// `kind`). `name` spells a field as its source does (`--max-factor`,
    /// `` `eval.max_factor` ``).
    pub fn validate(&self, name: &dyn Fn(&str) -> String) -> Result<(), InvalidOption> {
        for (key, value, most) in [
            ("max_factor", self.max_factor(), MAX_FACTOR),
            ("examples", self.examples, MAX_EXAMPLES),
            ("batch_size", self.batch_size, MAX_EXAMPLES),
        ] {
            if value == 0 {
                return Err(InvalidOption::Zero { field: name(key) });
            }
            if value > most {
                return Err(InvalidOption::TooLarge {
                    field: name(key),
                    most,
                    got: value,
                });
            }
        }
        if self.sliding == Some(0) {
            return Err(InvalidOption::ZeroStride {
                field: name("sliding"),
            });
        }
        for assignment in &self.overrides {
            let (field, assignment) = (name("set"), assignment.clone());
            match assignment.split_once('=').map(|(k, _)| k.trim()) {
                None => return Err(InvalidOption::NotAssignment { field, assignment }),
                Some(key) if !key.starts_with(OVERRIDE_PREFIX) => {
                    return Err(InvalidOption::NotEncoding { field, assignment });
                }
                Some(key) if key == format!("{OVERRIDE_PREFIX}kind") => {
                    return Err(InvalidOption::Kind { field, assignment });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The overrides as one canonical name (keys without [`OVERRIDE_PREFIX`], in key order,
    /// each `key=value` with the value as TOML writes it, a string without quotes, the last of
    /// a repeated key winning; joined by `,`), or `None` without overrides:
    /// `scaling.factor=4,scaling.kind=yarn`
    /// for `--set model.encoding.scaling.kind=yarn --set model.encoding.scaling.factor=4`.
    /// Characters other than letters, digits and `._=,+-` become `_` (it names a file).
    pub fn overrides_name(&self) -> Option<String> {
        let mut by_key = BTreeMap::new();
        for assignment in &self.overrides {
            let Some((key, raw)) = assignment.split_once('=') else {
                continue;
            };
            let key = key.trim();
            let key = key.strip_prefix(OVERRIDE_PREFIX).unwrap_or(key);
            // As `--set` reads it (ordo_train::config::apply_override): TOML, else a string.
            let value = match format!("v = {raw}").parse::<toml::Table>() {
                Ok(mut t) => match t.remove("v").expect("parsed key") {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                },
                Err(_) => raw.trim().to_string(),
            };
            by_key.insert(key.to_string(), value);
        }
        if by_key.is_empty() {
            return None;
        }
        let name: Vec<String> = by_key.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Some(
            name.join(",")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._=,+-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
        )
    }
}

/// The result at one length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthResult {
    pub length: usize,
    /// Model positions of one example at this length.
    pub tokens: usize,
    /// `None` when the length is n/a.
    pub metrics: Option<Metrics>,
    /// Why the length is n/a.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
    /// Per-example outcomes for confidence intervals; `None` for n/a lengths and in `eval.json`
    /// files written before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<Outcomes>,
    /// Perplexity headline: how many tokens were scored (the same at every length); absent for
    /// exact match, n/a lengths and in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored_tokens: Option<usize>,
}

/// The number that sums up a length, as the task reports it.
pub use ordo_train::tasks::Headline;

/// What a bootstrap over the examples of one length resamples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcomes {
    /// Examples (of `metrics.examples`) whose whole answer is right.
    pub exact: usize,
    /// Perplexity headline only (empty otherwise): per block of `block` consecutive scored
    /// tokens (the last block may be shorter), the summed cross-entropy of its tokens in nats,
    /// and the number of its tokens. Every length of an evaluation scores the same text, so
    /// block `i` holds the same tokens at every length, which lets a bootstrap resample blocks
    /// jointly across lengths. In files written before blocks were recorded (`block` absent),
    /// one entry per window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loss: Vec<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<u32>,
    /// The block size in scored tokens (the training context); absent for exact match and in
    /// older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<usize>,
}

/// The exact-match buckets of an evaluation with training lengths `[min, L]` and reach
/// `max_factor` F: in-distribution `[min, L]`, near `(L, 2L]`, far `(2L, F·L]` (empty for
/// F <= 2). One definition for `eval.json`'s bucket means and the report's columns and score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    InDistribution,
    Near,
    Far,
}

/// What a bucket's edges follow: the training lengths `[min, l]` and the reach `factor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edges {
    pub min: usize,
    pub l: usize,
    pub factor: usize,
}

impl Bucket {
    pub const ALL: [Bucket; 3] = [Bucket::InDistribution, Bucket::Near, Bucket::Far];

    /// Its key in `eval.json`'s `buckets` (and in the exported tables and TensorBoard tags).
    pub fn key(self) -> &'static str {
        match self {
            Bucket::InDistribution => "in_distribution",
            Bucket::Near => "near",
            Bucket::Far => "far",
        }
    }

    /// Whether length `n` falls in this bucket.
    pub fn contains(self, edges: Edges, n: usize) -> bool {
        let Edges { min, l, factor } = edges;
        match self {
            Bucket::InDistribution => n >= min && n <= l,
            Bucket::Near => n > l && n <= 2 * l,
            Bucket::Far => n > 2 * l && n <= factor.saturating_mul(l),
        }
    }
}

/// Means over the lengths of a bucket that were evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BucketMean {
    pub exact_match: Option<f64>,
    pub token_accuracy: Option<f64>,
    pub loss: Option<f64>,
    /// Lengths in the bucket, and how many of them were n/a.
    pub lengths: usize,
    pub unsupported: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Buckets {
    pub in_distribution: BucketMean,
    pub near: BucketMean,
    pub far: BucketMean,
}

impl Buckets {
    /// The means of bucket `b`.
    pub fn get(&self, b: Bucket) -> &BucketMean {
        match b {
            Bucket::InDistribution => &self.in_distribution,
            Bucket::Near => &self.near,
            Bucket::Far => &self.far,
        }
    }
}

/// The options an evaluation ran with, recorded in `eval.json` so that `ordo ablate` can tell
/// its own evaluation of a cell from another one (a partial manual `ordo eval --lengths 1-4`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredRecord")]
pub struct EvalRecord {
    /// Lengths asked for (`None`: the default set).
    pub lengths: Option<Vec<usize>>,
    pub max_factor: usize,
    pub examples: usize,
    /// [`EvalOptions::overrides_name`], `none` without overrides.
    pub overrides: String,
    pub sliding: Option<usize>,
}

/// [`EvalRecord`] as files hold it: files of older versions name a RoPE scaling (`scaling`,
/// `none` or `yarn4`) where newer ones have `overrides`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRecord {
    lengths: Option<Vec<usize>>,
    max_factor: usize,
    examples: usize,
    #[serde(default)]
    overrides: Option<String>,
    #[serde(default)]
    scaling: Option<String>,
    sliding: Option<usize>,
}

impl TryFrom<StoredRecord> for EvalRecord {
    type Error = String;
    fn try_from(r: StoredRecord) -> Result<Self, String> {
        let overrides = match (r.overrides, r.scaling) {
            (Some(o), _) => o,
            (None, Some(s)) if s == "none" => "none".into(),
            // An old `--rope-scaling` evaluation: nothing today asks for it by that name.
            (None, Some(s)) => format!("rope-scaling {s}"),
            (None, None) => return Err("missing field `overrides`".into()),
        };
        Ok(EvalRecord {
            lengths: r.lengths,
            max_factor: r.max_factor,
            examples: r.examples,
            overrides,
            sliding: r.sliding,
        })
    }
}

impl EvalOptions {
    /// What `eval.json` records of these options (not the batch size or device, which change
    /// nothing measured).
    pub fn record(&self) -> EvalRecord {
        EvalRecord {
            lengths: self.lengths.as_ref().map(|l| l.0.clone()),
            max_factor: self.max_factor(),
            examples: self.examples,
            overrides: self.overrides_name().unwrap_or_else(|| "none".into()),
            sliding: self.sliding,
        }
    }

    /// The precision `run` is evaluated in: `--precision`, or the run's `train.precision`.
    pub fn precision_for(&self, run: &LoadedRun) -> Precision {
        self.precision.unwrap_or(run.config.train.precision)
    }

    /// Which `eval*.json` these options write.
    pub fn variant(&self) -> EvalVariant {
        EvalVariant {
            overrides: self.overrides_name(),
            sliding: self.sliding,
        }
    }
}

/// `eval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub run: String,
    pub task: String,
    pub encoding: String,
    pub mode: AttentionMode,
    pub seed: u64,
    pub train_min_len: usize,
    pub train_max_len: usize,
    /// The run's encoding as changed for this evaluation ([`EvalOptions::overrides_name`]), or
    /// `none`. Files of older versions name a RoPE scaling here (`yarn4`).
    #[serde(alias = "scaling")]
    pub overrides: String,
    pub examples_per_length: usize,
    /// The headline metric; `None` in `eval.json` files written before it was recorded (see
    /// [`EvalReport::headline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<Headline>,
    pub lengths: Vec<LengthResult>,
    pub buckets: Buckets,
    /// The options this evaluation ran with (absent in files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<EvalRecord>,
    /// The training step of the checkpoint evaluated (absent in files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_step: Option<usize>,
    /// `N` when the model places its tokens at randomized positions drawn from `0..N`
    /// (absent: positions `0..t`, and in files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomized_positions: Option<usize>,
    /// The scheme's learned scalars in the evaluated checkpoint, by name (FIRE: `threshold`,
    /// the learned `L`, and `c`); absent for other schemes and in files of older versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub learned: BTreeMap<String, f64>,
    /// The run's config warnings ([`ordo_model::ModelConfig::encoder_warning`]); absent when
    /// none, and in files of older versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The number format of the dense products it ran with (absent: fp32, and in files of
    /// older versions).
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

impl EvalReport {
    /// Its buckets' edges: the training lengths and the evaluation's `max_factor` (4 in files
    /// of older versions, which had no other).
    pub fn edges(&self) -> Edges {
        Edges {
            min: self.train_min_len,
            l: self.train_max_len,
            factor: self
                .options
                .as_ref()
                .map_or(DEFAULT_MAX_FACTOR, |o| o.max_factor),
        }
    }

    /// The headline metric (for an `eval.json` written before it was recorded, see
    /// [`Headline::of_unrecorded`]).
    pub fn headline(&self) -> Headline {
        self.headline
            .unwrap_or_else(|| Headline::of_unrecorded(&self.task))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Device(WithPath<ordo_train::device::DeviceError>),
    #[error(transparent)]
    Io(#[from] WithPath<std::io::Error>),
    #[error(transparent)]
    Plot(WithPath<crate::plot::PlotError>),
    #[error(transparent)]
    Option(WithPath<InvalidOption>),
    #[error(
        "{}: --max-factor: this run's task (`{kind}`) evaluates fixed multiples of its context \
         and does not use it (give --lengths instead)",
        dir.display()
    )]
    UnusedMaxFactor { dir: PathBuf, kind: &'static str },
    #[error(
        "{}: --sliding applies to tasks evaluated on a held-out text only; this run's task is \
         `{kind}`",
        dir.display()
    )]
    NotSliding { dir: PathBuf, kind: &'static str },
    #[error("{}: --lengths/--max-factor: {}", .0.path.display(), .0.error)]
    Memory(WithPath<ordo_train::budget::BudgetError>),
    #[error(
        "{}: --examples {examples} at length {longest} would generate {} tokens; expected at \
         most {MAX_EVAL_TOKENS} (fewer examples, or shorter lengths)",
        dir.display(),
        examples.saturating_mul(*longest)
    )]
    TooManyTokens {
        dir: PathBuf,
        examples: usize,
        longest: usize,
    },
    #[error("{}: --precision bf16 cannot run here: {why}", .dir.display())]
    Precision { dir: PathBuf, why: String },
    #[error(transparent)]
    Checkpoint(#[from] ordo_model::CheckpointError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Open(#[from] ordo_train::open::OpenError),
}

/// A trained run loaded for evaluation.
pub struct LoadedRun {
    pub dir: PathBuf,
    pub config: RunConfig,
    /// The run's task, loaded once (reading the run's own tokenizer).
    pub generator: ordo_train::tasks::Generator,
    pub vocab: Vocab,
    pub model: Transformer,
    pub device: Device,
    /// The training step of the loaded checkpoint.
    pub step: usize,
}

/// Loads the config, vocabulary and last checkpoint of a run directory, after checking that
/// its inputs (corpus, lexicon, tokenizer) are the ones it was trained on.
pub fn load_run(dir: &Path, device: Option<&str>) -> Result<LoadedRun, EvalError> {
    load_run_with(dir, device, &[])
}

/// [`load_run`] with the run's config changed by `overrides` (`key=value`, as `--set`), checked
/// as a training config is: the model is built from the changed config and the run's weights.
pub fn load_run_with(
    dir: &Path,
    device: Option<&str>,
    overrides: &[String],
) -> Result<LoadedRun, EvalError> {
    let open = RunDir::new(dir).open(overrides)?;
    let device_name = device.unwrap_or(&open.config.device);
    let device = ordo_train::device::parse(device_name)
        .at(dir)
        .map_err(EvalError::Device)?;
    let (step, model) = open.load_model(&device)?;
    let ordo_train::open::OpenRun {
        config,
        generator,
        vocab,
        ..
    } = open;
    Ok(LoadedRun {
        dir: dir.to_path_buf(),
        config,
        generator,
        vocab,
        model,
        device,
        step,
    })
}

/// Evaluates the run in `dir` at every requested length and writes `eval.json` / `eval.csv`
/// (with a `-<overrides>` suffix when the encoding is changed, [`EvalVariant::suffix`]),
/// holding the run's lock.
pub fn evaluate_run(dir: &Path, options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let run = RunDir::new(dir);
    if !run.is_run() {
        return Err(ordo_train::open::OpenError::NotARun(dir.to_path_buf()).into());
    }
    let lock = run.lock("evaluating")?;
    evaluate_locked(&lock, options)
}

/// [`evaluate_run`] in a run directory whose lock the caller holds.
pub fn evaluate_locked(lock: &RunLock, options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let dir = lock.dir().path();
    options
        .validate(&|key| format!("--{}", key.replace('_', "-")))
        .at(dir)
        .map_err(EvalError::Option)?;
    let run = load_run_with(dir, options.device.as_deref(), &options.overrides)?;
    if options.max_factor.is_some() && !run.config.task.uses_max_factor() {
        return Err(EvalError::UnusedMaxFactor {
            dir: dir.to_path_buf(),
            kind: run.config.task.kind(),
        });
    }
    if options.sliding.is_some() && !run.config.task.sliding_windows() {
        return Err(EvalError::NotSliding {
            dir: dir.to_path_buf(),
            kind: run.config.task.kind(),
        });
    }
    let mut report = evaluate_loaded(&run, options)?;
    report.options = Some(options.record());
    report.checkpoint_step = Some(run.step);
    let variant = options.variant();
    let run_dir = lock.dir();
    keep_previous(run_dir, &variant, &report)?;
    // The CSV first: eval.json is what marks an evaluation finished.
    run_dir.write(&run_dir.eval_csv(&variant), to_csv(&report).as_bytes())?;
    run_dir.write_json(&run_dir.eval_json(&variant), &report)?;
    Ok(report)
}

/// Before an evaluation is written over another one of other options or another checkpoint
/// (a manual `ordo eval --lengths 1-4` of a cell, an `[eval]`-only rerun, another `--precision`),
/// the old `eval*.json`
/// and `eval*.csv` are renamed to `eval*.before-<n>.json`/`.csv` (`n` = 1, 2, ...), so nothing
/// measured is lost. An evaluation equal in options, checkpoint and precision is simply
/// rewritten.
fn keep_previous(
    run_dir: &RunDir,
    variant: &ordo_train::run_dir::EvalVariant,
    new: &EvalReport,
) -> Result<(), EvalError> {
    let json = run_dir.eval_json(variant);
    let Ok(old) = run_dir.read_json::<EvalReport>(&json) else {
        return Ok(());
    };
    if old.options == new.options
        && old.checkpoint_step == new.checkpoint_step
        && old.precision == new.precision
    {
        return Ok(());
    }
    let csv = run_dir.eval_csv(variant);
    let with_suffix = |path: &Path, n: usize| {
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let ext = path
            .extension()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        path.with_file_name(format!("{stem}.before-{n}.{ext}"))
    };
    let n = (1..)
        .find(|&n| !with_suffix(&json, n).exists() && !with_suffix(&csv, n).exists())
        .expect("a free name");
    if csv.is_file() {
        std::fs::rename(&csv, with_suffix(&csv, n)).at(&csv)?;
    }
    std::fs::rename(&json, with_suffix(&json, n)).at(&json)?;
    ordo_train::run_dir::atomic::sync_parent(&json);
    Ok(())
}

/// Evaluates an already loaded run, in [`EvalOptions::precision_for`] it.
pub fn evaluate_loaded(run: &LoadedRun, options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let precision = options.precision_for(run);
    if precision == Precision::Bf16 {
        ordo_model::kernels::bf16_runs_on(&run.device).map_err(|why| EvalError::Precision {
            dir: run.dir.clone(),
            why,
        })?;
    }
    ordo_train::device::on_compute_pool(|| {
        with_precision(precision, || evaluate_on_this_thread(run, options))
    })
}

fn evaluate_on_this_thread(
    run: &LoadedRun,
    options: &EvalOptions,
) -> Result<EvalReport, EvalError> {
    let cfg = &run.config;
    let generator = &run.generator;
    let (min_len, max_len) = cfg.task.train_lengths();
    let headline = generator.headline();
    let lengths: Vec<usize> = match &options.lengths {
        Some(l) => l.0.clone(),
        None => generator.eval_lengths(max_len, options.max_factor()),
    };
    // Refuse lengths whose evaluation would not fit in memory, before allocating anything.
    let longest = lengths.iter().copied().max().unwrap_or(max_len);
    // (Loading the config checked the default reach, EVAL_FACTOR times the training length.)
    if longest > max_len.saturating_mul(ordo_train::config::EVAL_FACTOR) {
        cfg.check_memory(generator, longest.div_ceil(max_len.max(1)))
            .at(&run.dir)
            .map_err(EvalError::Memory)?;
    }
    if headline == Headline::ExactMatch
        && options.examples.saturating_mul(longest) > MAX_EVAL_TOKENS
    {
        return Err(EvalError::TooManyTokens {
            dir: run.dir.clone(),
            examples: options.examples,
            longest,
        });
    }
    let mut results = Vec::with_capacity(lengths.len());
    for &len in &lengths {
        if len < generator.min_len() {
            results.push(LengthResult {
                length: len,
                tokens: 0,
                metrics: None,
                unsupported: Some(format!(
                    "the task's shortest example has length {}",
                    generator.min_len()
                )),
                outcomes: None,
                scored_tokens: None,
            });
            continue;
        }
        let missing = generator
            .symbols(len)
            .into_iter()
            .find(|s| run.vocab.tokenizer.token_to_id(s).is_none());
        let mut rng = Rng::derive(cfg.seed, &format!("eval-{len}"));
        if let Some(why) = generator.eval_unsupported(len, options.examples) {
            results.push(LengthResult {
                length: len,
                tokens: len,
                metrics: None,
                unsupported: Some(why),
                outcomes: None,
                scored_tokens: None,
            });
            continue;
        }
        let tokens = data::positions(&generator.held_out(&mut rng.clone(), len), cfg.model.mode);
        // The examples first: where their sizes vary at one length (addition, SCAN), the
        // longest of them decides whether the model can represent the length.
        let examples = (missing.is_none() && run.model.unsupported(tokens).is_none())
            .then(|| generator.eval_set(&mut rng, len, options.examples, options.sliding));
        let longest = examples
            .iter()
            .flatten()
            .map(|(e, _)| data::positions(e, cfg.model.mode))
            .max()
            .unwrap_or(tokens);
        let unsupported = if let Some(token) = missing {
            Some(format!("the vocabulary has no token {token:?}"))
        } else {
            run.model.unsupported(tokens.max(longest))
        };
        let metrics = match (&unsupported, examples) {
            (Some(_), _) | (None, None) => None,
            (None, Some(examples)) => {
                let items: Vec<_> = examples
                    .iter()
                    .map(|(e, skip)| {
                        let mut item = data::encode(e, len, cfg.model.mode, &run.vocab);
                        // Unscored predictions: the first `skip` answer tokens, and those
                        // past what the task scores (the padding after a termination token).
                        let first = item.weight.iter().position(|&w| w > 0.0).unwrap_or(0);
                        let scored = generator.scored_answer(e);
                        for (k, w) in item.weight.iter_mut().skip(first).enumerate() {
                            if k < *skip || k >= scored {
                                *w = 0.0;
                            }
                        }
                        item
                    })
                    .collect();
                let (metrics, per_example) = evaluate_examples(
                    &run.model,
                    &items,
                    options.batch_size,
                    run.vocab.pad,
                    &run.device,
                );
                // Exact match needs only the count; perplexity, the loss of every block of
                // scored text. The windows score the text's tokens in order, each once.
                let (loss, tokens, block) = if headline == Headline::Perplexity {
                    let block = max_len.max(1);
                    let each: Vec<f32> = per_example
                        .iter()
                        .flat_map(|o| o.token_losses.iter().copied())
                        .collect();
                    let (loss, tokens) = each
                        .chunks(block)
                        .map(|c| {
                            (
                                c.iter().map(|&l| l as f64).sum::<f64>() as f32,
                                c.len() as u32,
                            )
                        })
                        .unzip();
                    (loss, tokens, Some(block))
                } else {
                    (Vec::new(), Vec::new(), None)
                };
                let outcomes = Outcomes {
                    exact: per_example.iter().filter(|o| o.exact).count(),
                    loss,
                    tokens,
                    block,
                };
                Some((metrics, outcomes))
            }
        };
        let (metrics, outcomes) = metrics.unzip();
        // eval.json never holds a non-finite number (serde would write null, which no later
        // `ordo report` could read): a length whose loss overflowed is n/a, with the reason.
        let (metrics, outcomes, unsupported) = match metrics {
            Some(m) if !(m.loss.is_finite() && m.exact_match.is_finite()) => (
                None,
                None,
                Some(format!(
                    "the loss is not finite at this length ({})",
                    m.loss
                )),
            ),
            other => (other, outcomes, unsupported),
        };
        let scored_tokens = outcomes
            .as_ref()
            .filter(|o| o.block.is_some())
            .map(|o| o.tokens.iter().map(|&t| t as usize).sum());
        results.push(LengthResult {
            length: len,
            tokens,
            metrics,
            unsupported,
            outcomes,
            scored_tokens,
        });
    }
    let edges = Edges {
        min: min_len,
        l: max_len,
        factor: options.max_factor(),
    };
    let buckets = Buckets {
        in_distribution: bucket(&results, |l| Bucket::InDistribution.contains(edges, l)),
        near: bucket(&results, |l| Bucket::Near.contains(edges, l)),
        far: bucket(&results, |l| Bucket::Far.contains(edges, l)),
    };
    Ok(EvalReport {
        run: cfg.name.clone(),
        task: cfg.task.kind().into(),
        encoding: cfg.model.encoding.kind().into(),
        mode: cfg.model.mode,
        seed: cfg.seed,
        train_min_len: min_len,
        train_max_len: max_len,
        overrides: options.overrides_name().unwrap_or_else(|| "none".into()),
        examples_per_length: options.examples,
        headline: Some(headline),
        lengths: results,
        buckets,
        options: None,
        checkpoint_step: None,
        randomized_positions: run.model.placement().max_len(),
        learned: run
            .model
            .encoding()
            .scheme()
            .learned_scalars()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        warnings: cfg.model.encoder_warning().into_iter().collect(),
        precision: ordo_model::kernels::precision(),
    })
}

/// Means over the results whose length satisfies `within`.
pub fn bucket(results: &[LengthResult], within: impl Fn(usize) -> bool) -> BucketMean {
    let inside: Vec<&LengthResult> = results.iter().filter(|r| within(r.length)).collect();
    let evaluated: Vec<&Metrics> = inside.iter().filter_map(|r| r.metrics.as_ref()).collect();
    let mean = |f: &dyn Fn(&Metrics) -> f64| {
        (!evaluated.is_empty())
            .then(|| evaluated.iter().map(|m| f(m)).sum::<f64>() / evaluated.len() as f64)
    };
    BucketMean {
        exact_match: mean(&|m| m.exact_match),
        token_accuracy: mean(&|m| m.token_accuracy),
        loss: mean(&|m| m.loss),
        lengths: inside.len(),
        unsupported: inside.len() - evaluated.len(),
    }
}

/// `eval.csv`: one row per length; n/a lengths have empty metric cells.
pub fn to_csv(report: &EvalReport) -> String {
    let mut out = String::from("length,tokens,exact_match,token_accuracy,loss,unsupported\n");
    for r in &report.lengths {
        let cells = match &r.metrics {
            Some(m) => format!("{},{},{}", m.exact_match, m.token_accuracy, m.loss),
            None => ",,".into(),
        };
        let why = r
            .unsupported
            .as_deref()
            .unwrap_or("")
            .replace([',', '"'], " ");
        out.push_str(&format!("{},{},{cells},{why}\n", r.length, r.tokens));
    }
    out
}

/// An evaluation option out of its range ([`EvalOptions::validate`]); `field` is spelled as its
/// source spells it (`--max-factor`, `` `eval.max_factor` ``).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOption {
    #[error("{field}: expected a positive integer, got 0")]
    Zero { field: String },
    #[error("{field}: expected at most {most}, got {got}")]
    TooLarge {
        field: String,
        most: usize,
        got: usize,
    },
    #[error("{field}: the stride must be at least 1")]
    ZeroStride { field: String },
    #[error("{field} {assignment:?}: expected KEY=VALUE")]
    NotAssignment { field: String, assignment: String },
    #[error(
        "{field} {assignment}: only the run's encoding can change at evaluation (the weights \
         are the run's); expected a key under `{OVERRIDE_PREFIX}`"
    )]
    NotEncoding { field: String, assignment: String },
    #[error(
        "{field} {assignment}: the encoding's kind is the run's (its weights were trained with \
         it); change its parameters instead"
    )]
    Kind { field: String, assignment: String },
    #[error("{field}: not an option of the attention analysis (it reads whole examples)")]
    NotAnalyzed { field: String },
}

/// An `ordo eval` option ([`parse_lengths`]) that cannot be read; each
/// variant holds the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// One comma-separated part.
    #[error("expected lengths like 1-16,32,64; got {0:?}")]
    Lengths(String),
    #[error("expected at least one length")]
    NoLengths,
    #[error(
        "{0:?}: expected lengths of at most {MAX_LENGTH} tokens, and at most {MAX_LENGTHS} of \
         them in all"
    )]
    TooMany(String),
}

/// Parses `1,2,8` and ranges `1-64` (mixed: `1-16,32,64`).
pub fn parse_lengths(text: &str) -> Result<Vec<usize>, OptionError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || OptionError::Lengths(part.to_string());
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || a == 0 {
                    return Err(bad());
                }
                if b > MAX_LENGTH || b - a >= MAX_LENGTHS - out.len().min(MAX_LENGTHS - 1) {
                    return Err(OptionError::TooMany(part.to_string()));
                }
                out.extend(a..=b);
            }
            None => {
                let n: usize = part.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?;
                if n > MAX_LENGTH || out.len() >= MAX_LENGTHS {
                    return Err(OptionError::TooMany(part.to_string()));
                }
                out.push(n);
            }
        }
    }
    if out.is_empty() {
        return Err(OptionError::NoLengths);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}
