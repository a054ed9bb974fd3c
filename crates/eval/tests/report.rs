//! The report of an ablation grid: tables, MRR ranking and plots, from hand-made evaluations.

use ordo_eval::extrapolation::{Buckets, EvalReport, Headline, LengthResult, Outcomes, bucket};
use ordo_eval::plot::{self, ColorMap, Heatmap, LinePlot, encoding_colour};
use ordo_eval::report::{
    CellFacts, CellResult, ReportSpec, Row, Stat, extrapolation_score, mrr, ranking_intervals,
    ranks, summarize, write_report,
};
use ordo_eval::summary::{cell_summary, eval_summary};
use ordo_model::AttentionMode;
use ordo_train::metrics::Metrics;
use std::collections::HashSet;
use std::path::Path;

/// A fresh, empty directory, removed at the end of a passing test (kept when it fails).
use ordo_train::testing::TempDir;

/// An evaluation with training lengths `[1, l]` over lengths `1..=4l`; `em(n)` is the exact
/// match at length `n` (`None` = n/a).
fn eval(
    task: &str,
    encoding: &str,
    seed: u64,
    l: usize,
    em: impl Fn(usize) -> Option<f64>,
) -> EvalReport {
    let lengths: Vec<LengthResult> = (1..=4 * l)
        .map(|n| {
            let metrics = em(n).map(|e| Metrics {
                loss: 1.0 - e,
                token_accuracy: e,
                exact_match: e,
                examples: 8,
            });
            LengthResult {
                length: n,
                tokens: 2 * n + 1,
                unsupported: metrics.is_none().then(|| "too long".to_string()),
                metrics,
                outcomes: None,
                scored_tokens: None,
            }
        })
        .collect();
    let buckets = Buckets {
        in_distribution: bucket(&lengths, |n| n <= l),
        near: bucket(&lengths, |n| n > l && n <= 2 * l),
        far: bucket(&lengths, |n| n > 2 * l && n <= 4 * l),
    };
    EvalReport {
        run: format!("{task}-{encoding}-{seed}"),
        task: task.into(),
        encoding: encoding.into(),
        mode: AttentionMode::Causal,
        seed,
        train_min_len: 1,
        train_max_len: l,
        overrides: "none".into(),
        examples_per_length: 8,
        headline: None,
        lengths,
        buckets,
        options: None,
        checkpoint_step: None,
        randomized_positions: None,
        learned: Default::default(),
        warnings: Vec::new(),
        precision: Default::default(),
    }
}

/// A cell whose exact match is `in_d` in distribution, `near` on `(L, 2L]` and `far` on
/// `(2L, 4L]` at every length (`None` = n/a).
fn cell(
    task: &str,
    encoding: &str,
    seed: u64,
    variant: &[(&str, &str)],
    (in_d, near, far): (f64, Option<f64>, Option<f64>),
) -> CellResult {
    let l = 4;
    CellResult {
        facts: None,
        task: task.into(),
        encoding: encoding.into(),
        seed,
        variant: variant
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        eval: eval(task, encoding, seed, l, |n| {
            if n <= l {
                Some(in_d)
            } else if n <= 2 * l {
                near
            } else {
                far
            }
        }),
    }
}

fn spec(encodings: &[&str], tasks: &[&str]) -> ReportSpec {
    ReportSpec {
        name: "Test study".into(),
        description: "Two tasks, three encodings, three seeds.".into(),
        encodings_order: encodings.iter().map(|s| s.to_string()).collect(),
        tasks_order: tasks.iter().map(|s| s.to_string()).collect(),
        left_out: Vec::new(),
    }
}

