//! `ordo bench`'s measurements: the benchmarked step really trains, every requested measurement
//! comes back from its own process with positive figures, and peak memory is per process.
//!
//! Child processes are this test binary re-invoked on the single test `bench_child`, which
//! measures the job named in `ORDO_BENCH_JOB` (with the options in `ORDO_BENCH_OPTIONS`) and
//! prints its record, as `ordo bench --single JOB` does. No assertion is about time.

use burn::prelude::*;
use ordo_bench::{self as bench, Job, Mode, Options, Plan, Report, TrainBench};
use std::process::Command;

const JOB_VAR: &str = "ORDO_BENCH_JOB";
const OPTIONS_VAR: &str = "ORDO_BENCH_OPTIONS";

/// The child side: does nothing unless started by [`child_command`].
#[test]
fn bench_child() {
    let Ok(job) = std::env::var(JOB_VAR) else {
        return;
    };
    let job: Job = job.parse().unwrap();
    let options: Options = serde_json::from_str(&std::env::var(OPTIONS_VAR).unwrap()).unwrap();
    let record = bench::measure(&job, &options).unwrap_or_else(|e| panic!("{job}: {e}"));
    println!("{}", serde_json::to_string(&record).unwrap());
}

fn child_command(job: &Job, options: &Options) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "bench_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(JOB_VAR, job.to_string())
        .env(OPTIONS_VAR, serde_json::to_string(options).unwrap());
    command
}

fn quick() -> Options {
    Options {
        steps: 1,
        warmup: 0,
        eval_tokens: 512,
        ..Options::default()
    }
}

fn run(plan: &Plan, options: &Options) -> Report {
    let jobs = plan.jobs().unwrap();
    bench::run_jobs(&jobs, options, |job| child_command(job, options), |_, _| {})
}

#[test]
fn the_benchmarked_step_trains_every_encoding_on_its_fixed_batch() {
    let shape = bench::shape("tiny").unwrap();
    for encoding in ordo_model::PositionalEncodingConfig::KINDS {
        let mut bench = TrainBench::new(&shape, encoding, &Device::flex(), 1).unwrap();
        assert_eq!(bench.tokens(), shape.batch * shape.seq_len);
        let before = bench.loss();
        let first = bench.step();
        assert!(
            (first - before).abs() < 1e-3,
            "{encoding}: the step's loss {first} is the loss of the model it steps ({before})"
        );
        for _ in 0..24 {
            bench.step();
        }
        let after = bench.loss();
        assert!(after.is_finite(), "{encoding}: loss {after}");
        assert!(
            after < before - 0.1,
            "{encoding}: loss on the fixed batch went from {before} to {after} in 25 steps"
        );
    }
}

