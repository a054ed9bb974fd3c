//! `ordo bench`: training and evaluation throughput, and peak memory, on fixed model shapes.
//!
//! A measurement ([`Job`]) is one of
//! - `train:SHAPE:ENCODING`: the real trainer's step (forward, masked cross-entropy over every
//!   position, backward, global-norm clipping, AdamW step) on a fixed random batch of
//!   `batch x seq_len` tokens; learned tables are sized to the training length, as `ordo train`
//!   sizes them;
//! - `eval:SHAPE:ENCODING:FACTOR`: a forward pass of the non-autodiff model on
//!   `eval_tokens / (FACTOR * seq_len)` sequences of `FACTOR * seq_len` tokens; learned tables are
//!   sized to the longest evaluated length so that every factor runs.
//!
//! Warm-up steps are not timed; the figure is the median over the timed steps, and
//! `tokens_per_second = batch * seq_len / median step time`.
//!
//! Peak memory is the process's peak resident set (`VmHWM` in `/proc/self/status`), so each
//! measurement must run in a process of its own: [`run_jobs`] starts one child per job (the caller
//! says how: `ordo bench` re-invokes itself with a hidden `--single JOB`), and each child prints
//! its [`Record`] as one JSON line on stdout, which the parent collects.

pub mod gemm;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use ordo_model::kernels::{Precision, with_precision};
use ordo_model::{Batch, ModelConfig, PositionalEncodingConfig, Transformer, masked_cross_entropy};
use ordo_train::data::Tensors;
use ordo_train::rng::Rng;
use ordo_train::trainer::{self, StepOptions};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Instant;

/// A model and batch shape. `d_ff = 4 * d_model`, causal, untied output head, no dropout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub name: &'static str,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Training sequence length T.
    pub seq_len: usize,
    /// Training batch (sequences per step).
    pub batch: usize,
    pub vocab: usize,
}

/// The benchmark shapes, smallest first.
pub const SHAPES: [Shape; 3] = [
    Shape {
        name: "tiny",
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        seq_len: 64,
        batch: 32,
        vocab: 64,
    },
    Shape {
        name: "small",
        d_model: 128,
        n_layers: 4,
        n_heads: 4,
        seq_len: 128,
        batch: 32,
        vocab: 256,
    },
    Shape {
        name: "medium",
        d_model: 256,
        n_layers: 4,
        n_heads: 8,
        seq_len: 256,
        batch: 16,
        vocab: 1024,
    },
];

/// Multiples of the training length at which evaluation throughput is measured by default.
pub const EVAL_FACTORS: [usize; 3] = [1, 4, 8];

/// Tokens per evaluation forward pass by default (`batch = eval_tokens / length`).
pub const EVAL_TOKENS: usize = 8192;

/// Looks a shape up by name.
pub fn shape(name: &str) -> Option<Shape> {
    SHAPES.iter().copied().find(|s| s.name == name)
}

/// The model config of a shape with an encoding whose learned table (if any) holds `max_len`.
pub fn model_config(
    shape: &Shape,
    encoding: &str,
    max_len: usize,
) -> Result<ModelConfig, BenchError> {
    let encoding = PositionalEncodingConfig::from_kind(encoding, max_len)
        .ok_or_else(|| BenchError::UnknownEncoding(encoding.to_string()))?;
    let config = ModelConfig {
        d_model: shape.d_model,
        n_heads: shape.n_heads,
        n_layers: shape.n_layers,
        d_ff: 4 * shape.d_model,
        dropout: 0.0,
        mode: ordo_model::AttentionMode::Causal,
        tie_embeddings: false,
        embedding_std: 1.0,
        qk_bias_std: None,
        encoding,
    };
    config.validate()?;
    Ok(config)
}

