//! The report of an ablation grid: `report.md` with one table per (task, variant), the ranking
//! of the encodings by mean reciprocal rank, and one plot per (task, variant) of exact match
//! against length (`plots/<task>[-<variant>].png` and `.svg`).
//!
//! Conventions, stated in the report itself:
//! - A table cell is the mean ± the sample standard deviation (n − 1) over seeds of a bucket's
//!   exact match (each seed's value being its mean over the bucket's evaluated lengths). A single
//!   seed has no standard deviation: the cell shows the mean alone. A bucket every seed of which
//!   is n/a shows `n/a`; `†` marks a bucket some of whose lengths were n/a (left out of the mean).
//! - The extrapolation score of a seed is its mean exact match over every out-of-distribution
//!   length, `(L, 4L]`: the near and far buckets pooled by length count, a length the scheme
//!   cannot represent (n/a) counting as 0. It is n/a only when every such length is n/a.
//! - Ranking (Kazemnejad et al. 2023): in each (task, variant) the encodings are ranked by their
//!   score averaged over seeds, rank 1 = best; equal scores (within 1e-9) share the best rank of
//!   the tie; an n/a score, or an encoding with no finished cell in that group, ranks last. The
//!   MRR of an encoding is the mean over the groups of 1/rank.

use crate::extrapolation::{BucketMean, EvalReport};
use crate::plot::{self, LinePlot};
use ordo_model::checkpoint::write_atomic;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One finished cell of a grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    /// e.g. "copy".
    pub task: String,
    /// e.g. "rope".
    pub encoding: String,
    pub seed: u64,
    /// Values of the grid's extra axes, e.g. `[("model.mode", "bidirectional")]`; empty if none.
    pub variant: Vec<(String, String)>,
    pub eval: EvalReport,
}

/// What the report says about the grid and the order of its rows and tables.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    pub name: String,
    /// A markdown paragraph describing the grid.
    pub description: String,
    /// Row order of the tables (encodings not listed follow in order of appearance).
    pub encodings_order: Vec<String>,
    /// Table order (tasks not listed follow in order of appearance).
    pub tasks_order: Vec<String>,
}

/// Mean and sample standard deviation of the values of some seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub mean: f64,
    /// Sample standard deviation (n − 1); `None` for a single value.
    pub std: Option<f64>,
    /// Number of values (seeds that were not n/a).
    pub n: usize,
}

impl Stat {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Stat> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        });
        Some(Stat { mean, std, n })
    }
}

/// A bucket's exact match over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketStat {
    /// `None` = n/a for every seed.
    pub exact_match: Option<Stat>,
    /// Some (not all) lengths of the bucket were n/a for some seed, or some seeds were n/a.
    pub partial: bool,
}

/// One row of a table: an encoding in a (task, variant), over its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub task: String,
    pub variant: Vec<(String, String)>,
    pub encoding: String,
    /// Finished cells (seeds) of the row.
    pub seeds: usize,
    /// Training lengths `[min, L]` (of the row's first cell).
    pub train_min_len: usize,
    pub train_max_len: usize,
    pub in_distribution: BucketStat,
    /// `(L, 2L]`.
    pub near: BucketStat,
    /// `(2L, 4L]`.
    pub far: BucketStat,
    /// The extrapolation score over seeds (see the module docs): what the ranking uses.
    pub score: Option<Stat>,
}

/// The mean exact match of one evaluation over every length in `(L, 4L]`, n/a lengths counting
/// as 0; `None` when every such length is n/a (or there is none).
pub fn extrapolation_score(eval: &EvalReport) -> Option<f64> {
    let buckets = [&eval.buckets.near, &eval.buckets.far];
    let evaluated: usize = buckets.iter().map(|b| b.lengths - b.unsupported).sum();
    let total: usize = buckets.iter().map(|b| b.lengths).sum();
    if evaluated == 0 {
        return None;
    }
    let sum: f64 = buckets
        .iter()
        .map(|b| b.exact_match.unwrap_or(0.0) * (b.lengths - b.unsupported) as f64)
        .sum();
    Some(sum / total as f64)
}

