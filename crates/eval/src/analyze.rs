//! `ordo analyze RUN_DIR`: how far each attention head looks, against sequence length
//! (Kazemnejad et al. 2023, §5: the mean attention distance of each head over a test set).
//!
//! For an example of `t` model positions and a head's attention `p` (`[t, t]`, rows summing to
//! 1 over the keys a query may see), the head's distance at query `i` is `Σ_j p_ij |i - j|`;
//! the head's mean attention distance at a length is its mean over every query of every
//! example of that length (padding excluded). The test set is the evaluation's: the same
//! lengths, the same held-out examples (`ordo eval`'s seed streams). As a yardstick, a head
//! that attends uniformly has mean distance `(t - 1) / 3 · (t + 1) / t` in an encoder and
//! `(t - 1) / 4` in a decoder (mean over queries `i` of `i / 2`); the table and plot print it.
//!
//! Output, in the run directory (the run's lock held): `analysis.json`, `analysis.csv`
//! (`length,tokens,examples,layer,head,mean_distance,uniform`) and `analysis.png`/`.svg` (one
//! line per layer and head, the uniform yardstick as a line of its own, the training length
//! marked).

use crate::extrapolation::{EvalError, EvalOptions, LoadedRun, load_run_with};
use ordo_model::AttentionMode;
use ordo_train::data;
use ordo_train::rng::Rng;
use ordo_train::run_dir::{AtPath, RunDir, write_atomic};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One length of the analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthDistances {
    pub length: usize,
    /// Model positions of one example.
    pub tokens: usize,
    pub examples: usize,
    /// `[layer][head]` mean attention distance; empty when the length is n/a.
    pub mean_distance: Vec<Vec<f64>>,
    /// A head attending uniformly over the keys it may see.
    pub uniform: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
}

/// The analysis of one run (`analysis.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub run: String,
    pub encoding: String,
    pub mode: AttentionMode,
    pub train_max_len: usize,
    pub checkpoint_step: usize,
    pub lengths: Vec<LengthDistances>,
}

/// The mean attention distance of a head that attends uniformly to the `t` positions (all of
/// them in an encoder, those up to the query in a decoder).
pub fn uniform_distance(t: usize, mode: AttentionMode) -> f64 {
    if t == 0 {
        return 0.0;
    }
    let t = t as f64;
    match mode {
        // mean over i of (1/t) Σ_j |i - j| = (t² - 1) / (3t).
        AttentionMode::Bidirectional => (t * t - 1.0) / (3.0 * t),
        // mean over i of (1/(i+1)) Σ_{j<=i} (i - j) = mean of i/2 = (t - 1) / 4.
        AttentionMode::Causal => (t - 1.0) / 4.0,
    }
}

/// Sums `Σ_j p_ij |i - j|` over the real queries of one `[b, h, t, t]` attention, per head:
/// `(sums per head, queries counted)`.
fn head_distances(probs: &[f32], b: usize, h: usize, t: usize, lengths: &[usize]) -> Vec<f64> {
    let mut sums = vec![0.0f64; h];
    for (e, &len) in lengths.iter().enumerate().take(b) {
        for (head, sum) in sums.iter_mut().enumerate() {
            let base = (e * h + head) * t * t;
            for i in 0..len {
                let row = &probs[base + i * t..base + i * t + len];
                *sum += row
                    .iter()
                    .enumerate()
                    .map(|(j, &p)| f64::from(p) * i.abs_diff(j) as f64)
                    .sum::<f64>();
            }
        }
    }
    sums
}