/// A job or measurement that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(
        "unknown encoding {:?}; expected one of {}",
        .0,
        PositionalEncodingConfig::KINDS.join(", ")
    )]
    UnknownEncoding(String),
    #[error("unknown shape {:?}; expected one of {}", .0, shape_names().join(", "))]
    UnknownShape(String),
    #[error("--precision bf16: {0}")]
    Precision(String),
    /// A job written otherwise than `train:SHAPE:ENCODING` or `eval:SHAPE:ENCODING:FACTOR`.
    #[error("{0:?}: expected train:SHAPE:ENCODING or eval:SHAPE:ENCODING:FACTOR")]
    Job(String),
    #[error(transparent)]
    Model(#[from] ordo_model::ModelConfigError),
    #[error("--steps must be at least 1")]
    NoSteps,
    #[error(transparent)]
    Device(#[from] ordo_train::device::DeviceError),
    #[error("{encoding} cannot represent {seq_len} positions")]
    TooLong { encoding: String, seq_len: usize },
    /// The backend's execution error, as its `Debug` shows it (burn does not re-export the type).
    #[error("{0}")]
    Sync(String),
    /// `command` is the child's command line, as `Command`'s `Debug` shows it.
    #[error("cannot start {command}: {cause}")]
    Start {
        command: String,
        cause: std::io::Error,
    },
    /// The child failed or printed no record; `tail` is the last lines of its stderr that say
    /// something, joined by ` | `.
    #[error(
        "the measuring process ended with {status}: {}",
        if tail.is_empty() { "no output" } else { tail }
    )]
    Child {
        status: std::process::ExitStatus,
        tail: String,
    },
}

/// Training or forward-only evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Train,
    Eval,
}

/// One measurement, run in a process of its own. Written `train:SHAPE:ENCODING` or
/// `eval:SHAPE:ENCODING:FACTOR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub mode: Mode,
    pub shape: String,
    pub encoding: String,
    /// Evaluated length / training length; 1 for training.
    pub factor: usize,
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            Mode::Train => write!(f, "train:{}:{}", self.shape, self.encoding),
            Mode::Eval => write!(f, "eval:{}:{}:{}", self.shape, self.encoding, self.factor),
        }
    }
}

impl FromStr for Job {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self, BenchError> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || BenchError::Job(s.to_string());
        let (mode, factor) = match parts.as_slice() {
            ["train", _, _] => (Mode::Train, 1),
            ["eval", _, _, factor] => (
                Mode::Eval,
                factor
                    .parse::<usize>()
                    .ok()
                    .filter(|&f| f > 0)
                    .ok_or_else(bad)?,
            ),
            _ => return Err(bad()),
        };
        let job = Job {
            mode,
            shape: parts[1].to_string(),
            encoding: parts[2].to_string(),
            factor,
        };
        let shape = shape(&job.shape).ok_or_else(|| BenchError::UnknownShape(job.shape.clone()))?;
        model_config(&shape, &job.encoding, shape.seq_len)?;
        Ok(job)
    }
}

/// Names of [`SHAPES`].
pub fn shape_names() -> Vec<&'static str> {
    SHAPES.iter().map(|s| s.name).collect()
}

/// How each measurement runs (the same for every job of a benchmark).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    /// Timed steps (training steps or forward passes).
    pub steps: usize,
    /// Untimed steps before them.
    pub warmup: usize,
    /// A device name accepted by [`ordo_train::device::parse`].
    pub device: String,
    /// Tokens per evaluation forward pass.
    pub eval_tokens: usize,
    /// The largest evaluation factor: learned tables of evaluated models are sized to
    /// `max_eval_factor * seq_len`.
    pub max_eval_factor: usize,
    /// Seeds the weights and the random batch.
    pub seed: u64,
    /// burn's composed ops instead of ordo's fused CPU kernels (attention core, softmax, GELU,
    /// LayerNorm, cross-entropy): what the kernels gain, measured.
    #[serde(default)]
    pub composed_ops: bool,
    /// The dense products' number format (`--precision`; `train.precision`).
    #[serde(default)]
    pub precision: Precision,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            steps: 10,
            warmup: 2,
            device: "cpu".into(),
            eval_tokens: EVAL_TOKENS,
            max_eval_factor: *EVAL_FACTORS.iter().max().expect("non-empty"),
            seed: 0,
            composed_ops: false,
            precision: Precision::Fp32,
        }
    }
}

