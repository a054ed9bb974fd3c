//! `ordo export model RUN [--out DIR]`: a trained run's weights as `model.safetensors` and its
//! architecture as `config.json`, in PyTorch's conventions, for tools outside ordo.
//!
//! Tensor names are the model's module paths (`blocks.0.attn.query.weight`, `tok_emb.weight`,
//! `pos.table` for a learned table), the positional scheme's enum level left out. PyTorch's
//! conventions: a `Linear` weight is `[out_features, in_features]` (burn stores `[in, out]`:
//! transposed here), `LayerNorm` parameters are `weight` and `bias` (burn's `gamma` and
//! `beta`). Every tensor is `F32`, little-endian, as the safetensors format
//! (<https://github.com/huggingface/safetensors>: an 8-byte little-endian header length, a JSON
//! header naming each tensor's dtype, shape and byte range, then the bytes) writes it; the
//! header's `__metadata__` names the format (`ordo`), the encoding and the checkpoint step.
//!
//! `config.json` holds the run's model config as ordo reads it (`model`: sizes, mode, the
//! encoding and its parameters), the vocabulary size, the training lengths, the checkpoint step
//! and the naming conventions above; `tokenizer.json` is copied beside it, and `sample.json`
//! holds one held-out example's tokens, the positions ordo placed them at (`0..t`, or its draw
//! of randomized positions) and ordo's logits for it (`[t][vocab]`), the reference a
//! reimplementation checks itself against.

use crate::extrapolation::{EvalError, load_run};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use ordo_train::run_dir::{AtPath, write_atomic};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One exported tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The model's parameters under PyTorch's names and layouts (see the module docs).
pub fn parameters<M: Module>(model: &M) -> Vec<Exported> {
    struct Collect {
        path: Vec<(String, String)>,
        out: Vec<Exported>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path
                .push((name.to_string(), container_type.to_string()));
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let tensor = param.val();
            let mut shape = tensor.dims().to_vec();
            let container = self.path.last().map(|p| p.1.clone()).unwrap_or_default();
            let field = self.path.last().map(|p| p.0.clone()).unwrap_or_default();
            // The scheme's enum variant (`Learned`, `Rope`) is not a level of the name.
            let mut names: Vec<String> = self
                .path
                .iter()
                .filter(|(_, c)| !c.starts_with("Enum:"))
                .map(|(n, _)| n.clone())
                .collect();
            let mut values = tensor
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 parameters");
            match (container.as_str(), field.as_str()) {
                ("Struct:Linear", "weight") if D == 2 => {
                    let (rows, cols) = (shape[0], shape[1]);
                    let mut t = vec![0.0f32; values.len()];
                    for r in 0..rows {
                        for c in 0..cols {
                            t[c * rows + r] = values[r * cols + c];
                        }
                    }
                    values = t;
                    shape = vec![cols, rows];
                }
                ("Struct:LayerNorm", "gamma") => {
                    *names.last_mut().expect("a field") = "weight".into();
                }
                ("Struct:LayerNorm", "beta") => {
                    *names.last_mut().expect("a field") = "bias".into();
                }
                _ => {}
            }
            self.out.push(Exported {
                name: names.join("."),
                shape,
                values,
            });
        }
    }
    let mut visitor = Collect {
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor.out
}

