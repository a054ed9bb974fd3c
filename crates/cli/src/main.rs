//! `ordo`: train, evaluate, compare and inspect positional encodings.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ordo_train::trainer::{self, Progress};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ordo",
    version,
    about = "Positional encodings, one config switch apart"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one model from a config file (or resume a run).
    Train {
        /// The run config (TOML). Not needed with --resume.
        config: Option<PathBuf>,
        /// Override a config key: --set model.encoding.kind=alibi (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Validate the config and print it fully resolved, without training.
        #[arg(long)]
        check: bool,
        /// Device: cpu (flex), flex, ndarray, wgpu. Same as --set device=...
        #[arg(long)]
        device: Option<String>,
        /// Continue the run in RUN_DIR from its last checkpoint.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "overrides", "check"])]
        resume: Option<PathBuf>,
        /// Print nothing but errors and the final summary.
        #[arg(long)]
        quiet: bool,
    },
    /// Measure length extrapolation of a trained run: writes eval.json and eval.csv into it.
    Eval {
        /// A run directory written by `ordo train`.
        run_dir: PathBuf,
        /// Lengths to test, e.g. `1-16,24,32,64` (default: every length up to 4x training).
        #[arg(long)]
        lengths: Option<String>,
        /// Test up to this multiple of the longest training length (without --lengths).
        #[arg(long, default_value_t = 4)]
        max_factor: usize,
        /// Fresh examples per length.
        #[arg(long, default_value_t = 128)]
        examples: usize,
        /// Examples per forward pass.
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// RoPE only: frequency scaling at eval time: linear:F, ntk:F or yarn:F.
        #[arg(long, value_name = "KIND:FACTOR")]
        rope_scaling: Option<String>,
        /// Device (default: the run's).
        #[arg(long)]
        device: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            config,
            mut overrides,
            check,
            device,
            resume,
            quiet,
        } => {
            let progress = if quiet {
                Progress::Quiet
            } else {
                Progress::auto()
            };
            if let Some(dir) = resume {
                if !dir.join("config.toml").is_file() {
                    bail!("{}: not a run directory (no config.toml)", dir.display());
                }
                let summary = trainer::resume(&dir, progress)?;
                print_summary(&summary, &dir);
                return Ok(());
            }
            let Some(path) = config else {
                bail!("ordo train needs a CONFIG file (or --resume RUN_DIR)");
            };
            if let Some(device) = device {
                overrides.push(format!("device={device}"));
            }
            let config = ordo_train::config::load(&path, &overrides)?;
            if check {
                print!("{}", config.to_toml());
                return Ok(());
            }
            let base_dir = path.parent().unwrap_or(Path::new("."));
            let dir = config.run_dir();
            let summary = trainer::train(config, base_dir, progress)
                .with_context(|| format!("training {}", path.display()))?;
            print_summary(&summary, &dir);
            Ok(())
        }
        Command::Eval {
            run_dir,
            lengths,
            max_factor,
            examples,
            batch_size,
            rope_scaling,
            device,
        } => eval(
            run_dir,
            lengths,
            max_factor,
            examples,
            batch_size,
            rope_scaling,
            device,
        ),
    }
}

fn eval(
    run_dir: PathBuf,
    lengths: Option<String>,
    max_factor: usize,
    examples: usize,
    batch_size: usize,
    rope_scaling: Option<String>,
    device: Option<String>,
) -> Result<()> {
    use ordo_eval::extrapolation::{parse_lengths, parse_scaling};
    if examples == 0 || batch_size == 0 || max_factor == 0 {
        bail!("--examples, --batch-size and --max-factor must be positive");
    }
    let options = ordo_eval::EvalOptions {
        lengths: lengths
            .as_deref()
            .map(parse_lengths)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--lengths: {e}"))?,
        max_factor,
        examples,
        batch_size,
        rope_scaling: rope_scaling
            .as_deref()
            .map(parse_scaling)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--rope-scaling: {e}"))?,
        device,
    };
    let report = ordo_eval::evaluate_run(&run_dir, &options)?;
    println!(
        "{} ({} on {}, trained on lengths {}-{}, scaling {})",
        report.run,
        report.encoding,
        report.task,
        report.train_min_len,
        report.train_max_len,
        report.scaling
    );
    println!(
        "{:>7} {:>7} {:>12} {:>15} {:>8}",
        "length", "tokens", "exact_match", "token_accuracy", "loss"
    );
    for r in &report.lengths {
        match &r.metrics {
            Some(m) => println!(
                "{:>7} {:>7} {:>12.4} {:>15.4} {:>8.4}",
                r.length, r.tokens, m.exact_match, m.token_accuracy, m.loss
            ),
            None => println!(
                "{:>7} {:>7} {:>12} {:>15} {:>8}  ({})",
                r.length,
                r.tokens,
                "n/a",
                "n/a",
                "n/a",
                r.unsupported.as_deref().unwrap_or("")
            ),
        }
    }
    let b = &report.buckets;
    let show = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into());
    println!(
        "exact match: in-distribution {}  near (L,2L] {}  far (2L,4L] {}",
        show(b.in_distribution.exact_match),
        show(b.near.exact_match),
        show(b.far.exact_match)
    );
    let suffix = if report.scaling == "none" {
        String::new()
    } else {
        format!("-{}", report.scaling)
    };
    println!(
        "wrote {}",
        run_dir.join(format!("eval{suffix}.json")).display()
    );
    Ok(())
}

fn print_summary(s: &trainer::Summary, dir: &Path) {
    println!(
        "{}: {} on {}, {} steps in {:.1}s ({:.0} tok/s): valid exact_match {:.4}, token_accuracy {:.4}, loss {:.4}\nrun directory: {}",
        s.name,
        s.encoding,
        s.task,
        s.steps,
        s.seconds,
        s.tokens_per_second,
        s.valid.exact_match,
        s.valid.token_accuracy,
        s.valid.loss,
        dir.display()
    );
}