fn bucket_stat(buckets: &[&BucketMean]) -> BucketStat {
    let values: Vec<f64> = buckets.iter().filter_map(|b| b.exact_match).collect();
    let partial = !values.is_empty()
        && (values.len() < buckets.len()
            || buckets
                .iter()
                .any(|b| b.unsupported > 0 && b.unsupported < b.lengths));
    BucketStat {
        exact_match: Stat::of(&values),
        partial,
    }
}

/// The distinct items in order of first appearance.
fn distinct<T: PartialEq + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// One row per (task, variant, encoding), in order of first appearance of each in `cells`
/// (task, then variant, then encoding).
pub fn summarize(cells: &[CellResult]) -> Vec<Row> {
    let mut rows = Vec::new();
    for task in distinct(cells.iter().map(|c| &c.task)) {
        let of_task: Vec<&CellResult> = cells.iter().filter(|c| &c.task == task).collect();
        for variant in distinct(of_task.iter().map(|c| &c.variant)) {
            let of_group: Vec<&CellResult> = of_task
                .iter()
                .copied()
                .filter(|c| &c.variant == variant)
                .collect();
            for encoding in distinct(of_group.iter().map(|c| &c.encoding)) {
                let of_row: Vec<&CellResult> = of_group
                    .iter()
                    .copied()
                    .filter(|c| &c.encoding == encoding)
                    .collect();
                let bucket = |f: fn(&EvalReport) -> &BucketMean| {
                    bucket_stat(&of_row.iter().map(|c| f(&c.eval)).collect::<Vec<_>>())
                };
                let scores: Vec<f64> = of_row
                    .iter()
                    .filter_map(|c| extrapolation_score(&c.eval))
                    .collect();
                rows.push(Row {
                    task: task.clone(),
                    variant: variant.clone(),
                    encoding: encoding.clone(),
                    seeds: of_row.len(),
                    train_min_len: of_row[0].eval.train_min_len,
                    train_max_len: of_row[0].eval.train_max_len,
                    in_distribution: bucket(|e| &e.buckets.in_distribution),
                    near: bucket(|e| &e.buckets.near),
                    far: bucket(|e| &e.buckets.far),
                    score: Stat::of(&scores),
                });
            }
        }
    }
    rows
}

/// Exact match against length of one encoding in one (task, variant): the mean over seeds at
/// each length, `None` where every seed was n/a.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub task: String,
    pub variant: Vec<(String, String)>,
    pub encoding: String,
    pub points: Vec<(usize, Option<f64>)>,
}

/// One curve per row of [`summarize`], in the same order.
pub fn curves(cells: &[CellResult]) -> Vec<Curve> {
    summarize(cells)
        .into_iter()
        .map(|row| {
            let of_row: Vec<&CellResult> = cells
                .iter()
                .filter(|c| {
                    c.task == row.task && c.variant == row.variant && c.encoding == row.encoding
                })
                .collect();
            let mut lengths: Vec<usize> = of_row
                .iter()
                .flat_map(|c| c.eval.lengths.iter().map(|l| l.length))
                .collect();
            lengths.sort_unstable();
            lengths.dedup();
            let points = lengths
                .into_iter()
                .map(|n| {
                    let values: Vec<f64> = of_row
                        .iter()
                        .flat_map(|c| c.eval.lengths.iter())
                        .filter(|l| l.length == n)
                        .filter_map(|l| l.metrics.map(|m| m.exact_match))
                        .collect();
                    (n, Stat::of(&values).map(|s| s.mean))
                })
                .collect();
            Curve {
                task: row.task,
                variant: row.variant,
                encoding: row.encoding,
                points,
            }
        })
        .collect()
}