/// Measures every head at every length of `options` (as `ordo eval` chooses them).
pub fn analyze_loaded(run: &LoadedRun, options: &EvalOptions) -> Analysis {
    let cfg = &run.config;
    let generator = &run.generator;
    let mode = cfg.model.mode;
    let (_, max_len) = cfg.task.train_lengths();
    let lengths: Vec<usize> = match &options.lengths {
        Some(l) => l.0.clone(),
        None => generator.eval_lengths(max_len, options.max_factor()),
    };
    let (layers, heads) = (cfg.model.n_layers, cfg.model.n_heads);
    let mut out = Vec::with_capacity(lengths.len());
    for &len in &lengths {
        let mut rng = Rng::derive(cfg.seed, &format!("eval-{len}"));
        let na = |tokens: usize, why: String| LengthDistances {
            length: len,
            tokens,
            examples: 0,
            mean_distance: Vec::new(),
            uniform: uniform_distance(tokens, mode),
            unsupported: Some(why),
        };
        if len < generator.min_len() {
            let why = format!(
                "the task's shortest example has length {}",
                generator.min_len()
            );
            out.push(na(0, why));
            continue;
        }
        if let Some(why) = generator.eval_unsupported(len, options.examples) {
            out.push(na(len, why));
            continue;
        }
        let tokens = data::positions(&generator.held_out(&mut rng.clone(), len), mode);
        let missing = generator
            .symbols(len)
            .into_iter()
            .find(|s| run.vocab.tokenizer.token_to_id(s).is_none());
        let why = match missing {
            Some(token) => Some(format!("the vocabulary has no token {token:?}")),
            None => run.model.unsupported(tokens),
        };
        if let Some(why) = why {
            out.push(na(tokens, why));
            continue;
        }
        let examples = generator.eval_set(&mut rng, len, options.examples, None);
        let items: Vec<_> = examples
            .iter()
            .map(|(e, _)| data::encode(e, len, mode, &run.vocab))
            .collect();
        let mut sums = vec![vec![0.0f64; heads]; layers];
        let mut queries = 0usize;
        for chunk in items.chunks(options.batch_size.max(1)) {
            let batch = data::collate(chunk, run.vocab.pad, &run.device).batch;
            let lengths = batch.lengths.clone();
            let (_, maps) = run.model.forward_with_attention(&batch);
            for (layer, probs) in maps.into_iter().enumerate() {
                let [b, h, t, _] = probs.dims();
                let values = probs
                    .into_data()
                    .try_to_vec::<f32>()
                    .expect("f32 attention");
                for (head, s) in head_distances(&values, b, h, t, &lengths)
                    .into_iter()
                    .enumerate()
                {
                    sums[layer][head] += s;
                }
            }
            queries += lengths.iter().sum::<usize>();
        }
        let mean_distance = sums
            .into_iter()
            .map(|row| row.into_iter().map(|s| s / queries.max(1) as f64).collect())
            .collect();
        out.push(LengthDistances {
            length: len,
            tokens,
            examples: items.len(),
            mean_distance,
            uniform: uniform_distance(tokens, mode),
            unsupported: None,
        });
    }
    Analysis {
        run: cfg.name.clone(),
        encoding: cfg.model.encoding.kind().to_string(),
        mode,
        train_max_len: max_len,
        checkpoint_step: run.step,
        lengths: out,
    }
}

/// `analysis.csv`.
pub fn analysis_csv(a: &Analysis) -> String {
    let mut out = String::from("length,tokens,examples,layer,head,mean_distance,uniform\n");
    for l in &a.lengths {
        for (layer, row) in l.mean_distance.iter().enumerate() {
            for (head, d) in row.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{},{},{},{layer},{head},{d},{}",
                    l.length, l.tokens, l.examples, l.uniform
                );
            }
        }
    }
    out
}

