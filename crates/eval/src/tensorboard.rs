//! `ordo export tensorboard EXPERIMENT_DIR`: an experiment's training curves and its grid as
//! TensorBoard event files, so that `tensorboard --logdir EXPERIMENT_DIR/tensorboard` shows the
//! sweep (W&B and Aim import the same files: `wandb sync --sync-tensorboard DIR`, `aim convert
//! tensorboard --logdir DIR`).
//!
//! Layout: `tensorboard/<cell id>/events.out.tfevents.0.ordo` per finished cell, holding
//! - the training curves from `metrics.jsonl`: `train/loss`, `train/lr`, `train/grad_norm`,
//!   `train/tokens_per_second` at every logged step, and `valid/loss`,
//!   `valid/token_accuracy`, `valid/exact_match`, `valid/perplexity` at every held-out
//!   evaluation;
//! - the evaluation's final metrics at the checkpoint step evaluated: per bucket
//!   `eval/in_distribution/exact_match`, `eval/near/...`, `eval/far/...` (exact-match tasks) and
//!   `eval/score` (the report's score);
//! - the cell as one HParams session: its task, encoding and grid values as hyperparameters,
//!   its group the cell without its seed, so that TensorBoard's HParams view averages the seeds;
//!
//! and `tensorboard/events.out.tfevents.0.ordo`, the HParams experiment: every hyperparameter with
//! the values it takes, and the metrics above. Wall times are the run's training seconds
//! (`elapsed` in `metrics.jsonl`) from the Unix epoch: a rebuild writes the same bytes.
//!
//! The format, written here without a protobuf library (`tensorboard-rs`, the one crate for it,
//! last released in 2022, writes scalars, images and histograms, not HParams):
//! TFRecord framing (a little-endian `u64` length, its masked CRC-32C, the bytes, their masked
//! CRC-32C) around `tensorflow.Event` messages; scalars as `Summary.Value.simple_value`; HParams
//! as `Summary.Value`s whose metadata names the `hparams` plugin and carries an
//! `HParamsPluginData` (tensorboard/plugins/hparams/plugin_data.proto, api.proto).

use crate::extrapolation::Bucket;
use crate::report::{CellResult, ReportError, extrapolation_score, variant_label};
use ordo_train::run_dir::write_atomic;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file name TensorBoard finds (it must contain `tfevents`).
pub const EVENT_FILE: &str = "events.out.tfevents.0.ordo";

// --- protobuf, as much as these messages need ---

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(out, field, 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

fn double(out: &mut Vec<u8>, field: u32, v: f64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn float(out: &mut Vec<u8>, field: u32, v: f32) {
    key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn int(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

/// CRC-32C (Castagnoli), bitwise: the event files are small.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn masked(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
pub fn record(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked(crc32c(&len)).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked(crc32c(data)).to_le_bytes());
}

/// `Event { wall_time = 1, step = 2, file_version = 3 | summary = 5 }`.
fn event(wall_time: f64, step: u64, body: EventBody) -> Vec<u8> {
    let mut e = Vec::new();
    double(&mut e, 1, wall_time);
    int(&mut e, 2, step);
    match body {
        EventBody::FileVersion => bytes(&mut e, 3, b"brain.Event:2"),
        EventBody::Summary(values) => {
            let mut summary = Vec::new();
            for v in values {
                bytes(&mut summary, 1, &v);
            }
            bytes(&mut e, 5, &summary);
        }
    }
    e
}

enum EventBody {
    FileVersion,
    Summary(Vec<Vec<u8>>),
}

/// `Summary.Value { tag = 1, simple_value = 2 }`.
fn scalar(tag: &str, value: f64) -> Vec<u8> {
    let mut v = Vec::new();
    bytes(&mut v, 1, tag.as_bytes());
    float(&mut v, 2, value as f32);
    v
}

/// A `Summary.Value` for the hparams plugin: `tag = 1`, `metadata = 9 { plugin_data = 1 {
/// plugin_name = 1, content = 2 } }`, the content an `HParamsPluginData { version = 1 (0),
/// experiment = 2 | session_start_info = 3 | session_end_info = 4 }`.
fn hparams_value(tag: &str, data_field: u32, message: &[u8]) -> Vec<u8> {
    let mut content = Vec::new();
    bytes(&mut content, data_field, message);
    let mut plugin = Vec::new();
    bytes(&mut plugin, 1, b"hparams");
    bytes(&mut plugin, 2, &content);
    let mut metadata = Vec::new();
    bytes(&mut metadata, 1, &plugin);
    let mut v = Vec::new();
    bytes(&mut v, 1, tag.as_bytes());
    bytes(&mut v, 9, &metadata);
    v
}

/// A hyperparameter's value: a number when every value of it is one, else text.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum HValue {
    Number(f64),
    Text(String),
}

/// `google.protobuf.Value { number_value = 2 | string_value = 3 }`.
fn proto_value(v: &HValue) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        HValue::Number(x) => double(&mut out, 2, *x),
        HValue::Text(s) => bytes(&mut out, 3, s.as_bytes()),
    }
    out
}

