//! `ordo inspect KIND`: what each encoding looks like, as numbers (`--json`) and pictures.
//!
//! Absolute schemes: the `[len, d_model]` table. Bias schemes: the `[heads, len, len]` bias
//! (ALiBi with its slopes; T5 with its bucket map, and the learned bias from a checkpoint; Shaw's
//! clipped relative offsets). RoPE: the `[len, rotated/2]` angle table.

use burn::prelude::*;
use ordo_encodings::figure::Figure;
use ordo_encodings::{
    EncodingDims, FigureOptions, PositionalEncoding, PositionalEncodingConfig, View,
};
use serde_json::{Value, json};

pub use ordo_encodings::figure::dot_products;

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
    options: &FigureOptions,
    device: &Device,
) -> Vec<Figure> {
    let view = View {
        kind: config.kind(),
        len,
        dims: *dims,
        options,
    };
    encoding.scheme().figures(&view, device)
}

/// Reads `--figure NAME=VALUE` settings and checks each against the options the scheme's figures
/// take ([`ordo_encodings::Positional::figure_options`]).
pub fn figure_options(
    encoding: &PositionalEncoding,
    settings: &[String],
) -> Result<FigureOptions, InspectError> {
    let known = encoding.scheme().figure_options();
    let list = || {
        if known.is_empty() {
            "it takes none".to_string()
        } else {
            let each: Vec<String> = known
                .iter()
                .map(|o| format!("`{}` ({})", o.name, o.help))
                .collect();
            format!("it takes {}", each.join("; "))
        }
    };
    let mut options = FigureOptions::new();
    for setting in settings {
        let fail = |message: String| InspectError::FigureOption {
            kind: encoding.kind().to_string(),
            setting: setting.clone(),
            message,
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| fail("expected NAME=VALUE".into()))?;
        let (name, value) = (name.trim(), value.trim());
        let option = known
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| fail(format!("unknown figure option `{name}`; {}", list())))?;
        (option.check)(value).map_err(fail)?;
        options.insert(name.to_string(), value.to_string());
    }
    Ok(options)
}

/// The scheme's notes ([`Figure::Note`]): lines for the text summary.
pub fn notes(
    config: &PositionalEncodingConfig,
    encoding: &PositionalEncoding,
    dims: &EncodingDims,
    len: usize,
    options: &FigureOptions,
    device: &Device,
) -> Vec<String> {
    figures(config, encoding, dims, len, options, device)
        .into_iter()
        .filter_map(|f| match f {
            Figure::Note(line) => Some(line),
            _ => None,
        })
        .collect()
}

/// The JSON description of an encoding module at `len` positions: the config, the dimensions
/// and every number the scheme's figures carry.
pub fn describe(
    config: &PositionalEncodingConfig,
    encoding: &PositionalEncoding,
    dims: &EncodingDims,
    len: usize,
    options: &FigureOptions,
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
    for figure in figures(config, encoding, dims, len, options, device) {
        if let Figure::Data { key, value } = figure {
            obj.insert(key.into(), value);
        }
    }
    out
}

/// What `ordo inspect` cannot show.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// A `--figure NAME=VALUE` the scheme's figures do not take, or with a value they refuse.
    #[error("--figure {setting}: encoding `{kind}`: {message}")]
    FigureOption {
        kind: String,
        setting: String,
        message: String,
    },
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
pub fn plots(
    config: &PositionalEncodingConfig,
    encoding: &PositionalEncoding,
    dims: &EncodingDims,
    len: usize,
    options: &FigureOptions,
    out: &std::path::Path,
    device: &Device,
) -> Result<Vec<std::path::PathBuf>, InspectError> {
    use crate::plot::{ColorMap, Heatmap, LinePlot, heatmap, line_plot};
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let mut files = Vec::new();
    for figure in figures(config, encoding, dims, len, options, device) {
        match figure {
            Figure::Data { .. } | Figure::Note(_) => {}
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

/// One attention map: probabilities on a fixed 0-1 scale.
fn attention_map<'a>(
    title: &'a str,
    values: &'a [Vec<f64>],
    (x_label, y_label): (&'a str, &'a str),
) -> crate::plot::Heatmap<'a> {
    crate::plot::Heatmap {
        title,
        x_label,
        y_label,
        values,
        value_label: "attention",
        range: Some((0.0, 1.0)),
        color_map: crate::plot::ColorMap::Sequential,
        ..crate::plot::Heatmap::default()
    }
}

/// A trained model's attention maps for `text` (tokens split on whitespace): one heatmap per
/// layer and head (`attention-layer<L>-head<H>`), and all of them on one figure
/// (`attention-grid`: a row per layer, a column per head, one colour scale).
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
    // Every (layer, head) map: its values and title.
    let mut all: Vec<(String, Vec<Vec<f64>>)> = Vec::new();
    let mut heads = 1;
    for (layer, probs) in maps.into_iter().enumerate() {
        let [_, h, _, _] = probs.dims();
        heads = h;
        let (_, v) = tensor_rows(probs);
        for head in 0..h {
            let values = matrix(&v[head * t * t..(head + 1) * t * t], t);
            all.push((format!("layer {layer}, head {head}"), values));
        }
    }
    let mut files = Vec::new();
    for (i, (name, values)) in all.iter().enumerate() {
        let (layer, head) = (i / heads, i % heads);
        let title = format!("{}: {name}", run.config.name);
        let axes = ("key position", "query position");
        files.extend(heatmap(
            &out.join(format!("attention-layer{layer}-head{head}")),
            &attention_map(&title, values, axes),
        )?);
    }
    // All of them on one figure: a row per layer, a column per head, one scale (0 to 1).
    let panels: Vec<Heatmap> = all
        .iter()
        .map(|(name, values)| attention_map(name, values, ("key", "query")))
        .collect();
    let title = format!(
        "{}: attention, every layer (rows) x head (columns)",
        run.config.name
    );
    files.extend(crate::plot::heatmap_grid(
        &out.join("attention-grid"),
        &crate::plot::HeatmapGrid {
            title: &title,
            panels: &panels,
            cols: heads,
            panel_size: (520, 420),
        },
    )?);
    Ok(files)
}
