//! `ordo ablate experiments/NAME.toml`: a grid of runs (tasks x encodings x seeds x any other
//! config key), each trained and evaluated into `experiments/NAME/runs/<cell>/`.
//!
//! ```toml
//! description = "All encodings on copy and reverse"
//! tasks = ["../configs/copy.toml", "../configs/reverse.toml"]   # relative to this file
//! encodings = ["none", "sinusoidal", "learned", "t5", "shaw", "rope", "alibi"]
//! # an entry may also be a scheme with parameters, named `kind(key=value, ...)` in the report:
//! # encodings = ["t5", { kind = "t5", init_std = 3.0 }, { kind = "alibi", direction = "asymmetric" }]
//! seeds = [0, 1, 2]
//! [set]                      # overrides for every cell
//! "train.steps" = 800
//! [grid]                     # further axes: key -> values
//! "model.mode" = ["causal", "bidirectional"]
//! [eval]
//! examples = 64
//! ```
//!
//! Resumable: a cell evaluated with the experiment's `[eval]` options is finished and skipped; a
//! cell with a run directory but no summary resumes from its checkpoint; a trained cell without
//! its evaluation (none yet, or only a manual `ordo eval` with other options) is evaluated.
//! Every cell's config is loaded and validated, and every cell id checked to be unique, before
//! the first one trains.
//!
//! Safe with any number of processes on one experiment directory (the shards of a job array, a
//! duplicate start, an `ordo report` or `ordo eval` meanwhile): a process works on a cell only
//! while it holds the cell's run-directory lock, and skips cells another process holds; the
//! report is rebuilt by every process when it finishes, or left to the one rebuilding it then,
//! which rebuilds it again afterwards ([`rebuild_held`]), so the last report written is
//! complete.
//!
//! Stale cells: a cell whose run directory holds another config than the experiment now asks for
//! (an edited `[set]`, base config or input file) or was evaluated with other `[eval]` options is
//! never silently reused. `ordo ablate` lists them with what changed and refuses to start;
//! `--rerun-stale` moves such a run directory to `stale/` and trains it again (or re-evaluates
//! it, if only `[eval]` changed).

pub use crate::experiment_dir::ExperimentDir;
use crate::extrapolation::{EvalOptions, EvalRecord, EvalReport, evaluate_locked};
use crate::report::{CellResult, ReportError, ReportSpec, write_report};
use ordo_train::config::{self, RunConfig};
use ordo_train::run_dir::write_atomic;
use ordo_train::run_dir::{AtPath, RunDir, RunDirError, RunLock, WithPath};
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
    /// Encodings: a kind (`model.encoding.kind`) or a table of a kind and its parameters.
    #[serde(default = "all_encodings")]
    pub encodings: Vec<EncodingEntry>,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Overrides applied to every cell: dotted key -> value.
    #[serde(default)]
    pub set: toml::Table,
    /// Further axes: dotted key -> list of values.
    #[serde(default)]
    pub grid: toml::Table,
    #[serde(default)]
    /// How every cell is evaluated (`[eval]`: `max_factor`, `examples`, `batch_size`).
    pub eval: EvalOptions,
    /// Cells trained side by side unless `--jobs` says otherwise.
    #[serde(default = "one_job")]
    pub jobs: usize,
}

fn one_job() -> usize {
    1
}

fn all_encodings() -> Vec<EncodingEntry> {
    ordo_model::PositionalEncodingConfig::KINDS
        .iter()
        .map(|s| EncodingEntry::Kind(s.to_string()))
        .collect()
}

/// One entry of `encodings`: `"t5"`, or `{ kind = "t5", init_std = 3.0 }` (the scheme's
/// parameters, each set as `model.encoding.<key>` on top of the task's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EncodingEntry {
    Kind(String),
    Table(toml::Table),
}

impl EncodingEntry {
    /// The scheme's kind, checked to be one ordo knows.
    fn kind(&self) -> Result<&str, EncodingEntryError> {
        let kind = match self {
            EncodingEntry::Kind(kind) => kind.as_str(),
            EncodingEntry::Table(table) => match table.get("kind") {
                Some(toml::Value::String(kind)) => kind.as_str(),
                Some(other) => return Err(EncodingEntryError::KindNotString(other.to_string())),
                None => {
                    let entry = toml_value(&toml::Value::Table(table.clone()));
                    return Err(EncodingEntryError::NoKind(entry));
                }
            },
        };
        if ordo_model::PositionalEncodingConfig::KINDS.contains(&kind) {
            Ok(kind)
        } else {
            Err(EncodingEntryError::Unknown(kind.to_string()))
        }
    }

    /// The parameters besides `kind`, in key order.
    fn parameters(&self) -> Vec<(&String, &toml::Value)> {
        match self {
            EncodingEntry::Kind(_) => Vec::new(),
            EncodingEntry::Table(table) => table.iter().filter(|(k, _)| *k != "kind").collect(),
        }
    }

    /// Its name in cell ids and the report: the kind, followed by its parameters as
    /// `(key=value, ...)` when it has any (`alibi(direction=asymmetric)`).
    pub fn label(&self) -> String {
        let kind = self.kind().unwrap_or_default();
        let parameters = self.parameters();
        if parameters.is_empty() {
            return kind.to_string();
        }
        let list: Vec<String> = parameters
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect();
        format!("{kind}({})", list.join(", "))
    }

    /// The `--set` assignments that select it.
    fn overrides(&self) -> Vec<String> {
        let kind = self.kind().unwrap_or_default();
        let mut overrides = vec![format!("model.encoding.kind={kind}")];
        overrides.extend(
            self.parameters()
                .iter()
                .map(|(k, v)| format!("model.encoding.{k}={}", toml_value(v))),
        );
        overrides
    }
}

fn default_seeds() -> Vec<u64> {
    vec![0]
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
    /// The `[eval]` options of ablate's evaluation of this cell, once it ran (absent in files
    /// of older versions, and before the evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_with: Option<EvalRecord>,
}

