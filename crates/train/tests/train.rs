//! End-to-end behaviour of `ordo train`: config errors, learning, checkpoints and resumption.

use ordo_train::config::{self, RunConfig};
use ordo_train::trainer::{self, Progress};
use std::path::{Path, PathBuf};

use ordo_train::testing::TempDir;

const TINY: &str = r#"
seed = 3
[model]
d_model = 32
n_heads = 2
n_layers = 2
[model.encoding]
kind = "rope"
[task]
kind = "copy"
symbols = 8
min_len = 1
max_len = 6
[train]
steps = 60
batch_size = 16
lr = 3e-3
warmup_steps = 10
log_every = 10
eval_every = 20
eval_examples = 64
checkpoint_every = 20
"#;

fn load_err(dir: &TempDir, text: &str, overrides: &[&str]) -> String {
    let path = dir.write("bad.toml", text);
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    config::load(&path, &overrides).unwrap_err().to_string()
}

#[test]
fn config_errors_name_the_file_the_key_and_what_was_expected() {
    let dir = TempDir::new("errors");
    let cases: Vec<(String, Vec<&str>, Vec<&str>)> = vec![
        (
            TINY.replace("kind = \"rope\"", "kind = \"rope\"\nbogus = 1"),
            vec![],
            vec!["model.encoding", "bogus"],
        ),
        (
            TINY.replace("d_model = 32", "d_model = \"big\""),
            vec![],
            vec!["model.d_model", "integer"],
        ),
        (
            TINY.replace("n_heads = 2", "n_heads = 3"),
            vec![],
            vec!["model.n_heads", "divisible"],
        ),
        (
            TINY.replace("d_model = 32", "d_model = 12")
                .replace("kind = \"rope\"", "kind = \"rope\"\nfraction = 0.5"),
            vec![],
            vec!["model.encoding.fraction", "even"],
        ),
        (
            TINY.replace("kind = \"rope\"", "kind = \"learned\"\nmax_len = 5"),
            vec![],
            vec![
                "model.encoding.max_len",
                "longest training sequence has 12 tokens",
            ],
        ),
        (
            TINY.replace("min_len = 1", "min_len = 9"),
            vec![],
            vec!["task.min_len", "max_len"],
        ),
        (
            TINY.replace(
                "kind = \"copy\"\nsymbols = 8\nmin_len = 1\nmax_len = 6",
                "kind = \"agent\"\nlexicon = \"missing.toml\"",
            ),
            vec![],
            vec!["task.lexicon", "missing.toml"],
        ),
        (
            TINY.replace("lr = 3e-3", "lr = -1.0"),
            vec![],
            vec!["train.lr"],
        ),
        (
            TINY.replace("seed = 3", "seed = 3\ndevice = \"tpu\""),
            vec![],
            vec!["device", "tpu", "cpu"],
        ),
        (
            TINY.to_string(),
            vec!["train.stepz=5"],
            vec!["train", "stepz", "--set train.stepz=5"],
        ),
        (
            TINY.to_string(),
            vec!["seed.x=5"],
            vec!["--set seed.x=5", "`seed` is a value"],
        ),
        (
            TINY.to_string(),
            vec!["model.encoding.kind=nope"],
            vec!["model.encoding", "nope"],
        ),
        ("[model\n".to_string(), vec![], vec!["not valid TOML"]),
    ];
    for (text, overrides, needles) in cases {
        let msg = load_err(&dir, &text, &overrides);
        assert!(msg.contains("bad.toml"), "no file name in: {msg}");
        for needle in needles {
            assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
        }
    }
    let missing = config::load(&dir.0.join("nope.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.toml"), "{missing}");
}

#[test]
fn overrides_switch_the_encoding_and_resolve_learned_max_len() {
    let dir = TempDir::new("override");
    let path = dir.write("tiny.toml", TINY);
    let cfg = config::load(
        &path,
        &["model.encoding.kind=learned".into(), "train.lr=0.01".into()],
    )
    .unwrap();
    assert_eq!(cfg.model.encoding.kind(), "learned");
    // copy at max_len 6: 6 + [SEP] + 6 answer tokens, minus the last one fed to a decoder.
    assert_eq!(
        cfg.model.encoding,
        ordo_model::PositionalEncodingConfig::from_kind("learned", 12).unwrap()
    );
    assert_eq!(cfg.train.lr, 0.01);
    assert_eq!(cfg.name, "tiny");
    // The resolved config parses back to itself.
    let again = config::from_table(cfg.to_toml().parse().unwrap(), "x").unwrap();
    assert_eq!(again, cfg);
}