/// The ranks of the encodings in one (task, variant).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRanks {
    pub task: String,
    pub variant: Vec<(String, String)>,
    /// `(encoding, score, rank)` for every encoding of the rows, in their order of appearance.
    pub ranks: Vec<(String, Option<f64>, usize)>,
}

/// Scores closer than this are a tie.
pub const TIE_TOLERANCE: f64 = 1e-9;

/// Ranks the encodings in every (task, variant) of `rows` by their mean extrapolation score:
/// rank 1 = best, ties share the best rank of the tie (1, 1, 3), n/a (or a missing row) ranks
/// after every scored encoding.
pub fn ranks(rows: &[Row]) -> Vec<GroupRanks> {
    let encodings = distinct(rows.iter().map(|r| &r.encoding));
    let groups = distinct(rows.iter().map(|r| (&r.task, &r.variant)));
    groups
        .into_iter()
        .map(|(task, variant)| {
            let scores: Vec<(String, Option<f64>)> = encodings
                .iter()
                .map(|&e| {
                    let score = rows
                        .iter()
                        .find(|r| &r.task == task && &r.variant == variant && &r.encoding == e)
                        .and_then(|r| r.score)
                        .map(|s| s.mean);
                    (e.clone(), score)
                })
                .collect();
            let scored = scores.iter().filter(|(_, s)| s.is_some()).count();
            let ranks = scores
                .iter()
                .map(|(e, s)| {
                    let rank = match s {
                        Some(s) => {
                            1 + scores
                                .iter()
                                .filter(|(_, o)| o.is_some_and(|o| o > s + TIE_TOLERANCE))
                                .count()
                        }
                        None => scored + 1,
                    };
                    (e.clone(), *s, rank)
                })
                .collect();
            GroupRanks {
                task: task.clone(),
                variant: variant.clone(),
                ranks,
            }
        })
        .collect()
}

/// Mean reciprocal rank of each encoding over the (task, variant) groups of `rows` (see
/// [`ranks`]), best first; equal MRRs keep the order of appearance.
pub fn mrr(rows: &[Row]) -> Vec<(String, f64)> {
    mrr_of(&ranks(rows))
}

