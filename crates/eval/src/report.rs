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

use crate::extrapolation::{EvalReport, Headline, LengthResult};
use crate::plot::{self, LinePlot};
use crate::stats::{self, Domain, Interval, LEVEL, REPLICATES};
use ordo_model::checkpoint::write_atomic;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One finished cell of a grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellResult {
    /// e.g. "copy".
    pub task: String,
    /// The label of the experiment's encoding, e.g. "rope" or "t5(init_std=3.0)"; the scheme's
    /// kind is `eval.encoding`.
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
    /// Run directories the report leaves out, each with why (printed under the grid).
    pub left_out: Vec<String>,
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

pub use crate::extrapolation::{Bucket, Edges};

impl Bucket {
    /// The column header naming the lengths measured (`lengths`: those of the bucket, non-empty):
    /// `in-distribution [1, 8]`, `near (8, 16]`, `far (16, 24]`.
    pub fn header(self, l: usize, lengths: &[usize]) -> String {
        let lo = lengths.iter().min().copied().unwrap_or(0);
        let hi = lengths.iter().max().copied().unwrap_or(0);
        match self {
            Bucket::InDistribution => format!("in-distribution [{lo}, {hi}]"),
            Bucket::Near => format!("near ({l}, {hi}]"),
            Bucket::Far => format!("far ({}, {hi}]", 2 * l),
        }
    }

    /// The header when the rows of a table were trained on different lengths: the far
    /// bucket's edge in multiples of L when the rows share their `max_factor`.
    fn symbolic_header(self, factor: Option<usize>) -> String {
        match self {
            Bucket::InDistribution => "in-distribution [min, L]".into(),
            Bucket::Near => "near (L, 2L]".into(),
            Bucket::Far => match factor {
                Some(f) => format!("far (2L, {f}L]"),
                None => "far (2L, max_factor·L]".into(),
            },
        }
    }
}

/// A bucket's exact match over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketStat {
    /// `None` = n/a for every seed.
    pub exact_match: Option<Stat>,
    /// 95 % bootstrap interval of the mean; `None` without outcomes.
    pub interval: Option<Interval>,
    /// Some (not all) lengths of the bucket were n/a for some seed, or some seeds were n/a.
    pub partial: bool,
}

/// A value over seeds at one length: the headline, or a perplexity ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub length: usize,
    /// `None` = n/a for every seed.
    pub stat: Option<Stat>,
    pub interval: Option<Interval>,
}

/// One row of a table: an encoding in a (task, variant), over its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub task: String,
    pub variant: Vec<(String, String)>,
    pub encoding: String,
    /// The scheme's `kind` (of the row's first cell's evaluation: `t5` for `t5(init_std=3.0)`).
    pub kind: String,
    /// Decoder or encoder (of the row's first cell).
    pub mode: ordo_model::AttentionMode,
    /// `N` of randomized positions (of the row's first cell), if its positions are randomized.
    pub randomized_positions: Option<usize>,
    /// Finished cells (seeds) of the row.
    pub seeds: usize,
    /// Training lengths `[min, L]` (of the row's first cell).
    pub train_min_len: usize,
    /// Its buckets' edges (of the row's first cell).
    pub edges: Edges,
    pub train_max_len: usize,
    /// What the row's tables and score are about (of the row's first cell).
    pub headline: Headline,
    /// Every length some seed was evaluated at (or found n/a at), ascending.
    pub lengths: Vec<usize>,
    /// Exact-match buckets (computed for every headline; shown for exact match).
    pub in_distribution: BucketStat,
    /// `(L, 2L]`.
    pub near: BucketStat,
    /// `(2L, F·L]`, F the evaluation's `max_factor`.
    pub far: BucketStat,
    /// The headline at every length of `lengths`: exact match, or perplexity.
    pub points: Vec<Point>,
    /// Perplexity headline: `ppl(n) / ppl(L)` at every length beyond L; empty for exact match.
    pub ratios: Vec<Point>,
    /// The score over seeds (see the module docs): what the ranking uses.
    pub score: Option<Stat>,
    /// Each cell's training seed and score (`None`: n/a), in the order of the cells.
    pub seed_scores: Vec<(u64, Option<f64>)>,
    pub score_interval: Option<Interval>,
    /// The score of every bootstrap replicate (`None` where undefined, e.g. n/a); empty when
    /// some cell of the row has no outcomes.
    pub score_replicates: Vec<Option<f64>>,
    /// The scheme's learned scalars (FIRE: `threshold` and `c`), each the mean over the seeds
    /// whose evaluation recorded it, with how many did; empty when none did.
    pub learned: Vec<(String, f64, usize)>,
    /// The distinct config warnings of the row's cells (an encoder whose position signal starts
    /// too weak), as their evaluations recorded them.
    pub warnings: Vec<String>,
}

impl Row {
    /// Whether the row's bootstrap ran (every cell had outcomes).
    pub fn has_intervals(&self) -> bool {
        !self.score_replicates.is_empty()
    }
}

/// A cell's headline value at each of its lengths (aligned with `eval.lengths`): the exact
/// match, or the mean loss per token in nats (perplexity is its `exp`); `None` = n/a.
fn observed(eval: &EvalReport) -> Vec<Option<f64>> {
    let headline = eval.headline();
    eval.lengths
        .iter()
        .map(|r| {
            r.metrics.map(|m| match headline {
                Headline::ExactMatch => m.exact_match,
                Headline::Perplexity => m.loss,
            })
        })
        .collect()
}

/// The value at length `n` of per-length `values` aligned with `eval.lengths`.
fn value_at(eval: &EvalReport, values: &[Option<f64>], n: usize) -> Option<f64> {
    // Lengths are stored ascending; the linear search covers hand-written files.
    let i = eval.lengths.partition_point(|r| r.length < n);
    let i = match eval.lengths.get(i) {
        Some(r) if r.length == n => i,
        _ => eval.lengths.iter().position(|r| r.length == n)?,
    };
    values[i]
}

/// A seed's mean of `values` over the evaluated lengths of bucket `b` (summed in length order,
/// as [`crate::extrapolation::bucket`] does, so the numbers agree to the last bit).
fn bucket_value(eval: &EvalReport, values: &[Option<f64>], b: Bucket) -> Option<f64> {
    let (sum, evaluated, _) = bucket_sum(eval, values, b);
    (evaluated > 0).then(|| sum / evaluated as f64)
}

/// The sum of the evaluated values of bucket `b` (in length order), how many were evaluated,
/// and how many lengths the bucket has.
fn bucket_sum(eval: &EvalReport, values: &[Option<f64>], b: Bucket) -> (f64, usize, usize) {
    let (mut sum, mut evaluated, mut lengths) = (0.0f64, 0usize, 0usize);
    for (r, v) in eval.lengths.iter().zip(values) {
        if b.contains(eval.edges(), r.length) {
            lengths += 1;
            if let Some(v) = v {
                sum += v;
                evaluated += 1;
            }
        }
    }
    (sum, evaluated, lengths)
}

/// A seed's exact-match score from its per-length exact match (see the module docs).
fn exact_match_score(eval: &EvalReport, values: &[Option<f64>]) -> Option<f64> {
    let (mut evaluated, mut total, mut sum) = (0usize, 0usize, 0.0f64);
    for b in [Bucket::Near, Bucket::Far] {
        // The bucket's mean times its evaluated lengths, as the stored bucket means pool.
        let (bucket, n, lengths) = bucket_sum(eval, values, b);
        let mean = if n > 0 { bucket / n as f64 } else { 0.0 };
        sum += mean * n as f64;
        evaluated += n;
        total += lengths;
    }
    (evaluated > 0).then(|| sum / total as f64)
}

