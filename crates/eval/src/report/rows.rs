//! Rows of the report: the cells of one (task, variant, encoding) pooled over seeds into bucket
//! statistics, points against length and the extrapolation score, with their intervals.

use crate::extrapolation::{EvalReport, Headline, LengthResult};
use crate::stats::{self, Domain, Interval, REPLICATES};
use serde::{Deserialize, Serialize};

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
    /// What the report's tables read besides the evaluation (absent: those columns empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<CellFacts>,
}

/// What the tables read of a cell besides its evaluation: its run directory's resolved config
/// (flattened) and what training recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CellFacts {
    /// The run directory's name under `runs/`.
    pub id: String,
    /// The task's base config file as the experiment file names it (absent when the report is
    /// rebuilt without the experiment file).
    pub base_config: Option<String>,
    /// The run's `config.toml`, flattened to dotted keys (`model.encoding.base`), each value as
    /// TOML writes it (strings without quotes).
    pub config: std::collections::BTreeMap<String, String>,
    /// From `summary.json`: absent while the run has none.
    pub steps: Option<usize>,
    pub seconds: Option<f64>,
    pub tokens_per_second: Option<f64>,
    pub valid_loss: Option<f64>,
    pub valid_token_accuracy: Option<f64>,
    pub valid_exact_match: Option<f64>,
    /// The loss of the last `train` line of `metrics.jsonl`.
    pub final_train_loss: Option<f64>,
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
    pub(crate) fn symbolic_header(self, factor: Option<usize>) -> String {
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
    /// Per-token accuracy (teacher forcing, the scored answer tokens): the mean over seeds of
    /// each seed's mean over the bucket's lengths (Ruoss et al.'s metric); `None` = n/a.
    pub token_accuracy: Option<Stat>,
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
pub(crate) fn observed(eval: &EvalReport) -> Vec<Option<f64>> {
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
pub(crate) fn value_at(eval: &EvalReport, values: &[Option<f64>], n: usize) -> Option<f64> {
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
pub(crate) fn bucket_value(eval: &EvalReport, values: &[Option<f64>], b: Bucket) -> Option<f64> {
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
pub(crate) fn mean_of(values: impl Iterator<Item = f64>) -> Option<f64> {
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
    let token_accuracy: Vec<f64> = cells
        .iter()
        .filter_map(|c| {
            let values: Vec<Option<f64>> = c
                .eval
                .lengths
                .iter()
                .map(|r| r.metrics.map(|m| m.token_accuracy))
                .collect();
            bucket_value(c.eval, &values, b)
        })
        .collect();
    BucketStat {
        exact_match: s.stat,
        interval: s.interval,
        partial,
        token_accuracy: Stat::of(&token_accuracy),
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
pub(crate) fn distinct<T: PartialEq + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The row of the cells of one (task, variant, encoding).
pub(crate) fn row_of(of_row: &[&CellResult]) -> Row {
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

/// `model.mode=bidirectional, task.x=3`; empty for no variant.
pub fn variant_label(variant: &[(String, String)]) -> String {
    variant
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `task (model.mode=bidirectional)`: a group's title in tables and plots.
pub(crate) fn group_title(task: &str, variant: &[(String, String)]) -> String {
    let label = variant_label(variant);
    if label.is_empty() {
        task.to_string()
    } else {
        format!("{task} ({label})")
    }
}

/// Each evaluated length's 95 % interval of the headline within this one cell, aligned with
/// `cell.eval.lengths`: Wilson's for exact match (from the count of exact answers), the
/// percentile interval of the cell's bootstrap replicates for perplexity; `None` for an n/a
/// length or without per-example outcomes.
pub fn length_intervals(cell: &CellResult) -> Vec<Option<Interval>> {
    let lengths = &cell.eval.lengths;
    match cell.eval.headline() {
        Headline::ExactMatch => lengths
            .iter()
            .map(|r| {
                let (m, o) = (r.metrics?, r.outcomes.as_ref()?);
                stats::wilson(o.exact as u64, m.examples as u64)
            })
            .collect(),
        // Only perplexity needs the bootstrap (the cell's replicates, as the rows draw them).
        Headline::Perplexity => {
            let draws = cell_draws(cell);
            (0..lengths.len())
                .map(|i| {
                    let column = draws.columns.get(i)?.as_ref()?;
                    let ppl: Vec<f64> = column.iter().map(|x| x.exp()).collect();
                    stats::percentile_interval(&ppl, stats::LEVEL)
                })
                .collect()
        }
    }
}
