//! `ordo`: train, evaluate, compare and inspect positional encodings.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ordo_train::trainer::{self, Progress};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod bench;
mod init;

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
    #[command(after_help = "Examples:
  ordo train configs/copy.toml
  ordo train configs/copy.toml --set model.encoding.kind=alibi --set name=copy-alibi
  ordo train configs/copy.toml --check
  ordo train --resume runs/copy")]
    Train {
        /// The run config (TOML). Not needed with --resume.
        config: Option<PathBuf>,
        /// Override a config key: --set model.encoding.kind=alibi (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Validate the config and print it fully resolved, without training.
        #[arg(long)]
        check: bool,
        /// Device: cpu (flex), flex, ndarray, wgpu. Same as --set device=...; with --resume,
        /// continues the run on this device.
        #[arg(long)]
        device: Option<String>,
        /// Number format of the dense matrix products: fp32 or bf16 (bf16 operands, fp32 sums
        /// and master weights; needs AVX512-BF16). Same as --set train.precision=...; with
        /// --resume, continues the run in this precision. ORDO_BF16_KERNEL picks the bf16
        /// kernel: auto (oneDNN's libdnnl.so.2 where it runs on AMX, else ordo's), ordo or onednn.
        #[arg(long)]
        precision: Option<ordo_train::config::Precision>,
        /// Continue the run in RUN_DIR from its last checkpoint.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "overrides", "check"])]
        resume: Option<PathBuf>,
        /// Print nothing but errors and the final summary.
        #[arg(long)]
        quiet: bool,
    },
    /// Measure length extrapolation of a trained run: writes eval.json and eval.csv into it.
    #[command(after_help = "Examples:
  ordo eval runs/copy
  ordo eval runs/copy --lengths 1-16,32,64 --examples 256
  ordo eval runs/copy-rope --set model.encoding.scaling.kind=yarn --set model.encoding.scaling.factor=4")]
    Eval {
        /// A run directory written by `ordo train`.
        run_dir: PathBuf,
        #[command(flatten)]
        options: ordo_eval::EvalOptions,
    },
    /// Measure each attention head's mean distance against sequence length over the test set:
    /// writes analysis.json, analysis.csv and analysis.png/.svg into the run.
    #[command(after_help = "Examples:
  ordo analyze runs/copy
  ordo analyze runs/copy --lengths 4,8,16,32 --examples 128
  ordo analyze runs/copy-rope --set model.encoding.scaling.kind=yarn --set model.encoding.scaling.factor=4")]
    Analyze {
        /// A run directory written by `ordo train`.
        run_dir: PathBuf,
        #[command(flatten)]
        options: ordo_eval::EvalOptions,
    },
    /// Train and evaluate a grid (tasks x encodings x seeds x ...), resumably, then write a report.
    #[command(after_help = "Examples:
  ordo ablate experiments/quick.toml
  ordo ablate experiments/word_order.toml --dry-run
  ordo ablate experiments/word_order.toml --shard 2/4 --jobs 2
  sbatch --array=1-8 experiments/slurm.sbatch   # each task runs --shard slurm")]
    Ablate {
        /// An experiment file, e.g. experiments/quick.toml.
        experiment: PathBuf,
        /// Cells trained side by side (default: the experiment's `jobs`, else 1).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run one share of the cells: i/n (1-based), or `slurm` for the task of a Slurm job
        /// array (SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT).
        #[arg(long, value_name = "I/N|slurm")]
        shard: Option<String>,
        /// List the cells and their status, and run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run stale cells again (their old run directories are moved to `stale/`).
        #[arg(long)]
        rerun_stale: bool,
    },
    /// Rebuild an experiment's report.md, report.html, plots and tables (results.csv,
    /// cells.csv) from its finished cells.
    #[command(after_help = "Examples:
  ordo report experiments/quick
  ordo report experiments/word_order   # after gathering the shards of a job array
  python3 -c 'import pandas as pd; print(pd.read_csv(\"experiments/quick/results.csv\").head())'")]
    Report {
        /// The experiment directory, e.g. experiments/quick.
        dir: PathBuf,
    },
    /// Show and export what an encoding looks like (tables, biases, angles, decay curves).
    #[command(after_help = "Examples:
  ordo inspect rope --len 256 --out pics
  ordo inspect sinusoidal --figure check_shift=5
  ordo inspect learned --checkpoint runs/copy-learned --text \"s1 s2 [SEP]\" --out pics")]
    Inspect(InspectArgs),
    /// Measure training and evaluation throughput and peak memory.
    #[command(after_help = "Examples:
  ordo bench
  ordo bench --shapes small --encodings rope,alibi --eval-shapes none
  ordo bench --shapes tiny --json --out bench.json")]
    Bench(bench::BenchArgs),
    /// Export a run's weights (safetensors) or an experiment's results (TensorBoard).
    #[command(after_help = "Examples:
  ordo export model runs/copy   # runs/copy/export/model.safetensors, config.json, tokenizer.json
  ordo export tensorboard experiments/quick
  ordo export tensorboard experiments/quick --out /tmp/tb   # then: tensorboard --logdir /tmp/tb")]
    Export {
        #[command(subcommand)]
        what: Export,
    },
    /// Write the shipped configs, experiment files and data into DIR (missing files only), so
    /// that an installed `ordo` runs the README's commands there.
    #[command(after_help = "Examples:
  ordo init my-study   # then: cd my-study && ordo ablate experiments/quick.toml
  ordo init .")]
    Init {
        /// Where to write configs/, experiments/ and data/.
        dir: PathBuf,
    },
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    #[command(after_help = "Examples:
  ordo completions bash > ~/.local/share/bash-completion/completions/ordo
  ordo completions zsh > ~/.zfunc/_ordo   # with fpath+=(~/.zfunc) before compinit
  ordo completions fish > ~/.config/fish/completions/ordo.fish")]
    Completions { shell: clap_complete::Shell },
    /// Print a corpus generated from the grammar (how data/corpus.txt was made).
    #[command(after_help = "Examples:
  ordo corpus > data/corpus.txt
  ordo corpus --sentences 100 --seed 3 --max-len 12")]
    Corpus {
        #[arg(long, default_value_t = 20000)]
        sentences: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 5)]
        min_len: usize,
        #[arg(long, default_value_t = 20)]
        max_len: usize,
    },
}

