//! `ordo init DIR`: the shipped configs, experiment files and data, written out of the binary,
//! so that an `ordo` installed outside the checkout runs the README's commands in DIR.

use anyhow::{Context, Result};
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/shipped.rs"));

/// What `init` did with each shipped file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub written: usize,
    /// Present with the shipped content.
    pub same: usize,
    /// Present with other content: left as they are.
    pub kept: Vec<String>,
}

/// Writes every shipped file under `dir` that is missing there (each atomically); a file that
/// exists is never replaced.
pub fn init(dir: &Path) -> Result<Written> {
    let mut done = Written::default();
    for (rel, content) in SHIPPED {
        let path = dir.join(rel);
        match std::fs::read(&path) {
            Ok(existing) if existing == *content => done.same += 1,
            Ok(_) => done.kept.push(rel.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("{}: cannot create", parent.display()))?;
                }
                ordo_train::run_dir::write_atomic(&path, content)
                    .with_context(|| format!("{}: cannot write", path.display()))?;
                done.written += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
        }
    }
    Ok(done)
}
