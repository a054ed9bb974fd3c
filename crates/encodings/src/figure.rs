//! What `ordo inspect` shows of a scheme: each scheme returns its figures from
//! [`Positional::figures`](crate::Positional::figures), and inspect writes them (numbers for
//! `--json`, pictures otherwise) without knowing which scheme made them.

use crate::{AttentionMode, EncodingDims};
use serde_json::Value;

/// What to draw: `len` positions of a model of `dims`, with the options of the scheme's figures
/// that were given (`ordo inspect KIND --figure NAME=VALUE`; each checked against the scheme's
/// [`FigureOption`]s before the figures are asked for).
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The scheme's `kind`, which names the files (`rope-decay.svg`).
    pub kind: &'a str,
    pub len: usize,
    pub dims: EncodingDims,
    pub options: &'a FigureOptions,
}

/// Options of a scheme's figures, by name, as given.
pub type FigureOptions = std::collections::BTreeMap<String, String>;

/// An option a scheme's figures take ([`Positional::figure_options`](crate::Positional::figure_options)).
#[derive(Debug, Clone, Copy)]
pub struct FigureOption {
    pub name: &'static str,
    /// What it does and what it accepts, for `ordo inspect`'s messages.
    pub help: &'static str,
    /// Checks a value; the message says what was expected.
    pub check: fn(&str) -> Result<(), String>,
}

impl View<'_> {
    /// The value given for option `name`, if any.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }
}

/// One figure of a scheme.
#[derive(Debug, Clone)]
pub enum Figure {
    /// Numbers under `key` in `ordo inspect --json` (no picture).
    Data { key: &'static str, value: Value },
    /// A heatmap, written as `<file>.svg`/`.png`.
    Heatmap(Heatmap),
    /// Curves against a shared x axis, written as `<file>.svg`/`.png`.
    Lines(Lines),
    /// A line of text that `ordo inspect` prints under its summary (the numbers behind it go
    /// in a [`Figure::Data`] for `--json`).
    Note(String),
}

#[derive(Debug, Clone)]
pub struct Heatmap {
    /// File name without extension.
    pub file: String,
    pub title: String,
    pub x_label: &'static str,
    pub y_label: &'static str,
    pub value_label: &'static str,
    /// Rows of the matrix; NaN cells are drawn grey (masked).
    pub values: Vec<Vec<f64>>,
    /// A sequential colour map (for counts, buckets) instead of the diverging default.
    pub sequential: bool,
}

#[derive(Debug, Clone)]
pub struct Lines {
    pub file: String,
    pub title: String,
    pub x_label: &'static str,
    pub y_label: &'static str,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    pub log_y: bool,
    /// Mark each point (for few points) rather than only joining them.
    pub points: bool,
}

/// Row-major values as rows of `cols`.
pub fn rows(values: &[f32], cols: usize) -> Vec<Vec<f64>> {
    values
        .chunks(cols)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect()
}

fn json_rows(values: &[f32], cols: usize) -> Value {
    Value::Array(values.chunks(cols).map(|r| serde_json::json!(r)).collect())
}

/// A `[h, t, t]` bias as JSON (`[head][query][key]`).
pub fn bias_data(key: &'static str, bias: &[f32], len: usize) -> Figure {
    let heads = bias
        .chunks(len * len)
        .map(|head| json_rows(head, len))
        .collect();
    Figure::Data {
        key,
        value: Value::Array(heads),
    }
}

/// A `[h, t, t]` bias, one heatmap per head; in causal mode keys after the query are masked
/// (grey) rather than drawn as a bias of 0.
pub fn bias_maps(view: &View, what: &str, bias: &[f32]) -> Vec<Figure> {
    let len = view.len;
    bias.chunks(len * len)
        .enumerate()
        .map(|(h, head)| {
            let mut values = rows(head, len);
            if view.dims.mode == AttentionMode::Causal {
                for (i, row) in values.iter_mut().enumerate() {
                    for v in row.iter_mut().skip(i + 1) {
                        *v = f64::NAN;
                    }
                }
            }
            Figure::Heatmap(Heatmap {
                file: format!("{}-bias-head{h}", view.kind),
                title: format!("{} {what}, head {h} ({:?})", view.kind, view.dims.mode),
                x_label: "key position j",
                y_label: "query position i",
                value_label: "logit bias",
                values,
                sequential: false,
            })
        })
        .collect()
}

/// An absolute table `[rows, d]` (rows may be fewer than `len`): its numbers, its heatmap and
/// the dot products `PE(i)·PE(j)` against `j - i` from four anchors.
pub fn absolute_table(view: &View, what: &str, table: &[f32]) -> Vec<Figure> {
    let (kind, d) = (view.kind, view.dims.d_model);
    let n = table.len() / d;
    let anchors = [0, n / 4, n / 2, 3 * n / 4];
    vec![
        Figure::Data {
            key: "table",
            value: json_rows(table, d),
        },
        Figure::Heatmap(Heatmap {
            file: format!("{kind}-table"),
            title: format!("{kind}: {what} [{n} positions x {d} dims]"),
            x_label: "dimension",
            y_label: "position",
            value_label: "value",
            values: rows(table, d),
            sequential: false,
        }),
        Figure::Lines(Lines {
            file: format!("{kind}-dot-products"),
            title: format!("{kind}: PE(i)·PE(j) against j - i"),
            x_label: "j - i",
            y_label: "PE(i)·PE(j)",
            series: anchors
                .iter()
                .map(|&i| (format!("i = {i}"), dot_products(table, d, i)))
                .collect(),
            log_y: false,
            points: false,
        }),
    ]
}

/// `PE(i)·PE(j)` for every row `j`, from a row-major `[rows, d]` table.
pub fn dot_products(table: &[f32], d: usize, i: usize) -> Vec<(f64, f64)> {
    let len = table.len() / d;
    let row = &table[i * d..(i + 1) * d];
    (0..len)
        .map(|j| {
            let dot: f64 = (0..d)
                .map(|c| row[c] as f64 * table[j * d + c] as f64)
                .sum();
            (j as f64 - i as f64, dot)
        })
        .collect()
}
