//! `ordo ablate experiments/NAME.toml`: a grid of runs (tasks x encodings x seeds x any other
//! config key), each trained and evaluated into `experiments/NAME/runs/<cell>/`.
//!
//! ```toml
//! description = "All encodings on copy and reverse"
//! tasks = ["../configs/copy.toml", "../configs/reverse.toml"]   # relative to this file
//! encodings = ["none", "sinusoidal", "learned", "t5", "shaw", "rope", "alibi"]
//! seeds = [0, 1, 2]
//! [set]                      # overrides for every cell
//! "train.steps" = 800
//! [grid]                     # further axes: key -> values
//! "model.mode" = ["causal", "bidirectional"]
//! [eval]
//! examples = 64
//! ```
//!
//! Resumable: a cell with `eval.json` is finished and skipped; a cell with a run directory but
//! no summary resumes from its checkpoint; a trained cell without `eval.json` is evaluated.
//! Every cell's config is loaded and validated before the first one trains.

use crate::extrapolation::{EvalOptions, EvalReport, evaluate_run};
use crate::report::{CellResult, ReportSpec, write_report};
use ordo_model::checkpoint::write_atomic;
use ordo_train::config::{self, RunConfig};
use ordo_train::trainer::{self, Progress};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// The experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// A sentence or two for the report.
    #[serde(default)]
    pub description: String,
    /// Base run configs, one per task, relative to the experiment file.
    pub tasks: Vec<PathBuf>,
    /// Encoding kinds (`model.encoding.kind`).
    #[serde(default = "all_encodings")]
    pub encodings: Vec<String>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Overrides applied to every cell: dotted key -> value.
    #[serde(default)]
    pub set: toml::Table,
    /// Further axes: dotted key -> list of values.
    #[serde(default)]
    pub grid: toml::Table,
    #[serde(default)]
    pub eval: EvalSpec,
    /// Cells trained side by side unless `--jobs` says otherwise.
    #[serde(default = "one_job")]
    pub jobs: usize,
}

fn one_job() -> usize {
    1
}

fn all_encodings() -> Vec<String> {
    ordo_model::PositionalEncodingConfig::KINDS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// How every cell is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSpec {
    pub max_factor: usize,
    pub examples: usize,
    pub batch_size: usize,
}

impl Default for EvalSpec {
    fn default() -> Self {
        Self {
            max_factor: 4,
            examples: 128,
            batch_size: 128,
        }
    }
}

/// What a cell is, written as `cell.json` into its run directory (so `ordo report` can rebuild
/// the report from the run directories alone, e.g. after gathering the shards of a job array).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellInfo {
    pub id: String,
    pub task: String,
    pub encoding: String,
    pub seed: u64,
    pub variant: Vec<(String, String)>,
}

/// One cell of the grid, with its validated config.
#[derive(Debug, Clone)]
pub struct Cell {
    pub info: CellInfo,
    pub config: RunConfig,
    /// Directory of the task's base config (resolves its relative paths).
    pub base_dir: PathBuf,
}

impl Cell {
    pub fn run_dir(&self) -> PathBuf {
        self.config.run_dir()
    }

    pub fn status(&self) -> Status {
        let dir = self.run_dir();
        if dir.join("eval.json").is_file() && dir.join("summary.json").is_file() {
            Status::Done
        } else if dir.join("summary.json").is_file() {
            Status::Trained
        } else if dir.join("config.toml").is_file() {
            Status::Started
        } else {
            Status::Todo
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Todo,
    Started,
    Trained,
    Done,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Todo => "todo",
            Status::Started => "started (will resume)",
            Status::Trained => "trained (will evaluate)",
            Status::Done => "done",
        })
    }
}

/// A loaded experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    /// `experiments/NAME/`
    pub dir: PathBuf,
    pub spec: ExperimentSpec,
    pub cells: Vec<Cell>,
}

fn err(path: &Path, message: impl std::fmt::Display) -> String {
    format!("{}: {message}", path.display())
}

