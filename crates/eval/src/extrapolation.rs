//! `ordo eval RUN_DIR`: a trained model on freshly generated sets at each length.
//!
//! For every length `n` (default `1..=4L`, `L` the longest training length) the task generates
//! `examples` new examples (seeded by the run's seed and `n`, so every encoding of a study sees
//! the same data) and we measure exact match, token accuracy and loss. Lengths a model cannot
//! represent (a learned table too short, a vocabulary without the needed tokens) are recorded
//! as n/a with the reason. Means are reported over three buckets: in-distribution `[min, L]`,
//! near `(L, 2L]` and far `(2L, 4L]`.
//!
//! Each length also keeps what a bootstrap over its examples needs ([`Outcomes`]): the count of
//! exactly right examples (exact match is Bernoulli per example, so the count is enough) and,
//! when the headline is perplexity, each window's summed loss and token count. `eval.json` files
//! written before these fields existed still load; their reports show no interval.

use burn::prelude::*;
use ordo_encodings::{PositionalEncoding, RopeScaling};
use ordo_model::{AttentionMode, Transformer};
use ordo_train::config::RunConfig;
use ordo_train::data;
use ordo_train::metrics::{Metrics, evaluate_examples};
use ordo_train::rng::Rng;
use ordo_train::run_dir::{EvalVariant, RunDir, RunDirError, RunLock};
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

/// The checks every evaluation's counts pass, `ordo eval`'s options and an experiment's
/// `[eval]` alike: each positive, `max_factor` at most [`MAX_FACTOR`], `examples` and
/// `batch_size` at most [`MAX_EXAMPLES`]. `name` spells a field as its source does
/// (`--max-factor`, `` `eval.max_factor` ``).
pub fn check_counts(
    max_factor: usize,
    examples: usize,
    batch_size: usize,
    name: &dyn Fn(&str) -> String,
) -> Result<(), String> {
    for (key, value, most) in [
        ("max_factor", max_factor, MAX_FACTOR),
        ("examples", examples, MAX_EXAMPLES),
        ("batch_size", batch_size, MAX_EXAMPLES),
    ] {
        if value == 0 {
            return Err(format!("{}: expected a positive integer, got 0", name(key)));
        }
        if value > most {
            return Err(format!(
                "{}: expected at most {most}, got {value}",
                name(key)
            ));
        }
    }
    Ok(())
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Lengths to test; `None` = every length from the task's minimum to `max_factor * L`.
    pub lengths: Option<Vec<usize>>,
    pub max_factor: usize,
    /// Examples per length; `lm`: the scored text is the first `examples × context` held-out
    /// tokens (or all of them), the same at every length.
    pub examples: usize,
    pub batch_size: usize,
    /// RoPE frequency scaling applied at evaluation time (ignored, and reported so, for other
    /// schemes).
    pub rope_scaling: Option<RopeScaling>,
    /// `lm` only: sliding windows with this stride, scoring only each window's last `stride`
    /// tokens (every token then has at least `len - stride` tokens of context), instead of
    /// consecutive blocks of `len` targets. Either way every length scores the same text, each
    /// token once (see `ordo_train::tasks::lm`).
    pub sliding: Option<usize>,
    /// Device name; `None` = the run's.
    pub device: Option<String>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            lengths: None,
            max_factor: 4,
            examples: 128,
            batch_size: 128,
            rope_scaling: None,
            sliding: None,
            device: None,
        }
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

/// The options an evaluation ran with, recorded in `eval.json` so that `ordo ablate` can tell
/// its own evaluation of a cell from another one (a partial manual `ordo eval --lengths 1-4`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRecord {
    /// Lengths asked for (`None`: the default set).
    pub lengths: Option<Vec<usize>>,
    pub max_factor: usize,
    pub examples: usize,
    /// RoPE scaling name (`none`, `yarn4`, ...).
    pub scaling: String,
    pub sliding: Option<usize>,
}

impl EvalOptions {
    /// What `eval.json` records of these options (not the batch size or device, which change
    /// nothing measured).
    pub fn record(&self) -> EvalRecord {
        EvalRecord {
            lengths: self.lengths.clone(),
            max_factor: self.max_factor,
            examples: self.examples,
            scaling: self
                .rope_scaling
                .as_ref()
                .map(scaling_name)
                .unwrap_or_else(|| "none".into()),
            sliding: self.sliding,
        }
    }