/// One cell of the grid, with its validated config.
#[derive(Debug, Clone)]
pub struct Cell {
    pub info: CellInfo,
    pub config: RunConfig,
    /// Directory of the task's base config (resolves its relative paths).
    pub base_dir: PathBuf,
    /// The base config file.
    pub source: PathBuf,
    /// Estimated peak memory of training the cell and evaluating it to the experiment's
    /// `max_factor` ([`ordo_train::budget`]), computed once when the grid is loaded; checked
    /// against the memory of the machine that runs it ([`Experiment::check_memory`]).
    pub peak_bytes: u64,
}

impl Cell {
    pub fn run_dir(&self) -> RunDir {
        RunDir::new(self.config.run_dir())
    }

    /// Where the cell stands, given the evaluation the experiment asks for.
    pub fn status(&self, eval: &EvalRecord) -> Status {
        let run = self.run_dir();
        if !run.is_run() {
            return Status::Todo;
        }
        let changes = self.config_changes();
        if !changes.is_empty() {
            return Status::Stale(changes);
        }
        if !run.is_trained() {
            return Status::Started;
        }
        let info: Option<CellInfo> = run.read_json(&run.cell()).ok();
        let report: Option<EvalReport> = run.read_json(&run.eval_json(&Default::default())).ok();
        // Done means everything the report reads is there: the evaluation, and `cell.json`
        // saying it is this experiment's (a plain `ordo eval` writes the first, not the second;
        // a crash between the two leaves only the first). `cell.json` of older versions does
        // not record the evaluation: its presence then suffices.
        let recorded = info.as_ref().map(|i| i.evaluated_with.as_ref());
        match (report, recorded.flatten().cloned()) {
            (Some(report), with)
                if recorded.is_some()
                    && with.as_ref().is_none_or(|w| w == eval)
                    && report.options.as_ref().is_none_or(|o| o == eval)
                    && report
                        .checkpoint_step
                        .is_none_or(|step| step == self.config.train.steps) =>
            {
                Status::Done
            }
            (_, Some(before)) if before != *eval => Status::StaleEvaluation(format!(
                "`[eval]`: the cell was evaluated with {}, the experiment asks for {}",
                serde_json::to_string(&before).unwrap_or_default(),
                serde_json::to_string(eval).unwrap_or_default()
            )),
            // Not evaluated yet, or only by a manual `ordo eval` with other options.
            _ => Status::Trained,
        }
    }

    /// What differs between the run directory's `config.toml` (and the input files it
    /// recorded) and this cell's config: one line per key.
    pub fn config_changes(&self) -> Vec<String> {
        let run = self.run_dir();
        // Read through this binary's config type, so that a key the stored file lacks (written
        // by a version before the key existed) counts as its default, not as a change; a file
        // this version cannot read is compared as it is.
        let stored = match std::fs::read_to_string(run.config())
            .map_err(|e| e.to_string())
            .and_then(|t| {
                let text = toml::from_str::<config::RunConfig>(&t)
                    .map(|c| c.to_toml())
                    .unwrap_or(t);
                text.parse::<toml::Table>().map_err(|e| e.to_string())
            }) {
            Ok(table) => table,
            Err(e) => return vec![format!("{}: cannot read ({e})", run.config().display())],
        };
        let wanted: toml::Table = trainer::stored_config(&self.config, &self.base_dir)
            .to_toml()
            .parse()
            .expect("a config serialises to a TOML table");
        let (stored, wanted) = (flatten(&stored), flatten(&wanted));
        let mut changes = Vec::new();
        let keys: std::collections::BTreeSet<&String> =
            stored.keys().chain(wanted.keys()).collect();
        for key in keys {
            // The experiment directory may have moved (a copy on another machine).
            if key == "out_dir" {
                continue;
            }
            let (was, now) = (stored.get(key), wanted.get(key));
            if was != now && !same_input(&run, key, was, now) {
                let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
                changes.push(format!(
                    "`{key}`: the run has {}, the experiment asks for {}",
                    show(was),
                    show(now)
                ));
            }
        }
        if let Err(e) = run.check_inputs() {
            changes.push(e.to_string());
        }
        // Data compiled into ordo (the built-in lexicon): the hashes the run was trained with
        // (its first session) against this binary's. Runs of older versions record none.
        if let Ok(provenance) = run.read_json::<ordo_train::run_dir::Provenance>(&run.provenance())
            && let Some(first) = provenance.sessions.first()
        {
            for (name, text) in self.config.task.builtin_inputs() {
                let now = ordo_train::run_dir::sha256_text(text);
                match first.builtin_inputs.get(name) {
                    Some(then) if *then != now => changes.push(format!(
                        "the {name} changed since the run was trained (ordo {} at {}: content \
                         hash {then}; this binary's {now})",
                        first.ordo_version, first.git_commit
                    )),
                    _ => {}
                }
            }
        }
        changes
    }
}

/// Whether two values of an input-path key (`task.corpus`, `task.lexicon`, `task.tokenizer`)
/// name files of the same content, read from the run directory: the data staged to another
/// place (node-local scratch) or reached through another path is the same input.
fn same_input(run: &RunDir, key: &str, was: Option<&String>, now: Option<&String>) -> bool {
    let (Some(was), Some(now)) = (was, now) else {
        return false;
    };
    if !["task.corpus", "task.lexicon", "task.tokenizer"].contains(&key) {
        return false;
    }
    let unquote = |v: &String| v.trim_matches('"').to_string();
    let hash = |v: &String| ordo_train::run_dir::sha256_file(&run.path().join(unquote(v))).ok();
    matches!((hash(was), hash(now)), (Some(a), Some(b)) if a == b)
}

/// `a.b.c` -> value (as TOML text) for every leaf of a table.
fn flatten(table: &toml::Table) -> std::collections::BTreeMap<String, String> {
    config::leaves(table)
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Todo,
    Started,
    Trained,
    Done,
    /// The run directory holds another config (or input file) than the experiment asks for:
    /// what changed, one line per key.
    Stale(Vec<String>),
    /// Trained as asked, but evaluated with other `[eval]` options than the experiment asks for.
    StaleEvaluation(String),
}

