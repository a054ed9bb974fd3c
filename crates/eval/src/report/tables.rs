//! The report's numbers as tidy tables, for pandas, R or a spreadsheet: `results.csv` (one row
//! per cell x evaluated length), `cells.csv` (one row per cell) and, beside each plot,
//! `plots/<stem>.csv` (the points and bands it draws). Plain RFC 4180 CSV: a header line,
//! comma-separated, a field quoted (`"`, doubled inside) only when it holds a comma, a quote or
//! a line break; no nested fields; an empty field is a missing value (n/a). Numbers are written
//! as Rust prints an `f64` (shortest representation that reads back exactly).
//!
//! `results.csv` columns, in order:
//! - `experiment`, `cell` (the run directory's name under `runs/`), `task` (the report's task
//!   label: the kind, with the base config's file stem when two configs share a kind),
//!   `base_config` (the task's config file as the experiment file names it; empty when the
//!   report is rebuilt without the experiment file), `encoding` (the report's label, `t5(init_std=3.0)`), `kind` (the scheme), `mode`
//!   (`causal` or `bidirectional`), `seed`;
//! - one column per grid axis, named by its key (`model.n_layers`), holding the cell's value;
//! - one column per encoding parameter any cell's resolved config has, `encoding.<key>`
//!   (`encoding.base`, `encoding.randomized_positions`), empty where a cell's scheme has no
//!   such key;
//! - `overrides` (the eval-time changes of the encoding, `none`), `train_min_len`,
//!   `train_max_len`, `checkpoint_step`, `headline` (`exact_match` or `perplexity`);
//! - per length: `length`, `tokens` (model positions of one example), `bucket`
//!   (`in_distribution`, `near`, `far`, or empty past the far edge), `exact_match`,
//!   `token_accuracy`, `loss` (nats per answer token), `perplexity`, `examples`,
//!   `scored_tokens` (perplexity tasks), `interval_lo`/`interval_hi` (the 95 % interval of
//!   the headline at this length within this cell: Wilson's for exact match, the percentile
//!   interval of the block bootstrap for perplexity; empty without per-example outcomes),
//!   `unsupported` (why the length is n/a, empty otherwise).
//!
//! `cells.csv` columns: `experiment`, `cell`, `task`, `base_config`, `encoding`, `kind`, `mode`,
//! `seed`, the
//! grid axes, then every key of the resolved run config whose value differs between cells
//! (dotted, `train.lr`; the grid's and the encoding's keys among them), then `steps`,
//! `seconds` (training wall time), `tokens_per_second`, `final_train_loss` (the mean of the
//! last logged window), `valid_loss`, `valid_token_accuracy`, `valid_exact_match` (the
//! held-out set at the end of training), `checkpoint_step` (the one evaluated) and `score`
//! (the cell's extrapolation score, as the report ranks it).
//!
//! `plots/<stem>.csv` columns: `encoding`, `length`, `mean` (over seeds), `std` (sample, over
//! seeds; empty for one seed), `seeds`, `interval_lo`, `interval_hi` (the band drawn).

use super::rows::{CellResult, Row, extrapolation_score, length_intervals};
use crate::extrapolation::{Bucket, Headline};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Flattens a TOML table into dotted keys ([`ordo_train::config::leaves`]), values as TOML
/// writes them but strings bare.
pub fn flatten(table: &toml::Table) -> BTreeMap<String, String> {
    ordo_train::config::leaves(table)
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

/// A CSV field: quoted only when it must be.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn line(out: &mut String, fields: &[String]) {
    let joined: Vec<String> = fields.iter().map(|f| field(f)).collect();
    let _ = writeln!(out, "{}", joined.join(","));
}

fn num(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => String::new(),
    }
}

fn int(x: Option<usize>) -> String {
    x.map(|x| x.to_string()).unwrap_or_default()
}

fn mode_name(cell: &CellResult) -> String {
    format!("{:?}", cell.eval.mode).to_lowercase()
}

const ENCODING_PREFIX: &str = "model.encoding.";