/// The bytes of a safetensors file holding `tensors` (in name order) and `metadata`.
pub fn safetensors(tensors: &[Exported], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut sorted: Vec<&Exported> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut offset = 0usize;
    for t in &sorted {
        let end = offset + 4 * t.values.len();
        header.insert(
            t.name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut text = serde_json::Value::Object(header).to_string();
    // The data starts 8-byte aligned (the format pads the header with spaces).
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + offset);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    for t in sorted {
        for v in &t.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Writes `model.safetensors`, `config.json` and `tokenizer.json` of the run in `dir` into
/// `out` (default `dir/export`); returns the files written.
pub fn export_model(dir: &Path, out: Option<&Path>) -> Result<Vec<PathBuf>, EvalError> {
    let run = load_run(dir, Some("cpu"))?;
    let out = out.map_or_else(|| dir.join("export"), Path::to_path_buf);
    std::fs::create_dir_all(&out).at(&out)?;
    let tensors = parameters(&run.model);
    let cfg = &run.config;
    let metadata: BTreeMap<String, String> = [
        ("format", "ordo".to_string()),
        ("encoding", cfg.model.encoding.kind().to_string()),
        ("checkpoint_step", run.step.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (min_len, max_len) = cfg.task.train_lengths();
    let config = serde_json::json!({
        "architecture": "ordo-transformer (pre-LN; causal decoder or bidirectional encoder)",
        "ordo_version": env!("CARGO_PKG_VERSION"),
        "model": cfg.model,
        "vocab_size": run.vocab.len(),
        "train_min_len": min_len,
        "train_max_len": max_len,
        "checkpoint_step": run.step,
        "naming": "module paths; Linear weight [out_features, in_features] (PyTorch's), \
                   LayerNorm weight/bias",
        "tensors": tensors.iter().map(|t| serde_json::json!({"name": t.name, "shape": t.shape})).collect::<Vec<_>>(),
    });
    // One held-out example of the longest training length and ordo's logits for it, so that a
    // reimplementation can check itself against ordo on the same input (`scripts/ordo_torch.py`).
    let mut rng = ordo_train::rng::Rng::derive(cfg.seed, "export-sample");
    let example = run.generator.held_out(&mut rng, max_len);
    let item = ordo_train::data::encode(&example, max_len, cfg.model.mode, &run.vocab);
    let t = item.input.len();
    let ids: Vec<i64> = item.input.iter().map(|&i| i64::from(i)).collect();
    let batch = ordo_model::Batch {
        tokens: Tensor::from_data(TensorData::new(ids, [1, t]), &run.device),
        lengths: vec![t],
    };
    let logits: Vec<f32> = run
        .model
        .forward(&batch)
        .into_data()
        .try_to_vec()
        .expect("f32 logits");
    let v = run.vocab.len();
    let rows: Vec<&[f32]> = logits.chunks(v).collect();
    let positions = run.model.row_positions(&batch).remove(0);
    let sample =
        serde_json::json!({ "tokens": item.input, "positions": positions, "logits": rows });
    let mut files = Vec::new();
    let tokenizer = std::fs::read(dir.join("tokenizer.json")).at(&dir.join("tokenizer.json"))?;
    for (name, bytes) in [
        ("model.safetensors", safetensors(&tensors, &metadata)),
        (
            "config.json",
            (serde_json::to_string_pretty(&config).expect("serialises") + "\n").into_bytes(),
        ),
        ("tokenizer.json", tokenizer),
        ("sample.json", (sample.to_string() + "\n").into_bytes()),
    ] {
        let path = out.join(name);
        write_atomic(&path, &bytes).at(&path)?;
        files.push(path);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Module, Debug)]
    struct Tiny {
        proj: burn::nn::Linear,
        norm: burn::nn::LayerNorm,
    }

    #[test]
    fn linear_weights_are_transposed_and_layer_norms_renamed() {
        let device = Device::flex();
        let tiny = Tiny {
            proj: burn::nn::LinearConfig::new(2, 3).init(&device),
            norm: burn::nn::LayerNormConfig::new(3).init(&device),
        };
        let burn_weight: Vec<f32> = tiny.proj.weight.val().into_data().try_to_vec().unwrap();
        let out = parameters(&tiny);
        let names: Vec<&str> = out.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["proj.weight", "proj.bias", "norm.weight", "norm.bias"]
        );
        let w = &out[0];
        assert_eq!(w.shape, [3, 2]);
        // burn's [in = 2, out = 3] row-major, PyTorch's [out, in]: element (o, i) = burn (i, o).
        for o in 0..3 {
            for i in 0..2 {
                assert_eq!(w.values[o * 2 + i], burn_weight[i * 3 + o]);
            }
        }
        assert_eq!(out[2].values, [1.0, 1.0, 1.0]);
    }

    #[test]
    fn safetensors_layout_is_the_formats() {
        let tensors = [
            Exported {
                name: "b".into(),
                shape: vec![2],
                values: vec![1.0, 2.0],
            },
            Exported {
                name: "a".into(),
                shape: vec![1, 1],
                values: vec![-0.5],
            },
        ];
        let meta = BTreeMap::from([("format".to_string(), "ordo".to_string())]);
        let bytes = safetensors(&tensors, &meta);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!((8 + n) % 8, 0, "data 8-byte aligned");
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["format"], "ordo");
        assert_eq!(header["a"]["data_offsets"], serde_json::json!([0, 4]));
        assert_eq!(header["b"]["data_offsets"], serde_json::json!([4, 12]));
        assert_eq!(header["b"]["shape"], serde_json::json!([2]));
        let data = &bytes[8 + n..];
        assert_eq!(data.len(), 12);
        assert_eq!(f32::from_le_bytes(data[0..4].try_into().unwrap()), -0.5);
        assert_eq!(f32::from_le_bytes(data[8..12].try_into().unwrap()), 2.0);
    }
}
