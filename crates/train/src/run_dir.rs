//! One type for a run directory: every file name in it, its lock, its recorded inputs.
//!
//! ```text
//! <out_dir>/<name>/
//!   config.toml        the fully resolved config (paths relative to this directory)
//!   tokenizer.json     the vocabulary
//!   inputs.json        content hash of every input file read (corpus, lexicon, tokenizer)
//!   metrics.jsonl      one JSON object per log step and per evaluation
//!   checkpoint/        state.json -> model-<step>.bpk/.json, optim-<step>.bpk
//!   summary.json       written when training finishes
//!   eval[-<variant>].json / .csv   `ordo eval` (variant: RoPE scaling, sliding windows)
//!   cell.json          `ordo ablate`: which cell of a grid this is
//!   .lock              held (an OS file lock) while a process trains, resumes or evaluates
//! ```
//!
//! Nobody else spells these names: train, eval, ablate and report all go through [`RunDir`].
//!
//! Locks are advisory OS file locks (`flock`): the kernel drops them when the holding process
//! exits or is killed, even by `kill -9`, so a lock never needs a hand to remove. The lock file
//! itself stays (removing it would let two processes lock two different files); it holds a line
//! naming its last holder, which is what a refused process prints.

use ordo_model::checkpoint::write_atomic;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Errors about a run directory as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error(
        "{lock} is held by another process ({holder}); wait for it to finish, or stop it \
         (the lock goes away with the process)"
    )]
    Busy { lock: PathBuf, holder: String },
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{path}: this input changed since the run read it (content hash {recorded} then, {now} \
         now); restore the file the run was trained on, or start a new run"
    )]
    InputChanged {
        path: PathBuf,
        recorded: String,
        now: String,
    },
    #[error(
        "{path}: this input of the run is missing (it had content hash {recorded}); restore it \
         at that path (relative to the run directory {run})"
    )]
    InputMissing {
        path: PathBuf,
        run: PathBuf,
        recorded: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |cause| RunDirError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Which evaluation an `eval*.json` file holds: the default one, or one with eval-time options
/// that change the model (RoPE scaling) or the protocol (sliding windows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalVariant {
    /// A short scaling name (`linear4`, `yarn4`), `None` without scaling.
    pub scaling: Option<String>,
    /// Sliding-window stride.
    pub sliding: Option<usize>,
}

impl EvalVariant {
    /// `""`, `-yarn4`, `-sliding8`, `-yarn4-sliding8`.
    pub fn suffix(&self) -> String {
        let mut suffix = String::new();
        if let Some(s) = &self.scaling {
            suffix.push('-');
            suffix.push_str(s);
        }
        if let Some(stride) = self.sliding {
            suffix.push_str(&format!("-sliding{stride}"));
        }
        suffix
    }
}