/// A seed's perplexity score from its per-length loss: the geometric mean of `ppl(n) / ppl(L)`
/// over the lengths beyond L, `None` when L or any of them is n/a, or there is none.
fn perplexity_score(eval: &EvalReport, values: &[Option<f64>]) -> Option<f64> {
    let l = eval.train_max_len;
    let at_l = value_at(eval, values, l)?;
    let beyond: Option<Vec<f64>> = eval
        .lengths
        .iter()
        .zip(values)
        .filter(|(r, _)| r.length > l)
        .map(|(_, v)| v.map(|v| v - at_l))
        .collect();
    let beyond = beyond.filter(|b| !b.is_empty())?;
    Some((beyond.iter().sum::<f64>() / beyond.len() as f64).exp())
}

fn seed_score(eval: &EvalReport, values: &[Option<f64>]) -> Option<f64> {
    match eval.headline() {
        Headline::ExactMatch => exact_match_score(eval, values),
        Headline::Perplexity => perplexity_score(eval, values),
    }
}

/// The score of one evaluation: for exact match, the mean exact match over every length in
/// `(L, max_factor·L]` (near and far), n/a lengths counting as 0 (`None` when every such length is n/a, or there is
/// none); for perplexity, the geometric-mean ratio to L (see the module docs).
pub fn extrapolation_score(eval: &EvalReport) -> Option<f64> {
    seed_score(eval, &observed(eval))
}

/// One cell's observed values and, when every evaluated length has outcomes, their bootstrap
/// replicates, by replicate (`[replicate][length]` flattened, for statistics over lengths) and by
/// length (`[length][replicate]`, for the value at one length; `None` = n/a).
struct CellDraws<'a> {
    eval: &'a EvalReport,
    observed: Vec<Option<f64>>,
    replicates: Option<Vec<Option<f64>>>,
    columns: Vec<Option<Vec<f64>>>,
}

impl CellDraws<'_> {
    /// The per-length values of replicate `r`.
    fn replicate(&self, r: usize) -> &[Option<f64>] {
        let n = self.observed.len();
        &self.replicates.as_ref().expect("replicates")[r * n..(r + 1) * n]
    }
}

fn cell_draws(cell: &CellResult) -> CellDraws<'_> {
    let eval = &cell.eval;
    let observed = observed(eval);
    let headline = eval.headline();
    let label = format!(
        "{}|{}|{}|s{}",
        cell.task,
        variant_label(&cell.variant),
        cell.encoding,
        cell.seed
    );
    let no_outcomes = |observed| CellDraws {
        eval,
        observed,
        replicates: None,
        columns: Vec::new(),
    };
    let evaluated: Vec<&LengthResult> = eval
        .lengths
        .iter()
        .zip(&observed)
        .filter(|(_, v)| v.is_some())
        .map(|(r, _)| r)
        .collect();
    let columns: Vec<Option<Vec<f64>>> =
        if headline == Headline::Perplexity && stats::aligned_blocks(&evaluated) {
            // The same text at every length: resample its blocks jointly (see `stats`).
            let outcomes = evaluated[0].outcomes.as_ref().expect("aligned");
            let longest = evaluated.iter().map(|r| r.length).max().unwrap_or(1);
            let run = stats::block_run(outcomes.tokens.len(), outcomes.block.unwrap_or(1), longest);
            let mut rng = stats::stream(&format!("{label}|blocks"));
            let mut joint =
                stats::joint_block_replicates(&evaluated, run, &mut rng, REPLICATES).into_iter();
            observed
                .iter()
                .map(|v| v.and_then(|_| joint.next()))
                .collect()
        } else {
            let mut columns = Vec::with_capacity(observed.len());
            for (r, value) in eval.lengths.iter().zip(&observed) {
                if value.is_none() {
                    columns.push(None);
                    continue;
                }
                let mut rng = stats::stream(&format!("{label}|len{}", r.length));
                match stats::length_replicates(r, headline, &mut rng, REPLICATES) {
                    Some(column) => columns.push(Some(column)),
                    None => return no_outcomes(observed),
                }
            }
            columns
        };
    let replicates = (0..REPLICATES)
        .flat_map(|k| columns.iter().map(move |c| c.as_ref().map(|c| c[k])))
        .collect();
    CellDraws {
        eval,
        observed,
        replicates: Some(replicates),
        columns,
    }
}

/// A seed-level statistic computed from a seed's per-length values.
type SeedStatistic<'f> = &'f dyn Fn(&EvalReport, &[Option<f64>]) -> Option<f64>;

/// A seed-level statistic over the seeds of a row: mean ± std, its interval and the replicates
/// a ranking uses.
struct OverSeeds {
    stat: Option<Stat>,
    interval: Option<Interval>,
    /// Empty when some cell has no outcomes.
    replicates: Vec<Option<f64>>,
}

/// The Student t draws of a row, by number of seeds (`n - 1` degrees of freedom; none for one
/// seed): the same for every statistic of the row, so drawn once per `n` and kept.
struct RowDraws {
    label: String,
    by_seeds: std::cell::RefCell<Vec<(usize, std::rc::Rc<[f64]>)>>,
}

impl RowDraws {
    fn new(label: String) -> RowDraws {
        RowDraws {
            label,
            by_seeds: Default::default(),
        }
    }

    fn t(&self, n: usize) -> std::rc::Rc<[f64]> {
        if let Some((_, d)) = self.by_seeds.borrow().iter().find(|(k, _)| *k == n) {
            return d.clone();
        }
        let draws: std::rc::Rc<[f64]> = if n < 2 {
            std::rc::Rc::from([])
        } else {
            let mut rng = stats::stream(&format!("{}|t{}", self.label, n - 1));
            (0..REPLICATES)
                .map(|_| stats::student_t(n - 1, &mut rng))
                .collect()
        };
        self.by_seeds.borrow_mut().push((n, draws.clone()));
        draws
    }
}

/// Wilson's interval of the examples pooled over the cells' exact-match lengths that `select`
/// picks (`(eval, length)`); with `na_as_wrong`, an n/a length counts as its examples all
/// wrong (as the score counts it). `None` for perplexity, or without outcomes.
fn pooled_wilson(
    cells: &[CellDraws],
    select: &dyn Fn(&EvalReport, usize) -> bool,
    na_as_wrong: bool,
) -> Option<Interval> {
    let (mut k, mut n) = (0u64, 0u64);
    for c in cells {
        let e = c.eval;
        if e.headline() != Headline::ExactMatch {
            return None;
        }
        for r in e.lengths.iter().filter(|r| select(e, r.length)) {
            match (&r.metrics, &r.outcomes) {
                (Some(m), Some(o)) => {
                    k += o.exact as u64;
                    n += m.examples as u64;
                }
                (Some(_), None) => return None,
                (None, _) if na_as_wrong => n += e.examples_per_length as u64,
                (None, _) => {}
            }
        }
    }
    stats::wilson(k, n)
}

fn over_seeds(
    cells: &[CellDraws],
    row: &RowDraws,
    domain: Domain,
    f: SeedStatistic,
    floor: Option<Interval>,
) -> OverSeeds {
    let values: Vec<f64> = cells
        .iter()
        .filter_map(|c| f(c.eval, &c.observed))
        .collect();
    let within: Vec<Option<f64>> = if cells.iter().any(|c| c.replicates.is_none()) {
        Vec::new()
    } else {
        (0..REPLICATES)
            .map(|r| mean_of(cells.iter().filter_map(|c| f(c.eval, c.replicate(r)))))
            .collect()
    };
    finish(&values, within, domain, row, floor)
}

