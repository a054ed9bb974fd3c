//! The report of an ablation grid: tables, MRR ranking and plots, from hand-made evaluations.

use ordo_eval::extrapolation::{Buckets, EvalReport, LengthResult, bucket};
use ordo_eval::plot::{self, ColorMap, Heatmap, LinePlot, encoding_colour};
use ordo_eval::report::{
    CellResult, ReportSpec, Row, Stat, curves, extrapolation_score, mrr, ranks, summarize,
    write_report,
};
use ordo_model::AttentionMode;
use ordo_train::metrics::Metrics;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A fresh, empty directory, removed at the end of a passing test (kept when it fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("ordo-report-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("ORDO_KEEP_TEST_OUTPUT").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

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
        scaling: "none".into(),
        examples_per_length: 8,
        lengths,
        buckets,
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
                        task: task.into(),
                        encoding: encoding.into(),
                        seed,
                        variant: vec![("model.mode".into(), variant.into())],
                        eval: eval(task, encoding, seed, l, |n| {
                            if learned && n > 2 * l {
                                return None;
                            }
                            let decay = if n <= l {
                                0.0
                            } else {
                                drop * (n - l) as f64 / l as f64
                            };
                            Some((base - shift - jitter - decay).clamp(0.0, 1.0))
                        }),
                    });
                }
            }
        }
    }
    let order = ordo_model::PositionalEncodingConfig::KINDS;
    let path = write_report(&dir, &spec(&order, &["reverse", "copy"]), &cells).unwrap();
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
fn curves_average_seeds_per_length_and_keep_na_gaps() {
    let cells = table_cells();
    let c = curves(&cells);
    assert_eq!(c.len(), 3);
    let rope = &c[0];
    assert_eq!(rope.points.len(), 16);
    assert!(close(rope.points[4].1.unwrap(), 0.7), "length 5 is near");
    let learned = &c[1];
    assert_eq!(learned.points[15], (16, None));
    let _: &Row = &summarize(&cells)[0];
    let _: Option<Stat> = Stat::of(&[]);
}

#[test]
fn missing_cells_and_partly_na_buckets_are_marked_in_the_report() {
    let dir = TempDir::new("missing");
    let mut cells = mrr_cells();
    // a has no cell in t2; b's near bucket is n/a at lengths 7 and 8 (of 5..=8).
    cells.retain(|c| !(c.task == "t2" && c.encoding == "a"));
    cells.push(CellResult {
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
