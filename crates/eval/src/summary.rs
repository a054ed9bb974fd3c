//! The short text `ordo eval` prints for one evaluation and `ordo ablate` for one finished cell.

use crate::extrapolation::EvalReport;
use crate::extrapolation::Headline;
use crate::report::markdown::{bucket_columns, bucket_of};
use crate::report::rows::{
    Bucket, CellResult, Row, Stat, bucket_value, observed, row_of, value_at,
};
use crate::stats::Interval;
use std::fmt::Write as _;

/// A row for one evaluation on its own (its intervals resample only its examples).
fn single_row(eval: &EvalReport) -> Row {
    row_of(&[&CellResult {
        facts: None,
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
            let name = |b| match b {
                Bucket::InDistribution => "in-dist",
                Bucket::Near => "near",
                Bucket::Far => "far",
            };
            let parts: Vec<String> = Bucket::ALL
                .into_iter()
                .filter(|&b| eval.buckets.get(b).lengths > 0)
                .map(|b| format!("{} {}", name(b), show(bucket_value(eval, &values, b), 3)))
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