fn tiny(dir: &TempDir, name: &str, extra: &[&str]) -> RunConfig {
    let path = dir.write("tiny.toml", TINY);
    let mut overrides = vec![
        format!("name={name}"),
        format!("out_dir={}", dir.0.join("runs").display()),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    config::load(&path, &overrides).unwrap()
}

fn eval_lines(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"eval\""))
        .map(String::from)
        .collect()
}

/// The losses of a run's training lines, in order.
fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"train\""))
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn runs_side_by_side_in_one_process_train_exactly_as_they_do_alone() {
    let dir = TempDir::new("side-by-side");
    // burn's generator is process-wide: one run's seeding (init, dropout masks) must not leak
    // into the other's draws.
    let configs = |label: &str| {
        [
            tiny(&dir, &format!("plain-{label}"), &["train.steps=40"]),
            tiny(
                &dir,
                &format!("dropout-{label}"),
                &["train.steps=40", "model.dropout=0.2", "seed=4"],
            ),
        ]
    };
    let solo = configs("solo");
    for config in &solo {
        trainer::train(config.clone(), &dir.0, Progress::Quiet).unwrap();
    }
    let pair = configs("pair");
    std::thread::scope(|scope| {
        for config in &pair {
            let root = &dir.0;
            scope.spawn(move || trainer::train(config.clone(), root, Progress::Quiet).unwrap());
        }
    });
    for (alone, beside) in solo.iter().zip(&pair) {
        let (a, b) = (losses(&alone.run_dir()), losses(&beside.run_dir()));
        assert_eq!(a.len(), 4);
        assert_eq!(a, b, "{}: alone vs side by side", alone.name);
        assert_eq!(eval_lines(&alone.run_dir()), eval_lines(&beside.run_dir()));
    }
}

#[test]
fn a_short_copy_run_learns_and_resume_matches_an_uninterrupted_run() {
    let dir = TempDir::new("resume");
    let whole = tiny(&dir, "whole", &["train.steps=120"]);
    let summary = trainer::train(whole.clone(), &dir.0, Progress::Quiet).unwrap();
    // Chance is 1/8 per token; a trained decoder is far above it after 120 steps.
    assert!(summary.valid.token_accuracy > 0.6, "{:?}", summary.valid);
    assert!(summary.valid.exact_match > 0.2, "{:?}", summary.valid);
    let run = whole.run_dir();
    for f in [
        "config.toml",
        "tokenizer.json",
        "metrics.jsonl",
        "summary.json",
        "checkpoint/state.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // Starting the same run again refuses to overwrite it.
    let again = trainer::train(whole, &dir.0, Progress::Quiet)
        .unwrap_err()
        .to_string();
    assert!(again.contains("--resume"), "{again}");

    // Killed at step 50 (last checkpoint at 40), then resumed.
    let split = tiny(&dir, "split", &["train.steps=120"]);
    let stopped = trainer::train_with(split.clone(), None, &dir.0, stop_at(50)).unwrap();
    assert!(stopped.is_none());
    let resumed = trainer::resume(&split.run_dir(), quiet()).unwrap();
    assert_eq!(resumed.valid, summary.valid);
    assert_eq!(eval_lines(&split.run_dir()), eval_lines(&run));
}

#[test]
fn a_run_with_randomized_positions_resumes_exactly() {
    // The positions are drawn from the batch's tokens, not from a generator that advances
    // with each call: a resumed run retraces the uninterrupted one.
    let dir = TempDir::new("randomized");
    let set = ["train.steps=60", "model.encoding.randomized_positions=48"];
    let whole = tiny(&dir, "whole", &set);
    let summary = trainer::train(whole.clone(), &dir.0, Progress::Quiet).unwrap();
    let split = tiny(&dir, "split", &set);
    trainer::train_with(split.clone(), None, &dir.0, stop_at(30)).unwrap();
    let resumed = trainer::resume(&split.run_dir(), quiet()).unwrap();
    assert_eq!(resumed.valid, summary.valid);
    assert_eq!(losses(&split.run_dir()), losses(&whole.run_dir()));
    // And the option changes training: the same run without it logs other losses.
    let plain = tiny(&dir, "plain", &set[..1]);
    trainer::train(plain.clone(), &dir.0, Progress::Quiet).unwrap();
    assert_ne!(losses(&plain.run_dir()), losses(&whole.run_dir()));
}

#[test]
fn the_shipped_corpus_is_the_grammar_corpus_for_seed_0() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/corpus.txt"
    ))
    .unwrap();
    let lexicon = ordo_train::tasks::Lexicon::builtin();
    assert_eq!(
        shipped,
        ordo_train::tasks::corpus(&lexicon, 0, 20000, 5, 20)
    );
}