/// The table `ordo analyze` prints: a row per length, a column per layer and head.
pub fn analysis_table(a: &Analysis) -> String {
    let heads: Vec<(usize, usize)> = a
        .lengths
        .iter()
        .find(|l| !l.mean_distance.is_empty())
        .map(|l| {
            l.mean_distance
                .iter()
                .enumerate()
                .flat_map(|(layer, row)| (0..row.len()).map(move |h| (layer, h)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = format!(
        "mean attention distance per head ({} `{}`, checkpoint step {}; L = {})\n{:>7} {:>7}",
        a.run, a.encoding, a.checkpoint_step, a.train_max_len, "length", "uniform"
    );
    for (layer, head) in &heads {
        let _ = write!(out, " {:>7}", format!("L{layer}H{head}"));
    }
    out.push('\n');
    for l in &a.lengths {
        let _ = write!(out, "{:>7} {:>7.2}", l.length, l.uniform);
        match &l.unsupported {
            Some(why) => {
                let _ = write!(out, "  n/a: {why}");
            }
            None => {
                for d in l.mean_distance.iter().flatten() {
                    let _ = write!(out, " {d:>7.2}");
                }
            }
        }
        out.push('\n');
    }
    out
}

fn plot(a: &Analysis, stem: &Path) -> Result<Vec<PathBuf>, crate::plot::PlotError> {
    use crate::plot::{LinePlot, line_plot};
    let measured: Vec<&LengthDistances> = a
        .lengths
        .iter()
        .filter(|l| !l.mean_distance.is_empty())
        .collect();
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    if let Some(first) = measured.first() {
        for (layer, row) in first.mean_distance.iter().enumerate() {
            for head in 0..row.len() {
                let points = measured
                    .iter()
                    .map(|l| (l.length as f64, l.mean_distance[layer][head]))
                    .collect();
                series.push((format!("L{layer} H{head}"), points));
            }
        }
    }
    series.push((
        "uniform".into(),
        measured
            .iter()
            .map(|l| (l.length as f64, l.uniform))
            .collect(),
    ));
    let title = format!("{}: mean attention distance per head", a.run);
    line_plot(
        stem,
        &LinePlot {
            title: &title,
            x_label: "length",
            y_label: "mean attention distance (positions)",
            series: &series,
            marker_x: Some((a.train_max_len as f64, "train L")),
            ..LinePlot::default()
        },
    )
}

/// Analyzes the run in `dir` (its lock held) and writes `analysis.json`, `analysis.csv` and
/// the plot into it.
pub fn analyze_run(
    dir: &Path,
    options: &EvalOptions,
) -> Result<(Analysis, Vec<PathBuf>), EvalError> {
    options
        .validate(&|key| format!("--{}", key.replace('_', "-")))
        .at(dir)
        .map_err(EvalError::Option)?;
    if options.sliding.is_some() {
        let field = "--sliding".into();
        return Err(crate::extrapolation::InvalidOption::NotAnalyzed { field })
            .at(dir)
            .map_err(EvalError::Option);
    }
    let run_dir = RunDir::new(dir);
    if !run_dir.is_run() {
        return Err(ordo_train::open::OpenError::NotARun(dir.to_path_buf()).into());
    }
    let _lock = run_dir.lock("analyzing")?;
    let run = load_run_with(dir, options.device.as_deref(), &options.overrides)?;
    let analysis = analyze_loaded(&run, options);
    let json = serde_json::to_string_pretty(&analysis).expect("serialises") + "\n";
    let mut files = Vec::new();
    for (name, bytes) in [
        ("analysis.json", json.into_bytes()),
        ("analysis.csv", analysis_csv(&analysis).into_bytes()),
    ] {
        let path = dir.join(name);
        write_atomic(&path, &bytes).at(&path)?;
        files.push(path);
    }
    files.extend(
        plot(&analysis, &dir.join("analysis"))
            .at(&dir.join("analysis.png"))
            .map_err(EvalError::Plot)?,
    );
    Ok((analysis, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uniform_yardstick_is_the_mean_distance_of_uniform_attention() {
        for t in 1..12 {
            for mode in [AttentionMode::Causal, AttentionMode::Bidirectional] {
                // Build the uniform attention and measure it with the same code.
                let mut probs = vec![0.0f32; t * t];
                for i in 0..t {
                    let keys = if mode == AttentionMode::Causal {
                        i + 1
                    } else {
                        t
                    };
                    for j in 0..keys {
                        probs[i * t + j] = 1.0 / keys as f32;
                    }
                }
                let sum = head_distances(&probs, 1, 1, t, &[t])[0];
                let mean = sum / t as f64;
                assert!(
                    (mean - uniform_distance(t, mode)).abs() < 1e-5,
                    "{t} {mode:?}"
                );
            }
        }
    }

    #[test]
    fn a_previous_token_head_has_distance_one_and_padding_is_left_out() {
        // t = 4 with one example of length 3 (a padded row): queries 1, 2 attend to i - 1,
        // query 0 to itself; the padded query 3 and key 3 must not count.
        let t = 4;
        let mut probs = vec![0.0f32; t * t];
        probs[0] = 1.0;
        probs[t] = 1.0; // query 1 -> key 0
        probs[2 * t + 1] = 1.0;
        probs[3 * t] = 1.0; // padding: ignored
        let sum = head_distances(&probs, 1, 1, t, &[3])[0];
        assert_eq!(sum, 2.0); // (0 + 1 + 1) over 3 queries
    }
}
