//! Refusing absurd sizes before anything is allocated.
//!
//! From a config alone (no data generated, no tensor built) we estimate the number of
//! parameters and the peak memory of training (parameters, gradients and AdamW's two moments,
//! plus the activations kept for the backward pass, the `b·h·t²` attention terms included) and
//! of evaluation at the longest length evaluated. A config whose estimate exceeds the memory
//! available is refused with an error that gives the numbers. Every product is checked: a size
//! that does not even fit in 64 bits is refused the same way.
//!
//! The estimate is deliberately simple and on the high side (it counts the explicit attention
//! path's probabilities, which ordo's kernel avoids at inference); it is there to stop a typo
//! (`max_len = 1000000000000`) from aborting the process or swapping the machine to death, not
//! to plan a run to the megabyte. `ORDO_MEMORY_LIMIT` overrides the limit: a size (`64G`,
//! `512M`, bytes) or `off`.

use ordo_model::ModelConfig;
use std::path::{Path, PathBuf};

/// What a config costs, in parameters and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub parameters: u64,
    /// Peak bytes of a training step (with its in-training evaluation).
    pub train_bytes: u64,
    /// Peak bytes of evaluating at the longest evaluated length.
    pub eval_bytes: u64,
    /// Model positions of the longest training and evaluated sequence.
    pub train_positions: u64,
    pub eval_positions: u64,
}

impl Estimate {
    pub fn peak(&self) -> u64 {
        self.train_bytes.max(self.eval_bytes)
    }
}

/// The sizes an estimate needs besides the model's config: the training batch, the vocabulary,
/// and the model positions of the longest training and evaluated sequences (`None`: too large
/// to count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub batch_size: usize,
    pub vocab: u64,
    pub train_positions: Option<u64>,
    pub eval_positions: Option<u64>,
}

const F32: u64 = 4;
/// Examples per forward pass in evaluation (`ordo eval`'s and ablate's default batch).
const EVAL_BATCH: u64 = 128;

/// Estimates the cost of a model `m` trained and evaluated at `sizes`; `None` if a product
/// overflows (which is itself absurd).
pub fn estimate(m: &ModelConfig, sizes: Sizes) -> Option<Estimate> {
    let (d, h, l) = (m.d_model as u64, m.n_heads as u64, m.n_layers as u64);
    let f = m.d_ff() as u64;
    let v = sizes.vocab;
    let (t, te) = (sizes.train_positions?, sizes.eval_positions?);
    let b = sizes.batch_size as u64;
    let valid_b = b.max(64);

    // Parameters: embeddings (and an untied head), per block 4 projections, the MLP, two
    // LayerNorms; the final LayerNorm; the scheme's own tables.
    let embedding = v.checked_mul(d)?;
    let head = if m.tie_embeddings {
        0
    } else {
        d.checked_mul(v)?.checked_add(v)?
    };
    let block = (4 * d)
        .checked_mul(d)?
        .checked_add(4 * d)?
        .checked_add(f.checked_mul(d)?.checked_mul(2)?)?
        .checked_add(f + d + 4 * d)?;
    let scheme = m.encoding.parameters(&m.dims())?;
    let parameters = embedding
        .checked_add(head)?
        .checked_add(block.checked_mul(l)?)?
        .checked_add(2 * d)?
        .checked_add(scheme)?;

    // Activations of one forward pass of `batch` sequences of `len` positions, kept for the
    // backward pass (`training`) or not: per layer the residual-width tensors, the MLP's
    // hidden tensors and the `[b, h, t, t]` scores and probabilities; then the logits.
    let activations = |batch: u64, len: u64, training: bool| -> Option<u64> {
        let tokens = batch.checked_mul(len)?;
        let width = if training { 12 * d + 3 * f } else { 4 * d + f };
        let per_layer = tokens.checked_mul(width)?.checked_add(
            batch
                .checked_mul(h)?
                .checked_mul(len)?
                .checked_mul(len)?
                .checked_mul(2)?,
        )?;
        let layers = if training {
            per_layer.checked_mul(l)?
        } else {
            per_layer
        };
        let logits = tokens
            .checked_mul(v)?
            .checked_mul(if training { 3 } else { 1 })?;
        layers.checked_add(logits)?.checked_mul(F32)
    };
    let weights = parameters.checked_mul(F32)?;
    // Parameters, gradients, AdamW's first and second moments.
    let train_bytes = weights
        .checked_mul(4)?
        .checked_add(activations(b, t, true)?.max(activations(valid_b, t, false)?))?;
    let eval_bytes = weights.checked_add(activations(EVAL_BATCH, te, false)?)?;
    Some(Estimate {
        parameters,
        train_bytes,
        eval_bytes,
        train_positions: t,
        eval_positions: te,
    })
}

