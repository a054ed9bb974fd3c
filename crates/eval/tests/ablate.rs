//! `ordo eval` on a tiny trained model and `ordo ablate` resumption.

use ordo_eval::ablate::{self, AblateOptions, Status};
use ordo_eval::extrapolation::{InvalidOption, Lengths};
use ordo_eval::{EvalOptions, evaluate_run};
use std::path::{Path, PathBuf};

use ordo_train::testing::TempDir;

const BASE: &str = r#"
[model]
d_model = 32
n_heads = 2
n_layers = 2
[model.encoding]
kind = "rope"
[task]
kind = "copy"
symbols = 6
min_len = 1
max_len = 4
[train]
steps = 40
batch_size = 16
lr = 3e-3
warmup_steps = 5
log_every = 10
eval_every = 20
eval_examples = 32
checkpoint_every = 20
"#;

fn write_base(dir: &Path) -> PathBuf {
    let path = dir.join("copy.toml");
    std::fs::write(&path, BASE).unwrap();
    path
}

/// Tasks whose examples of one length differ in size (addition: the shorter operand's digits)
/// are n/a at a length where any evaluated example exceeds a learned table, not a crash (the
/// first example used to decide alone).
#[test]
fn a_length_is_na_when_any_of_its_examples_exceeds_the_table() {
    let tmp = TempDir::new("eval-variable");
    let base = tmp.0.join("addition.toml");
    let text = BASE
        .replace("kind = \"copy\"\nsymbols = 6", "kind = \"addition\"")
        .replace("max_len = 4", "max_len = 3");
    std::fs::write(&base, text).unwrap();
    let config = ordo_train::config::load(
        &base,
        &[
            "model.encoding.kind=learned".to_string(),
            "train.steps=20".to_string(),
            "name=addition".to_string(),
            format!("out_dir={}", tmp.0.join("runs").display()),
        ],
    )
    .unwrap();
    let dir = config.run_dir();
    ordo_train::trainer::train(config, &tmp.0, ordo_train::trainer::Progress::Quiet).unwrap();
    let options = EvalOptions {
        examples: 32,
        ..EvalOptions::default()
    };
    let report = evaluate_run(&dir, &options).unwrap();
    // The table holds the longest training example (3 + 1 + 3 digits, [SEP], a 4-digit sum:
    // 11 tokens, 10 positions); at length 4 some of 32 examples need more.
    for r in &report.lengths {
        assert_eq!(r.metrics.is_some(), r.length <= 3, "length {}", r.length);
    }
    assert!(
        report.lengths[3]
            .unsupported
            .as_deref()
            .unwrap()
            .contains("cannot represent")
    );
}

