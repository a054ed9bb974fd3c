//! The layout of an experiment's directory, as [`ordo_train::run_dir::RunDir`] is a run's.

use std::path::{Path, PathBuf};

/// One type for an experiment directory: every name in it. Nobody else spells them.
///
/// ```text
/// experiments/<name>/
///   experiment.json   the report settings and the grid's cell ids (written by every shard)
///   runs/<cell id>/   one run directory per cell (see `ordo_train::run_dir`)
///   stale/<id>-<n>/   run directories `--rerun-stale` replaced
///   report.md, plots/ the report
///   .report.lock      held while a process rebuilds the report (OS file lock) ...
///   .report.claim     ... and its claim file (see `ordo_train::run_dir::Hold`)
///   .report.pending   made by every process that finished cells, removed by the rebuild
///                     that starts after it (see `ablate::rebuild_report_after`)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentDir {
    path: PathBuf,
}

impl ExperimentDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn spec(&self) -> PathBuf {
        self.path.join("experiment.json")
    }
    pub fn runs(&self) -> PathBuf {
        self.path.join("runs")
    }
    /// The run directory of the cell `id`.
    pub fn run(&self, id: &str) -> PathBuf {
        self.runs().join(id)
    }
    pub fn stale(&self) -> PathBuf {
        self.path.join("stale")
    }
    pub fn report_lock(&self) -> PathBuf {
        self.path.join(".report.lock")
    }
    pub fn report_claim(&self) -> PathBuf {
        self.path.join(".report.claim")
    }
    pub fn report_pending(&self) -> PathBuf {
        self.path.join(".report.pending")
    }
    pub fn report(&self) -> PathBuf {
        self.path.join("report.md")
    }
    pub fn plots(&self) -> PathBuf {
        self.path.join("plots")
    }
}