#[derive(Subcommand)]
enum Export {
    /// A run's weights as model.safetensors (PyTorch's layouts) with config.json and
    /// tokenizer.json, in RUN_DIR/export (or --out).
    Model {
        /// A run directory written by `ordo train`.
        run_dir: PathBuf,
        /// Where to write the files (default: RUN_DIR/export).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Training curves of every finished cell and the grid as TensorBoard HParams, in
    /// EXPERIMENT_DIR/tensorboard (or --out): `tensorboard --logdir` it.
    Tensorboard {
        /// The experiment directory, e.g. experiments/quick.
        dir: PathBuf,
        /// Where to write the event files (default: DIR/tensorboard).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Exit codes: 0 success (also an `ablate` shard with no cells); 1 an error; 2 a command-line
/// error (clap's); 3 a run diverged (its loss, gradients or parameters stopped being finite; the
/// last good checkpoint is kept); 4 `ablate`: cells of this shard are held by other processes
/// and were not finished when this one ended.
const EXIT_DIVERGED: u8 = 3;
const EXIT_UNFINISHED: u8 = 4;

fn main() -> ExitCode {
    // Like other Unix tools, stop quietly when the reader of our output goes away
    // (`ordo ... | head`) instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory();
    passive_openmp();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.chain().any(|cause| cause.is::<Unfinished>()) => {
            // Not a failure of this process: say so, and exit with its own code.
            eprintln!("note: {e:#}");
            ExitCode::from(EXIT_UNFINISHED)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            let diverged = e.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<trainer::TrainError>(),
                    Some(trainer::TrainError::NonFinite { .. })
                )
            });
            if diverged {
                ExitCode::from(EXIT_DIVERGED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A training step allocates and frees the same few-megabyte tensors hundreds of times. With
/// glibc's defaults each of them is a fresh `mmap` (and the heap top is trimmed on free), so
/// every step page-faults its whole working set again: 180k faults and ~20% of the CPU time of
/// `ordo bench --shapes tiny`. Serving them from the heap and keeping freed memory cuts the
/// faults 16x. (Peak memory is unchanged; resident memory stays at that peak.)
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called at start-up before any thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // glibc's maximum
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// oneDNN (the bf16 products on AMX, `crates/kernels/src/onednn.rs`) runs on OpenMP threads,
/// which by default spin for a while after each product, taking the cores from the rayon
/// threads of the next op: a small bf16 training step measured 10-25 % slower that way on 2
/// cores. libgomp reads its policy when oneDNN is loaded, so it is set here, before any thread
/// runs; a user's own `OMP_WAIT_POLICY` is kept.
fn passive_openmp() {
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        // SAFETY: at start-up, before any thread runs (nothing reads the environment
        // concurrently).
        unsafe { std::env::set_var("OMP_WAIT_POLICY", "PASSIVE") };
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            config,
            mut overrides,
            check,
            device,
            precision,
            resume,
            quiet,
        } => {
            let progress = if quiet {
                Progress::Quiet
            } else {
                Progress::auto()
            };
            if let Some(dir) = resume {
                let options = trainer::TrainOptions {
                    device,
                    precision,
                    ..trainer::TrainOptions::new(progress)
                };
                let summary = trainer::resume(&dir, options)?;
                print_summary(&summary, &dir);
                return Ok(());
            }
            let Some(path) = config else {
                bail!("ordo train needs a CONFIG file (or --resume RUN_DIR)");
            };
            if let Some(device) = device {
                overrides.push(format!("device={device}"));
            }
            if let Some(precision) = precision {
                overrides.push(format!("train.precision={}", precision.name()));
            }
            let (config, generator) = ordo_train::config::load_with_task(&path, &overrides, None)?;
            if check {
                print!("{}", config.to_toml());
                if let Some(warning) = config.model.encoder_warning() {
                    eprintln!("warning: {warning}");
                }
                if config.train.batch_lengths.is_none()
                    && config.model.encoding.placement().is_randomized()
                {
                    // A default that follows another key: say which value was chosen and why.
                    println!(
                        "# train.batch_lengths = \"{}\" (not set: with randomized positions each \
                         training batch has one length, as in Ruoss et al.'s training loop)",
                        config.batch_lengths().name()
                    );
                }
                return Ok(());
            }
            let base_dir = path.parent().unwrap_or(Path::new("."));
            let dir = config.run_dir();
            let summary = trainer::train_with(
                config,
                Some(generator),
                base_dir,
                trainer::TrainOptions::new(progress),
            )
            .map(|s| s.expect("a run without a stop step finishes"))
            .with_context(|| format!("training {}", path.display()))?;
            print_summary(&summary, &dir);
            Ok(())
        }
        Command::Eval { run_dir, options } => eval(run_dir, options),
        Command::Ablate {
            experiment,
            jobs,
            shard,
            dry_run,
            rerun_stale,
        } => ablate(&experiment, jobs, shard.as_deref(), dry_run, rerun_stale),
        Command::Report { dir } => {
            let path = ordo_eval::ablate::rebuild_report(&dir)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Command::Inspect(args) => inspect(args),
        Command::Bench(args) => bench::run(args),
        Command::Export {
            what: Export::Model { run_dir, out },
        } => {
            for f in ordo_eval::export::export_model(&run_dir, out.as_deref())? {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Command::Export {
            what: Export::Tensorboard { dir, out },
        } => {
            let (_, cells) = ordo_eval::ablate::finished_cells(&dir)?;
            let done = ordo_eval::tensorboard::export(&dir, &cells, out.as_deref())?;
            println!(
                "wrote {} ({} runs, {} scalars): tensorboard --logdir {}",
                done.dir.display(),
                done.sessions,
                done.scalars,
                done.dir.display()
            );
            Ok(())
        }
        Command::Analyze { run_dir, options } => {
            let (analysis, files) = ordo_eval::analyze::analyze_run(&run_dir, &options)?;
            print!("{}", ordo_eval::analyze::analysis_table(&analysis));
            for f in files {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Command::Init { dir } => {
            let done = init::init(&dir)?;
            println!(
                "{}: wrote {} files, {} already there as shipped",
                dir.display(),
                done.written,
                done.same
            );
            for rel in &done.kept {
                println!("kept {rel} (it differs from the shipped one; not replaced)");
            }
            println!(
                "next: cd {} && ordo ablate experiments/quick.toml",
                dir.display()
            );
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "ordo", &mut std::io::stdout());
            Ok(())
        }
        Command::Corpus {
            sentences,
            seed,
            min_len,
            max_len,
        } => {
            if min_len < 5 || min_len > max_len {
                bail!("expected 5 <= --min-len <= --max-len");
            }
            let lexicon = ordo_train::tasks::Lexicon::builtin();
            print!(
                "{}",
                ordo_train::tasks::corpus(&lexicon, seed, sentences, min_len, max_len)
            );
            Ok(())
        }
    }
}

fn ablate(
    path: &Path,
    jobs: Option<usize>,
    shard: Option<&str>,
    dry_run: bool,
    rerun_stale: bool,
) -> Result<()> {
    use ordo_eval::ablate;
    if jobs == Some(0) {
        bail!("--jobs must be at least 1");
    }
    let shard = shard
        .map(ablate::parse_shard)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--shard: {e}"))?;
    let experiment = ablate::load(path)?;
    if dry_run {
        let cells = experiment.shard(shard);
        let scope = if shard.is_some() {
            " in this shard"
        } else {
            ""
        };
        experiment.check_memory(&cells, jobs.unwrap_or(experiment.spec.jobs))?;
        println!("{}: {} cells{scope}", experiment.name, cells.len());
        let wanted = experiment.eval_options().record();
        let width = cells.iter().map(|c| c.info.id.len()).max().unwrap_or(0);
        for cell in cells {
            println!("  {:<width$} {}", cell.info.id, cell.status(&wanted));
        }
        return Ok(());
    }
    let options = ablate::AblateOptions {
        jobs: jobs.unwrap_or(experiment.spec.jobs),
        shard,
        verbose: true,
        rerun_stale,
    };
    let outcome = ablate::run(&experiment, options)?;
    if let Some(report) = &outcome.report {
        println!("wrote {}", report.display());
    }
    if !outcome.unfinished.is_empty() {
        return Err(Unfinished(outcome.unfinished).into());
    }
    Ok(())
}

/// Cells of this shard that other processes hold and had not finished when this one ended:
/// not a failure of this process, but not done either (exit code [`EXIT_UNFINISHED`]).
#[derive(Debug)]
struct Unfinished(Vec<String>);

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} cell(s) of this shard are held by other processes and were not finished when \
             this one ended (run the same command again later, or `ordo report` once they are \
             done):\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        )
    }
}

impl std::error::Error for Unfinished {}

#[derive(clap::Args)]
struct InspectArgs {
    /// The encoding kind.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(ordo_model::PositionalEncodingConfig::KINDS))]
    kind: String,
    /// A parameter of that encoding: --set base=500, --set layout=half (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Number of positions.
    #[arg(long, default_value_t = 64)]
    len: usize,
    #[arg(long, default_value_t = 64)]
    d_model: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// causal or bidirectional.
    #[arg(long, default_value = "causal")]
    mode: String,
    /// Directory for the PNG and SVG pictures.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one JSON object with the numbers instead of a summary.
    #[arg(long)]
    json: bool,
    /// An option of the scheme's figures, NAME=VALUE (repeatable); an unknown one is refused
    /// with the list of those the scheme takes (e.g. `--figure decay_dims=model`).
    #[arg(long = "figure", value_name = "NAME=VALUE")]
    figure: Vec<String>,
    /// Use a trained run's encoding (learned table, T5 bias) and dimensions.
    #[arg(long, value_name = "RUN_DIR")]
    checkpoint: Option<PathBuf>,
    /// With --checkpoint: draw the model's attention maps for this input (space-separated tokens).
    #[arg(long)]
    text: Option<String>,
}

fn inspect(a: InspectArgs) -> Result<()> {
    use ordo_eval::inspect;
    use ordo_model::AttentionMode;
    if a.len == 0 {
        bail!("--len must be positive");
    }
    let mode = match a.mode.as_str() {
        "causal" => AttentionMode::Causal,
        "bidirectional" => AttentionMode::Bidirectional,
        other => bail!("--mode: expected causal or bidirectional, got {other:?}"),
    };
    let device = ordo_train::device::parse("cpu")?;
    let run = match &a.checkpoint {
        Some(dir) => Some(ordo_eval::extrapolation::load_run(dir, Some("cpu"))?),
        None => None,
    };
    let (config, encoding, dims) = match &run {
        Some(run) => {
            let kind = run.config.model.encoding.kind();
            if kind != a.kind {
                bail!(
                    "{}: the run uses `{kind}`, not `{}`",
                    run.dir.display(),
                    a.kind
                );
            }
            let encoding = run.model.encoding().clone();
            (
                run.config.model.encoding.clone(),
                encoding,
                run.config.model.dims(),
            )
        }
        None => {
            let config = inspect::encoding_config(&a.kind, &a.sets, a.len)?;
            let model = ordo_model::ModelConfig {
                d_model: a.d_model,
                n_heads: a.heads,
                mode,
                encoding: config.clone(),
                ..ordo_model::ModelConfig::default()
            };
            model.validate().map_err(|e| match e {
                // A parameter given with --set (checked against the model's sizes).
                ordo_model::ModelConfigError::Encoding(e) => anyhow::anyhow!(
                    "encoding `{}`: `{}` (--set): {} (with --d-model {} --heads {})",
                    a.kind,
                    e.field,
                    e.message,
                    a.d_model,
                    a.heads
                ),
                e => anyhow::anyhow!("--d-model {} --heads {}: {e}", a.d_model, a.heads),
            })?;
            let dims = model.dims();
            (config.clone(), config.init(&dims, &device), dims)
        }
    };
    let options = inspect::figure_options(&encoding, &a.figure)?;
    if a.json {
        let value = inspect::describe(&config, &encoding, &dims, a.len, &options, &device);
        println!("{}", serde_json::to_string(&value)?);
    } else {
        println!(
            "{}: {} (d_model {}, {} heads, {:?}, {} positions)",
            config.kind(),
            serde_json::to_string(&config)?,
            dims.d_model,
            dims.n_heads,
            dims.mode,
            a.len
        );
        // What the checkpoint learned of the scheme's own scalars (FIRE: L and c).
        let learned = encoding.scheme().learned_scalars();
        if run.is_some() && !learned.is_empty() {
            let shown: Vec<String> = learned
                .iter()
                .map(|(k, v)| format!("{k} = {v:.4}"))
                .collect();
            println!("learned: {}", shown.join(", "));
        }
        for note in inspect::notes(&config, &encoding, &dims, a.len, &options, &device) {
            println!("{note}");
        }
    }
    if let Some(out) = &a.out {
        let mut files = inspect::plots(&config, &encoding, &dims, a.len, &options, out, &device)?;
        if let (Some(run), Some(text)) = (&run, &a.text) {
            files.extend(inspect::attention_plots(run, text, out)?);
        }
        if !a.json {
            for f in &files {
                println!("wrote {}", f.display());
            }
        }
    } else if a.text.is_some() {
        bail!("--text draws attention maps: give --out DIR too");
    }
    Ok(())
}

fn eval(run_dir: PathBuf, options: ordo_eval::EvalOptions) -> Result<()> {
    options
        .validate(&|key| format!("--{}", key.replace('_', "-")))
        .map_err(anyhow::Error::msg)?;
    let report = ordo_eval::evaluate_run(&run_dir, &options)?;
    println!(
        "{} ({} on {}, trained on lengths {}-{}, overrides {})",
        report.run,
        report.encoding,
        report.task,
        report.train_min_len,
        report.train_max_len,
        report.overrides
    );
    println!("{}", ordo_eval::summary::eval_summary(&report));
    let written = ordo_train::run_dir::RunDir::new(&run_dir).eval_json(&options.variant());
    println!("wrote {}", written.display());
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

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::{CommandFactory, Parser};

    /// Words of a command line as a shell splits them (double quotes group), up to a
    /// redirection, a pipe or a comment.
    fn words(line: &str) -> Vec<String> {
        let (mut out, mut word, mut quoted) = (Vec::new(), String::new(), false);
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                c if c.is_whitespace() && !quoted => {
                    if ["<", ">", "|"].contains(&word.as_str()) || word.starts_with('#') {
                        return out;
                    }
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() && !["<", ">", "|"].contains(&word.as_str()) {
            out.push(word);
        }
        out
    }

    /// Every subcommand's help ends with examples, and every example that runs `ordo` is a
    /// command line `ordo` accepts.
    #[test]
    fn every_subcommand_shows_examples_that_parse() {
        let command = Cli::command();
        let mut checked = 0;
        for sub in command.get_subcommands() {
            let name = sub.get_name();
            let help = sub
                .get_after_help()
                .unwrap_or_else(|| panic!("`ordo {name} --help` has no examples"))
                .to_string();
            assert!(help.starts_with("Examples:"), "{name}: {help}");
            let lines: Vec<&str> = help
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("ordo "))
                .collect();
            assert!(lines.len() >= 2, "{name}: fewer than two examples");
            for line in lines {
                let argv = words(line);
                assert_eq!(argv[1], name, "{line}");
                if let Err(e) = Cli::try_parse_from(&argv) {
                    panic!("{line}: {e}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 16, "{checked} examples");
    }
}