    /// Which `eval*.json` these options write.
    pub fn variant(&self) -> EvalVariant {
        EvalVariant {
            scaling: self.rope_scaling.as_ref().map(scaling_name),
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
    /// The RoPE scaling used, or "none".
    pub scaling: String,
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
}

impl EvalReport {
    /// The headline metric (for an `eval.json` written before it was recorded, see
    /// [`Headline::of_unrecorded`]).
    pub fn headline(&self) -> Headline {
        self.headline
            .unwrap_or_else(|| Headline::of_unrecorded(&self.task))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {message}")]
    Run { path: PathBuf, message: String },
    #[error(transparent)]
    Checkpoint(#[from] ordo_model::CheckpointError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
}

fn run_err(path: &Path, message: impl std::fmt::Display) -> EvalError {
    EvalError::Run {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
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
    let run = RunDir::new(dir);
    if !run.is_run() {
        return Err(run_err(dir, "not a run directory (no config.toml)"));
    }
    run.check_inputs()?;
    let (config, generator) =
        ordo_train::trainer::load_run_config(&run).map_err(|e| run_err(dir, e))?;
    let vocab = Vocab::load(&run.tokenizer()).map_err(|e| run_err(dir, e))?;
    let (step, stem) = ordo_train::trainer::last_checkpoint(&run)?;
    let device_name = device.unwrap_or(&config.device);
    let device = ordo_train::device::parse(device_name).map_err(|e| run_err(dir, e))?;
    let model = ordo_model::load_model(&config.model, vocab.len(), &stem, &device)?;
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
/// (with a `-<scaling>` suffix when RoPE scaling is applied), holding the run's lock.
pub fn evaluate_run(dir: &Path, options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let run = RunDir::new(dir);
    if !run.is_run() {
        return Err(run_err(dir, "not a run directory (no config.toml)"));
    }
    let lock = run.lock("evaluating")?;
    evaluate_locked(&lock, options)
}

/// [`evaluate_run`] in a run directory whose lock the caller holds.
pub fn evaluate_locked(lock: &RunLock, options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let dir = lock.dir().path();
    let mut run = load_run(dir, options.device.as_deref())?;
    let scaling = match (&options.rope_scaling, run.model.encoding_mut()) {
        (None, _) => "none".to_string(),
        (Some(s), PositionalEncoding::Rope(rope)) => {
            let mut s = s.clone();
            // YaRN's ramp and dynamic NTK's growth are defined over the training context: the
            // longest training sequence, unless the scaling names one.
            if let Some(original_max_len) = s.original_max_len_mut()
                && *original_max_len == 0
            {
                *original_max_len =
                    data::longest_sequence(&run.config.task, run.config.model.mode, dir)
                        .map_err(|e| run_err(dir, e))?;
            }
            rope.set_scaling(s.clone());
            scaling_name(&s)
        }
        (Some(_), _) => {
            return Err(run_err(
                dir,
                format!(
                    "--rope-scaling applies to RoPE models only; this run uses `{}`",
                    run.config.model.encoding.kind()
                ),
            ));
        }
    };
    if options.sliding.is_some() && !run.config.task.sliding_windows() {
        return Err(run_err(
            dir,
            format!(
                "--sliding applies to tasks evaluated on a held-out text only; this run's task \
                 is `{}`",
                run.config.task.kind()
            ),
        ));
    }
    let mut report = evaluate_loaded(&run, options, scaling)?;
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
/// (a manual `ordo eval --lengths 1-4` of a cell, an `[eval]`-only rerun), the old `eval*.json`
/// and `eval*.csv` are renamed to `eval*.before-<n>.json`/`.csv` (`n` = 1, 2, ...), so nothing
/// measured is lost. An evaluation equal in options and checkpoint is simply rewritten.
fn keep_previous(
    run_dir: &RunDir,
    variant: &ordo_train::run_dir::EvalVariant,
    new: &EvalReport,
) -> Result<(), EvalError> {
    let json = run_dir.eval_json(variant);
    let Ok(old) = run_dir.read_json::<EvalReport>(&json) else {
        return Ok(());
    };
    if old.options == new.options && old.checkpoint_step == new.checkpoint_step {
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
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| EvalError::from(ordo_train::run_dir::RunDirError::Io { path, cause })
    };
    if csv.is_file() {
        std::fs::rename(&csv, with_suffix(&csv, n)).map_err(io(&csv))?;
    }
    std::fs::rename(&json, with_suffix(&json, n)).map_err(io(&json))?;
    ordo_model::checkpoint::sync_parent(&json);
    Ok(())
}

/// A short name for a scaling, used in file names and reports: its kind and factor (`linear4`,
/// `dynamic4`, `yarn4`, `yarn_paper4`), or `none`.
pub fn scaling_name(s: &RopeScaling) -> String {
    match s {
        RopeScaling::None => "none".into(),
        _ => format!("{}{}", s.kind(), s.factor()),
    }
}

/// Evaluates an already loaded run.
pub fn evaluate_loaded(
    run: &LoadedRun,
    options: &EvalOptions,
    scaling: String,
) -> Result<EvalReport, EvalError> {
    ordo_train::device::on_compute_pool(|| evaluate_on_this_thread(run, options, scaling))
}

fn evaluate_on_this_thread(
    run: &LoadedRun,
    options: &EvalOptions,
    scaling: String,
) -> Result<EvalReport, EvalError> {
    let cfg = &run.config;
    let generator = &run.generator;
    ordo_train::trainer::check_vocab(generator, cfg, &RunDir::new(&run.dir), &run.vocab)
        .map_err(|e| run_err(&run.dir, e))?;
    let (min_len, max_len) = cfg.task.train_lengths();
    let headline = generator.headline();
    let lengths: Vec<usize> = match &options.lengths {
        Some(l) => l.clone(),
        None => generator.eval_lengths(max_len, options.max_factor),
    };
    // Refuse lengths whose evaluation would not fit in memory, before allocating anything.
    let longest = lengths.iter().copied().max().unwrap_or(max_len);
    // (Loading the config checked the default reach, EVAL_FACTOR times the training length.)
    if longest > max_len.saturating_mul(ordo_train::config::EVAL_FACTOR) {
        cfg.check_memory(generator, longest.div_ceil(max_len.max(1)))
            .map_err(|e| run_err(&run.dir, format!("--lengths/--max-factor: {e}")))?;
    }
    if headline == Headline::ExactMatch
        && options.examples.saturating_mul(longest) > MAX_EVAL_TOKENS
    {
        return Err(run_err(
            &run.dir,
            format!(
                "--examples {} at length {longest} would generate {} tokens; expected at most \
                 {MAX_EVAL_TOKENS} (fewer examples, or shorter lengths)",
                options.examples,
                options.examples.saturating_mul(longest)
            ),
        ));
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
        let unsupported = if let Some(token) = missing {
            Some(format!("the vocabulary has no token {token:?}"))
        } else {
            run.model.unsupported(tokens)
        };
        let metrics = match &unsupported {
            Some(_) => None,
            None => {
                let examples = generator.eval_set(&mut rng, len, options.examples, options.sliding);
                let items: Vec<_> = examples
                    .iter()
                    .map(|(e, skip)| {
                        let mut item = data::encode(e, len, cfg.model.mode, &run.vocab);
                        // Unscored predictions: the first `skip` answer tokens.
                        let first = item.weight.iter().position(|&w| w > 0.0).unwrap_or(0);
                        for w in item.weight.iter_mut().skip(first).take(*skip) {
                            *w = 0.0;
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
    let buckets = Buckets {
        in_distribution: bucket(&results, |l| l >= min_len && l <= max_len),
        near: bucket(&results, |l| l > max_len && l <= 2 * max_len),
        far: bucket(&results, |l| l > 2 * max_len && l <= 4 * max_len),
    };
    Ok(EvalReport {
        run: cfg.name.clone(),
        task: cfg.task.kind().into(),
        encoding: cfg.model.encoding.kind().into(),
        mode: cfg.model.mode,
        seed: cfg.seed,
        train_min_len: min_len,
        train_max_len: max_len,
        scaling,
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

/// Parses `KIND:FACTOR`, `KIND` one of [`RopeScaling::KINDS`] (`linear:4`, `ntk:4`,
/// `dynamic:4`, `yarn:4`, `yarn_paper:4`), every other parameter at its default and the original
/// context left for [`evaluate_run`] to fill in (the longest training sequence).
pub fn parse_scaling(text: &str) -> Result<RopeScaling, OptionError> {
    let (kind, factor) = text
        .split_once(':')
        .ok_or_else(|| OptionError::ScalingSyntax(text.to_string()))?;
    let factor: f64 = factor
        .parse()
        .ok()
        .filter(|f: &f64| *f >= 1.0 && f.is_finite())
        .ok_or_else(|| OptionError::ScalingFactor(text.to_string()))?;
    RopeScaling::from_kind(kind, factor)
        .ok_or_else(|| OptionError::UnknownScaling(kind.to_string()))
}

/// An `ordo eval` option ([`parse_scaling`], [`parse_lengths`]) that cannot be read; each
/// variant holds the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error(
        "expected KIND:FACTOR with KIND one of {}; got {:?}",
        RopeScaling::KINDS.join(", "),
        .0
    )]
    ScalingSyntax(String),
    #[error("expected a factor >= 1 in {0:?}")]
    ScalingFactor(String),
    #[error(
        "unknown RoPE scaling {:?}; expected one of {}",
        .0,
        RopeScaling::KINDS.join(", ")
    )]
    UnknownScaling(String),
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