thread_local! {
    /// Set by [`deferred`]: memory checks on this thread pass (a caller checks later).
    static DEFERRED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the memory checks of this thread deferred: [`limit`] reports no limit, so that
/// `ordo ablate` can load every cell of a grid on any machine and check only the cells a shard
/// runs, side by side, where it runs them.
pub fn deferred<T>(f: impl FnOnce() -> T) -> T {
    let before = DEFERRED.with(|d| d.replace(true));
    let out = f();
    DEFERRED.with(|d| d.set(before));
    out
}

/// The memory a run may use: `ORDO_MEMORY_LIMIT` if set (`off` = no limit), else the memory
/// available to this process ([`available_memory`]). `Ok(None)`: no limit.
pub fn limit() -> Result<Option<u64>, BudgetError> {
    if DEFERRED.with(|d| d.get()) {
        return Ok(None);
    }
    match std::env::var("ORDO_MEMORY_LIMIT") {
        Ok(text) => parse_size(&text).map_err(BudgetError::Limit),
        Err(_) => Ok(available_memory()),
    }
}

/// The memory available to this process: `MemAvailable` of `/proc/meminfo`, or less where the
/// process's control group is limited (Slurm's `--mem`, a container's limit): the smallest
/// `limit - usage` over the cgroup and its ancestors ([`cgroup_available`]). `None` where
/// neither can be read.
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        });
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|own| cgroup_available(Path::new("/sys/fs/cgroup"), &own));
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The memory left under the cgroup limits of a process whose `/proc/self/cgroup` is `own`,
/// with the cgroup file system mounted at `root`: cgroup v2 (`0::/path`, `memory.max` and
/// `memory.current`) or v1 (`N:memory:/path`, `memory.limit_in_bytes` and
/// `memory.usage_in_bytes` under `root/memory`), the smallest over the group and its ancestors;
/// `None` when no group has a limit.
pub fn cgroup_available(root: &Path, own: &str) -> Option<u64> {
    let read = |p: PathBuf| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    let mut best: Option<u64> = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (base, max_file, used_file) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                root.join("memory"),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else {
            continue;
        };
        // The group, then each ancestor up to the root of the hierarchy.
        let mut dir = base.join(path.trim_start_matches('/'));
        loop {
            // "max" (v2) or a huge number (v1's "no limit") parse as no limit here.
            if let Some(limit) = read(dir.join(max_file)).filter(|&l| l < (1 << 60)) {
                let used = read(dir.join(used_file)).unwrap_or(0);
                let left = limit.saturating_sub(used);
                best = Some(best.map_or(left, |b| b.min(left)));
            }
            if dir == base || !dir.pop() || !dir.starts_with(&base) {
                break;
            }
        }
    }
    best
}

/// `off`, a number of bytes, or a number with `K`, `M`, `G` or `T` (powers of 1024).
pub fn parse_size(text: &str) -> Result<Option<u64>, SizeError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || SizeError(text.to_string());
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !(value.is_finite() && value > 0.0) {
        return Err(bad());
    }
    Ok(Some((value * (1u64 << shift) as f64) as u64))
}

/// `1.5 GiB`.
pub fn show_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// Refuses a model `m` at `sizes` if its estimate exceeds `limit` (or cannot be computed).
pub fn check(m: &ModelConfig, sizes: Sizes, limit: Option<u64>) -> Result<Estimate, BudgetError> {
    let Some(estimate) = estimate(m, sizes) else {
        return Err(BudgetError::Uncountable(sizes));
    };
    if let Some(limit) = limit
        && estimate.peak() > limit
    {
        return Err(BudgetError::TooLarge {
            estimate,
            limit,
            batch_size: sizes.batch_size,
        });
    }
    Ok(estimate)
}

const ADVICE: &str = "make `model.d_model`, `model.n_layers`, `train.batch_size` or the task's \
                      lengths smaller, or set ORDO_MEMORY_LIMIT=off (or a size such as 64G) to \
                      override";

/// A size ([`parse_size`]) that is neither `off` nor a positive number of bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected `off` or a size such as 64G, 512M or 1000000, got {0:?}")]
pub struct SizeError(pub String);

