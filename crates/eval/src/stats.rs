//! Confidence intervals for reports: a seeded percentile bootstrap.
//!
//! The design, stated again in every report that shows intervals:
//! - **Level**: two-sided 95 % percentile intervals ([`LEVEL`]) from [`REPLICATES`] bootstrap
//!   replicates (quantiles interpolated linearly between order statistics).
//! - **Within a seed** (one trained model) each length's test set is resampled with replacement.
//!   Exact match is one Bernoulli outcome per example, so resampling `m` examples of which `k`
//!   were right is a draw of Binomial(m, k/m): `eval.json` needs only the count ([`Binomial`],
//!   drawn by inverting its CDF). Perplexity resamples whole windows (each window's summed loss
//!   and token count) and recomputes `exp(Σ loss / Σ tokens)`. Lengths are separate test sets
//!   (each generated from its own seed) and are resampled independently.
//! - **Across seeds**, when a row has several, each replicate also draws the seeds with
//!   replacement (a two-level, "hierarchical" bootstrap) and averages the drawn seeds' resampled
//!   values. A plain bootstrap of a handful of seeds is too narrow: the spread of a mean of `n`
//!   values drawn from `n` is `sqrt((n - 1) / n)` of the standard error, and its percentiles
//!   follow the normal where Student's t with `n - 1` degrees of freedom applies (with 3 seeds,
//!   half the width of the t interval). So each replicate's deviation from the observed mean is
//!   widened by [`seed_widening`]`(n) = sqrt(n / (n - 1)) t(n - 1) / z`, the correction of
//!   Hesterberg's "expanded percentile interval" (Hesterberg 2015, "What teachers should know
//!   about the bootstrap", The American Statistician 69(4)), applied to the deviations rather
//!   than to the percentile levels, so that one set of replicates serves the tables and the
//!   ranking alike. Fractions are widened linearly and clipped to `[0, 1]`; positive quantities
//!   (perplexities, ratios) are widened on the log scale. Resampling the examples as well counts
//!   their noise twice (it is already inside each seed's value): with several seeds the
//!   intervals err on the wide side. With one seed only the examples are resampled: the interval
//!   then says how much the choice of test examples moves the number, and nothing about another
//!   training run (training-seed variance is unmeasured).
//! - **Deterministic**: every random stream is derived from a fixed seed and the names of what
//!   it resamples (task, variant, encoding, seed, length), so a report is byte-identical on every
//!   rebuild, and adding a cell to a study leaves the other cells' intervals unchanged.
//! - **Known approximations**: neighbouring windows of a held-out text are not independent (the
//!   window bootstrap treats them as if they were); encodings are resampled independently of
//!   each other although every encoding of a study sees the same examples (`eval.json` keeps
//!   counts, not which examples were right). An example that is hard for one encoding tends to be
//!   hard for the others, so independent resampling overstates the noise of a difference between
//!   encodings: "not distinguishable" errs on the cautious side.

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

/// How much the seed-level spread of the bootstrap is widened for `n` seeds (see the module
/// docs): `sqrt(n / (n - 1)) t_975(n - 1) / z_975`; 1 for a single seed (nothing to widen).
pub fn seed_widening(n: usize) -> f64 {
    const {
        assert!(
            LEVEL == 0.95,
            "t_975 and Z_975 are the quantiles of a 95 % interval"
        )
    };
    if n < 2 {
        return 1.0;
    }
    let n_f = n as f64;
    (n_f / (n_f - 1.0)).sqrt() * t_975(n - 1) / Z_975
}

/// The range a statistic lives in, which decides how its deviations are widened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A fraction in `[0, 1]` (exact match): widened linearly, clipped to `[0, 1]`.
    Fraction,
    /// A positive quantity (a perplexity, a ratio): widened on the log scale.
    Positive,
}

/// `value` moved away from `centre` by the factor `widening` (see [`Domain`]).
pub fn widen(value: f64, centre: f64, widening: f64, domain: Domain) -> f64 {
    if widening == 1.0 {
        return value;
    }
    match domain {
        Domain::Fraction => (centre + widening * (value - centre)).clamp(0.0, 1.0),
        Domain::Positive => (centre.ln() + widening * (value.ln() - centre.ln())).exp(),
    }
}

/// Seed indices of every replicate: `n` draws with replacement from `0..n` (always `[0]` for a
/// single seed, whose only variation is then within the seed).
pub fn seed_draws(n: usize, replicates: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    (0..replicates)
        .map(|_| match n {
            1 => vec![0],
            _ => (0..n).map(|_| rng.below(n)).collect(),
        })
        .collect()
}

