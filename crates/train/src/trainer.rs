//! The training loop. Nothing in this file knows about positional encodings: it trains whatever
//! [`ModelConfig`](ordo_model::ModelConfig) builds on whatever task the config names.
//!
//! Run directory `<out_dir>/<name>/`:
//! - `config.toml`: the fully resolved config actually used;
//! - `tokenizer.json`: the vocabulary;
//! - `metrics.jsonl`: one JSON object per log step (`"kind": "train"`) and per evaluation
//!   (`"kind": "eval"`);
//! - `checkpoint/`: `state.json` (step, data RNG, file names) pointing at `model-<step>.bpk`,
//!   `model-<step>.json` and `optim-<step>.bpk`. Every file is written atomically and
//!   `state.json` last, so a kill at any moment leaves the previous checkpoint usable;
//! - `summary.json`: written when the run finishes.

use crate::config::RunConfig;
use crate::data::{self, Encoded};
use crate::metrics::{Metrics, evaluate};
use crate::rng::Rng;
use crate::tasks::Generator;
use crate::vocab::Vocab;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use ordo_model::checkpoint::write_atomic;
use ordo_model::{Transformer, masked_cross_entropy};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Errors a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(
        "the loss became {value} at step {step}; stopped. The last good checkpoint (step {kept}) is kept in {dir}. Lower `train.lr` or raise `train.warmup_steps`."
    )]
    NonFinite {
        value: f32,
        step: usize,
        kept: usize,
        dir: PathBuf,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] ordo_model::CheckpointError),
    #[error(
        "{dir} already holds a finished or started run; use `ordo train --resume {dir}` to continue it or choose another `name`"
    )]
    Exists { dir: PathBuf },
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TrainError {
    TrainError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// An indicatif bar (stdout is a terminal).
    Bar,
    /// Plain log lines on stdout.
    Lines,
    /// Nothing (tests).
    Quiet,
}

