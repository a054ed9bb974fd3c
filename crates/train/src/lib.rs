pub mod budget;
pub mod config;
pub mod data;
pub mod device;
pub mod hooks;
pub mod metrics;
pub mod open;
pub mod rng;
pub mod run_dir;
pub mod tasks;
#[doc(hidden)]
pub mod testing;
pub mod trainer;
pub mod vocab;

/// Reads a whole input file as text, refusing anything but a regular file first: a FIFO would
/// block forever and a device could be endless (`--check` must answer at once).
pub fn read_input(path: &std::path::Path) -> std::io::Result<String> {
    check_regular(path)?;
    std::fs::read_to_string(path)
}

/// An error unless `path` is a regular file (after following symlinks).
pub fn check_regular(path: &std::path::Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        Ok(())
    } else {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}; expected a regular file"),
        ))
    }
}