/// A config refused for its size, or an unreadable limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("ORDO_MEMORY_LIMIT: {0}")]
    Limit(SizeError),
    #[error(
        "the model and data sizes are too large to even count (vocabulary {}, longest training \
         sequence {}, longest evaluated sequence {} positions); {ADVICE}",
        .0.vocab,
        .0.train_positions.map_or("> 2^64".into(), |t| t.to_string()),
        .0.eval_positions.map_or("> 2^64".into(), |t| t.to_string()),
    )]
    Uncountable(Sizes),
    #[error(
        "estimated peak memory {} exceeds the {} available ({} parameters; training: {} at batch \
         {batch_size} x {} positions; evaluation: {} at {} positions); {ADVICE}",
        show_bytes(estimate.peak()),
        show_bytes(*limit),
        estimate.parameters,
        show_bytes(estimate.train_bytes),
        estimate.train_positions,
        show_bytes(estimate.eval_bytes),
        estimate.eval_positions,
    )]
    TooLarge {
        estimate: Estimate,
        limit: u64,
        batch_size: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> crate::config::RunConfig {
        crate::config::from_table(
            "[model]\nd_model = 64\nn_heads = 4\nn_layers = 4\n[task]\nkind = \"copy\"\n"
                .parse()
                .unwrap(),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn parameters_match_the_model_burn_builds() {
        use burn::module::Module;
        use ordo_model::PositionalEncodingConfig;
        let mut config = config();
        // Every scheme, tied and untied heads alternating.
        for (n, &kind) in PositionalEncodingConfig::KINDS.iter().enumerate() {
            let tie = n % 2 == 0;
            config.model.tie_embeddings = tie;
            config.model.encoding = PositionalEncodingConfig::from_kind(kind, 40).unwrap();
            let device = burn::prelude::Device::flex();
            let model = config.model.init(20, &device);
            let sizes = Sizes {
                batch_size: config.train.batch_size,
                vocab: 20,
                train_positions: Some(32),
                eval_positions: Some(128),
            };
            let e = estimate(&config.model, sizes).unwrap();
            assert_eq!(e.parameters, model.num_params() as u64, "tie {tie}, {kind}");
        }
    }

    #[test]
    fn absurd_sizes_are_refused_and_overflow_is_caught() {
        let config = config();
        let sane = Sizes {
            batch_size: config.train.batch_size,
            vocab: 20,
            train_positions: Some(33),
            eval_positions: Some(132),
        };
        let e = check(&config.model, sane, Some(1 << 30)).unwrap();
        assert!(e.peak() < 200 << 20, "{e:?}");
        // A sequence of 10^12 positions: the b·h·t² term alone overflows 64 bits.
        let huge = Sizes {
            train_positions: Some(2_000_000_000_001),
            eval_positions: Some(8_000_000_000_004),
            ..sane
        };
        let err = check(&config.model, huge, Some(1 << 40))
            .unwrap_err()
            .to_string();
        assert!(err.contains("too large to even count"), "{err}");
        // Large but countable: refused with the numbers, accepted without a limit.
        let big = Sizes {
            train_positions: Some(100_000),
            eval_positions: Some(400_000),
            ..sane
        };
        let err = check(&config.model, big, Some(24 << 30))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exceeds the 24.0 GiB available"), "{err}");
        assert!(err.contains("ORDO_MEMORY_LIMIT"), "{err}");
        assert!(check(&config.model, big, None).is_ok());
    }

    #[test]
    fn the_cgroup_limit_is_read_from_the_group_and_its_ancestors() {
        let root = std::env::temp_dir().join(format!("ordo-cgroup-{}", std::process::id()));
        std::fs::remove_dir_all(&root).ok();
        // v2: a Slurm job limited to 4 GiB (using 1 GiB), its step unlimited.
        let job = root.join("v2/system.slice/slurmstepd.scope/job_7");
        let step = job.join("step_0");
        std::fs::create_dir_all(&step).unwrap();
        std::fs::write(job.join("memory.max"), "4294967296\n").unwrap();
        std::fs::write(job.join("memory.current"), "1073741824\n").unwrap();
        std::fs::write(step.join("memory.max"), "max\n").unwrap();
        std::fs::write(step.join("memory.current"), "5\n").unwrap();
        let own = "0::/system.slice/slurmstepd.scope/job_7/step_0\n";
        assert_eq!(cgroup_available(&root.join("v2"), own), Some(3 << 30));
        // No limit anywhere.
        std::fs::write(job.join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_available(&root.join("v2"), own), None);
        // v1: the memory controller's hierarchy; "no limit" is a huge number.
        let group = root.join("v1/memory/docker/abc");
        std::fs::create_dir_all(&group).unwrap();
        std::fs::write(group.join("memory.limit_in_bytes"), "2147483648").unwrap();
        std::fs::write(group.join("memory.usage_in_bytes"), "147483648").unwrap();
        let own = "12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n";
        assert_eq!(cgroup_available(&root.join("v1"), own), Some(2_000_000_000));
        std::fs::write(group.join("memory.limit_in_bytes"), "9223372036854771712").unwrap();
        assert_eq!(cgroup_available(&root.join("v1"), own), None);
        std::fs::remove_dir_all(&root).ok();
    }

    #[test]
    fn deferred_checks_pass_on_this_thread_only_while_deferred() {
        assert_eq!(deferred(limit).unwrap(), None);
        // Nesting restores the outer state, not "checked".
        assert_eq!(
            deferred(|| {
                deferred(|| ());
                limit()
            })
            .unwrap(),
            None
        );
        // Another thread is not deferred; this one is not any more.
        let outside = limit().unwrap();
        let other = deferred(|| std::thread::spawn(|| limit().unwrap()).join().unwrap());
        assert_eq!(other.is_some(), outside.is_some());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("off").unwrap(), None);
        assert_eq!(parse_size("64G").unwrap(), Some(64 << 30));
        assert_eq!(parse_size("512MiB").unwrap(), Some(512 << 20));
        assert_eq!(parse_size("1000").unwrap(), Some(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1G").is_err());
    }
}