/// A run directory (see the module docs for its layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> PathBuf {
        self.path.join("config.toml")
    }
    pub fn tokenizer(&self) -> PathBuf {
        self.path.join("tokenizer.json")
    }
    pub fn inputs(&self) -> PathBuf {
        self.path.join("inputs.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }
    pub fn summary(&self) -> PathBuf {
        self.path.join("summary.json")
    }
    pub fn cell(&self) -> PathBuf {
        self.path.join("cell.json")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.path.join(".lock")
    }
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.path.join("checkpoint")
    }
    /// `checkpoint/state.json`: the step of the last checkpoint (written last).
    pub fn state(&self) -> PathBuf {
        self.checkpoint_dir().join("state.json")
    }
    /// The model files of the checkpoint at `step`: `<stem>.bpk` and `<stem>.json`.
    pub fn model_stem(&self, step: usize) -> PathBuf {
        self.checkpoint_dir().join(format!("model-{step:06}"))
    }
    /// The optimizer state of the checkpoint at `step`.
    pub fn optimizer(&self, step: usize) -> PathBuf {
        self.checkpoint_dir().join(format!("optim-{step:06}.bpk"))
    }
    /// Whether `file_name` (in `checkpoint/`) belongs to a checkpoint other than `step`'s.
    pub fn is_other_checkpoint_file(file_name: &str, step: usize) -> bool {
        let keep = format!("-{step:06}.");
        (file_name.starts_with("model-") || file_name.starts_with("optim-"))
            && !file_name.contains(&keep)
    }
    pub fn eval_json(&self, variant: &EvalVariant) -> PathBuf {
        self.path.join(format!("eval{}.json", variant.suffix()))
    }
    pub fn eval_csv(&self, variant: &EvalVariant) -> PathBuf {
        self.path.join(format!("eval{}.csv", variant.suffix()))
    }

    /// Whether a run was started here (its config is written first).
    pub fn is_run(&self) -> bool {
        self.config().is_file()
    }
    /// Whether training finished (the summary is written last).
    pub fn is_trained(&self) -> bool {
        self.summary().is_file()
    }

    /// Writes `bytes` to `path` (a file of this directory) atomically.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), RunDirError> {
        write_atomic(path, bytes).map_err(io(path))
    }

    /// Writes a value as pretty JSON, atomically.
    pub fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), RunDirError> {
        let text = serde_json::to_string_pretty(value).map_err(|e| RunDirError::Invalid {
            path: path.to_path_buf(),
            message: format!("cannot serialise: {e}"),
        })?;
        self.write(path, text.as_bytes())
    }

    /// Reads a JSON file of this directory.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<T, RunDirError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        serde_json::from_str(&text).map_err(|e| RunDirError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The step of the last checkpoint (`None`: no checkpoint yet).
    pub fn last_checkpoint(&self) -> Result<Option<usize>, RunDirError> {
        #[derive(Deserialize)]
        struct Step {
            step: usize,
        }
        let path = self.state();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str::<Step>(&text)
                .map(|s| Some(s.step))
                .map_err(|e| RunDirError::Invalid {
                    path,
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(cause) => Err(RunDirError::Io { path, cause }),
        }
    }

    /// Takes this run's lock for `purpose` (e.g. "training"), creating the directory if needed,
    /// or says at once who holds it. Released when the returned guard is dropped, or when the
    /// process ends in any way.
    pub fn lock(&self, purpose: &str) -> Result<RunLock, RunDirError> {
        std::fs::create_dir_all(&self.path).map_err(io(&self.path))?;
        let file = try_lock(&self.lock_file(), purpose)?;
        Ok(RunLock {
            dir: self.clone(),
            _file: file,
        })
    }

    /// Records the content hash of each input file, `(role, path)` with `path` as written in
    /// `config.toml`: relative to this directory, or absolute.
    pub fn record_inputs(&self, inputs: &[(String, PathBuf)]) -> Result<(), RunDirError> {
        let mut files = Vec::new();
        for (role, path) in inputs {
            files.push(InputFile {
                role: role.clone(),
                path: path.clone(),
                sha256: sha256_file(&self.path.join(path))?,
            });
        }
        self.write_json(&self.inputs(), &Inputs { files })
    }

    /// Checks every recorded input (paths relative to the run directory) against its hash.
    /// Runs without `inputs.json` (written by older versions) pass.
    pub fn check_inputs(&self) -> Result<(), RunDirError> {
        let path = self.inputs();
        if !path.is_file() {
            return Ok(());
        }
        let inputs: Inputs = self.read_json(&path)?;
        for file in &inputs.files {
            let at = self.path.join(&file.path);
            if !at.is_file() {
                return Err(RunDirError::InputMissing {
                    path: at,
                    run: self.path.clone(),
                    recorded: file.sha256.clone(),
                });
            }
            let now = sha256_file(&at)?;
            if now != file.sha256 {
                return Err(RunDirError::InputChanged {
                    path: at,
                    recorded: file.sha256.clone(),
                    now,
                });
            }
        }
        Ok(())
    }
}

/// A held run-directory lock; the directory is reachable through it.
#[derive(Debug)]
pub struct RunLock {
    dir: RunDir,
    _file: File,
}

impl RunLock {
    pub fn dir(&self) -> &RunDir {
        &self.dir
    }
}

/// `inputs.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub files: Vec<InputFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// `corpus`, `lexicon` or `tokenizer`.
    pub role: String,
    /// As written in `config.toml` (relative to the run directory, or absolute).
    pub path: PathBuf,
    pub sha256: String,
}

/// The SHA-256 of a file's content, in hex.
pub fn sha256_file(path: &Path) -> Result<String, RunDirError> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(hex(&sha2::Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens (creating) `path` and takes its exclusive lock without waiting; on success writes a
/// line naming this process as the holder.
pub fn try_lock(path: &Path, purpose: &str) -> Result<File, RunDirError> {
    let mut file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => {
            claim(&mut file, purpose);
            Ok(file)
        }
        Err(TryLockError::WouldBlock) => Err(RunDirError::Busy {
            lock: path.to_path_buf(),
            holder: holder(&mut file),
        }),
        Err(TryLockError::Error(cause)) => Err(RunDirError::Io {
            path: path.to_path_buf(),
            cause,
        }),
    }
}

/// Like [`try_lock`] but waits for the lock (for short critical sections such as rebuilding a
/// report).
pub fn wait_lock(path: &Path, purpose: &str) -> Result<File, RunDirError> {
    let mut file = open_lock(path)?;
    file.lock().map_err(io(path))?;
    claim(&mut file, purpose);
    Ok(file)
}

fn open_lock(path: &Path) -> Result<File, RunDirError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io(path))
}