fn mrr_of(groups: &[GroupRanks]) -> Vec<(String, f64)> {
    let Some(first) = groups.first() else {
        return Vec::new();
    };
    let mut out: Vec<(String, f64)> = first
        .ranks
        .iter()
        .map(|(e, _, _)| {
            let sum: f64 = groups
                .iter()
                .map(|g| {
                    let rank = g
                        .ranks
                        .iter()
                        .find(|r| &r.0 == e)
                        .expect("same encodings")
                        .2;
                    1.0 / rank as f64
                })
                .sum();
            (e.clone(), sum / groups.len() as f64)
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// `model.mode=bidirectional, task.x=3`; empty for no variant.
pub fn variant_label(variant: &[(String, String)]) -> String {
    variant
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// File stem of a group's plot: `<task>` or `<task>-<value>-<value>` (values of the variant).
pub fn plot_stem(task: &str, variant: &[(String, String)]) -> String {
    std::iter::once(task)
        .chain(variant.iter().map(|(_, v)| v.as_str()))
        .map(slug)
        .collect::<Vec<_>>()
        .join("-")
}

/// `0.812 ± 0.031`, `0.812` (one seed) or `n/a`, with `†` for a partly n/a bucket.
pub fn format_bucket(b: &BucketStat) -> String {
    let mut s = format_stat(b.exact_match.as_ref());
    if b.partial {
        s.push_str(" †");
    }
    s
}

/// `0.812 ± 0.031`, `0.812` (one value) or `n/a`.
pub fn format_stat(s: Option<&Stat>) -> String {
    match s {
        None => "n/a".into(),
        Some(Stat {
            mean,
            std: Some(std),
            ..
        }) => format!("{mean:.3} ± {std:.3}"),
        Some(Stat { mean, .. }) => format!("{mean:.3}"),
    }
}

fn md_escape(text: &str) -> String {
    text.replace('|', "\\|")
}

fn order_index(order: &[String], name: &str) -> usize {
    order.iter().position(|o| o == name).unwrap_or(order.len())
}

/// The markdown of the report for `rows` (in display order) of `cells` finished cells; the plots
/// it embeds are `plots/<plot_stem>.png` (see [`write_report`]).
pub fn render_markdown(spec: &ReportSpec, rows: &[Row], cells: usize) -> String {
    let groups = ranks(rows);
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", spec.name);
    if !spec.description.trim().is_empty() {
        let _ = writeln!(md, "{}\n", spec.description.trim());
    }
    let _ = writeln!(
        md,
        "{cells} finished cells. Each table gives the exact match (the fraction of examples \
         whose whole answer is right) of every encoding, as the mean ± the sample standard \
         deviation over seeds of each seed's mean over the lengths of a bucket: in-distribution \
         `[min, L]` (the training lengths, L the longest), near `(L, 2L]` and far `(2L, 4L]`. A single seed \
         shows the mean alone (no ±). `n/a`: the scheme cannot represent any length of the \
         bucket (e.g. a learned table too short); `†`: some lengths of the bucket were n/a \
         and are left out of its mean.\n\n\
         The score is each seed's mean exact match over every out-of-distribution length \
         `(L, 4L]` (near and far pooled by length count, an n/a length counting as 0), \
         averaged over seeds. The ranking follows Kazemnejad et al. (2023): in each table the \
         encodings are ranked by score (1 = best, equal scores share the best rank, n/a or \
         no finished cell ranks last), and the mean reciprocal rank (MRR) averages 1/rank \
         over the tables.\n"
    );
    // Table rows: `encodings_order`, then the others in order of appearance.
    let mut encodings: Vec<String> = distinct(rows.iter().map(|r| r.encoding.clone()));
    encodings.sort_by_key(|e| order_index(&spec.encodings_order, e));
    let missing: Vec<&str> = spec
        .encodings_order
        .iter()
        .filter(|e| !rows.iter().any(|r| &r.encoding == *e))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            md,
            "No finished cell (left out of the tables and the ranking): {}.\n",
            missing.join(", ")
        );
    }
    for g in &groups {
        let of_group: Vec<&Row> = rows
            .iter()
            .filter(|r| r.task == g.task && r.variant == g.variant)
            .collect();
        let label = variant_label(&g.variant);
        let heading = if label.is_empty() {
            g.task.clone()
        } else {
            format!("{} ({label})", g.task)
        };
        let _ = writeln!(md, "## {}\n", md_escape(&heading));
        let encoder = g
            .variant
            .iter()
            .any(|(k, v)| k == "model.mode" && v == "bidirectional");
        if encoder && of_group.iter().any(|r| r.encoding == "alibi") {
            let _ = writeln!(
                md,
                "Encoder: `alibi` is the symmetric `-m|i-j|` unless `direction = \"asymmetric\"`; \
                 with only it a model cannot tell left from right (reversing the input reverses \
                 the outputs).\n"
            );
        }
        let (lmin, l) = (of_group[0].train_min_len, of_group[0].train_max_len);
        let same = of_group
            .iter()
            .all(|r| r.train_min_len == lmin && r.train_max_len == l);
        let (c_in, c_near, c_far) = if same {
            (
                format!("in-distribution [{lmin}, {l}]"),
                format!("near ({l}, {}]", 2 * l),
                format!("far ({}, {}]", 2 * l, 4 * l),
            )
        } else {
            (
                "in-distribution [min, L]".to_string(),
                "near (L, 2L]".to_string(),
                "far (2L, 4L]".to_string(),
            )
        };
        let _ = writeln!(
            md,
            "| encoding | {c_in} | {c_near} | {c_far} | score | rank | seeds |\n\
             |---|---:|---:|---:|---:|---:|---:|"
        );
        // An encoding with no finished cell in this group gets a row of n/a (it ranks last).
        for encoding in &encodings {
            let rank = g.ranks.iter().find(|r| &r.0 == encoding).map_or(0, |r| r.2);
            match of_group.iter().find(|r| &r.encoding == encoding) {
                Some(row) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} | {rank} | {} |",
                        md_escape(&row.encoding),
                        format_bucket(&row.in_distribution),
                        format_bucket(&row.near),
                        format_bucket(&row.far),
                        format_stat(row.score.as_ref()),
                        row.seeds
                    );
                }
                None => {
                    let _ = writeln!(
                        md,
                        "| {} | n/a | n/a | n/a | n/a | {rank} | 0 |",
                        md_escape(encoding)
                    );
                }
            }
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Ranking (mean reciprocal rank)\n");
    let mut header = "| # | encoding | MRR |".to_string();
    let mut rule = "|---:|---|---:|".to_string();
    for g in &groups {
        let label = variant_label(&g.variant);
        let name = if label.is_empty() {
            g.task.clone()
        } else {
            format!("{} ({label})", g.task)
        };
        let _ = write!(header, " {} |", md_escape(&name));
        rule.push_str("---:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    let ranking = mrr_of(&groups);
    for (i, (encoding, value)) in ranking.iter().enumerate() {
        let _ = write!(md, "| {} | {} | {value:.3} |", i + 1, md_escape(encoding));
        for g in &groups {
            let rank = g.ranks.iter().find(|r| &r.0 == encoding).map_or(0, |r| r.2);
            let _ = write!(md, " {rank} |");
        }
        md.push('\n');
    }
    let _ = writeln!(md, "\n## Plots\n");
    let _ = writeln!(
        md,
        "Exact match against length, the mean over seeds at each length (a gap: n/a); the \
         dashed line marks the longest training length L.\n"
    );
    for g in &groups {
        let label = variant_label(&g.variant);
        let title = if label.is_empty() {
            g.task.clone()
        } else {
            format!("{} ({label})", g.task)
        };
        let stem = plot_stem(&g.task, &g.variant);
        let _ = writeln!(
            md,
            "### {}\n\n![{}: exact match against length](plots/{stem}.png)\n\n\
             [SVG](plots/{stem}.svg)\n",
            md_escape(&title),
            md_escape(&title)
        );
    }
    md
}

/// Writes `dir/report.md` and `dir/plots/<task>[-<variant>].png|svg`; returns the report's path.
pub fn write_report(
    dir: &Path,
    spec: &ReportSpec,
    cells: &[CellResult],
) -> Result<PathBuf, String> {
    if cells.is_empty() {
        return Err(format!("{}: no finished cell to report", dir.display()));
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
    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| format!("{}: {e}", plots.display()))?;
    let all_curves = curves(&cells);
    for g in ranks(&rows) {
        let of_group: Vec<&Curve> = all_curves
            .iter()
            .filter(|c| c.task == g.task && c.variant == g.variant)
            .collect();
        let series: Vec<(String, Vec<(f64, f64)>)> = of_group
            .iter()
            .map(|c| {
                let points = c
                    .points
                    .iter()
                    .map(|&(n, v)| (n as f64, v.unwrap_or(f64::NAN)))
                    .collect();
                (c.encoding.clone(), points)
            })
            .collect();
        let l = rows
            .iter()
            .find(|r| r.task == g.task && r.variant == g.variant)
            .map_or(0, |r| r.train_max_len);
        let label = variant_label(&g.variant);
        let title = if label.is_empty() {
            format!("{}: exact match against length", g.task)
        } else {
            format!("{} ({label}): exact match against length", g.task)
        };
        let x_max = series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.0))
            .fold(l as f64, f64::max);
        let x_min = series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.0))
            .fold(x_max, f64::min);
        let x_range = (x_max > x_min).then_some((x_min, x_max));
        plot::line_plot(
            &plots.join(plot_stem(&g.task, &g.variant)),
            &LinePlot {
                title: &title,
                x_label: "length",
                y_label: "exact match",
                series: &series,
                marker_x: Some((l as f64, "train L")),
                x_range,
                y_range: Some((-0.02, 1.02)),
                ..LinePlot::default()
            },
        )?;
    }
    let mut md = render_markdown(spec, &rows, cells.len());
    md.push_str(&perplexity_section(&cells, spec, &plots)?);
    let path = dir.join("report.md");
    write_atomic(&path, md.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// For language-modelling cells: perplexity (mean over seeds) at each evaluated context length,
/// a table and a plot per (task, variant) with one line per encoding. Empty without `lm` cells.
pub fn perplexity_section(
    cells: &[CellResult],
    spec: &ReportSpec,
    plots: &Path,
) -> Result<String, String> {
    let lm: Vec<&CellResult> = cells.iter().filter(|c| c.task == "lm").collect();
    if lm.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from(
        "\n## Perplexity against context length\n\nHeld-out perplexity `exp(loss)` over non-overlapping windows of each context length (Press et al. 2022), mean over seeds; `n/a`: the scheme cannot represent that length.\n",
    );
    let variants = distinct(lm.iter().map(|c| &c.variant));
    for variant in variants {
        let group: Vec<&&CellResult> = lm.iter().filter(|c| &c.variant == variant).collect();
        let mut lengths: Vec<usize> = group
            .iter()
            .flat_map(|c| c.eval.lengths.iter().map(|r| r.length))
            .collect();
        lengths.sort_unstable();
        lengths.dedup();
        let mut encodings: Vec<&String> = distinct(group.iter().map(|c| &c.encoding));
        encodings.sort_by_key(|e| order_index(&spec.encodings_order, e));
        let label = variant_label(variant);
        out.push_str(&format!(
            "\n### lm{}\n\n| encoding |",
            if label.is_empty() {
                String::new()
            } else {
                format!(" ({label})")
            }
        ));
        for l in &lengths {
            out.push_str(&format!(" {l} |"));
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(lengths.len()));
        out.push('\n');
        let mut series = Vec::new();
        let train_len = group.first().map_or(0, |c| c.eval.train_max_len);
        for enc in encodings {
            let mut points = Vec::new();
            out.push_str(&format!("| {enc} |"));
            for &l in &lengths {
                let ppl: Vec<f64> = group
                    .iter()
                    .filter(|c| &c.encoding == enc)
                    .filter_map(|c| c.eval.lengths.iter().find(|r| r.length == l))
                    .filter_map(|r| r.metrics.map(|m| m.loss.exp()))
                    .collect();
                if ppl.is_empty() {
                    out.push_str(" n/a |");
                    points.push((l as f64, f64::NAN));
                } else {
                    let mean = ppl.iter().sum::<f64>() / ppl.len() as f64;
                    out.push_str(&format!(" {mean:.2} |"));
                    points.push((l as f64, mean));
                }
            }
            out.push('\n');
            series.push((enc.clone(), points));
        }
        let stem = plot_stem("lm-perplexity", variant);
        let title = "lm: held-out perplexity against context length";
        plot::line_plot(
            &plots.join(&stem),
            &LinePlot {
                title,
                x_label: "context length (tokens)",
                y_label: "perplexity",
                series: &series,
                marker_x: Some((train_len as f64, "train L")),
                log_x: true,
                log_y: true,
                ..LinePlot::default()
            },
        )?;
        out.push_str(&format!(
            "\n![{title}](plots/{stem}.png)\n\n[SVG](plots/{stem}.svg)\n"
        ));
    }
    Ok(out)
}