/// What one measurement found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub mode: Mode,
    pub shape: String,
    pub encoding: String,
    /// Which implementation measured it: `ordo` here (the PyTorch script writes its own).
    pub implementation: String,
    pub device: String,
    /// Evaluated length / training length (1 for training).
    pub factor: usize,
    /// Tokens per sequence in this measurement (`factor * T`).
    pub seq_len: usize,
    /// Sequences per step.
    pub batch: usize,
    pub params: usize,
    /// Timed steps and untimed warm-up steps.
    pub steps: usize,
    pub warmup: usize,
    /// Median, fastest and slowest timed step, in seconds.
    pub step_seconds: f64,
    pub step_seconds_min: f64,
    pub step_seconds_max: f64,
    /// `batch * seq_len / step_seconds`.
    pub tokens_per_second: f64,
    /// Peak resident set of the measuring process (VmHWM), MiB; absent off Linux.
    pub peak_rss_mib: Option<f64>,
    /// Resident set before the model was built (runtime baseline), MiB; absent off Linux.
    pub start_rss_mib: Option<f64>,
    /// Training only: the loss of the first and of the last step.
    pub loss_first: Option<f64>,
    pub loss_last: Option<f64>,
    /// Hardware threads available to the process.
    pub threads: usize,
    /// Measured with burn's composed ops instead of the fused kernels (`--composed-ops`).
    #[serde(default)]
    pub composed_ops: bool,
    /// The dense products' number format (absent in reports of older versions: fp32).
    #[serde(default)]
    pub precision: Precision,
}

/// The fixed random batch: `batch x seq_len` tokens; the target of each position is the next
/// token (next-token prediction on random data), weighted 1 everywhere. The same tensors as the
/// trainer's batches ([`Tensors`]).
pub struct FixedBatch(pub Tensors);

impl FixedBatch {
    pub fn new(batch: usize, seq_len: usize, vocab: usize, seed: u64, device: &Device) -> Self {
        let mut rng = Rng::derive(seed, "bench");
        let mut input = Vec::with_capacity(batch * seq_len);
        let mut target = Vec::with_capacity(batch * seq_len);
        for _ in 0..batch {
            let row: Vec<i64> = (0..=seq_len).map(|_| rng.below(vocab) as i64).collect();
            input.extend_from_slice(&row[..seq_len]);
            target.extend_from_slice(&row[1..]);
        }
        Self(Tensors {
            batch: Batch {
                tokens: Tensor::from_data(TensorData::new(input, [batch, seq_len]), device),
                lengths: vec![seq_len; batch],
            },
            targets: Tensor::from_data(TensorData::new(target, [batch, seq_len]), device),
            weights: Tensor::ones([batch, seq_len], device),
        })
    }

    pub fn tokens(&self) -> usize {
        self.0.batch.lengths.iter().sum()
    }
}

/// A model, its AdamW state and a fixed batch, stepped by the trainer's own
/// [`step`](ordo_train::trainer::step).
pub struct TrainBench {
    model: Option<Transformer>,
    optim: ModuleOptimizer,
    data: FixedBatch,
    options: StepOptions,
}

impl TrainBench {
    /// Builds the model of `shape` with `encoding` on `device` (made autodiff here), AdamW with
    /// `ordo train`'s defaults, and the fixed batch.
    pub fn new(
        shape: &Shape,
        encoding: &str,
        device: &Device,
        seed: u64,
    ) -> Result<Self, BenchError> {
        let device = device.clone().autodiff();
        let config = model_config(shape, encoding, shape.seq_len)?;
        device.seed(seed);
        let model = config.init(shape.vocab, &device);
        let t = ordo_train::config::TrainConfig::default();
        let data = FixedBatch::new(shape.batch, shape.seq_len, shape.vocab, seed, &device);
        Ok(Self {
            model: Some(model),
            optim: trainer::adamw(&t),
            data,
            // The bench shapes have no dropout (see `model_config`).
            options: StepOptions {
                lr: t.lr,
                grad_clip: t.grad_clip,
                dropout_seed: None,
                poison_gradients: false,
                precision: Precision::Fp32,
            },
        })
    }

    pub fn model(&self) -> &Transformer {
        self.model.as_ref().expect("present between steps")
    }

    pub fn tokens(&self) -> usize {
        self.data.tokens()
    }

    /// One training step ([`trainer::step`]); returns the loss before the update.
    ///
    /// # Panics
    /// If the step diverges (random next-token data at the default learning rate never does).
    pub fn step(&mut self) -> f32 {
        let model = self.model.take().expect("present between steps");
        match trainer::step(model, &mut self.optim, &self.data.0, &self.options) {
            Ok((model, outcome)) => {
                self.model = Some(model);
                outcome.loss
            }
            Err(d) => panic!("the benchmark step diverged: {} {}", d.what, d.value),
        }
    }

