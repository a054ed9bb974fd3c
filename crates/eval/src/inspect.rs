//! `ordo inspect KIND`: what each encoding looks like, as numbers (`--json`) and pictures.
//!
//! Absolute schemes: the `[len, d_model]` table. Bias schemes: the `[heads, len, len]` bias
//! (ALiBi with its slopes; T5 with its bucket map, and the learned bias from a checkpoint; Shaw's
//! clipped relative offsets). RoPE: the `[len, rotated/2]` angle table.

use burn::prelude::*;
use ordo_encodings::figure::Figure;
use ordo_encodings::sinusoidal::{shift_matrix, sinusoid_table};
use ordo_encodings::{EncodingDims, PositionalEncoding, PositionalEncodingConfig, View};
use serde_json::{Value, json};

pub use ordo_encodings::figure::dot_products;
pub use ordo_encodings::rope::{ROFORMER_DECAY_DIMS, decay as rope_decay};

fn tensor_rows<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims().to_vec();
    (dims, t.into_data().try_to_vec::<f32>().expect("f32 tensor"))
}

/// The scheme's figures at `len` positions (see [`ordo_encodings::Positional::figures`]).
fn figures(
    config: &PositionalEncodingConfig,
    encoding: &PositionalEncoding,
    dims: &EncodingDims,
    len: usize,
    decay_dims: Option<usize>,
    device: &Device,
) -> Vec<Figure> {
    let view = View {
        kind: config.kind(),
        len,
        dims: *dims,
        decay_dims,
    };
    encoding.scheme().figures(&view, device)
}

/// The JSON description of an encoding module at `len` positions: the config, the dimensions
/// and every number the scheme's figures carry.
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
    for figure in figures(config, encoding, dims, len, None, device) {
        if let Figure::Data { key, value } = figure {
            obj.insert(key.into(), value);
        }
    }
    out
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

/// Parses `--decay-dims`: an even number of dims, or `model` for the model's rotated dims
/// (`None`).
pub fn parse_decay_dims(text: &str) -> Result<Option<usize>, InspectError> {
    if text == "model" {
        return Ok(None);
    }
    text.parse()
        .ok()
        .filter(|&d: &usize| d >= 2 && d.is_multiple_of(2))
        .map(Some)
        .ok_or_else(|| InspectError::DecayDims(text.to_string()))
}

/// What `ordo inspect` cannot show.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// `--decay-dims`, as written.
    #[error("expected an even number of dims >= 2 or `model`, got {0:?}")]
    DecayDims(String),
    /// A `key=value` setting that is not an assignment.
    #[error(transparent)]
    Set(#[from] ordo_train::config::ConfigError),
    /// The settings do not make a config of the scheme: at `key` (`None`: the whole table).
    #[error(
        "encoding `{kind}`: {}{message}",
        key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default()
    )]
    Encoding {
        kind: String,
        key: Option<String>,
        message: String,
    },
    /// The config cannot be sized to the length shown.
    #[error("encoding `{kind}` shown at --len {len}: {error}")]
    Fit {
        kind: String,
        len: usize,
        error: ordo_encodings::EncodingConfigError,
    },
    #[error("{}: {cause}", path.display())]
    Io {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    #[error("--text: expected at least one token")]
    NoTokens,
    /// A `--text` token the run's tokenizer (of `size` tokens, in `dir`) lacks.
    #[error(
        "--text: {token:?} is not in the run's vocabulary ({size} tokens in {}/tokenizer.json)",
        dir.display()
    )]
    UnknownToken {
        token: String,
        size: usize,
        dir: std::path::PathBuf,
    },
    #[error("--text: {tokens} tokens is more than `{kind}` can represent")]
    TooLong { tokens: usize, kind: String },
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> InspectError {
    let path = path.to_path_buf();
    move |cause| InspectError::Io { path, cause }
}

/// Builds an encoding config from `kind` and `key=value` settings of that scheme (`base=500`,
/// `layout=half`, `scaling.kind=ntk`, ...). A `learned` table without `max_len` gets `len`.
pub fn encoding_config(
    kind: &str,
    sets: &[String],
    len: usize,
) -> Result<PositionalEncodingConfig, InspectError> {
    let mut table = toml::Table::new();
    table.insert("kind".into(), toml::Value::String(kind.into()));
    for s in sets {
        ordo_train::config::apply_override(&mut table, s)?;
    }
    let mut config: PositionalEncodingConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            InspectError::Encoding {
                kind: kind.to_string(),
                key: (path != ".").then_some(path),
                message: ordo_train::config::friendly(&e.into_inner().to_string()),
            }
        })?;
    config
        .fit_to_length(len)
        .map_err(|error| InspectError::Fit {
            kind: kind.to_string(),
            len,
            error,
        })?;
    Ok(config)
}

fn matrix(values: &[f32], cols: usize) -> Vec<Vec<f64>> {
    values
        .chunks(cols)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect()
}

/// Draws every picture of the scheme's figures into `out`; returns the files written.
/// RoPE's decay curve is drawn for `decay_dims` dims (`None`: the model's rotated dims).
pub fn plots(
    config: &PositionalEncodingConfig,
    encoding: &PositionalEncoding,
    dims: &EncodingDims,
    len: usize,
    decay_dims: Option<usize>,
    out: &std::path::Path,
    device: &Device,
) -> Result<Vec<std::path::PathBuf>, InspectError> {
    use crate::plot::{ColorMap, Heatmap, LinePlot, heatmap, line_plot};
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let mut files = Vec::new();
    for figure in figures(config, encoding, dims, len, decay_dims, device) {
        match figure {
            Figure::Data { .. } => {}
            Figure::Heatmap(h) => files.extend(heatmap(
                &out.join(&h.file),
                &Heatmap {
                    title: &h.title,
                    x_label: h.x_label,
                    y_label: h.y_label,
                    values: &h.values,
                    value_label: h.value_label,
                    color_map: if h.sequential {
                        ColorMap::Sequential
                    } else {
                        ColorMap::default()
                    },
                    ..Heatmap::default()
                },
            )?),
            Figure::Lines(l) => files.extend(line_plot(
                &out.join(&l.file),
                &LinePlot {
                    title: &l.title,
                    x_label: l.x_label,
                    y_label: l.y_label,
                    series: &l.series,
                    log_y: l.log_y,
                    points: l.points,
                    ..LinePlot::default()
                },
            )?),
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
) -> Result<Vec<std::path::PathBuf>, InspectError> {
    use crate::plot::{Heatmap, heatmap};
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.is_empty() {
        return Err(InspectError::NoTokens);
    }
    let mut ids = Vec::with_capacity(tokens.len());
    for t in &tokens {
        let id = run
            .vocab
            .tokenizer
            .token_to_id(t)
            .ok_or_else(|| InspectError::UnknownToken {
                token: t.to_string(),
                size: run.vocab.len(),
                dir: run.dir.clone(),
            })?;
        ids.push(id as i64);
    }
    if !run.model.supports(ids.len()) {
        return Err(InspectError::TooLong {
            tokens: ids.len(),
            kind: run.config.model.encoding.kind().to_string(),
        });
    }
    std::fs::create_dir_all(out).map_err(io_err(out))?;
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
        assert_eq!(parse_decay_dims("128").unwrap(), Some(128));
        assert_eq!(parse_decay_dims("model").unwrap(), None);
        for bad in ["7", "0", "x", ""] {
            let err = parse_decay_dims(bad).unwrap_err().to_string();
            assert!(err.contains("even"), "{bad}: {err}");
        }
    }
}