/// The mean of some values, `None` for none.
fn mean_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The statistic over the seed `values`, its interval and ranking replicates (see
/// [`stats::seed_interval`]) from the within-seed replicates of the mean of the seeds.
fn finish(
    values: &[f64],
    within: Vec<Option<f64>>,
    domain: Domain,
    row: &RowDraws,
    floor: Option<Interval>,
) -> OverSeeds {
    let stat = Stat::of(values);
    if stat.is_none() {
        let replicates = if within.is_empty() {
            Vec::new()
        } else {
            vec![None; REPLICATES]
        };
        return OverSeeds {
            stat,
            interval: None,
            replicates,
        };
    }
    let (interval, replicates) =
        stats::seed_interval(values, &within, domain, &row.t(values.len()), floor);
    OverSeeds {
        stat,
        interval,
        replicates,
    }
}

/// The headline at every length of `lengths` over seeds (exact match, or `exp` of the loss for
/// perplexity): [`over_seeds`] of the value at each length, with each cell's index of every
/// length looked up once.
fn points(
    cells: &[CellDraws],
    row: &RowDraws,
    lengths: &[usize],
    headline: Headline,
) -> Vec<Point> {
    let map = |v: f64| match headline {
        Headline::ExactMatch => v,
        Headline::Perplexity => v.exp(),
    };
    let domain = match headline {
        Headline::ExactMatch => Domain::Fraction,
        Headline::Perplexity => Domain::Positive,
    };
    lengths
        .iter()
        .map(|&n| {
            let index: Vec<Option<usize>> = cells
                .iter()
                .map(|c| c.eval.lengths.iter().position(|r| r.length == n))
                .collect();
            let observed: Vec<f64> = (0..cells.len())
                .filter_map(|j| index[j].and_then(|i| cells[j].observed[i]).map(map))
                .collect();
            // Cell j's replicates at this length, if it has the length and it is not n/a.
            let column: Vec<Option<&Vec<f64>>> = (0..cells.len())
                .map(|j| index[j].and_then(|i| cells[j].columns.get(i)?.as_ref()))
                .collect();
            let within = if cells.iter().all(|c| c.replicates.is_some()) {
                (0..REPLICATES)
                    .map(|r| mean_of(column.iter().flatten().map(|c| map(c[r]))))
                    .collect()
            } else {
                Vec::new()
            };
            let floor = pooled_wilson(cells, &|_, l| l == n, false);
            let s = finish(&observed, within, domain, row, floor);
            Point {
                length: n,
                stat: s.stat,
                interval: s.interval,
            }
        })
        .collect()
}

fn bucket_stat(cells: &[CellDraws], row: &RowDraws, b: Bucket) -> BucketStat {
    let floor = pooled_wilson(cells, &|e, l| b.contains(e.edges(), l), false);
    let s = over_seeds(
        cells,
        row,
        Domain::Fraction,
        &|e, v| bucket_value(e, v, b),
        floor,
    );
    let n_buckets: Vec<(usize, usize)> = cells
        .iter()
        .map(|c| {
            let e = c.eval;
            let inside: Vec<bool> = e
                .lengths
                .iter()
                .filter(|r| b.contains(e.edges(), r.length))
                .map(|r| r.metrics.is_some())
                .collect();
            (inside.len(), inside.iter().filter(|x| !**x).count())
        })
        .collect();
    let evaluated = s.stat.map_or(0, |s| s.n);
    let partial = evaluated > 0
        && (evaluated < cells.len()
            || n_buckets
                .iter()
                .any(|&(lengths, na)| na > 0 && na < lengths));
    BucketStat {
        exact_match: s.stat,
        interval: s.interval,
        partial,
    }
}

/// A ratio of perplexities at `length` over seeds.
fn ratio_point(cells: &[CellDraws], row: &RowDraws, length: usize, f: SeedStatistic) -> Point {
    let s = over_seeds(cells, row, Domain::Positive, f, None);
    Point {
        length,
        stat: s.stat,
        interval: s.interval,
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

/// The row of the cells of one (task, variant, encoding).
fn row_of(of_row: &[&CellResult]) -> Row {
    let first = of_row[0];
    let headline = first.eval.headline();
    let cells: Vec<CellDraws> = of_row.iter().map(|c| cell_draws(c)).collect();
    let row = RowDraws::new(format!(
        "{}|{}|{}|seeds",
        first.task,
        variant_label(&first.variant),
        first.encoding
    ));
    let row = &row;
    let mut lengths: Vec<usize> = of_row
        .iter()
        .flat_map(|c| c.eval.lengths.iter().map(|r| r.length))
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    let points = points(&cells, row, &lengths, headline);
    let ratios = match headline {
        Headline::ExactMatch => Vec::new(),
        Headline::Perplexity => lengths
            .iter()
            .filter(|&&n| n > first.eval.train_max_len)
            .map(|&n| {
                ratio_point(&cells, row, n, &|e, v| {
                    Some((value_at(e, v, n)? - value_at(e, v, e.train_max_len)?).exp())
                })
            })
            .collect(),
    };
    let score_domain = match headline {
        Headline::ExactMatch => Domain::Fraction,
        Headline::Perplexity => Domain::Positive,
    };
    // The score pools every length of the near and far buckets (beyond L up to max_factor·L),
    // n/a lengths counting as wrong.
    let score_floor = pooled_wilson(
        &cells,
        &|e, l| Bucket::Near.contains(e.edges(), l) || Bucket::Far.contains(e.edges(), l),
        true,
    );
    let score = over_seeds(&cells, row, score_domain, &seed_score, score_floor);
    Row {
        task: first.task.clone(),
        variant: first.variant.clone(),
        encoding: first.encoding.clone(),
        kind: first.eval.encoding.clone(),
        mode: first.eval.mode,
        randomized_positions: first.eval.randomized_positions,
        seeds: of_row.len(),
        train_min_len: first.eval.train_min_len,
        edges: first.eval.edges(),
        train_max_len: first.eval.train_max_len,
        headline,
        lengths,
        in_distribution: bucket_stat(&cells, row, Bucket::InDistribution),
        near: bucket_stat(&cells, row, Bucket::Near),
        far: bucket_stat(&cells, row, Bucket::Far),
        points,
        ratios,
        score: score.stat,
        seed_scores: of_row
            .iter()
            .zip(&cells)
            .map(|(c, d)| (c.seed, seed_score(d.eval, &d.observed)))
            .collect(),
        score_interval: score.interval,
        score_replicates: score.replicates,
        learned: learned_means(of_row),
        warnings: distinct(of_row.iter().flat_map(|c| c.eval.warnings.iter().cloned())),
    }
}

/// Per learned scalar of the cells' evaluations: its mean over the cells that recorded it.
fn learned_means(of_row: &[&CellResult]) -> Vec<(String, f64, usize)> {
    let keys: Vec<String> = distinct(of_row.iter().flat_map(|c| c.eval.learned.keys().cloned()));
    keys.into_iter()
        .map(|key| {
            let values: Vec<f64> = of_row
                .iter()
                .filter_map(|c| c.eval.learned.get(&key).copied())
                .collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            (key, mean, values.len())
        })
        .collect()
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
                rows.push(row_of(&of_row));
            }
        }
    }
    rows
}

/// The ranks of the encodings in one (task, variant).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRanks {
    pub task: String,
    pub variant: Vec<(String, String)>,
    /// The headline of the group (of its first row): which way its scores are better.
    pub headline: Headline,
    /// `(encoding, score, rank)` for every encoding of the rows, in their order of appearance.
    pub ranks: Vec<(String, Option<f64>, usize)>,
}

/// Scores closer than this are a tie.
pub const TIE_TOLERANCE: f64 = 1e-9;

