//! The training loop. Nothing in this file knows about positional encodings: it trains whatever
//! [`ModelConfig`](ordo_model::ModelConfig) builds on whatever task the config names.
//!
//! The run directory `<out_dir>/<name>/` and its files are [`RunDir`]'s: a run holds its lock
//! while it trains; every file is written atomically and `checkpoint/state.json` last, so a kill
//! at any moment leaves the previous checkpoint usable. A run whose loss, gradient norm,
//! held-out loss or parameters stop being finite stops at once, without writing a checkpoint of
//! the broken model ([`TrainError::NonFinite`]).

use crate::config::{Precision, RunConfig};
use crate::data::{self, Encoded};
pub use crate::error::TrainError;
pub use crate::hooks::Progress;
use crate::metrics::{Metrics, evaluate};
use crate::rng::Rng;
use crate::run_dir::{AtPath, RunDir, RunDirError, RunLock, WithPath};
use crate::tasks::Generator;
use crate::vocab::Vocab;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use ordo_model::kernels::with_precision;
use ordo_model::{Transformer, masked_cross_entropy};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// What the run was warned of at its start (an encoder whose position signal starts too
    /// weak: [`ordo_model::ModelConfig::encoder_warning`]); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `train.precision = "bf16"`: the kernel that ran the bf16 products in the process that
    /// finished the run (`"oneDNN 2.6.3 (avx512_core_amx)"`, `"AVX512-BF16 (ordo's kernel)"`:
    /// [`ordo_model::kernels::bf16::Unit::describe`], chosen by `ORDO_BF16_KERNEL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bf16_kernel: Option<String>,
}

use crate::hooks::TrainState as State;

impl State {
    /// Step 0 of a run with this seed.
    fn fresh(seed: u64) -> State {
        State {
            step: 0,
            rng: Rng::derive(seed, "train"),
            seconds: 0.0,
        }
    }
}

/// Applies `--device` and `--precision` (checked here, so a bad value is an error naming the
/// run) and returns the device the run trains on.
fn training_device(
    config: &mut RunConfig,
    options: &TrainOptions,
    dir: &Path,
) -> Result<Device, TrainError> {
    if let Some(device) = &options.device {
        crate::device::parse(device)
            .at(dir)
            .map_err(TrainError::Device)?;
        config.device = device.clone();
    }
    if let Some(precision) = options.precision {
        config.train.precision = precision;
    }
    let device = crate::device::parse(&config.device)
        .expect("validated")
        .autodiff();
    if config.train.precision == Precision::Bf16 {
        ordo_model::kernels::bf16_runs_on(&device).map_err(|why| TrainError::Precision {
            dir: dir.to_path_buf(),
            why,
        })?;
    }
    Ok(device)
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
    run: RunDir,
    vocab: Vocab,
    generator: Generator,
    valid: Vec<Encoded>,
    /// Whether this process still holds the run (see [`crate::run_dir::Claim`]).
    held: crate::run_dir::Held,
}

impl Setup {
    fn new(
        config: RunConfig,
        run: RunDir,
        vocab: Vocab,
        generator: Generator,
        held: crate::run_dir::Held,
    ) -> Self {
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
            run,
            vocab,
            generator,
            valid,
            held,
        }
    }
}

/// How a run is driven, new or resumed.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    pub progress: Progress,
    /// Stop after this many steps, as a kill at that moment would (tests of resumption).
    pub stop_at: Option<usize>,
    /// Train on this device instead of the config's (`cpu`, `ndarray`, `wgpu`): checkpoints do
    /// not depend on the backend, so a run resumes on another one. The run's config keeps its
    /// device.
    pub device: Option<String>,
    /// The dense products' number format for this process (`--precision`), instead of the
    /// config's `train.precision`: checkpoints are fp32 either way, so a run resumes in either.
    /// The run's config keeps its precision.
    pub precision: Option<Precision>,
}

impl TrainOptions {
    pub fn new(progress: Progress) -> Self {
        Self {
            progress,
            stop_at: None,
            device: None,
            precision: None,
        }
    }
}