impl Status {
    /// What changed, for a stale cell.
    pub fn staleness(&self) -> Option<String> {
        match self {
            Status::Stale(changes) => Some(changes.join("; ")),
            Status::StaleEvaluation(change) => Some(change.clone()),
            _ => None,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Todo => f.write_str("todo"),
            Status::Started => f.write_str("started (will resume)"),
            Status::Trained => f.write_str("trained (will evaluate)"),
            Status::Done => f.write_str("done"),
            Status::Stale(_) | Status::StaleEvaluation(_) => {
                write!(f, "STALE: {}", self.staleness().unwrap_or_default())
            }
        }
    }
}

/// A loaded experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    /// The experiment file it was loaded from (`experiments/NAME.toml`).
    pub file: PathBuf,
    /// `experiments/NAME/`
    pub dir: PathBuf,
    pub spec: ExperimentSpec,
    pub cells: Vec<Cell>,
}

fn err(path: &Path, message: impl std::fmt::Display) -> ExperimentError {
    ExperimentError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// An entry of `encodings` that names no scheme ordo knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingEntryError {
    #[error("`encodings`: expected `kind` to be a string, got {0}")]
    KindNotString(String),
    #[error("`encodings`: the entry {0} has no `kind`")]
    NoKind(String),
    #[error(
        "`encodings`: unknown encoding {0:?}; expected one of {kinds}",
        kinds = ordo_model::PositionalEncodingConfig::KINDS.join(", ")
    )]
    Unknown(String),
}

/// An experiment file that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{}: cannot read: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// What is wrong in the file, naming the key.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Encoding(WithPath<EncodingEntryError>),
    #[error(transparent)]
    Eval(WithPath<crate::extrapolation::InvalidOption>),
    /// A cell's config (the base config with the cell's overrides) is invalid.
    #[error("cell {id}: {error}")]
    Cell {
        id: String,
        error: config::ConfigError,
    },
    /// A cell's task cannot be built.
    #[error("cell {id}: task.{}: {}", error.field, error.message)]
    CellTask {
        id: String,
        error: ordo_train::tasks::TaskConfigError,
    },
}

/// Reads and validates an experiment file and every cell's config.
pub fn load(path: &Path) -> Result<Experiment, ExperimentError> {
    let text = ordo_train::read_input(path).map_err(|cause| ExperimentError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
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
    spec.eval
        .validate(&|key| format!("`eval.{key}`"))
        .at(path)
        .map_err(ExperimentError::Eval)?;
    for e in &spec.encodings {
        e.kind().at(path).map_err(ExperimentError::Encoding)?;
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| err(path, "no file name"))?;
    // The experiment's directory is named after the file: `...toml` (stem `..`) would put it
    // one level up, over whatever is there.
    if name.is_empty() || name == "." || name == ".." {
        return Err(err(
            path,
            format!(
                "the experiment's directory is named after the file (`{name}`), which would not \
                 be a directory of its own beside it; rename the file"
            ),
        ));
    }
    let here = path.parent().unwrap_or(Path::new("."));
    let dir = here.join(&name);
    let axes = grid_axes(&spec.grid).map_err(|e| err(path, e))?;
    // Keys that ablate sets itself for every cell: in `[set]` or `[grid]` they would be
    // overridden (two cells labelled seed=0 and seed=1, both seed 0) or break the layout.
    for (table, key) in spec
        .set
        .keys()
        .map(|k| ("set", k))
        .chain(spec.grid.keys().map(|k| ("grid", k)))
    {
        let owned = match key.as_str() {
            "seed" => Some("list the seeds in `seeds`"),
            "name" | "out_dir" => {
                Some("ablate names each cell and puts it under the experiment's runs/")
            }
            "model.encoding" | "model.encoding.kind" => Some(
                "list encodings, with their parameters, in `encodings` (e.g. { kind = \"rope\", \
                 base = 500.0 })",
            ),
            // A parameter every cell shares is fine (`randomized_positions = [0, 320]`), unless
            // an entry of `encodings` sets it too: the entry's value would silently win.
            k => k.strip_prefix("model.encoding.").and_then(|param| {
                spec.encodings
                    .iter()
                    .any(|e| e.parameters().iter().any(|(p, _)| p.as_str() == param))
                    .then_some(
                        "an entry of `encodings` sets it too, and would override it; set it in \
                         one place",
                    )
            }),
        };
        if let Some(instead) = owned {
            return Err(err(
                path,
                format!("`{table}.\"{key}\"`: ablate sets this key for every cell; {instead}"),
            ));
        }
    }
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
            for entry in &spec.encodings {
                let encoding = &entry.label();
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
                    overrides.extend(entry.overrides());
                    overrides.push(format!("seed={seed}"));
                    overrides.push(format!("name={id}"));
                    overrides.push(format!(
                        "out_dir={}",
                        toml_value(&toml::Value::String(
                            ExperimentDir::new(&dir).runs().display().to_string()
                        ))
                    ));
                    // Sizes are checked against memory later, for the cells a shard runs
                    // side by side on the machine it runs on ([`Experiment::check_memory`]);
                    // here only estimated, up to the experiment's longest evaluation.
                    let (config, generator) = ordo_train::budget::deferred(|| {
                        config::load_with_task(&task_path, &overrides, None)
                    })
                    .map_err(|error| ExperimentError::Cell {
                        id: id.clone(),
                        error,
                    })?;
                    let factor = spec.eval.max_factor().max(config::EVAL_FACTOR);
                    let peak_bytes =
                        ordo_train::budget::deferred(|| config.check_memory(&generator, factor))
                            .map_err(|e| err(path, format!("cell {id}: `eval.max_factor`: {e}")))?
                            .peak();
                    cells.push(Cell {
                        info: CellInfo {
                            id,
                            task: config.task.kind().to_string(),
                            encoding: encoding.clone(),
                            seed,
                            variant: variant.iter().map(|(k, v)| (k.clone(), plain(v))).collect(),
                            evaluated_with: None,
                        },
                        config,
                        base_dir: task_path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                        source: task_path.clone(),
                        peak_bytes,
                    });
                }
            }
        }
    }
    // `eval.max_factor` reaches the tasks that use it (an `lm` task evaluates fixed multiples
    // of its context); refused when none does, as `ordo eval --max-factor` is.
    if spec.eval.max_factor.is_some() && !cells.iter().any(|c| c.config.task.uses_max_factor()) {
        return Err(err(
            path,
            "`eval.max_factor`: no task of this experiment uses it (an `lm` task evaluates 1, 2, \
             4 and 8 times its context); remove it",
        ));
    }
    // Two base configs of one task kind (a decoder and an encoder `bigram_shift`) are two
    // tasks of the report, not one pooled row: name them by kind and file.
    for i in 0..cells.len() {
        let (kind, source) = (cells[i].config.task.kind(), cells[i].source.clone());
        if cells
            .iter()
            .any(|c| c.config.task.kind() == kind && c.source != source)
        {
            let stem = source
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            cells[i].info.task = format!("{kind} ({stem})");
        }
    }
    // Two cells in one run directory would overwrite each other: a seed or an encoding listed
    // twice, two base configs with one file name, grid values that read the same in an id.
    let mut seen: std::collections::HashMap<PathBuf, &Cell> = std::collections::HashMap::new();
    for cell in &cells {
        let dir = cell.config.run_dir();
        if let Some(first) = seen.insert(dir.clone(), cell) {
            return Err(err(
                path,
                format!(
                    "two cells would share the run directory {}: {} (from {}) and {} (from {}); \
                     remove the repeated seed, encoding or grid value, or rename one base config",
                    dir.display(),
                    first.info.id,
                    first.source.display(),
                    cell.info.id,
                    cell.source.display()
                ),
            ));
        }
    }
    Ok(Experiment {
        name,
        file: path.to_path_buf(),
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
    /// Move stale cells' run directories to `stale/` and run them again.
    pub rerun_stale: bool,
}

/// Why `ordo ablate` stopped.
#[derive(Debug, thiserror::Error)]
pub enum AblateError {
    #[error(
        "{count} cell(s) are stale: their run directories hold another config or evaluation than \
         the experiment asks for. Nothing was run. Use --rerun-stale to move them to {stale_dir} \
         and run them again, or undo the change.\n  {}",
        lines.join("\n  ")
    )]
    Stale {
        count: usize,
        stale_dir: PathBuf,
        lines: Vec<String>,
    },
    #[error(
        "{} cell(s) failed (the others are kept; run the same command again to retry):\n  {}",
        .0.len(),
        .0.join("\n  ")
    )]
    CellsFailed(Vec<String>),
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
}

