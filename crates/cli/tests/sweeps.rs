//! Several `ordo` processes on one experiment or run directory (the shards of a job array, a
//! duplicate start, an evaluation while a run trains, a kill -9), and the exit codes and size
//! checks a scheduler relies on.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn ordo() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
    command.env_remove("ORDO_MEMORY_LIMIT");
    command.env_remove("ORDO_INJECT_NAN_GRADIENT_AT_STEP");
    command.env_remove("ORDO_TEST_NODE_LOCAL_FLOCK");
    command
}

fn run(args: &[&str]) -> Output {
    ordo().args(args).output().unwrap()
}

fn spawn(args: &[&str]) -> Child {
    ordo()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

use ordo_train::testing::TempDir;

/// A small experiment: 2 encodings x 2 seeds of a tiny copy model, a second or two per cell.
fn experiment(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("copy.toml"),
        r#"
[model]
d_model = 16
n_heads = 2
n_layers = 1
[task]
kind = "copy"
symbols = 4
max_len = 4
[train]
steps = 30
batch_size = 8
eval_examples = 16
eval_every = 15
checkpoint_every = 15
"#,
    )
    .unwrap();
    let path = dir.join("sweep.toml");
    std::fs::write(
        &path,
        r#"
description = "shards test"
tasks = ["copy.toml"]
encodings = ["none", "alibi"]
seeds = [0, 1]
[eval]
examples = 8
max_factor = 2
"#,
    )
    .unwrap();
    path
}

fn report(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("sweep/report.md")).unwrap()
}