/// One run ready to train: a new one ([`Trainer::start`]) or an existing one reopened at its
/// last checkpoint ([`Trainer::resume`]); [`Trainer::run`] trains it to the end (or to
/// `stop_at`). The caller holds the run's lock.
pub struct Trainer {
    setup: Setup,
    model: Transformer,
    optim: burn::optim::ModuleOptimizer,
    state: State,
    options: TrainOptions,
}

impl Trainer {
    /// A new run from a validated config (`base_dir`, the config file's directory, resolves
    /// its relative paths), with its task already loaded by
    /// [`crate::config::load_with_task`] or, `None`, loaded here. Writes the run directory's
    /// config, tokenizer and inputs.
    pub fn start(
        lock: &RunLock,
        config: RunConfig,
        generator: Option<Generator>,
        base_dir: &Path,
        options: TrainOptions,
    ) -> Result<Self, TrainError> {
        start(lock, config, generator, base_dir, options)
    }

    /// The run in `lock`'s directory, reopened ([`RunDir::open`]) at its last checkpoint.
    pub fn resume(lock: &RunLock, options: TrainOptions) -> Result<Self, TrainError> {
        resume_in(lock, options)
    }

    /// Trains to the end; `None` for a run stopped at `stop_at`.
    pub fn run(self) -> Result<Option<Summary>, TrainError> {
        let Trainer {
            setup,
            model,
            optim,
            state,
            options,
        } = self;
        // The held-out evaluations between steps run in the run's precision too.
        let precision = setup.config.train.precision;
        crate::device::on_compute_pool(|| {
            with_precision(precision, || run_steps(setup, model, optim, state, options))
        })
    }
}

/// Trains a new run from a validated config to the end, taking its lock (`base_dir` resolves
/// relative paths in the config).
pub fn train(
    config: RunConfig,
    base_dir: &Path,
    progress: Progress,
) -> Result<Summary, TrainError> {
    let summary = train_with(config, None, base_dir, TrainOptions::new(progress))?;
    Ok(summary.expect("a run without a stop step finishes"))
}

/// [`train`] with every option, and the task if already loaded; `None` for a run stopped at
/// `stop_at`.
pub fn train_with(
    config: RunConfig,
    generator: Option<Generator>,
    base_dir: &Path,
    options: TrainOptions,
) -> Result<Option<Summary>, TrainError> {
    let lock = RunDir::new(config.run_dir()).lock("training")?;
    Trainer::start(&lock, config, generator, base_dir, options)?.run()
}

/// Continues the run in `dir` from its last checkpoint, taking its lock.
pub fn resume(dir: &Path, options: TrainOptions) -> Result<Summary, TrainError> {
    let run = RunDir::new(dir);
    if !run.is_run() {
        return Err(crate::open::OpenError::NotARun(dir.to_path_buf()).into());
    }
    let lock = run.lock("resuming")?;
    let summary = Trainer::resume(&lock, options)?.run()?;
    Ok(summary.expect("a run without a stop step finishes"))
}

fn start(
    lock: &RunLock,
    config: RunConfig,
    generator: Option<Generator>,
    base_dir: &Path,
    options: TrainOptions,
) -> Result<Trainer, TrainError> {
    let run = lock.dir().clone();
    let dir = run.path().to_path_buf();
    // A directory that holds files but no run is someone else's: never train into it.
    let foreign: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    if !run.is_run() && !foreign.is_empty() {
        return Err(TrainError::NotARun {
            dir,
            found: foreign.into_iter().take(3).collect::<Vec<_>>().join(", "),
        });
    }
    if run.is_run() {
        return Err(TrainError::Exists { dir });
    }
    std::fs::create_dir_all(run.checkpoint_dir()).at(&dir)?;
    // The vocabulary covers every evaluation the config was checked for (positions' index tokens).
    let max_eval_len = crate::config::EVAL_FACTOR * config.task.train_lengths().1;
    let generator = match generator {
        Some(generator) => generator,
        None => config
            .task
            .generator(base_dir)
            .at(&dir)
            .map_err(TrainError::Task)?,
    };
    let vocab = generator.vocab(max_eval_len).at(&dir)?;
    let tokenizer = vocab.to_json().at(&run.tokenizer())?;
    run.write(&run.tokenizer(), tokenizer.as_bytes())?;
    // Input paths are stored relative to the run directory, with their content hashes, so the
    // run directory stands alone (moved together with its data, it still resumes and evaluates;
    // a changed input is an error, not a silently different run).
    let config = stored_config(&config, base_dir);
    let mut inputs = config.task.input_paths();
    inputs.push(("tokenizer.json".into(), PathBuf::from("tokenizer.json")));
    run.record_inputs(&inputs)?;
    run.record_session("train", &config.task.builtin_inputs())?;
    run.write(&run.config(), config.to_toml().as_bytes())?;
    std::fs::File::create(run.metrics()).at(&run.metrics())?;

    let mut config = config;
    let device = training_device(&mut config, &options, &dir)?;
    let model = init_model(&config, vocab.len(), &device);
    let optim = optimizer(&config);
    let state = State::fresh(config.seed);
    let setup = Setup::new(config, run, vocab, generator, lock.held());
    Ok(Trainer {
        setup,
        model,
        optim,
        state,
        options,
    })
}