/// Ranks of `scores`: 1 = best, ties share the best rank of the tie (1, 1, 3), `None` after
/// every scored entry.
fn rank_scores(scores: &[Option<f64>], higher_is_better: bool) -> Vec<usize> {
    let scored = scores.iter().filter(|s| s.is_some()).count();
    let better = |o: f64, s: f64| {
        if higher_is_better {
            o > s + TIE_TOLERANCE
        } else {
            o < s - TIE_TOLERANCE
        }
    };
    scores
        .iter()
        .map(|s| match s {
            Some(s) => {
                1 + scores
                    .iter()
                    .filter(|o| o.is_some_and(|o| better(o, *s)))
                    .count()
            }
            None => scored + 1,
        })
        .collect()
}

/// The rows of every (task, variant) of `rows`, each group non-empty.
fn groups_of(rows: &[Row]) -> Vec<Vec<&Row>> {
    distinct(rows.iter().map(|r| (&r.task, &r.variant)))
        .into_iter()
        .map(|(task, variant)| {
            rows.iter()
                .filter(|r| &r.task == task && &r.variant == variant)
                .collect()
        })
        .collect()
}

/// Ranks the encodings in every (task, variant) of `rows` by their mean score (higher is better
/// for exact match, lower for a perplexity ratio): rank 1 = best, ties share the best rank of
/// the tie (1, 1, 3), n/a (or a missing row) ranks after every scored encoding.
pub fn ranks(rows: &[Row]) -> Vec<GroupRanks> {
    let encodings = distinct(rows.iter().map(|r| &r.encoding));
    groups_of(rows)
        .into_iter()
        .map(|of_group| {
            let (task, variant) = (&of_group[0].task, &of_group[0].variant);
            let headline = of_group[0].headline;
            let scores: Vec<Option<f64>> = encodings
                .iter()
                .map(|&e| {
                    of_group
                        .iter()
                        .find(|r| &r.encoding == e)
                        .and_then(|r| r.score)
                        .map(|s| s.mean)
                })
                .collect();
            let rank = rank_scores(&scores, headline.higher_is_better());
            GroupRanks {
                task: task.clone(),
                variant: variant.clone(),
                headline,
                ranks: encodings
                    .iter()
                    .zip(scores)
                    .zip(rank)
                    .map(|((e, s), r)| ((*e).clone(), s, r))
                    .collect(),
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

/// The uncertainty of the MRR ranking ([`mrr`]'s order): each encoding's 95 % interval, and
/// whether it is distinguishable from the next one down.
#[derive(Debug, Clone, PartialEq)]
pub struct RankingIntervals {
    /// `(encoding, MRR interval)` in ranking order.
    pub mrr: Vec<(String, Interval)>,
    /// `apart[i]`: the 95 % interval of `MRR[i] - MRR[i + 1]` over the replicates excludes 0.
    pub apart: Vec<bool>,
}

/// Bootstraps the MRR ranking (see the module docs); `None` when some row has no outcomes.
pub fn ranking_intervals(rows: &[Row]) -> Option<RankingIntervals> {
    if rows.is_empty() || rows.iter().any(|r| !r.has_intervals()) {
        return None;
    }
    let encodings = distinct(rows.iter().map(|r| &r.encoding));
    let groups = groups_of(rows);
    // mrr[e][r]: encoding e's MRR in replicate r.
    let mut mrr = vec![vec![0.0f64; REPLICATES]; encodings.len()];
    for of_group in &groups {
        let replicates: Vec<Option<&Vec<Option<f64>>>> = encodings
            .iter()
            .map(|&e| {
                of_group
                    .iter()
                    .find(|r| &r.encoding == e)
                    .map(|r| &r.score_replicates)
            })
            .collect();
        let higher = of_group[0].headline.higher_is_better();
        for r in 0..REPLICATES {
            let scores: Vec<Option<f64>> = replicates
                .iter()
                .map(|rep| rep.and_then(|v| v[r]))
                .collect();
            for (e, rank) in rank_scores(&scores, higher).into_iter().enumerate() {
                mrr[e][r] += 1.0 / rank as f64 / groups.len() as f64;
            }
        }
    }
    let order: Vec<usize> = mrr_of(&ranks(rows))
        .iter()
        .map(|(name, _)| {
            encodings
                .iter()
                .position(|e| *e == name)
                .expect("same encodings")
        })
        .collect();
    let interval = |v: &[f64]| stats::percentile_interval(v, LEVEL).expect("finite MRRs");
    let apart = order
        .windows(2)
        .map(|w| {
            let diff: Vec<f64> = (0..REPLICATES)
                .map(|r| mrr[w[0]][r] - mrr[w[1]][r])
                .collect();
            !interval(&diff).contains(0.0)
        })
        .collect();
    Some(RankingIntervals {
        mrr: order
            .iter()
            .map(|&e| (encodings[e].clone(), interval(&mrr[e])))
            .collect(),
        apart,
    })
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

/// `0.812 ± 0.031 [0.770, 0.850]`, `0.812 [0.770, 0.850]` (one seed), without the interval when
/// there is none, or `n/a`; `†` for a partly n/a bucket.
pub fn format_bucket(b: &BucketStat) -> String {
    let mut s = format_value(b.exact_match.as_ref(), b.interval.as_ref(), 3);
    if b.partial {
        s.push_str(" †");
    }
    s
}

/// `0.812 ± 0.031`, `0.812` (one value) or `n/a`.
pub fn format_stat(s: Option<&Stat>) -> String {
    format_value(s, None, 3)
}

/// `mean ± std [lo, hi]` with `decimals` decimals, leaving out what is missing; `n/a` for none.
pub fn format_value(s: Option<&Stat>, interval: Option<&Interval>, decimals: usize) -> String {
    let Some(s) = s else {
        return "n/a".into();
    };
    let mut out = format!("{:.*}", decimals, s.mean);
    if let Some(std) = s.std {
        let _ = write!(out, " ± {std:.decimals$}");
    }
    if let Some(i) = interval {
        let _ = write!(out, " [{:.*}, {:.*}]", decimals, i.lo, decimals, i.hi);
    }
    out
}

/// Decimals of a perplexity or a ratio in tables.
const PPL_DECIMALS: usize = 2;
const RATIO_DECIMALS: usize = 3;

fn md_escape(text: &str) -> String {
    text.replace('|', "\\|")
}

fn order_index(order: &[String], name: &str) -> usize {
    order.iter().position(|o| o == name).unwrap_or(order.len())
}

fn group_title(task: &str, variant: &[(String, String)]) -> String {
    let label = variant_label(variant);
    if label.is_empty() {
        task.to_string()
    } else {
        format!("{task} ({label})")
    }
}

/// The exact-match columns of a group: `(bucket, header)` for every bucket some row measured a
/// length in, headers naming the measured lengths when every row shares its training lengths.
fn bucket_columns(of_group: &[&Row]) -> Vec<(Bucket, String)> {
    let (lmin, l) = (of_group[0].train_min_len, of_group[0].train_max_len);
    let same = of_group
        .iter()
        .all(|r| r.train_min_len == lmin && r.train_max_len == l);
    Bucket::ALL
        .into_iter()
        .filter_map(|b| {
            let measured: Vec<usize> = of_group
                .iter()
                .flat_map(|r| {
                    r.lengths
                        .iter()
                        .copied()
                        .filter(|&n| b.contains(r.edges, n))
                })
                .collect();
            let factor = of_group[0].edges.factor;
            let factor = of_group
                .iter()
                .all(|r| r.edges.factor == factor)
                .then_some(factor);
            match (measured.is_empty(), same) {
                (true, _) => None,
                (false, true) => Some((b, b.header(l, &measured))),
                (false, false) => Some((b, b.symbolic_header(factor))),
            }
        })
        .collect()
}

fn bucket_of(row: &Row, b: Bucket) -> &BucketStat {
    match b {
        Bucket::InDistribution => &row.in_distribution,
        Bucket::Near => &row.near,
        Bucket::Far => &row.far,
    }
}

/// The table of an exact-match group.
fn exact_match_table(md: &mut String, g: &GroupRanks, of_group: &[&Row], encodings: &[String]) {
    let columns = bucket_columns(of_group);
    let mut header = "| encoding |".to_string();
    let mut rule = "|---|".to_string();
    for (_, name) in &columns {
        let _ = write!(header, " {name} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(md, "{header} score | rank | seeds |\n{rule}---:|---:|---:|");
    // An encoding with no finished cell in this group gets a row of n/a (it ranks last).
    for encoding in encodings {
        let rank = g.ranks.iter().find(|r| &r.0 == encoding).map_or(0, |r| r.2);
        let _ = write!(md, "| {} |", md_escape(encoding));
        match of_group.iter().find(|r| &r.encoding == encoding) {
            Some(row) => {
                for (b, _) in &columns {
                    let _ = write!(md, " {} |", format_bucket(bucket_of(row, *b)));
                }
                let _ = writeln!(
                    md,
                    " {} | {rank} | {} |",
                    format_value(row.score.as_ref(), row.score_interval.as_ref(), 3),
                    row.seeds
                );
            }
            None => {
                let _ = writeln!(md, "{} n/a | {rank} | 0 |", " n/a |".repeat(columns.len()));
            }
        }
    }
}

/// The two tables of a perplexity group: perplexity at each length (with score and rank), and
/// the ratio to L at each length beyond L.
fn perplexity_tables(md: &mut String, g: &GroupRanks, of_group: &[&Row], encodings: &[String]) {
    let l = of_group[0].train_max_len;
    let same_l = of_group.iter().all(|r| r.train_max_len == l);
    let mut lengths: Vec<usize> = of_group.iter().flat_map(|r| r.lengths.clone()).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let beyond: Vec<usize> = lengths.iter().copied().filter(|&n| n > l).collect();
    let name = |n: usize| {
        if n == l && same_l {
            format!("{n} = L")
        } else {
            n.to_string()
        }
    };
    let cell = |points: &[Point], n: usize, decimals: usize| {
        let p = points.iter().find(|p| p.length == n);
        format_value(
            p.and_then(|p| p.stat.as_ref()),
            p.and_then(|p| p.interval.as_ref()),
            decimals,
        )
    };
    let _ = writeln!(md, "Perplexity at each context length:\n");
    let _ = write!(md, "| encoding |");
    for &n in &lengths {
        let _ = write!(md, " {} |", name(n));
    }
    let _ = writeln!(
        md,
        " score | rank | seeds |\n|---|{}---:|---:|---:|",
        "---:|".repeat(lengths.len())
    );
    for encoding in encodings {
        let rank = g.ranks.iter().find(|r| &r.0 == encoding).map_or(0, |r| r.2);
        let _ = write!(md, "| {} |", md_escape(encoding));
        match of_group.iter().find(|r| &r.encoding == encoding) {
            Some(row) => {
                for &n in &lengths {
                    let _ = write!(md, " {} |", cell(&row.points, n, PPL_DECIMALS));
                }
                let _ = writeln!(
                    md,
                    " {} | {rank} | {} |",
                    format_value(
                        row.score.as_ref(),
                        row.score_interval.as_ref(),
                        RATIO_DECIMALS
                    ),
                    row.seeds
                );
            }
            None => {
                let _ = writeln!(md, "{} n/a | {rank} | 0 |", " n/a |".repeat(lengths.len()));
            }
        }
    }
    if beyond.is_empty() || !same_l {
        return;
    }
    let _ = writeln!(
        md,
        "\nRatio of the perplexity to the perplexity at L = {l}:\n"
    );
    let _ = write!(md, "| encoding |");
    for &n in &beyond {
        let _ = write!(md, " {n} / {l} |");
    }
    let _ = writeln!(md, "\n|---|{}", "---:|".repeat(beyond.len()));
    for encoding in encodings {
        let _ = write!(md, "| {} |", md_escape(encoding));
        let row = of_group.iter().find(|r| &r.encoding == encoding);
        for &n in &beyond {
            let text = row.map_or("n/a".to_string(), |r| cell(&r.ratios, n, RATIO_DECIMALS));
            let _ = write!(md, " {text} |");
        }
        md.push('\n');
    }
}

/// The explanation at the top of the report, for the headlines present.
fn conventions(md: &mut String, rows: &[Row], cells: usize) {
    let has = |h: Headline| rows.iter().any(|r| r.headline == h);
    let _ = writeln!(md, "{cells} finished cells.\n");
    if has(Headline::ExactMatch) {
        // The far bucket's edge follows the evaluation's max_factor (Bucket).
        let exact: Vec<&Row> = rows
            .iter()
            .filter(|r| r.headline == Headline::ExactMatch)
            .collect();
        let factor = exact[0].edges.factor;
        let far = if exact.iter().all(|r| r.edges.factor == factor) {
            format!("{factor}L")
        } else {
            "max_factor·L".to_string()
        };
        let _ = writeln!(
            md,
            "Exact-match tables give the fraction of examples whose whole answer is right, for \
             every encoding, as the mean ± the sample standard deviation over seeds of each \
             seed's mean over the lengths of a bucket: in-distribution (the training lengths, up \
             to L, the longest), near `(L, 2L]` and far `(2L, {far}]`; each header names the \
             lengths measured. A single seed shows no ±. `n/a`: the scheme cannot represent any length of \
             the bucket (e.g. a learned table too short); `†`: some lengths of the bucket were \
             n/a and are left out of its mean. The score is each seed's mean exact match over \
             every measured length beyond L (near and far pooled by length count, an n/a length \
             counting as 0), averaged over seeds; higher is better.\n"
        );
    }
    if has(Headline::Perplexity) {
        let _ = writeln!(
            md,
            "Perplexity tables give the held-out perplexity `exp(loss)` at each context length \
             (Press et al. 2022), every length scoring the same held-out tokens, each exactly once \
             (consecutive windows of the length, each reading the token before it; older \
             `eval.json` files scored whole windows only, so a length's text could differ), as \
             the mean (± the sample standard deviation) over seeds; `n/a`: the scheme cannot represent that length. The ratio table divides \
             each seed's perplexity at a length by its perplexity at the training context L. The \
             score is each seed's geometric mean of those ratios over every measured length \
             beyond L (1 = no worse than at L; lower is better; n/a when L or any such length is \
             n/a), averaged over seeds: it ranks how well an encoding holds up beyond its \
             training context, not how well it models the text at L.\n"
        );
    }
    let _ = writeln!(
        md,
        "The ranking follows Kazemnejad et al. (2023): in each table the encodings are ranked \
         by score (1 = best, equal scores share the best rank, n/a or no finished cell ranks \
         last), and the mean reciprocal rank (MRR) averages 1/rank over the tables.\n"
    );
    if rows.iter().any(Row::has_intervals) {
        let mut how = Vec::new();
        if has(Headline::ExactMatch) {
            how.push(
                "exact match: `k` right of `m` examples is resampled as a binomial draw, and \
                 every exact-match interval also covers Wilson's interval of the examples it \
                 pools (Wilson 1927), so that 0/m and m/m do not get a zero-width interval",
            );
        }
        if has(Headline::Perplexity) {
            how.push(
                "perplexity: every context length scores the same text, in blocks of L \
                 tokens, and a moving-block bootstrap (Künsch 1989) resamples runs of blocks as \
                 long as the longest window, the same runs at every length, so that a ratio is \
                 measured on the same resampled text at both of its lengths (older `eval.json` \
                 files, with per-window outcomes, resample windows independently per length)",
            );
        }
        let _ = writeln!(
            md,
            "Brackets give 95 % intervals. Within a seed ({REPLICATES} seeded replicates: the \
             same cells give the same report, byte for byte), each length's test set is \
             resampled ({}). With n ≥ 2 seeds, an interval is the t interval over the seed \
             values, mean ± t(n-1) s / sqrt(n) (fractions clipped to [0, 1]; perplexities and \
             ratios on the log scale, around their geometric mean), joined with the within-seed \
             interval of the mean of the seeds where that is wider, so that seeds which agree \
             exactly still carry their test sets' noise. With one seed, the within-seed interval \
             alone. The plots shade the same intervals. In the ranking, each replicate ranks \
             every row's score (with several seeds, the t interval's replicates, mean + t_r s / \
             sqrt(n) for Student t draws t_r) and recomputes every MRR: `≈` marks an encoding \
             not distinguishable from the next one down (the 95 % interval of the difference of \
             their MRRs over the replicates contains 0), `>` one that is. These marks are a \
             heuristic over neighbours of the ranking only: they test no other pair and make no \
             correction for comparing many pairs. Encodings are resampled independently although \
             they see the same test examples, which overstates the noise of a difference: `≈` \
             errs on the cautious side. Claims about one encoding against another across seeds \
             rest on the paired tables of each section (differences seed by seed, with a paired \
             t interval, and the count of seeds each pair's first encoding wins).\n",
            how.join("; ")
        );
    }
    if rows.iter().any(|r| !r.has_intervals()) {
        let _ = writeln!(
            md,
            "Rows without brackets come from `eval.json` files written before per-example \
             outcomes were recorded; delete those files and run `ordo ablate` again to \
             re-evaluate the cells (the trained models are kept) and get their intervals.\n"
        );
    }
    let single = rows.iter().filter(|r| r.seeds == 1).count();
    if single == rows.len() {
        let _ = writeln!(
            md,
            "**This study has one seed per cell, so it cannot rank encodings.** Its intervals \
             measure only how much the choice of test examples moves each number; how much \
             another training run would move it (training-seed variance) is unmeasured, and can \
             be larger. The ranking below orders these trained models, not the encodings in \
             general; run several seeds to rank encodings.\n"
        );
    } else if single > 0 {
        let _ = writeln!(
            md,
            "**{single} of {} rows have a single seed:** their intervals measure only the choice \
             of test examples, not training-seed variance, and the ranking cannot tell those \
             encodings apart across training runs.\n",
            rows.len()
        );
    }
}

/// With randomized positions: the protocol, and where it differs from the reference code.
fn randomized_note(md: &mut String, rows: &[Row]) {
    let ranges: Vec<String> = distinct(
        rows.iter()
            .filter_map(|r| r.randomized_positions)
            .map(|n| n.to_string()),
    );
    if ranges.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "**Randomized positions** (Ruoss et al. 2023; N = {}): each forward pass places its `t` \
         tokens on a sorted random subset of `0..N`. Training batches have one length when \
         `train.batch_lengths` is `single` (the default with randomized positions), and every \
         evaluated example is a forward pass with a draw of its own, so a length-n sequence meets \
         the same distribution of positions in training and in evaluation and the intervals \
         resample the draws with the examples. Where ordo differs from the paper's reference \
         code: relative schemes (T5, Shaw, ALiBi, FIRE) read the offsets `p_j - p_i` of drawn \
         absolute positions, where the reference draws sorted distances per offset (a Toeplitz \
         structure); one draw serves every layer, where the reference draws again in each \
         attention layer for RoPE and ALiBi; the draw is seeded by the tokens, so every \
         encoding meets the same draw on the same example. Lengths whose sequence is longer \
         than N are n/a.\n",
        ranges.join(", ")
    );
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
    if !spec.left_out.is_empty() {
        let _ = writeln!(
            md,
            "**Left out: {} run director{}** (not in the tables or the ranking):\n",
            spec.left_out.len(),
            if spec.left_out.len() == 1 { "y" } else { "ies" }
        );
        for line in &spec.left_out {
            let _ = writeln!(md, "- {}", md_escape(line));
        }
        md.push('\n');
    }
    conventions(&mut md, rows, cells);
    randomized_note(&mut md, rows);
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
        let _ = writeln!(md, "## {}\n", md_escape(&group_title(&g.task, &g.variant)));
        // From the cells' evaluations: the mode may come from the base config or the grid.
        let encoder = of_group
            .iter()
            .any(|r| r.mode == ordo_model::AttentionMode::Bidirectional);
        // What each scheme says about itself in an encoder (e.g. symmetric biases).
        let notes = ordo_model::PositionalEncodingConfig::KINDS
            .iter()
            .filter(|&&kind| encoder && of_group.iter().any(|r| r.kind == kind))
            .filter_map(|kind| ordo_model::PositionalEncodingConfig::from_kind(kind, 1))
            .filter_map(|config| config.scheme.encoder_note());
        for note in notes {
            let _ = writeln!(md, "Encoder: {note}\n");
        }
        let warnings: Vec<String> = distinct(of_group.iter().flat_map(|r| r.warnings.clone()));
        for warning in &warnings {
            let with: Vec<String> = of_group
                .iter()
                .filter(|r| r.warnings.contains(warning))
                .map(|r| format!("`{}`", r.encoding))
                .collect();
            let _ = writeln!(md, "Warning ({}): {warning}\n", with.join(", "));
        }
        for r in of_group.iter().filter(|r| !r.learned.is_empty()) {
            let values: Vec<String> = r
                .learned
                .iter()
                .map(|(k, v, n)| format!("{k} {v:.3} ({n} seed{})", if *n == 1 { "" } else { "s" }))
                .collect();
            let _ = writeln!(
                md,
                "Learned by `{}` (mean over seeds): {}.\n",
                r.encoding,
                values.join(", ")
            );
        }
        match g.headline {
            Headline::ExactMatch => exact_match_table(&mut md, g, &of_group, &encodings),
            Headline::Perplexity => perplexity_tables(&mut md, g, &of_group, &encodings),
        }
        paired_tables(&mut md, g, &of_group);
        md.push('\n');
    }
    variant_pairs(&mut md, rows);
    ranking_table(&mut md, rows, &groups);
    let _ = writeln!(md, "\n## Plots\n");
    let mut shown: Vec<&str> = Vec::new();
    if rows.iter().any(|r| r.headline == Headline::ExactMatch) {
        shown.push("exact match against length");
    }
    if rows.iter().any(|r| r.headline == Headline::Perplexity) {
        shown.push("perplexity against context length (log axes)");
    }
    let _ = writeln!(
        md,
        "Each plot shows {}: the mean over seeds at each length (a gap: n/a), its 95 % interval \
         shaded when the cells have outcomes, and a dashed line at the longest training length L.\n",
        shown.join(", or ")
    );
    for g in &groups {
        let title = group_title(&g.task, &g.variant);
        let stem = plot_stem(&g.task, &g.variant);
        let _ = writeln!(
            md,
            "### {}\n\n![{}](plots/{stem}.png)\n\n[SVG](plots/{stem}.svg)\n",
            md_escape(&title),
            md_escape(&plot_title(&title, g.headline))
        );
    }
    md
}

/// Per task with several variants (a grid axis such as `randomized_positions = [0, 320]`): each
/// encoding's score in every later variant against the first, paired by seed, for claims such
/// as "randomized positions help RoPE in every seed".
fn variant_pairs(md: &mut String, rows: &[Row]) {
    let mut lines = Vec::new();
    for task in distinct(rows.iter().map(|r| &r.task)) {
        let of_task: Vec<&Row> = rows.iter().filter(|r| &r.task == task).collect();
        let variants = distinct(of_task.iter().map(|r| &r.variant));
        let Some((first, later)) = variants.split_first() else {
            continue;
        };
        for variant in later {
            for a in of_task.iter().filter(|r| &r.variant == *first) {
                let Some(b) = of_task
                    .iter()
                    .find(|r| &r.variant == *variant && r.encoding == a.encoding)
                else {
                    continue;
                };
                let d = paired_differences(b, a, a.headline.higher_is_better());
                if d.len() < 2 {
                    continue;
                }
                lines.push(format!(
                    "| {} | {} | {} → {} | {} |",
                    md_escape(task),
                    md_escape(&a.encoding),
                    md_escape(&variant_label(first)),
                    md_escape(&variant_label(variant)),
                    paired_columns(&d)
                ));
            }
        }
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Variants paired by seed\n\nEach encoding's score in a later variant of a task \
         against the first, seed by seed (positive: the later variant is better), with the mean \
         difference and its 95 % paired t interval.\n\n\
         | task | encoding | variants | seeds | later better in | mean difference | 95 % interval \
         | per seed |\n|---|---|---|---:|---:|---:|---:|---|"
    );
    for line in lines {
        let _ = writeln!(md, "{line}");
    }
    md.push('\n');
}

/// The columns a paired comparison prints for per-seed differences `d` (not empty): seeds, how
/// many favour the first side, the mean difference, its 95 % paired t interval (`-` for one
/// seed) and the differences seed by seed.
fn paired_columns(d: &[(u64, f64)]) -> String {
    let values: Vec<f64> = d.iter().map(|x| x.1).collect();
    let wins = values.iter().filter(|&&x| x > TIE_TOLERANCE).count();
    let mean = mean_of(values.iter().copied()).unwrap_or(0.0);
    let interval = stats::paired_t_interval(&values)
        .map_or("-".into(), |i| format!("[{:+.3}, {:+.3}]", i.lo, i.hi));
    let per_seed: Vec<String> = d.iter().map(|(s, x)| format!("s{s} {x:+.3}")).collect();
    format!(
        "{n} | {wins} of {n} | {mean:+.3} | {interval} | {}",
        per_seed.join(", "),
        n = values.len()
    )
}

/// The score differences of two rows, seed by seed, over the seeds both scored, signed so that
/// a positive difference favours `a` (higher exact match, or lower perplexity ratio).
pub fn paired_differences(a: &Row, b: &Row, higher_is_better: bool) -> Vec<(u64, f64)> {
    a.seed_scores
        .iter()
        .filter_map(|&(seed, sa)| {
            let sb = b.seed_scores.iter().find(|(s, _)| *s == seed)?.1?;
            let d = sa? - sb;
            Some((seed, if higher_is_better { d } else { -d }))
        })
        .collect()
}

/// The paired comparison of a group's encodings across seeds, when some pair shares at least
/// two seeds: each neighbour pair of the group's ranking with the mean difference of scores and
/// its paired t interval, and the matrix of per-seed wins for every pair.
fn paired_tables(md: &mut String, g: &GroupRanks, of_group: &[&Row]) {
    let higher = g.headline.higher_is_better();
    let mut ranked: Vec<&Row> = of_group.to_vec();
    ranked.sort_by_key(|r| {
        g.ranks
            .iter()
            .find(|x| x.0 == r.encoding)
            .map_or(usize::MAX, |x| x.2)
    });
    let shared = |a: &Row, b: &Row| paired_differences(a, b, higher).len();
    if !ranked
        .iter()
        .enumerate()
        .any(|(i, a)| ranked[i + 1..].iter().any(|b| shared(a, b) >= 2))
    {
        return;
    }
    let better = if higher {
        "higher exact match"
    } else {
        "lower perplexity ratio"
    };
    let _ = writeln!(
        md,
        "\nPaired by seed (the same training seed trains both encodings on the same data): for \
         each neighbour pair of this table's ranking, the difference of scores seed by seed \
         (positive: the first is better, a {better}), its mean and 95 % paired t interval \
         (mean ± t(n-1) s / sqrt(n) over the n shared seeds).\n"
    );
    let _ = writeln!(
        md,
        "| pair | seeds | first better in | mean difference | 95 % interval | per seed |\n\
         |---|---:|---:|---:|---:|---|"
    );
    for w in ranked.windows(2) {
        let d = paired_differences(w[0], w[1], higher);
        if d.is_empty() {
            continue;
        }
        let _ = writeln!(
            md,
            "| {} vs {} | {} |",
            md_escape(&w[0].encoding),
            md_escape(&w[1].encoding),
            paired_columns(&d)
        );
    }
    let _ = writeln!(
        md,
        "\nSeeds in which the row's encoding scores better than the column's (of the seeds both \
         scored):\n"
    );
    let _ = write!(md, "| better than → |");
    for r in &ranked {
        let _ = write!(md, " {} |", md_escape(&r.encoding));
    }
    let _ = writeln!(md, "\n|---|{}", "---:|".repeat(ranked.len()));
    for a in &ranked {
        let _ = write!(md, "| {} |", md_escape(&a.encoding));
        for b in &ranked {
            if std::ptr::eq(*a, *b) {
                md.push_str(" - |");
                continue;
            }
            let d = paired_differences(a, b, higher);
            let wins = d.iter().filter(|x| x.1 > TIE_TOLERANCE).count();
            if d.is_empty() {
                // No seed where both have a score (one of them is n/a).
                md.push_str(" n/a |");
            } else {
                let _ = write!(md, " {wins}/{} |", d.len());
            }
        }
        md.push('\n');
    }
}

fn ranking_table(md: &mut String, rows: &[Row], groups: &[GroupRanks]) {
    let _ = writeln!(md, "## Ranking (mean reciprocal rank)\n");
    let intervals = ranking_intervals(rows);
    let mut header = "| # | encoding | MRR |".to_string();
    let mut rule = "|---:|---|---:|".to_string();
    if intervals.is_some() {
        header.push_str(" 95 % interval | vs. next |");
        rule.push_str("---:|:---:|");
    }
    for g in groups {
        let _ = write!(
            header,
            " {} |",
            md_escape(&group_title(&g.task, &g.variant))
        );
        rule.push_str("---:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    let ranking = mrr_of(groups);
    for (i, (encoding, value)) in ranking.iter().enumerate() {
        let _ = write!(md, "| {} | {} | {value:.3} |", i + 1, md_escape(encoding));
        if let Some(iv) = &intervals {
            let ci = iv.mrr[i].1;
            let next = match iv.apart.get(i) {
                Some(true) => ">",
                Some(false) => "≈",
                None => "",
            };
            let _ = write!(md, " [{:.3}, {:.3}] | {next} |", ci.lo, ci.hi);
        }
        for g in groups {
            let rank = g.ranks.iter().find(|r| &r.0 == encoding).map_or(0, |r| r.2);
            let _ = write!(md, " {rank} |");
        }
        md.push('\n');
    }
}

fn plot_title(group: &str, headline: Headline) -> String {
    match headline {
        Headline::ExactMatch => format!("{group}: exact match against length"),
        Headline::Perplexity => format!("{group}: perplexity against context length"),
    }
}

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
    let layout = crate::ablate::ExperimentDir::new(dir);
    let plots = layout.plots();
    std::fs::create_dir_all(&plots).map_err(io_err(&plots))?;
    for of_group in groups_of(&rows) {
        let (task, variant) = (&of_group[0].task, &of_group[0].variant);
        group_plot(
            &plots.join(plot_stem(task, variant)),
            task,
            variant,
            &of_group,
        )?;
    }
    let md = render_markdown(spec, &rows, cells.len());
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

/// The plot of one group: the headline against length, one line and band per encoding.
fn group_plot(
    stem: &Path,
    task: &str,
    variant: &[(String, String)],
    of_group: &[&Row],
) -> Result<Vec<PathBuf>, plot::PlotError> {
    let headline = of_group[0].headline;
    let series: Vec<(String, Vec<(f64, f64)>)> = of_group
        .iter()
        .map(|r| {
            let points = r
                .points
                .iter()
                .map(|p| (p.length as f64, p.stat.map_or(f64::NAN, |s| s.mean)))
                .collect();
            (r.encoding.clone(), points)
        })
        .collect();
    let bands: Vec<Vec<(f64, f64, f64)>> = of_group
        .iter()
        .map(|r| {
            r.points
                .iter()
                .map(|p| match p.interval {
                    Some(i) => (p.length as f64, i.lo, i.hi),
                    None => (p.length as f64, f64::NAN, f64::NAN),
                })
                .collect()
        })
        .collect();
    let l = of_group[0].train_max_len as f64;
    let title = plot_title(&group_title(task, variant), headline);
    let xs = || series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let x_max = xs().fold(l, f64::max);
    let x_min = xs().fold(x_max, f64::min);
    let plot = LinePlot {
        title: &title,
        series: &series,
        bands: &bands,
        marker_x: Some((l, "train L")),
        ..LinePlot::default()
    };
    let plot = match headline {
        Headline::ExactMatch => LinePlot {
            x_label: "length",
            y_label: "exact match",
            x_range: (x_max > x_min).then_some((x_min, x_max)),
            y_range: Some((-0.02, 1.02)),
            ..plot
        },
        Headline::Perplexity => LinePlot {
            x_label: "context length (tokens)",
            y_label: "perplexity",
            log_x: true,
            log_y: true,
            ..plot
        },
    };
    plot::line_plot(stem, &plot)
}

/// A row for one evaluation on its own (its intervals resample only its examples).
fn single_row(eval: &EvalReport) -> Row {
    row_of(&[&CellResult {
        task: eval.task.clone(),
        encoding: eval.encoding.clone(),
        seed: eval.seed,
        variant: Vec::new(),
        eval: eval.clone(),
    }])
}

fn show(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

/// One line summing up an evaluation (the progress line of `ordo ablate`): the exact match of
/// each bucket, or the perplexity at L and its ratios beyond L.
pub fn cell_summary(eval: &EvalReport) -> String {
    let values = observed(eval);
    let l = eval.train_max_len;
    match eval.headline() {
        Headline::ExactMatch => {
            // Buckets with no length measured (far with `max_factor = 2`) are left out: `n/a`
            // says a scheme cannot represent a length, not that nobody asked.
            let buckets = [
                (
                    Bucket::InDistribution,
                    "in-dist",
                    &eval.buckets.in_distribution,
                ),
                (Bucket::Near, "near", &eval.buckets.near),
                (Bucket::Far, "far", &eval.buckets.far),
            ];
            let parts: Vec<String> = buckets
                .into_iter()
                .filter(|(_, _, mean)| mean.lengths > 0)
                .map(|(k, name, _)| format!("{name} {}", show(bucket_value(eval, &values, k), 3)))
                .collect();
            format!("exact match {}", parts.join(" "))
        }
        Headline::Perplexity => {
            let at_l = value_at(eval, &values, l);
            let ratios: Vec<String> = eval
                .lengths
                .iter()
                .filter(|r| r.length > l)
                .map(|r| {
                    let ratio = at_l.zip(value_at(eval, &values, r.length));
                    format!(
                        "{} at {}",
                        show(ratio.map(|(a, b)| (b - a).exp()), 2),
                        r.length
                    )
                })
                .collect();
            let mut line = format!("perplexity {} at L = {l}", show(at_l.map(f64::exp), 2));
            if !ratios.is_empty() {
                let _ = write!(line, "; ratio to L: {}", ratios.join(", "));
            }
            line
        }
    }
}

/// `ordo eval`'s printed summary: a line per length, then the bucket means (exact match) or the
/// perplexity at L and the score (perplexity), with 95 % intervals over the examples.
pub fn eval_summary(eval: &EvalReport) -> String {
    let row = single_row(eval);
    let mut out = String::new();
    let ci = |i: Option<&Interval>, d: usize| {
        i.map_or_else(
            || "n/a".to_string(),
            |i| format!("[{:.d$}, {:.d$}]", i.lo, i.hi),
        )
    };
    let point = |n: usize| row.points.iter().find(|p| p.length == n);
    let headline = eval.headline();
    match headline {
        Headline::ExactMatch => {
            let _ = writeln!(
                out,
                "{:>7} {:>7} {:>12} {:>17} {:>15} {:>8} {:>11}",
                "length",
                "tokens",
                "exact_match",
                "95% interval",
                "token_accuracy",
                "loss",
                "perplexity"
            );
        }
        Headline::Perplexity => {
            let _ = writeln!(
                out,
                "{:>7} {:>7} {:>15} {:>8} {:>11} {:>17} {:>11}",
                "length",
                "tokens",
                "token_accuracy",
                "loss",
                "perplexity",
                "95% interval",
                "ratio_to_L"
            );
        }
    }
    for r in &eval.lengths {
        let p = point(r.length);
        let interval = p.and_then(|p| p.interval.as_ref());
        match (&r.metrics, headline) {
            (Some(m), Headline::ExactMatch) => {
                let _ = writeln!(
                    out,
                    "{:>7} {:>7} {:>12.4} {:>17} {:>15.4} {:>8.4} {:>11.3}",
                    r.length,
                    r.tokens,
                    m.exact_match,
                    ci(interval, 4),
                    m.token_accuracy,
                    m.loss,
                    m.perplexity()
                );
            }
            (Some(m), Headline::Perplexity) => {
                // At L itself the ratio is 1 by definition.
                let ratio = if r.length == eval.train_max_len {
                    Some(1.0)
                } else {
                    row.ratios
                        .iter()
                        .find(|q| q.length == r.length)
                        .and_then(|q| q.stat)
                        .map(|s| s.mean)
                };
                let _ = writeln!(
                    out,
                    "{:>7} {:>7} {:>15.4} {:>8.4} {:>11.3} {:>17} {:>11}",
                    r.length,
                    r.tokens,
                    m.token_accuracy,
                    m.loss,
                    m.perplexity(),
                    ci(interval, 3),
                    show(ratio, 3)
                );
            }
            (None, _) => {
                let _ = writeln!(
                    out,
                    "{:>7} {:>7} {:>12}  ({})",
                    r.length,
                    r.tokens,
                    "n/a",
                    r.unsupported.as_deref().unwrap_or("")
                );
            }
        }
    }
    let value = |s: Option<&Stat>, i: Option<&Interval>, d| {
        let mut v = show(s.map(|s| s.mean), d);
        if let Some(i) = i {
            let _ = write!(v, " {}", ci(Some(i), d));
        }
        v
    };
    match headline {
        Headline::ExactMatch => {
            let parts: Vec<String> = bucket_columns(&[&row])
                .into_iter()
                .map(|(b, name)| {
                    let s = bucket_of(&row, b);
                    format!(
                        "{name} {}",
                        value(s.exact_match.as_ref(), s.interval.as_ref(), 4)
                    )
                })
                .collect();
            let _ = writeln!(out, "exact match: {}", parts.join("  "));
            let _ = write!(
                out,
                "score (mean exact match beyond L, n/a as 0): {}",
                value(row.score.as_ref(), row.score_interval.as_ref(), 4)
            );
        }
        Headline::Perplexity => {
            let l = eval.train_max_len;
            let at_l = point(l);
            let _ = write!(
                out,
                "perplexity at L = {l}: {}; score (geometric mean ratio to L beyond L): {}",
                value(
                    at_l.and_then(|p| p.stat.as_ref()),
                    at_l.and_then(|p| p.interval.as_ref()),
                    3
                ),
                value(row.score.as_ref(), row.score_interval.as_ref(), 3)
            );
        }
    }
    if !row.has_intervals() {
        out.push_str("\n(no intervals: this eval.json has no per-example outcomes)");
    }
    out
}