/// Reads and validates an experiment file and every cell's config.
pub fn load(path: &Path) -> Result<Experiment, String> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let spec: ExperimentSpec = serde_path_to_error::deserialize(toml::Deserializer::new(&text))
        .map_err(|e| {
            let key = e.path().to_string();
            let msg = config::friendly(&e.into_inner().to_string());
            err(path, format!("`{key}`: {msg}"))
        })?;
    if spec.tasks.is_empty() {
        return Err(err(path, "`tasks`: expected at least one task config"));
    }
    if spec.jobs == 0 {
        return Err(err(path, "`jobs`: expected at least 1"));
    }
    if spec.encodings.is_empty() || spec.seeds.is_empty() {
        return Err(err(path, "`encodings` and `seeds` must not be empty"));
    }
    for e in &spec.encodings {
        if !ordo_model::PositionalEncodingConfig::KINDS.contains(&e.as_str()) {
            return Err(err(
                path,
                format!(
                    "`encodings`: unknown encoding {e:?}; expected one of {}",
                    ordo_model::PositionalEncodingConfig::KINDS.join(", ")
                ),
            ));
        }
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| err(path, "no file name"))?;
    let here = path.parent().unwrap_or(Path::new("."));
    let dir = here.join(&name);
    let axes = grid_axes(&spec.grid).map_err(|e| err(path, e))?;
    let set: Vec<String> = spec
        .set
        .iter()
        .map(|(k, v)| format!("{k}={}", toml_value(v)))
        .collect();
    let mut cells = Vec::new();
    for task_path in &spec.tasks {
        let task_path = here.join(task_path);
        if !task_path.is_file() {
            return Err(err(
                path,
                format!("`tasks`: {} does not exist", task_path.display()),
            ));
        }
        let stem = task_path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for variant in combinations(&axes) {
            for encoding in &spec.encodings {
                for &seed in &spec.seeds {
                    let mut id = format!("{stem}-{encoding}-s{seed}");
                    for (k, v) in &variant {
                        let short = k.rsplit('.').next().unwrap_or(k);
                        id.push_str(&format!("-{short}={}", plain(v)));
                    }
                    let id: String = id
                        .chars()
                        .map(|c| {
                            if c.is_alphanumeric() || "-_=.".contains(c) {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    let mut overrides = set.clone();
                    overrides.extend(
                        variant
                            .iter()
                            .map(|(k, v)| format!("{k}={}", toml_value(v))),
                    );
                    overrides.push(format!("model.encoding.kind={encoding}"));
                    overrides.push(format!("seed={seed}"));
                    overrides.push(format!("name={id}"));
                    overrides.push(format!(
                        "out_dir={}",
                        toml_value(&toml::Value::String(dir.join("runs").display().to_string()))
                    ));
                    let config = config::load(&task_path, &overrides)
                        .map_err(|e| format!("cell {id}: {e}"))?;
                    cells.push(Cell {
                        info: CellInfo {
                            id,
                            task: config.task.kind().to_string(),
                            encoding: encoding.clone(),
                            seed,
                            variant: variant.iter().map(|(k, v)| (k.clone(), plain(v))).collect(),
                        },
                        config,
                        base_dir: task_path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                    });
                }
            }
        }
    }
    Ok(Experiment {
        name,
        dir,
        spec,
        cells,
    })
}

fn toml_value(v: &toml::Value) -> String {
    v.to_string()
}

fn plain(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn grid_axes(grid: &toml::Table) -> Result<Vec<(String, Vec<toml::Value>)>, String> {
    grid.iter()
        .map(|(k, v)| match v {
            toml::Value::Array(values) if !values.is_empty() => Ok((k.clone(), values.clone())),
            _ => Err(format!(
                "`grid.\"{k}\"`: expected a non-empty list of values"
            )),
        })
        .collect()
}

fn combinations(axes: &[(String, Vec<toml::Value>)]) -> Vec<Vec<(String, toml::Value)>> {
    let mut out = vec![Vec::new()];
    for (key, values) in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push((key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    out
}

/// Options of `ordo ablate`.
#[derive(Debug, Clone, Copy)]
pub struct AblateOptions {
    /// Cells trained side by side.
    pub jobs: usize,
    /// `(i, n)`: run only cells `k` with `k % n == i - 1` (1-based `i`).
    pub shard: Option<(usize, usize)>,
    /// Print a line per cell.
    pub verbose: bool,
}

/// Parses `i/n` with `1 <= i <= n`.
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("expected i/n with 1 <= i <= n (e.g. 2/4), got {text:?}");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

impl Experiment {
    /// The cells this shard runs.
    pub fn shard(&self, shard: Option<(usize, usize)>) -> Vec<&Cell> {
        self.cells
            .iter()
            .enumerate()
            .filter(|(k, _)| shard.is_none_or(|(i, n)| k % n == i - 1))
            .map(|(_, c)| c)
            .collect()
    }

    fn eval_options(&self) -> EvalOptions {
        EvalOptions {
            max_factor: self.spec.eval.max_factor,
            examples: self.spec.eval.examples,
            batch_size: self.spec.eval.batch_size,
            ..EvalOptions::default()
        }
    }

    fn report_spec(&self) -> ReportSpec {
        let mut tasks_order: Vec<String> = Vec::new();
        for c in &self.cells {
            if !tasks_order.contains(&c.info.task) {
                tasks_order.push(c.info.task.clone());
            }
        }
        ReportSpec {
            name: self.name.clone(),
            description: describe(&self.spec, self.cells.len()),
            encodings_order: self.spec.encodings.clone(),
            tasks_order,
        }
    }
}

fn describe(spec: &ExperimentSpec, cells: usize) -> String {
    let mut text = String::new();
    if !spec.description.is_empty() {
        text.push_str(&spec.description);
        text.push_str("\n\n");
    }
    let tasks: Vec<String> = spec
        .tasks
        .iter()
        .map(|p| format!("`{}`", p.display()))
        .collect();
    text.push_str(&format!(
        "Grid: {cells} cells = tasks {} x encodings {} x seeds {:?}",
        tasks.join(", "),
        spec.encodings.join(", "),
        spec.seeds
    ));
    for (k, v) in &spec.grid {
        text.push_str(&format!(" x `{k}` {v}"));
    }
    text.push('.');
    if !spec.set.is_empty() {
        let set: Vec<String> = spec
            .set
            .iter()
            .map(|(k, v)| format!("`{k} = {v}`"))
            .collect();
        text.push_str(&format!(" Every cell sets {}.", set.join(", ")));
    }
    text.push_str(&format!(
        " Evaluation: {} fresh examples per length, lengths up to {}x the longest training length.",
        spec.eval.examples, spec.eval.max_factor
    ));
    text
}

/// Runs the (shard of the) grid, then writes the report over every finished cell.
/// Returns the report path; cells that failed are listed in the error after the others ran.
pub fn run(experiment: &Experiment, options: AblateOptions) -> Result<PathBuf, String> {
    std::fs::create_dir_all(experiment.dir.join("runs")).map_err(|e| err(&experiment.dir, e))?;
    let spec_text =
        serde_json::to_string_pretty(&experiment.report_spec_file()).expect("spec serialises");
    write_atomic(
        &experiment.dir.join("experiment.json"),
        spec_text.as_bytes(),
    )
    .map_err(|e| err(&experiment.dir, e))?;
    let cells = experiment.shard(options.shard);
    let queue = Mutex::new(
        cells
            .iter()
            .copied()
            .filter(|c| c.status() != Status::Done)
            .collect::<VecDeque<_>>(),
    );
    let total = queue.lock().unwrap().len();
    if options.verbose {
        println!(
            "{}: {} cells in this shard, {} already done, {} to run with {} job(s)",
            experiment.name,
            cells.len(),
            cells.len() - total,
            total,
            options.jobs
        );
    }
    let failures = Mutex::new(Vec::new());
    let finished = Mutex::new(0usize);
    let eval_options = experiment.eval_options();
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let Some(cell) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let started = Instant::now();
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_cell(cell, &eval_options)
                    }))
                    .unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&p))));
                    let n = {
                        let mut f = finished.lock().unwrap();
                        *f += 1;
                        *f
                    };
                    match outcome {
                        Ok(report) => {
                            if options.verbose {
                                println!(
                                    "[{n}/{total}] {} done in {:.0}s: {}",
                                    cell.info.id,
                                    started.elapsed().as_secs_f64(),
                                    crate::report::cell_summary(&report),
                                );
                            }
                        }
                        Err(e) => {
                            eprintln!("[{n}/{total}] {} FAILED: {e}", cell.info.id);
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{}: {e}", cell.info.id));
                        }
                    }
                }
            });
        }
    });
    let report = rebuild_report(&experiment.dir)?;
    let failures = failures.into_inner().unwrap();
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(format!(
            "{} cell(s) failed (the others are kept; run the same command again to retry):\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// Trains (or resumes) and evaluates one cell.
pub fn run_cell(cell: &Cell, eval: &EvalOptions) -> Result<EvalReport, String> {
    let dir = cell.run_dir();
    match cell.status() {
        Status::Todo => {
            trainer::train(cell.config.clone(), &cell.base_dir, Progress::Quiet)
                .map_err(|e| e.to_string())?;
        }
        Status::Started => {
            trainer::resume(&dir, Progress::Quiet).map_err(|e| e.to_string())?;
        }
        Status::Trained | Status::Done => {}
    }
    let info = serde_json::to_string_pretty(&cell.info).expect("cell info serialises");
    write_atomic(&dir.join("cell.json"), info.as_bytes()).map_err(|e| err(&dir, e))?;
    evaluate_run(&dir, eval).map_err(|e| e.to_string())
}

/// The report settings `ordo report` needs, kept in `experiments/NAME/experiment.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportSpecFile {
    pub name: String,
    pub description: String,
    pub encodings_order: Vec<String>,
    pub tasks_order: Vec<String>,
}

impl Experiment {
    fn report_spec_file(&self) -> ReportSpecFile {
        let s = self.report_spec();
        ReportSpecFile {
            name: s.name,
            description: s.description,
            encodings_order: s.encodings_order,
            tasks_order: s.tasks_order,
        }
    }
}

/// `ordo report experiments/NAME`: rebuilds `report.md` and the plots from every finished cell
/// under `runs/` (each with `cell.json` and `eval.json`).
pub fn rebuild_report(dir: &Path) -> Result<PathBuf, String> {
    let spec_path = dir.join("experiment.json");
    let spec: ReportSpecFile = std::fs::read_to_string(&spec_path)
        .map_err(|e| {
            err(
                &spec_path,
                format!("cannot read ({e}); is this an experiment directory?"),
            )
        })
        .and_then(|t| serde_json::from_str(&t).map_err(|e| err(&spec_path, e)))?;
    let runs = dir.join("runs");
    let mut cells = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&runs)
        .map_err(|e| err(&runs, e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for run in entries {
        let (cell_path, eval_path) = (run.join("cell.json"), run.join("eval.json"));
        if !(cell_path.is_file() && eval_path.is_file()) {
            continue;
        }
        let info: CellInfo = read_json(&cell_path)?;
        let eval: EvalReport = read_json(&eval_path)?;
        cells.push(CellResult {
            task: info.task,
            encoding: info.encoding,
            seed: info.seed,
            variant: info.variant,
            eval,
        });
    }
    let report_spec = ReportSpec {
        name: spec.name,
        description: spec.description,
        encodings_order: spec.encodings_order,
        tasks_order: spec.tasks_order,
    };
    write_report(dir, &report_spec, &cells)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e))?;
    serde_json::from_str(&text).map_err(|e| err(path, e))
}
