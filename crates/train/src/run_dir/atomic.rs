//! Atomic writes, and names no other writer uses: everything ordo writes (run directories,
//! checkpoints, experiment files, reports, plots) goes through [`write_atomic`].

use std::path::Path;

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