/// 200 lines of a tiny English-like text, written to `corpus.txt` in `dir`.
fn small_corpus(dir: &TempDir) -> PathBuf {
    let lines: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "the cat {} the dog near the {}",
                ["saw", "chased"][i % 2],
                ["barn", "tree", "river"][i % 3]
            )
        })
        .collect();
    dir.write("corpus.txt", &(lines.join("\n") + "\n"))
}

#[test]
fn language_modelling_learns_and_accepts_a_tokenizer_file() {
    let dir = TempDir::new("lm");
    let corpus = small_corpus(&dir);
    let text = format!(
        r#"
[model]
d_model = 32
n_heads = 2
n_layers = 2
[model.encoding]
kind = "alibi"
[task]
kind = "lm"
corpus = "{}"
context = 8
[train]
steps = 80
batch_size = 16
lr = 3e-3
warmup_steps = 10
eval_every = 80
eval_examples = 64
checkpoint_every = 80
"#,
        corpus.display()
    );
    let path = dir.write("lm.toml", &text);
    let out = format!("out_dir={}", dir.0.join("runs").display());
    let cfg = config::load(&path, &[out.clone(), "name=words".into()]).unwrap();
    let summary = trainer::train(cfg.clone(), &dir.0, Progress::Quiet).unwrap();
    // 11 distinct words + [EOS] + specials: a uniform guess has perplexity > 12.
    assert!(summary.valid.perplexity() < 3.0, "{:?}", summary.valid);

    // The run's tokenizer.json, given back as a Hugging Face tokenizer file, gives the same ids.
    let tok = cfg.run_dir().join("tokenizer.json");
    let with_file = config::load(
        &path,
        &[
            out.clone(),
            "name=file".into(),
            format!("task.tokenizer={}", toml_string(&tok)),
        ],
    )
    .unwrap();
    let again = trainer::train(with_file, &dir.0, Progress::Quiet).unwrap();
    assert_eq!(again.valid, summary.valid);

    // BPE trained on the corpus: the run keeps it as its tokenizer.json, and it learns too.
    let bpe = config::load(
        &path,
        &[
            out.clone(),
            "name=bpe".into(),
            "task.tokenizer=\"bpe\"".into(),
            "task.vocab_size=24".into(),
        ],
    )
    .unwrap();
    let bpe_summary = trainer::train(bpe.clone(), &dir.0, Progress::Quiet).unwrap();
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(bpe.run_dir().join("tokenizer.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["model"]["type"], "BPE");
    assert_eq!(saved["model"]["vocab"].as_object().unwrap().len(), 24);
    // 24 tokens: a uniform guess has perplexity 24.
    assert!(
        bpe_summary.valid.perplexity() < 4.0,
        "{:?}",
        bpe_summary.valid
    );
    // --check shows the resolved default size.
    let resolved = config::load(&path, &["task.tokenizer=\"bpe\"".into()]).unwrap();
    assert!(
        resolved.to_toml().contains("vocab_size = 128"),
        "{}",
        resolved.to_toml()
    );
    let bad = config::load(&path, &["task.vocab_size=100".into()])
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("task.vocab_size") && bad.contains("bpe"),
        "{bad}"
    );
    let bad = config::load(
        &path,
        &["task.tokenizer=\"bpe\"".into(), "task.vocab_size=3".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad.contains("task.vocab_size") && bad.contains("at least 8"),
        "{bad}"
    );

    let bad = config::load(&path, &["task.corpus=missing.txt".into()])
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("task.corpus") && bad.contains("missing.txt"),
        "{bad}"
    );
}

fn toml_string(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

#[test]
fn a_nan_gradient_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = TempDir::new("nan");
    let path = dir.write("tiny.toml", TINY);
    let out = format!("out_dir={}", dir.0.join("runs").display());
    for (name, at, kept) in [("late", 30, Some(20)), ("early", 5, None)] {
        let cfg = config::load(&path, &[out.clone(), format!("name={name}")]).unwrap();
        trainer::fault::inject_nan_gradient(&cfg.run_dir(), at);
        let err = trainer::train(cfg.clone(), &dir.0, Progress::Quiet).unwrap_err();
        match &err {
            trainer::TrainError::NonFinite {
                what,
                step,
                kept: k,
                ..
            } => {
                assert_eq!((*what, *step, *k), ("gradient norm", at, kept), "{err}");
            }
            other => panic!("expected a divergence, got {other}"),
        }
        let run = ordo_train::run_dir::RunDir::new(cfg.run_dir());
        assert_eq!(run.last_checkpoint().unwrap(), kept, "{err}");
        assert!(!run.is_trained(), "no summary for a diverged run");
        match kept {
            Some(step) => {
                assert!(
                    err.to_string()
                        .contains(&format!("checkpoint (step {step})"))
                );
                // The kept checkpoint is whole and loads.
                let device = burn::prelude::Device::flex();
                let vocab = ordo_train::vocab::Vocab::load(&run.tokenizer()).unwrap();
                ordo_model::load_model(&cfg.model, vocab.len(), &run.model_stem(step), &device)
                    .unwrap();
            }
            None => assert!(
                err.to_string().contains("No checkpoint was written yet"),
                "{err}"
            ),
        }
    }
}

#[test]
fn optimizer_values_that_always_diverge_are_config_errors() {
    let dir = TempDir::new("adam");
    for (set, key) in [
        ("train.beta1=1.0", "train.beta1"),
        ("train.beta2=1.5", "train.beta2"),
        ("train.epsilon=0.0", "train.epsilon"),
    ] {
        let err = load_err(&dir, TINY, &[set]);
        assert!(err.contains(key), "{set}: {err}");
    }
}

fn lm_config(dir: &TempDir, corpus: &Path) -> PathBuf {
    let lines: Vec<String> = (0..120)
        .map(|i| format!("the cat {} the dog", ["saw", "chased", "met"][i % 3]))
        .collect();
    std::fs::write(corpus, lines.join("\n") + "\n").unwrap();
    dir.write(
        "lm.toml",
        r#"
[model]
d_model = 16
n_heads = 2
n_layers = 1
[task]
kind = "lm"
corpus = "data/corpus.txt"
tokenizer = "bpe"
vocab_size = 24
context = 8
[train]
steps = 10
batch_size = 8
eval_examples = 16
eval_every = 10
checkpoint_every = 5
"#,
    )
}

#[test]
fn a_run_directory_stands_alone_and_names_a_changed_or_missing_input() {
    let dir = TempDir::new("inputs");
    std::fs::create_dir_all(dir.0.join("data")).unwrap();
    let corpus = dir.0.join("data/corpus.txt");
    let path = lm_config(&dir, &corpus);
    let out = format!("out_dir={}", dir.0.join("exp/runs").display());
    let cfg = config::load(&path, &[out]).unwrap();
    let run = ordo_train::run_dir::RunDir::new(cfg.run_dir());
    trainer::train_with(cfg.clone(), None, &dir.0, stop_at(5)).unwrap();
    // The stored config points at the corpus relative to the run directory.
    let stored = std::fs::read_to_string(run.config()).unwrap();
    assert!(
        stored.contains("corpus = \"../../../data/corpus.txt\""),
        "{stored}"
    );

    let original = std::fs::read(&corpus).unwrap();
    std::fs::write(&corpus, b"the dog saw the cat\n".repeat(120)).unwrap();
    let err = trainer::resume(run.path(), quiet())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("corpus.txt") && err.contains("changed since the run read it"),
        "{err}"
    );
    std::fs::remove_file(&corpus).unwrap();
    let err = trainer::resume(run.path(), quiet())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("corpus.txt") && err.contains("missing"),
        "{err}"
    );
    std::fs::write(&corpus, &original).unwrap();

    // Moved together with its data, the run resumes from its own tokenizer.json.
    let moved = TempDir::new("inputs-moved");
    std::fs::remove_dir_all(&moved.0).unwrap();
    std::fs::rename(&dir.0, &moved.0).unwrap();
    let summary = trainer::resume(&moved.0.join("exp/runs/lm"), quiet()).unwrap();
    assert_eq!(summary.steps, 10);
    assert!(summary.valid.loss.is_finite());
}

