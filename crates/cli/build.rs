//! Lists the files `ordo init` writes (the shipped configs, experiment files and data) as
//! `include_bytes!` entries in `$OUT_DIR/shipped.rs`, so that an `ordo` installed outside the
//! checkout (`cargo install --git ...`) carries them.
use std::path::{Path, PathBuf};

fn walk(root: &Path, dir: &Path, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(root, &path, keep, out);
        } else if keep(&path) {
            out.push(
                path.strip_prefix(root)
                    .expect("under the root")
                    .to_path_buf(),
            );
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .join("../..")
        .canonicalize()
        .expect("the workspace root");
    let mut files = Vec::new();
    walk(
        &root,
        &root.join("configs"),
        &|p| p.extension().is_some_and(|e| e == "toml"),
        &mut files,
    );
    // Experiment files only: their directories hold results, not inputs.
    let experiments = root.join("experiments");
    walk(
        &root,
        &experiments,
        &|p| p.parent() == Some(experiments.as_path()) && p.is_file(),
        &mut files,
    );
    walk(&root, &root.join("data"), &|_| true, &mut files);
    let mut code = String::from(
        "/// `(path relative to the workspace, content)` of every shipped file.\npub const SHIPPED: &[(&str, &[u8])] = &[\n",
    );
    for f in &files {
        let rel = f.to_string_lossy().replace('\\', "/");
        let abs = root.join(f);
        code.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            abs.to_string_lossy()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("shipped.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
    for dir in ["configs", "experiments", "data"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
}