/// The hyperparameters of a cell, by name: everything that names it but its seed (the seeds of
/// one cell are one group, which the HParams view averages).
fn hparams_of(cell: &CellResult) -> BTreeMap<String, String> {
    let mut h = BTreeMap::new();
    h.insert("task".to_string(), cell.task.clone());
    h.insert("encoding".to_string(), cell.encoding.clone());
    for (k, v) in &cell.variant {
        h.insert(k.clone(), v.clone());
    }
    h
}

/// The metrics of the HParams view: `(tag, description)`.
fn metric_tags(cells: &[CellResult]) -> Vec<(String, &'static str)> {
    let mut tags = vec![
        (
            "valid/loss".to_string(),
            "held-out loss at the end of training",
        ),
        (
            "valid/exact_match".to_string(),
            "held-out exact match at the end of training",
        ),
        (
            "eval/score".to_string(),
            "the report's extrapolation score of the cell",
        ),
    ];
    if cells
        .iter()
        .any(|c| c.eval.headline() == crate::extrapolation::Headline::ExactMatch)
    {
        for bucket in Bucket::ALL {
            tags.push((
                format!("eval/{}/exact_match", bucket.key()),
                "mean exact match over the bucket's lengths",
            ));
        }
    }
    tags
}

/// The experiment: `Experiment { hparam_infos = 4 { name = 1, type = 4, domain_discrete = 5 },
/// metric_infos = 5 { name = 1 { tag = 2 }, description = 4 } }`.
fn experiment_message(
    names: &BTreeMap<String, Vec<HValue>>,
    metrics: &[(String, &str)],
) -> Vec<u8> {
    let mut e = Vec::new();
    for (name, values) in names {
        let mut info = Vec::new();
        bytes(&mut info, 1, name.as_bytes());
        let numeric = values.iter().all(|v| matches!(v, HValue::Number(_)));
        // DataType: DATA_TYPE_STRING = 1, DATA_TYPE_FLOAT64 = 3.
        int(&mut info, 4, if numeric { 3 } else { 1 });
        // ListValue { values = 1 }.
        let mut list = Vec::new();
        for v in values {
            bytes(&mut list, 1, &proto_value(v));
        }
        bytes(&mut info, 5, &list);
        bytes(&mut e, 4, &info);
    }
    for (tag, description) in metrics {
        let mut name = Vec::new();
        bytes(&mut name, 2, tag.as_bytes());
        let mut info = Vec::new();
        bytes(&mut info, 1, &name);
        bytes(&mut info, 4, description.as_bytes());
        bytes(&mut e, 5, &info);
    }
    e
}