    /// The loss on the fixed batch, without a step.
    pub fn loss(&self) -> f32 {
        let model = self.model().valid();
        let data = &self.data.0;
        let device = data.targets.device().inner();
        let data = Tensors {
            batch: Batch {
                tokens: data.batch.tokens.clone().to_device(&device),
                lengths: data.batch.lengths.clone(),
            },
            targets: data.targets.clone().to_device(&device),
            weights: data.weights.clone().to_device(&device),
        };
        let logits = model.forward(&data.batch);
        masked_cross_entropy(logits, data.targets, data.weights).into_scalar()
    }
}

/// Median, minimum and maximum.
fn summarise(times: &[f64]) -> (f64, f64, f64) {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    };
    (median, sorted[0], sorted[n - 1])
}

/// A `Vm*` line of `/proc/self/status` in MiB (Linux only).
fn proc_status_mib(key: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line[key.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Peak resident set of this process so far (VmHWM), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    proc_status_mib("VmHWM")
}

/// Current resident set (VmRSS), MiB.
pub fn rss_mib() -> Option<f64> {
    proc_status_mib("VmRSS")
}

/// The 1-minute load average (`/proc/loadavg`), Linux only.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Runs one measurement in this process. Its `peak_rss_mib` is only meaningful when the process
/// ran nothing else (see [`run_jobs`]).
pub fn measure(job: &Job, options: &Options) -> Result<Record, BenchError> {
    // The flag is per thread: set it on the thread that computes.
    if options.precision == Precision::Bf16 {
        let device = ordo_train::device::parse(&options.device)?;
        ordo_model::kernels::bf16_runs_on(&device.autodiff()).map_err(BenchError::Precision)?;
    }
    ordo_train::device::on_compute_pool(|| {
        with_precision(options.precision, || {
            if options.composed_ops {
                ordo_model::kernels::with_composed_ops(|| measure_with(job, options))
            } else {
                measure_with(job, options)
            }
        })
    })
}

fn measure_with(job: &Job, options: &Options) -> Result<Record, BenchError> {
    if options.steps == 0 {
        return Err(BenchError::NoSteps);
    }
    let shape = shape(&job.shape).ok_or_else(|| BenchError::UnknownShape(job.shape.clone()))?;
    let device = ordo_train::device::parse(&options.device)?;
    let start_rss_mib = rss_mib();
    let mut times = Vec::with_capacity(options.steps);
    let (seq_len, batch, params, loss_first, loss_last);
    match job.mode {
        Mode::Train => {
            let mut bench = TrainBench::new(&shape, &job.encoding, &device, options.seed)?;
            bench.options.precision = options.precision;
            params = bench.model().num_params();
            (seq_len, batch) = (shape.seq_len, shape.batch);
            let mut losses = Vec::new();
            for i in 0..options.warmup + options.steps {
                let started = Instant::now();
                losses.push(bench.step() as f64);
                if i >= options.warmup {
                    times.push(started.elapsed().as_secs_f64());
                }
            }
            loss_first = losses.first().copied();
            loss_last = losses.last().copied();
        }
        Mode::Eval => {
            let max_len = options.max_eval_factor.max(job.factor) * shape.seq_len;
            let config = model_config(&shape, &job.encoding, max_len)?;
            device.seed(options.seed);
            let model = config.init(shape.vocab, &device);
            params = model.num_params();
            seq_len = job.factor * shape.seq_len;
            batch = (options.eval_tokens / seq_len).max(1);
            if !model.supports(seq_len) {
                return Err(BenchError::TooLong {
                    encoding: job.encoding.clone(),
                    seq_len,
                });
            }
            let data = FixedBatch::new(batch, seq_len, shape.vocab, options.seed, &device);
            for i in 0..options.warmup + options.steps {
                let started = Instant::now();
                let logits = model.forward(&data.0.batch);
                device
                    .sync()
                    .map_err(|e| BenchError::Sync(format!("{e:?}")))?;
                drop(logits);
                if i >= options.warmup {
                    times.push(started.elapsed().as_secs_f64());
                }
            }
            (loss_first, loss_last) = (None, None);
        }
    }
    let (median, min, max) = summarise(&times);
    Ok(Record {
        mode: job.mode,
        shape: job.shape.clone(),
        encoding: job.encoding.clone(),
        implementation: "ordo".into(),
        device: options.device.clone(),
        factor: job.factor,
        seq_len,
        batch,
        params,
        steps: options.steps,
        warmup: options.warmup,
        step_seconds: median,
        step_seconds_min: min,
        step_seconds_max: max,
        tokens_per_second: (batch * seq_len) as f64 / median.max(1e-12),
        peak_rss_mib: peak_rss_mib(),
        start_rss_mib,
        loss_first,
        loss_last,
        threads: threads(),
        composed_ops: options.composed_ops,
        precision: options.precision,
    })
}

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Shapes whose training step is measured.
    pub shapes: Vec<String>,
    pub encodings: Vec<String>,
    /// Shapes whose forward-only evaluation is measured (default: `small`).
    pub eval_shapes: Vec<String>,
    /// Multiples of the training length evaluated.
    pub eval_factors: Vec<usize>,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            shapes: shape_names().iter().map(|s| s.to_string()).collect(),
            encodings: PositionalEncodingConfig::KINDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            eval_shapes: vec!["small".into()],
            eval_factors: EVAL_FACTORS.to_vec(),
        }
    }
}

