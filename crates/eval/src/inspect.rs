//! `ordo inspect KIND`: what each encoding looks like, as numbers (`--json`) and pictures.
//!
//! Absolute schemes: the `[len, d_model]` table. Bias schemes: the `[heads, len, len]` bias
//! (ALiBi with its slopes; T5 with its bucket map, and the learned bias from a checkpoint; Shaw's
//! clipped relative offsets). RoPE: the `[len, rotated/2]` angle table.

use burn::prelude::*;
use ordo_encodings::sinusoidal::{shift_matrix, sinusoid_table};
use ordo_encodings::{EncodingDims, PositionalEncoding, PositionalEncodingConfig};
use serde_json::{Value, json};

fn rows(values: &[f32], cols: usize) -> Value {
    Value::Array(values.chunks(cols).map(|r| json!(r)).collect())
}

fn tensor_rows<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims().to_vec();
    (dims, t.into_data().try_to_vec::<f32>().expect("f32 tensor"))
}

/// The JSON description of an encoding module at `len` positions.
pub fn describe(
    config: &PositionalEncodingConfig,
    encoding: &PositionalEncoding,
    dims: &EncodingDims,
    len: usize,
    device: &Device,
) -> Value {
    let mut out = json!({
        "kind": config.kind(),
        "params": serde_json::to_value(config).expect("config serialises"),
        "len": len,
        "d_model": dims.d_model,
        "heads": dims.n_heads,
        "mode": dims.mode,
    });
    let obj = out.as_object_mut().expect("object");
    match encoding {
        PositionalEncoding::None(_) => {}
        PositionalEncoding::Sinusoidal(s) => {
            let (_, v) = tensor_rows(s.table(len, device));
            obj.insert("table".into(), rows(&v, dims.d_model));
        }
        PositionalEncoding::Learned(l) => {
            let n = len.min(l.table.dims()[0]);
            let (_, v) = tensor_rows(l.table.val().slice_dim(0, 0..n));
            obj.insert("table".into(), rows(&v, dims.d_model));
        }
        PositionalEncoding::T5(t5) => {
            let map = t5.bucket_map(len);
            let buckets: Vec<Value> = map.chunks(len).map(|r| json!(r)).collect();
            obj.insert("buckets".into(), Value::Array(buckets));
            let (_, v) = tensor_rows(t5.bias(len, device));
            obj.insert("bias".into(), bias_rows(&v, len));
        }
        PositionalEncoding::Shaw(shaw) => {
            let k = shaw.clip() as i64;
            let offsets: Vec<Value> = shaw
                .label_map(len)
                .chunks(len)
                .map(|r| json!(r.iter().map(|&l| l as i64 - k).collect::<Vec<_>>()))
                .collect();
            obj.insert("relative_index".into(), Value::Array(offsets));
        }
        PositionalEncoding::Rope(rope) => {
            let half = rope.rotated_dims() / 2;
            let angles: Vec<f32> = rope.angles(len).into_iter().map(|a| a as f32).collect();
            obj.insert("angles".into(), rows(&angles, half));
            obj.insert("frequencies".into(), json!(rope.frequencies(len)));
            obj.insert("attention_factor".into(), json!(rope.attention_factor()));
        }
        PositionalEncoding::Alibi(alibi) => {
            obj.insert("slopes".into(), json!(alibi.slopes()));
            let (_, v) = tensor_rows(alibi.bias(len, device));
            obj.insert("bias".into(), bias_rows(&v, len));
        }
    }
    out
}

fn bias_rows(values: &[f32], len: usize) -> Value {
    Value::Array(
        values
            .chunks(len * len)
            .map(|head| rows(head, len))
            .collect(),
    )
}

/// Largest `|PE(pos + k) - M_k PE(pos)|` over `pos` in `0..len`, with `M_k` from the closed form.
pub fn check_shift(k: usize, len: usize, d_model: usize, base: f64) -> f64 {
    let table = sinusoid_table(len + k, d_model, base);
    let m = shift_matrix(k as i64, d_model, base);
    let mut worst: f64 = 0.0;
    for pos in 0..len {
        for r in 0..d_model {
            let predicted: f64 = (0..d_model)
                .map(|c| m[r * d_model + c] * table[pos * d_model + c] as f64)
                .sum();
            let actual = table[(pos + k) * d_model + r] as f64;
            worst = worst.max((predicted - actual).abs());
        }
    }
    worst
}

