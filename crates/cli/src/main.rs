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
    }
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