#[test]
fn two_shards_started_together_give_the_report_of_one_run() {
    let tmp = TempDir::new("shards");
    let alone = experiment(&tmp.0.join("alone"));
    let out = run(&["ablate", alone.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let sharded = experiment(&tmp.0.join("sharded"));
    let path = sharded.to_str().unwrap();
    let shards: Vec<Child> = ["1/2", "2/2"]
        .iter()
        .map(|s| spawn(&["ablate", path, "--shard", s]))
        .collect();
    for shard in shards {
        let out = shard.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a shard failed: {}",
            text(&out.stderr)
        );
    }
    let written_by_the_last_shard = report(&tmp.0.join("sharded"));
    assert_eq!(written_by_the_last_shard, report(&tmp.0.join("alone")));
    assert!(written_by_the_last_shard.contains("4 finished cells"));
    let out = run(&["report", tmp.0.join("sharded/sweep").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(report(&tmp.0.join("sharded")), written_by_the_last_shard);
}

/// Waits for concurrent `ordo ablate` processes, each of which must exit 0 or 4 (4: it ended
/// while another still ran cells of its shard), and counts the cells they trained in all.
fn cells_trained(children: Vec<Child>) -> usize {
    let mut done_lines = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let code = out.status.code();
        assert!(
            code == Some(0) || code == Some(4),
            "{code:?}: {}",
            text(&out.stderr)
        );
        done_lines += text(&out.stdout).matches(" done in ").count();
    }
    done_lines
}

#[test]
fn a_duplicate_start_does_disjoint_work_and_both_finish() {
    let tmp = TempDir::new("duplicate");
    let path = experiment(&tmp.0);
    let path = path.to_str().unwrap();
    let both: Vec<Child> = (0..2).map(|_| spawn(&["ablate", path])).collect();
    let done_lines = cells_trained(both);
    // Every cell was trained and evaluated by exactly one of the two processes.
    assert_eq!(done_lines, 4);
    for entry in std::fs::read_dir(tmp.0.join("sweep/runs")).unwrap() {
        let metrics = std::fs::read_to_string(entry.unwrap().path().join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.matches("\"kind\":\"eval\"").count(), 2, "{metrics}");
    }
    assert!(report(&tmp.0).contains("4 finished cells"));
}

/// Two processes that do not see each other's flock locks (as two nodes on BeeGFS, Lustre with
/// `localflock` or NFS with `local_lock=flock`): the claim files alone keep them apart.
#[test]
fn without_shared_flock_each_cell_is_still_trained_exactly_once() {
    let tmp = TempDir::new("nodelocal");
    let alone = experiment(&tmp.0.join("alone"));
    let out = run(&["ablate", alone.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = experiment(&tmp.0.join("nodes"));
    let path = path.to_str().unwrap();
    let both: Vec<Child> = (0..3)
        .map(|_| {
            ordo()
                .env("ORDO_TEST_NODE_LOCAL_FLOCK", "1")
                .args(["ablate", path])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let done_lines = cells_trained(both);
    assert_eq!(done_lines, 4, "each cell trained and evaluated once");
    for entry in std::fs::read_dir(tmp.0.join("nodes/sweep/runs")).unwrap() {
        let dir = entry.unwrap().path();
        let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics.matches("\"kind\":\"eval\"").count(), 2, "{metrics}");
        assert!(!dir.join(".claim").exists(), "claims are released");
    }
    let out = run(&["report", tmp.0.join("nodes/sweep").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(report(&tmp.0.join("nodes")), report(&tmp.0.join("alone")));
}

#[test]
fn a_locked_run_is_refused_naming_the_holder_and_a_kill_frees_it() {
    let tmp = TempDir::new("lock");
    let config = tmp.0.join("slow.toml");
    std::fs::write(
        &config,
        "[model]\nd_model = 64\nn_layers = 4\n[task]\nkind = \"copy\"\n[train]\nsteps = 1000000\n",
    )
    .unwrap();
    let out_dir = format!("out_dir={}", tmp.0.join("runs").display());
    let mut trainer = spawn(&[
        "train",
        config.to_str().unwrap(),
        "--set",
        &out_dir,
        "--quiet",
    ]);
    let run_dir = tmp.0.join("runs/slow");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !run_dir.join("metrics.jsonl").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "training never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let holder = format!("pid {}", trainer.id());
    for args in [
        vec!["eval", run_dir.to_str().unwrap()],
        vec!["train", "--resume", run_dir.to_str().unwrap()],
        vec!["train", config.to_str().unwrap(), "--set", &out_dir],
    ] {
        let out = run(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains(".lock") && err.contains(&holder) && err.contains("training"),
            "{args:?}: {err}"
        );
    }
    // kill -9: the OS drops the lock with the process; nobody has to remove anything.
    trainer.kill().unwrap();
    trainer.wait().unwrap();
    let out = run(&["eval", run_dir.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("held by"), "{err}");
    assert!(err.contains("no checkpoint yet"), "{err}");
}

#[test]
fn a_diverged_run_exits_with_its_own_code_and_keeps_the_last_good_checkpoint() {
    let tmp = TempDir::new("diverged");
    experiment(&tmp.0);
    let config = tmp.0.join("copy.toml");
    let out_dir = format!("out_dir={}", tmp.0.join("runs").display());
    let out = ordo()
        .args([
            "train",
            config.to_str().unwrap(),
            "--set",
            &out_dir,
            "--quiet",
        ])
        .env("ORDO_INJECT_NAN_GRADIENT_AT_STEP", "20")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("gradient norm became NaN at step 20"), "{err}");
    assert!(err.contains("last good checkpoint (step 15)"), "{err}");
    let state = std::fs::read_to_string(tmp.0.join("runs/copy/checkpoint/state.json")).unwrap();
    assert!(state.contains("\"step\": 15"), "{state}");
    assert!(!tmp.0.join("runs/copy/summary.json").exists());
    // Other failures keep exit code 1.
    let out = run(&["train", "no-such-config.toml"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn absurd_sizes_are_refused_before_anything_is_allocated() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for (config, set) in [
        ("configs/copy.toml", "task.max_len=1000000000000"),
        ("configs/agent.toml", "task.max_len=1000000000000"),
        ("configs/position.toml", "task.max_len=100000000"),
        ("configs/copy.toml", "model.d_model=1048576"),
    ] {
        let out = run(&[
            "train",
            root.join(config).to_str().unwrap(),
            "--check",
            "--set",
            set,
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{config} {set}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("memory allocation"),
            "{err}"
        );
        assert!(err.contains("ORDO_MEMORY_LIMIT"), "{config} {set}: {err}");
    }
    // The limit is the machine's available memory unless overridden.
    let copy = root.join("configs/copy.toml");
    let copy = copy.to_str().unwrap();
    let out = ordo()
        .args(["train", copy, "--check"])
        .env("ORDO_MEMORY_LIMIT", "1M")
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains("exceeds the 1.0 MiB available"));
    let out = ordo()
        .args(["train", copy, "--check"])
        .env("ORDO_MEMORY_LIMIT", "off")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn shard_slurm_reads_the_array_variables_or_says_they_are_missing() {
    let tmp = TempDir::new("slurm");
    let path = experiment(&tmp.0);
    let path = path.to_str().unwrap();
    let out = ordo()
        .args(["ablate", path, "--shard", "slurm", "--dry-run"])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("SLURM_ARRAY_TASK_ID is not set"));
    let out = ordo()
        .args(["ablate", path, "--shard", "slurm", "--dry-run"])
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_MAX", "2")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("2 cells in this shard"), "{stdout}");
    // A task id beyond the array's last is an error, not a shard past the end.
    let out = ordo()
        .args(["ablate", path, "--shard", "slurm", "--dry-run"])
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_MAX", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    // More array tasks than cells: the extra shards have nothing to do, and succeed.
    let out = run(&["ablate", path, "--shard", "7/8"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("this shard has no cells"));
}

/// The memory check counts the cells a shard runs side by side (one tiny cell peaks at about
/// 4.2 MiB), where it runs them.
#[test]
fn memory_is_checked_for_the_cells_run_side_by_side() {
    let tmp = TempDir::new("memory");
    let path = experiment(&tmp.0);
    let path = path.to_str().unwrap();
    let dry = |jobs: &str| {
        ordo()
            .args(["ablate", path, "--dry-run", "--jobs", jobs])
            .env("ORDO_MEMORY_LIMIT", "6M")
            .output()
            .unwrap()
    };
    let one = dry("1");
    assert!(one.status.success(), "{}", text(&one.stderr));
    let two = dry("2");
    let err = text(&two.stderr);
    assert_eq!(two.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2 cell(s) side by side (--jobs 2)") && err.contains("lower --jobs"),
        "{err}"
    );
    // Loading the grid does not check memory: a cell too large for this machine is refused
    // only by the shard that runs it.
    let out = ordo()
        .args(["ablate", path, "--dry-run", "--jobs", "1"])
        .env("ORDO_MEMORY_LIMIT", "1K")
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("1 cell(s) side by side"),
        "{}",
        text(&out.stderr)
    );
}

/// Inputs that used to abort, panic or hang are clear errors before anything is allocated.
#[test]
fn huge_counts_and_non_files_are_refused_at_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let copy = root.join("configs/copy.toml");
    let copy = copy.to_str().unwrap();
    for (set, field) in [
        (
            "model.encoding.randomized_positions=9223372036854775807",
            "randomized_positions",
        ),
        ("train.eval_examples=9223372036854775807", "eval_examples"),
    ] {
        let out = run(&["train", copy, "--check", "--set", set]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{set}: {err}");
        assert!(
            err.contains(field) && err.contains("at most"),
            "{set}: {err}"
        );
    }
    // A FIFO as corpus would block a reader forever.
    let tmp = TempDir::new("fifo");
    let fifo = tmp.0.join("corpus.txt");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let lm = root.join("configs/lm.toml");
    let out = run(&[
        "train",
        lm.to_str().unwrap(),
        "--check",
        "--set",
        &format!("task.corpus={:?}", fifo.display().to_string()),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    // `ordo eval`: lengths and counts beyond any machine.
    let exp = experiment(&tmp.0);
    let out = run(&["ablate", exp.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let runs = tmp.0.join("sweep/runs");
    let cell = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let cell = cell.to_str().unwrap();
    // (Lengths that cannot be read are a command-line error, exit code 2, as clap gives.)
    for (args, code) in [
        (vec!["--lengths", "1-1000000000000"], 2),
        (vec!["--lengths", "1-18446744073709551615"], 2),
        (vec!["--examples", "1000000000000"], 1),
        (vec!["--lengths", "1000000", "--examples", "1000"], 1),
    ] {
        let mut all = vec!["eval", cell];
        all.extend(&args);
        let out = run(&all);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            (err.contains("at most") || err.contains("exceeds")) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}