#[test]
fn eval_of_a_tiny_model_covers_every_length_and_marks_what_the_scheme_cannot_represent() {
    let tmp = TempDir::new("eval");
    let base = write_base(&tmp.0);
    for kind in ["learned", "rope"] {
        let config = ordo_train::config::load(
            &base,
            &[
                format!("model.encoding.kind={kind}"),
                format!("name={kind}"),
                format!("out_dir={}", tmp.0.join("runs").display()),
            ],
        )
        .unwrap();
        let dir = config.run_dir();
        ordo_train::trainer::train(config, &tmp.0, ordo_train::trainer::Progress::Quiet).unwrap();
        let options = EvalOptions {
            examples: 16,
            ..EvalOptions::default()
        };
        let report = evaluate_run(&dir, &options).unwrap();
        let lengths: Vec<usize> = report.lengths.iter().map(|r| r.length).collect();
        assert_eq!(
            lengths,
            (1..=16).collect::<Vec<_>>(),
            "default lengths are 1..=4L"
        );
        // copy of n symbols: n + [SEP] + n answer tokens, the last not fed to a decoder.
        assert!(report.lengths.iter().all(|r| r.tokens == 2 * r.length));
        let b = &report.buckets;
        assert_eq!(
            (b.in_distribution.lengths, b.near.lengths, b.far.lengths),
            (4, 4, 8)
        );
        match kind {
            // The learned table has 2*4 = 8 rows: lengths 1..=4 fit, nothing longer.
            "learned" => {
                for r in &report.lengths {
                    assert_eq!(r.metrics.is_some(), r.length <= 4, "length {}", r.length);
                    if r.length > 4 {
                        assert!(
                            r.unsupported
                                .as_deref()
                                .unwrap()
                                .contains("cannot represent")
                        );
                    }
                }
                assert_eq!(b.near.exact_match, None);
                assert_eq!((b.near.unsupported, b.far.unsupported), (4, 8));
            }
            _ => {
                assert!(report.lengths.iter().all(|r| r.metrics.is_some()));
                let m = report.lengths[0].metrics.unwrap();
                assert_eq!(m.examples, 16);
                assert!((0.0..=1.0).contains(&m.exact_match) && m.loss.is_finite());
            }
        }
        // Means of a bucket are the means of its lengths.
        let id: Vec<f64> = report.lengths[..4]
            .iter()
            .map(|r| r.metrics.unwrap().exact_match)
            .collect();
        let mean = id.iter().sum::<f64>() / 4.0;
        assert!((b.in_distribution.exact_match.unwrap() - mean).abs() < 1e-12);
        let json: ordo_eval::EvalReport =
            serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
        assert_eq!(json, report);
        let csv = std::fs::read_to_string(dir.join("eval.csv")).unwrap();
        assert_eq!(csv.lines().count(), 17);
        // The same evaluation is reproducible (fresh data is seeded by the run's seed and length).
        assert_eq!(evaluate_run(&dir, &options).unwrap(), report);
    }
    // The run's encoding changed at evaluation (`--set model.encoding....`): checked by the
    // scheme as a training config is, named in the file and the report. A RoPE scaling is not a
    // parameter of a learned table.
    let linear = |factor: &str| EvalOptions {
        examples: 8,
        lengths: Some(Lengths(vec![2, 8])),
        overrides: vec![
            "model.encoding.scaling.kind=linear".into(),
            format!("model.encoding.scaling.factor={factor}"),
        ],
        ..EvalOptions::default()
    };
    let err = evaluate_run(&tmp.0.join("runs/learned"), &linear("2"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.encoding") && err.contains("scaling"),
        "{err}"
    );
    let scaled = evaluate_run(&tmp.0.join("runs/rope"), &linear("2")).unwrap();
    assert_eq!(scaled.overrides, "scaling.factor=2,scaling.kind=linear");
    assert!(
        tmp.0
            .join("runs/rope/eval-scaling.factor=2,scaling.kind=linear.json")
            .is_file()
    );
    // The scheme's own checks apply: a factor below 1 is refused, naming the key.
    let err = evaluate_run(&tmp.0.join("runs/rope"), &linear("0.5"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.encoding.scaling.factor"), "{err}");
    // Dynamic NTK without `original_max_len`: loading fills in the longest training sequence,
    // so a length inside it (2) evaluates exactly as without scaling, and one past it (8)
    // does not.
    let dynamic = EvalOptions {
        overrides: vec![
            "model.encoding.scaling.factor=4".into(),
            "model.encoding.scaling.kind=dynamic".into(),
        ],
        ..linear("2")
    };
    let plain = EvalOptions {
        overrides: Vec::new(),
        ..linear("2")
    };
    let scaled = evaluate_run(&tmp.0.join("runs/rope"), &dynamic).unwrap();
    let unscaled = evaluate_run(&tmp.0.join("runs/rope"), &plain).unwrap();
    assert_eq!(scaled.overrides, "scaling.factor=4,scaling.kind=dynamic");
    assert_eq!(unscaled.overrides, "none");
    assert_eq!(
        scaled.lengths[0], unscaled.lengths[0],
        "length 2 is inside L"
    );
    let loss = |r: &ordo_eval::EvalReport| r.lengths[1].metrics.unwrap().loss;
    assert_ne!(loss(&scaled), loss(&unscaled), "length 8 is past L");
}

#[test]
fn eval_overrides_are_named_canonically_and_only_the_encoding_may_change() {
    let with = |sets: &[&str]| EvalOptions {
        overrides: sets.iter().map(|s| s.to_string()).collect(),
        ..EvalOptions::default()
    };
    // Key order, quoting and repetition do not change the name (the last value wins).
    let a = with(&[
        "model.encoding.scaling.kind=yarn",
        "model.encoding.scaling.factor=4",
    ]);
    let b = with(&[
        "model.encoding.scaling.factor=2",
        "model.encoding.scaling.kind=\"yarn\"",
        "model.encoding.scaling.factor=4",
    ]);
    assert_eq!(
        a.overrides_name().as_deref(),
        Some("scaling.factor=4,scaling.kind=yarn")
    );
    assert_eq!(a.overrides_name(), b.overrides_name());
    assert_eq!(a.record(), b.record());
    assert_eq!(with(&[]).overrides_name(), None);
    assert_eq!(with(&[]).record().overrides, "none");
    // Characters a file name should not hold are replaced.
    assert_eq!(
        with(&["model.encoding.x=a/b c"])
            .overrides_name()
            .as_deref(),
        Some("x=a_b_c")
    );
    let flag = |key: &str| format!("--{key}");
    assert!(a.validate(&flag).is_ok());
    for (sets, needle) in [
        (&["train.lr=1"][..], "only the run's encoding"),
        (&["model.d_model=8"][..], "model.encoding."),
        (&["model.encoding.kind=alibi"][..], "kind is the run's"),
        (&["model.encoding.base"][..], "KEY=VALUE"),
    ] {
        let err = with(sets).validate(&flag).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("--set"),
            "{sets:?}: {err}"
        );
    }
    // One set of checks for the counts, named as the source spells them.
    let zero = EvalOptions {
        examples: 0,
        ..EvalOptions::default()
    };
    assert_eq!(
        zero.validate(&|k| format!("`eval.{k}`")).unwrap_err(),
        InvalidOption::Zero {
            field: "`eval.examples`".into()
        }
    );
    let far = EvalOptions {
        max_factor: Some(ordo_eval::extrapolation::MAX_FACTOR + 1),
        ..EvalOptions::default()
    };
    let err = far.validate(&flag).unwrap_err();
    assert!(matches!(&err, InvalidOption::TooLarge { field, .. } if field == "--max_factor"));
    assert!(
        err.to_string()
            .starts_with("--max_factor: expected at most"),
        "{err}"
    );
    // Files of older versions, which named a RoPE scaling, still read.
    let old: ordo_eval::extrapolation::EvalRecord = serde_json::from_str(
        r#"{"lengths":null,"max_factor":4,"examples":128,"scaling":"none","sliding":null}"#,
    )
    .unwrap();
    assert_eq!(old, with(&[]).record());
}

fn experiment(tmp: &TempDir) -> PathBuf {
    write_base(&tmp.0);
    let path = tmp.0.join("grid.toml");
    std::fs::write(
        &path,
        r#"
tasks = ["copy.toml"]
encodings = ["none", "alibi", "sinusoidal"]
seeds = [0, 1]
[set]
"train.steps" = 20
[eval]
examples = 8
max_factor = 2
"#,
    )
    .unwrap();
    path
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime, Vec<u8>)> {
    ["summary.json", "eval.json", "checkpoint/state.json"]
        .iter()
        .map(|f| {
            let p = dir.join(f);
            let meta = std::fs::metadata(&p).unwrap();
            (
                p.clone(),
                meta.modified().unwrap(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn an_interrupted_ablation_resumes_without_touching_finished_cells() {
    let tmp = TempDir::new("ablate");
    let path = experiment(&tmp);
    let exp = ablate::load(&path).unwrap();
    assert_eq!(exp.cells.len(), 6);
    let wanted = exp.eval_options().record();
    assert!(exp.cells.iter().all(|c| c.status(&wanted) == Status::Todo));

    // A first shard finishes half the cells; a third cell is killed part-way through training.
    let options = |shard| AblateOptions {
        jobs: 2,
        shard,
        verbose: false,
        rerun_stale: false,
    };
    ablate::run(&exp, options(Some((1, 2)))).unwrap();
    let done: Vec<_> = exp
        .cells
        .iter()
        .filter(|c| c.status(&wanted) == Status::Done)
        .collect();
    assert_eq!(done.len(), 3);
    let partial = exp
        .cells
        .iter()
        .find(|c| c.status(&wanted) == Status::Todo)
        .unwrap();
    let stopped = ordo_train::trainer::train_with(
        partial.config.clone(),
        None,
        &partial.base_dir,
        ordo_train::trainer::TrainOptions {
            stop_at: Some(10),
            ..ordo_train::trainer::TrainOptions::new(ordo_train::trainer::Progress::Quiet)
        },
    )
    .unwrap();
    assert!(stopped.is_none());
    assert_eq!(partial.status(&wanted), Status::Started);
    let before: Vec<_> = done.iter().map(|c| snapshot(c.run_dir().path())).collect();

    std::thread::sleep(std::time::Duration::from_millis(20));
    let report = ablate::run(&exp, options(None)).unwrap().report.unwrap();
    assert!(exp.cells.iter().all(|c| c.status(&wanted) == Status::Done));
    let after: Vec<_> = done.iter().map(|c| snapshot(c.run_dir().path())).collect();
    assert_eq!(before, after, "finished cells were rewritten");

    // The report covers every cell and can be rebuilt from the run directories alone.
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("6 finished cells"), "{text}");
    std::fs::remove_file(&report).unwrap();
    let rebuilt = ablate::rebuild_report(&exp.dir).unwrap();
    assert_eq!(std::fs::read_to_string(rebuilt).unwrap(), text);
}

#[test]
fn experiment_errors_name_the_file_and_the_cell() {
    let tmp = TempDir::new("ablate-errors");
    write_base(&tmp.0);
    let cases = [
        ("tasks = [\"copy.toml\"]\nencodings = [\"nope\"]", "nope"),
        ("tasks = [\"missing.toml\"]", "missing.toml"),
        ("tasks = [\"copy.toml\"]\nbogus = 1", "bogus"),
        (
            "tasks = [\"copy.toml\"]\n[set]\n\"model.n_heads\" = 3",
            "model.n_heads",
        ),
        (
            "tasks = [\"copy.toml\"]\n[grid]\n\"model.mode\" = \"causal\"",
            "grid",
        ),
    ];
    for (text, needle) in cases {
        let path = tmp.0.join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let err = ablate::load(&path).unwrap_err().to_string();
        assert!(err.contains("bad.toml") || err.contains("cell "), "{err}");
        assert!(err.contains(needle), "{needle:?} missing from {err}");
    }
    assert!(ablate::parse_shard("3/2").is_err());
    assert_eq!(ablate::parse_shard("2/4").unwrap(), (2, 4));
}

fn quiet(rerun_stale: bool) -> AblateOptions {
    AblateOptions {
        jobs: 1,
        shard: None,
        verbose: false,
        rerun_stale,
    }
}

fn small_experiment(tmp: &TempDir, extra: &str) -> PathBuf {
    write_base(&tmp.0);
    let path = tmp.0.join("small.toml");
    std::fs::write(
        &path,
        format!(
            "tasks = [\"copy.toml\"]\nencodings = [\"none\", \"alibi\"]\n[set]\n\"train.steps\" = 20\n{extra}[eval]\nexamples = 8\nmax_factor = 2\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn stale_cells_are_named_with_what_changed_and_rerun_only_when_asked() {
    let tmp = TempDir::new("stale");
    let path = small_experiment(&tmp, "");
    let exp = ablate::load(&path).unwrap();
    ablate::run(&exp, quiet(false)).unwrap();
    let spec = std::fs::read(exp.dir.join("experiment.json")).unwrap();

    // Someone edits [set]: every cell is stale, nothing runs without --rerun-stale.
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"train.steps\" = 20", "\"train.steps\" = 25");
    std::fs::write(&path, edited).unwrap();
    let exp = ablate::load(&path).unwrap();
    let wanted = exp.eval_options().record();
    assert!(matches!(exp.cells[0].status(&wanted), Status::Stale(_)));
    let err = ablate::run(&exp, quiet(false)).unwrap_err().to_string();
    assert!(err.contains("2 cell(s) are stale"), "{err}");
    assert!(
        err.contains("`train.steps`: the run has 20, the experiment asks for 25"),
        "{err}"
    );
    assert!(
        err.contains("copy-none-s0") && err.contains("--rerun-stale"),
        "{err}"
    );
    assert!(
        !exp.stale_dir().exists(),
        "nothing may move without --rerun-stale"
    );
    assert_eq!(
        std::fs::read(exp.dir.join("experiment.json")).unwrap(),
        spec,
        "a refused grid leaves the report settings of the grid that ran"
    );

    ablate::run(&exp, quiet(true)).unwrap();
    assert!(exp.cells.iter().all(|c| c.status(&wanted) == Status::Done));
    assert!(
        exp.stale_dir()
            .join("copy-none-s0-1/summary.json")
            .is_file(),
        "the old run is kept"
    );
    let summary = std::fs::read_to_string(exp.cells[0].run_dir().summary()).unwrap();
    assert!(summary.contains("\"steps\": 25"), "{summary}");

    // A changed [eval] makes the evaluation stale; --rerun-stale re-evaluates without training.
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace("examples = 8", "examples = 6");
    std::fs::write(&path, edited).unwrap();
    let exp = ablate::load(&path).unwrap();
    let err = ablate::run(&exp, quiet(false)).unwrap_err().to_string();
    assert!(err.contains("`[eval]`"), "{err}");
    let trained = std::fs::read(exp.cells[0].run_dir().summary()).unwrap();
    ablate::run(&exp, quiet(true)).unwrap();
    assert_eq!(
        std::fs::read(exp.cells[0].run_dir().summary()).unwrap(),
        trained
    );
    let eval = std::fs::read_to_string(exp.cells[0].run_dir().path().join("eval.json")).unwrap();
    assert!(eval.contains("\"examples_per_length\": 6"), "{eval}");
}

#[test]
fn a_partial_manual_eval_is_not_the_cells_evaluation() {
    let tmp = TempDir::new("manual-eval");
    let path = small_experiment(&tmp, "");
    let exp = ablate::load(&path).unwrap();
    let report = ablate::run(&exp, quiet(false)).unwrap().report.unwrap();
    let full = std::fs::read_to_string(&report).unwrap();
    let wanted = exp.eval_options().record();
    let cell = &exp.cells[0];
    let options = EvalOptions {
        lengths: Some(Lengths(vec![1, 2])),
        examples: 4,
        ..EvalOptions::default()
    };
    let before = std::fs::read(cell.run_dir().path().join("eval.json")).unwrap();
    let manual = evaluate_run(cell.run_dir().path(), &options).unwrap();
    assert_eq!(manual.checkpoint_step, Some(20));
    assert_eq!(cell.status(&wanted), Status::Trained);
    // The cell's own evaluation is kept beside the manual one, not overwritten.
    let kept = cell.run_dir().path().join("eval.before-1.json");
    assert_eq!(std::fs::read(&kept).unwrap(), before);
    assert!(cell.run_dir().path().join("eval.before-1.csv").is_file());
    // The report leaves the manually evaluated cell out rather than mixing protocols ...
    let rebuilt = std::fs::read_to_string(ablate::rebuild_report(&exp.dir).unwrap()).unwrap();
    assert!(rebuilt.contains("1 finished cells"), "{rebuilt}");
    // ... and ablate evaluates it again, giving back the full report (and keeping the manual
    // evaluation too).
    ablate::run(&exp, quiet(false)).unwrap();
    assert_eq!(cell.status(&wanted), Status::Done);
    assert!(cell.run_dir().path().join("eval.before-2.json").is_file());
    assert_eq!(std::fs::read_to_string(&report).unwrap(), full);
}

/// A cell counts as done only when everything the report reads is there; the report lists
/// every run directory it leaves out.
#[test]
fn an_evaluation_without_cell_json_is_not_done_and_the_report_says_what_it_left_out() {
    let tmp = TempDir::new("done");
    let path = small_experiment(&tmp, "");
    let exp = ablate::load(&path).unwrap();
    let report = ablate::run(&exp, quiet(false)).unwrap().report.unwrap();
    let full = std::fs::read_to_string(&report).unwrap();
    assert!(!full.contains("Left out"), "{full}");
    let wanted = exp.eval_options().record();
    let cell = &exp.cells[1];
    // As a crash between eval.json and cell.json would leave it (or a plain `ordo eval`).
    std::fs::remove_file(cell.run_dir().cell()).unwrap();
    assert_eq!(cell.status(&wanted), Status::Trained);
    let rebuilt = std::fs::read_to_string(ablate::rebuild_report(&exp.dir).unwrap()).unwrap();
    assert!(
        rebuilt.contains("**Left out: 1 run directory**"),
        "{rebuilt}"
    );
    assert!(
        rebuilt.contains(&format!(
            "- runs/{}: evaluated, but without `cell.json`",
            cell.info.id
        )),
        "{rebuilt}"
    );
    // A copy of a finished cell (`cp -r`) is not a second seed: it is ignored, and named.
    let other = &exp.cells[0];
    let backup = exp.dir.join("runs/copy-backup");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(other.run_dir().path())
        .arg(&backup)
        .status()
        .unwrap();
    assert!(status.success());
    let rebuilt = std::fs::read_to_string(ablate::rebuild_report(&exp.dir).unwrap()).unwrap();
    assert!(
        rebuilt.contains("- runs/copy-backup: not a cell of the experiment's grid (ignored)"),
        "{rebuilt}"
    );
    assert!(rebuilt.contains("1 finished cells"), "{rebuilt}");
    std::fs::remove_dir_all(&backup).unwrap();
    // A cell of the grid that never started is named as well.
    let started = exp.cells[1].run_dir();
    let aside = exp.dir.join("aside");
    std::fs::rename(started.path(), &aside).unwrap();
    let rebuilt = std::fs::read_to_string(ablate::rebuild_report(&exp.dir).unwrap()).unwrap();
    assert!(
        rebuilt.contains(&format!("- runs/{}: not started", exp.cells[1].info.id)),
        "{rebuilt}"
    );
    std::fs::rename(&aside, started.path()).unwrap();
    // ablate finishes the cell (evaluates it again), giving back the full report.
    ablate::run(&exp, quiet(false)).unwrap();
    assert_eq!(cell.status(&wanted), Status::Done);
    assert_eq!(std::fs::read_to_string(&report).unwrap(), full);
}

/// More array tasks than cells: an empty shard succeeds; a cell held by another process is
/// reported as left unfinished, not as done.
#[test]
fn an_empty_shard_succeeds_and_held_cells_are_reported_unfinished() {
    let tmp = TempDir::new("held");
    let path = small_experiment(&tmp, "");
    let exp = ablate::load(&path).unwrap();
    assert_eq!(exp.cells.len(), 2);
    let shard = |shard| AblateOptions {
        jobs: 1,
        shard: Some(shard),
        verbose: false,
        rerun_stale: false,
    };
    let empty = ablate::run(&exp, shard((3, 4))).unwrap();
    assert_eq!((empty.report, empty.unfinished.len()), (None, 0));
    let held = exp.cells[0].run_dir().lock("another process").unwrap();
    let outcome = ablate::run(&exp, quiet(false)).unwrap();
    assert_eq!(outcome.unfinished, vec![exp.cells[0].info.id.clone()]);
    let text = std::fs::read_to_string(outcome.report.unwrap()).unwrap();
    assert!(text.contains("1 finished cells"), "{text}");
    drop(held);
    let outcome = ablate::run(&exp, quiet(false)).unwrap();
    assert!(outcome.unfinished.is_empty());
}

#[test]
fn keys_ablate_sets_itself_and_a_directory_outside_the_experiment_are_refused() {
    let tmp = TempDir::new("owned");
    // (`extra` lands inside `[set]`, after its first key.)
    for (extra, key) in [
        ("[grid]\n\"seed\" = [0, 1]\n", "grid.\"seed\""),
        (
            "[grid]\n\"model.encoding.kind\" = [\"rope\"]\n",
            "grid.\"model.encoding.kind\"",
        ),
        ("\"name\" = \"x\"\n", "set.\"name\""),
        ("\"out_dir\" = \"/tmp\"\n", "set.\"out_dir\""),
    ] {
        let path = small_experiment(&tmp, extra);
        let e = ablate::load(&path).unwrap_err().to_string();
        assert!(
            e.contains(key) && e.contains("ablate sets this key"),
            "{key}: {e}"
        );
    }
    // An encoding parameter in the grid is shared by every cell, unless an entry sets it too.
    let path = small_experiment(
        &tmp,
        "[grid]\n\"model.encoding.randomized_positions\" = [0, 64]\n",
    );
    assert_eq!(ablate::load(&path).unwrap().cells.len(), 4);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "encodings = [\"none\", \"alibi\"]",
        "encodings = [{ kind = \"rope\", base = 500.0 }]",
    );
    let text = text.replace("randomized_positions\" = [0, 64]", "base\" = [100.0]");
    std::fs::write(&path, text).unwrap();
    let e = ablate::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("grid.\"model.encoding.base\"") && e.contains("set it in one place"),
        "{e}"
    );
    let path = small_experiment(&tmp, "");
    let dots = tmp.0.join("...toml");
    std::fs::copy(&path, &dots).unwrap();
    let e = ablate::load(&dots).unwrap_err().to_string();
    assert!(e.contains("rename the file"), "{e}");
}

/// Two base configs of one task kind are two tasks of the report, not one pooled row.
#[test]
fn two_base_configs_of_one_kind_are_reported_apart() {
    let tmp = TempDir::new("two-kinds");
    write_base(&tmp.0);
    let base = std::fs::read_to_string(tmp.0.join("copy.toml")).unwrap();
    std::fs::write(tmp.0.join("copy_long.toml"), &base).unwrap();
    let path = tmp.0.join("two.toml");
    std::fs::write(
        &path,
        "tasks = [\"copy.toml\", \"copy_long.toml\"]\nencodings = [\"none\"]\n[set]\n\
         \"train.steps\" = 20\n[eval]\nexamples = 8\nmax_factor = 2\n",
    )
    .unwrap();
    let exp = ablate::load(&path).unwrap();
    let tasks: Vec<&str> = exp.cells.iter().map(|c| c.info.task.as_str()).collect();
    assert_eq!(tasks, ["copy (copy)", "copy (copy_long)"]);
}

#[test]
fn cells_that_would_share_a_run_directory_are_an_error_before_anything_runs() {
    let tmp = TempDir::new("collide");
    write_base(&tmp.0);
    std::fs::create_dir_all(tmp.0.join("other")).unwrap();
    std::fs::write(tmp.0.join("other/copy.toml"), BASE).unwrap();
    for (text, needle) in [
        ("tasks = [\"copy.toml\"]\nseeds = [0, 0]", "copy-none-s0"),
        (
            "tasks = [\"copy.toml\", \"other/copy.toml\"]",
            "other/copy.toml",
        ),
        (
            "tasks = [\"copy.toml\"]\nencodings = [\"rope\", \"rope\"]",
            "copy-rope-s0",
        ),
    ] {
        let path = tmp.0.join("twice.toml");
        std::fs::write(&path, text).unwrap();
        let err = ablate::load(&path).unwrap_err().to_string();
        assert!(err.contains("would share the run directory"), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(!tmp.0.join("twice").exists());
    // [eval] is checked like `ordo eval`'s options.
    let path = tmp.0.join("bad-eval.toml");
    std::fs::write(&path, "tasks = [\"copy.toml\"]\n[eval]\nexamples = 0\n").unwrap();
    assert!(
        ablate::load(&path)
            .unwrap_err()
            .to_string()
            .contains("eval.examples")
    );
}

#[test]
fn slurm_array_variables_give_the_shard() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let shard = ablate::slurm_shard(env(&[
        ("SLURM_ARRAY_TASK_ID", "3"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ]));
    assert_eq!(shard.unwrap(), (3, 4));
    // An array numbered from 0 (sbatch --array=0-3).
    let shard = ablate::slurm_shard(env(&[
        ("SLURM_ARRAY_TASK_ID", "0"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
        ("SLURM_ARRAY_TASK_MIN", "0"),
        ("SLURM_ARRAY_TASK_MAX", "3"),
    ]));
    assert_eq!(shard.unwrap(), (1, 4));
    let err = ablate::slurm_shard(env(&[("SLURM_ARRAY_TASK_COUNT", "4")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("SLURM_ARRAY_TASK_ID is not set"), "{err}");
    // Ids with gaps (--array=1,5) cannot be numbered 1..=n.
    let err = ablate::slurm_shard(env(&[
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_COUNT", "2"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_MAX", "5"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("consecutive"), "{err}");
}

#[test]
fn encodings_with_parameters_are_cells_of_their_own() {
    let tmp = TempDir::new("ablate-entries");
    write_base(&tmp.0);
    let path = tmp.0.join("entries.toml");
    std::fs::write(
        &path,
        "tasks = [\"copy.toml\"]\nencodings = [\"t5\", { kind = \"t5\", init_std = 3.0 }, \
         { kind = \"rope\", base = 100.0, fraction = 0.5 }]\n",
    )
    .unwrap();
    let experiment = ablate::load(&path).unwrap();
    let ids: Vec<&str> = experiment
        .cells
        .iter()
        .map(|c| c.info.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "copy-t5-s0",
            "copy-t5_init_std=3.0_-s0",
            "copy-rope_base=100.0__fraction=0.5_-s0"
        ]
    );
    let labels: Vec<&str> = experiment
        .cells
        .iter()
        .map(|c| c.info.encoding.as_str())
        .collect();
    assert_eq!(
        labels,
        ["t5", "t5(init_std=3.0)", "rope(base=100.0, fraction=0.5)"]
    );
    // Each cell's config carries the entry's parameters on top of the task's config.
    let written: Vec<String> = experiment
        .cells
        .iter()
        .map(|c| toml::to_string(&c.config.model.encoding).unwrap())
        .collect();
    assert!(!written[0].contains("init_std"), "{}", written[0]);
    assert!(written[1].contains("init_std = 3.0"), "{}", written[1]);
    assert!(
        written[2].contains("base = 100.0") && written[2].contains("fraction = 0.5"),
        "{}",
        written[2]
    );
    let kinds: Vec<&str> = experiment
        .cells
        .iter()
        .map(|c| c.config.model.encoding.kind())
        .collect();
    assert_eq!(kinds, ["t5", "t5", "rope"]);
    // A bad entry names itself (or its cell and key) in the error.
    for (entries, needle) in [
        ("[{ init_std = 3.0 }]", "no `kind`"),
        ("[{ kind = 3 }]", "`kind` to be a string"),
        ("[{ kind = \"nope\" }]", "nope"),
        ("[{ kind = \"t5\", bogus = 1 }]", "bogus"),
        ("[{ kind = \"t5\", init_std = -1.0 }]", "init_std"),
    ] {
        std::fs::write(
            &path,
            format!("tasks = [\"copy.toml\"]\nencodings = {entries}\n"),
        )
        .unwrap();
        let err = ablate::load(&path).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle:?} missing from {err}");
    }
}

/// Every shipped config and experiment loads and validates (an experiment: every one of its
/// cells), so that a change of a config key or an option cannot leave one broken.
#[test]
fn every_shipped_config_and_experiment_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let toml_files = |dir: &str| {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        files
    };
    let configs = toml_files("configs");
    assert!(configs.len() >= 9, "{configs:?}");
    for path in configs {
        if let Err(e) = ordo_train::config::load(&path, &[]) {
            panic!("{}: {e}", path.display());
        }
    }
    let experiments = toml_files("experiments");
    assert!(experiments.len() >= 9, "{experiments:?}");
    for path in experiments {
        match ablate::load(&path) {
            Ok(experiment) => assert!(!experiment.cells.is_empty(), "{}", path.display()),
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}

/// Every run records what trained it; a cell trained with another built-in lexicon is stale,
/// though no file changed.
#[test]
fn runs_record_their_provenance_and_a_changed_builtin_lexicon_makes_them_stale() {
    let tmp = TempDir::new("provenance");
    std::fs::write(
        tmp.0.join("agent.toml"),
        BASE.replace(
            "kind = \"copy\"\nsymbols = 6\nmin_len = 1\nmax_len = 4",
            "kind = \"agent\"\nmin_len = 5\nmax_len = 6",
        ),
    )
    .unwrap();
    let path = tmp.0.join("p.toml");
    std::fs::write(
        &path,
        "tasks = [\"agent.toml\", \"copy.toml\"]\nencodings = [\"none\"]\n[set]\n\"train.steps\" = 20\n\
         [eval]\nexamples = 8\nmax_factor = 2\n",
    )
    .unwrap();
    write_base(&tmp.0);
    let exp = ablate::load(&path).unwrap();
    assert_eq!(
        exp.cells[0].config.task.kind(),
        "agent",
        "the BASE replacement applied"
    );
    ablate::run(&exp, quiet(false)).unwrap();
    let wanted = exp.eval_options().record();
    for cell in &exp.cells {
        let run = cell.run_dir();
        let p: ordo_train::run_dir::Provenance = run.read_json(&run.provenance()).unwrap();
        assert_eq!(p.sessions.len(), 1);
        let s = &p.sessions[0];
        assert_eq!(s.purpose, "train");
        assert_eq!(s.ordo_version, env!("CARGO_PKG_VERSION"));
        assert!(["avx512", "avx2", "portable"].contains(&s.kernel_tier.as_str()));
        assert!(!s.git_commit.is_empty());
        // Only the grammar task reads the built-in lexicon.
        assert_eq!(
            s.builtin_inputs.len(),
            usize::from(cell.config.task.kind() == "agent")
        );
        assert_eq!(cell.status(&wanted), Status::Done);
    }
    // As if the run had been trained by a binary with another lexicon.
    let agent = exp.cells[0].run_dir();
    let text = std::fs::read_to_string(agent.provenance()).unwrap();
    let p: ordo_train::run_dir::Provenance = serde_json::from_str(&text).unwrap();
    let hash = p.sessions[0]
        .builtin_inputs
        .values()
        .next()
        .unwrap()
        .clone();
    std::fs::write(agent.provenance(), text.replace(&hash, &"0".repeat(64))).unwrap();
    match exp.cells[0].status(&wanted) {
        Status::Stale(changes) => {
            assert!(
                changes
                    .iter()
                    .any(|c| c.contains("lexicon (built in) changed")),
                "{changes:?}"
            )
        }
        other => panic!("expected stale, got {other:?}"),
    }
    assert_eq!(exp.cells[1].status(&wanted), Status::Done);
}

/// A stored config without a key (written before the key existed) means the key's default: the
/// cell is not stale; a key with another value is.
#[test]
fn a_key_absent_from_a_stored_config_is_its_default() {
    let tmp = TempDir::new("absent-key");
    let path = small_experiment(&tmp, "");
    let exp = ablate::load(&path).unwrap();
    ablate::run(&exp, quiet(false)).unwrap();
    let wanted = exp.eval_options().record();
    let cell = &exp.cells[0];
    let config = cell.run_dir().config();
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("weight_decay = "))
        .expect("the stored config has weight_decay")
        .to_string();
    std::fs::write(&config, text.replace(&format!("{line}\n"), "")).unwrap();
    assert_eq!(
        cell.status(&wanted),
        Status::Done,
        "an absent key is its default"
    );
    std::fs::write(&config, text.replace(&line, "weight_decay = 0.5")).unwrap();
    assert!(matches!(cell.status(&wanted), Status::Stale(_)));
}

/// Inputs are compared by content: the same lexicon staged elsewhere (node-local scratch) is the
/// same input; another content at the same path is a change.
#[test]
fn an_input_moved_elsewhere_with_the_same_content_is_not_a_change() {
    let tmp = TempDir::new("moved-input");
    let lexicon = ordo_train::tasks::grammar::BUILTIN_LEXICON;
    std::fs::create_dir_all(tmp.0.join("home")).unwrap();
    std::fs::create_dir_all(tmp.0.join("scratch")).unwrap();
    std::fs::write(tmp.0.join("home/lexicon.toml"), lexicon).unwrap();
    let base = |lex: &str| {
        BASE.replace(
            "kind = \"copy\"\nsymbols = 6\nmin_len = 1\nmax_len = 4",
            &format!("kind = \"agent\"\nmin_len = 5\nmax_len = 6\nlexicon = \"{lex}\""),
        )
    };
    std::fs::write(tmp.0.join("agent.toml"), base("home/lexicon.toml")).unwrap();
    let path = tmp.0.join("m.toml");
    std::fs::write(
        &path,
        "tasks = [\"agent.toml\"]\nencodings = [\"none\"]\n[set]\n\"train.steps\" = 20\n\
         [eval]\nexamples = 8\nmax_factor = 2\n",
    )
    .unwrap();
    let exp = ablate::load(&path).unwrap();
    ablate::run(&exp, quiet(false)).unwrap();
    let wanted = exp.eval_options().record();
    // Staged to scratch, the original removed: the same content.
    std::fs::rename(
        tmp.0.join("home/lexicon.toml"),
        tmp.0.join("scratch/lexicon.toml"),
    )
    .unwrap();
    std::fs::write(tmp.0.join("agent.toml"), base("scratch/lexicon.toml")).unwrap();
    let exp = ablate::load(&path).unwrap();
    let cell = &exp.cells[0];
    // The run's own inputs.json still names the old place: restore it there as a link.
    std::os::unix::fs::symlink(
        tmp.0.join("scratch/lexicon.toml"),
        tmp.0.join("home/lexicon.toml"),
    )
    .unwrap();
    assert_eq!(
        cell.status(&wanted),
        Status::Done,
        "{:?}",
        cell.config_changes()
    );
    // Another content is a change.
    std::fs::remove_file(tmp.0.join("home/lexicon.toml")).unwrap();
    std::fs::write(
        tmp.0.join("scratch/lexicon.toml"),
        format!("{lexicon}\n# edited\n"),
    )
    .unwrap();
    std::fs::write(tmp.0.join("home/lexicon.toml"), lexicon).unwrap();
    assert!(matches!(cell.status(&wanted), Status::Stale(_)));
}

#[test]
fn the_experiment_directory_names_are_spelled_once() {
    let d = ablate::ExperimentDir::new("experiments/quick");
    assert_eq!(d.spec(), Path::new("experiments/quick/experiment.json"));
    assert_eq!(
        d.run("copy-rope-s0"),
        Path::new("experiments/quick/runs/copy-rope-s0")
    );
    assert_eq!(d.stale(), Path::new("experiments/quick/stale"));
    assert_eq!(d.report(), Path::new("experiments/quick/report.md"));
    assert_eq!(d.plots(), Path::new("experiments/quick/plots"));
    assert_eq!(d.report_lock(), Path::new("experiments/quick/.report.lock"));
    // Every cell of a loaded grid lives where the layout says.
    let tmp = TempDir::new("layout");
    let exp = ablate::load(&small_experiment(&tmp, "")).unwrap();
    let layout = ablate::ExperimentDir::new(&exp.dir);
    for cell in &exp.cells {
        assert_eq!(
            ordo_train::run_dir::normalize(cell.run_dir().path()),
            ordo_train::run_dir::normalize(&layout.run(&cell.info.id))
        );
    }
}

/// `ordo report` reads the experiment file again: a cell stale against its current content (an
/// edited base config here) is left out and named with what changed, never counted; without
/// the file, the report falls back to the cells `experiment.json` lists.
#[test]
fn the_report_leaves_out_cells_stale_against_the_edited_experiment_file() {
    let tmp = TempDir::new("report-stale");
    write_base(&tmp.0);
    std::fs::write(tmp.0.join("copy_b.toml"), BASE).unwrap();
    let path = tmp.0.join("two.toml");
    std::fs::write(
        &path,
        "tasks = [\"copy.toml\", \"copy_b.toml\"]\nencodings = [\"none\"]\n[set]\n\
         \"train.steps\" = 20\n[eval]\nexamples = 8\nmax_factor = 2\n",
    )
    .unwrap();
    let exp = ablate::load(&path).unwrap();
    let report = ablate::run(&exp, quiet(false)).unwrap().report.unwrap();
    let full = std::fs::read_to_string(&report).unwrap();
    assert!(full.contains("2 finished cells"), "{full}");
    let stale_id = exp.cells[1].info.id.clone();

    let b = tmp.0.join("copy_b.toml");
    std::fs::write(&b, BASE.replace("warmup_steps = 5", "warmup_steps = 6")).unwrap();
    let text = std::fs::read_to_string(ablate::rebuild_report(&exp.dir).unwrap()).unwrap();
    assert!(text.contains("1 finished cells"), "{text}");
    assert!(
        text.contains(&format!("- runs/{stale_id}: stale against "))
            && text.contains("`train.warmup_steps`: the run has 5, the experiment asks for 6")
            && text.contains("--rerun-stale"),
        "{text}"
    );

    // Every cell stale: no report, and the error says why each one was left out.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("examples = 8", "examples = 6"),
    )
    .unwrap();
    let e = ablate::rebuild_report(&exp.dir).unwrap_err().to_string();
    assert!(e.contains("no finished cell to report"), "{e}");
    assert!(
        e.contains("left out: runs/") && e.contains("`[eval]`: the cell was evaluated with"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(&report).unwrap(),
        text,
        "a refused rebuild keeps the report"
    );

    // Without the experiment file the cells experiment.json lists count, unchecked.
    std::fs::remove_file(&path).unwrap();
    let text = std::fs::read_to_string(ablate::rebuild_report(&exp.dir).unwrap()).unwrap();
    assert_eq!(text, full);
}

/// A process that finished its cells never waits for another's rebuild of the report, and the
/// rebuild in progress runs again so that it includes them.
#[test]
fn a_finishing_process_leaves_the_report_to_the_rebuild_in_progress_which_runs_again() {
    let tmp = TempDir::new("report-protocol");
    let layout = ablate::ExperimentDir::new(&tmp.0);
    let write = |n: usize| {
        let path = layout.report();
        std::fs::write(&path, format!("rebuild {n}")).unwrap();
        Ok(path)
    };
    // Another process (on this node or another: flock and claim are both held) rebuilds.
    let held = ordo_train::run_dir::Hold::take(
        &layout.report_lock(),
        &layout.report_claim(),
        "rebuilding the report",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let left = ablate::rebuild_held(&tmp.0, || panic!("must not build"), None).unwrap();
    assert_eq!(left, None);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(layout.report_pending().is_file(), "the mark stays for it");
    // `ordo report` waits, up to its limit.
    let started = std::time::Instant::now();
    let waited = std::time::Duration::from_millis(300);
    assert_eq!(
        ablate::rebuild_held(&tmp.0, || panic!("must not build"), Some(waited)).unwrap(),
        None
    );
    assert!(started.elapsed() >= waited);
    drop(held);

    // A rebuild during which another process finishes (and finds the report held) builds once
    // more, after releasing, with that process's cells.
    let mut builds = 0;
    let path = ablate::rebuild_held(
        &tmp.0,
        || {
            builds += 1;
            if builds == 1 {
                let other = ablate::rebuild_held(&tmp.0, || panic!("held"), None).unwrap();
                assert_eq!(other, None);
            }
            write(builds)
        },
        None,
    )
    .unwrap()
    .unwrap();
    assert_eq!(builds, 2);
    assert_eq!(std::fs::read_to_string(path).unwrap(), "rebuild 2");
    assert!(!layout.report_pending().exists());
    assert!(!layout.report_claim().exists(), "the claim is released");
}

/// `--jobs` beyond what the process may start (a thread limit) runs with the workers that did
/// start, and on this thread when none did.
#[test]
fn jobs_beyond_the_thread_limit_run_with_the_workers_that_started() {
    let limit = |max: usize| {
        let mut n = 0;
        move || {
            n += 1;
            if n > max {
                Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "Resource temporarily unavailable",
                ))
            } else {
                Ok(())
            }
        }
    };
    let mut ran_here = 0;
    assert_eq!(ablate::start_workers(200, limit(3), || ran_here += 1), 3);
    assert_eq!(ran_here, 0);
    assert_eq!(ablate::start_workers(4, limit(0), || ran_here += 1), 1);
    assert_eq!(
        ran_here, 1,
        "no thread could start: the work runs on this one"
    );
    assert_eq!(ablate::start_workers(0, limit(9), || ran_here += 1), 1);
}

#[test]
fn the_far_bucket_reaches_max_factor_times_l() {
    use ordo_eval::extrapolation::{Bucket, Edges};
    let edges = |factor| Edges {
        min: 1,
        l: 8,
        factor,
    };
    // F = 8: lengths past 4L are scored (they were measured but left out before).
    assert!(Bucket::Far.contains(edges(8), 64) && !Bucket::Far.contains(edges(8), 65));
    assert!(Bucket::Far.contains(edges(4), 32) && !Bucket::Far.contains(edges(4), 33));
    // F = 2: no far bucket; near is (L, 2L] whatever F.
    assert!((1..=64).all(|n| !Bucket::Far.contains(edges(2), n)));
    assert!(Bucket::Near.contains(edges(2), 16) && !Bucket::Near.contains(edges(8), 17));
    assert!(
        Bucket::InDistribution.contains(edges(8), 1)
            && !Bucket::InDistribution.contains(edges(8), 9)
    );
    // Each length of 1..=F·L falls in exactly one bucket.
    for factor in [1, 2, 4, 8] {
        for n in 1..=factor * 8 {
            let hits = Bucket::ALL
                .iter()
                .filter(|b| b.contains(edges(factor), n))
                .count();
            assert_eq!(
                hits,
                usize::from(n <= 16 || factor > 2),
                "F {factor}, n {n}"
            );
        }
    }
}