/// The grid axes of the cells, in first-seen order.
fn grid_keys(cells: &[CellResult]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for (k, _) in cells.iter().flat_map(|c| &c.variant) {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    keys
}

fn grid_value(cell: &CellResult, key: &str) -> String {
    cell.variant
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The identity columns every table starts with, and their values for `cell`.
fn identity(experiment: &str, cell: &CellResult, grid: &[String]) -> Vec<String> {
    let mut fields = vec![
        experiment.to_string(),
        cell.facts
            .as_ref()
            .map(|f| f.id.clone())
            .unwrap_or_default(),
        cell.task.clone(),
        cell.facts
            .as_ref()
            .and_then(|f| f.base_config.clone())
            .unwrap_or_default(),
        cell.encoding.clone(),
        cell.eval.encoding.clone(),
        mode_name(cell),
        cell.seed.to_string(),
    ];
    fields.extend(grid.iter().map(|k| grid_value(cell, k)));
    fields
}

fn identity_header(grid: &[String]) -> Vec<String> {
    let mut header: Vec<String> = [
        "experiment",
        "cell",
        "task",
        "base_config",
        "encoding",
        "kind",
        "mode",
        "seed",
    ]
    .map(String::from)
    .to_vec();
    header.extend(grid.iter().cloned());
    header
}

fn config_of(cell: &CellResult) -> Option<&BTreeMap<String, String>> {
    cell.facts.as_ref().map(|f| &f.config)
}

/// `results.csv`: one row per cell x evaluated length.
pub fn results_csv(experiment: &str, cells: &[CellResult]) -> String {
    let grid = grid_keys(cells);
    let encoding_keys: BTreeSet<&str> = cells
        .iter()
        .filter_map(config_of)
        .flat_map(|c| c.keys())
        .filter_map(|k| k.strip_prefix(ENCODING_PREFIX))
        .filter(|k| *k != "kind")
        .collect();
    let mut header = identity_header(&grid);
    header.extend(encoding_keys.iter().map(|k| format!("encoding.{k}")));
    header.extend(
        [
            "overrides",
            "train_min_len",
            "train_max_len",
            "checkpoint_step",
            "headline",
            "length",
            "tokens",
            "bucket",
            "exact_match",
            "token_accuracy",
            "loss",
            "perplexity",
            "examples",
            "scored_tokens",
            "interval_lo",
            "interval_hi",
            "unsupported",
        ]
        .map(String::from),
    );
    let mut out = String::new();
    line(&mut out, &header);
    for cell in cells {
        let eval = &cell.eval;
        let edges = eval.edges();
        let headline = match eval.headline() {
            Headline::ExactMatch => "exact_match",
            Headline::Perplexity => "perplexity",
        };
        let mut fixed = identity(experiment, cell, &grid);
        fixed.extend(encoding_keys.iter().map(|k| {
            config_of(cell)
                .and_then(|c| c.get(&format!("{ENCODING_PREFIX}{k}")))
                .cloned()
                .unwrap_or_default()
        }));
        fixed.extend([
            eval.overrides.clone(),
            eval.train_min_len.to_string(),
            eval.train_max_len.to_string(),
            int(eval.checkpoint_step),
            headline.to_string(),
        ]);
        let intervals = length_intervals(cell);
        for (r, interval) in eval.lengths.iter().zip(intervals) {
            let bucket = Bucket::ALL
                .into_iter()
                .find(|b| b.contains(edges, r.length));
            let m = r.metrics;
            let mut fields = fixed.clone();
            fields.extend([
                r.length.to_string(),
                r.tokens.to_string(),
                bucket.map_or("", Bucket::key).to_string(),
                num(m.map(|m| m.exact_match)),
                num(m.map(|m| m.token_accuracy)),
                num(m.map(|m| m.loss)),
                num(m.map(|m| m.loss.exp())),
                int(m.map(|m| m.examples)),
                int(r.scored_tokens),
                num(interval.map(|i| i.lo)),
                num(interval.map(|i| i.hi)),
                r.unsupported.clone().unwrap_or_default(),
            ]);
            line(&mut out, &fields);
        }
    }
    out
}

/// `cells.csv`: one row per cell.
pub fn cells_csv(experiment: &str, cells: &[CellResult]) -> String {
    let grid = grid_keys(cells);
    // Config keys whose value differs between cells (a key some cells lack differs too).
    let all_keys: BTreeSet<&String> = cells
        .iter()
        .filter_map(config_of)
        .flat_map(|c| c.keys())
        .collect();
    let varying: Vec<&String> = all_keys
        .into_iter()
        .filter(|k| {
            let values: BTreeSet<Option<&String>> = cells
                .iter()
                .map(|c| config_of(c).and_then(|m| m.get(*k)))
                .collect();
            values.len() > 1
        })
        // The run's name is the cell id, a column already.
        .filter(|k| k.as_str() != "name")
        .collect();
    let mut header = identity_header(&grid);
    header.extend(varying.iter().map(|k| k.to_string()));
    header.extend(
        [
            "steps",
            "seconds",
            "tokens_per_second",
            "final_train_loss",
            "valid_loss",
            "valid_token_accuracy",
            "valid_exact_match",
            "checkpoint_step",
            "score",
        ]
        .map(String::from),
    );
    let mut out = String::new();
    line(&mut out, &header);
    for cell in cells {
        let mut fields = identity(experiment, cell, &grid);
        fields.extend(varying.iter().map(|k| {
            config_of(cell)
                .and_then(|c| c.get(*k))
                .cloned()
                .unwrap_or_default()
        }));
        let f = cell.facts.clone().unwrap_or_default();
        fields.extend([
            int(f.steps),
            num(f.seconds),
            num(f.tokens_per_second),
            num(f.final_train_loss),
            num(f.valid_loss),
            num(f.valid_token_accuracy),
            num(f.valid_exact_match),
            int(cell.eval.checkpoint_step),
            num(extrapolation_score(&cell.eval)),
        ]);
        line(&mut out, &fields);
    }
    out
}

/// `plots/<stem>.csv`: the points and bands of one group's plot.
pub fn plot_csv(of_group: &[&Row]) -> String {
    let mut out = String::new();
    let header = [
        "encoding",
        "length",
        "mean",
        "std",
        "seeds",
        "interval_lo",
        "interval_hi",
    ]
    .map(String::from);
    line(&mut out, &header);
    for row in of_group {
        for p in &row.points {
            line(
                &mut out,
                &[
                    row.encoding.clone(),
                    p.length.to_string(),
                    num(p.stat.map(|s| s.mean)),
                    num(p.stat.and_then(|s| s.std)),
                    p.stat.map(|s| s.n.to_string()).unwrap_or_default(),
                    num(p.interval.map(|i| i.lo)),
                    num(p.interval.map(|i| i.hi)),
                ],
            );
        }
    }
    out
}