#[test]
fn the_json_report_has_every_requested_measurement_with_positive_figures() {
    let plan = Plan {
        shapes: vec!["tiny".into()],
        encodings: ordo_model::PositionalEncodingConfig::KINDS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        eval_shapes: vec!["small".into()],
        // 8x: learned tables must be sized for the longest evaluated length.
        eval_factors: vec![1, 8],
    };
    let options = Options {
        max_eval_factor: 8,
        ..quick()
    };
    let report = run(&plan, &options);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let parsed: Report = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(parsed, report);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let kinds = ordo_model::PositionalEncodingConfig::KINDS.len();
    assert_eq!(json["records"].as_array().unwrap().len(), kinds + kinds * 2);

    let positive = |r: &bench::Record| {
        assert_eq!(r.implementation, "ordo");
        assert_eq!((r.steps, r.warmup), (1, 0));
        for (name, value) in [
            ("tokens_per_second", r.tokens_per_second),
            ("step_seconds", r.step_seconds),
            ("peak_rss_mib", r.peak_rss_mib.unwrap()),
            ("start_rss_mib", r.start_rss_mib.unwrap()),
        ] {
            assert!(value.is_finite() && value > 0.0, "{r:?}: {name} = {value}");
        }
        assert!(r.params > 0 && r.batch > 0);
        let tokens = (r.batch * r.seq_len) as f64;
        let implied = tokens / r.step_seconds;
        assert!((implied / r.tokens_per_second - 1.0).abs() < 1e-6, "{r:?}");
        assert!(r.peak_rss_mib.unwrap() >= r.start_rss_mib.unwrap() - 1.0);
    };
    for encoding in &plan.encodings {
        let r = report
            .train("tiny", encoding)
            .unwrap_or_else(|| panic!("no training record for tiny {encoding}"));
        positive(r);
        assert_eq!((r.seq_len, r.batch, r.factor), (64, 32, 1));
        assert!(r.loss_first.unwrap().is_finite());
        for factor in [1, 8] {
            let r = report
                .eval("small", encoding, factor)
                .unwrap_or_else(|| panic!("no eval record for small {encoding} {factor}x"));
            positive(r);
            assert_eq!(r.mode, Mode::Eval);
            assert_eq!(r.seq_len, 128 * factor);
            assert_eq!(r.batch, (512 / (128 * factor)).max(1));
            assert!(r.loss_first.is_none());
        }
    }
    // The table shows every measurement.
    let table = report.table();
    for encoding in &plan.encodings {
        assert!(
            table.contains(&format!("tiny    {encoding:<11}")),
            "{table}"
        );
    }
    assert!(table.contains("8x"), "{table}");
}

#[test]
fn peak_memory_is_per_process_and_grows_with_the_shape() {
    let plan = Plan {
        shapes: vec!["tiny".into(), "medium".into()],
        encodings: vec!["rope".into()],
        eval_shapes: vec![],
        eval_factors: vec![],
    };
    let report = run(&plan, &quick());
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let tiny = report.train("tiny", "rope").unwrap();
    let medium = report.train("medium", "rope").unwrap();
    assert!(medium.params > 10 * tiny.params);
    let (t, m) = (tiny.peak_rss_mib.unwrap(), medium.peak_rss_mib.unwrap());
    // Measured in separate processes: tiny's figure is not medium's left-over peak.
    assert!(m > t + 50.0, "peak RSS: medium {m} MiB, tiny {t} MiB");
}

#[test]
fn a_failed_measurement_is_reported_and_the_others_still_run() {
    let jobs: Vec<Job> = ["train:tiny:none", "train:tiny:alibi"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let good = quick();
    let bad = Options {
        device: "abacus".into(),
        ..quick()
    };
    let mut heard = Vec::new();
    let report = bench::run_jobs(
        &jobs,
        &good,
        |job| {
            let options = if job.encoding == "none" { &bad } else { &good };
            child_command(job, options)
        },
        |job, result| heard.push((job.to_string(), result.is_ok())),
    );
    assert_eq!(
        heard,
        vec![
            ("train:tiny:none".to_string(), false),
            ("train:tiny:alibi".to_string(), true)
        ]
    );
    assert_eq!(report.records.len(), 1);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].job, "train:tiny:none");
    assert!(
        report.failures[0].error.contains("unknown device"),
        "{}",
        report.failures[0].error
    );
    assert!(report.table().contains("failed"));
}

#[test]
fn composed_ops_measure_the_same_training_as_the_kernels() {
    let job: Job = "train:tiny:rope".parse().unwrap();
    let options = Options {
        steps: 2,
        ..quick()
    };
    let fused = bench::measure(&job, &options).unwrap();
    let composed = bench::measure(
        &job,
        &Options {
            composed_ops: true,
            ..options.clone()
        },
    )
    .unwrap();
    assert!(!fused.composed_ops && composed.composed_ops);
    for (a, b) in [
        (fused.loss_first, composed.loss_first),
        (fused.loss_last, composed.loss_last),
    ] {
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            (a - b).abs() < 1e-4,
            "losses {a} (kernels) vs {b} (burn's ops)"
        );
    }
}