impl Plan {
    /// Every job, training first (by shape, then encoding), then evaluation.
    pub fn jobs(&self) -> Result<Vec<Job>, BenchError> {
        let mut jobs = Vec::new();
        for s in &self.shapes {
            for e in &self.encodings {
                jobs.push(format!("train:{s}:{e}").parse()?);
            }
        }
        for s in &self.eval_shapes {
            for e in &self.encodings {
                for f in &self.eval_factors {
                    jobs.push(format!("eval:{s}:{e}:{f}").parse()?);
                }
            }
        }
        Ok(jobs)
    }
}

/// A measurement whose process failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub job: String,
    pub error: String,
}

/// Everything a benchmark found: what `--json` prints and `--out` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub implementation: String,
    pub version: String,
    pub options: Options,
    pub threads: usize,
    /// The 1-minute load average when the benchmark started (Linux): other work on the machine
    /// makes every figure slower and noisier.
    pub load_average: Option<f64>,
    pub records: Vec<Record>,
    pub failures: Vec<Failure>,
    /// The CPU the figures were measured on (absent from reports written before it was).
    #[serde(default)]
    pub machine: Machine,
    /// `--gemm`: the machine's matrix-product speed, and each shape's dense products.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemm: Option<gemm::GemmReport>,
    /// `--precision bf16`: the kernel of the bf16 products
    /// ([`ordo_model::kernels::bf16::Unit::describe`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bf16_kernel: Option<String>,
}

/// The CPU a benchmark ran on: its model name and the vector and matrix instruction sets that
/// decide which kernels run (from `/proc/cpuinfo` on Linux; empty elsewhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: Option<String>,
    /// Of `avx2`, `fma`, `avx512f`, `avx512_bf16`, `avx512_fp16`, `amx_bf16`, `amx_tile`, those
    /// the CPU has.
    pub isa: Vec<String>,
}

/// The instruction sets [`Machine::isa`] looks for, as `/proc/cpuinfo` names them.
const ISA_FLAGS: [&str; 7] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_tile",
];