fn resume_in(lock: &RunLock, options: TrainOptions) -> Result<Trainer, TrainError> {
    let crate::open::OpenRun {
        dir: run,
        mut config,
        generator,
        vocab,
        checkpoint,
    } = lock.dir().open(&[])?;
    let dir = run.path().to_path_buf();
    let device = training_device(&mut config, &options, &dir)?;
    run.record_session("resume", &config.task.builtin_inputs())?;
    let state: State = match checkpoint {
        Some(_) => run.read_json(&run.state())?,
        // Killed before the first checkpoint: start over from step 0.
        None => State::fresh(config.seed),
    };
    let (model, optim) = if state.step == 0 {
        (
            init_model(&config, vocab.len(), &device),
            optimizer(&config),
        )
    } else {
        let stem = run.model_stem(state.step);
        let model = ordo_model::load_model(&config.model, vocab.len(), &stem, &device)?;
        let optim_path = run.optimizer(state.step);
        let bytes = std::fs::read(&optim_path).at(&optim_path)?;
        let optim = optimizer(&config)
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .at(&optim_path)?;
        (model, optim)
    };
    truncate_metrics(&run.metrics(), state.step)?;
    let setup = Setup::new(config, run, vocab, generator, lock.held());
    Ok(Trainer {
        setup,
        model,
        optim,
        state,
        options,
    })
}

impl StepOptions {
    /// The options of step `step` (0-based) of a run: its clipping, and dropout masks that
    /// depend on (seed, step) only, so that a resumed run matches an uninterrupted one.
    fn of_run(cfg: &RunConfig, lr: f64, step: usize, poison_gradients: bool) -> StepOptions {
        StepOptions {
            lr,
            grad_clip: cfg.train.grad_clip,
            dropout_seed: (cfg.model.dropout > 0.0)
                .then(|| cfg.seed.wrapping_mul(1_000_003).wrapping_add(step as u64)),
            poison_gradients,
            precision: cfg.train.precision,
        }
    }
}

/// How [`step`] steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOptions {
    pub lr: f64,
    /// Global gradient-norm clipping; 0 disables it.
    pub grad_clip: f64,
    /// For a model with dropout: the seed of this step's dropout masks.
    pub dropout_seed: Option<u64>,
    /// Fault injection for tests (see [`fault`]).
    pub poison_gradients: bool,
    /// The dense products' number format ([`ordo_model::kernels::with_precision`]).
    pub precision: Precision,
}

/// What one step measured, before the update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    pub loss: f32,
    pub grad_norm: f64,
}

/// A step that met a non-finite loss (before the backward pass) or gradient norm (before the
/// update); the model is not updated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diverged {
    pub what: &'static str,
    pub value: f64,
}