/// RoFormer §3.4.3 long-term decay: the bound `(1/(d/2)) Σ_{j=1}^{d/2} |S_j|` on the relative
/// score at distance `m`, with `S_j = Σ_{k<j} e^{i m θ_k}`, for distances `0..len`.
pub fn rope_decay(base: f64, d_head: usize, len: usize) -> Vec<(f64, f64)> {
    let half = d_head / 2;
    let theta: Vec<f64> = (0..half)
        .map(|i| base.powf(-((2 * i) as f64) / d_head as f64))
        .collect();
    (0..len)
        .map(|m| {
            let (mut re, mut im, mut total) = (0.0f64, 0.0f64, 0.0f64);
            for t in &theta {
                re += (m as f64 * t).cos();
                im += (m as f64 * t).sin();
                total += (re * re + im * im).sqrt();
            }
            (m as f64, total / half as f64)
        })
        .collect()
}

/// The head size of RoFormer's Figure 2 (the decay curve, base 10000, distances up to 256). The
/// paper does not print it; the figure's own curve, read from the vector path in the arXiv
/// PDF, is [`rope_decay`] at d = 128 to within 0.002 at distances 50-250 (d = 112 and 144 are
/// off by 1.3 and 1.5 on average). At a small model's head size (16 rotated dims by default) the bound
/// oscillates and the decay is hard to see, so `ordo inspect rope` draws this size unless told
/// otherwise.
pub const ROFORMER_DECAY_DIMS: usize = 128;

/// Parses `--decay-dims`: an even number of dims, or `model` for the model's rotated dims
/// (`None`).
pub fn parse_decay_dims(text: &str) -> Result<Option<usize>, String> {
    if text == "model" {
        return Ok(None);
    }
    text.parse()
        .ok()
        .filter(|&d: &usize| d >= 2 && d.is_multiple_of(2))
        .map(Some)
        .ok_or_else(|| format!("expected an even number of dims >= 2 or `model`, got {text:?}"))
}

/// `PE(i)·PE(j)` for `j` in `0..len`, from a row-major `[len, d]` table.
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

/// Builds an encoding config from `kind` and `key=value` settings of that scheme (`base=500`,
/// `layout=half`, `scaling.kind=ntk`, ...). A `learned` table without `max_len` gets `len`.
pub fn encoding_config(
    kind: &str,
    sets: &[String],
    len: usize,
) -> Result<PositionalEncodingConfig, String> {
    let mut table = toml::Table::new();
    table.insert("kind".into(), toml::Value::String(kind.into()));
    for s in sets {
        ordo_train::config::apply_override(&mut table, s).map_err(|e| e.to_string())?;
    }
    let mut config: PositionalEncodingConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            let inner = ordo_train::config::friendly(&e.into_inner().to_string());
            if path == "." {
                format!("encoding `{kind}`: {inner}")
            } else {
                format!("encoding `{kind}`: `{path}`: {inner}")
            }
        })?;
    if let PositionalEncodingConfig::Learned { max_len } = &mut config
        && *max_len == 0
    {
        *max_len = len;
    }
    Ok(config)
}

/// In causal mode, keys after the query are masked: drawn grey (NaN) rather than as a bias of 0.
fn masked(mut m: Vec<Vec<f64>>, mode: ordo_encodings::AttentionMode) -> Vec<Vec<f64>> {
    if mode == ordo_encodings::AttentionMode::Causal {
        for (i, row) in m.iter_mut().enumerate() {
            for v in row.iter_mut().skip(i + 1) {
                *v = f64::NAN;
            }
        }
    }
    m
}

fn matrix(values: &[f32], cols: usize) -> Vec<Vec<f64>> {
    values
        .chunks(cols)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect()
}