impl Machine {
    /// This machine, from `/proc/cpuinfo`.
    pub fn detect() -> Machine {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|text| Machine::from_cpuinfo(&text))
            .unwrap_or_default()
    }

    /// The first processor's model name and flags in a `/proc/cpuinfo` text.
    pub fn from_cpuinfo(text: &str) -> Machine {
        let field = |key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let flags = field("flags").unwrap_or_default();
        let flags: Vec<&str> = flags.split_whitespace().collect();
        Machine {
            cpu: field("model name"),
            isa: ISA_FLAGS
                .iter()
                .filter(|f| flags.contains(f))
                .map(|f| f.to_string())
                .collect(),
        }
    }

    /// `Intel Xeon .. (avx2 fma avx512f ..)`, or `unknown CPU`.
    pub fn describe(&self) -> String {
        let cpu = self.cpu.as_deref().unwrap_or("unknown CPU");
        if self.isa.is_empty() {
            cpu.to_string()
        } else {
            format!("{cpu} ({})", self.isa.join(" "))
        }
    }
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The training record of (shape, encoding), if measured.
    pub fn train(&self, shape: &str, encoding: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.mode == Mode::Train && r.shape == shape && r.encoding == encoding)
    }

    /// The evaluation record of (shape, encoding, factor), if measured.
    pub fn eval(&self, shape: &str, encoding: &str, factor: usize) -> Option<&Record> {
        self.records.iter().find(|r| {
            r.mode == Mode::Eval && r.shape == shape && r.encoding == encoding && r.factor == factor
        })
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let o = &self.options;
        let rss = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        writeln!(
            out,
            "ordo {} on {}{} ({} threads{}): median of {} timed steps after {} warm-up steps",
            self.version,
            o.device,
            match (o.composed_ops, o.precision) {
                (false, Precision::Fp32) => "",
                (true, Precision::Fp32) => ", burn's composed ops instead of the fused kernels",
                (false, Precision::Bf16) => ", dense products in bf16 (fp32 sums)",
                (true, Precision::Bf16) =>
                    ", burn's composed ops, dense products in bf16 (fp32 sums)",
            },
            self.threads,
            self.load_average
                .map_or(String::new(), |l| format!(", load average {l:.2} at start")),
            o.steps,
            o.warmup
        )
        .ok();
        writeln!(out, "CPU: {}", self.machine.describe()).ok();
        if let Some(kernel) = &self.bf16_kernel {
            writeln!(out, "bf16 products: {kernel}").ok();
        }
        let train: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.mode == Mode::Train)
            .collect();
        if !train.is_empty() {
            writeln!(out, "\ntraining (forward + backward + clip + AdamW)").ok();
            writeln!(
                out,
                "{:<7} {:<11} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9}",
                "shape", "encoding", "params", "batch×T", "step ms", "tok/s", "peak MiB", "loss"
            )
            .ok();
            for r in train {
                let loss = match (r.loss_first, r.loss_last) {
                    (Some(a), Some(b)) => format!("{a:.2}→{b:.2}"),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "{:<7} {:<11} {:>9} {:>9} {:>10.1} {:>10.0} {:>9} {:>9}",
                    r.shape,
                    r.encoding,
                    r.params,
                    format!("{}×{}", r.batch, r.seq_len),
                    r.step_seconds * 1e3,
                    r.tokens_per_second,
                    rss(r.peak_rss_mib),
                    loss
                )
                .ok();
            }
        }
        let eval: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| r.mode == Mode::Eval)
            .collect();
        if !eval.is_empty() {
            writeln!(
                out,
                "\nevaluation (forward only, {} tokens per forward)",
                o.eval_tokens
            )
            .ok();
            writeln!(
                out,
                "{:<7} {:<11} {:>7} {:>9} {:>10} {:>10} {:>9}",
                "shape", "encoding", "length", "batch×T", "step ms", "tok/s", "peak MiB"
            )
            .ok();
            for r in eval {
                writeln!(
                    out,
                    "{:<7} {:<11} {:>7} {:>9} {:>10.1} {:>10.0} {:>9}",
                    r.shape,
                    r.encoding,
                    format!("{}x", r.factor),
                    format!("{}×{}", r.batch, r.seq_len),
                    r.step_seconds * 1e3,
                    r.tokens_per_second,
                    rss(r.peak_rss_mib)
                )
                .ok();
            }
        }
        if let Some(gemm) = &self.gemm {
            // The step the dense products are read against: `none`'s, else the first measured.
            let step = |shape: &str| {
                self.train(shape, "none")
                    .or_else(|| {
                        self.records
                            .iter()
                            .find(|r| r.mode == Mode::Train && r.shape == shape)
                    })
                    .map(|r| r.step_seconds)
            };
            writeln!(out, "\n{}", gemm.table(step)).ok();
        }
        if !self.failures.is_empty() {
            writeln!(out, "\nfailed").ok();
            for f in &self.failures {
                writeln!(out, "{}: {}", f.job, f.error).ok();
            }
        }
        out
    }
}

/// The record a child printed: the last stdout line that ends in a JSON [`Record`] (anything
/// before its first `{`, such as a test harness's "test name ... ", is ignored).
pub fn parse_child_output(stdout: &str) -> Option<Record> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| l.find('{').map(|i| &l[i..]))
        .find_map(|l| serde_json::from_str(l).ok())
}