/// Parses `i/n` with `1 <= i <= n`, or `slurm`: the task of a Slurm job array
/// (`SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`).
pub fn parse_shard(text: &str) -> Result<(usize, usize), ShardError> {
    if text == "slurm" {
        return slurm_shard(|name| std::env::var(name).ok());
    }
    let bad = || ShardError::Syntax(text.to_string());
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

/// The shard of a Slurm array task, from its environment (`var` reads a variable).
pub fn slurm_shard(var: impl Fn(&str) -> Option<String>) -> Result<(usize, usize), ShardError> {
    let read = |name: &'static str| -> Result<usize, ShardError> {
        let value = var(name).ok_or(ShardError::Unset(name))?;
        value
            .trim()
            .parse()
            .map_err(|_| ShardError::NotANumber { name, value })
    };
    let (id, count) = (
        read("SLURM_ARRAY_TASK_ID")?,
        read("SLURM_ARRAY_TASK_COUNT")?,
    );
    let min = match var("SLURM_ARRAY_TASK_MIN") {
        Some(_) => read("SLURM_ARRAY_TASK_MIN")?,
        None => 1,
    };
    let max = match var("SLURM_ARRAY_TASK_MAX") {
        Some(_) => read("SLURM_ARRAY_TASK_MAX")?,
        None => min + count.saturating_sub(1),
    };
    // Shards are numbered 1..=count: only an array of consecutive ids maps onto them.
    if count == 0 || id < min || id > max || max < min || max - min + 1 != count {
        return Err(ShardError::NotConsecutive {
            id,
            min,
            max,
            count,
        });
    }
    Ok((id - min + 1, count))
}

/// A shard ([`parse_shard`], [`slurm_shard`]) that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Neither `i/n` with `1 <= i <= n` nor `slurm`, as written.
    #[error("expected i/n with 1 <= i <= n (e.g. 2/4), got {0:?}")]
    Syntax(String),
    /// A Slurm variable that must be set.
    #[error(
        "`slurm`: {0} is not set; run inside a Slurm job array (sbatch --array=1-N) or give the \
         shard as i/n"
    )]
    Unset(&'static str),
    #[error("`slurm`: {name}={value:?} is not a number")]
    NotANumber { name: &'static str, value: String },
    #[error(
        "`slurm`: the array task ids must be consecutive (e.g. --array=1-{count}); got task {id} \
         of ids {min}-{max} with {count} tasks"
    )]
    NotConsecutive {
        id: usize,
        min: usize,
        max: usize,
        count: usize,
    },
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

    pub fn eval_options(&self) -> EvalOptions {
        self.spec.eval.clone()
    }

    fn report_spec(&self) -> ReportSpec {
        let mut tasks_order: Vec<String> = Vec::new();
        for c in &self.cells {
            if !tasks_order.contains(&c.info.task) {
                tasks_order.push(c.info.task.clone());
            }
        }
        ReportSpec {
            left_out: Vec::new(),
            name: self.name.clone(),
            description: describe(&self.spec, self.cells.len()),
            encodings_order: self
                .spec
                .encodings
                .iter()
                .map(EncodingEntry::label)
                .collect(),
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
        spec.encodings
            .iter()
            .map(EncodingEntry::label)
            .collect::<Vec<_>>()
            .join(", "),
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
        spec.eval.examples,
        spec.eval.max_factor()
    ));
    text
}