/// Draws every picture that applies to the scheme into `out`; returns the files written.
/// RoPE's decay curve is drawn for `decay_dims` dims (`None`: the model's rotated dims).
pub fn plots(
    config: &PositionalEncodingConfig,
    encoding: &PositionalEncoding,
    dims: &EncodingDims,
    len: usize,
    decay_dims: Option<usize>,
    out: &std::path::Path,
    device: &Device,
) -> Result<Vec<std::path::PathBuf>, String> {
    use crate::plot::{Heatmap, LinePlot, heatmap, line_plot};
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let kind = config.kind();
    let mut files = Vec::new();
    let absolute =
        |table: Vec<f32>, what: &str, files: &mut Vec<std::path::PathBuf>| -> Result<(), String> {
            let d = dims.d_model;
            let title = format!("{kind}: {what} [{} positions x {d} dims]", table.len() / d);
            files.extend(heatmap(
                &out.join(format!("{kind}-table")),
                &Heatmap {
                    title: &title,
                    x_label: "dimension",
                    y_label: "position",
                    values: &matrix(&table, d),
                    value_label: "value",
                    ..Heatmap::default()
                },
            )?);
            // A learned table may have fewer rows than `len`.
            let rows = table.len() / d;
            let anchors = [0, rows / 4, rows / 2, 3 * rows / 4];
            let series: Vec<(String, Vec<(f64, f64)>)> = anchors
                .iter()
                .map(|&i| (format!("i = {i}"), dot_products(&table, d, i)))
                .collect();
            let title = format!("{kind}: PE(i)·PE(j) against j - i");
            files.extend(line_plot(
                &out.join(format!("{kind}-dot-products")),
                &LinePlot {
                    title: &title,
                    x_label: "j - i",
                    y_label: "PE(i)·PE(j)",
                    series: &series,
                    points: false,
                    ..LinePlot::default()
                },
            )?);
            Ok(())
        };
    let bias_maps =
        |bias: Vec<f32>, what: &str, files: &mut Vec<std::path::PathBuf>| -> Result<(), String> {
            for (h, head) in bias.chunks(len * len).enumerate() {
                let title = format!("{kind} {what}, head {h} ({:?})", dims.mode);
                files.extend(heatmap(
                    &out.join(format!("{kind}-bias-head{h}")),
                    &Heatmap {
                        title: &title,
                        x_label: "key position j",
                        y_label: "query position i",
                        values: &masked(matrix(head, len), dims.mode),
                        value_label: "logit bias",
                        ..Heatmap::default()
                    },
                )?);
            }
            Ok(())
        };
    match encoding {
        PositionalEncoding::None(_) => {}
        PositionalEncoding::Sinusoidal(s) => {
            let (_, v) = tensor_rows(s.table(len, device));
            absolute(v, "sinusoid table", &mut files)?;
        }
        PositionalEncoding::Learned(l) => {
            let n = len.min(l.table.dims()[0]);
            let (_, v) = tensor_rows(l.table.val().slice_dim(0, 0..n));
            absolute(v, "learned table", &mut files)?;
        }
        PositionalEncoding::T5(t5) => {
            let map: Vec<f32> = t5.bucket_map(len).into_iter().map(|b| b as f32).collect();
            let title = format!("t5 buckets ({:?}, {} buckets)", dims.mode, t5.num_buckets());
            files.extend(heatmap(
                &out.join("t5-buckets"),
                &Heatmap {
                    title: &title,
                    x_label: "key position j",
                    y_label: "query position i",
                    values: &matrix(&map, len),
                    value_label: "bucket",
                    color_map: crate::plot::ColorMap::Sequential,
                    ..Heatmap::default()
                },
            )?);
            let (_, v) = tensor_rows(t5.bias(len, device));
            bias_maps(v, "bias", &mut files)?;
        }
        PositionalEncoding::Shaw(shaw) => {
            let k = shaw.clip() as f32;
            let map: Vec<f32> = shaw
                .label_map(len)
                .into_iter()
                .map(|l| l as f32 - k)
                .collect();
            let title = format!("shaw: clip(j - i, -{k}, {k})");
            files.extend(heatmap(
                &out.join("shaw-relative-index"),
                &Heatmap {
                    title: &title,
                    x_label: "key position j",
                    y_label: "query position i",
                    values: &matrix(&map, len),
                    value_label: "relative index",
                    ..Heatmap::default()
                },
            )?);
        }
        PositionalEncoding::Rope(rope) => {
            let half = rope.rotated_dims() / 2;
            let cos: Vec<f32> = rope
                .angles(len)
                .into_iter()
                .map(|a| a.cos() as f32)
                .collect();
            let title = format!("rope: cos(m θ_i) [{len} positions x {half} pairs]");
            files.extend(heatmap(
                &out.join("rope-cos-angles"),
                &Heatmap {
                    title: &title,
                    x_label: "pair i",
                    y_label: "position m",
                    values: &matrix(&cos, half),
                    value_label: "cos(m θ_i)",
                    ..Heatmap::default()
                },
            )?);
            let (d, which) = match decay_dims {
                None => (rope.rotated_dims(), "this model's rotated dims"),
                Some(ROFORMER_DECAY_DIMS) => (ROFORMER_DECAY_DIMS, "RoFormer Fig. 2's"),
                Some(d) => (d, "dims"),
            };
            let series: Vec<(String, Vec<(f64, f64)>)> = [500.0, 10000.0, 1e6]
                .iter()
                .map(|&b| (format!("base {b}"), rope_decay(b, d, len.max(2))))
                .collect();
            let title = format!("rope: long-term decay bound (RoFormer §3.4.3), d = {d} ({which})");
            files.extend(line_plot(
                &out.join("rope-decay"),
                &LinePlot {
                    title: &title,
                    x_label: "relative distance",
                    y_label: "(1/(d/2)) Σ |S_j|",
                    series: &series,
                    points: false,
                    ..LinePlot::default()
                },
            )?);
        }
        PositionalEncoding::Alibi(alibi) => {
            let (_, v) = tensor_rows(alibi.bias(len, device));
            bias_maps(v, "bias", &mut files)?;
            let series = vec![(
                "slope".to_string(),
                alibi
                    .slopes()
                    .iter()
                    .enumerate()
                    .map(|(h, &m)| (h as f64, m))
                    .collect(),
            )];
            files.extend(line_plot(
                &out.join("alibi-slopes"),
                &LinePlot {
                    title: "alibi: head slopes (paper order)",
                    x_label: "head",
                    y_label: "slope m",
                    series: &series,
                    log_y: true,
                    ..LinePlot::default()
                },
            )?);
        }
    }
    Ok(files)
}