impl Progress {
    pub fn auto() -> Self {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub encoding: String,
    pub task: String,
    pub steps: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub valid: Metrics,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    step: usize,
    rng: Rng,
    seconds: f64,
}

/// Learning rate at `step` (0-based): linear warm-up, then cosine decay to `lr * final_lr_fraction`.
pub fn learning_rate(step: usize, cfg: &crate::config::TrainConfig) -> f64 {
    let warmup = cfg.warmup_steps.min(cfg.steps);
    if step < warmup {
        return cfg.lr * (step + 1) as f64 / warmup as f64;
    }
    let span = (cfg.steps - warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let floor = cfg.lr * cfg.final_lr_fraction;
    floor + (cfg.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Scales all gradients so that their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`; burn's own clipping works per parameter). Returns the norm before clipping.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
        ids: Vec<ParamId>,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
                self.ids.push(param.id);
            }
        }
    }
    let mut sum = SumSquares { grads, total: None };
    model.visit(&mut sum);
    let norm = match sum.total {
        Some(t) => (t.into_scalar::<f32>() as f64).sqrt(),
        None => return 0.0,
    };
    if max_norm > 0.0 && norm > max_norm {
        let mut scale = Scale {
            grads,
            factor: max_norm / (norm + 1e-6),
            ids: Vec::new(),
        };
        model.visit(&mut scale);
    }
    norm
}

/// Everything a run needs besides the model and optimizer.
struct Setup {
    config: RunConfig,
    dir: PathBuf,
    vocab: Vocab,
    generator: Generator,
    valid: Vec<Encoded>,
}

impl Setup {
    fn new(config: RunConfig, dir: PathBuf, vocab: Vocab, generator: Generator) -> Self {
        let mut valid_rng = Rng::derive(config.seed, "valid");
        let valid = data::sample(
            &generator,
            &mut valid_rng,
            config.train.eval_examples,
            config.task.train_lengths(),
            data::Split::HeldOut,
            config.model.mode,
            &vocab,
        );
        Self {
            config,
            dir,
            vocab,
            generator,
            valid,
        }
    }
}

/// Starts a new run from a validated config. `base_dir` resolves relative paths in the config.
pub fn train(
    config: RunConfig,
    base_dir: &Path,
    progress: Progress,
) -> Result<Summary, TrainError> {
    let summary = train_until(config, base_dir, progress, None)?;
    Ok(summary.expect("a run without a stop step finishes"))
}

/// Like [`train`], but stops after `stop_at` steps (if given), as a kill at that moment would;
/// `None` is returned for a run stopped early. Used to test resumption.
pub fn train_until(
    config: RunConfig,
    base_dir: &Path,
    progress: Progress,
    stop_at: Option<usize>,
) -> Result<Option<Summary>, TrainError> {
    let dir = config.run_dir();
    if dir.join("config.toml").exists() {
        return Err(TrainError::Exists { dir });
    }
    std::fs::create_dir_all(dir.join("checkpoint")).map_err(|e| file_err(&dir, e))?;
    let max_eval_len = 4 * config.task.train_lengths().1;
    let task_err = |e: crate::tasks::TaskConfigError| {
        file_err(&dir, format!("task.{}: {}", e.field, e.message))
    };
    let generator = config.task.generator(base_dir).map_err(task_err)?;
    let vocab = match config.task.tokenizer_file() {
        Some(file) => Vocab::load_adding(&base_dir.join(file), &[crate::tasks::lm::EOS])
            .map_err(|e| file_err(&dir, e))?,
        None => match generator.corpus().and_then(|c| c.trained.clone()) {
            // A BPE tokenizer trained on the corpus has every special token already.
            Some(trained) => Vocab::from_tokenizer(trained).map_err(|e| file_err(&dir, e))?,
            None => Vocab::word_level(&generator.symbols(max_eval_len)),
        },
    };
    vocab
        .save(&dir.join("tokenizer.json"))
        .map_err(|e| file_err(&dir.join("tokenizer.json"), e))?;
    // Relative paths (a lexicon, a corpus) are stored resolved so the run directory stands alone.
    let mut config = config;
    resolve_paths(&mut config.task, base_dir);
    write_atomic(&dir.join("config.toml"), config.to_toml().as_bytes())
        .map_err(|e| file_err(&dir.join("config.toml"), e))?;
    std::fs::File::create(dir.join("metrics.jsonl")).map_err(|e| file_err(&dir, e))?;

    let device = crate::device::parse(&config.device)
        .expect("validated")
        .autodiff();
    let model = init_model(&config, vocab.len(), &device);
    let optim = optimizer(&config);
    let setup = Setup::new(config.clone(), dir, vocab, generator);
    let state = State {
        step: 0,
        rng: Rng::derive(config.seed, "train"),
        seconds: 0.0,
    };
    run(setup, model, optim, state, progress, stop_at)
}

/// Continues the run in `dir` from its last checkpoint.
pub fn resume(dir: &Path, progress: Progress) -> Result<Summary, TrainError> {
    let config_path = dir.join("config.toml");
    let config = crate::config::load(&config_path, &[])?;
    let vocab = Vocab::load(&dir.join("tokenizer.json")).map_err(|e| file_err(dir, e))?;
    let ckpt = dir.join("checkpoint");
    let state_path = ckpt.join("state.json");
    let state: State = match std::fs::read_to_string(&state_path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| file_err(&state_path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State {
            // Killed before the first checkpoint: start over from step 0.
            step: 0,
            rng: Rng::derive(config.seed, "train"),
            seconds: 0.0,
        },
        Err(e) => return Err(file_err(&state_path, e)),
    };
    let device = crate::device::parse(&config.device)
        .expect("validated")
        .autodiff();
    let (model, optim) = if state.step == 0 {
        (
            init_model(&config, vocab.len(), &device),
            optimizer(&config),
        )
    } else {
        let stem = model_stem(dir, state.step);
        let model = ordo_model::load_model(&config.model, vocab.len(), &stem, &device)?;
        let optim_path = ckpt.join(format!("optim-{:06}.bpk", state.step));
        let bytes = std::fs::read(&optim_path).map_err(|e| file_err(&optim_path, e))?;
        let optim = optimizer(&config)
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| file_err(&optim_path, format!("{e:?}")))?;
        (model, optim)
    };
    truncate_metrics(&dir.join("metrics.jsonl"), state.step)?;
    let generator = config
        .task
        .generator(dir)
        .map_err(|e| file_err(dir, format!("task.{}: {}", e.field, e.message)))?;
    let setup = Setup::new(config, dir.to_path_buf(), vocab, generator);
    let summary = run(setup, model, optim, state, progress, None)?;
    Ok(summary.expect("a run without a stop step finishes"))
}

/// burn's random initialisers and dropout draw from one process-wide generator. Runs trained
/// side by side in one process (`ordo ablate --jobs`, parallel tests) would interleave their
/// seeds and draws, so whoever seeds it holds this lock until its draws are done: the whole
/// initialisation, and each training step's forward pass when dropout is on. The same seed
/// then gives the same run, alone or beside others.
fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn init_model(config: &RunConfig, vocab_size: usize, device: &Device) -> Transformer {
    let _rng = rng_lock();
    device.seed(config.seed);
    let model = config.model.init(vocab_size, device);
    // Parameters are initialised lazily, on first use: force them while the lock is held.
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
    model
}

fn optimizer(config: &RunConfig) -> burn::optim::ModuleOptimizer {
    let t = &config.train;
    AdamWConfig::new()
        .with_beta_1(t.beta1 as f32)
        .with_beta_2(t.beta2 as f32)
        .with_epsilon(t.epsilon as f32)
        .with_weight_decay(t.weight_decay as f32)
        .init()
}

/// Keeps only metric lines up to `step` (lines written after the checkpoint are redone).
fn truncate_metrics(path: &Path, step: usize) -> Result<(), TrainError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(file_err(path, e)),
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s as usize <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write_atomic(path, kept.as_bytes()).map_err(|e| file_err(path, e))
}

struct Log {
    file: std::fs::File,
    path: PathBuf,
}

impl Log {
    fn write(&mut self, value: serde_json::Value) -> Result<(), TrainError> {
        writeln!(self.file, "{value}")
            .and_then(|_| self.file.flush())
            .map_err(|e| file_err(&self.path, e))
    }
}

fn save_checkpoint(
    setup: &Setup,
    model: &Transformer,
    optim: &burn::optim::ModuleOptimizer,
    state: &State,
) -> Result<(), TrainError> {
    let ckpt = setup.dir.join("checkpoint");
    let stem = model_stem(&setup.dir, state.step);
    ordo_model::save_model(model, &setup.config.model, setup.vocab.len(), &stem)?;
    let optim_path = ckpt.join(format!("optim-{:06}.bpk", state.step));
    let bytes = optim
        .into_bytes()
        .map_err(|e| file_err(&optim_path, format!("{e:?}")))?;
    write_atomic(&optim_path, &bytes).map_err(|e| file_err(&optim_path, e))?;
    let state_path = ckpt.join("state.json");
    let text = serde_json::to_string_pretty(state).expect("state serialises");
    write_atomic(&state_path, text.as_bytes()).map_err(|e| file_err(&state_path, e))?;
    // Only now that state.json points at the new files may older ones go.
    let keep = format!("{:06}", state.step);
    if let Ok(entries) = std::fs::read_dir(&ckpt) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old =
                (name.starts_with("model-") || name.starts_with("optim-")) && !name.contains(&keep);
            if old {
                std::fs::remove_file(entry.path()).ok();
            }
        }
    }
    Ok(())
}

fn run(
    setup: Setup,
    model: Transformer,
    optim: burn::optim::ModuleOptimizer,
    state: State,
    progress: Progress,
    stop_at: Option<usize>,
) -> Result<Option<Summary>, TrainError> {
    crate::device::on_compute_pool(|| run_steps(setup, model, optim, state, progress, stop_at))
}

fn run_steps(
    setup: Setup,
    mut model: Transformer,
    mut optim: burn::optim::ModuleOptimizer,
    mut state: State,
    progress: Progress,
    stop_at: Option<usize>,
) -> Result<Option<Summary>, TrainError> {
    let cfg = &setup.config;
    let t = &cfg.train;
    let device = crate::device::parse(&cfg.device)
        .expect("validated")
        .autodiff();
    let eval_device = crate::device::parse(&cfg.device).expect("validated");
    let metrics_path = setup.dir.join("metrics.jsonl");
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&metrics_path)
        .map_err(|e| file_err(&metrics_path, e))?;
    let mut log = Log {
        file,
        path: metrics_path,
    };
    let bar = match progress {
        Progress::Bar => {
            let bar = indicatif::ProgressBar::new(t.steps as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(cfg.name.clone());
            bar.set_position(state.step as u64);
            Some(bar)
        }
        _ => None,
    };
    let say = |line: String| match progress {
        Progress::Bar => bar.as_ref().expect("bar").println(line),
        Progress::Lines => println!("{line}"),
        Progress::Quiet => {}
    };

    let started = Instant::now();
    let seconds_before = state.seconds;
    let (mut window_tokens, mut window_loss, mut window_steps) = (0usize, 0.0f64, 0usize);
    let mut window_start = Instant::now();
    let mut last_valid: Option<Metrics> = None;
    let mut total_tokens = 0usize;
    let eval_now = |model: &Transformer| {
        evaluate(
            &model.valid(),
            &setup.valid,
            t.batch_size.max(64),
            setup.vocab.pad,
            &eval_device,
        )
    };

    while state.step < t.steps {
        if stop_at.is_some_and(|stop| state.step >= stop) {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            return Ok(None);
        }
        let step = state.step;
        let lr = learning_rate(step, t);
        let items = data::sample(
            &setup.generator,
            &mut state.rng,
            t.batch_size,
            cfg.task.train_lengths(),
            data::Split::Train,
            cfg.model.mode,
            &setup.vocab,
        );
        let tokens: usize = items.iter().map(Encoded::tokens).sum();
        let batch = data::collate(&items, setup.vocab.pad, &device);
        // Dropout masks depend on (seed, step) only, so a resumed run matches; they are drawn in
        // the forward pass, under the generator's lock (see `rng_lock`).
        let rng = (cfg.model.dropout > 0.0).then(|| {
            let guard = rng_lock();
            device.seed(cfg.seed.wrapping_mul(1_000_003).wrapping_add(step as u64));
            guard
        });
        let logits = model.forward(&batch.batch);
        drop(rng);
        let loss = masked_cross_entropy(logits, batch.targets, batch.weights);
        let loss_value: f32 = loss.clone().into_scalar();
        if !loss_value.is_finite() {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            let kept = read_state_step(&setup.dir);
            return Err(TrainError::NonFinite {
                value: loss_value,
                step: step + 1,
                kept,
                dir: setup.dir.clone(),
            });
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let grad_norm = clip_global_norm(&model, &mut grads, t.grad_clip);
        model = optim.step(lr, model, grads);
        state.step += 1;

        window_tokens += tokens;
        total_tokens += tokens;
        window_loss += loss_value as f64;
        window_steps += 1;
        let step = state.step;
        if let Some(bar) = &bar {
            bar.set_position(step as u64);
        }

        if step.is_multiple_of(t.log_every) || step == t.steps {
            let elapsed = window_start.elapsed().as_secs_f64();
            let tps = window_tokens as f64 / elapsed.max(1e-9);
            let mean_loss = window_loss / window_steps as f64;
            log.write(serde_json::json!({
                "kind": "train", "step": step, "loss": mean_loss, "lr": lr,
                "grad_norm": grad_norm, "tokens_per_second": tps,
                "elapsed": seconds_before + started.elapsed().as_secs_f64(),
            }))?;
            let acc = last_valid
                .map(|m| format!(" valid_em {:.3}", m.exact_match))
                .unwrap_or_default();
            match &bar {
                Some(bar) => bar.set_message(format!("loss {mean_loss:.4}{acc} {tps:.0} tok/s")),
                None => say(format!(
                    "{} step {step}/{} loss {mean_loss:.4}{acc} lr {lr:.2e} {tps:.0} tok/s",
                    cfg.name, t.steps
                )),
            }
            (window_tokens, window_loss, window_steps) = (0, 0.0, 0);
            window_start = Instant::now();
        }
        if step.is_multiple_of(t.eval_every) || step == t.steps {
            let m = eval_now(&model);
            log.write(serde_json::json!({
                "kind": "eval", "step": step, "loss": m.loss, "perplexity": m.perplexity(),
                "token_accuracy": m.token_accuracy, "exact_match": m.exact_match,
                "examples": m.examples,
            }))?;
            say(format!(
                "{} eval step {step}: loss {:.4} token_acc {:.4} exact_match {:.4}",
                cfg.name, m.loss, m.token_accuracy, m.exact_match
            ));
            last_valid = Some(m);
            window_start = Instant::now();
        }
        if step.is_multiple_of(t.checkpoint_every) || step == t.steps {
            state.seconds = seconds_before + started.elapsed().as_secs_f64();
            save_checkpoint(&setup, &model, &optim, &state)?;
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let valid = match last_valid {
        Some(m) => m,
        None => eval_now(&model),
    };
    let seconds = seconds_before + started.elapsed().as_secs_f64();
    let summary = Summary {
        name: cfg.name.clone(),
        encoding: cfg.model.encoding.kind().into(),
        task: cfg.task.kind().into(),
        steps: t.steps,
        seconds,
        tokens_per_second: total_tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
        valid,
    };
    let path = setup.dir.join("summary.json");
    write_atomic(
        &path,
        serde_json::to_string_pretty(&summary)
            .expect("json")
            .as_bytes(),
    )
    .map_err(|e| file_err(&path, e))?;
    Ok(Some(summary))
}

fn read_state_step(dir: &Path) -> usize {
    last_checkpoint(dir).map(|(step, _)| step).unwrap_or(0)
}

/// The checkpoint files of `step` in a run directory: `<stem>.bpk` and `<stem>.json`.
pub fn model_stem(run_dir: &Path, step: usize) -> PathBuf {
    run_dir.join("checkpoint").join(format!("model-{step:06}"))
}

/// The step of a run's last checkpoint and its model stem (see [`model_stem`]).
pub fn last_checkpoint(run_dir: &Path) -> Result<(usize, PathBuf), String> {
    let path = run_dir.join("checkpoint").join("state.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: no checkpoint ({e})", path.display()))?;
    let state: State =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((state.step, model_stem(run_dir, state.step)))
}

/// Makes relative file paths in the task absolute (against the config's directory).
fn resolve_paths(task: &mut crate::tasks::TaskConfig, base_dir: &Path) {
    use crate::tasks::TaskConfig;
    let paths: Vec<&mut PathBuf> = match task {
        TaskConfig::BigramShift {
            lexicon: Some(path),
            ..
        }
        | TaskConfig::Agent {
            lexicon: Some(path),
            ..
        } => vec![path],
        TaskConfig::Lm {
            corpus, tokenizer, ..
        } => match tokenizer {
            crate::tasks::LmTokenizer::File(file) => vec![corpus, file],
            _ => vec![corpus],
        },
        _ => vec![],
    };
    for path in paths {
        if path.is_relative() {
            let joined = base_dir.join(&*path);
            *path = std::path::absolute(&joined).unwrap_or(joined);
        }
    }
}
