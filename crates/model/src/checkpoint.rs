//! Saving and loading a model together with the config that built it.
//!
//! A checkpoint is two files: `<stem>.bpk` (burnpack weights) and `<stem>.json` (the
//! [`ModelConfig`] and vocabulary size). Loading checks the config first, so a checkpoint of one
//! positional scheme never loads into a model of another (schemes without parameters, such as
//! `rope` and `alibi`, would otherwise load silently). Both files are written atomically.

use crate::{ModelConfig, Transformer};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not a valid checkpoint description: {message}")]
    Format { path: PathBuf, message: String },
    #[error(
        "{path}: checkpoint was trained with encoding `{found}`, but the model is configured with `{expected}`"
    )]
    EncodingMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: checkpoint model config differs from the requested one in `{field}`")]
    ConfigMismatch { path: PathBuf, field: String },
    #[error("{path}: could not load weights: {message}")]
    Weights { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    model: ModelConfig,
    vocab_size: usize,
}

fn with_ext(stem: &Path, ext: &str) -> PathBuf {
    let mut p = stem.as_os_str().to_owned();
    p.push(".");
    p.push(ext);
    PathBuf::from(p)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a reader (or a crash)
/// sees the old file or the new one, never a part.
///
/// The temporary file's name is unique (`.<name>.<host>.<pid>.<random>.<n>.tmp` beside `path`)
/// and created with `create_new`, so it never opens another writer's file: two processes
/// writing the same file at the same moment (two shards of a job array) each rename their own
/// temporary file, and the last rename wins. The process id alone is not enough: in containers
/// with their own PID namespace (docker, Kubernetes, enroot, apptainer `--containall`) every
/// process can be pid 1, on one host or on many sharing a file system. After the rename the
/// directory is synced too, so that the new name survives a crash of the machine.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name to write")
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", unique_tag()));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        // Flush to disk before the rename so a crash leaves the old file or the new one.
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_parent(path);
        Ok(())
    })();
    if written.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    written
}

/// Syncs the directory holding `path`, so that a rename or a new name in it is durable. Best
/// effort: some file systems refuse to sync a directory, which changes nothing we could act on.
pub fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all().ok();
    }
}

/// A tag no other writer uses at the same time: the host name, the process id, a random number
/// drawn once per process, and a counter (`<host>.<pid>.<random>.<n>`).
pub fn unique_tag() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PROCESS: OnceLock<String> = OnceLock::new();
    let process = PROCESS.get_or_init(|| {
        format!(
            "{}.{}.{:016x}",
            host_name(),
            std::process::id(),
            random_u64()
        )
    });
    format!("{process}.{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `host`), reduced to
/// characters safe in a file name.
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "host".into()
    } else {
        clean
    }
}

/// 64 random bits: the operating system's (`/dev/urandom`), else a hash seeded by the standard
/// library's per-process random keys, the time and the process id.
pub fn random_u64() -> u64 {
    use std::io::Read;
    let mut buf = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u64::from_le_bytes(buf);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Saves `model` (built from `config` for `vocab_size` tokens) as `<stem>.bpk` + `<stem>.json`.
pub fn save_model(
    model: &Transformer,
    config: &ModelConfig,
    vocab_size: usize,
    stem: &Path,
) -> Result<(), CheckpointError> {
    let weights = with_ext(stem, "bpk");
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| CheckpointError::Weights {
            path: weights.clone(),
            message: format!("{e:?}"),
        })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| CheckpointError::Io { path, cause }
    };
    write_atomic(&weights, &bytes).map_err(io(&weights))?;
    let meta_path = with_ext(stem, "json");
    let meta = Meta {
        model: config.clone(),
        vocab_size,
    };
    let text = serde_json::to_string_pretty(&meta).expect("config serialises");
    write_atomic(&meta_path, text.as_bytes()).map_err(io(&meta_path))
}

/// Reads the config a checkpoint was saved with: `(model config, vocab size)`.
pub fn read_config(stem: &Path) -> Result<(ModelConfig, usize), CheckpointError> {
    let path = with_ext(stem, "json");
    let text = std::fs::read_to_string(&path).map_err(|cause| CheckpointError::Io {
        path: path.clone(),
        cause,
    })?;
    let meta: Meta = serde_json::from_str(&text).map_err(|e| CheckpointError::Format {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok((meta.model, meta.vocab_size))
}

/// Builds a model from `config` and loads the checkpoint at `stem` into it, after checking that
/// the checkpoint was saved from the same config (the positional scheme first).
pub fn load_model(
    config: &ModelConfig,
    vocab_size: usize,
    stem: &Path,
    device: &Device,
) -> Result<Transformer, CheckpointError> {
    let meta_path = with_ext(stem, "json");
    let (saved, saved_vocab) = read_config(stem)?;
    if saved.encoding.kind() != config.encoding.kind() {
        return Err(CheckpointError::EncodingMismatch {
            path: meta_path,
            found: saved.encoding.kind().into(),
            expected: config.encoding.kind().into(),
        });
    }
    let mismatch = |field: &str| CheckpointError::ConfigMismatch {
        path: meta_path.clone(),
        field: field.into(),
    };
    if saved_vocab != vocab_size {
        return Err(mismatch("vocab_size"));
    }
    let checks = [
        ("d_model", saved.d_model != config.d_model),
        ("n_heads", saved.n_heads != config.n_heads),
        ("n_layers", saved.n_layers != config.n_layers),
        ("d_ff", saved.d_ff() != config.d_ff()),
        ("mode", saved.mode != config.mode),
        (
            "tie_embeddings",
            saved.tie_embeddings != config.tie_embeddings,
        ),
    ];
    if let Some((field, _)) = checks.iter().find(|(_, differs)| *differs) {
        return Err(mismatch(field));
    }
    let weights = with_ext(stem, "bpk");
    let bytes = std::fs::read(&weights).map_err(|cause| CheckpointError::Io {
        path: weights.clone(),
        cause,
    })?;
    let weights_err = |e: burn::store::RecordError| CheckpointError::Weights {
        path: weights.clone(),
        message: match format!("{e:?}") {
            m if m.contains("Missing tensors") => format!(
                "{m}; the file does not hold this model's parameters (written by another \
                 version of ordo, whose layout differed?)"
            ),
            m => m,
        },
    };
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(weights_err)?;
    config
        .init(vocab_size, device)
        .try_load_record(record)
        .map_err(weights_err)
}
