//! The report of an ablation grid: `report.md` with one table per (task, variant), the ranking
//! of the encodings by mean reciprocal rank, and one plot per (task, variant) of the headline
//! metric against length with its 95 % band (`plots/<task>[-<variant>].png` and `.svg`).
//!
//! What a table is about follows each evaluation's [`Headline`], which the evaluator decides from
//! the data a task is evaluated on; nothing here tests a task's name:
//! - **Exact match**: the bucket means in-distribution `[min, L]`, near `(L, 2L]` and far
//!   `(2L, F·L]` (F the evaluation's `max_factor`, [`Bucket`]), each header naming the lengths actually measured (`far (32, 48]` when the
//!   longest length tested is 48).
//! - **Perplexity**: the perplexity at each context length measured, and its ratio to the
//!   perplexity at the training context L.
//!
//! Conventions, stated in the report itself:
//! - A table cell is the mean ± the sample standard deviation (n − 1) over seeds of a seed-level
//!   value (a bucket's exact match: the mean over its evaluated lengths; a perplexity; a ratio),
//!   then its 95 % interval `[lo, hi]` (see [`crate::stats`]: the t interval over seeds joined
//!   with the within-seed interval where that is wider; one seed: the within-seed interval). A
//!   single seed has no standard deviation: the cell shows the mean and the interval. A value
//!   every seed of which is n/a shows `n/a`; `†` marks a bucket some of whose lengths were n/a
//!   (left out of the mean). Cells from an `eval.json` without per-example outcomes (written
//!   before they were recorded) show no interval.
//! - The score of a seed: for exact match, its mean exact match over every out-of-distribution
//!   length `(L, F·L]` (near and far pooled by length count, a length the scheme cannot represent
//!   counting as 0; n/a only when every such length is n/a); higher is better. For perplexity,
//!   the geometric mean over the measured lengths beyond L of `ppl(n) / ppl(L)` (n/a when L or
//!   any of them is n/a); lower is better.
//! - Ranking (Kazemnejad et al. 2023): in each (task, variant) the encodings are ranked by their
//!   score averaged over seeds, rank 1 = best; equal scores (within 1e-9) share the best rank of
//!   the tie; an n/a score, or an encoding with no finished cell in that group, ranks last. The
//!   MRR of an encoding is the mean over the groups of 1/rank.
//! - Ranking intervals: every replicate ranks the replicated scores and computes every MRR.
//!   Two neighbours of the ranking are not distinguishable (`≈`) when the 95 % interval of the
//!   difference of their MRRs, taken within each replicate, contains 0: a heuristic over
//!   neighbours only, stated so in the report. The difference is bootstrapped rather than two
//!   intervals checked for overlap: the MRRs of one replicate come from the same ranks (they are
//!   dependent), and two overlapping 95 % intervals can hide a clear difference.
//! - Paired comparisons: in each group where two encodings share at least two seeds, each
//!   neighbour pair of the group's ranking gets its score differences seed by seed with a
//!   paired t interval, and a matrix counts the seeds each encoding wins against each other.
//!
//! In parts: [`rows`] turns cells into one row per (task, variant, encoding) with its statistics,
//! [`ranking`] ranks the encodings, [`markdown`] writes `report.md` and [`plots`] the figures;
//! this module reads nothing itself and writes the report's files.

pub mod html;
pub mod markdown;
pub mod plots;
pub mod ranking;
pub mod rows;
pub mod tables;

pub use markdown::{ReportSpec, format_bucket, format_stat, format_value, render_markdown};
pub use plots::plot_stem;
pub use ranking::{
    GroupRanks, RankingIntervals, TIE_TOLERANCE, mrr, paired_differences, ranking_intervals, ranks,
};
pub use rows::{
    Bucket, BucketStat, CellFacts, CellResult, Edges, Point, Row, Stat, extrapolation_score,
    summarize, variant_label,
};

use crate::plot;
use markdown::order_index;
use ordo_train::run_dir::write_atomic;
use plots::group_plot;
use ranking::groups_of;
use rows::distinct;
use std::path::{Path, PathBuf};

/// Writes `dir/report.md` and `dir/plots/<task>[-<variant>].png|svg`; returns the report's path.
pub fn write_report(
    dir: &Path,
    spec: &ReportSpec,
    cells: &[CellResult],
) -> Result<PathBuf, ReportError> {
    if cells.is_empty() {
        return Err(ReportError::NoCells(
            dir.to_path_buf(),
            spec.left_out.clone(),
        ));
    }
    // Order the cells so that first appearance is the display order.
    let first_task = distinct(cells.iter().map(|c| &c.task));
    let first_encoding = distinct(cells.iter().map(|c| &c.encoding));
    let mut sorted: Vec<&CellResult> = cells.iter().collect();
    sorted.sort_by_key(|c| {
        (
            order_index(&spec.tasks_order, &c.task),
            first_task.iter().position(|t| *t == &c.task),
            order_index(&spec.encodings_order, &c.encoding),
            first_encoding.iter().position(|e| *e == &c.encoding),
            c.seed,
        )
    });
    let cells: Vec<CellResult> = sorted.into_iter().cloned().collect();
    let rows = summarize(&cells);
    let layout = crate::experiment_dir::ExperimentDir::new(dir);
    let plots = layout.plots();
    std::fs::create_dir_all(&plots).map_err(io_err(&plots))?;
    for of_group in groups_of(&rows) {
        let (task, variant) = (&of_group[0].task, &of_group[0].variant);
        let stem = plot_stem(task, variant);
        group_plot(&plots.join(&stem), task, variant, &of_group)?;
        let csv = plots.join(format!("{stem}.csv"));
        write_atomic(&csv, tables::plot_csv(&of_group).as_bytes()).map_err(io_err(&csv))?;
    }
    // The tidy tables first: the report names them, and its rename is the last write.
    for (name, text) in [
        ("results.csv", tables::results_csv(&spec.name, &cells)),
        ("cells.csv", tables::cells_csv(&spec.name, &cells)),
    ] {
        let path = dir.join(name);
        write_atomic(&path, text.as_bytes()).map_err(io_err(&path))?;
    }
    let md = render_markdown(spec, &rows, cells.len());
    let page = html::render_html(&spec.name, &md, dir);
    let html_path = dir.join("report.html");
    write_atomic(&html_path, page.as_bytes()).map_err(io_err(&html_path))?;
    let path = layout.report();
    write_atomic(&path, md.as_bytes()).map_err(io_err(&path))?;
    Ok(path)
}

fn left_out_lines(lines: &[String]) -> String {
    lines.iter().map(|l| format!("\n  left out: {l}")).collect()
}

/// Why a report (`report.md` and its plots) was not written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The experiment directory has no finished cell to report (and why each run directory
    /// there was left out).
    #[error("{}: no finished cell to report{}", .0.display(), left_out_lines(.1))]
    NoCells(PathBuf, Vec<String>),
    /// Another process held the report lock for longer than the wait allowed.
    #[error("{0}")]
    Busy(String),
    /// Two run directories hold the same cell.
    #[error("{0}")]
    Duplicate(String),
    /// `experiment.json` cannot be read: not an experiment directory.
    #[error("{}: cannot read ({cause}); is this an experiment directory?", path.display())]
    NotAnExperiment {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// `experiment.json` is not what `ordo ablate` writes.
    #[error("{}: {cause}", path.display())]
    Spec {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    RunDir(#[from] ordo_train::run_dir::RunDirError),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError {
    let path = path.to_path_buf();
    move |cause| ReportError::Io { path, cause }
}
