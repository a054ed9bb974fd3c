//! The report's figures: one plot per (task, variant) of the headline metric against length,
//! with its 95 % band.

use super::rows::{Row, group_title};
use crate::extrapolation::Headline;
use crate::plot::{self, LinePlot};
use std::path::Path;
use std::path::PathBuf;

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

pub(crate) fn plot_title(group: &str, headline: Headline) -> String {
    match headline {
        Headline::ExactMatch => format!("{group}: exact match against length"),
        Headline::Perplexity => format!("{group}: perplexity against context length"),
    }
}

/// The plot of one group: the headline against length, one line and band per encoding.
pub(crate) fn group_plot(
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