/// A trained model's attention maps for `text` (tokens split on whitespace), one heatmap per
/// layer and head.
pub fn attention_plots(
    run: &crate::extrapolation::LoadedRun,
    text: &str,
    out: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, String> {
    use crate::plot::{Heatmap, heatmap};
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.is_empty() {
        return Err("--text: expected at least one token".into());
    }
    let mut ids = Vec::with_capacity(tokens.len());
    for t in &tokens {
        let id = run.vocab.tokenizer.token_to_id(t).ok_or_else(|| {
            format!(
                "--text: {t:?} is not in the run's vocabulary ({} tokens in {}/tokenizer.json)",
                run.vocab.len(),
                run.dir.display()
            )
        })?;
        ids.push(id as i64);
    }
    if !run.model.supports(ids.len()) {
        return Err(format!(
            "--text: {} tokens is more than `{}` can represent",
            ids.len(),
            run.config.model.encoding.kind()
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let t = ids.len();
    let batch = ordo_model::Batch {
        tokens: Tensor::from_data(TensorData::new(ids, [1, t]), &run.device),
        lengths: vec![t],
    };
    let (_, maps) = run.model.forward_with_attention(&batch);
    let mut files = Vec::new();
    for (layer, probs) in maps.into_iter().enumerate() {
        let [_, h, _, _] = probs.dims();
        let (_, v) = tensor_rows(probs);
        for head in 0..h {
            let values = matrix(&v[head * t * t..(head + 1) * t * t], t);
            let title = format!("{}: layer {layer}, head {head}", run.config.name);
            files.extend(heatmap(
                &out.join(format!("attention-layer{layer}-head{head}")),
                &Heatmap {
                    title: &title,
                    x_label: "key position",
                    y_label: "query position",
                    values: &values,
                    value_label: "attention",
                    range: Some((0.0, 1.0)),
                    color_map: crate::plot::ColorMap::Sequential,
                    ..Heatmap::default()
                },
            )?);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_decay_reproduces_roformer_figure_2_at_128_dims() {
        // Values of RoFormer's Figure 2 (arXiv 2104.09864v5), read from the curve's vector path
        // in the PDF: axis ticks 50-250 and 8-20 give the scale; each value is the path
        // linearly interpolated at the integer distance.
        let figure = [
            (50, 12.628),
            (100, 10.225),
            (150, 7.589),
            (200, 7.245),
            (250, 6.549),
        ];
        let curve = rope_decay(10000.0, ROFORMER_DECAY_DIMS, 256);
        for (m, want) in figure {
            let (x, got) = curve[m];
            assert_eq!(x, m as f64);
            assert!((got - want).abs() < 0.01, "distance {m}: {got} vs {want}");
        }
        // Distance 0: |S_j| = j, so the mean is (d/2 + 1)/2.
        assert_eq!(curve[0].1, 32.5);
        // Half the size is far off the figure.
        let small = rope_decay(10000.0, 64, 256);
        assert!((small[50].1 - 12.628).abs() > 1.0, "{}", small[50].1);
    }

    #[test]
    fn decay_dims_parse() {
        assert_eq!(parse_decay_dims("128"), Ok(Some(128)));
        assert_eq!(parse_decay_dims("model"), Ok(None));
        for bad in ["7", "0", "x", ""] {
            assert!(parse_decay_dims(bad).unwrap_err().contains("even"), "{bad}");
        }
    }
}