/// The bootstrap replicates of one length's headline value, resampling its examples: the exact
/// match (a fraction), or the mean loss per token in nats (perplexity is its `exp`). `None` for
/// an n/a length, or one whose `eval.json` holds no (or inconsistent) outcomes.
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
                // All wrong or all right: every resample is the same.
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
            if loss.len() != m || tokens.len() != m || tokens.iter().all(|&t| t == 0) {
                return None;
            }
            Some(
                (0..replicates)
                    .map(|_| {
                        loop {
                            let (mut l, mut t) = (0.0f64, 0u64);
                            for _ in 0..m {
                                let i = rng.below(m);
                                l += loss[i] as f64;
                                t += tokens[i] as u64;
                            }
                            // A resample of only unscored windows (possible with sliding windows)
                            // has no loss: draw again.
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
            }),
        }
    }

    fn em_interval(m: usize, k: usize, label: &str) -> Interval {
        let r = length_replicates(
            &em_length(m, k),
            Headline::ExactMatch,
            &mut stream(label),
            REPLICATES,
        )
        .unwrap();
        percentile_interval(&r, LEVEL).unwrap()
    }

    #[test]
    fn all_right_and_all_wrong_give_degenerate_intervals() {
        assert_eq!(em_interval(64, 64, "a"), Interval { lo: 1.0, hi: 1.0 });
        assert_eq!(em_interval(64, 0, "a"), Interval { lo: 0.0, hi: 0.0 });
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

    /// The percentile bootstrap of a proportion is close to the Wilson score interval
    /// (Wilson 1927; Agresti & Coull 1998): `(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`.
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

    #[test]
    fn binomial_sampler_has_the_right_mean_and_variance() {
        let (n, k) = (50, 15);
        let b = Binomial::new(n, k);
        let mut rng = stream("binomial");
        let draws: Vec<f64> = (0..20000).map(|_| b.sample(&mut rng) as f64).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        // n p = 15, n p (1 - p) = 10.5
        assert!((mean - 15.0).abs() < 0.1, "{mean}");
        assert!((var - 10.5).abs() < 0.4, "{var}");
        assert!(draws.iter().all(|&d| (0.0..=50.0).contains(&d)));
        // Large n: no overflow or underflow.
        let big = Binomial::new(100_000, 3);
        let x = big.sample(&mut rng);
        assert!(x < 30, "{x}");
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
        });
        let reps = length_replicates(&r, Headline::Perplexity, &mut stream("w"), REPLICATES)
            .expect("windows resampled");
        let ci = percentile_interval(&reps, LEVEL).unwrap();
        assert!(ci.contains(2.0) && ci.lo > 1.5 && ci.hi < 2.5, "{ci:?}");
        // Without per-window losses (an old eval.json) there is nothing to resample.
        r.outcomes.as_mut().unwrap().loss.clear();
        assert!(length_replicates(&r, Headline::Perplexity, &mut stream("w"), 10).is_none());
    }

    #[test]
    fn seed_widening_matches_the_t_interval_and_fades_with_many_seeds() {
        assert_eq!(seed_widening(1), 1.0);
        // 3 seeds: sqrt(3/2) * 4.303 / 1.96 = 2.689.
        assert!(
            (seed_widening(3) - 2.689).abs() < 1e-3,
            "{}",
            seed_widening(3)
        );
        // The expansion continues the table: t(30) = 2.042, t(31) = 2.040, t(120) = 1.980.
        assert!((t_975(31) - 2.0395).abs() < 2e-4, "{}", t_975(31));
        assert!((t_975(120) - 1.9799).abs() < 2e-4, "{}", t_975(120));
        assert!((seed_widening(1000) - 1.0).abs() < 0.002);
        // Fractions stay in [0, 1]; positive quantities stay positive.
        assert_eq!(widen(0.1, 0.5, 3.0, Domain::Fraction), 0.0);
        assert!((widen(0.6, 0.5, 3.0, Domain::Fraction) - 0.8).abs() < 1e-12);
        let w = widen(2.0, 4.0, 3.0, Domain::Positive);
        assert!((w - 0.5).abs() < 1e-12, "{w}");
    }

    /// With many examples per seed the example noise vanishes, and the widened seed bootstrap of
    /// a mean has about the width of the t interval `mean ± t(n-1) s / sqrt(n)`.
    #[test]
    fn widened_seed_bootstrap_is_about_as_wide_as_the_t_interval() {
        let seeds = [0.52, 0.61, 0.70, 0.64, 0.58];
        let n = seeds.len();
        let mean = seeds.iter().sum::<f64>() / n as f64;
        let sd = (seeds.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let half_t = t_975(n - 1) * sd / (n as f64).sqrt();
        let mut rng = stream("t");
        let c = seed_widening(n);
        let replicates: Vec<f64> = seed_draws(n, 20000, &mut rng)
            .iter()
            .map(|d| {
                let m = d.iter().map(|&j| seeds[j]).sum::<f64>() / n as f64;
                widen(m, mean, c, Domain::Fraction)
            })
            .collect();
        let ci = percentile_interval(&replicates, LEVEL).unwrap();
        let plain = {
            let r: Vec<f64> = seed_draws(n, 20000, &mut rng)
                .iter()
                .map(|d| d.iter().map(|&j| seeds[j]).sum::<f64>() / n as f64)
                .collect();
            percentile_interval(&r, LEVEL).unwrap()
        };
        assert!(
            (ci.width() / (2.0 * half_t) - 1.0).abs() < 0.15,
            "{ci:?} vs mean {mean} ± {half_t}"
        );
        assert!(
            plain.width() < 0.7 * ci.width(),
            "the plain bootstrap is too narrow: {plain:?}"
        );
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