/// One optimisation step, exactly as `ordo train` takes it and `ordo bench` times it: forward
/// pass, masked cross-entropy over the weighted positions, backward pass, global-norm clipping,
/// AdamW update. Returns the updated model and the step's loss and gradient norm.
pub fn step(
    model: Transformer,
    optim: &mut burn::optim::ModuleOptimizer,
    data: &data::Tensors,
    options: &StepOptions,
) -> Result<(Transformer, StepOutcome), Diverged> {
    with_precision(options.precision, || {
        step_in_precision(model, optim, data, options)
    })
}

fn step_in_precision(
    model: Transformer,
    optim: &mut burn::optim::ModuleOptimizer,
    data: &data::Tensors,
    options: &StepOptions,
) -> Result<(Transformer, StepOutcome), Diverged> {
    // Dropout masks are drawn in the forward pass, under the generator's lock (see `rng_lock`).
    let rng = options.dropout_seed.map(|seed| {
        let guard = rng_lock();
        data.batch.tokens.device().seed(seed);
        guard
    });
    let logits = model.forward(&data.batch);
    drop(rng);
    let loss = masked_cross_entropy(logits, data.targets.clone(), data.weights.clone());
    let loss_value: f32 = loss.clone().into_scalar();
    if !loss_value.is_finite() {
        return Err(Diverged {
            what: "training loss",
            value: loss_value as f64,
        });
    }
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    if options.poison_gradients {
        fault::poison(&model, &mut grads);
    }
    let grad_norm = clip_global_norm(&model, &mut grads, options.grad_clip);
    // A non-finite norm would make clipping scale every gradient to NaN.
    if !grad_norm.is_finite() {
        return Err(Diverged {
            what: "gradient norm",
            value: grad_norm,
        });
    }
    let model = optim.step(options.lr, model, grads);
    Ok((
        model,
        StepOutcome {
            loss: loss_value,
            grad_norm,
        },
    ))
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

/// The initial model for `config`, on `device`. The weights are always drawn on the CPU (flex)
/// and then moved: each backend has its own generator (the GPU's draws other numbers from the
/// same seed), and a seed must give the same initial model on every device, so that a run on
/// the GPU can be compared with the same run on the CPU (`scripts/wgpu-check.sh`).
fn init_model(config: &RunConfig, vocab_size: usize, device: &Device) -> Transformer {
    let cpu = Device::flex().autodiff();
    let _rng = rng_lock();
    cpu.seed(config.seed);
    let model = config.model.init(vocab_size, &cpu);
    // Parameters are initialised lazily, on first use: force them while the lock is held.
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
    if *device == cpu {
        model
    } else {
        // `fork`, not `to_device`: the moved parameters are leaves of the device's own graph.
        model.fork(device)
    }
}

fn optimizer(config: &RunConfig) -> burn::optim::ModuleOptimizer {
    adamw(&config.train)
}

/// AdamW with the run's settings (what `ordo train` and `ordo bench` step with).
pub fn adamw(t: &crate::config::TrainConfig) -> burn::optim::ModuleOptimizer {
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
        Err(error) => {
            let path = path.to_path_buf();
            return Err(WithPath { path, error }.into());
        }
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
    Ok(crate::run_dir::write_atomic(path, kept.as_bytes()).at(path)?)
}

fn save_checkpoint(
    setup: &Setup,
    model: &Transformer,
    optim: &burn::optim::ModuleOptimizer,
    state: &State,
) -> Result<(), TrainError> {
    let run = &setup.run;
    // A process whose claim another took over (it was suspended past the claim's staleness)
    // writes nothing more: the run is the other process's now.
    if !setup.held.still_held() {
        return Err(RunDirError::ClaimLost {
            path: run.claim_file(),
        }
        .into());
    }
    // A model that is no longer finite is never written over the last good checkpoint.
    let largest = largest_parameter(model);
    if !largest.is_finite() {
        return Err(non_finite("parameters", largest, state.step, run));
    }
    let stem = run.model_stem(state.step);
    for (path, bytes) in
        ordo_model::checkpoint_files(model, &setup.config.model, setup.vocab.len(), &stem)?
    {
        run.write(&path, &bytes)?;
    }
    let optim_path = run.optimizer(state.step);
    let bytes = optim.into_bytes().at(&optim_path)?;
    run.write(&optim_path, &bytes)?;
    run.write_json(&run.state(), state)?;
    // Only now that state.json points at the new files may older ones go.
    if let Ok(entries) = std::fs::read_dir(run.checkpoint_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if RunDir::is_other_checkpoint_file(&name, state.step) {
                std::fs::remove_file(entry.path()).ok();
            }
        }
    }
    Ok(())
}

