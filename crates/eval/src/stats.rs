//! Confidence intervals for reports.
//!
//! The design, stated again in every report that shows intervals:
//! - **Level**: two-sided 95 % intervals ([`LEVEL`]); where they come from replicates,
//!   [`REPLICATES`] of them, quantiles interpolated linearly between order statistics.
//! - **Within a seed** (one trained model) each length's test set is resampled. Exact match is
//!   one Bernoulli outcome per example, so resampling `m` examples of which `k` were right is a
//!   draw of Binomial(m, k/m) ([`Binomial`], by inverting its CDF). A statistic that averages
//!   proportions (a bucket, a score, one length; over the seeds too) gets the percentile
//!   interval of its replicates joined with Wilson's interval of the pooled count ([`wilson`],
//!   Wilson 1927; recommended by Brown, Cai & DasGupta 2001, "Interval estimation for a binomial
//!   proportion", Statistical Science 16(2)): at `0/m` and `m/m` the bootstrap is a point, and
//!   Wilson's interval gives the width (0/512: `[0, 0.0074]`); elsewhere the two nearly agree.
//!   Every interval holds its point estimate. Lengths are separate test sets (each generated
//!   from its own seed) and
//!   are drawn independently. Perplexity: every length of an evaluation scores the same text in
//!   blocks of the training context ([`crate::extrapolation::Outcomes`]), so the blocks are
//!   resampled *jointly across lengths* with a moving-block bootstrap (Künsch 1989, "The
//!   jackknife and the bootstrap for general stationary observations", Annals of Statistics
//!   17(3)): runs of consecutive blocks as long as the longest window, the same runs at every
//!   length ([`joint_block_replicates`]), so that a ratio such as `ppl(8L) / ppl(L)` is
//!   measured on the same resampled text at both lengths. An `eval.json` written before blocks
//!   were recorded resamples its windows independently at each length.
//! - **Across seeds**, with `n >= 2` seeds: the t interval over the seed values, `mean ± t(n-1)
//!   s / sqrt(n)` ([`t_interval`]; fractions clipped to `[0, 1]`, positive quantities such as
//!   perplexities and ratios on the log scale, around their geometric mean), or, where it is
//!   wider, the within-seed interval of the mean of the seeds, so that seeds which agree to the
//!   last digit still carry their examples' noise ([`seed_interval`]). The seed values already
//!   hold their examples' noise, so nothing is counted twice. With one seed, the within-seed
//!   interval alone: it says how much the choice of test examples moves the number, and nothing
//!   about another training run (training-seed variance is unmeasured).
//! - **Replicates for rankings**: a ranking needs every row's score in every replicate. With
//!   several seeds the replicates of the interval chosen are used: `mean + t_r s / sqrt(n)` for
//!   Student t draws `t_r` (on the log scale for positive quantities), or the within-seed
//!   replicates.
//! - **Deterministic**: every random stream is derived from a fixed seed and the names of what
//!   it resamples (task, variant, encoding, seed, length), so a report is byte-identical on every
//!   rebuild, and adding a cell to a study leaves the other cells' intervals unchanged.
//! - **Known approximations**: encodings are resampled independently of each other although
//!   every encoding of a study sees the same examples (`eval.json` keeps counts, not which
//!   examples were right). An example that is hard for one encoding tends to be hard for the
//!   others, so independent resampling overstates the noise of a difference between encodings:
//!   "not distinguishable" errs on the cautious side. Differences between encodings across
//!   seeds are compared paired by seed in the report.

use crate::extrapolation::{Headline, LengthResult};
use ordo_train::rng::Rng;

/// Coverage of every interval.
pub const LEVEL: f64 = 0.95;
/// Bootstrap replicates per interval.
pub const REPLICATES: usize = 2000;
/// The root of every random stream of the bootstrap.
const SEED: u64 = 0x006f_7264_6f5f_6369; // "ordo_ci"

/// A closed interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    pub fn width(&self) -> f64 {
        self.hi - self.lo
    }

    /// The smallest interval holding both.
    pub fn hull(self, other: Interval) -> Interval {
        Interval {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }
}

/// The random stream for the bootstrap of one named thing (e.g. `copy|rope|s0|len12`).
pub fn stream(label: &str) -> Rng {
    Rng::derive(SEED, label)
}

/// The `q`-quantile of sorted values, interpolated linearly between order statistics
/// (Hyndman & Fan's type 7, the default of R and numpy).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no values");
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let below = h.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (h - below as f64) * (sorted[above] - sorted[below])
}