/// Joins BPE pieces back into text: `▁` marks a space (the SentencePiece convention of `lm`).
fn detokenize(pieces: &[String]) -> String {
    pieces.concat().replace('▁', " ").trim().to_string()
}

#[test]
fn the_shipped_austen_text_loads_with_a_disjoint_held_out_novel_and_full_bpe_coverage() {
    use ordo_train::tasks::lm::EOS;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cfg = config::load(&root.join("configs/lm_text.toml"), &[]).unwrap();
    let generator = cfg.task.generator(&root.join("configs")).unwrap();
    let corpus = generator.corpus().expect("an lm task");
    let text = std::fs::read_to_string(root.join("data/text/austen.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The counts data/text/README.md states.
    assert_eq!(lines.len(), 10_283);
    assert!(lines.iter().all(|l| !l.trim().is_empty()));

    // Each stream, cut at [EOS] and its pieces joined, gives back its lines exactly: the first
    // 90% train, the last 10% are held out, and BPE covers every character (no [UNK]).
    let trained = corpus.trained.as_ref().expect("a trained BPE tokenizer");
    assert_eq!(trained.get_vocab_size(true), 1024);
    let held = lines.len().div_ceil(10);
    let (train_lines, valid_lines) = lines.split_at(lines.len() - held);
    for (stream, want) in [(&corpus.train, train_lines), (&corpus.valid, valid_lines)] {
        assert!(stream.iter().all(|t| trained.token_to_id(t).is_some()));
        assert!(!stream.iter().any(|t| t == ordo_train::vocab::UNK));
        let got: Vec<String> = stream
            .split(|t| t == EOS)
            .filter(|s| !s.is_empty())
            .map(detokenize)
            .collect();
        assert_eq!(got.len(), want.len());
        assert!(got.iter().zip(want).all(|(g, w)| g == w));
    }
    // Disjoint: no held-out paragraph of 8 words or more occurs among the training lines.
    let seen: std::collections::HashSet<&str> = train_lines.iter().copied().collect();
    let long = valid_lines.iter().filter(|l| l.split(' ').count() >= 8);
    assert!(long.clone().count() > 900);
    assert!(long.clone().all(|l| !seen.contains(l)));
    // The held-out text is Persuasion: its title line is among the last training lines.
    let title = train_lines
        .iter()
        .rposition(|l| *l == "Persuasion")
        .unwrap();
    assert!(
        train_lines.len() - title <= 5,
        "{}",
        train_lines.len() - title
    );
    // Enough held-out text for the 8x context evaluation (non-overlapping windows).
    let context = cfg.task.train_lengths().1;
    assert!(corpus.valid.len() > 100 * (8 * context + 1));
}

#[test]
fn a_run_resumes_on_another_device_and_an_unknown_device_is_refused() {
    let dir = TempDir::new("resume-device");
    let whole = tiny(&dir, "whole", &["train.steps=60"]);
    let summary = trainer::train(whole, &dir.0, Progress::Quiet).unwrap();
    let moved = tiny(&dir, "moved", &["train.steps=60"]);
    trainer::train_with(moved.clone(), None, &dir.0, stop_at(25)).unwrap();
    let err = trainer::resume(&moved.run_dir(), on("tpu"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--device") && err.contains("tpu"), "{err}");
    // Started on flex, finished on ndarray: the checkpoint carries over; the other backend's
    // arithmetic differs in the last bits, not in what was learned.
    let resumed = trainer::resume(&moved.run_dir(), on("ndarray")).unwrap();
    assert!(
        (resumed.valid.loss - summary.valid.loss).abs() < 0.02 * summary.valid.loss,
        "{:?} vs {:?}",
        resumed.valid,
        summary.valid
    );
    // The run's config keeps the device it was started with.
    let stored = std::fs::read_to_string(moved.run_dir().join("config.toml")).unwrap();
    assert!(stored.contains("device = \"cpu\""), "{stored}");
}

#[test]
fn a_seed_gives_the_same_initial_model_on_every_device() {
    // The weights are drawn on the CPU and forked to the run's device, so a run on another
    // backend starts where the CPU run does: their first logged losses (the first step's, on
    // the same batch) agree to float precision. On ndarray this checks the fork path (the model
    // moved, then trained); it cannot tell the CPU draw from ndarray's own, which happens to
    // give the same weights from the same seed. The backend whose generator differs is wgpu:
    // scripts/wgpu-check.sh is the check that drawing on the CPU matters (6 % apart at step 10
    // before, 1e-8 after).
    let dir = TempDir::new("init-device");
    let steps = ["train.steps=1", "train.log_every=1"];
    let flex = tiny(&dir, "flex", &steps);
    trainer::train(flex.clone(), &dir.0, Progress::Quiet).unwrap();
    let ndarray = tiny(&dir, "ndarray", &[steps[0], steps[1], "device=ndarray"]);
    trainer::train(ndarray.clone(), &dir.0, Progress::Quiet).unwrap();
    let (a, b) = (losses(&flex.run_dir())[0], losses(&ndarray.run_dir())[0]);
    assert!((a - b).abs() < 1e-4 * a, "flex {a} vs ndarray {b}");
}

/// Regression: a run whose task reads its own `tokenizer.json` (BPE, or a tokenizer file) and
/// is named by a relative path could not be resumed or evaluated: the run's tokenizer path,
/// already under the run directory, was joined to the run directory a second time
/// (`runs/lm/runs/lm/tokenizer.json`).
#[test]
fn a_bpe_run_resumes_by_a_relative_path_reading_its_own_tokenizer() {
    let dir = TempDir::new("bpe-relative");
    let corpus = small_corpus(&dir);
    let text = format!(
        r#"
[model]
d_model = 16
n_heads = 2
n_layers = 1
[task]
kind = "lm"
corpus = "{}"
tokenizer = "bpe"
vocab_size = 24
context = 8
[train]
steps = 20
batch_size = 8
warmup_steps = 2
eval_every = 20
eval_examples = 16
checkpoint_every = 10
"#,
        corpus.display()
    );
    let path = dir.write("bpe.toml", &text);
    let out = format!("out_dir={}", dir.0.join("runs").display());
    let cfg = config::load(&path, &[out, "name=bpe".into()]).unwrap();
    trainer::train_with(cfg.clone(), None, &dir.0, stop_at(15)).unwrap();

    // The same run directory, named relative to the working directory.
    let cwd = std::env::current_dir().unwrap();
    let up = cwd.components().count() - 1;
    let run_dir = cfg.run_dir();
    let relative: PathBuf = std::iter::repeat_n(Path::new(".."), up)
        .collect::<PathBuf>()
        .join(run_dir.strip_prefix("/").unwrap());
    assert!(relative.is_relative() && relative.join("config.toml").exists());

    let run = ordo_train::run_dir::RunDir::new(&relative);
    let ordo_train::open::OpenRun {
        config: stored,
        generator,
        ..
    } = run.open(&[]).unwrap();
    // The config keeps the task as written; the task reads the run's tokenizer (no BPE trained).
    assert_eq!(stored.task, trainer::stored_config(&cfg, &dir.0).task);
    let corpus = generator.corpus().expect("an lm task");
    assert!(corpus.trained.is_none());
    let vocab = ordo_train::vocab::Vocab::load(&run.tokenizer()).unwrap();
    assert!(
        corpus
            .train
            .iter()
            .chain(&corpus.valid)
            .all(|t| vocab.contains(t))
    );
    let summary = trainer::resume(&relative, quiet()).unwrap();
    assert_eq!(summary.steps, 20);
}

/// The positions the row of `example` (length `len`) sits at in each forward pass of
/// `batches` (batches of encoded examples): first and last position of every row of task
/// length `len`, one pair per distinct draw.
fn first_and_last_positions(
    model: &ordo_model::Transformer,
    batches: &[Vec<ordo_train::data::Encoded>],
    len: usize,
    pad: u32,
    device: &burn::prelude::Device,
) -> Vec<(usize, usize)> {
    let mut seen = Vec::new();
    for items in batches {
        let t = ordo_train::data::collate(items, pad, device);
        let rows = model.row_positions(&t.batch);
        // Rows of one forward pass share its draw: one value per pass and length.
        if let Some(p) = items
            .iter()
            .zip(&rows)
            .find(|(e, _)| e.len == len)
            .map(|(_, p)| p)
        {
            seen.push((p[0], *p.last().unwrap()));
        }
    }
    seen
}

fn mean(v: impl Iterator<Item = usize>) -> f64 {
    let v: Vec<usize> = v.collect();
    v.iter().sum::<usize>() as f64 / v.len() as f64
}

#[test]
fn a_row_meets_the_same_positions_in_training_and_in_evaluation() {
    // Ruoss et al. 2023: a sequence of t tokens sits on a sorted random subset of 0..N, in
    // training as in evaluation. Copy of length 4 (9 tokens) among training lengths 1..8 with
    // N = 64: its first position has mean (N+1)/10 - 1 = 5.5 and its last 9(N+1)/10 - 1 =
    // 57.5 (order statistics of 9 of 64). Training batches that mixed lengths put it on the
    // smallest of ~17 draws (last position ~31), and evaluation batches of many examples
    // measured a length under a single draw. (Length 4 of 8 symbols has 4096 distinct
    // examples; the draw is seeded by the tokens, so a repeated example repeats its draw.)
    let dir = TempDir::new("placement");
    let path = dir.write("tiny.toml", TINY);
    let set: Vec<String> = [
        "task.max_len=8",
        "train.batch_size=32",
        "model.encoding.randomized_positions=64",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (cfg, generator) = config::load_with_task(&path, &set, None).unwrap();
    assert_eq!(cfg.batch_lengths(), config::BatchLengths::Single);
    let vocab = generator.vocab(32).unwrap();
    let device = ordo_train::device::parse("cpu").unwrap();
    let model = cfg.model.init(vocab.len(), &device);
    let mut rng = ordo_train::rng::Rng::new(11);
    let train: Vec<Vec<_>> = (0..2400)
        .map(|_| {
            ordo_train::data::training_batch(
                &generator,
                &mut rng,
                32,
                cfg.task.train_lengths(),
                cfg.batch_lengths(),
                cfg.model.mode,
                &vocab,
            )
        })
        .collect();
    let train = first_and_last_positions(&model, &train, 4, vocab.pad, &device);
    let items = ordo_train::data::sample(
        &generator,
        &mut rng,
        400,
        (4, 4),
        ordo_train::data::Split::HeldOut,
        cfg.model.mode,
        &vocab,
    );
    let eval: Vec<Vec<_>> = ordo_train::metrics::eval_batches(&model, &items, 128)
        .into_iter()
        .map(|chunk| chunk.into_iter().map(|i| items[i].clone()).collect())
        .collect();
    let eval = first_and_last_positions(&model, &eval, 4, vocab.pad, &device);
    // Every evaluated example has a draw of its own.
    assert_eq!(eval.len(), 400);
    assert!(train.len() > 200, "{} training draws", train.len());
    for (what, expected, pick) in [
        (
            "first",
            65.0 / 10.0 - 1.0,
            (|p: &(usize, usize)| p.0) as fn(&(usize, usize)) -> usize,
        ),
        ("last", 9.0 * 65.0 / 10.0 - 1.0, |p: &(usize, usize)| p.1),
    ] {
        // sd of one order statistic here <= 6: the means of >200 draws are within ~0.5.
        let (t, e) = (mean(train.iter().map(pick)), mean(eval.iter().map(pick)));
        assert!(
            (t - expected).abs() < 3.0,
            "{what} position in training: {t:.2} vs {expected:.2}"
        );
        assert!(
            (e - expected).abs() < 3.0,
            "{what} position in evaluation: {e:.2} vs {expected:.2}"
        );
    }
    // With mixed lengths in a batch (the old protocol, still `train.batch_lengths = "mixed"`)
    // the same row sits far lower.
    let mixed: Vec<Vec<_>> = (0..400)
        .map(|_| {
            ordo_train::data::training_batch(
                &generator,
                &mut rng,
                32,
                cfg.task.train_lengths(),
                config::BatchLengths::Mixed,
                cfg.model.mode,
                &vocab,
            )
        })
        .collect();
    let mixed = first_and_last_positions(&model, &mixed, 4, vocab.pad, &device);
    let last = mean(mixed.iter().map(|p| p.1));
    assert!(last < 45.0, "last position with mixed batches: {last:.2}");
}

#[test]
fn training_into_a_directory_of_other_files_is_refused_and_leaves_them() {
    let dir = TempDir::new("foreign");
    let config = tiny(&dir, "theirs", &[]);
    let run = config.run_dir();
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("thesis.tex"), "mine").unwrap();
    let err = trainer::train(config, &dir.0, trainer::Progress::Quiet)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a run") && err.contains("thesis.tex"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("thesis.tex")).unwrap(),
        "mine"
    );
    assert!(!run.join("config.toml").exists());
}

fn quiet() -> trainer::TrainOptions {
    trainer::TrainOptions::new(Progress::Quiet)
}

/// Quiet, stopping after `steps` steps as a kill then would.
fn stop_at(steps: usize) -> trainer::TrainOptions {
    trainer::TrainOptions {
        stop_at: Some(steps),
        ..quiet()
    }
}

/// Quiet, on `device`.
fn on(device: &str) -> trainer::TrainOptions {
    trainer::TrainOptions {
        device: Some(device.into()),
        ..quiet()
    }
}

#[test]
fn bf16_tracks_fp32_resumes_in_either_precision_and_is_refused_where_the_cpu_lacks_it() {
    let dir = TempDir::new("bf16");
    let bf16 = ["train.steps=60", "train.precision=bf16"];
    if let Err(why) = ordo_model::kernels::bf16::unit() {
        let path = dir.write("tiny.toml", TINY);
        let overrides: Vec<String> = bf16.iter().map(|s| s.to_string()).collect();
        let err = config::load(&path, &overrides).unwrap_err().to_string();
        assert!(
            err.contains("train.precision") && err.contains(&why),
            "{err}"
        );
        return;
    }
    let fp32 = tiny(&dir, "fp32", &["train.steps=60"]);
    let whole = tiny(&dir, "whole", &bf16);
    let a = trainer::train(fp32.clone(), &dir.0, Progress::Quiet).unwrap();
    let b = trainer::train(whole.clone(), &dir.0, Progress::Quiet).unwrap();
    let (la, lb) = (losses(&fp32.run_dir()), losses(&whole.run_dir()));
    assert_ne!(la, lb, "bf16 products change the arithmetic");
    // The curves track: every logged loss within 2 % (measured: under 0.01 %).
    for (x, y) in la.iter().zip(&lb) {
        assert!((x - y).abs() < 0.02 * x, "fp32 {la:?} vs bf16 {lb:?}");
    }
    assert!((a.valid.loss - b.valid.loss).abs() < 0.05 * a.valid.loss);
    // The summary names the bf16 kernel (ORDO_BF16_KERNEL picks it), and none in fp32.
    let unit = ordo_model::kernels::bf16::unit().unwrap();
    assert_eq!(b.bf16_kernel, Some(unit.describe()));
    assert_eq!(a.bf16_kernel, None);
    // Checkpoints are fp32: stopped in bf16, resumed in fp32, it ends where the bf16 run does
    // (within what the precision changes), and its config keeps bf16.
    let split = tiny(&dir, "split", &bf16);
    trainer::train_with(split.clone(), None, &dir.0, stop_at(25)).unwrap();
    let options = trainer::TrainOptions {
        precision: Some(config::Precision::Fp32),
        ..quiet()
    };
    let resumed = trainer::resume(&split.run_dir(), options).unwrap();
    assert!((resumed.valid.loss - b.valid.loss).abs() < 0.05 * b.valid.loss);
    assert_eq!(resumed.bf16_kernel, None, "finished in fp32");
    let stored = std::fs::read_to_string(split.run_dir().join("config.toml")).unwrap();
    assert!(stored.contains("precision = \"bf16\""), "{stored}");
    // And resumed in bf16 as it started, it retraces the uninterrupted bf16 run exactly.
    let again = tiny(&dir, "again", &bf16);
    trainer::train_with(again.clone(), None, &dir.0, stop_at(25)).unwrap();
    let resumed = trainer::resume(&again.run_dir(), quiet()).unwrap();
    assert_eq!(resumed.valid, b.valid);
    assert_eq!(losses(&again.run_dir()), lb);
}
