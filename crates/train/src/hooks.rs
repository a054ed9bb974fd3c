//! What the training loop hands its events to (minGPT's callbacks, burn-train's event
//! processor): the metrics log (`metrics.jsonl`) and the progress display (a bar, lines, or
//! nothing) here, the divergence check and the checkpointer beside the trainer. The loop in
//! [`crate::trainer`] samples, steps and evaluates; each hook only reacts to what happened, and
//! a hook's error ends the run.

use crate::error::TrainError;
use crate::metrics::Metrics;
use crate::rng::Rng;
use crate::run_dir::AtPath;
use ordo_model::Transformer;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// The loop's state as a checkpoint keeps it (`checkpoint/state.json`): the steps done, the
/// data generator's random state, the training seconds so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    pub rng: Rng,
    pub seconds: f64,
}

/// One thing that happened in the loop.
#[derive(Clone, Copy)]
pub enum Event<'a> {
    /// An optimizer step finished: the step count after it.
    Stepped { step: usize },
    /// The mean of the training steps since the last `Logged` (every `train.log_every` steps and
    /// at the end).
    Logged(&'a TrainLine),
    /// The held-out set was evaluated after `step` steps.
    Evaluated { step: usize, metrics: &'a Metrics },
    /// A checkpoint is due (every `train.checkpoint_every` steps and at the end): the model,
    /// the optimizer and the loop's state after `state.step` steps.
    Checkpoint {
        model: &'a Transformer,
        optim: &'a burn::optim::ModuleOptimizer,
        state: &'a TrainState,
    },
    /// The run finished.
    Finished,
    /// The loop stops early (a stop step, a divergence): nothing more comes.
    Abandoned,
}

/// A `train` line of `metrics.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainLine {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_second: f64,
    /// Training seconds of the run so far (resumed runs included).
    pub elapsed: f64,
}

/// Something that reacts to the loop's events.
pub trait Hook {
    fn on(&mut self, event: &Event) -> Result<(), TrainError>;
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

/// The run's `metrics.jsonl`: one JSON line per `Logged` and `Evaluated` event, flushed at once.
pub struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsLog {
    /// Appends to `path` (a resumed run's file was truncated to its checkpoint first).
    pub fn open(path: PathBuf) -> Result<Self, TrainError> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .at(&path)?;
        Ok(Self { file, path })
    }

    fn write(&mut self, value: serde_json::Value) -> Result<(), TrainError> {
        writeln!(self.file, "{value}")
            .and_then(|_| self.file.flush())
            .at(&self.path)
            .map_err(TrainError::from)
    }
}

impl Hook for MetricsLog {
    fn on(&mut self, event: &Event) -> Result<(), TrainError> {
        match event {
            Event::Logged(l) => self.write(serde_json::json!({
                "kind": "train", "step": l.step, "loss": l.loss, "lr": l.lr,
                "grad_norm": l.grad_norm, "tokens_per_second": l.tokens_per_second,
                "elapsed": l.elapsed,
            })),
            Event::Evaluated { step, metrics: m } => self.write(serde_json::json!({
                "kind": "eval", "step": step, "loss": m.loss, "perplexity": m.perplexity(),
                "token_accuracy": m.token_accuracy, "exact_match": m.exact_match,
                "examples": m.examples,
            })),
            _ => Ok(()),
        }
    }
}

/// Progress on the terminal: a bar (with the last loss, held-out exact match and speed), one
/// line per log and evaluation, or nothing ([`Progress`]).
pub struct Display {
    progress: Progress,
    bar: Option<indicatif::ProgressBar>,
    name: String,
    steps: usize,
    last_exact_match: Option<f64>,
}

impl Display {
    /// For run `name` of `steps` steps, starting at step `from`; prints the config's
    /// `warnings` first.
    pub fn new(
        progress: Progress,
        name: &str,
        steps: usize,
        from: usize,
        warnings: &[String],
    ) -> Self {
        let bar = matches!(progress, Progress::Bar).then(|| {
            let bar = indicatif::ProgressBar::new(steps as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar.set_position(from as u64);
            bar
        });
        for warning in warnings {
            let line = format!("warning: {name}: {warning}");
            match &bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
        Self {
            progress,
            bar,
            name: name.to_string(),
            steps,
            last_exact_match: None,
        }
    }

    fn say(&self, line: String) {
        match (&self.bar, self.progress) {
            (Some(bar), _) => bar.println(line),
            (None, Progress::Lines) => println!("{line}"),
            _ => {}
        }
    }
}

impl Hook for Display {
    fn on(&mut self, event: &Event) -> Result<(), TrainError> {
        match event {
            Event::Stepped { step } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(*step as u64);
                }
            }
            Event::Logged(l) => {
                let acc = self
                    .last_exact_match
                    .map(|em| format!(" valid_em {em:.3}"))
                    .unwrap_or_default();
                let (loss, tps) = (l.loss, l.tokens_per_second);
                match &self.bar {
                    Some(bar) => bar.set_message(format!("loss {loss:.4}{acc} {tps:.0} tok/s")),
                    None => self.say(format!(
                        "{} step {}/{} loss {loss:.4}{acc} lr {:.2e} {tps:.0} tok/s",
                        self.name, l.step, self.steps, l.lr
                    )),
                }
            }
            Event::Evaluated { step, metrics: m } => {
                self.say(format!(
                    "{} eval step {step}: loss {:.4} token_acc {:.4} exact_match {:.4}",
                    self.name, m.loss, m.token_accuracy, m.exact_match
                ));
                self.last_exact_match = Some(m.exact_match);
            }
            Event::Finished => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                }
            }
            Event::Abandoned => {
                if let Some(bar) = &self.bar {
                    bar.abandon();
                }
            }
            Event::Checkpoint { .. } => {}
        }
        Ok(())
    }
}

/// The training steps since the last log line: their tokens, summed loss and wall time (time
/// spent evaluating is left out: an evaluation restarts the clock).
pub struct Window {
    tokens: usize,
    loss: f64,
    steps: usize,
    start: Instant,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            tokens: 0,
            loss: 0.0,
            steps: 0,
            start: Instant::now(),
        }
    }
}

impl Window {
    pub fn add(&mut self, tokens: usize, loss: f64) {
        self.tokens += tokens;
        self.loss += loss;
        self.steps += 1;
    }

    /// The mean loss and tokens per second of the window; starts the next one.
    pub fn take(&mut self) -> (f64, f64) {
        let tps = self.tokens as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let mean = self.loss / self.steps as f64;
        *self = Self::default();
        (mean, tps)
    }

    /// The log line of `step` from this window ([`Window::take`]).
    pub fn take_line(&mut self, step: usize, lr: f64, grad_norm: f64, elapsed: f64) -> TrainLine {
        let (loss, tokens_per_second) = self.take();
        TrainLine {
            step,
            loss,
            lr,
            grad_norm,
            tokens_per_second,
            elapsed,
        }
    }

    pub fn restart_clock(&mut self) {
        self.start = Instant::now();
    }
}