/// The central `level` percentile interval of the finite values; `None` if there are none.
pub fn percentile_interval(values: &[f64], level: f64) -> Option<Interval> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some(Interval {
        lo: quantile(&sorted, tail),
        hi: quantile(&sorted, 1.0 - tail),
    })
}

/// A standard normal draw (Box-Muller, one of the pair).
pub fn normal(rng: &mut Rng) -> f64 {
    // 1 - unit() is in (0, 1]: the logarithm is finite.
    let (u, v) = (1.0 - rng.unit(), rng.unit());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A Gamma(`shape`, 1) draw (Marsaglia & Tsang 2000; for `shape < 1`, Gamma(shape + 1) times
/// `U^(1/shape)`).
pub fn gamma(shape: f64, rng: &mut Rng) -> f64 {
    assert!(shape > 0.0, "gamma shape {shape}");
    if shape < 1.0 {
        let u = 1.0 - rng.unit();
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.unit();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Student t draw with `df` degrees of freedom: `Z / sqrt(V / df)`, `V` chi-squared.
pub fn student_t(df: usize, rng: &mut Rng) -> f64 {
    assert!(df >= 1, "t with no degree of freedom");
    let z = normal(rng);
    let v = 2.0 * gamma(df as f64 / 2.0, rng);
    z / (v / df as f64).sqrt()
}

/// Binomial(n, k/n): the number of right examples in a resample (with replacement) of `n`
/// examples of which `k` were right. Drawn by inverting the CDF with one uniform number.
#[derive(Debug, Clone)]
pub struct Binomial {
    /// `cdf[j]` = P(X <= j); the last entry is exactly 1.
    cdf: Vec<f64>,
}

impl Binomial {
    pub fn new(n: usize, k: usize) -> Binomial {
        assert!(k <= n, "{k} successes of {n} trials");
        if k == 0 || k == n {
            // A point mass: P(X = k) = 1.
            let mut cdf = vec![0.0; n + 1];
            cdf[k..].fill(1.0);
            return Binomial { cdf };
        }
        let p = k as f64 / n as f64;
        let (lp, lq) = (p.ln(), (1.0 - p).ln());
        // log C(n, j) built up term by term, so that large n neither overflows nor underflows.
        let mut log_choose = 0.0f64;
        let log_pmf: Vec<f64> = (0..=n)
            .map(|j| {
                if j > 0 {
                    log_choose += ((n - j + 1) as f64).ln() - (j as f64).ln();
                }
                log_choose + j as f64 * lp + (n - j) as f64 * lq
            })
            .collect();
        let max = log_pmf.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut total = 0.0;
        let mut cdf: Vec<f64> = log_pmf
            .iter()
            .map(|l| {
                total += (l - max).exp();
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        cdf[n] = 1.0;
        Binomial { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit(); // [0, 1)
        self.cdf.partition_point(|&c| c <= u)
    }
}

/// Wilson's score interval (Wilson 1927) for `k` right of `n`, at the 95 % level:
/// `(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`. Never of zero width for `n > 0`:
/// 0/512 gives `[0, 0.0074]`.
pub fn wilson(k: u64, n: u64) -> Option<Interval> {
    if n == 0 || k > n {
        return None;
    }
    let (n, p, z) = (n as f64, k as f64 / n as f64, Z_975);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    Some(Interval {
        lo: (centre - half).max(0.0),
        hi: (centre + half).min(1.0),
    })
}

/// Student's t quantile at 0.975 (the upper end of a central 95 % interval) with `df` degrees
/// of freedom: the standard table for `df <= 30`, the Cornish-Fisher expansion beyond (error
/// below 1e-4 there).
pub fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    assert!(df >= 1, "t quantile with no degree of freedom");
    if df <= TABLE.len() {
        return TABLE[df - 1];
    }
    let (z, n) = (Z_975, df as f64);
    z + (z.powi(3) + z) / (4.0 * n)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
}

/// The standard normal quantile at 0.975.
pub const Z_975: f64 = 1.959_963_985;

/// The range a statistic lives in, which decides the scale of its seed interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A fraction in `[0, 1]` (exact match): a t interval on the linear scale, clipped.
    Fraction,
    /// A positive quantity (a perplexity, a ratio): a t interval on the log scale.
    Positive,
}

impl Domain {
    fn forward(self, x: f64) -> f64 {
        match self {
            Domain::Fraction => x,
            Domain::Positive => x.ln(),
        }
    }

    fn back(self, y: f64) -> f64 {
        match self {
            Domain::Fraction => y.clamp(0.0, 1.0),
            Domain::Positive => y.exp(),
        }
    }
}

/// The mean and the standard error `s / sqrt(n)` of `values` on `domain`'s scale.
fn mean_and_se(values: &[f64], domain: Domain) -> (f64, f64) {
    let n = values.len() as f64;
    let y: Vec<f64> = values.iter().map(|&v| domain.forward(v)).collect();
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// The 95 % t interval over `n >= 2` seed values: `mean ± t_975(n - 1) s / sqrt(n)` on the
/// domain's scale; `None` for fewer than 2 values (or a non-positive value of a positive
/// quantity).
pub fn t_interval(values: &[f64], domain: Domain) -> Option<Interval> {
    const { assert!(LEVEL == 0.95, "t_975 is the quantile of a 95 % interval") };
    if values.len() < 2
        || (domain == Domain::Positive && values.iter().any(|&v| v <= 0.0))
        || values.iter().any(|v| !v.is_finite())
    {
        return None;
    }
    let (mean, se) = mean_and_se(values, domain);
    let half = t_975(values.len() - 1) * se;
    Some(Interval {
        lo: domain.back(mean - half),
        hi: domain.back(mean + half),
    })
}

/// The 95 % t interval of the mean of paired differences (`n >= 2`), unclipped: `mean ±
/// t_975(n - 1) s / sqrt(n)`.
pub fn paired_t_interval(differences: &[f64]) -> Option<Interval> {
    if differences.len() < 2 || differences.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (mean, se) = mean_and_se(differences, Domain::Fraction);
    let half = t_975(differences.len() - 1) * se;
    Some(Interval {
        lo: mean - half,
        hi: mean + half,
    })
}

/// The interval of a statistic over its seed values, and the replicates a ranking uses (see
/// the module docs): `within` are the within-seed replicates of the mean of the seeds (empty
/// when the cells have no outcomes; `None` where a replicate is undefined); `t_draws` are
/// Student t draws with `values.len() - 1` degrees of freedom, one per replicate; `floor`, a
/// proportion's Wilson interval over the pooled examples, which the within-seed interval always
/// covers (so that 0/m and m/m are not of zero width).
pub fn seed_interval(
    values: &[f64],
    within: &[Option<f64>],
    domain: Domain,
    t_draws: &[f64],
    floor: Option<Interval>,
) -> (Option<Interval>, Vec<Option<f64>>) {
    // Without outcomes (older files) no interval: a t interval alone could have zero width.
    if within.is_empty() {
        return (None, Vec::new());
    }
    let finite: Vec<f64> = within.iter().flatten().copied().collect();
    // Every interval holds its point estimate, and covers the proportion's Wilson interval.
    let observed = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let inner = percentile_interval(&finite, LEVEL).map(|i| {
        let i = i.hull(Interval {
            lo: observed,
            hi: observed,
        });
        floor.map_or(i, |f| i.hull(f))
    });
    let Some(t) = t_interval(values, domain) else {
        return (inner, within.to_vec());
    };
    match inner {
        Some(inner) if inner.width() > t.width() => (Some(t.hull(inner)), within.to_vec()),
        _ => {
            let (mean, se) = mean_and_se(values, domain);
            let replicates = t_draws
                .iter()
                .map(|&t| Some(domain.back(mean + t * se)))
                .collect();
            (Some(inner.map_or(t, |i| t.hull(i))), replicates)
        }
    }
}

/// The bootstrap replicates of one length's headline value within a seed: the exact match (a
/// fraction), or the mean loss per token in nats (perplexity is its `exp`). `None` for an n/a
/// length, or one whose `eval.json` holds no (or inconsistent) outcomes.
///
/// Exact match is a binomial draw (see the module docs). Perplexity resamples
/// the length's units with replacement: blocks (as [`joint_block_replicates`] does for one
/// length), or, in older files, windows.
pub fn length_replicates(
    result: &LengthResult,
    headline: Headline,
    rng: &mut Rng,
    replicates: usize,
) -> Option<Vec<f64>> {
    let (metrics, outcomes) = (result.metrics.as_ref()?, result.outcomes.as_ref()?);
    let m = metrics.examples;
    if m == 0 {
        return None;
    }
    match headline {
        Headline::ExactMatch => {
            if outcomes.exact > m {
                return None;
            }
            if outcomes.exact == 0 || outcomes.exact == m {
                // All wrong or all right: every resample is the same (the interval's width
                // then comes from Wilson's interval, see `seed_interval`).
                return Some(vec![outcomes.exact as f64 / m as f64; replicates]);
            }
            let binomial = Binomial::new(m, outcomes.exact);
            Some(
                (0..replicates)
                    .map(|_| binomial.sample(rng) as f64 / m as f64)
                    .collect(),
            )
        }
        Headline::Perplexity => {
            let (loss, tokens) = (&outcomes.loss, &outcomes.tokens);
            let units = match outcomes.block {
                Some(_) => loss.len(),
                None => m,
            };
            if units == 0
                || loss.len() != units
                || tokens.len() != units
                || tokens.iter().all(|&t| t == 0)
            {
                return None;
            }
            Some(
                (0..replicates)
                    .map(|_| {
                        loop {
                            let (mut l, mut t) = (0.0f64, 0u64);
                            for _ in 0..units {
                                let i = rng.below(units);
                                l += loss[i] as f64;
                                t += tokens[i] as u64;
                            }
                            // A resample of only unscored windows (possible with sliding windows
                            // in older files) has no loss: draw again.
                            if t > 0 {
                                break l / t as f64;
                            }
                        }
                    })
                    .collect(),
            )
        }
    }
}

/// Whether the perplexity outcomes of `results` are blocks of the same text (the same block
/// size and token counts at every length), so that they can be resampled jointly.
pub fn aligned_blocks(results: &[&LengthResult]) -> bool {
    let Some(first) = results.first().and_then(|r| r.outcomes.as_ref()) else {
        return false;
    };
    first.block.is_some()
        && !first.tokens.is_empty()
        && results.iter().all(|r| {
            r.metrics.is_some()
                && r.outcomes.as_ref().is_some_and(|o| {
                    o.block == first.block
                        && o.tokens == first.tokens
                        && o.loss.len() == first.tokens.len()
                })
        })
}

/// The length of the runs of blocks [`joint_block_replicates`] resamples: as many blocks as
/// the longest window spans, at most a quarter of the blocks (so that a replicate joins at
/// least four runs), at least one.
pub fn block_run(blocks: usize, block: usize, longest: usize) -> usize {
    longest.div_ceil(block.max(1)).min(blocks / 4).max(1)
}

/// Moving-block bootstrap of the mean loss per token at every length of `results`, which must
/// be [`aligned_blocks`]: each replicate joins runs of `run` consecutive blocks starting at
/// uniform positions until it has as many blocks as the text, and evaluates every length on
/// those same blocks. `[length][replicate]`.
pub fn joint_block_replicates(
    results: &[&LengthResult],
    run: usize,
    rng: &mut Rng,
    replicates: usize,
) -> Vec<Vec<f64>> {
    assert!(aligned_blocks(results), "blocks not aligned across lengths");
    let outcomes: Vec<_> = results
        .iter()
        .map(|r| r.outcomes.as_ref().expect("aligned"))
        .collect();
    let tokens = &outcomes[0].tokens;
    let blocks = tokens.len();
    let run = run.clamp(1, blocks);
    let mut out = vec![Vec::with_capacity(replicates); results.len()];
    let mut chosen = Vec::with_capacity(blocks + run);
    for _ in 0..replicates {
        chosen.clear();
        while chosen.len() < blocks {
            let start = rng.below(blocks - run + 1);
            chosen.extend(start..start + run);
        }
        chosen.truncate(blocks);
        let t: u64 = chosen.iter().map(|&i| tokens[i] as u64).sum();
        for (o, column) in outcomes.iter().zip(&mut out) {
            let l: f64 = chosen.iter().map(|&i| o.loss[i] as f64).sum();
            column.push(l / t.max(1) as f64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extrapolation::Outcomes;
    use ordo_train::metrics::Metrics;

    fn em_length(m: usize, k: usize) -> LengthResult {
        LengthResult {
            length: 4,
            tokens: 9,
            metrics: Some(Metrics {
                loss: 0.5,
                token_accuracy: 0.9,
                exact_match: k as f64 / m as f64,
                examples: m,
            }),
            unsupported: None,
            outcomes: Some(Outcomes {
                exact: k,
                loss: vec![],
                tokens: vec![],
                block: None,
            }),
            scored_tokens: None,
        }
    }

    fn em_interval(m: usize, k: usize, label: &str) -> Interval {
        let r = length_replicates(
            &em_length(m, k),
            Headline::ExactMatch,
            &mut stream(label),
            20_000,
        )
        .unwrap();
        percentile_interval(&r, LEVEL).unwrap()
    }

    /// Wilson's interval (golden values from its formula, by hand): never of zero width, and
    /// what a single seed's all-wrong or all-right length gets.
    #[test]
    fn proportions_at_zero_or_all_get_wilsons_interval_not_a_point() {
        // 0/512: z² / (n + z²) = 3.8415 / 515.84 = 0.007447.
        let w = wilson(0, 512).unwrap();
        assert!(w.lo == 0.0 && (w.hi - 0.007447).abs() < 1e-6, "{w:?}");
        // 64/64: n / (n + z²) = 64 / 67.8415 = 0.943376.
        let w = wilson(64, 64).unwrap();
        assert!((w.lo - 0.943376).abs() < 1e-6 && w.hi == 1.0, "{w:?}");
        assert_eq!(wilson(1, 0), None);
        // The bootstrap of 0/64 is a point; the seed interval covers Wilson's.
        let reps = length_replicates(
            &em_length(64, 0),
            Headline::ExactMatch,
            &mut stream("z"),
            100,
        )
        .unwrap();
        assert!(reps.iter().all(|&r| r == 0.0));
        let within: Vec<Option<f64>> = reps.into_iter().map(Some).collect();
        let (ci, _) = seed_interval(&[0.0], &within, Domain::Fraction, &[], wilson(0, 64));
        let ci = ci.unwrap();
        assert!(
            ci.lo == 0.0 && (ci.hi - 3.8415 / 67.8415).abs() < 1e-4,
            "{ci:?}"
        );
    }

    #[test]
    fn a_fifty_fifty_split_straddles_a_half_and_narrows_with_more_examples() {
        let small = em_interval(20, 10, "s");
        let large = em_interval(2000, 1000, "l");
        assert!(
            small.contains(0.5) && large.contains(0.5),
            "{small:?} {large:?}"
        );
        assert!(small.lo > 0.0 && small.hi < 1.0);
        // Width scales as 1/sqrt(m): 100x the examples, ~1/10 the width.
        let ratio = large.width() / small.width();
        assert!((0.07..0.15).contains(&ratio), "{ratio}");
    }

    /// Away from 0 and m the percentile bootstrap is close to the Wilson score interval (Wilson
    /// 1927; Agresti & Coull 1998): `(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`.
    #[test]
    fn proportion_interval_is_close_to_wilsons() {
        for (m, k) in [(100, 50), (128, 96), (400, 40)] {
            let (n, p, z) = (m as f64, k as f64 / m as f64, 1.959_964f64);
            let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
            let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
            let ci = em_interval(m, k, "w");
            assert!(
                (ci.lo - (centre - half)).abs() < 0.02 && (ci.hi - (centre + half)).abs() < 0.02,
                "{m} {k}: {ci:?} vs Wilson [{}, {}]",
                centre - half,
                centre + half
            );
        }
    }

    fn moments(draws: &[f64]) -> (f64, f64) {
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        (mean, var)
    }

    #[test]
    fn samplers_have_the_right_moments_and_quantiles() {
        let mut rng = stream("samplers");
        let n = 40_000;
        let z: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let (m, v) = moments(&z);
        assert!(m.abs() < 0.02 && (v - 1.0).abs() < 0.03, "normal {m} {v}");
        for shape in [0.5, 1.0, 3.5, 40.0] {
            let g: Vec<f64> = (0..n).map(|_| gamma(shape, &mut rng)).collect();
            let (m, v) = moments(&g);
            assert!(g.iter().all(|&x| x > 0.0));
            assert!(
                (m / shape - 1.0).abs() < 0.03 && (v / shape - 1.0).abs() < 0.06,
                "gamma({shape}): {m} {v}"
            );
        }
        // Binomial(50, 0.3): mean 15, variance 10.5; large n neither overflows nor underflows.
        let b = Binomial::new(50, 15);
        let draws: Vec<f64> = (0..n).map(|_| b.sample(&mut rng) as f64).collect();
        let (m, v) = moments(&draws);
        assert!((m - 15.0).abs() < 0.1 && (v - 10.5).abs() < 0.4, "{m} {v}");
        assert!(draws.iter().all(|&d| (0.0..=50.0).contains(&d)));
        assert!(Binomial::new(100_000, 3).sample(&mut rng) < 30);
        // t(2): the 97.5 % quantile is 4.303; t(10): 2.228.
        for (df, q) in [(2, 4.303), (10, 2.228)] {
            let mut t: Vec<f64> = (0..n).map(|_| student_t(df, &mut rng)).collect();
            t.sort_by(f64::total_cmp);
            let got = quantile(&t, 0.975);
            assert!((got / q - 1.0).abs() < 0.05, "t({df}): {got} vs {q}");
        }
    }

    #[test]
    fn the_same_label_gives_the_same_interval_and_another_label_another() {
        assert_eq!(em_interval(64, 40, "x"), em_interval(64, 40, "x"));
        let replicates = |label| {
            length_replicates(
                &em_length(64, 40),
                Headline::ExactMatch,
                &mut stream(label),
                50,
            )
        };
        assert_ne!(replicates("x"), replicates("y"));
    }

    #[test]
    fn window_bootstrap_of_perplexity_brackets_the_pooled_loss() {
        // 64 windows of 8 tokens: losses alternate 8 and 24 nats (1 and 3 nats per token).
        let m = 64;
        let loss: Vec<f32> = (0..m)
            .map(|i| if i % 2 == 0 { 8.0 } else { 24.0 })
            .collect();
        let mut r = em_length(m, 0);
        r.outcomes = Some(Outcomes {
            exact: 0,
            loss,
            tokens: vec![8; m],
            block: None,
        });
        let reps = length_replicates(&r, Headline::Perplexity, &mut stream("w"), REPLICATES)
            .expect("windows resampled");
        let ci = percentile_interval(&reps, LEVEL).unwrap();
        assert!(ci.contains(2.0) && ci.lo > 1.5 && ci.hi < 2.5, "{ci:?}");
        // Without per-window losses (an old eval.json) there is nothing to resample.
        r.outcomes.as_mut().unwrap().loss.clear();
        assert!(length_replicates(&r, Headline::Perplexity, &mut stream("w"), 10).is_none());
    }

    /// A length scoring `blocks` blocks of 8 tokens with the given per-token losses.
    fn lm_length(length: usize, per_token: impl Fn(usize) -> f64, blocks: usize) -> LengthResult {
        let mut r = em_length(blocks, 0);
        r.length = length;
        r.outcomes = Some(Outcomes {
            exact: 0,
            loss: (0..blocks).map(|i| (8.0 * per_token(i)) as f32).collect(),
            tokens: vec![8; blocks],
            block: Some(8),
        });
        r
    }

    #[test]
    fn aligned_blocks_make_a_ratio_far_tighter_than_independent_resampling() {
        // The text's blocks vary a lot in difficulty (1 to 4 nats per token); the long context
        // is 0.1 nat per token worse on every block.
        let hard = |i: usize| 1.0 + (i * 7 % 13) as f64 * 0.25;
        let at_l = lm_length(8, hard, 64);
        let at_8l = lm_length(64, |i| hard(i) + 0.1, 64);
        assert!(aligned_blocks(&[&at_l, &at_8l]));
        let run = block_run(64, 8, 64);
        assert_eq!(run, 8);
        let joint = joint_block_replicates(&[&at_l, &at_8l], run, &mut stream("j"), REPLICATES);
        let ratio: Vec<f64> = (0..REPLICATES)
            .map(|r| (joint[1][r] - joint[0][r]).exp())
            .collect();
        let ci = percentile_interval(&ratio, LEVEL).unwrap();
        // Every resample has exactly 0.1 nat per token between the lengths.
        assert!(
            (ci.lo - 0.1f64.exp()).abs() < 1e-5 && ci.width() < 1e-5,
            "{ci:?}"
        );
        // Resampled independently, the ratio's interval is wide and includes no change.
        let mut rng = stream("i");
        let a = length_replicates(&at_l, Headline::Perplexity, &mut rng, REPLICATES).unwrap();
        let b = length_replicates(&at_8l, Headline::Perplexity, &mut rng, REPLICATES).unwrap();
        let independent: Vec<f64> = a.iter().zip(&b).map(|(x, y)| (y - x).exp()).collect();
        let wide = percentile_interval(&independent, LEVEL).unwrap();
        assert!(wide.contains(1.0) && wide.width() > 0.2, "{wide:?}");
        // Different texts (token counts) are not aligned.
        let mut other = lm_length(16, hard, 64);
        other.outcomes.as_mut().unwrap().tokens[3] = 7;
        assert!(!aligned_blocks(&[&at_l, &other]));
    }

    #[test]
    fn moving_blocks_keep_runs_of_neighbouring_blocks_together() {
        // Losses rise along the text; a run of 8 keeps 8 neighbours, so the replicates' spread
        // is wider than with runs of one (neighbours are correlated).
        let rising = |i: usize| 1.0 + (i / 8) as f64 * 0.5;
        let r = lm_length(8, rising, 64);
        let spread = |run| {
            let j = joint_block_replicates(&[&r], run, &mut stream("m"), REPLICATES);
            percentile_interval(&j[0], LEVEL).unwrap().width()
        };
        assert!(spread(8) > 1.5 * spread(1), "{} {}", spread(8), spread(1));
        // The run never exceeds a quarter of the blocks.
        assert_eq!(block_run(10, 8, 256), 2);
        assert_eq!(block_run(3, 8, 256), 1);
    }

    #[test]
    fn seeds_get_a_t_interval_and_never_less_than_their_examples_noise() {
        // 5 seeds with 2000 examples each: the t interval mean ± t(4) s / sqrt(5).
        let seeds = [0.52, 0.61, 0.70, 0.64, 0.58];
        let (n, mean) = (5.0, 0.61);
        let sd = (seeds.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt();
        let half = 2.776 * sd / n.sqrt();
        let t = t_interval(&seeds, Domain::Fraction).unwrap();
        assert!((t.lo - (mean - half)).abs() < 1e-9 && (t.hi - (mean + half)).abs() < 1e-9);
        let mut rng = stream("t");
        let t_draws: Vec<f64> = (0..REPLICATES).map(|_| student_t(4, &mut rng)).collect();
        let within: Vec<Option<f64>> = (0..REPLICATES)
            .map(|_| Some(mean + 0.005 * normal(&mut rng)))
            .collect();
        let (ci, replicates) = seed_interval(&seeds, &within, Domain::Fraction, &t_draws, None);
        assert_eq!(ci, Some(t), "the seeds dominate");
        let from_replicates = percentile_interval(
            &replicates.iter().flatten().copied().collect::<Vec<_>>(),
            LEVEL,
        )
        .unwrap();
        assert!((from_replicates.width() / t.width() - 1.0).abs() < 0.15);
        // Seeds that agree exactly: the examples' noise, not a point.
        let same = [1.0, 1.0, 1.0];
        let within: Vec<Option<f64>> = (0..REPLICATES)
            .map(|_| Some((1.0 - 0.004 * normal(&mut rng).abs()).min(1.0)))
            .collect();
        let (ci, replicates) = seed_interval(&same, &within, Domain::Fraction, &t_draws, None);
        let ci = ci.unwrap();
        assert!(ci.width() > 0.005 && ci.hi == 1.0, "{ci:?}");
        assert_eq!(replicates, within);
        // Positive quantities: on the log scale, around the geometric mean.
        let ratios = [1.0, 4.0];
        let t = t_interval(&ratios, Domain::Positive).unwrap();
        assert!((t.lo * t.hi - 4.0).abs() < 1e-9, "{t:?}");
        assert!(t.lo > 0.0);
        // One seed, or no outcomes: nothing to combine.
        assert_eq!(t_interval(&[0.5], Domain::Fraction), None);
        let (ci, replicates) = seed_interval(&seeds, &[], Domain::Fraction, &t_draws, None);
        assert_eq!((ci, replicates.len()), (None, 0));
    }

    #[test]
    fn t_quantiles_follow_the_table_and_its_expansion() {
        // The expansion continues the table: t(30) = 2.042, t(31) = 2.040, t(120) = 1.980.
        assert!((t_975(31) - 2.0395).abs() < 2e-4, "{}", t_975(31));
        assert!((t_975(120) - 1.9799).abs() < 2e-4, "{}", t_975(120));
        assert!((t_975(100_000) - Z_975).abs() < 1e-4);
    }

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.125), 1.5);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert_eq!(
            percentile_interval(&[f64::NAN, 2.0, 2.0], 0.95),
            Some(Interval { lo: 2.0, hi: 2.0 })
        );
    }
}