/// Who we are, for a process that finds the lock taken.
fn claim(file: &mut File, purpose: &str) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into());
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let line = format!(
        "pid {} on {host}, {purpose}, since unix time {since}\n",
        std::process::id()
    );
    // Best effort: the lock itself is what excludes; this line only names the holder.
    let _ = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(line.as_bytes()))
        .and_then(|_| file.flush());
}

fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    match text.trim() {
        "" => "holder unknown".into(),
        line => line.to_string(),
    }
}

/// `target` relative to `base` when both are absolute (or both relative) and share a prefix
/// beyond the root: `../../data/corpus.txt`. Used to store input paths relative to the run
/// directory, so that a run directory moved together with the data it points at still finds it.
pub fn relative_to(target: &Path, base: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let target = normalize(target);
    let base = normalize(base);
    if target.is_absolute() != base.is_absolute() {
        return None;
    }
    let t: Vec<Component> = target.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    // Sharing only the root (`/tmp/...` and `/work/...`): they would not move together, so
    // the absolute path is the sturdier one.
    let root_only = target.is_absolute() && common <= 1;
    if common == 0 || root_only {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    Some(out)
}

/// Removes `.` and resolves `..` lexically (the paths compared here are not symlinked).
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ordo-rundir-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn file_names_are_spelled_once() {
        let run = RunDir::new("runs/copy");
        assert_eq!(
            run.model_stem(250),
            Path::new("runs/copy/checkpoint/model-000250")
        );
        assert_eq!(
            run.optimizer(7),
            Path::new("runs/copy/checkpoint/optim-000007.bpk")
        );
        let yarn = EvalVariant {
            scaling: Some("yarn4".into()),
            sliding: Some(8),
        };
        assert_eq!(
            run.eval_json(&yarn),
            Path::new("runs/copy/eval-yarn4-sliding8.json")
        );
        assert_eq!(
            run.eval_csv(&EvalVariant::default()),
            Path::new("runs/copy/eval.csv")
        );
        assert!(RunDir::is_other_checkpoint_file("model-000250.bpk", 500));
        assert!(!RunDir::is_other_checkpoint_file("model-000500.json", 500));
        assert!(!RunDir::is_other_checkpoint_file("state.json", 500));
        // A step that is a substring of another step's name is still another checkpoint.
        assert!(RunDir::is_other_checkpoint_file("optim-001000.bpk", 100));
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = temp("lock");
        let run = RunDir::new(&dir);
        let held = run.lock("training").unwrap();
        let err = run.lock("evaluation").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RunDirError::Busy { .. }), "{text}");
        assert!(text.contains(".lock"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("training"), "{text}");
        drop(held);
        run.lock("evaluation").unwrap();
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn inputs_are_checked_by_content() {
        let dir = temp("inputs");
        let run = RunDir::new(dir.join("run"));
        std::fs::create_dir_all(run.path()).unwrap();
        std::fs::write(dir.join("corpus.txt"), "a b c\n").unwrap();
        let rel = relative_to(&dir.join("corpus.txt"), run.path()).unwrap();
        assert_eq!(rel, Path::new("../corpus.txt"));
        run.record_inputs(&[("corpus".into(), rel.clone())])
            .unwrap();
        let inputs: Inputs = run.read_json(&run.inputs()).unwrap();
        assert_eq!(inputs.files[0].path, rel);
        run.check_inputs().unwrap();
        std::fs::write(dir.join("corpus.txt"), "a b d\n").unwrap();
        let err = run.check_inputs().unwrap_err().to_string();
        assert!(
            err.contains("corpus.txt") && err.contains("changed"),
            "{err}"
        );
        std::fs::remove_file(dir.join("corpus.txt")).unwrap();
        let err = run.check_inputs().unwrap_err().to_string();
        assert!(
            err.contains("corpus.txt") && err.contains("missing"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_to(Path::new("/a/data/c.txt"), Path::new("/a/exp/runs/x")).unwrap(),
            Path::new("../../../data/c.txt")
        );
        assert_eq!(
            relative_to(Path::new("/a/./b/../c"), Path::new("/a")).unwrap(),
            Path::new("c")
        );
        assert!(relative_to(Path::new("rel/c"), Path::new("/abs")).is_none());
        assert!(relative_to(Path::new("/tmp/c"), Path::new("/work/runs/x")).is_none());
    }
}