/// Runs the (shard of the) grid, then writes the report over every finished cell.
/// Returns the report path; cells that failed are listed in the error after the others ran.
pub fn run(experiment: &Experiment, options: AblateOptions) -> Result<AblateOutcome, AblateError> {
    let layout = ExperimentDir::new(&experiment.dir);
    let runs = layout.runs();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| AblateError::Io { path, cause }
    };
    std::fs::create_dir_all(&runs).map_err(io(&runs))?;
    if let Some(why) = ordo_train::run_dir::node_local_locks(&runs) {
        eprintln!("note: {why}");
    }
    let cells = experiment.shard(options.shard);
    if cells.is_empty() {
        // More array tasks than cells: nothing to do is not a failure.
        if options.verbose {
            println!(
                "{}: this shard has no cells (the grid has {}); nothing to do",
                experiment.name,
                experiment.cells.len()
            );
        }
        return Ok(AblateOutcome {
            report: None,
            unfinished: Vec::new(),
        });
    }
    let eval_options = experiment.eval_options();
    let wanted = eval_options.record();
    let statuses: Vec<Status> = cells.iter().map(|c| c.status(&wanted)).collect();
    let to_run: Vec<&Cell> = cells
        .iter()
        .zip(&statuses)
        .filter(|(_, s)| **s != Status::Done)
        .map(|(c, _)| *c)
        .collect();
    experiment.check_memory(&to_run, options.jobs)?;
    let stale: Vec<String> = cells
        .iter()
        .zip(&statuses)
        .filter_map(|(c, s)| Some(format!("{}: {}", c.info.id, s.staleness()?)))
        .collect();
    if !stale.is_empty() && !options.rerun_stale {
        return Err(AblateError::Stale {
            count: stale.len(),
            stale_dir: experiment.stale_dir(),
            lines: stale,
        });
    }
    // Only now, so that an edited grid refused as stale leaves the report of the grid that ran.
    // Every shard of a job array gets here: write only when the content changes (each write is
    // atomic, with a temporary name of its own, so concurrent writers cannot clash).
    let spec_text =
        serde_json::to_string_pretty(&experiment.report_spec_file()).expect("spec serialises");
    let spec_path = layout.spec();
    if std::fs::read_to_string(&spec_path).ok().as_deref() != Some(spec_text.as_str()) {
        write_atomic(&spec_path, spec_text.as_bytes()).map_err(io(&spec_path))?;
    }
    let queue = Mutex::new(to_run.iter().copied().collect::<VecDeque<_>>());
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
    // One worker: takes cells off the queue until it is empty.
    let work = || {
        loop {
            let Some(cell) = queue.lock().unwrap().pop_front() else {
                break;
            };
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_cell(experiment, cell, &eval_options, options.rerun_stale)
            }))
            .unwrap_or_else(|p| Err(CellError::Panicked(panic_message(&p))));
            let n = {
                let mut f = finished.lock().unwrap();
                *f += 1;
                *f
            };
            match outcome {
                Ok(CellOutcome::Ran(report)) => {
                    if options.verbose {
                        println!(
                            "[{n}/{total}] {} done in {:.0}s: {}",
                            cell.info.id,
                            started.elapsed().as_secs_f64(),
                            crate::summary::cell_summary(&report),
                        );
                    }
                }
                Ok(CellOutcome::Skipped(why)) => {
                    if options.verbose {
                        println!("[{n}/{total}] {} skipped: {why}", cell.info.id);
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
    };
    std::thread::scope(|scope| {
        start_workers(
            options.jobs,
            || {
                std::thread::Builder::new()
                    .spawn_scoped(scope, work)
                    .map(|_| ())
            },
            work,
        );
    });
    let mut failures = failures.into_inner().unwrap();
    // Cells of this shard that another process holds (a duplicate start, a shard of another
    // array on the same grid) and that are still not finished now.
    let unfinished: Vec<String> = cells
        .iter()
        .filter(|c| {
            !failures
                .iter()
                .any(|f| f.starts_with(&format!("{}: ", c.info.id)))
        })
        .filter(|c| c.status(&wanted) != Status::Done)
        .map(|c| c.info.id.clone())
        .collect();
    // A failed rebuild is reported beside the failed cells, never instead of them.
    let report = match rebuild_report_after(experiment) {
        Ok(Some(path)) => Some(path),
        Ok(None) => {
            eprintln!(
                "note: another process is rebuilding the report of {}; it rebuilds it again \
                 afterwards, with this process's cells",
                experiment.dir.display()
            );
            None
        }
        Err(ReportError::NoCells(..)) => None,
        Err(e) if !failures.is_empty() => {
            failures.push(format!("the report: {e}"));
            None
        }
        Err(e) => return Err(e.into()),
    };
    if failures.is_empty() {
        Ok(AblateOutcome { report, unfinished })
    } else {
        Err(AblateError::CellsFailed(failures))
    }
}

/// How long `ordo report` waits for another process's rebuild of the report.
pub const REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// What a run of (a shard of) the grid left.
#[derive(Debug, Clone, PartialEq)]
pub struct AblateOutcome {
    /// The report written, if one was (`None`: an empty shard, no finished cell anywhere yet,
    /// or another process rebuilding it, which rebuilds it again afterwards).
    pub report: Option<PathBuf>,
    /// Cells of this shard still unfinished because other processes hold them.
    pub unfinished: Vec<String>,
}

/// Starts `jobs` workers with `spawn` (at least one), fewer where it fails (a process or thread
/// limit: `ulimit -u`, a cgroup's `pids.max`), with a warning; runs `work` on this thread when
/// none could start. Returns the number of workers that ran.
pub fn start_workers(
    jobs: usize,
    mut spawn: impl FnMut() -> std::io::Result<()>,
    work: impl FnOnce(),
) -> usize {
    let jobs = jobs.max(1);
    let mut started = 0;
    for _ in 0..jobs {
        match spawn() {
            Ok(()) => started += 1,
            Err(e) => {
                eprintln!(
                    "warning: --jobs {jobs}: could start only {started} worker thread(s) ({e}); \
                     running with {}",
                    started.max(1)
                );
                break;
            }
        }
    }
    if started == 0 {
        work();
        return 1;
    }
    started
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// What became of a cell.
pub enum CellOutcome {
    /// Trained and/or evaluated by this process.
    Ran(Box<EvalReport>),
    /// Another process holds it, or it was finished by another process meanwhile.
    Skipped(String),
}

impl Experiment {
    /// Checks that `cells` (a shard's), `jobs` of them side by side, fit in the memory available
    /// here ([`ordo_train::budget::limit`]: `ORDO_MEMORY_LIMIT`, the cgroup's limit, or
    /// `MemAvailable`): the sum of the largest `jobs` estimated peaks ([`Cell::peak_bytes`]).
    pub fn check_memory(&self, cells: &[&Cell], jobs: usize) -> Result<(), ExperimentError> {
        let Some(limit) = ordo_train::budget::limit().map_err(|e| err(&self.dir, e))? else {
            return Ok(());
        };
        let mut peaks: Vec<(u64, &str)> = cells
            .iter()
            .map(|c| (c.peak_bytes, c.info.id.as_str()))
            .collect();
        peaks.sort_by_key(|p| std::cmp::Reverse(p.0));
        let side_by_side = &peaks[..jobs.max(1).min(peaks.len())];
        let total: u64 = side_by_side.iter().map(|p| p.0).sum();
        if total > limit {
            let show = ordo_train::budget::show_bytes;
            return Err(err(
                &self.dir,
                format!(
                    "{} cell(s) side by side (--jobs {jobs}) may need {} at their peaks ({}), more \
                     than the {} available here (ORDO_MEMORY_LIMIT, else the cgroup's limit, else \
                     MemAvailable); lower --jobs, or set ORDO_MEMORY_LIMIT to override",
                    side_by_side.len(),
                    show(total),
                    side_by_side
                        .iter()
                        .map(|(b, id)| format!("{id} {}", show(*b)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    show(limit)
                ),
            ));
        }
        Ok(())
    }

    /// Where `--rerun-stale` moves the run directories it replaces.
    pub fn stale_dir(&self) -> PathBuf {
        ExperimentDir::new(&self.dir).stale()
    }
}

/// Trains (or resumes) and evaluates one cell, holding its run directory's lock throughout.
/// A cell another process holds is skipped, not waited for.
pub fn run_cell(
    experiment: &Experiment,
    cell: &Cell,
    eval: &EvalOptions,
    rerun_stale: bool,
) -> Result<CellOutcome, CellError> {
    let run = cell.run_dir();
    let mut lock = match run.lock("ordo ablate") {
        Ok(lock) => lock,
        Err(RunDirError::Busy { lock, holder }) => {
            return Ok(CellOutcome::Skipped(format!(
                "{} is held by another process ({holder})",
                lock.display()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    // The status again, now that no other process can change it.
    let wanted = eval.record();
    let status = match cell.status(&wanted) {
        stale if !rerun_stale && stale.staleness().is_some() => {
            return Err(CellError::Stale(stale.staleness().unwrap_or_default()));
        }
        Status::Stale(_) => {
            lock = archive_stale(experiment, cell, lock)?;
            Status::Todo
        }
        // Only `[eval]` changed: evaluate again.
        Status::StaleEvaluation(_) => Status::Trained,
        other => other,
    };
    match status {
        Status::Done => {
            return Ok(CellOutcome::Skipped(
                "finished by another process meanwhile".into(),
            ));
        }
        Status::Todo => {
            trainer::Trainer::start(
                &lock,
                cell.config.clone(),
                None,
                &cell.base_dir,
                trainer::TrainOptions::new(Progress::Quiet),
            )?
            .run()?;
        }
        Status::Started => {
            trainer::Trainer::resume(&lock, trainer::TrainOptions::new(Progress::Quiet))?.run()?;
        }
        Status::Trained | Status::Stale(_) | Status::StaleEvaluation(_) => {}
    }
    let report = evaluate_locked(&lock, eval)?;
    let info = CellInfo {
        evaluated_with: Some(wanted),
        ..cell.info.clone()
    };
    run.write_json(&run.cell(), &info)?;
    Ok(CellOutcome::Ran(Box::new(report)))
}

/// Why one cell of the grid did not finish (the others run on).
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    /// Its run directory holds another config or evaluation (`Status::staleness`).
    #[error("stale: {0}")]
    Stale(String),
    /// Training or evaluating the cell panicked (the message of the panic).
    #[error("panicked: {0}")]
    Panicked(String),
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error(transparent)]
    Train(#[from] trainer::TrainError),
    #[error(transparent)]
    Eval(#[from] crate::extrapolation::EvalError),
}

/// Moves a stale cell's run directory (whose lock `lock` is) to `stale/<id>-<n>` and locks a
/// fresh one in its place.
fn archive_stale(
    experiment: &Experiment,
    cell: &Cell,
    lock: RunLock,
) -> Result<RunLock, CellError> {
    let run = cell.run_dir();
    let stale = experiment.stale_dir();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| CellError::Io { path, cause }
    };
    std::fs::create_dir_all(&stale).map_err(io(&stale))?;
    let target = (1..)
        .map(|n| stale.join(format!("{}-{n}", cell.info.id)))
        .find(|p| !p.exists())
        .expect("a free name");
    // Renaming keeps our lock on the moved directory's lock file until the new one is ours.
    std::fs::rename(run.path(), &target).map_err(io(run.path()))?;
    let fresh = run.lock("ordo ablate")?;
    drop(lock);
    eprintln!(
        "{}: stale run directory moved to {}",
        cell.info.id,
        target.display()
    );
    Ok(fresh)
}

/// The report settings `ordo report` needs, kept in `experiments/NAME/experiment.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportSpecFile {
    pub name: String,
    pub description: String,
    pub encodings_order: Vec<String>,
    pub tasks_order: Vec<String>,
    /// The ids of every cell of the grid (every shard writes the same list): the report counts
    /// only these run directories, names the missing ones and the others it ignores. Absent in
    /// files of older versions (then every finished run directory counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<String>,
    /// The experiment file's name (beside the experiment directory): `ordo report` reads it
    /// again to leave out cells stale against its current content. Absent in files of older
    /// versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Experiment {
    fn report_spec_file(&self) -> ReportSpecFile {
        let s = self.report_spec();
        ReportSpecFile {
            name: s.name,
            description: s.description,
            encodings_order: s.encodings_order,
            tasks_order: s.tasks_order,
            cells: self.cells.iter().map(|c| c.info.id.clone()).collect(),
            file: self
                .file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned()),
        }
    }
}

/// `ordo report experiments/NAME`: rebuilds `report.md` and the plots from every finished cell
/// under `runs/` (each with `cell.json` and its evaluation in `eval.json`), holding the
/// experiment's report ([`ExperimentDir::report_lock`] and its claim) so that two processes,
/// on one node or two, never interleave their writes; waits up to [`REPORT_WAIT`] for a rebuild
/// in progress. A cell whose files cannot be read is listed and left out, never fatal; so is a
/// cell stale against the experiment file's current content (read again for this).
pub fn rebuild_report(dir: &Path) -> Result<PathBuf, ReportError> {
    let spec = read_spec(dir)?;
    let current = current_experiment(dir, &spec);
    rebuild_held(
        dir,
        || build_report(dir, &spec, current.as_ref()),
        Some(REPORT_WAIT),
    )?
    .ok_or_else(|| {
        ReportError::Busy(format!(
            "{}: another process has been rebuilding the report for over {} s (run `ordo \
             report {}` again later)",
            ExperimentDir::new(dir).report_lock().display(),
            REPORT_WAIT.as_secs(),
            dir.display()
        ))
    })
}

/// What a process calls when it has finished its cells: rebuilds the report, or, when another
/// process is rebuilding it right now, leaves it to that one without waiting (`Ok(None)`):
/// see [`rebuild_held`] for why that one then includes this process's cells.
pub fn rebuild_report_after(experiment: &Experiment) -> Result<Option<PathBuf>, ReportError> {
    let dir = &experiment.dir;
    let spec = read_spec(dir)?;
    rebuild_held(dir, || build_report(dir, &spec, Some(experiment)), None)
}

/// The rebuild protocol of an experiment's report, for any number of processes on any number
/// of nodes, none of which waits for another's rebuild unless `wait` says so:
///
/// 1. mark the report as wanted (`.report.pending`, [`ExperimentDir::report_pending`]);
/// 2. take the report's [`Hold`](ordo_train::run_dir::Hold) (flock and claim); if another
///    process has it, stop here (or retry until `wait` is over): that process looks for the
///    mark after its rebuild, and the mark was made before our attempt, so it sees it;
/// 3. if the mark is gone, a rebuild that started after it has finished: nothing to do;
/// 4. remove the mark, `build` (from the cells finished by now, ours included), release;
/// 5. if a mark was made meanwhile (by a process that found us holding), go to 2.
///
/// So the last report written includes every cell finished before its process's step 1, and
/// a burst of shards finishing together costs two rebuilds in a row, not one per shard.
/// `Ok(None)`: left to another process.
pub fn rebuild_held(
    dir: &Path,
    mut build: impl FnMut() -> Result<PathBuf, ReportError>,
    wait: Option<std::time::Duration>,
) -> Result<Option<PathBuf>, ReportError> {
    let layout = ExperimentDir::new(dir);
    let pending = layout.report_pending();
    use crate::report::io_err as io;
    // The mark is made with an exclusive create, and one that exists already is as good. Not a
    // plain create: on FUSE (and NFS) a plain open of a file that another client removes between
    // the kernel's lookup and the open fails with "No such file" (seen with two bindfs mounts, in
    // scripts/cluster-check.sh); the exclusive create goes by the file system's own create.
    for attempt in 1.. {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&pending)
        {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 100 && dir.is_dir() => {
                continue;
            }
            Err(e) => return Err(io(&pending)(e)),
        }
    }
    let start = Instant::now();
    loop {
        let hold = match ordo_train::run_dir::Hold::take(
            &layout.report_lock(),
            &layout.report_claim(),
            "rebuilding the report",
        ) {
            Ok(hold) => hold,
            Err(RunDirError::Busy { .. }) => match wait {
                Some(wait) if start.elapsed() < wait => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
                _ => return Ok(None),
            },
            Err(e) => return Err(e.into()),
        };
        if !pending.exists() && layout.report().is_file() {
            return Ok(Some(layout.report()));
        }
        match std::fs::remove_file(&pending) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&pending)(e)),
        }
        let path = build()?;
        drop(hold);
        if !pending.exists() {
            return Ok(Some(path));
        }
    }
}

fn read_spec(dir: &Path) -> Result<ReportSpecFile, ReportError> {
    let spec_path = ExperimentDir::new(dir).spec();
    std::fs::read_to_string(&spec_path)
        .map_err(|cause| ReportError::NotAnExperiment {
            path: spec_path.clone(),
            cause,
        })
        .and_then(|t| {
            serde_json::from_str(&t).map_err(|cause| ReportError::Spec {
                path: spec_path.clone(),
                cause,
            })
        })
}

/// The experiment file that `experiment.json` names, loaded again as it is now (so that the
/// report leaves out cells stale against it); `None`, with a warning, where it is not there
/// or does not load.
fn current_experiment(dir: &Path, spec: &ReportSpecFile) -> Option<Experiment> {
    let file = spec.file.as_ref()?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    let path = parent.join(file);
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let why = if Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        != name
    {
        "it is not this directory's (the directory was renamed)".to_string()
    } else if !path.is_file() {
        "it is not there".to_string()
    } else {
        match load(&path) {
            Ok(experiment) => return Some(experiment),
            Err(e) => format!("it does not load ({e})"),
        }
    };
    eprintln!(
        "warning: {}: {why}; the report counts the cells experiment.json lists without \
         checking them against the experiment file",
        path.display()
    );
    None
}

/// The report of the cells under `dir/runs` that `spec` lists (or, where the experiment file
/// could be read again, `current` lists and finds up to date).
/// What the report's tables read of a finished run besides its evaluation. Best effort: a
/// file that cannot be read leaves its columns empty (the run's evaluation, which the report
/// needs, was read already).
fn cell_facts(run: &RunDir, id: &str) -> crate::report::CellFacts {
    let config = std::fs::read_to_string(run.config())
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .map(|t| crate::report::tables::flatten(&t))
        .unwrap_or_default();
    let summary: Option<trainer::Summary> = run.read_json(&run.summary()).ok();
    let final_train_loss = std::fs::read_to_string(run.metrics())
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v.get("kind").and_then(|k| k.as_str()) == Some("train"))
                .and_then(|v| v.get("loss")?.as_f64())
        });
    crate::report::CellFacts {
        id: id.to_string(),
        base_config: None,
        config,
        steps: summary.as_ref().map(|s| s.steps),
        seconds: summary.as_ref().map(|s| s.seconds),
        tokens_per_second: summary.as_ref().map(|s| s.tokens_per_second),
        valid_loss: summary.as_ref().map(|s| s.valid.loss),
        valid_token_accuracy: summary.as_ref().map(|s| s.valid.token_accuracy),
        valid_exact_match: summary.as_ref().map(|s| s.valid.exact_match),
        final_train_loss,
    }
}