/// The largest `|θ|` over every parameter (infinite or NaN if any parameter is).
fn largest_parameter<M: Module>(model: &M) -> f64 {
    struct Largest(f64);
    impl ModuleVisitor for Largest {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let m = param.val().abs().max().into_scalar::<f32>() as f64;
            // Not `f64::max`, which drops a NaN: once NaN, stay NaN; a NaN `m` is taken.
            if !self.0.is_nan() && (m.is_nan() || m > self.0) {
                self.0 = m;
            }
        }
    }
    let mut largest = Largest(0.0);
    model.visit(&mut largest);
    largest.0
}

/// The run stops: `what` became `value` at `step`.
fn non_finite(what: &'static str, value: f64, step: usize, run: &RunDir) -> TrainError {
    TrainError::NonFinite {
        what,
        value,
        step,
        kept: run.last_checkpoint().ok().flatten(),
        dir: run.path().to_path_buf(),
    }
}

/// Stops the run at the first non-finite held-out loss, before the metrics log or a checkpoint
/// sees it.
struct DivergenceCheck<'a> {
    run: &'a RunDir,
}

impl crate::hooks::Hook for DivergenceCheck<'_> {
    fn on(&mut self, event: &crate::hooks::Event) -> Result<(), TrainError> {
        match *event {
            crate::hooks::Event::Evaluated { step, metrics } if !metrics.loss.is_finite() => {
                Err(non_finite("held-out loss", metrics.loss, step, self.run))
            }
            _ => Ok(()),
        }
    }
}

/// Writes a checkpoint when the loop says one is due ([`save_checkpoint`]).
struct Checkpointer<'a> {
    setup: &'a Setup,
}

impl crate::hooks::Hook for Checkpointer<'_> {
    fn on(&mut self, event: &crate::hooks::Event) -> Result<(), TrainError> {
        match *event {
            crate::hooks::Event::Checkpoint {
                model,
                optim,
                state,
            } => save_checkpoint(self.setup, model, optim, state),
            _ => Ok(()),
        }
    }
}

