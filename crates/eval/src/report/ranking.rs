//! Ranking of the encodings in each (task, variant) by their score, the mean reciprocal rank
//! over groups, its bootstrap intervals, and paired differences seed by seed.

use super::rows::Row;
use super::rows::distinct;
use crate::extrapolation::Headline;
use crate::stats::{self, Interval, LEVEL, REPLICATES};

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
pub(crate) fn groups_of(rows: &[Row]) -> Vec<Vec<&Row>> {
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

pub(crate) fn mrr_of(groups: &[GroupRanks]) -> Vec<(String, f64)> {
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