/// Runs every job in a child process of its own, one after the other (so that they do not
/// compete for cores), and collects what they print. `command` builds the child's command for a
/// job; the child must print the job's [`Record`] as one JSON line on stdout (see
/// [`measure`]). `progress` hears of every finished job.
pub fn run_jobs(
    jobs: &[Job],
    options: &Options,
    mut command: impl FnMut(&Job) -> Command,
    mut progress: impl FnMut(&Job, &Result<Record, BenchError>),
) -> Report {
    let load = load_average();
    let mut records = Vec::new();
    let mut failures = Vec::new();
    for job in jobs {
        let result = run_child(command(job));
        progress(job, &result);
        match result {
            Ok(record) => records.push(record),
            Err(error) => failures.push(Failure {
                job: job.to_string(),
                error: error.to_string(),
            }),
        }
    }
    Report {
        implementation: "ordo".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        options: options.clone(),
        threads: threads(),
        load_average: load,
        records,
        failures,
        machine: Machine::detect(),
        gemm: None,
        bf16_kernel: (options.precision == Precision::Bf16)
            .then(ordo_model::kernels::bf16::kernel)
            .flatten(),
    }
}

fn run_child(mut command: Command) -> Result<Record, BenchError> {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|cause| BenchError::Start {
            command: format!("{command:?}"),
            cause,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match parse_child_output(&stdout) {
        Some(record) if output.status.success() => Ok(record),
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // The last lines that say something: no backtrace frames, no notes.
            let noise = |l: &str| {
                let t = l.trim();
                t.is_empty()
                    || t.starts_with("stack backtrace")
                    || t.starts_with("note:")
                    || t.starts_with("at ")
                    || t.split_once(": ")
                        .is_some_and(|(n, _)| n.parse::<u32>().is_ok())
            };
            let tail: Vec<&str> = stderr
                .lines()
                .filter(|l| !noise(l))
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Err(BenchError::Child {
                status: output.status,
                tail: tail.join(" | "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_reject_nonsense() {
        for s in ["train:tiny:rope", "eval:small:alibi:8"] {
            assert_eq!(s.parse::<Job>().unwrap().to_string(), s);
        }
        for bad in [
            "train:huge:rope",
            "train:tiny:fourier",
            "eval:small:rope",
            "eval:small:rope:0",
            "fit:tiny:rope",
        ] {
            assert!(bad.parse::<Job>().is_err(), "{bad}");
        }
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(summarise(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(summarise(&[4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }

    #[test]
    fn machine_reads_the_model_and_the_isa_from_cpuinfo() {
        let text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n\
                    flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 amx_tile amx_bf16\n\n\
                    processor\t: 1\nmodel name\t: other\n";
        let m = Machine::from_cpuinfo(text);
        assert_eq!(m.cpu.as_deref(), Some("Intel(R) Xeon(R) Processor"));
        assert_eq!(
            m.isa,
            [
                "avx2",
                "fma",
                "avx512f",
                "avx512_bf16",
                "amx_bf16",
                "amx_tile"
            ]
        );
        assert_eq!(
            m.describe(),
            "Intel(R) Xeon(R) Processor (avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile)"
        );
        let none = Machine::from_cpuinfo("flags : sse2\n");
        assert_eq!((none.cpu, none.isa.len()), (None, 0));
    }

    /// A step's dense products do 6 flops per weight of its linear layers per token (2 forward,
    /// 4 backward), and nothing else.
    #[test]
    fn dense_products_count_six_flops_per_weight_and_token() {
        for shape in SHAPES {
            let products = gemm::step_products(&shape);
            let flops: f64 = products.iter().map(|p| p.flops() * p.count as f64).sum();
            let d = shape.d_model;
            let weights = shape.n_layers * (4 * d * d + 2 * d * 4 * d) + d * shape.vocab;
            let tokens = shape.batch * shape.seq_len;
            assert_eq!(flops, 6.0 * (weights * tokens) as f64, "{}", shape.name);
        }
    }

    #[test]
    fn default_plan_covers_every_shape_and_encoding() {
        let jobs = Plan::default().jobs().unwrap();
        let kinds = PositionalEncodingConfig::KINDS.len();
        assert_eq!(jobs.len(), 3 * kinds + kinds * 3);
    }
}