/// The training loop: sample a batch, [`step`], and hand what happened to the hooks (the
/// metrics log and the progress display, [`crate::hooks`]); evaluate the held-out set and
/// checkpoint when due; stop with an error at the first non-finite value.
fn run_steps(
    setup: Setup,
    mut model: Transformer,
    mut optim: burn::optim::ModuleOptimizer,
    mut state: State,
    options: TrainOptions,
) -> Result<Option<Summary>, TrainError> {
    let TrainOptions {
        progress, stop_at, ..
    } = options;
    use crate::hooks::{Display, Event, Hook, MetricsLog, Window};
    let (cfg, t) = (&setup.config, &setup.config.train);
    let device = crate::device::parse(&cfg.device).expect("validated");
    let train_device = device.clone().autodiff();
    let warnings: Vec<String> = cfg.model.encoder_warning().into_iter().collect();
    let mut hooks: Vec<Box<dyn Hook + '_>> = vec![
        Box::new(DivergenceCheck { run: &setup.run }),
        Box::new(MetricsLog::open(setup.run.metrics())?),
        Box::new(Display::new(
            progress, &cfg.name, t.steps, state.step, &warnings,
        )),
        Box::new(Checkpointer { setup: &setup }),
    ];
    // A hook's error ends the run: every hook then hears that nothing more comes.
    let mut emit = |event: Event| {
        let result = hooks.iter_mut().try_for_each(|h| h.on(&event));
        if result.is_err() {
            hooks.iter_mut().for_each(|h| drop(h.on(&Event::Abandoned)));
        }
        result
    };
    let (started, seconds_before) = (Instant::now(), state.seconds);
    let elapsed = || seconds_before + started.elapsed().as_secs_f64();
    let (mut window, mut total_tokens) = (Window::default(), 0usize);
    let nan_gradient_at = fault::nan_gradient_step(setup.run.path());
    let mut last_valid: Option<Metrics> = None;
    let eval_now = |model: &Transformer| {
        let batch = t.batch_size.max(64);
        evaluate(
            &model.valid(),
            &setup.valid,
            batch,
            setup.vocab.pad,
            &device,
        )
    };
    let due = |every: usize, step: usize| step.is_multiple_of(every) || step == t.steps;
    while state.step < t.steps {
        if stop_at.is_some_and(|stop| state.step >= stop) {
            emit(Event::Abandoned)?;
            return Ok(None);
        }
        let (lr, batch, tokens) = sample(&setup, &mut state, &train_device);
        let poison = nan_gradient_at == Some(state.step + 1);
        let options = StepOptions::of_run(cfg, lr, state.step, poison);
        let outcome;
        (model, outcome) = match self::step(model, &mut optim, &batch, &options) {
            Ok(stepped) => stepped,
            Err(Diverged { what, value }) => {
                emit(Event::Abandoned)?;
                return Err(non_finite(what, value, state.step + 1, &setup.run));
            }
        };
        state.step += 1;
        let step = state.step;
        window.add(tokens, outcome.loss as f64);
        total_tokens += tokens;
        emit(Event::Stepped { step })?;
        if due(t.log_every, step) {
            let line = window.take_line(step, lr, outcome.grad_norm, elapsed());
            emit(Event::Logged(&line))?;
        }
        if due(t.eval_every, step) {
            let metrics = eval_now(&model);
            emit(Event::Evaluated {
                step,
                metrics: &metrics,
            })?;
            last_valid = Some(metrics);
            window.restart_clock();
        }
        if due(t.checkpoint_every, step) {
            state.seconds = elapsed();
            emit(Event::Checkpoint {
                model: &model,
                optim: &optim,
                state: &state,
            })?;
        }
    }
    emit(Event::Finished)?;
    let valid = last_valid.unwrap_or_else(|| eval_now(&model));
    // summary.json never holds a non-finite number (serde would write null, unreadable later).
    if !valid.loss.is_finite() {
        return Err(non_finite(
            "held-out loss",
            valid.loss,
            state.step,
            &setup.run,
        ));
    }
    let summary = Summary {
        name: cfg.name.clone(),
        encoding: cfg.model.encoding.kind().into(),
        task: cfg.task.kind().into(),
        steps: t.steps,
        seconds: elapsed(),
        tokens_per_second: total_tokens as f64 / started.elapsed().as_secs_f64().max(1e-9),
        valid,
        warnings,
        bf16_kernel: (cfg.train.precision == Precision::Bf16)
            .then(ordo_model::kernels::bf16::kernel)
            .flatten(),
    };
    setup.run.write_json(&setup.run.summary(), &summary)?;
    Ok(Some(summary))
}

/// The next training batch of the run (drawn from `state`'s generator), its learning rate and
/// its token count.
fn sample(setup: &Setup, state: &mut State, device: &Device) -> (f64, data::Tensors, usize) {
    let (cfg, t) = (&setup.config, &setup.config.train);
    let items = data::training_batch(
        &setup.generator,
        &mut state.rng,
        t.batch_size,
        cfg.task.train_lengths(),
        cfg.batch_lengths(),
        cfg.model.mode,
        &setup.vocab,
    );
    let tokens = items.iter().map(Encoded::tokens).sum();
    let batch = data::collate(&items, setup.vocab.pad, device);
    (learning_rate(state.step, t), batch, tokens)
}

/// `config` as its run directory stores it in `config.toml`: input paths (relative ones are
/// relative to `base_dir`, the config file's directory) rewritten relative to the run directory.
pub fn stored_config(config: &RunConfig, base_dir: &Path) -> RunConfig {
    let mut stored = config.clone();
    relocate_inputs(&mut stored.task, base_dir, &config.run_dir());
    stored
}

