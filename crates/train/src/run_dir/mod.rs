//! One type for a run directory: every file name in it, its lock, its recorded inputs.
//!
//! ```text
//! <out_dir>/<name>/
//!   config.toml        the fully resolved config (paths relative to this directory)
//!   tokenizer.json     the vocabulary
//!   inputs.json        content hash of every input file read (corpus, lexicon, tokenizer)
//!   provenance.json    each training session: ordo version and commit, CPU kernel tier, host,
//!                      hashes of the data compiled in (the built-in lexicon)
//!   metrics.jsonl      one JSON object per log step and per evaluation
//!   checkpoint/        state.json -> model-<step>.bpk/.json, optim-<step>.bpk
//!   summary.json       written when training finishes
//!   eval[-<variant>].json / .csv   `ordo eval` (variant: --set overrides, sliding windows)
//!   cell.json          `ordo ablate`: which cell of a grid this is
//!   .lock              held (an OS file lock) while a process trains, resumes or evaluates
//!   .claim             the same, as a file of its own with a heartbeat (works across nodes)
//! ```
//!
//! Nobody else spells these names: train, eval, ablate and report all go through [`RunDir`].
//!
//! A run is held in two ways at once, so that it is exclusive on one machine and across the
//! nodes of a cluster:
//! - **`.lock`, an OS file lock** (`flock`), the fast path: the kernel drops it when the holding
//!   process exits or is killed, even by `kill -9`. The lock file itself stays (removing it
//!   would let two processes lock two different files); it holds a line naming its last holder,
//!   which is what a refused process prints. On several cluster file systems flock is accepted
//!   but local to the node (BeeGFS by default, Lustre with `localflock`, NFS with `nolock` or
//!   `local_lock=flock|all`), so it alone cannot keep two nodes apart.
//! - **`.claim`, a claim file** ([`Claim`]), created with an exclusive create (`O_EXCL`, atomic
//!   on NFSv3 and later, Lustre, BeeGFS and local file systems) and holding the holder's host,
//!   process id, boot id and PID namespace; a thread refreshes its modification time every
//!   [`HEARTBEAT`] while the run is held, and the claim is removed on release. A claim left by
//!   a process that died is taken over, with a message: at once when it was made on this
//!   machine, in this PID namespace, by a process that no longer exists (or before this
//!   machine's last boot); otherwise once its heartbeat is older than [`STALE_AFTER`].

pub mod atomic;

pub use atomic::write_atomic;
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
    #[error(
        "{path}: another process took this run over while this one held it (its heartbeat \
         was missed for a long time, e.g. a suspended job); this process stopped writing"
    )]
    ClaimLost { path: PathBuf },
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

/// An error about one file or directory that keeps its own type beside the path (as ripgrep's
/// `WithPath`): shown as `PATH: ERROR`, matched on by its `error`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct WithPath<E: std::error::Error> {
    pub path: PathBuf,
    pub error: E,
}

/// `result.at(path)`: the error of `result`, kept with `path` ([`WithPath`]).
pub trait AtPath<T, E: std::error::Error> {
    fn at(self, path: &Path) -> Result<T, WithPath<E>>;
}