fn build_report(
    dir: &Path,
    spec: &ReportSpecFile,
    current: Option<&Experiment>,
) -> Result<PathBuf, ReportError> {
    let (report_spec, cells) = gather_cells(dir, spec, current)?;
    write_report(dir, &report_spec, &cells)
}

/// The finished cells of the experiment in `dir` as the report reads them, with the report's
/// settings (what it leaves out, and why, among them); read-only, without the report's lock
/// (for exports of a finished experiment: `ordo export tensorboard`).
pub fn finished_cells(dir: &Path) -> Result<(ReportSpec, Vec<CellResult>), ReportError> {
    let spec = read_spec(dir)?;
    let current = current_experiment(dir, &spec);
    gather_cells(dir, &spec, current.as_ref())
}

fn gather_cells(
    dir: &Path,
    spec: &ReportSpecFile,
    current: Option<&Experiment>,
) -> Result<(ReportSpec, Vec<CellResult>), ReportError> {
    let layout = ExperimentDir::new(dir);
    let spec = current.map_or_else(|| spec.clone(), Experiment::report_spec_file);
    let current_cells: std::collections::HashMap<&str, &Cell> = current
        .map(|e| e.cells.iter().map(|c| (c.info.id.as_str(), c)).collect())
        .unwrap_or_default();
    let wanted = current.map(|e| e.eval_options().record());
    let runs = layout.runs();
    let mut cells = Vec::new();
    let mut left_out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&runs)
        .map_err(crate::report::io_err(&runs))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let listed: std::collections::HashSet<&str> = spec.cells.iter().map(String::as_str).collect();
    let mut ignored = Vec::new();
    for path in entries {
        let run = RunDir::new(&path);
        let eval_path = run.eval_json(&Default::default());
        if !path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        // A copy of a cell (`cp -r runs/x runs/x-backup`), a cell of an earlier version of
        // the grid: not this experiment's cells, whatever their cell.json says.
        if !listed.is_empty() && !listed.contains(name.as_str()) {
            ignored.push(format!(
                "runs/{name}: not a cell of the experiment's grid (ignored)"
            ));
            continue;
        }
        let missing = match (run.cell().is_file(), eval_path.is_file()) {
            (true, true) => None,
            (_, false) if !run.is_trained() => Some("not finished (still training, or stopped)"),
            (_, false) => Some("trained but not evaluated"),
            (false, true) => Some(
                "evaluated, but without `cell.json` (not ablate's evaluation, or it was interrupted)",
            ),
        };
        if let Some(why) = missing {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let line = format!("runs/{name}: {why}");
            eprintln!("warning: left out of the report: {line}");
            left_out.push(line);
            continue;
        }
        // A cell whose config, inputs or `[eval]` the experiment file has changed since.
        if let (Some(cell), Some(wanted), Some(current)) =
            (current_cells.get(name.as_str()), &wanted, current)
            && let Some(changes) = cell.status(wanted).staleness()
        {
            let line = format!(
                "runs/{name}: stale against {} ({changes}; `ordo ablate {} --rerun-stale` \
                 runs it again)",
                current.file.display(),
                current.file.display()
            );
            eprintln!("warning: left out of the report: {line}");
            left_out.push(line);
            continue;
        }
        let loaded = run
            .read_json::<CellInfo>(&run.cell())
            .and_then(|info| Ok((info, run.read_json::<EvalReport>(&eval_path)?)));
        let (info, eval) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("warning: left out of the report: {e}");
                left_out.push(e.to_string());
                continue;
            }
        };
        // Only ablate's own evaluation of the cell counts (not a manual partial `ordo eval`).
        if let (Some(used), Some(cell)) = (&eval.options, &info.evaluated_with)
            && used != cell
        {
            let line = format!(
                "runs/{}: evaluated with other options than the experiment's (run `ordo \
                 ablate` again to re-evaluate it)",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            eprintln!("warning: left out of the report: {line}");
            left_out.push(line);
            continue;
        }
        cells.push(CellResult {
            facts: Some(crate::report::CellFacts {
                // The task's config file as the experiment file names it (`../configs/copy.toml`).
                base_config: current_cells.get(info.id.as_str()).map(|c| {
                    let here =
                        current.map(|e| e.file.parent().unwrap_or(Path::new(".")).to_path_buf());
                    let source = &c.source;
                    here.as_deref()
                        .and_then(|h| source.strip_prefix(h).ok())
                        .unwrap_or(source)
                        .to_string_lossy()
                        .into_owned()
                }),
                ..cell_facts(&run, &info.id)
            }),
            task: info.task,
            encoding: info.encoding,
            seed: info.seed,
            variant: info.variant,
            eval,
        });
    }
    // Cells of the grid with no run directory at all.
    for id in &spec.cells {
        if !layout.run(id).is_dir() {
            left_out.push(format!("runs/{id}: not started"));
        }
    }
    for line in &ignored {
        eprintln!("warning: {line}");
    }
    left_out.extend(ignored);
    // Two finished cells with the same identity (a copied run directory whose cell.json was
    // kept) would count as two seeds: refuse.
    let mut seen = std::collections::HashSet::new();
    for c in &cells {
        let key = (
            c.task.clone(),
            c.encoding.clone(),
            c.seed,
            c.variant.clone(),
        );
        if !seen.insert(key) {
            return Err(ReportError::Duplicate(format!(
                "{}: two run directories hold the cell {} / {} / seed {} {}; remove the copy",
                runs.display(),
                c.task,
                c.encoding,
                c.seed,
                crate::report::variant_label(&c.variant)
            )));
        }
    }
    let report_spec = ReportSpec {
        name: spec.name,
        description: spec.description,
        encodings_order: spec.encodings_order,
        tasks_order: spec.tasks_order,
        left_out,
    };
    Ok((report_spec, cells))
}