/// The cells of the table test: task `copy`, L = 4; rope over 3 seeds, learned n/a far, alibi
/// with a single seed.
fn table_cells() -> Vec<CellResult> {
    vec![
        cell("copy", "rope", 1, &[], (1.0, Some(0.5), Some(0.1))),
        cell("copy", "rope", 2, &[], (1.0, Some(0.7), Some(0.2))),
        cell("copy", "rope", 3, &[], (1.0, Some(0.9), Some(0.6))),
        cell("copy", "learned", 1, &[], (0.9, Some(0.2), None)),
        cell("copy", "learned", 2, &[], (0.8, Some(0.4), None)),
        cell("copy", "alibi", 7, &[], (0.75, Some(0.625), Some(0.5))),
    ]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn summary_gives_mean_and_sample_std_over_seeds_with_na_buckets() {
    let rows = summarize(&table_cells());
    assert_eq!(rows.len(), 3);
    let rope = &rows[0];
    assert_eq!((rope.encoding.as_str(), rope.seeds), ("rope", 3));
    let near = rope.near.exact_match.unwrap();
    // near: 0.5, 0.7, 0.9 -> mean 0.7, sample std sqrt((0.04 + 0 + 0.04) / 2) = 0.2
    assert!(
        close(near.mean, 0.7) && close(near.std.unwrap(), 0.2),
        "{near:?}"
    );
    let far = rope.far.exact_match.unwrap();
    // far: 0.1, 0.2, 0.6 -> mean 0.3, sample std sqrt((0.04 + 0.01 + 0.09) / 2) = sqrt(0.07)
    assert!(close(far.mean, 0.3) && close(far.std.unwrap(), 0.07f64.sqrt()));
    assert_eq!(far.n, 3);
    let learned = &rows[1];
    assert_eq!(learned.far.exact_match, None, "every seed is n/a far");
    assert!(!learned.far.partial);
    // Score: near and far pooled by length count (4 + 8 lengths), n/a lengths counting as 0.
    let score = learned.score.unwrap();
    assert!(close(
        score.mean,
        (0.2 * 4.0 / 12.0 + 0.4 * 4.0 / 12.0) / 2.0
    ));
    let alibi = &rows[2];
    let single = alibi.in_distribution.exact_match.unwrap();
    assert_eq!((single.mean, single.std, single.n), (0.75, None, 1));
    assert!(close(
        alibi.score.unwrap().mean,
        (0.625 * 4.0 + 0.5 * 8.0) / 12.0
    ));
}

#[test]
fn report_tables_show_hand_computed_means_and_stds() {
    let dir = TempDir::new("tables");
    // Cells out of order: the report orders rows by `encodings_order`.
    let mut cells = table_cells();
    cells.reverse();
    let path = write_report(
        &dir,
        &spec(&["alibi", "learned", "rope"], &["copy"]),
        &cells,
    )
    .unwrap();
    assert_eq!(path, dir.join("report.md"));
    let md = std::fs::read_to_string(&path).unwrap();
    println!("{md}");
    assert!(md.starts_with("# Test study\n\nTwo tasks, three encodings, three seeds.\n"));
    assert!(md.contains(
        "| encoding | in-distribution [1, 4] | near (4, 8] | far (8, 16] | score | rank | seeds |"
    ));
    // rope scores (0.5*4 + 0.1*8)/12, (0.7*4 + 0.2*8)/12, (0.9*4 + 0.6*8)/12 = 0.2333, 0.3667,
    // 0.7 -> mean 0.4333, std 0.2404; alibi (0.625*4 + 0.5*8)/12 = 0.5417 ranks first.
    assert!(
        md.contains(
            "| rope | 1.000 ± 0.000 | 0.700 ± 0.200 | 0.300 ± 0.265 | 0.433 ± 0.240 | 2 | 3 |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| learned | 0.850 ± 0.071 | 0.300 ± 0.141 | n/a | 0.100 ± 0.047 | 3 | 2 |"),
        "{md}"
    );
    assert!(
        md.contains("| alibi | 0.750 | 0.625 | 0.500 | 0.542 | 1 | 1 |"),
        "{md}"
    );
    // Beside it, per-token accuracy by bucket (these cells' token accuracy is their exact
    // match): the same means and stds, no score or rank.
    let tokens = md
        .find("Per-token accuracy")
        .expect("the token accuracy table");
    let token_table = &md[tokens..];
    assert!(
        token_table.contains("| rope | 1.000 ± 0.000 | 0.700 ± 0.200 | 0.300 ± 0.265 |\n"),
        "{md}"
    );
    assert!(
        token_table.contains("| learned | 0.850 ± 0.071 | 0.300 ± 0.141 | n/a |\n"),
        "{md}"
    );
    let (a, l, r) = (
        md.find("| alibi |").unwrap(),
        md.find("| learned |").unwrap(),
        md.find("| rope |").unwrap(),
    );
    assert!(a < l && l < r, "rows follow encodings_order");
    assert!(md.contains("![copy: exact match against length](plots/copy.png)"));
    assert!(md.contains("[SVG](plots/copy.svg)"));
    assert!(md.contains("| 1 | alibi | 1.000 | 1 |"), "{md}");
    assert!(dir.join("plots/copy.png").is_file() && dir.join("plots/copy.svg").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("plots"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// 3 encodings x 2 tasks. t1: a = b = 0.9 (tie), c = 0.5 -> ranks 1, 1, 3.
/// t2: a = 0.2, b = n/a, c = 0.8 -> ranks 2, 3, 1.
fn mrr_cells() -> Vec<CellResult> {
    let flat = |x: Option<f64>| (1.0, x, x);
    vec![
        cell("t1", "a", 1, &[], flat(Some(0.9))),
        cell("t1", "b", 1, &[], flat(Some(0.9))),
        cell("t1", "c", 1, &[], flat(Some(0.5))),
        cell("t2", "a", 1, &[], flat(Some(0.2))),
        cell("t2", "b", 1, &[], flat(None)),
        cell("t2", "c", 1, &[], flat(Some(0.8))),
    ]
}

#[test]
fn mrr_matches_a_hand_computed_ranking_with_a_tie_and_an_na() {
    let rows = summarize(&mrr_cells());
    let r = ranks(&rows);
    let ranks_of = |g: usize| r[g].ranks.iter().map(|x| x.2).collect::<Vec<_>>();
    assert_eq!(ranks_of(0), vec![1, 1, 3]);
    assert_eq!(ranks_of(1), vec![2, 3, 1]);
    assert_eq!(r[1].ranks[1].1, None, "b is n/a in t2");
    let expected = vec![
        ("a".to_string(), (1.0 / 1.0 + 1.0 / 2.0) / 2.0),
        ("b".to_string(), (1.0 / 1.0 + 1.0 / 3.0) / 2.0),
        ("c".to_string(), (1.0 / 3.0 + 1.0 / 1.0) / 2.0),
    ];
    assert_eq!(mrr(&rows), expected);
    assert_eq!(expected[0].1, 0.75);
}

#[test]
fn an_encoding_missing_from_a_group_ranks_last_there() {
    let mut cells = mrr_cells();
    cells.retain(|c| !(c.task == "t2" && c.encoding == "a"));
    let rows = summarize(&cells);
    // t2: b n/a and a missing share the last rank, after c.
    let r = ranks(&rows);
    assert_eq!(
        r[1].ranks.iter().map(|x| x.2).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    let m = mrr(&rows);
    assert_eq!(m[0], ("a".to_string(), (1.0 + 0.5) / 2.0));
    assert_eq!(m[1], ("b".to_string(), (1.0 + 0.5) / 2.0));
    assert_eq!(m[2], ("c".to_string(), (1.0 / 3.0 + 1.0) / 2.0));
}

#[test]
fn score_pools_out_of_distribution_lengths_and_is_na_only_when_all_are() {
    let e = eval("copy", "learned", 1, 4, |n| (n <= 6).then_some(1.0));
    // Lengths 5, 6 evaluated at 1.0; 7..=16 n/a (10 lengths): 2 / 12.
    assert!(close(extrapolation_score(&e).unwrap(), 2.0 / 12.0));
    assert!(
        summarize(&[CellResult {
            facts: None,
            task: "copy".into(),
            encoding: "learned".into(),
            seed: 1,
            variant: vec![],
            eval: e,
        }])[0]
            .near
            .partial,
        "near has n/a lengths 7, 8"
    );
    let none = eval("copy", "learned", 1, 4, |n| (n <= 4).then_some(1.0));
    assert_eq!(extrapolation_score(&none), None);
}

fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn colours(rgb: &[u8]) -> HashSet<[u8; 3]> {
    rgb.chunks(3).map(|p| [p[0], p[1], p[2]]).collect()
}

fn has_colour(rgb: &[u8], c: plotters::style::RGBColor) -> bool {
    rgb.chunks(3).any(|p| p == [c.0, c.1, c.2])
}

fn svg_colour(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

#[test]
fn plots_per_task_and_variant_are_valid_pngs_and_svgs_with_every_encoding() {
    let dir = TempDir::new("plots");
    let mut cells = Vec::new();
    for (variant, shift) in [("causal", 0.0), ("bidirectional", 0.1)] {
        for (task, base) in [("copy", 0.9), ("reverse", 0.7)] {
            for (encoding, drop) in [
                ("none", 0.5),
                ("rope", 0.3),
                ("alibi", 0.1),
                ("learned", 0.2),
            ] {
                for seed in 1..=2 {
                    let jitter = seed as f64 * 0.02;
                    let learned = encoding == "learned";
                    let l = 4;
                    cells.push(CellResult {
                        facts: None,
                        task: task.into(),
                        encoding: encoding.into(),
                        seed,
                        variant: vec![("model.mode".into(), variant.into())],
                        eval: EvalReport {
                            mode: if variant == "bidirectional" {
                                AttentionMode::Bidirectional
                            } else {
                                AttentionMode::Causal
                            },
                            ..eval(task, encoding, seed, l, |n| {
                                if learned && n > 2 * l {
                                    return None;
                                }
                                let decay = if n <= l {
                                    0.0
                                } else {
                                    drop * (n - l) as f64 / l as f64
                                };
                                Some((base - shift - jitter - decay).clamp(0.0, 1.0))
                            })
                        },
                    });
                }
            }
        }
    }
    let order = ordo_model::PositionalEncodingConfig::KINDS;
    let path = write_report(&dir, &spec(order, &["reverse", "copy"]), &cells).unwrap();
    let md = std::fs::read_to_string(path).unwrap();
    // The note on symmetric ALiBi heads the two encoder groups only.
    assert_eq!(md.matches("cannot tell left from right").count(), 2);
    assert!(
        md.find("## reverse (model.mode=causal)").unwrap()
            < md.find("## copy (model.mode=causal)").unwrap()
    );
    for stem in [
        "copy-causal",
        "copy-bidirectional",
        "reverse-causal",
        "reverse-bidirectional",
    ] {
        assert!(
            md.contains(&format!("](plots/{stem}.png)")),
            "{stem} not embedded"
        );
        let (w, h, rgb) = decode_png(&dir.join(format!("plots/{stem}.png")));
        assert_eq!((w, h), plot::LINE_PLOT_SIZE);
        let distinct = colours(&rgb);
        assert!(
            distinct.len() > 20,
            "{stem}: only {} colours",
            distinct.len()
        );
        for encoding in ["none", "rope", "alibi", "learned"] {
            let c = encoding_colour(encoding).unwrap();
            assert!(
                has_colour(&rgb, c),
                "{stem}: no pixel of {encoding}'s colour"
            );
        }
        let svg = std::fs::read_to_string(dir.join(format!("plots/{stem}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{stem}: {}", &svg[..40]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        for text in [
            "none",
            "rope",
            "alibi",
            "learned",
            "train L",
            "exact match",
            "length",
        ] {
            assert!(
                svg.contains(&format!(">\n{text}\n<")) || svg.contains(&format!(">{text}<")),
                "{stem}: no text {text:?}"
            );
        }
        // learned is n/a far: its line stops at 2L = 8 (no point beyond).
        let learned = svg_colour(encoding_colour("learned").unwrap());
        assert!(svg.contains(&format!("stroke=\"{learned}\"")));
    }
}

#[test]
fn an_na_point_breaks_the_line_into_two() {
    let dir = TempDir::new("break");
    let series = vec![
        (
            "rope".to_string(),
            vec![
                (1.0, 0.9),
                (2.0, 0.8),
                (3.0, f64::NAN),
                (4.0, 0.5),
                (5.0, 0.4),
            ],
        ),
        (
            "alibi".to_string(),
            vec![(1.0, 0.7), (2.0, 0.6), (3.0, 0.5), (4.0, 0.4), (5.0, 0.3)],
        ),
    ];
    let written = plot::line_plot(
        &dir.join("break"),
        &LinePlot {
            title: "break",
            x_label: "length",
            y_label: "exact match",
            series: &series,
            marker_x: Some((2.5, "train L")),
            ..LinePlot::default()
        },
    )
    .unwrap();
    assert_eq!(written, vec![dir.join("break.png"), dir.join("break.svg")]);
    let svg = std::fs::read_to_string(dir.join("break.svg")).unwrap();
    // Data lines are 2 px wide (legend lines 3 px).
    let lines_of = |c| {
        let stroke = format!("stroke=\"{}\" stroke-width=\"2\"", svg_colour(c));
        svg.lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(&stroke))
            .count()
    };
    assert_eq!(lines_of(encoding_colour("rope").unwrap()), 2, "{svg}");
    assert_eq!(lines_of(encoding_colour("alibi").unwrap()), 1);
}

#[test]
fn line_plot_handles_log_axes_and_names_that_are_not_encodings() {
    let dir = TempDir::new("log");
    let series: Vec<(String, Vec<(f64, f64)>)> = (0..12)
        .map(|k| {
            let points = (0..=10)
                .map(|i| {
                    let x = 2f64.powi(i);
                    (x, 1.0 + (k as f64 + 1.0) * 10.0 / x)
                })
                .collect();
            (format!("context {k}"), points)
        })
        .collect();
    plot::line_plot(
        &dir.join("ppl"),
        &LinePlot {
            title: "perplexity against context",
            x_label: "context",
            y_label: "perplexity",
            series: &series,
            log_x: true,
            log_y: true,
            points: false,
            ..LinePlot::default()
        },
    )
    .unwrap();
    let (w, h, rgb) = decode_png(&dir.join("ppl.png"));
    assert_eq!((w, h), plot::LINE_PLOT_SIZE);
    assert!(colours(&rgb).len() > 20);
    let names: Vec<&str> = series.iter().map(|s| s.0.as_str()).collect();
    let distinct: HashSet<_> = plot::series_colours(&names)
        .into_iter()
        .map(|c| (c.0, c.1, c.2))
        .collect();
    assert_eq!(
        distinct.len(),
        names.len(),
        "every series has its own colour"
    );
    let svg = std::fs::read_to_string(dir.join("ppl.svg")).unwrap();
    assert!(svg.contains("context 11"));
    // A log axis with x <= 0 is refused.
    let err = plot::line_plot(
        &dir.join("bad"),
        &LinePlot {
            series: &series,
            log_x: true,
            x_range: Some((0.0, 10.0)),
            ..LinePlot::default()
        },
    );
    assert!(err.is_err());
}

#[test]
fn heatmap_writes_valid_png_and_svg_with_a_colour_bar() {
    let dir = TempDir::new("heatmap");
    // A [len, d_model] sinusoid table: values in [-1, 1] -> diverging colours.
    let (len, d) = (48, 16);
    let table: Vec<Vec<f64>> = (0..len)
        .map(|p| {
            (0..d)
                .map(|i| {
                    let w = 1.0 / 10000f64.powf((i / 2 * 2) as f64 / d as f64);
                    if i % 2 == 0 {
                        (p as f64 * w).sin()
                    } else {
                        (p as f64 * w).cos()
                    }
                })
                .collect()
        })
        .collect();
    let written = plot::heatmap(
        &dir.join("sinusoid"),
        &Heatmap {
            title: "sinusoidal table",
            x_label: "component",
            y_label: "position",
            values: &table,
            value_label: "value",
            ..Heatmap::default()
        },
    )
    .unwrap();
    assert_eq!(written.len(), 2);
    let (w, h, rgb) = decode_png(&dir.join("sinusoid.png"));
    assert_eq!((w, h), plot::HEATMAP_SIZE);
    assert!(colours(&rgb).len() > 50, "{} colours", colours(&rgb).len());
    assert!(has_colour(&rgb, plot::diverging(0.0)) && has_colour(&rgb, plot::diverging(1.0)));
    let svg = std::fs::read_to_string(dir.join("sinusoid.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(
        svg.matches("<rect").count() >= len * d + 128,
        "cells and colour bar drawn"
    );
    assert!(svg.contains("sinusoidal table") && svg.contains("position"));

    // A causal [len, len] bias with -inf above the diagonal, larger than max_cells: pooled.
    let n = 300;
    let bias: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    if j > i {
                        f64::NEG_INFINITY
                    } else {
                        -((i - j) as f64)
                    }
                })
                .collect()
        })
        .collect();
    plot::heatmap(
        &dir.join("bias"),
        &Heatmap {
            title: "alibi bias",
            values: &bias,
            color_map: ColorMap::Sequential,
            range: Some((-200.0, 0.0)),
            max_cells: 100,
            ..Heatmap::default()
        },
    )
    .unwrap();
    let (_, _, rgb) = decode_png(&dir.join("bias.png"));
    assert!(
        has_colour(&rgb, plot::viridis(0.0)),
        "values below the range take the bottom colour"
    );
    assert!(
        has_colour(&rgb, plotters::style::RGBColor(200, 200, 200)),
        "masked cells are grey"
    );
    let svg = std::fs::read_to_string(dir.join("bias.svg")).unwrap();
    assert!(
        svg.matches("<rect").count() < 100 * 100 + 200,
        "pooled to 100 x 100 cells"
    );
    // A ragged matrix is refused.
    assert!(
        plot::heatmap(
            &dir.join("ragged"),
            &Heatmap {
                values: &[vec![1.0], vec![]],
                ..Heatmap::default()
            }
        )
        .is_err()
    );
}

#[test]
fn points_average_seeds_per_length_and_keep_na_gaps() {
    let cells = table_cells();
    let rows = summarize(&cells);
    assert_eq!(rows.len(), 3);
    let rope: &Row = &rows[0];
    assert_eq!(rope.points.len(), 16);
    assert_eq!(rope.lengths, (1..=16).collect::<Vec<_>>());
    assert!(
        close(rope.points[4].stat.unwrap().mean, 0.7),
        "length 5 is near"
    );
    let learned = &rows[1];
    assert_eq!(
        (learned.points[15].length, learned.points[15].stat),
        (16, None)
    );
    assert!(
        rope.ratios.is_empty(),
        "exact match has no perplexity ratios"
    );
    let _: Option<Stat> = Stat::of(&[]);
}

#[test]
fn missing_cells_and_partly_na_buckets_are_marked_in_the_report() {
    let dir = TempDir::new("missing");
    let mut cells = mrr_cells();
    // a has no cell in t2; b's near bucket is n/a at lengths 7 and 8 (of 5..=8).
    cells.retain(|c| !(c.task == "t2" && c.encoding == "a"));
    cells.push(CellResult {
        facts: None,
        task: "t3".into(),
        encoding: "b".into(),
        seed: 1,
        variant: vec![],
        eval: eval("t3", "b", 1, 4, |n| (n <= 6).then_some(1.0)),
    });
    let path = write_report(
        &dir,
        &spec(&["c", "b", "a", "shaw"], &["t1", "t2", "t3"]),
        &cells,
    )
    .unwrap();
    let md = std::fs::read_to_string(path).unwrap();
    assert!(
        md.contains("No finished cell (left out of the tables and the ranking): shaw."),
        "{md}"
    );
    let t2 = &md[md.find("## t2").unwrap()..md.find("## t3").unwrap()];
    // Rows follow encodings_order (c, b, a); a has no cell: n/a, last with b (n/a), 0 seeds.
    assert!(
        t2.contains(
            "| c | 1.000 | 0.800 | 0.800 | 0.800 | 1 | 1 |\n\
             | b | 1.000 | n/a | n/a | n/a | 2 | 1 |\n\
             | a | n/a | n/a | n/a | n/a | 2 | 0 |\n"
        ),
        "{t2}"
    );
    let t3 = &md[md.find("## t3").unwrap()..md.find("## Ranking").unwrap()];
    // b in t3: near = mean of lengths 5, 6 = 1.0, partly n/a; far all n/a; score 2 / 12.
    assert!(
        t3.contains("| b | 1.000 | 1.000 † | n/a | 0.167 | 1 | 1 |"),
        "{t3}"
    );
    assert!(t3.contains("| a | n/a | n/a | n/a | n/a | 2 | 0 |"), "{t3}");
    assert!(md.contains("| # | encoding | MRR | t1 | t2 | t3 |"));
}

/// An exact-match evaluation with outcomes, training lengths `[1, l]`, lengths `1..=max`, `m`
/// examples per length of which `right(n)` were right (`None` = n/a).
fn counted(
    task: &str,
    encoding: &str,
    seed: u64,
    (l, max, m): (usize, usize, usize),
    right: impl Fn(usize) -> Option<usize>,
) -> CellResult {
    let mut e = eval(task, encoding, seed, l, |_| Some(0.0));
    e.headline = Some(Headline::ExactMatch);
    e.examples_per_length = m;
    e.lengths = (1..=max)
        .map(|n| {
            let k = right(n);
            LengthResult {
                length: n,
                tokens: 2 * n + 1,
                metrics: k.map(|k| Metrics {
                    loss: 0.1,
                    token_accuracy: 0.9,
                    exact_match: k as f64 / m as f64,
                    examples: m,
                }),
                unsupported: k.is_none().then(|| "too long".to_string()),
                outcomes: k.map(|k| Outcomes {
                    exact: k,
                    loss: vec![],
                    tokens: vec![],
                    block: None,
                }),
                scored_tokens: None,
            }
        })
        .collect();
    e.buckets = Buckets {
        in_distribution: bucket(&e.lengths, |n| n <= l),
        near: bucket(&e.lengths, |n| n > l && n <= 2 * l),
        far: bucket(&e.lengths, |n| n > 2 * l && n <= 4 * l),
    };
    CellResult {
        facts: None,
        task: task.into(),
        encoding: encoding.into(),
        seed,
        variant: vec![],
        eval: e,
    }
}

/// A language-model evaluation at contexts `l, 2l, 4l, 8l` with `m` windows per context whose
/// loss per token alternates `loss(n) ± 0.1` (mean `loss(n)`; `None` = n/a).
fn lm_cell(encoding: &str, seed: u64, l: usize, loss: impl Fn(usize) -> Option<f64>) -> CellResult {
    let m = 64;
    let lengths: Vec<LengthResult> = [1, 2, 4, 8]
        .iter()
        .map(|f| {
            let n = f * l;
            let per_token = loss(n);
            LengthResult {
                length: n,
                tokens: n,
                metrics: per_token.map(|x| Metrics {
                    loss: x,
                    token_accuracy: 0.5,
                    exact_match: 0.0,
                    examples: m,
                }),
                unsupported: per_token.is_none().then(|| "too long".to_string()),
                outcomes: per_token.map(|x| Outcomes {
                    exact: 0,
                    loss: (0..m)
                        .map(|i| ((x + if i % 2 == 0 { 0.1 } else { -0.1 }) * n as f64) as f32)
                        .collect(),
                    tokens: vec![n as u32; m],
                    block: None,
                }),
                scored_tokens: None,
            }
        })
        .collect();
    let buckets = Buckets {
        in_distribution: bucket(&lengths, |n| n <= l),
        near: bucket(&lengths, |n| n > l && n <= 2 * l),
        far: bucket(&lengths, |n| n > 2 * l && n <= 4 * l),
    };
    CellResult {
        facts: None,
        task: "lm".into(),
        encoding: encoding.into(),
        seed,
        variant: vec![],
        eval: EvalReport {
            run: format!("lm-{encoding}-{seed}"),
            task: "lm".into(),
            encoding: encoding.into(),
            mode: AttentionMode::Causal,
            seed,
            train_min_len: l,
            train_max_len: l,
            overrides: "none".into(),
            examples_per_length: m,
            headline: Some(Headline::Perplexity),
            lengths,
            buckets,
            options: None,
            checkpoint_step: None,
            randomized_positions: None,
            learned: Default::default(),
            warnings: Vec::new(),
            precision: Default::default(),
        },
    }
}

/// alibi holds its perplexity at every context, rope's grows, learned cannot go beyond L.
fn lm_cells() -> Vec<CellResult> {
    let l = 8;
    vec![
        lm_cell("rope", 0, l, |n| {
            Some(match n / l {
                1 => 1.0,
                2 => 1.2,
                4 => 1.5,
                _ => 2.0,
            })
        }),
        lm_cell("alibi", 0, l, |_| Some(1.0)),
        lm_cell("learned", 0, l, |n| (n <= l).then_some(0.9)),
    ]
}

#[test]
fn a_language_model_study_reports_perplexity_and_no_exact_match() {
    let dir = TempDir::new("lm");
    let cells = lm_cells();
    let path = write_report(&dir, &spec(&["learned", "rope", "alibi"], &["lm"]), &cells).unwrap();
    let md = std::fs::read_to_string(path).unwrap();
    println!("{md}");
    assert!(!md.to_lowercase().contains("exact match"), "{md}");
    assert!(!md.contains("exact_match") && !md.contains("in-distribution"));
    assert!(md.contains("Perplexity at each context length:"));
    assert!(md.contains("| encoding | 8 = L | 16 | 32 | 64 | score | rank | seeds |"));
    // alibi: ratio exp(0) = 1 at every length, rank 1. rope: the geometric mean of the ratios
    // exp(mean(0.2, 0.5, 1.0)) = 1.762, rank 2. learned: n/a beyond L, rank 3.
    let row = |name: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {name} | ")))
            .unwrap()
            .to_string()
    };
    assert!(
        row("alibi").starts_with("| alibi | 2.72 ["),
        "{}",
        row("alibi")
    );
    assert!(row("alibi").ends_with("| 1 | 1 |"), "{}", row("alibi"));
    assert!(row("alibi").contains("| 1.000 ["), "{}", row("alibi"));
    assert!(row("rope").contains("| 1.762 ["), "{}", row("rope"));
    assert!(row("rope").ends_with("| 2 | 1 |"));
    assert!(
        row("learned").starts_with("| learned | 2.46 [")
            && row("learned").contains("| n/a | 3 | 1 |"),
        "{}",
        row("learned")
    );
    // Ratios: exp(0.2) = 1.221, exp(0.5) = 1.649, exp(1.0) = 2.718.
    assert!(md.contains("| encoding | 16 / 8 | 32 / 8 | 64 / 8 |"));
    let ratios = &md[md.find("Ratio of the perplexity").unwrap()..];
    let rope = ratios.lines().find(|l| l.starts_with("| rope |")).unwrap();
    assert!(
        rope.starts_with("| rope | 1.221 [")
            && rope.contains("| 1.649 [")
            && rope.contains("| 2.718 ["),
        "{rope}"
    );
    let ranking = &md[md.find("## Ranking").unwrap()..];
    assert!(
        ranking.contains("| 1 | alibi | 1.000 | [1.000, 1.000] | > | 1 |"),
        "{ranking}"
    );
    assert!(md.contains("![lm: perplexity against context length](plots/lm.png)"));
    assert!(dir.join("plots/lm.png").is_file() && dir.join("plots/lm.svg").is_file());
    assert!(md.contains("cannot rank encodings"), "one seed per cell");
    // The one-line and the printed summaries speak of perplexity too.
    let rope_eval = &cells[0].eval;
    assert_eq!(
        cell_summary(rope_eval),
        "perplexity 2.72 at L = 8; ratio to L: 1.22 at 16, 1.65 at 32, 2.72 at 64"
    );
    let printed = eval_summary(rope_eval);
    println!("{printed}");
    assert!(printed.contains("ratio_to_L") && printed.contains("perplexity at L = 8: 2.718 ["));
    assert!(!printed.contains("exact"), "{printed}");
}

#[test]
fn intervals_follow_the_counts_and_mark_neighbours_that_cannot_be_told_apart() {
    let dir = TempDir::new("intervals");
    let (l, m) = (4, 64);
    // alibi all right, rope and t5 half right (the same counts), none never right.
    let cells = vec![
        counted("copy", "alibi", 0, (l, 4 * l, m), |_| Some(m)),
        counted("copy", "rope", 0, (l, 4 * l, m), |_| Some(m / 2)),
        counted("copy", "t5", 0, (l, 4 * l, m), |_| Some(m / 2)),
        counted("copy", "none", 0, (l, 4 * l, m), |_| Some(0)),
    ];
    let rows = summarize(&cells);
    let alibi = &rows[0];
    // All right: Wilson's interval of the bucket's 4 x 64 examples, not a point.
    let i = alibi.near.interval.unwrap();
    assert!(
        (i.lo - 256.0 / (256.0 + 1.96f64.powi(2))).abs() < 1e-3 && i.hi == 1.0,
        "{i:?}"
    );
    let none = rows[3].near.interval.unwrap();
    assert!(
        none.lo == 0.0 && (none.hi - 0.0148).abs() < 1e-3,
        "none right: {none:?}"
    );
    let half = rows[1].near.interval.unwrap();
    assert!(
        half.contains(0.5) && half.lo > 0.3 && half.hi < 0.7,
        "{half:?}"
    );
    // The bucket pools 4 lengths of 64 examples: narrower than one length of 64 examples.
    let one_length = rows[1].points[4].interval.unwrap();
    assert!(one_length.contains(0.5) && half.width() < one_length.width());
    let iv = ranking_intervals(&rows).unwrap();
    let order: Vec<&str> = iv.mrr.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(order, ["alibi", "rope", "t5", "none"]);
    assert_eq!(
        iv.apart,
        [true, false, true],
        "rope and t5 are the same counts"
    );
    let path = write_report(
        &dir,
        &spec(&["alibi", "rope", "t5", "none"], &["copy"]),
        &cells,
    )
    .unwrap();
    let md = std::fs::read_to_string(path).unwrap();
    println!("{md}");
    // Wilson's interval of the pooled examples: in-distribution 256 of 256 right gives
    // 256 / (256 + 1.96²) = 0.985; far (8 lengths, 512) 0.993; the score (12 lengths) 0.995;
    // none, 0 of 256: 1.96² / (256 + 1.96²) = 0.015.
    assert!(
        md.contains(
            "| alibi | 1.000 [0.985, 1.000] | 1.000 [0.985, 1.000] | 1.000 [0.993, 1.000] | 1.000 [0.995, 1.000] | 1 | 1 |"
        ),
        "{md}"
    );
    assert!(md.contains("| none | 0.000 [0.000, 0.015] |"), "{md}");
    let marks: Vec<&str> = md[md.find("## Ranking").unwrap()..]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
        .map(|l| l.split(" | ").nth(4).unwrap())
        .collect();
    assert_eq!(marks, [">", "≈", ">", ""], "{md}");
    assert!(md.contains("cannot rank encodings"));
    assert!(md.contains("Within a seed (2000 seeded replicates"));
    assert!(md.contains("heuristic over neighbours of the ranking only"));
    // The plot shades each encoding's band in its colour, under its line.
    let svg = std::fs::read_to_string(dir.join("plots/copy.svg")).unwrap();
    let rope = svg_colour(encoding_colour("rope").unwrap());
    assert!(
        svg.lines()
            .any(|l| l.starts_with("<polygon") && l.contains(&rope)),
        "no band of rope's colour"
    );
    let (_, _, rgb) = decode_png(&dir.join("plots/copy.png"));
    // rope's colour at 18 % over white.
    let c = encoding_colour("rope").unwrap();
    let mix = |x: u8| (x as f64 * 0.18 + 255.0 * 0.82).round() as i32;
    assert!(
        rgb.chunks(3).any(|p| (p[0] as i32 - mix(c.0)).abs() <= 1
            && (p[1] as i32 - mix(c.1)).abs() <= 1
            && (p[2] as i32 - mix(c.2)).abs() <= 1),
        "no pixel of rope's band"
    );
}

#[test]
fn several_seeds_resample_the_seeds_too_and_a_mixed_study_says_which_rows_have_one() {
    let (l, m) = (4, 64);
    let one = summarize(&[counted("copy", "rope", 0, (l, 4 * l, m), |_| Some(40))]);
    let two = summarize(&[
        counted("copy", "rope", 0, (l, 4 * l, m), |_| Some(24)),
        counted("copy", "rope", 1, (l, 4 * l, m), |_| Some(56)),
    ]);
    let (a, b) = (one[0].near.interval.unwrap(), two[0].near.interval.unwrap());
    // Same mean 40/64 = 0.625; seeds 0.375 and 0.875 apart: a much wider interval.
    assert!(close(two[0].near.exact_match.unwrap().mean, 0.625));
    assert!(b.width() > 2.0 * a.width(), "{a:?} {b:?}");
    assert!(b.lo < 0.45 && b.hi > 0.8, "{b:?}");
    let dir = TempDir::new("seeds");
    let mut cells = vec![
        counted("copy", "rope", 0, (l, 4 * l, m), |_| Some(24)),
        counted("copy", "rope", 1, (l, 4 * l, m), |_| Some(56)),
    ];
    let md = |cells: &[CellResult]| {
        std::fs::read_to_string(
            write_report(&dir, &spec(&["rope", "alibi"], &["copy"]), cells).unwrap(),
        )
        .unwrap()
    };
    let text = md(&cells);
    assert!(
        !text.contains("cannot rank") && !text.contains("have a single seed"),
        "{text}"
    );
    assert!(text.contains("| rope | 0.625 ± 0.354 ["), "{text}");
    cells.push(counted("copy", "alibi", 0, (l, 4 * l, m), |_| Some(60)));
    assert!(md(&cells).contains("**1 of 2 rows have a single seed:**"));
}

#[test]
fn the_report_is_byte_identical_on_every_rebuild() {
    let (l, m) = (4, 32);
    let mut cells = lm_cells();
    for (enc, k) in [("rope", 20), ("alibi", 25), ("none", 3)] {
        for seed in 0..2 {
            cells.push(counted("copy", enc, seed, (l, 4 * l, m), |n| {
                Some(if n <= l { m } else { k + seed as usize })
            }));
        }
    }
    let files = |name: &str| {
        let dir = TempDir::new(name);
        write_report(
            &dir,
            &spec(&["rope", "alibi", "none", "learned"], &["copy", "lm"]),
            &cells,
        )
        .unwrap();
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        for sub in ["", "plots"] {
            let mut entries: Vec<_> = std::fs::read_dir(dir.join(sub))
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_file())
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                out.push((
                    e.file_name().to_string_lossy().into(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
        out
    };
    let (a, b) = (files("bytes-a"), files("bytes-b"));
    let names: Vec<&str> = a.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "cells.csv",
            "report.html",
            "report.md",
            "results.csv",
            "copy.csv",
            "copy.png",
            "copy.svg",
            "lm.csv",
            "lm.png",
            "lm.svg"
        ]
    );
    for (x, y) in a.iter().zip(&b) {
        assert!(x == y, "{} differs between two builds", x.0);
    }
    let md = a.iter().find(|f| f.0 == "report.md").unwrap();
    let md = String::from_utf8(md.1.clone()).unwrap();
    // Both headlines in one study: each table speaks of its own.
    assert!(md.contains("Exact-match tables") && md.contains("Perplexity tables"));
    assert!(md.contains("| # | encoding | MRR | 95 % interval | vs. next | copy | lm |"));
}

#[test]
fn bucket_headers_name_the_lengths_measured() {
    let (l, m) = (16, 8);
    // max_factor = 3: lengths 1..=48.
    let three = counted("copy", "rope", 0, (l, 3 * l, m), |_| Some(4));
    let dir = TempDir::new("headers");
    let md = std::fs::read_to_string(
        write_report(
            &dir,
            &spec(&["rope"], &["copy"]),
            std::slice::from_ref(&three),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        md.contains(
            "| encoding | in-distribution [1, 16] | near (16, 32] | far (32, 48] | score | rank | seeds |"
        ),
        "{md}"
    );
    assert!(eval_summary(&three.eval).contains("far (32, 48] 0.5000 ["));
    // max_factor = 2: no far length measured, no far column.
    let two = counted("copy", "rope", 0, (l, 2 * l, m), |_| Some(4));
    let md =
        std::fs::read_to_string(write_report(&dir, &spec(&["rope"], &["copy"]), &[two]).unwrap())
            .unwrap();
    assert!(
        md.contains(
            "| encoding | in-distribution [1, 16] | near (16, 32] | score | rank | seeds |"
        ),
        "{md}"
    );
}

/// An `eval.json` as written before the headline and the outcomes were recorded.
const OLD_EVAL_JSON: &str = r#"{
  "run": "copy-rope-s0",
  "task": "TASK",
  "encoding": "rope",
  "mode": "causal",
  "seed": 0,
  "train_min_len": 1,
  "train_max_len": 2,
  "scaling": "none",
  "examples_per_length": 4,
  "lengths": [
    {"length": 1, "tokens": 2, "metrics": {"loss": 0.1, "token_accuracy": 1.0, "exact_match": 1.0, "examples": 4}},
    {"length": 2, "tokens": 4, "metrics": {"loss": 0.2, "token_accuracy": 0.9, "exact_match": 0.75, "examples": 4}},
    {"length": 3, "tokens": 6, "metrics": {"loss": 0.9, "token_accuracy": 0.6, "exact_match": 0.25, "examples": 4}},
    {"length": 4, "tokens": 8, "metrics": null, "unsupported": "too long"}
  ],
  "buckets": {
    "in_distribution": {"exact_match": 0.875, "token_accuracy": 0.95, "loss": 0.15, "lengths": 2, "unsupported": 0},
    "near": {"exact_match": 0.25, "token_accuracy": 0.6, "loss": 0.9, "lengths": 2, "unsupported": 1},
    "far": {"exact_match": null, "token_accuracy": null, "loss": null, "lengths": 0, "unsupported": 0}
  }
}"#;

#[test]
fn an_eval_json_without_the_new_fields_still_loads_and_reports_without_intervals() {
    let old: EvalReport = serde_json::from_str(&OLD_EVAL_JSON.replace("TASK", "copy")).unwrap();
    assert_eq!(old.headline(), Headline::ExactMatch);
    assert!(old.lengths.iter().all(|r| r.outcomes.is_none()));
    let dir = TempDir::new("old");
    let cell = CellResult {
        facts: None,
        task: "copy".into(),
        encoding: "rope".into(),
        seed: 0,
        variant: vec![],
        eval: old.clone(),
    };
    let md =
        std::fs::read_to_string(write_report(&dir, &spec(&["rope"], &["copy"]), &[cell]).unwrap())
            .unwrap();
    assert!(
        md.contains("| encoding | in-distribution [1, 2] | near (2, 4] | score | rank | seeds |"),
        "{md}"
    );
    // near: length 3 only (4 is n/a): 0.25, partly n/a; score (0.25 + 0) / 2.
    assert!(
        md.contains("| rope | 0.875 | 0.250 † | 0.125 | 1 | 1 |"),
        "{md}"
    );
    assert!(md.contains("Rows without brackets") && !md.contains("Within a seed ("));
    assert!(md.contains("| # | encoding | MRR | copy |"));
    assert!(eval_summary(&old).contains("no intervals"));
    // An old language-model evaluation is recognised by its task.
    let old_lm: EvalReport = serde_json::from_str(&OLD_EVAL_JSON.replace("TASK", "lm")).unwrap();
    assert_eq!(old_lm.headline(), Headline::Perplexity);
    // Written again, the new fields are there and read back.
    let mut new = old.clone();
    new.headline = Some(Headline::ExactMatch);
    let again: EvalReport = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
    assert_eq!(again, new);
}

/// Trains a tiny model of `task_toml` (a `[task]` section) under `dir` and evaluates it.
fn train_and_evaluate(dir: &Path, name: &str, task_toml: &str, lengths: Vec<usize>) -> EvalReport {
    let text = format!(
        "[model]\nd_model = 32\nn_heads = 2\nn_layers = 1\n[model.encoding]\nkind = \"alibi\"\n\
         {task_toml}\n[train]\nsteps = 30\nbatch_size = 16\nlr = 3e-3\nwarmup_steps = 5\n\
         eval_every = 30\neval_examples = 16\ncheckpoint_every = 30\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let config = ordo_train::config::load(
        &path,
        &[
            format!("name={name}"),
            format!("out_dir={}", dir.join("runs").display()),
        ],
    )
    .unwrap();
    let run = config.run_dir();
    ordo_train::trainer::train(config, dir, ordo_train::trainer::Progress::Quiet).unwrap();
    let options = ordo_eval::EvalOptions {
        examples: 24,
        lengths: Some(ordo_eval::extrapolation::Lengths(lengths)),
        ..ordo_eval::EvalOptions::default()
    };
    let report = ordo_eval::evaluate_run(&run, &options).unwrap();
    let written: EvalReport =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(written, report, "eval.json reads back to the same report");
    report
}

#[test]
fn evaluation_records_outcomes_that_agree_with_its_metrics() {
    let dir = TempDir::new("outcomes");
    // Exact match: the count of right examples, and no per-example losses.
    let copy = train_and_evaluate(
        &dir,
        "copy",
        "[task]\nkind = \"copy\"\nsymbols = 6\nmin_len = 1\nmax_len = 4",
        vec![1, 2, 3, 4, 6, 8],
    );
    assert_eq!(copy.headline, Some(Headline::ExactMatch));
    for r in &copy.lengths {
        let (m, o) = (r.metrics.unwrap(), r.outcomes.as_ref().unwrap());
        assert_eq!(m.examples, 24);
        assert_eq!(o.exact as f64 / 24.0, m.exact_match, "length {}", r.length);
        assert!(o.loss.is_empty() && o.tokens.is_empty());
    }
    // Perplexity: every window's loss and token count, pooling to the length's loss.
    let lines: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "the cat {} the dog near the {}",
                ["saw", "chased"][i % 2],
                ["barn", "tree", "river"][i % 3]
            )
        })
        .collect();
    std::fs::write(dir.join("corpus.txt"), lines.join("\n") + "\n").unwrap();
    let corpus = dir.join("corpus.txt");
    let lm = train_and_evaluate(
        &dir,
        "lm",
        &format!(
            "[task]\nkind = \"lm\"\ncorpus = \"{}\"\ncontext = 8",
            corpus.display()
        ),
        vec![8, 16, 32],
    );
    assert_eq!(lm.headline, Some(Headline::Perplexity));
    // lm evaluates fixed multiples of its context: a reach it would ignore is refused.
    let refused = ordo_eval::evaluate_run(
        &dir.join("runs/lm"),
        &ordo_eval::EvalOptions {
            max_factor: Some(2),
            ..ordo_eval::EvalOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("--max-factor") && refused.contains("`lm`"),
        "{refused}"
    );
    // Every length scores the same text: the first examples × context = 24 × 8 held-out
    // tokens, in 24 blocks of the context.
    for r in &lm.lengths {
        let (m, o) = (r.metrics.unwrap(), r.outcomes.as_ref().unwrap());
        assert_eq!(r.scored_tokens, Some(24 * 8), "length {}", r.length);
        assert_eq!(o.block, Some(8));
        assert_eq!(o.tokens, vec![8; 24], "length {}", r.length);
        // Windows of the length: ceil(192 / n).
        assert_eq!(m.examples, (24 * 8usize).div_ceil(r.length));
        let pooled = o.loss.iter().map(|&l| l as f64).sum::<f64>()
            / o.tokens.iter().map(|&t| t as f64).sum::<f64>();
        assert!(
            (pooled - m.loss).abs() < 1e-4 * m.loss.max(1.0),
            "{pooled} vs {}",
            m.loss
        );
    }
    let line = cell_summary(&lm);
    assert!(
        line.starts_with("perplexity ") && line.contains("at L = 8; ratio to L:"),
        "{line}"
    );
    let printed = eval_summary(&lm);
    assert!(!printed.contains("exact") && printed.contains("perplexity at L = 8"));
    let line = cell_summary(&copy);
    assert!(line.starts_with("exact match in-dist "), "{line}");
    // A bucket nobody measured (no length in it) is left out of the line.
    let old: EvalReport = serde_json::from_str(&OLD_EVAL_JSON.replace("TASK", "copy")).unwrap();
    assert_eq!(old.buckets.far.lengths, 0);
    let line = cell_summary(&old);
    assert!(line.contains(" near ") && !line.contains("far"), "{line}");
}

/// The report's point estimates are what they were before intervals were added: the mean over
/// seeds of the bucket means stored in `eval.json`, and the score pooled from them, to the bit.
#[test]
fn point_estimates_are_the_stored_bucket_means_to_the_last_bit() {
    let mut rng = ordo_train::rng::Rng::new(7);
    let (l, m) = (8, 64);
    let mut cells = Vec::new();
    for encoding in ["none", "rope", "alibi", "learned"] {
        for seed in 0..3 {
            let counts: Vec<usize> = (0..4 * l).map(|_| rng.below(m + 1)).collect();
            let learned = encoding == "learned";
            cells.push(counted("copy", encoding, seed, (l, 4 * l, m), |n| {
                (!learned || n <= 2 * l - 3).then_some(counts[n - 1])
            }));
        }
    }
    let rows = summarize(&cells);
    for row in &rows {
        let of_row: Vec<&EvalReport> = cells
            .iter()
            .filter(|c| c.encoding == row.encoding)
            .map(|c| &c.eval)
            .collect();
        let mean = |f: &dyn Fn(&EvalReport) -> Option<f64>| {
            let v: Vec<f64> = of_row.iter().filter_map(|e| f(e)).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let stored = [
            mean(&|e| e.buckets.in_distribution.exact_match),
            mean(&|e| e.buckets.near.exact_match),
            mean(&|e| e.buckets.far.exact_match),
        ];
        let shown =
            [&row.in_distribution, &row.near, &row.far].map(|b| b.exact_match.map(|s| s.mean));
        assert_eq!(shown, stored, "{}", row.encoding);
        // The score as computed from the stored buckets before intervals existed.
        let old_score = |e: &EvalReport| {
            let b = [&e.buckets.near, &e.buckets.far];
            let evaluated: usize = b.iter().map(|b| b.lengths - b.unsupported).sum();
            let total: usize = b.iter().map(|b| b.lengths).sum();
            (evaluated > 0).then(|| {
                b.iter()
                    .map(|b| b.exact_match.unwrap_or(0.0) * (b.lengths - b.unsupported) as f64)
                    .sum::<f64>()
                    / total as f64
            })
        };
        assert_eq!(
            row.score.map(|s| s.mean),
            mean(&old_score),
            "{}",
            row.encoding
        );
        assert!(row.near.interval.is_some(), "{}", row.encoding);
    }
}

/// The notes a scheme gives about itself in an encoder head every encoder group, also when the
/// mode is the base config's (no grid axis says it) and the encoding has parameters.
#[test]
fn encoder_notes_follow_the_cells_mode_and_the_encodings_kind() {
    let dir = TempDir::new("notes");
    let mut cells = Vec::new();
    for (task, mode) in [
        ("copy", AttentionMode::Bidirectional),
        ("reverse", AttentionMode::Causal),
    ] {
        for encoding in ["none", "alibi(direction=asymmetric)"] {
            cells.push(CellResult {
                facts: None,
                task: task.into(),
                encoding: encoding.into(),
                seed: 0,
                variant: Vec::new(),
                // As `ordo eval` writes it: the scheme's kind, not the experiment's label.
                eval: EvalReport {
                    mode,
                    ..eval(task, encoding.split('(').next().unwrap(), 0, 4, |_| {
                        Some(0.5)
                    })
                },
            });
        }
    }
    let order = ["none", "alibi(direction=asymmetric)"];
    let path = write_report(&dir.0, &spec(&order, &["copy", "reverse"]), &cells).unwrap();
    let md = std::fs::read_to_string(path).unwrap();
    let copy = md.find("## copy").unwrap();
    let reverse = md.find("## reverse").unwrap();
    let note = md.find("Encoder: `alibi`").expect("the alibi note");
    assert!(
        copy < note && note < reverse,
        "the note heads the encoder group only"
    );
    assert_eq!(md.matches("Encoder: ").count(), 1);
}

#[test]
fn the_report_states_the_randomized_positions_protocol_when_a_cell_uses_them() {
    let plain = table_cells();
    let md = ordo_eval::report::render_markdown(&spec(&["rope"], &["copy"]), &summarize(&plain), 6);
    assert!(!md.contains("Randomized positions"), "{md}");
    let mut randomized = table_cells();
    randomized[0].eval.randomized_positions = Some(320);
    let md =
        ordo_eval::report::render_markdown(&spec(&["rope"], &["copy"]), &summarize(&randomized), 6);
    assert!(
        md.contains("**Randomized positions** (Ruoss et al. 2023; N = 320)"),
        "{md}"
    );
    assert!(
        md.contains("Toeplitz") && md.contains("each attention layer"),
        "{md}"
    );
}

/// What the cells' evaluations recorded beside their outcomes reaches the report: a scheme's
/// learned scalars (FIRE's threshold L and c), as their mean over seeds, and a config warning,
/// with the rows it concerns. Cells without them (every `eval.json` before) print nothing.
#[test]
fn the_report_prints_learned_scalars_and_config_warnings() {
    let dir = TempDir::new("report-learned");
    let mut cells = Vec::new();
    for (encoding, seed, threshold) in [
        ("fire(threshold_fraction=0.25)", 0, 4.0),
        ("fire(threshold_fraction=0.25)", 1, 5.0),
        ("rope", 0, 0.0),
    ] {
        let mut eval = eval("copy", encoding.split('(').next().unwrap(), seed, 4, |_| {
            Some(0.5)
        });
        if encoding.starts_with("fire") {
            eval.learned = [("threshold".to_string(), threshold), ("c".to_string(), 0.1)]
                .into_iter()
                .collect();
        } else {
            eval.warnings = vec!["this `rope` encoder's position signal starts too weak".into()];
        }
        cells.push(CellResult {
            facts: None,
            task: "copy".into(),
            encoding: encoding.into(),
            seed,
            variant: Vec::new(),
            eval,
        });
    }
    cells.push(CellResult {
        facts: None,
        task: "copy".into(),
        encoding: "fire".into(),
        seed: 0,
        variant: Vec::new(),
        eval: eval("copy", "fire", 0, 4, |_| Some(0.5)),
    });
    let order = ["fire", "fire(threshold_fraction=0.25)", "rope"];
    let path = write_report(&dir.0, &spec(&order, &["copy"]), &cells).unwrap();
    let md = std::fs::read_to_string(path).unwrap();
    assert!(
        md.contains(
            "Learned by `fire(threshold_fraction=0.25)` (mean over seeds): c 0.100 (2 seeds), \
             threshold 4.500 (2 seeds)."
        ),
        "{md}"
    );
    assert!(!md.contains("Learned by `fire` "), "{md}");
    assert!(
        md.contains("Warning (`rope`): this `rope` encoder's position signal starts too weak"),
        "{md}"
    );
    assert_eq!(md.matches("Warning (").count(), 1);
}

/// Three seeds that agree exactly: the interval is the test sets' noise of their mean, about
/// `1.96 sqrt(p (1 - p) / (3 m k))` for `k` lengths of `m` examples per seed, and not that noise
/// multiplied by a small-sample widening (2.69 for three seeds, as before).
#[test]
fn seeds_that_agree_get_their_examples_noise_and_nothing_more() {
    let (l, m) = (4, 512);
    let cells: Vec<CellResult> = (0..3)
        .map(|seed| counted("copy", "rope", seed, (l, 4 * l, m), |_| Some(m / 2)))
        .collect();
    let rows = summarize(&cells);
    let near = rows[0].near;
    assert_eq!(near.exact_match.unwrap().std, Some(0.0));
    let i = near.interval.unwrap();
    let expected_half = 1.96 * (0.25f64 / (3.0 * m as f64 * 4.0)).sqrt();
    let half = i.width() / 2.0;
    assert!(
        (half / expected_half - 1.0).abs() < 0.15,
        "{i:?}: half-width {half} vs {expected_half}"
    );
    // Seeds that disagree: the t interval over their values, mean ± t(2) s / sqrt(3).
    let spread: Vec<CellResult> = [200, 256, 312]
        .iter()
        .enumerate()
        .map(|(seed, &k)| counted("copy", "rope", seed as u64, (l, 4 * l, m), move |_| Some(k)))
        .collect();
    let rows = summarize(&spread);
    let s = rows[0].near.exact_match.unwrap();
    let i = rows[0].near.interval.unwrap();
    let half = 4.303 * s.std.unwrap() / 3f64.sqrt();
    assert!(
        (i.lo - (s.mean - half)).abs() < 1e-9 && (i.hi - (s.mean + half)).abs() < 1e-9,
        "{i:?} vs {} ± {half}",
        s.mean
    );
}

#[test]
fn the_report_compares_encodings_paired_by_seed() {
    let dir = TempDir::new("paired");
    let (l, m) = (4, 64);
    // rope beats t5 in every seed by 2 examples of 64 at every length beyond L; none is last.
    let mut cells = Vec::new();
    for seed in 0..3u64 {
        let base = 20 + 8 * seed as usize;
        cells.push(counted("copy", "rope", seed, (l, 4 * l, m), move |n| {
            Some(if n <= l { m } else { base + 2 })
        }));
        cells.push(counted("copy", "t5", seed, (l, 4 * l, m), move |n| {
            Some(if n <= l { m } else { base })
        }));
        cells.push(counted("copy", "none", seed, (l, 4 * l, m), |n| {
            Some(if n <= l { m } else { 1 })
        }));
    }
    let path = write_report(&dir, &spec(&["rope", "t5", "none"], &["copy"]), &cells).unwrap();
    let md = std::fs::read_to_string(path).unwrap();
    println!("{md}");
    // 2/64 = 0.031 in every seed: a paired interval of zero width around +0.031.
    assert!(
        md.contains("| rope vs t5 | 3 | 3 of 3 | +0.031 | [+0.031, +0.031] | s0 +0.031, s1 +0.031, s2 +0.031 |"),
        "{md}"
    );
    assert!(md.contains("| t5 vs none | 3 | 3 of 3 |"), "{md}");
    assert!(md.contains("| better than → | rope | t5 | none |"), "{md}");
    assert!(md.contains("| rope | - | 3/3 | 3/3 |"), "{md}");
    assert!(md.contains("| none | 0/3 | 0/3 | - |"), "{md}");
    // A one-seed study has nothing to pair.
    let one: Vec<CellResult> = cells.into_iter().filter(|c| c.seed == 0).collect();
    let path = write_report(&dir, &spec(&["rope", "t5", "none"], &["copy"]), &one).unwrap();
    assert!(
        !std::fs::read_to_string(path)
            .unwrap()
            .contains("Paired by seed")
    );
}

/// A language-model cell whose blocks of text are shared by every length: block `i` costs
/// `hard(i)` nats per token at L, and `extra(n)` more at context `n`.
fn lm_block_cell(encoding: &str, l: usize, extra: impl Fn(usize) -> f64) -> CellResult {
    let blocks = 64;
    let hard = |i: usize| 1.0 + (i * 7 % 13) as f64 * 0.25;
    let mut cell = lm_cell(encoding, 0, l, |_| Some(1.0));
    for r in &mut cell.eval.lengths {
        let loss: Vec<f32> = (0..blocks)
            .map(|i| ((hard(i) + extra(r.length)) * l as f64) as f32)
            .collect();
        let mean = loss.iter().map(|&x| x as f64).sum::<f64>() / (blocks * l) as f64;
        r.metrics.as_mut().unwrap().loss = mean;
        r.metrics.as_mut().unwrap().examples = blocks * l / r.length;
        r.outcomes = Some(Outcomes {
            exact: 0,
            loss,
            tokens: vec![l as u32; blocks],
            block: Some(l),
        });
        r.scored_tokens = Some(blocks * l);
    }
    cell
}

#[test]
fn perplexity_ratios_resample_the_same_text_at_both_lengths() {
    let l = 8;
    // 0.05 nat per token worse at every longer context, on every block.
    let rows = summarize(&[lm_block_cell("rope", l, |n| if n > l { 0.05 } else { 0.0 })]);
    let ratio = rows[0].ratios.last().unwrap();
    let i = ratio.interval.unwrap();
    let r = 0.05f64.exp();
    assert!((ratio.stat.unwrap().mean - r).abs() < 1e-4);
    // The perplexities themselves vary with the resampled text...
    let at_l = rows[0].points[0].interval.unwrap();
    assert!(at_l.width() > 0.2, "{at_l:?}");
    // ...but the ratio, measured on the same text at both lengths, does not.
    assert!((i.lo - r).abs() < 1e-5 && i.width() < 1e-3, "{i:?}");
}

#[test]
fn variants_of_a_task_are_compared_paired_by_seed() {
    let dir = TempDir::new("variants");
    let (l, m) = (4, 64);
    let mut cells = Vec::new();
    for seed in 0..3u64 {
        for (value, extra) in [("0", 0), ("320", 3 + seed as usize)] {
            let mut c = counted("reverse", "rope", seed, (l, 4 * l, m), move |n| {
                Some(if n <= l { m } else { 10 + extra })
            });
            c.variant = vec![("model.encoding.randomized_positions".into(), value.into())];
            cells.push(c);
        }
    }
    let path = write_report(&dir, &spec(&["rope"], &["reverse"]), &cells).unwrap();
    let md = std::fs::read_to_string(path).unwrap();
    println!("{md}");
    // 3, 4 and 5 more right of 64 at every length beyond L: +0.047, +0.062, +0.078; sd 1/64,
    // half-width t(2) = 4.303 x 0.0156 / sqrt(3) = 0.039.
    assert!(
        md.contains(
            "| reverse | rope | model.encoding.randomized_positions=0 → \
             model.encoding.randomized_positions=320 | 3 | 3 of 3 | +0.062 | [+0.024, +0.101] | \
             s0 +0.047, s1 +0.062, s2 +0.078 |"
        ),
        "{md}"
    );
}

/// RFC 4180 fields of one CSV text (quotes doubled inside quoted fields), by row.
fn read_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

/// `results.csv`, `cells.csv` and `plots/<stem>.csv` say what the evaluations and the plots
/// say: a row per cell x length whose numbers are the `eval.json` ones, a row per cell, a grid
/// axis and every encoding parameter as their own columns, and awkward text quoted.
#[test]
fn the_csv_tables_agree_with_the_evaluations_they_come_from() {
    let dir = TempDir::new("csv-tables");
    let mut cells = Vec::new();
    for (encoding, seed, layers) in [("rope", 0, "2"), ("rope", 1, "2"), ("alibi", 0, "4")] {
        let mut c = cell(
            "copy",
            encoding,
            seed,
            &[("model.n_layers", layers)],
            (1.0, Some(0.5), None),
        );
        for r in &mut c.eval.lengths {
            if let Some(m) = r.metrics {
                let k = (m.exact_match * m.examples as f64).round() as usize;
                r.outcomes = Some(Outcomes {
                    exact: k,
                    loss: vec![],
                    tokens: vec![],
                    block: None,
                });
            }
        }
        let mut config = std::collections::BTreeMap::new();
        config.insert("model.encoding.kind".to_string(), encoding.to_string());
        config.insert("model.n_layers".to_string(), layers.to_string());
        config.insert("train.lr".to_string(), "0.001".to_string());
        if encoding == "rope" {
            config.insert("model.encoding.base".to_string(), "10000.0".to_string());
        }
        c.facts = Some(CellFacts {
            id: format!("copy-{encoding}-s{seed}"),
            base_config: Some("../configs/copy, v2.toml".into()),
            config,
            steps: Some(100),
            seconds: Some(2.5),
            valid_exact_match: Some(0.75),
            final_train_loss: Some(0.125),
            ..CellFacts::default()
        });
        cells.push(c);
    }
    let mut spec = spec(&["rope", "alibi"], &["copy"]);
    spec.name = "study, \"quoted\"".into();
    write_report(&dir.0, &spec, &cells).unwrap();

    let results = read_csv(&std::fs::read_to_string(dir.0.join("results.csv")).unwrap());
    let header = &results[0];
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
    };
    assert!(results.iter().all(|r| r.len() == header.len()), "ragged");
    let total: usize = cells.iter().map(|c| c.eval.lengths.len()).sum();
    assert_eq!(results.len() - 1, total);
    for row in &results[1..] {
        assert_eq!(row[col("experiment")], "study, \"quoted\"");
        let c = cells
            .iter()
            .find(|c| c.facts.as_ref().unwrap().id == row[col("cell")])
            .unwrap();
        assert_eq!(row[col("encoding")], c.encoding);
        assert_eq!(row[col("base_config")], "../configs/copy, v2.toml");
        assert_eq!(row[col("seed")], c.seed.to_string());
        assert_eq!(row[col("model.n_layers")], c.variant[0].1);
        let expected_base = if c.encoding == "rope" { "10000.0" } else { "" };
        assert_eq!(row[col("encoding.base")], expected_base);
        let n: usize = row[col("length")].parse().unwrap();
        let r = c.eval.lengths.iter().find(|r| r.length == n).unwrap();
        assert_eq!(row[col("tokens")], r.tokens.to_string());
        let bucket = match n {
            n if n <= 4 => "in_distribution",
            n if n <= 8 => "near",
            _ => "far",
        };
        assert_eq!(row[col("bucket")], bucket, "length {n}");
        match r.metrics {
            Some(m) => {
                let em: f64 = row[col("exact_match")].parse().unwrap();
                assert_eq!(em, m.exact_match);
                let loss: f64 = row[col("loss")].parse().unwrap();
                assert_eq!(loss, m.loss);
                let ppl: f64 = row[col("perplexity")].parse().unwrap();
                assert!((ppl - m.loss.exp()).abs() < 1e-12);
                let (lo, hi): (f64, f64) = (
                    row[col("interval_lo")].parse().unwrap(),
                    row[col("interval_hi")].parse().unwrap(),
                );
                assert!(lo <= em && em <= hi && hi - lo > 0.0, "{lo} {em} {hi}");
                assert_eq!(row[col("unsupported")], "");
            }
            None => {
                assert_eq!(row[col("exact_match")], "");
                assert_eq!(row[col("interval_lo")], "");
                assert_eq!(row[col("unsupported")], "too long");
            }
        }
    }

    let table = read_csv(&std::fs::read_to_string(dir.0.join("cells.csv")).unwrap());
    let col = |name: &str| table[0].iter().position(|h| h == name);
    assert_eq!(table.len() - 1, cells.len());
    // Keys that vary between cells are columns; `train.lr`, the same everywhere, is not.
    assert!(col("model.encoding.kind").is_some() && col("model.encoding.base").is_some());
    assert!(col("train.lr").is_none(), "{:?}", table[0]);
    for (row, c) in table[1..].iter().zip(&cells) {
        let f = c.facts.as_ref().unwrap();
        assert_eq!(row[col("cell").unwrap()], f.id);
        assert_eq!(row[col("steps").unwrap()], "100");
        assert_eq!(row[col("valid_exact_match").unwrap()], "0.75");
        assert_eq!(row[col("final_train_loss").unwrap()], "0.125");
        assert_eq!(row[col("valid_loss").unwrap()], "");
        let score: f64 = row[col("score").unwrap()].parse().unwrap();
        assert_eq!(Some(score), extrapolation_score(&c.eval));
    }

    // The plot's table holds the points the plot draws: the mean over seeds at each length.
    let plot = read_csv(
        &std::fs::read_to_string(dir.0.join("plots/copy-2.csv")).unwrap_or_else(|_| {
            let names: Vec<_> = std::fs::read_dir(dir.0.join("plots"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            panic!("plots/: {names:?}")
        }),
    );
    assert_eq!(
        plot[0],
        [
            "encoding",
            "length",
            "mean",
            "std",
            "seeds",
            "interval_lo",
            "interval_hi"
        ]
    );
    let at_6: Vec<&Vec<String>> = plot[1..].iter().filter(|r| r[1] == "6").collect();
    assert_eq!(at_6.len(), 1);
    assert_eq!(
        (
            at_6[0][0].as_str(),
            at_6[0][2].as_str(),
            at_6[0][4].as_str()
        ),
        ("rope", "0.5", "2")
    );
}

/// `report.html` stands alone: every table of `report.md` as a table, every plot inline as SVG,
/// nothing fetched from anywhere (no `src`, no stylesheet link, no URL but the SVG namespace).
#[test]
fn the_html_report_is_self_contained() {
    let dir = TempDir::new("html-report");
    let cells: Vec<CellResult> = ["rope", "alibi"]
        .iter()
        .flat_map(|e| (0..2).map(move |s| cell("copy", e, s, &[], (1.0, Some(0.5), Some(0.25)))))
        .collect();
    let mut spec = spec(&["rope", "alibi"], &["copy"]);
    spec.name = "a <study> & more".into();
    write_report(&dir.0, &spec, &cells).unwrap();
    let md = std::fs::read_to_string(dir.0.join("report.md")).unwrap();
    let html = std::fs::read_to_string(dir.0.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("<title>a &lt;study&gt; &amp; more</title>"),
        "title escaped"
    );
    // One HTML table per markdown table (each has one delimiter line, `|---|:--|`).
    let md_tables = md
        .lines()
        .filter(|l| l.starts_with('|') && l.chars().all(|c| "|-: ".contains(c)))
        .count();
    assert!(md_tables >= 2, "{md_tables}");
    assert_eq!(html.matches("<table>").count(), md_tables);
    // Every plot inline: as many SVGs as the markdown shows PNGs.
    let (inline, pngs) = (html.matches("<svg").count(), md.matches(".png)").count());
    assert!(inline >= 1 && inline == pngs, "{inline} SVGs, {pngs} plots");
    assert!(!html.contains("<img"), "an image left as a link");
    assert!(!html.contains(" src="), "something is fetched");
    assert!(!html.contains("<link"), "a linked stylesheet");
    let urls: Vec<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 40).min(html.len())])
        .filter(|u| !u.starts_with("http://www.w3.org/"))
        .collect();
    assert!(urls.is_empty(), "{urls:?}");
    // The numbers are the report's: a table cell of report.md is in the page.
    let cell_text = "1.000";
    assert!(md.contains(cell_text) && html.contains(cell_text));
}

/// The TFRecord frames of an event file, each checked against its two CRCs.
fn tf_records(bytes: &[u8]) -> Vec<Vec<u8>> {
    use ordo_eval::tensorboard::crc32c;
    let masked = |c: u32| c.rotate_right(15).wrapping_add(0xa282_ead8);
    let (mut out, mut at) = (Vec::new(), 0);
    while at < bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let len_crc = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        assert_eq!(len_crc, masked(crc32c(len_bytes)), "length CRC at {at}");
        let data = &bytes[at + 12..at + 12 + len];
        let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
        assert_eq!(crc, masked(crc32c(data)), "data CRC at {at}");
        out.push(data.to_vec());
        at += 16 + len;
    }
    out
}

/// `ordo export tensorboard`: one event file per cell with its curves (every metrics line's
/// values, under `train/` and `valid/`), its final metrics and its HParams session grouped
/// without the seed, and the experiment file at the root; every frame well formed. (The files
/// were also read with TensorBoard's own event reader and shown in its HParams view: README.)
#[test]
fn the_tensorboard_export_holds_every_curve_and_one_session_per_cell() {
    let dir = TempDir::new("tensorboard");
    let mut cells = Vec::new();
    for seed in 0..2 {
        let mut c = cell(
            "copy",
            "rope",
            seed,
            &[("model.n_layers", "2")],
            (1.0, Some(0.5), None),
        );
        let id = format!("copy-rope-s{seed}");
        c.facts = Some(CellFacts {
            id: id.clone(),
            ..CellFacts::default()
        });
        let run = dir.0.join("runs").join(&id);
        std::fs::create_dir_all(&run).unwrap();
        let mut lines = String::new();
        for step in [10, 20, 30] {
            lines.push_str(&format!(
                "{{\"kind\":\"train\",\"step\":{step},\"loss\":{},\"lr\":0.001,\"grad_norm\":1.0,\"tokens_per_second\":5000.0,\"elapsed\":{}}}\n",
                1.0 / step as f64,
                step as f64 / 10.0
            ));
        }
        lines.push_str("{\"kind\":\"eval\",\"step\":30,\"loss\":0.5,\"token_accuracy\":0.9,\"exact_match\":0.75,\"perplexity\":1.6,\"examples\":8}\n");
        std::fs::write(run.join("metrics.jsonl"), lines).unwrap();
        cells.push(c);
    }
    let done = ordo_eval::tensorboard::export(&dir.0, &cells, None).unwrap();
    assert_eq!(done.sessions, 2);
    // Per cell: 3 train lines x 4 values + 1 eval line x 4 + score + 3 buckets present (far is
    // n/a here, so 2).
    let per_cell = 3 * 4 + 4 + 1 + 2;
    assert_eq!(done.scalars, 2 * per_cell);
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    let root = std::fs::read(
        dir.0
            .join("tensorboard")
            .join(ordo_eval::tensorboard::EVENT_FILE),
    )
    .unwrap();
    let root = tf_records(&root);
    assert_eq!(root.len(), 2);
    assert!(contains(&root[0], "brain.Event:2"));
    for needle in [
        "_hparams_/experiment",
        "encoding",
        "model.n_layers",
        "eval/far/exact_match",
    ] {
        assert!(contains(&root[1], needle), "{needle}");
    }
    assert!(
        !contains(&root[1], "seed"),
        "the seed is the group, not a hyperparameter"
    );
    for seed in 0..2 {
        let file = dir
            .0
            .join(format!("tensorboard/copy-rope-s{seed}"))
            .join(ordo_eval::tensorboard::EVENT_FILE);
        let records = tf_records(&std::fs::read(file).unwrap());
        // Version, session start, 4 metrics lines, finals, session end.
        assert_eq!(records.len(), 1 + 1 + 4 + 1 + 1);
        assert!(contains(&records[1], "_hparams_/session_start_info"));
        assert!(
            contains(&records[1], "copy rope model.n_layers=2"),
            "group without the seed"
        );
        for tag in [
            "train/loss",
            "train/lr",
            "train/grad_norm",
            "train/tokens_per_second",
        ] {
            assert!(contains(&records[2], tag), "{tag}");
        }
        assert!(contains(&records[5], "valid/exact_match"));
        assert!(
            contains(&records[6], "eval/score") && contains(&records[6], "eval/near/exact_match")
        );
        assert!(contains(&records[7], "_hparams_/session_end_info"));
        // The first loss, 1/10, as the f32 TensorBoard reads (simple_value, field 2).
        let mut value = vec![0x15];
        value.extend_from_slice(&0.1f32.to_le_bytes());
        assert!(records[2].windows(5).any(|w| w == value.as_slice()));
    }
}

#[test]
fn an_evaluation_in_bf16_is_recorded_and_keeps_the_fp32_one() {
    use ordo_train::config::Precision;
    let dir = TempDir::new("eval-precision");
    let task = "[task]\nkind = \"copy\"\nsymbols = 6\nmin_len = 1\nmax_len = 4";
    let fp32 = train_and_evaluate(&dir, "copy", task, vec![2, 4, 8]);
    assert_eq!(fp32.precision, Precision::Fp32);
    let run = dir.join("runs/copy");
    let options = |precision| ordo_eval::EvalOptions {
        examples: 24,
        lengths: Some(ordo_eval::extrapolation::Lengths(vec![2, 4, 8])),
        precision: Some(precision),
        ..ordo_eval::EvalOptions::default()
    };
    let bf16 = match ordo_model::kernels::bf16_runs_on(&ordo_train::device::parse("cpu").unwrap()) {
        Ok(()) => ordo_eval::evaluate_run(&run, &options(Precision::Bf16)).unwrap(),
        Err(why) => {
            let err = ordo_eval::evaluate_run(&run, &options(Precision::Bf16)).unwrap_err();
            assert!(err.to_string().contains(&why), "{err}");
            return;
        }
    };
    assert_eq!(bf16.precision, Precision::Bf16);
    // The same examples, other arithmetic: losses differ a little, never by much.
    for (a, b) in fp32.lengths.iter().zip(&bf16.lengths) {
        let (x, y) = (a.metrics.unwrap().loss, b.metrics.unwrap().loss);
        assert!(
            x != y && (x - y).abs() < 0.05 * x,
            "length {}: {x} vs {y}",
            a.length
        );
    }
    // The fp32 evaluation is kept beside it, not overwritten.
    let kept: EvalReport =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.before-1.json")).unwrap())
            .unwrap();
    assert_eq!(kept, fp32);
}
