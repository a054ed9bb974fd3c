//! `ordo bench`: training and evaluation throughput and peak memory (see `ordo_bench`).
//!
//! Every measurement runs in a child process (this executable re-invoked with the hidden
//! `--single JOB`) so that its peak resident set is its own; the parent gathers the JSON line
//! each child prints.

use anyhow::{Context, Result, bail};
use ordo_bench::{self as bench, Job, Options, Plan};
use std::path::PathBuf;
use std::process::Command;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Shapes whose training step is measured (tiny, small, medium; `none` for none).
    #[arg(long, value_delimiter = ',', default_value = "tiny,small,medium")]
    shapes: Vec<String>,
    /// Positional encodings measured (default: every scheme ordo has).
    #[arg(long, value_delimiter = ',', default_values_t = all_encodings())]
    encodings: Vec<String>,
    /// Shapes whose forward-only evaluation is measured (`none` for none).
    #[arg(long, value_delimiter = ',', default_value = "small")]
    eval_shapes: Vec<String>,
    /// Evaluated lengths, as multiples of the shape's training length.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    eval_factors: Vec<usize>,
    /// Tokens per evaluation forward pass (batch = tokens / length).
    #[arg(long, default_value_t = bench::EVAL_TOKENS)]
    eval_tokens: usize,
    /// Timed steps per measurement (the median is reported).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed warm-up steps before them.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Device: cpu (flex), flex, ndarray, wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Seed of the weights and of the random batch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use burn's composed ops instead of ordo's fused CPU kernels for the attention core,
    /// softmax, GELU, LayerNorm and the loss (to measure what the kernels gain).
    #[arg(long)]
    composed_ops: bool,
    /// Number format of the dense matrix products, fp32 or bf16 (bf16 operands, fp32 sums:
    /// `train.precision`).
    #[arg(long, default_value = "fp32")]
    precision: ordo_model::kernels::Precision,
    /// Also measure matrix products: the square 2048³ limit, and every dense product of each
    /// measured shape's training step at its own size and layout (a few seconds per shape).
    #[arg(long)]
    gemm: bool,
    /// Print the report as JSON on stdout instead of a table (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Internal: run one measurement (`train:SHAPE:ENCODING` or `eval:SHAPE:ENCODING:FACTOR`)
    /// in this process and print its record as one JSON line.
    #[arg(long, hide = true, value_name = "JOB")]
    single: Option<String>,
}

/// Every scheme, from the one list the encodings crate derives.
fn all_encodings() -> Vec<String> {
    ordo_model::PositionalEncodingConfig::KINDS
        .iter()
        .map(|k| k.to_string())
        .collect()
}

fn list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "none")
        .collect()
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if args.eval_tokens == 0 {
        bail!("--eval-tokens must be positive");
    }
    if args.eval_factors.contains(&0) {
        bail!("--eval-factors must be positive");
    }
    let device =
        ordo_train::device::parse(&args.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    let options = Options {
        steps: args.steps,
        warmup: args.warmup,
        device: args.device.clone(),
        eval_tokens: args.eval_tokens,
        max_eval_factor: args.eval_factors.iter().copied().max().unwrap_or(1),
        seed: args.seed,
        composed_ops: args.composed_ops,
        precision: args.precision,
    };

    if let Some(job) = &args.single {
        let job: Job = job
            .parse()
            .map_err(|e: bench::BenchError| anyhow::anyhow!("--single: {e}"))?;
        let record = bench::measure(&job, &options).map_err(|e| anyhow::anyhow!("{job}: {e}"))?;
        println!("{}", serde_json::to_string(&record)?);
        return Ok(());
    }

    // `none` is an encoding: only the shape lists treat it as "nothing".
    let encodings: Vec<String> = args
        .encodings
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let plan = Plan {
        shapes: list(&args.shapes),
        encodings,
        eval_shapes: list(&args.eval_shapes),
        eval_factors: args.eval_factors.clone(),
    };
    let jobs = plan.jobs()?;
    if jobs.is_empty() && !args.gemm {
        bail!("nothing to measure: give --shapes or --eval-shapes, and --encodings");
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(load) = bench::load_average().filter(|&l| l >= 0.5 * threads as f64) {
        eprintln!(
            "warning: load average {load:.2} on {threads} hardware threads: other processes compete for the cores, so the figures will be low and noisy"
        );
    }
    let exe = std::env::current_exe().context("cannot find the ordo executable")?;
    let factors: Vec<String> = args.eval_factors.iter().map(|f| f.to_string()).collect();
    let total = jobs.len();
    let mut done = 0usize;
    let mut report = bench::run_jobs(
        &jobs,
        &options,
        |job| {
            let mut command = Command::new(&exe);
            command.args([
                "bench".to_string(),
                "--single".into(),
                job.to_string(),
                "--steps".into(),
                options.steps.to_string(),
                "--warmup".into(),
                options.warmup.to_string(),
                "--device".into(),
                options.device.clone(),
                "--eval-tokens".into(),
                options.eval_tokens.to_string(),
                "--eval-factors".into(),
                factors.join(","),
                "--seed".into(),
                options.seed.to_string(),
            ]);
            if options.composed_ops {
                command.arg("--composed-ops");
            }
            command.args(["--precision", options.precision.name()]);
            command
        },
        |job, result| {
            done += 1;
            match result {
                Ok(r) => eprintln!(
                    "[{done}/{total}] {job}: {:.0} tok/s, {:.1} ms/step, peak {} MiB",
                    r.tokens_per_second,
                    r.step_seconds * 1e3,
                    r.peak_rss_mib
                        .map_or("n/a".to_string(), |m| format!("{m:.0}"))
                ),
                Err(e) => eprintln!("[{done}/{total}] {job}: FAILED: {e}"),
            }
        },
    );
    if args.gemm {
        // After the steps, in this process, alone as they were.
        let shapes: Vec<bench::Shape> =
            plan.shapes.iter().filter_map(|s| bench::shape(s)).collect();
        report.gemm = Some(bench::gemm::measure(&shapes, &device, |p| {
            eprintln!(
                "gemm {} {}×{}×{}: {:.0} GFLOP/s{}",
                p.name,
                p.m,
                p.k,
                p.n,
                p.gflops(),
                p.bf16_gflops()
                    .map(|g| format!(", bf16 {g:.0}"))
                    .unwrap_or_default()
            )
        }));
    }
    let json = report.to_json();
    if let Some(path) = &args.out {
        ordo_train::run_dir::write_atomic(path, format!("{json}\n").as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report.table());
        if let Some(path) = &args.out {
            println!("wrote {}", path.display());
        }
    }
    if !report.failures.is_empty() {
        bail!("{} of {total} measurements failed", report.failures.len());
    }
    Ok(())
}
