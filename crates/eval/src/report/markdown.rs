//! `report.md`: one table per (task, variant), the conventions, the ranking and the paired
//! comparisons, as text.

use super::plots::{plot_stem, plot_title};
use super::ranking::GroupRanks;
use super::ranking::{TIE_TOLERANCE, mrr_of, paired_differences, ranking_intervals, ranks};
use super::rows::{Bucket, BucketStat, Row, Stat};
use super::rows::{Point, distinct, group_title, mean_of, variant_label};
use crate::extrapolation::Headline;
use crate::stats::{self, Interval, REPLICATES};
use std::fmt::Write as _;

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

pub(crate) fn order_index(order: &[String], name: &str) -> usize {
    order.iter().position(|o| o == name).unwrap_or(order.len())
}

/// The exact-match columns of a group: `(bucket, header)` for every bucket some row measured a
/// length in, headers naming the measured lengths when every row shares its training lengths.
pub(crate) fn bucket_columns(of_group: &[&Row]) -> Vec<(Bucket, String)> {
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

pub(crate) fn bucket_of(row: &Row, b: Bucket) -> &BucketStat {
    match b {
        Bucket::InDistribution => &row.in_distribution,
        Bucket::Near => &row.near,
        Bucket::Far => &row.far,
    }
}

/// A table's header and rule up to its bucket columns: `| encoding | in-distribution .. |`.
fn bucket_header(columns: &[(Bucket, String)]) -> (String, String) {
    let mut header = "| encoding |".to_string();
    let mut rule = "|---|".to_string();
    for (_, name) in columns {
        let _ = write!(header, " {name} |");
        rule.push_str("---:|");
    }
    (header, rule)
}

/// The table of an exact-match group.
fn exact_match_table(md: &mut String, g: &GroupRanks, of_group: &[&Row], encodings: &[String]) {
    let columns = bucket_columns(of_group);
    let (header, rule) = bucket_header(&columns);
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

/// Per-token accuracy by bucket beside an exact-match table: the metric of Ruoss et al. 2023
/// and Delétang et al. 2023 (answer tokens right under teacher forcing, up to a termination
/// token where the task says so), mean ± std over seeds, without intervals or ranks.
fn token_accuracy_table(md: &mut String, of_group: &[&Row], encodings: &[String]) {
    let columns = bucket_columns(of_group);
    let (header, rule) = bucket_header(&columns);
    let _ = writeln!(
        md,
        "\nPer-token accuracy (answer tokens right under teacher forcing; Ruoss et al.'s metric):\n\n{header}\n{rule}"
    );
    for encoding in encodings {
        let Some(row) = of_group.iter().find(|r| &r.encoding == encoding) else {
            continue;
        };
        let _ = write!(md, "| {} |", md_escape(encoding));
        for (b, _) in &columns {
            let accuracy = bucket_of(row, *b).token_accuracy;
            let _ = write!(md, " {} |", format_stat(accuracy.as_ref()));
        }
        md.push('\n');
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
            Headline::ExactMatch => {
                exact_match_table(&mut md, g, &of_group, &encodings);
                token_accuracy_table(&mut md, &of_group, &encodings);
            }
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