fn parse_value(text: &str, numeric: bool) -> HValue {
    match text.parse::<f64>() {
        Ok(x) if numeric => HValue::Number(x),
        _ => HValue::Text(text.to_string()),
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub dir: PathBuf,
    pub sessions: usize,
    pub scalars: usize,
}

/// Writes `out` (default `EXPERIMENT_DIR/tensorboard`) from the experiment's finished cells.
pub fn export(
    experiment_dir: &Path,
    cells: &[CellResult],
    out: Option<&Path>,
) -> Result<Exported, ReportError> {
    let out = out.map_or_else(|| experiment_dir.join("tensorboard"), Path::to_path_buf);
    let io = crate::report::io_err;
    // Which hyperparameters are numbers in every cell.
    let mut raw: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for cell in cells {
        for (k, v) in hparams_of(cell) {
            let values = raw.entry(k).or_default();
            if !values.contains(&v) {
                values.push(v);
            }
        }
    }
    let numeric: BTreeMap<String, bool> = raw
        .iter()
        .map(|(k, vs)| (k.clone(), vs.iter().all(|v| v.parse::<f64>().is_ok())))
        .collect();
    let mut domains: BTreeMap<String, Vec<HValue>> = BTreeMap::new();
    for (k, vs) in &raw {
        let mut values: Vec<HValue> = vs.iter().map(|v| parse_value(v, numeric[k])).collect();
        values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        domains.insert(k.clone(), values);
    }
    let metrics = metric_tags(cells);
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let mut root = Vec::new();
    record(&mut root, &event(0.0, 0, EventBody::FileVersion));
    let experiment = experiment_message(&domains, &metrics);
    let value = hparams_value("_hparams_/experiment", 2, &experiment);
    record(&mut root, &event(0.0, 0, EventBody::Summary(vec![value])));
    let path = out.join(EVENT_FILE);
    write_atomic(&path, &root).map_err(io(&path))?;

    let mut scalars = 0;
    for cell in cells {
        let Some(facts) = &cell.facts else { continue };
        let run = ordo_train::run_dir::RunDir::new(experiment_dir.join("runs").join(&facts.id));
        let mut file = Vec::new();
        record(&mut file, &event(0.0, 0, EventBody::FileVersion));
        // The session: its hyperparameters and group (the cell without its seed).
        let mut start = Vec::new();
        for (k, v) in hparams_of(cell) {
            // map<string, Value> entry { key = 1, value = 2 }.
            let mut entry = Vec::new();
            bytes(&mut entry, 1, k.as_bytes());
            bytes(&mut entry, 2, &proto_value(&parse_value(&v, numeric[&k])));
            bytes(&mut start, 1, &entry);
        }
        let group = format!(
            "{} {} {}",
            cell.task,
            cell.encoding,
            variant_label(&cell.variant)
        );
        bytes(&mut start, 4, group.trim().as_bytes());
        let start_value = hparams_value("_hparams_/session_start_info", 3, &start);
        record(
            &mut file,
            &event(0.0, 0, EventBody::Summary(vec![start_value])),
        );
        // The curves.
        let text = std::fs::read_to_string(run.metrics()).unwrap_or_default();
        let mut last = (0.0, 0u64);
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let step = v.get("step").and_then(|s| s.as_u64()).unwrap_or(0);
            let wall = v.get("elapsed").and_then(|s| s.as_f64()).unwrap_or(last.0);
            let (prefix, keys): (&str, &[&str]) = match v.get("kind").and_then(|k| k.as_str()) {
                Some("train") => ("train", &["loss", "lr", "grad_norm", "tokens_per_second"]),
                Some("eval") => (
                    "valid",
                    &["loss", "token_accuracy", "exact_match", "perplexity"],
                ),
                _ => continue,
            };
            let values: Vec<Vec<u8>> = keys
                .iter()
                .filter_map(|k| Some(scalar(&format!("{prefix}/{k}"), v.get(*k)?.as_f64()?)))
                .collect();
            scalars += values.len();
            record(&mut file, &event(wall, step, EventBody::Summary(values)));
            last = (wall, last.1.max(step));
        }
        // The final metrics, at the step evaluated.
        let step = cell.eval.checkpoint_step.map_or(last.1, |s| s as u64);
        // (`valid/*` at the end of training is the curve's last point: the loop evaluates at
        // its last step.)
        let mut finals = Vec::new();
        if let Some(score) = extrapolation_score(&cell.eval) {
            finals.push(scalar("eval/score", score));
        }
        if cell.eval.headline() == crate::extrapolation::Headline::ExactMatch {
            for bucket in Bucket::ALL {
                if let Some(em) = cell.eval.buckets.get(bucket).exact_match {
                    finals.push(scalar(&format!("eval/{}/exact_match", bucket.key()), em));
                }
            }
        }
        scalars += finals.len();
        record(&mut file, &event(last.0, step, EventBody::Summary(finals)));
        // SessionEndInfo { status = 1 (STATUS_SUCCESS = 1), end_time_secs = 2 }.
        let mut end = Vec::new();
        int(&mut end, 1, 1);
        double(&mut end, 2, last.0);
        let end_value = hparams_value("_hparams_/session_end_info", 4, &end);
        record(
            &mut file,
            &event(last.0, step, EventBody::Summary(vec![end_value])),
        );
        let dir = out.join(&facts.id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(EVENT_FILE);
        write_atomic(&path, &file).map_err(io(&path))?;
    }
    Ok(Exported {
        dir: out,
        sessions: cells.iter().filter(|c| c.facts.is_some()).count(),
        scalars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_and_framing_match_the_reference_values() {
        // The CRC-32C check value (RFC 3720, B.4) and TFRecord's masking.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        let mut out = Vec::new();
        record(&mut out, b"abc");
        assert_eq!(out.len(), 8 + 4 + 3 + 4);
        assert_eq!(&out[..8], &3u64.to_le_bytes());
        assert_eq!(&out[15..], &masked(crc32c(b"abc")).to_le_bytes());
    }

    #[test]
    fn varints_are_protobuf_varints() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xAC, 0x02]);
        let mut out = Vec::new();
        float(&mut out, 2, 1.5);
        assert_eq!(out, [0x15, 0, 0, 0xC0, 0x3F]);
    }
}