/// Rewrites the task's input paths (a lexicon, a corpus, a tokenizer file; relative ones are
/// relative to `base_dir`, the config's directory) relative to the run directory `run_dir`
/// (absolute when they share no prefix).
///
/// Both sides are physical paths (symlinks resolved, [`crate::run_dir::physical`]): with a
/// symlinked `out_dir` or experiment directory (the usual way onto scratch), a lexical
/// `runs/x/../../data` would point somewhere else than the directories the link leads to.
fn relocate_inputs(task: &mut crate::tasks::TaskConfig, base_dir: &Path, run_dir: &Path) {
    let run_dir = crate::run_dir::physical(run_dir);
    for (_, path) in task.input_paths_mut() {
        let at = crate::run_dir::physical(&base_dir.join(&*path));
        *path = crate::run_dir::relative_to(&at, &run_dir).unwrap_or(at);
    }
}

/// Fault injection for tests of the divergence path: a NaN in the gradients at a chosen step of
/// a chosen run, as a real overflow in the backward pass would leave them. Registered per run
/// directory by in-process tests (`inject_nan_gradient`, in test builds only), or for a whole `ordo` process by the
/// environment variable `ORDO_INJECT_NAN_GRADIENT_AT_STEP` (used by the command-line tests; read
/// only in builds with the `test-hooks` feature, never in a user's binary).
pub mod fault {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    static PLANNED: Mutex<Option<HashMap<PathBuf, usize>>> = Mutex::new(None);

    /// From now on, training the run in `run_dir` puts a NaN into its gradients at `step`.
    #[doc(hidden)]
    pub fn inject_nan_gradient(run_dir: &Path, step: usize) {
        let mut planned = PLANNED.lock().unwrap_or_else(|p| p.into_inner());
        planned
            .get_or_insert_with(HashMap::new)
            .insert(run_dir.to_path_buf(), step);
    }

    /// The step at which the run in `run_dir` gets a NaN gradient, if one is planned (asked
    /// once per run, not on every step).
    pub(super) fn nan_gradient_step(run_dir: &Path) -> Option<usize> {
        let planned = PLANNED.lock().unwrap_or_else(|p| p.into_inner());
        let from_test = planned.as_ref().and_then(|p| p.get(run_dir)).copied();
        #[cfg(feature = "test-hooks")]
        let from_test = from_test.or_else(|| {
            std::env::var("ORDO_INJECT_NAN_GRADIENT_AT_STEP")
                .ok()?
                .parse()
                .ok()
        });
        from_test
    }

    /// Makes the gradient of the first parameter NaN.
    pub(super) fn poison<M: Module>(model: &M, grads: &mut GradientsParams) {
        struct First<'a> {
            grads: &'a mut GradientsParams,
            done: bool,
        }
        impl ModuleVisitor for First<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if self.done {
                    return;
                }
                if let Some(g) = self.grads.remove::<D>(param.id) {
                    self.grads.register(param.id, g.mul_scalar(f32::NAN));
                    self.done = true;
                }
            }
        }
        model.visit(&mut First { grads, done: false });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::{Event, Hook};

    #[test]
    fn the_divergence_check_stops_at_a_non_finite_held_out_loss_only() {
        let dir = crate::testing::TempDir::new("divergence-hook");
        let run = RunDir::new(&dir.0);
        let mut check = DivergenceCheck { run: &run };
        let metrics = |loss| Metrics {
            loss,
            token_accuracy: 0.5,
            exact_match: 0.25,
            examples: 4,
        };
        let finite = metrics(1.5);
        let event = Event::Evaluated {
            step: 7,
            metrics: &finite,
        };
        assert!(check.on(&event).is_ok());
        assert!(check.on(&Event::Stepped { step: 7 }).is_ok());
        for loss in [f64::NAN, f64::INFINITY] {
            let bad = metrics(loss);
            let event = Event::Evaluated {
                step: 8,
                metrics: &bad,
            };
            match check.on(&event) {
                Err(TrainError::NonFinite {
                    what, step, kept, ..
                }) => {
                    assert_eq!((what, step, kept), ("held-out loss", 8, None));
                }
                other => panic!("{loss}: expected NonFinite, got {other:?}"),
            }
        }
    }
}