impl<T, E: std::error::Error> AtPath<T, E> for Result<T, E> {
    fn at(self, path: &Path) -> Result<T, WithPath<E>> {
        self.map_err(|error| WithPath {
            path: path.to_path_buf(),
            error,
        })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |cause| RunDirError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Which evaluation an `eval*.json` file holds: the default one, or one with eval-time options
/// that change the model (overrides of its encoding) or the protocol (sliding windows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalVariant {
    /// A name of the encoding's overrides (`scaling.factor=4,scaling.kind=yarn`, made
    /// file-name safe by the evaluation), `None` without overrides.
    pub overrides: Option<String>,
    /// Sliding-window stride.
    pub sliding: Option<usize>,
}

impl EvalVariant {
    /// `""`, `-<overrides>`, `-sliding8`, `-<overrides>-sliding8`.
    pub fn suffix(&self) -> String {
        let mut suffix = String::new();
        if let Some(s) = &self.overrides {
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
    /// `provenance.json`: what trained the run, one entry per training session.
    pub fn provenance(&self) -> PathBuf {
        self.path.join("provenance.json")
    }

    /// Appends this process's [`Session`] to `provenance.json` (for `purpose`: `train`,
    /// `resume`), recording the data compiled into ordo that the run reads.
    pub fn record_session(
        &self,
        purpose: &str,
        builtin: &[(&'static str, &'static str)],
    ) -> Result<(), RunDirError> {
        let path = self.provenance();
        let mut provenance: Provenance = if path.is_file() {
            self.read_json(&path)?
        } else {
            Provenance::default()
        };
        provenance.sessions.push(Session {
            purpose: purpose.to_string(),
            ordo_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("ORDO_GIT_COMMIT").to_string(),
            kernel_tier: ordo_kernels::cpu::tier().to_string(),
            host: atomic::host_name(),
            since: unix_now(),
            builtin_inputs: builtin
                .iter()
                .map(|(name, text)| (name.to_string(), sha256_text(text)))
                .collect(),
        });
        self.write_json(&path, &provenance)
    }

    /// `.claim`: the claim file (see the module docs).
    pub fn claim_file(&self) -> PathBuf {
        self.path.join(".claim")
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
    /// Only names ordo writes count: `model-<digits>.bpk`, `model-<digits>.json` and
    /// `optim-<digits>.bpk`; any other file a user put there is left alone.
    pub fn is_other_checkpoint_file(file_name: &str, step: usize) -> bool {
        let ours = |prefix: &str, exts: &[&str]| {
            file_name.strip_prefix(prefix).is_some_and(|rest| {
                rest.split_once('.').is_some_and(|(digits, ext)| {
                    digits.len() >= 6
                        && digits.bytes().all(|b| b.is_ascii_digit())
                        && exts.contains(&ext)
                        && digits.parse::<usize>().ok() != Some(step)
                })
            })
        };
        ours("model-", &["bpk", "json"]) || ours("optim-", &["bpk"])
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
        self.lock_with(purpose, flock_excludes())
    }

    /// [`RunDir::lock`]; without `flock`, only the claim file (what a second node sees on a
    /// file system whose locks are local to the node; for tests).
    #[doc(hidden)]
    pub fn lock_with(&self, purpose: &str, flock: bool) -> Result<RunLock, RunDirError> {
        std::fs::create_dir_all(&self.path).map_err(io(&self.path))?;
        let hold = Hold::take_with(&self.lock_file(), &self.claim_file(), purpose, flock)?;
        let lock = RunLock {
            dir: self.clone(),
            hold,
        };
        lock.remove_temporaries();
        Ok(lock)
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
    /// Runs without `inputs.json` pass only when they are of a version before it was written
    /// (no `provenance.json` either): a run of this version always has one, so a deleted
    /// `inputs.json` is an error, not a silent pass.
    pub fn check_inputs(&self) -> Result<(), RunDirError> {
        let path = self.inputs();
        if !path.is_file() {
            if self.provenance().is_file() {
                return Err(RunDirError::Invalid {
                    path,
                    message: "missing: this run recorded its inputs' content hashes there, \
                              which are needed to check them; restore the file or train the run \
                              again"
                        .into(),
                });
            }
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

/// Whether `flock` excludes other processes here. Test builds only can say it does not (as on
/// a file system whose locks are local to each node), so that the command-line tests can show
/// that the claims alone suffice.
fn flock_excludes() -> bool {
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("ORDO_TEST_NODE_LOCAL_FLOCK").is_some() {
        return false;
    }
    true
}

/// Something held exclusively across processes and nodes: an OS file lock on `lock` (the fast
/// path on one machine) and a [`Claim`] on `claim` (which works where flock is local to each
/// node). A run directory is held this way ([`RunLock`]), and so is an experiment's report
/// while a process rebuilds it. Released when dropped: the claim first, then the OS lock.
#[derive(Debug)]
pub struct Hold {
    claim: Claim,
    _file: File,
}

impl Hold {
    /// Takes both at once or says who holds them ([`RunDirError::Busy`]).
    pub fn take(lock: &Path, claim: &Path, purpose: &str) -> Result<Hold, RunDirError> {
        Hold::take_with(lock, claim, purpose, flock_excludes())
    }

    fn take_with(
        lock: &Path,
        claim: &Path,
        purpose: &str,
        flock: bool,
    ) -> Result<Hold, RunDirError> {
        let file = if flock {
            try_lock(lock, purpose)?
        } else {
            open_lock(lock)?
        };
        let claim = Claim::acquire(claim, purpose)?;
        Ok(Hold { claim, _file: file })
    }

    /// Whether the claim is still this process's (see [`Claim::held`]).
    pub fn held(&self) -> Held {
        self.claim.held()
    }
}

/// A held run directory: its `.lock` and its `.claim`; the directory is reachable through it.
#[derive(Debug)]
pub struct RunLock {
    dir: RunDir,
    hold: Hold,
}

impl RunLock {
    pub fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// Removes the temporary files ([`write_atomic`]'s `.*.tmp`) of the run directory and its
    /// checkpoint directory: whoever holds the run is the only writer there, so any such file
    /// was left by a writer that died before its rename.
    fn remove_temporaries(&self) {
        for dir in [self.dir.path().to_path_buf(), self.dir.checkpoint_dir()] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    std::fs::remove_file(entry.path()).ok();
                }
            }
        }
    }

    /// Whether the claim is still this process's (see [`Claim::held`]).
    pub fn held(&self) -> Held {
        self.hold.held()
    }
}

/// How often a held claim's heartbeat (its file's modification time) is refreshed.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);
/// A claim whose heartbeat is older than this is taken to be left by a dead process (ten
/// heartbeats: NFS clients may cache a file's times for up to a minute).
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// What a claim file says about its holder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimInfo {
    /// Unique to the claiming process and call ([`atomic::unique_tag`]).
    pub tag: String,
    pub host: String,
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id`: the kernel instance (shared by the containers of one
    /// machine, different on every node and after every reboot).
    pub boot_id: String,
    /// `/proc/self/ns/pid`: a process id means something only in its PID namespace.
    pub pid_ns: String,
    /// The start time of the process (`/proc/<pid>/stat` field 22), so that a reused pid is not
    /// taken for the claimant.
    pub start_ticks: u64,
    pub purpose: String,
    /// Unix time of the claim.
    pub since: u64,
}

impl ClaimInfo {
    fn ours(purpose: &str) -> ClaimInfo {
        let pid = std::process::id();
        ClaimInfo {
            tag: atomic::unique_tag(),
            host: atomic::host_name(),
            pid,
            boot_id: boot_id(),
            pid_ns: pid_namespace(),
            start_ticks: start_ticks(pid).unwrap_or(0),
            purpose: purpose.to_string(),
            since: unix_now(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "pid {} on {}, {}, since unix time {}",
            self.pid, self.host, self.purpose, self.since
        )
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Field 22 of `/proc/<pid>/stat` (after the parenthesised command name, which may hold
/// spaces); `None` when there is no such process.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a claim's process is known to be gone, and why; `None` when it may be alive.
fn claimant_gone(info: &ClaimInfo, age: std::time::Duration) -> Option<String> {
    let (boot, ns) = (boot_id(), pid_namespace());
    if !boot.is_empty() && info.boot_id == boot && info.pid_ns == ns && !ns.is_empty() {
        let alive =
            start_ticks(info.pid).is_some_and(|t| info.start_ticks == 0 || t == info.start_ticks);
        if !alive {
            return Some(format!("its process {} on this machine is gone", info.pid));
        }
        return None;
    }
    if !boot.is_empty() && info.host == atomic::host_name() && info.boot_id != boot {
        return Some("this machine has rebooted since".into());
    }
    (age > STALE_AFTER).then(|| {
        format!(
            "its heartbeat is {} s old (a live holder refreshes it every {} s)",
            age.as_secs(),
            HEARTBEAT.as_secs()
        )
    })
}

/// Whether a claim is still its holder's: false once another process took it over (after a
/// heartbeat of ours went missing for [`STALE_AFTER`], e.g. a suspended job).
#[derive(Debug, Clone)]
pub struct Held(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Held {
    fn new() -> Held {
        Held(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
            true,
        )))
    }

    pub fn still_held(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A claim file held by this process, refreshed by a heartbeat thread and removed on drop
/// (see the module docs).
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    tag: String,
    held: Held,
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn read_claim(path: &Path) -> std::io::Result<(Option<ClaimInfo>, std::time::Duration)> {
    let text = std::fs::read_to_string(path)?;
    let modified = std::fs::metadata(path)?.modified()?;
    let age = std::time::SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    Ok((serde_json::from_str(&text).ok(), age))
}

impl Claim {
    /// Claims `path` for `purpose` by creating it exclusively, taking over a claim left by a
    /// dead process; [`RunDirError::Busy`] when a live process holds it.
    pub fn acquire(path: &Path, purpose: &str) -> Result<Claim, RunDirError> {
        Claim::acquire_beating(path, purpose, HEARTBEAT)
    }

    /// [`Claim::acquire`] with another heartbeat interval (for tests).
    #[doc(hidden)]
    pub fn acquire_beating(
        path: &Path,
        purpose: &str,
        every: std::time::Duration,
    ) -> Result<Claim, RunDirError> {
        let ours = ClaimInfo::ours(purpose);
        let text = serde_json::to_string_pretty(&ours).expect("claim serialises");
        for _ in 0..4 {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    file.write_all(text.as_bytes())
                        .and_then(|_| file.sync_all())
                        .map_err(io(path))?;
                    atomic::sync_parent(path);
                    return Ok(Claim::start(path, ours.tag, every));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(cause) => {
                    return Err(RunDirError::Io {
                        path: path.to_path_buf(),
                        cause,
                    });
                }
            }
            let (info, age) = match read_claim(path) {
                Ok(read) => read,
                // Released between our create and our read: try again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(cause) => {
                    return Err(RunDirError::Io {
                        path: path.to_path_buf(),
                        cause,
                    });
                }
            };
            let why = match &info {
                Some(info) => claimant_gone(info, age),
                // Being written, or garbage: only its age can tell.
                None => (age > STALE_AFTER)
                    .then(|| format!("it is unreadable and {} s old", age.as_secs())),
            };
            let holder = info
                .as_ref()
                .map_or("holder unknown".into(), ClaimInfo::describe);
            let Some(why) = why else {
                return Err(RunDirError::Busy {
                    lock: path.to_path_buf(),
                    holder,
                });
            };
            take_over(path, info.as_ref().map(|i| i.tag.as_str()), &holder, &why)?;
        }
        Err(RunDirError::Busy {
            lock: path.to_path_buf(),
            holder: "claimed again and again by other processes".into(),
        })
    }

    fn start(path: &Path, tag: String, every: std::time::Duration) -> Claim {
        let held = Held::new();
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let thread = {
            let (path, tag, held, stop) =
                (path.to_path_buf(), tag.clone(), held.clone(), stop.clone());
            std::thread::Builder::new()
                .name("ordo-claim".into())
                .spawn(move || heartbeat(&path, &tag, &held, &stop, every))
                .ok()
        };
        Claim {
            path: path.to_path_buf(),
            tag,
            held,
            stop,
            thread,
        }
    }

    pub fn held(&self) -> Held {
        self.held.clone()
    }

    /// Whether the claim file at `path` is this claim (its tag).
    fn is_ours(path: &Path, tag: &str) -> bool {
        matches!(read_claim(path), Ok((Some(info), _)) if info.tag == tag)
    }
}

/// Refreshes the claim's modification time every [`HEARTBEAT`] until told to stop; gives up,
/// marking the claim lost, if the file is no longer ours.
fn heartbeat(
    path: &Path,
    tag: &str,
    held: &Held,
    stop: &(std::sync::Mutex<bool>, std::sync::Condvar),
    every: std::time::Duration,
) {
    let (lock, wake) = stop;
    let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (guard, _) = wake
            .wait_timeout_while(stopped, every, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        stopped = guard;
        if *stopped {
            return;
        }
        if !Claim::is_ours(path, tag) {
            held.0.store(false, std::sync::atomic::Ordering::SeqCst);
            eprintln!(
                "warning: {}: this process's claim was taken over by another process (its \
                 heartbeat was missed for {} s); stopping at the next checkpoint",
                path.display(),
                STALE_AFTER.as_secs()
            );
            return;
        }
        if let Ok(f) = OpenOptions::new().write(true).open(path) {
            f.set_modified(std::time::SystemTime::now()).ok();
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        {
            let (lock, wake) = &*self.stop;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
        if self.held.still_held() && Claim::is_ours(&self.path, &self.tag) {
            std::fs::remove_file(&self.path).ok();
        }
    }
}

/// Why OS file locks under `path` may be local to each node, from the mount table
/// (`/proc/self/mountinfo`): NFS mounted `nolock` or `local_lock=flock|all`, Lustre mounted
/// `localflock`, BeeGFS (whose shipped default, `tuneUseGlobalFileLocks = false`, keeps flock
/// local), and FUSE file systems (each mount keeps its own locks). `None` when none applies or
/// the table cannot be read.
pub fn node_local_locks(path: &Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path = std::fs::canonicalize(path).ok()?;
    node_local_locks_in(&table, &path)
}

/// [`node_local_locks`] over the text of a mount table.
pub fn node_local_locks_in(mountinfo: &str, path: &Path) -> Option<String> {
    // Fields: id parent major:minor root mount-point options [optional...] - fstype source
    // super-options. The mount whose mount point is the longest prefix of `path` holds it.
    let mut best: Option<(usize, String, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < dash + 3 || dash < 6 {
            continue;
        }
        let mount_point = fields[4].replace("\\040", " ");
        if !path.starts_with(&mount_point) {
            continue;
        }
        let options = format!("{},{}", fields[5], fields.get(dash + 3).unwrap_or(&""));
        let fstype = fields[dash + 1].to_string();
        if best
            .as_ref()
            .is_none_or(|(len, _, _)| mount_point.len() >= *len)
        {
            best = Some((mount_point.len(), fstype, options));
        }
    }
    let (_, fstype, options) = best?;
    let has = |o: &str| options.split(',').any(|x| x == o);
    let why = if fstype.starts_with("nfs") {
        ["nolock", "local_lock=flock", "local_lock=all"]
            .into_iter()
            .find(|o| has(o))
            .map(|o| format!("{fstype} mounted with `{o}`"))
    } else if fstype == "lustre" {
        has("localflock").then(|| "Lustre mounted with `localflock`".to_string())
    } else if fstype == "beegfs" {
        Some("BeeGFS (flock is node-local unless `tuneUseGlobalFileLocks = true`)".to_string())
    } else if fstype == "fuse" || fstype.starts_with("fuse.") {
        Some(format!(
            "a FUSE file system ({fstype}), whose mounts may each keep their own locks"
        ))
    } else {
        None
    }?;
    Some(format!(
        "{} is on {why}: OS file locks there are local to each node (or mount), so ordo keeps \
         cells apart across nodes with its claim files (`.claim`, an exclusive create with a \
         heartbeat); a claim left by a process that died on another node is taken over after \
         {} s",
        path.display(),
        STALE_AFTER.as_secs()
    ))
}

/// Removes the stale claim at `path` (whose tag was `stale_tag`) under a short exclusive
/// guard file, so that of two processes taking it over at once only one removes it, and never
/// a fresh claim made meanwhile.
fn take_over(
    path: &Path,
    stale_tag: Option<&str>,
    holder: &str,
    why: &str,
) -> Result<(), RunDirError> {
    let mut guard_name = path.as_os_str().to_owned();
    guard_name.push(".takeover");
    let guard = PathBuf::from(guard_name);
    match OpenOptions::new().write(true).create_new(true).open(&guard) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // A taker that died mid-way leaves its guard: old guards are removed.
            let old = std::fs::metadata(&guard)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > STALE_AFTER);
            if old {
                std::fs::remove_file(&guard).ok();
            }
            return Err(RunDirError::Busy {
                lock: path.to_path_buf(),
                holder: format!("being taken over by another process ({holder})"),
            });
        }
        Err(cause) => return Err(RunDirError::Io { path: guard, cause }),
    }
    let still_stale = match read_claim(path) {
        Ok((Some(info), _)) => Some(info.tag.as_str()) == stale_tag,
        Ok((None, age)) => stale_tag.is_none() && age > STALE_AFTER,
        Err(_) => false,
    };
    if still_stale {
        eprintln!(
            "warning: {}: taking over the claim of {holder}: {why}",
            path.display()
        );
        std::fs::remove_file(path).ok();
    }
    std::fs::remove_file(&guard).ok();
    Ok(())
}

/// `provenance.json`: every session that trained the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub sessions: Vec<Session>,
}

/// One training session (a start or a resume): which ordo, on which CPU tier and host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// `train` or `resume`.
    pub purpose: String,
    pub ordo_version: String,
    /// The git commit of the build (`-modified` with uncommitted changes; `unknown` outside git).
    pub git_commit: String,
    /// [`ordo_kernels::cpu::tier`]: nodes at different tiers may differ in the last bits.
    pub kernel_tier: String,
    pub host: String,
    /// Unix time the session started.
    pub since: u64,
    /// SHA-256 of the data compiled into ordo that the run reads (the built-in lexicon).
    pub builtin_inputs: std::collections::BTreeMap<String, String>,
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
    crate::check_regular(path).map_err(io(path))?;
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(hex(&sha2::Sha256::digest(&bytes)))
}

/// The SHA-256 of a text, in hex.
pub fn sha256_text(text: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens (creating) `path` and takes its exclusive lock without waiting; on success writes a
/// line naming this process as the holder.
pub fn try_lock(path: &Path, purpose: &str) -> Result<File, RunDirError> {
    for _ in 0..3 {
        let mut file = open_lock(path)?;
        match file.try_lock() {
            // The directory may have been renamed away (`--rerun-stale` moves a stale run)
            // between our open and our lock: then the file locked is not the one at `path`.
            Ok(()) if !same_file(&file, path) => continue,
            Ok(()) => {
                claim(&mut file, purpose);
                return Ok(file);
            }
            Err(TryLockError::WouldBlock) => {
                return Err(RunDirError::Busy {
                    lock: path.to_path_buf(),
                    holder: holder(&mut file),
                });
            }
            Err(TryLockError::Error(cause)) => {
                return Err(RunDirError::Io {
                    path: path.to_path_buf(),
                    cause,
                });
            }
        }
    }
    Err(RunDirError::Busy {
        lock: path.to_path_buf(),
        holder: "its directory keeps being replaced".into(),
    })
}

/// Whether the open `file` is the file now at `path` (same device and inode; always true where
/// there are no inodes).
#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> bool {
    true
}

/// Whether the open `file` is the file now at `path` (same device and inode).
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
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
    let since = unix_now();
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

/// `path` absolute with every symlink resolved: the longest prefix that exists is
/// canonicalized, the rest (not created yet, e.g. a run directory) appended and normalized.
pub fn physical(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let absolute = normalize(&absolute);
    let mut existing = absolute.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return absolute,
        }
    }
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

    /// A claim file as another process would have left it.
    fn foreign_claim(path: &Path, boot_id: &str, pid: u32, age_s: u64) {
        let info = ClaimInfo {
            tag: "other.1.2.3".into(),
            host: "node7".into(),
            pid,
            boot_id: boot_id.into(),
            pid_ns: pid_namespace(),
            start_ticks: 0,
            purpose: "ordo ablate".into(),
            since: 1,
        };
        std::fs::write(path, serde_json::to_string(&info).unwrap()).unwrap();
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(age_s);
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.set_modified(then).unwrap();
    }

    /// Without flock (a second node on a file system whose locks are node-local), the claim
    /// file alone keeps a second holder out, and is gone once released.
    #[test]
    fn the_claim_excludes_a_second_holder_where_flock_does_not() {
        let run = RunDir::new(temp("claim"));
        let first = run.lock_with("training", false).unwrap();
        match run.lock_with("training", false) {
            Err(RunDirError::Busy { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                )
            }
            other => panic!("expected busy, got {other:?}"),
        }
        assert!(run.claim_file().is_file());
        drop(first);
        assert!(!run.claim_file().exists(), "released");
        let again = run.lock_with("training", false).unwrap();
        assert!(again.held().still_held());
    }

    #[test]
    fn a_claim_left_by_a_dead_process_of_this_machine_is_taken_over_at_once() {
        let run = RunDir::new(temp("dead"));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        foreign_claim(&run.claim_file(), &boot_id(), pid, 0);
        let lock = run.lock_with("training", false).expect("taken over");
        let (info, _) = read_claim(&run.claim_file()).unwrap();
        assert_eq!(info.unwrap().pid, std::process::id());
        drop(lock);
    }

    #[test]
    fn a_claim_of_another_machine_is_taken_over_only_once_its_heartbeat_is_stale() {
        let run = RunDir::new(temp("stale"));
        foreign_claim(&run.claim_file(), "another-boot", 1, 10);
        match run.lock_with("training", false) {
            Err(RunDirError::Busy { holder, .. }) => assert!(holder.contains("node7"), "{holder}"),
            other => panic!("expected busy, got {other:?}"),
        }
        foreign_claim(
            &run.claim_file(),
            "another-boot",
            1,
            STALE_AFTER.as_secs() + 60,
        );
        let lock = run.lock_with("training", false).expect("stale: taken over");
        drop(lock);
        // Unreadable claims: busy while fresh (being written), taken over when old.
        std::fs::write(run.claim_file(), "{").unwrap();
        assert!(matches!(
            run.lock_with("training", false),
            Err(RunDirError::Busy { .. })
        ));
        let old = std::time::SystemTime::now() - STALE_AFTER * 2;
        OpenOptions::new()
            .write(true)
            .open(run.claim_file())
            .unwrap()
            .set_modified(old)
            .unwrap();
        run.lock_with("training", false)
            .expect("old garbage taken over");
    }

    #[test]
    fn the_heartbeat_refreshes_the_claim_and_notices_a_takeover() {
        let dir = temp("beat");
        let path = dir.join(".claim");
        let claim = Claim::acquire_beating(&path, "training", std::time::Duration::from_millis(20))
            .unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(1000);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (_, age) = read_claim(&path).unwrap();
        assert!(
            age < std::time::Duration::from_secs(10),
            "refreshed: {age:?}"
        );
        assert!(claim.held().still_held());
        // Another process takes it over: the heartbeat sees a claim that is not ours.
        foreign_claim(&path, "another-boot", 1, 0);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!claim.held().still_held());
        drop(claim);
        assert!(path.is_file(), "the other process's claim is left alone");
    }

    #[test]
    fn taking_the_run_removes_temporary_files_left_by_dead_writers() {
        let run = RunDir::new(temp("tmp"));
        std::fs::create_dir_all(run.checkpoint_dir()).unwrap();
        let left = [
            run.path().join(".eval.json.host.1.abc.0.tmp"),
            run.checkpoint_dir().join(".state.json.host.1.abc.3.tmp"),
        ];
        for f in &left {
            std::fs::write(f, "partial").unwrap();
        }
        std::fs::write(run.path().join("notes.tmp"), "a user's file").unwrap();
        let _lock = run.lock("training").unwrap();
        assert!(left.iter().all(|f| !f.exists()));
        assert!(
            run.path().join("notes.tmp").is_file(),
            "only ordo's temporaries"
        );
    }

    #[test]
    fn mounts_whose_locks_are_node_local_are_recognised() {
        let table = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
40 22 0:40 / /scratch rw,relatime shared:2 - nfs4 srv:/scratch rw,vers=4.2,local_lock=flock
41 22 0:41 / /scratch/safe rw shared:3 - nfs4 srv:/safe rw,vers=4.2,local_lock=none
42 22 0:42 / /lus rw - lustre mds@tcp:/fs rw,localflock
43 22 0:43 / /bee rw - beegfs beegfs_nodev rw,cfgFile=/etc/beegfs/beegfs-client.conf
44 22 0:44 / /mnt/a rw,nosuid - fuse.bindfs bindfs rw,user_id=0
45 22 0:45 / /old rw - nfs srv:/old rw,vers=3,nolock
";
        let why = |p: &str| node_local_locks_in(table, Path::new(p));
        assert!(
            why("/scratch/exp/runs")
                .unwrap()
                .contains("local_lock=flock")
        );
        assert_eq!(
            why("/scratch/safe/runs"),
            None,
            "the longer mount point wins"
        );
        assert!(why("/lus/x").unwrap().contains("localflock"));
        assert!(why("/bee/x").unwrap().contains("tuneUseGlobalFileLocks"));
        assert!(why("/mnt/a/x").unwrap().contains("fuse.bindfs"));
        assert!(why("/old/x").unwrap().contains("`nolock`"));
        assert_eq!(why("/home/me/runs"), None);
    }

    /// A lock taken through a path whose directory was renamed away meanwhile is not the
    /// lock of what is at the path now.
    #[test]
    fn a_lock_file_moved_away_is_not_taken_for_the_one_at_the_path() {
        let dir = temp("moved");
        let path = dir.join("run/.lock");
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let old = open_lock(&path).unwrap();
        std::fs::rename(dir.join("run"), dir.join("stale")).unwrap();
        std::fs::create_dir_all(dir.join("run")).unwrap();
        assert!(!same_file(&old, &path));
        let fresh = try_lock(&path, "training").unwrap();
        assert!(same_file(&fresh, &path));
    }

    /// With the run directory behind a symlink (out_dir on scratch), an input path stored
    /// relative to it still reaches the input.
    #[test]
    fn physical_paths_resolve_symlinks_of_directories_not_yet_made() {
        let dir = temp("physical");
        std::fs::create_dir_all(dir.join("scratch/runs")).unwrap();
        std::fs::create_dir_all(dir.join("repo/data")).unwrap();
        std::fs::write(dir.join("repo/data/corpus.txt"), "x").unwrap();
        std::os::unix::fs::symlink(dir.join("scratch/runs"), dir.join("repo/runs")).unwrap();
        let run = physical(&dir.join("repo/runs/cell"));
        let real = std::fs::canonicalize(&dir).unwrap();
        assert_eq!(
            run,
            real.join("scratch/runs/cell"),
            "the missing tail is kept"
        );
        let corpus = physical(&dir.join("repo/data/corpus.txt"));
        let stored = relative_to(&corpus, &run).unwrap();
        std::fs::create_dir_all(dir.join("repo/runs/cell")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("repo/runs/cell").join(&stored)).unwrap(),
            "x",
            "{}",
            stored.display()
        );
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
            overrides: Some("scaling.factor=4,scaling.kind=yarn".into()),
            sliding: Some(8),
        };
        assert_eq!(
            run.eval_json(&yarn),
            Path::new("runs/copy/eval-scaling.factor=4,scaling.kind=yarn-sliding8.json")
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
        // Files ordo does not write are never pruned.
        for theirs in [
            "model-notes.txt",
            "model-000250.bpk.bak",
            "optim-best.bpk",
            "model-12.bpk",
        ] {
            assert!(!RunDir::is_other_checkpoint_file(theirs, 500), "{theirs}");
        }
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
        // A deleted inputs.json: a pass only for runs of versions that never wrote one.
        std::fs::remove_file(run.inputs()).unwrap();
        run.check_inputs().unwrap();
        run.record_session("train", &[]).unwrap();
        let err = run.check_inputs().unwrap_err().to_string();
        assert!(
            err.contains("inputs.json") && err.contains("missing"),
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
