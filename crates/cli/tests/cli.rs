//! The `ordo` binary end to end: `inspect` output against the golden values, plots on disk,
//! and clear errors (never a panic) on bad input.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn ordo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(args: &[&str]) -> Value {
    let (ok, stdout, stderr) = ordo(args);
    assert!(ok, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn close(v: &Value, want: &[f64], tol: f64) {
    let got: Vec<f64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{got:?} vs {want:?}");
    }
}

#[test]
fn inspect_json_reproduces_the_golden_values() {
    let v = json(&[
        "inspect",
        "sinusoidal",
        "--len",
        "3",
        "--d-model",
        "6",
        "--heads",
        "2",
        "--json",
    ]);
    assert_eq!(v["kind"], "sinusoidal");
    close(
        &v["table"][1],
        &[0.84147, 0.54030, 0.04640, 0.99892, 0.00215, 1.0],
        1e-5,
    );
    close(
        &v["table"][2],
        &[0.90930, -0.41615, 0.09270, 0.99569, 0.00431, 0.99999],
        1e-5,
    );

    let v = json(&["inspect", "alibi", "--heads", "8", "--len", "4", "--json"]);
    close(
        &v["slopes"],
        &(1..=8).map(|h| 0.5f64.powi(h)).collect::<Vec<_>>(),
        1e-15,
    );
    close(&v["bias"][0][3], &[-1.5, -1.0, -0.5, 0.0], 1e-7);
    let v = json(&[
        "inspect",
        "alibi",
        "--heads",
        "6",
        "--d-model",
        "48",
        "--len",
        "2",
        "--json",
    ]);
    close(
        &v["slopes"],
        &[0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125],
        1e-15,
    );

    // T5 causal 32/128: row i = 130, key 0 is distance 130 -> 31; distances 0-15 exact; 16 -> 16.
    let v = json(&["inspect", "t5", "--len", "131", "--json"]);
    let row = &v["buckets"][130];
    assert_eq!(row[0], 31);
    assert_eq!(row[130 - 15], 15);
    assert_eq!(row[130 - 16], 16);
    assert_eq!(row[130 - 18], 16);
    assert_eq!(row[130 - 19], 17);
    assert_eq!(row[130 - 113], 31);
    assert_eq!(row[130 - 112], 30);
    assert_eq!(v["bias"].as_array().unwrap().len(), 4);
    let v = json(&[
        "inspect",
        "t5",
        "--mode",
        "bidirectional",
        "--len",
        "100",
        "--json",
    ]);
    assert_eq!(v["buckets"][0][1], 17);
    assert_eq!(v["buckets"][0][8], 24);
    assert_eq!(v["buckets"][0][64], 30);
    assert_eq!(v["buckets"][8][0], 8);

    // RoPE: angle m * base^(-2i/d_head); d_model 64, 4 heads -> d_head 16.
    let v = json(&[
        "inspect", "rope", "--set", "base=500", "--len", "5", "--json",
    ]);
    let want: Vec<f64> = (0..8)
        .map(|i| 4.0 * 500f64.powf(-(2.0 * i as f64) / 16.0))
        .collect();
    close(&v["angles"][4], &want, 1e-5);
    // RoPE scalings from the command line, against HF's formulas (golden values in rope.rs):
    // YaRN over L 33 at d_head 16 (the ramp linear in the pair index), and dynamic NTK at twice
    // L (base 10000 * 5^(16/14)).
    let v = json(&[
        "inspect",
        "rope",
        "--set",
        "scaling.kind=yarn",
        "--set",
        "scaling.factor=4",
        "--set",
        "scaling.original_max_len=33",
        "--len",
        "66",
        "--json",
    ]);
    let plain: Vec<f64> = (0..8).map(|i| 1e4f64.powf(-(i as f64) / 8.0)).collect();
    let keep = [1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let yarn: Vec<f64> = (0..8)
        .map(|i| plain[i] * (keep[i] + (1.0 - keep[i]) / 4.0))
        .collect();
    close(&v["frequencies"], &yarn, 1e-12);
    assert_eq!(v["attention_factor"], 1.138629436111989);
    let dynamic = |len: &str| {
        json(&[
            "inspect",
            "rope",
            "--set",
            "scaling.kind=dynamic",
            "--set",
            "scaling.factor=4",
            "--set",
            "scaling.original_max_len=33",
            "--len",
            len,
            "--json",
        ])
    };
    close(&dynamic("33")["frequencies"], &plain, 1e-15);
    let base = 62924.947532091326f64;
    let past: Vec<f64> = (0..8).map(|i| base.powf(-(i as f64) / 8.0)).collect();
    close(&dynamic("66")["frequencies"], &past, 1e-12);
    let v = json(&[
        "inspect",
        "shaw",
        "--set",
        "max_distance=2",
        "--len",
        "5",
        "--json",
    ]);
    close(&v["relative_index"][4], &[-2.0, -2.0, -2.0, -1.0, 0.0], 0.0);
    close(&v["relative_index"][0], &[0.0, 1.0, 2.0, 2.0, 2.0], 0.0);
}

#[test]
fn check_shift_is_at_float_precision() {
    let (ok, stdout, stderr) = ordo(&[
        "inspect",
        "sinusoidal",
        "--figure",
        "check_shift=7",
        "--len",
        "300",
    ]);
    assert!(ok, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("max |PE(pos+7) - M_7 PE(pos)| over pos 0..300 = "))
        .expect(&stdout);
    let worst: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(worst < 1e-5, "{stdout}");
    // The same number in --json.
    let (ok, stdout, stderr) = ordo(&[
        "inspect",
        "sinusoidal",
        "--figure",
        "check_shift=7",
        "--len",
        "300",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["shift_check"]["k"], 7);
    assert!(
        (v["shift_check"]["max_abs_error"].as_f64().unwrap() - worst).abs()
            < 1e-3 * worst.max(1e-9) + 1e-12
    );
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn inspect_writes_every_plot_as_valid_images() {
    let out: PathBuf = std::env::temp_dir().join(format!("ordo-inspect-{}", std::process::id()));
    std::fs::remove_dir_all(&out).ok();
    let expected: &[(&str, &[&str])] = &[
        (
            "sinusoidal",
            &["sinusoidal-table", "sinusoidal-dot-products"],
        ),
        ("learned", &["learned-table", "learned-dot-products"]),
        ("t5", &["t5-buckets", "t5-bias-head0", "t5-bias-head3"]),
        ("shaw", &["shaw-relative-index"]),
        ("rope", &["rope-cos-angles", "rope-decay"]),
        ("alibi", &["alibi-bias-head0", "alibi-slopes"]),
    ];
    for (kind, stems) in expected {
        let (ok, _, stderr) = ordo(&[
            "inspect",
            kind,
            "--len",
            "32",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{kind}: {stderr}");
        for stem in *stems {
            let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
            let (w, h) = png_size(&png);
            assert!(
                w >= 400 && h >= 300 && png.len() > 5_000,
                "{stem}: {w}x{h}, {} bytes",
                png.len()
            );
            let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
            assert!(
                svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
                "{stem}"
            );
            assert!(
                svg.contains("<rect") || svg.contains("<polyline"),
                "{stem}: nothing drawn"
            );
            if *stem == "rope-decay" {
                // Drawn at RoFormer Figure 2's head size, not the model's 16 dims.
                assert!(svg.contains("d = 128"), "{stem}: not at 128 dims");
            }
        }
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn bad_input_gets_a_clear_error_and_no_panic() {
    let cases: &[(&[&str], &str)] = &[
        (&["train", "no/such/config.toml"], "no/such/config.toml"),
        (&["eval", "/nonexistent-run"], "not a run directory"),
        (
            &["ablate", "no/such/experiment.toml"],
            "no/such/experiment.toml",
        ),
        (&["inspect", "nope"], "nope"),
        (&["inspect", "rope", "--set", "fraction=0.3"], "fraction"),
        (&["inspect", "rope", "--set", "bogus=1"], "bogus"),
        (
            &["inspect", "t5", "--set", "init_std=-1"],
            "encoding `t5`: `init_std` (--set): expected a positive number",
        ),
        (&["inspect", "alibi", "--heads", "3"], "--heads"),
        (
            &["inspect", "rope", "--figure", "check_shift=2"],
            "--figure check_shift=2: encoding `rope`: unknown figure option `check_shift`; it takes `decay_dims`",
        ),
        (
            &["inspect", "none", "--figure", "decay_dims=8"],
            "it takes none",
        ),
        (
            &["eval", "/tmp", "--set", "train.lr=1"],
            "--set train.lr=1: only the run's encoding can change",
        ),
        (
            &["eval", "/tmp", "--set", "model.encoding.kind=t5"],
            "the encoding's kind is the run's",
        ),
        (&["eval", "/tmp", "--max-factor", "0"], "--max-factor"),
        (&["eval", "/tmp", "--sliding", "0"], "--sliding"),
        (
            &["inspect", "rope", "--figure", "decay_dims=7"],
            "--figure decay_dims=7: encoding `rope`: expected an even number",
        ),
        (
            &[
                "inspect",
                "alibi",
                "--set",
                "randomized_positions=8",
                "--len",
                "16",
            ],
            "shown at --len 16: `randomized_positions`",
        ),
        (&["ablate", "x.toml", "--shard", "0/2"], "--shard"),
    ];
    for (args, needle) in cases {
        let (ok, _, stderr) = ordo(args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}

#[test]
fn inspect_draws_a_trained_models_attention_and_its_learned_table() {
    let dir: PathBuf = std::env::temp_dir().join(format!("ordo-attn-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tiny.toml");
    std::fs::write(
        &config,
        "[model]\nd_model = 16\nn_heads = 2\nn_layers = 2\n[model.encoding]\nkind = \"learned\"\n\
         [task]\nkind = \"copy\"\nsymbols = 4\nmax_len = 4\n[train]\nsteps = 5\nbatch_size = 4\n\
         warmup_steps = 1\neval_examples = 8\n",
    )
    .unwrap();
    let out_dir = format!("out_dir={}", dir.join("runs").display());
    let (ok, _, stderr) = ordo(&[
        "train",
        config.to_str().unwrap(),
        "--set",
        &out_dir,
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    let run = dir.join("runs/tiny");
    let pics = dir.join("pics");
    let (ok, _, stderr) = ordo(&[
        "inspect",
        "learned",
        "--checkpoint",
        run.to_str().unwrap(),
        "--len",
        "8",
        "--text",
        "s1 s2 s3 [SEP] s1",
        "--out",
        pics.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    for layer in 0..2 {
        for head in 0..2 {
            let png =
                std::fs::read(pics.join(format!("attention-layer{layer}-head{head}.png"))).unwrap();
            assert!(png_size(&png).0 >= 400);
        }
    }
    // All of them on one figure: 2 layers (rows) x 2 heads (columns) of 520 x 420 panels.
    let grid = std::fs::read(pics.join("attention-grid.png")).unwrap();
    assert_eq!(png_size(&grid), (2 * 520, 2 * 420 + 40));
    let svg = std::fs::read_to_string(pics.join("attention-grid.svg")).unwrap();
    for layer in 0..2 {
        for head in 0..2 {
            assert!(
                svg.contains(&format!("layer {layer}, head {head}")),
                "panel {layer},{head}"
            );
        }
    }
    // Each head's mean attention distance at each length: 2 layers x 2 heads, between 0 and
    // the longest distance in the example, written into the run with its table and plot.
    let (ok, stdout, stderr) = ordo(&[
        "analyze",
        run.to_str().unwrap(),
        "--lengths",
        "1-4",
        "--examples",
        "8",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("L1H1"), "{stdout}");
    let analysis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("analysis.json")).unwrap()).unwrap();
    let lengths = analysis["lengths"].as_array().unwrap();
    assert_eq!(lengths.len(), 4);
    for l in lengths {
        let tokens = l["tokens"].as_f64().unwrap();
        let rows = l["mean_distance"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        for d in rows.iter().flat_map(|r| r.as_array().unwrap()) {
            let d = d.as_f64().unwrap();
            assert!((0.0..=tokens - 1.0).contains(&d), "{d} at {tokens} tokens");
        }
    }
    let csv = std::fs::read_to_string(run.join("analysis.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 2 * 2);
    assert!(png_size(&std::fs::read(run.join("analysis.png")).unwrap()).0 >= 400);
    // The weights out, in PyTorch's layouts: a safetensors header naming every tensor, the
    // MLP's up projection [out = 4 d_model, in = d_model], the layer norms' weight and bias.
    let (ok, _, stderr) = ordo(&["export", "model", run.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let bytes = std::fs::read(run.join("export/model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(
        header["blocks.0.mlp.up.weight"]["shape"],
        serde_json::json!([64, 16])
    );
    assert_eq!(
        header["blocks.1.ln_mlp.weight"]["shape"],
        serde_json::json!([16])
    );
    assert_eq!(header["pos.table"]["shape"][1], 16);
    assert_eq!(header["__metadata__"]["encoding"], "learned");
    let floats: usize = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| {
            v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .product::<usize>()
        })
        .sum();
    assert_eq!(bytes.len(), 8 + n + 4 * floats);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("export/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model"]["encoding"]["kind"], "learned");
    assert!(run.join("export/tokenizer.json").is_file());
    // ordo's own logits for one held-out example: [tokens][vocab].
    let sample: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("export/sample.json")).unwrap())
            .unwrap();
    let t = sample["tokens"].as_array().unwrap().len();
    assert!(t > 1);
    assert_eq!(sample["logits"].as_array().unwrap().len(), t);
    let vocab = config["vocab_size"].as_u64().unwrap() as usize;
    assert_eq!(sample["logits"][0].as_array().unwrap().len(), vocab);
    let (ok, _, stderr) = ordo(&["analyze", run.to_str().unwrap(), "--sliding", "2"]);
    assert!(!ok && stderr.contains("--sliding"), "{stderr}");
    // The JSON table is the trained one: 8 rows of 16, read from the checkpoint.
    let v = json(&[
        "inspect",
        "learned",
        "--checkpoint",
        run.to_str().unwrap(),
        "--len",
        "8",
        "--json",
    ]);
    assert_eq!(v["table"].as_array().unwrap().len(), 8);
    assert_eq!(v["table"][0].as_array().unwrap().len(), 16);
    // Unknown tokens and the wrong scheme are refused with a reason.
    let (ok, _, stderr) = ordo(&[
        "inspect",
        "learned",
        "--checkpoint",
        run.to_str().unwrap(),
        "--text",
        "s1 zebra",
        "--out",
        pics.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("zebra"), "{stderr}");
    let (ok, _, stderr) = ordo(&["inspect", "rope", "--checkpoint", run.to_str().unwrap()]);
    assert!(!ok && stderr.contains("learned"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_closed_pipe_ends_quietly_without_a_panic() {
    use std::process::Stdio;
    let experiment = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../experiments/word_order.toml"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["ablate", experiment, "--dry-run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before the 126 lines are written
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn shipped(config: &str) -> String {
    format!("{}/../../configs/{config}", env!("CARGO_MANIFEST_DIR"))
}

/// An encoder written from the defaults (4 heads, default initialisation) starts with a position
/// signal too weak to learn local order (bigram_shift at chance, notes/bigram-encoder.md):
/// `--check` says so on stderr with the settings that fix it, per scheme, and the config it
/// prints is unchanged; configs/bigram_shift_encoder.toml (those settings) and decoders get no
/// warning. Training prints it at the start and records it in summary.json.
#[test]
fn a_weak_encoder_config_is_warned_with_the_settings_that_fix_it() {
    let decoder = shipped("bigram_shift.toml");
    let encoder = shipped("bigram_shift_encoder.toml");
    let bidirectional = "model.mode=\"bidirectional\"";
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            &decoder,
            &[bidirectional],
            &["model.qk_bias_std = 1.5", "model.n_heads = 8"],
        ),
        (
            &decoder,
            &[bidirectional, "model.encoding.kind=sinusoidal"],
            &["model.embedding_std = 0.3"],
        ),
        (
            &decoder,
            &[bidirectional, "model.encoding.kind=t5"],
            &["model.encoding.init_std = 3.0", "model.n_heads = 8"],
        ),
        (
            &decoder,
            &[bidirectional, "model.encoding.kind=shaw"],
            &["model.encoding.init_std = 1.0"],
        ),
        // The encoder config sets the model-wide scales; T5's table still needs its own.
        (
            &encoder,
            &["model.encoding.kind=t5"],
            &["model.encoding.init_std = 3.0"],
        ),
        // No warning: decoders, the shipped encoder config, and its per-scheme settings.
        (&decoder, &[], &[]),
        (&decoder, &["model.encoding.kind=sinusoidal"], &[]),
        (&encoder, &[], &[]),
        (&encoder, &["model.encoding.kind=rope"], &[]),
        (
            &encoder,
            &["model.encoding.kind=t5", "model.encoding.init_std=3.0"],
            &[],
        ),
        (
            &encoder,
            &["model.encoding.kind=shaw", "model.encoding.init_std=1.0"],
            &[],
        ),
        (&encoder, &["model.encoding.kind=none"], &[]),
    ];
    for (config, sets, fixes) in cases {
        let mut args = vec!["train", config, "--check"];
        for s in *sets {
            args.extend(["--set", s]);
        }
        let (ok, stdout, stderr) = ordo(&args);
        assert!(ok, "{args:?}: {stderr}");
        assert!(
            stdout.contains("[model]") && !stdout.contains("warning"),
            "{stdout}"
        );
        if fixes.is_empty() {
            assert!(!stderr.contains("warning"), "{args:?}: {stderr}");
        } else {
            assert!(
                stderr.contains("warning: this `")
                    && stderr.contains("too weak to learn local order"),
                "{args:?}: {stderr}"
            );
            for fix in *fixes {
                assert!(
                    stderr.contains(&format!("`{fix}`")),
                    "{args:?}: {fix} not in {stderr}"
                );
            }
        }
    }
    // Training: said at the start, kept in summary.json; a decoder's summary has no warnings.
    let dir: PathBuf = std::env::temp_dir().join(format!("ordo-warn-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let out_dir = format!("out_dir={}", dir.display());
    for (name, mode, warned) in [("enc", "bidirectional", true), ("dec", "causal", false)] {
        let (name_set, mode_set) = (format!("name={name}"), format!("model.mode=\"{mode}\""));
        let (ok, _, stderr) = ordo(&[
            "train",
            &decoder,
            "--quiet",
            "--set",
            &out_dir,
            "--set",
            &name_set,
            "--set",
            &mode_set,
            "--set",
            "train.steps=2",
            "--set",
            "train.warmup_steps=1",
            "--set",
            "train.eval_examples=8",
            "--set",
            "task.max_len=6",
        ]);
        assert!(ok, "{stderr}");
        assert_eq!(stderr.contains("warning: "), warned, "{name}: {stderr}");
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(name).join("summary.json")).unwrap(),
        )
        .unwrap();
        match summary.get("warnings") {
            Some(w) => {
                assert!(warned, "{summary}");
                assert!(w[0].as_str().unwrap().contains("`model.qk_bias_std = 1.5`"));
            }
            None => assert!(!warned, "{name}: {summary}"),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// FIRE's learned threshold L and c: `inspect --checkpoint` prints them, and the evaluation
/// records them in eval.json (for the report); `threshold_fraction` resolves L₀ to a quarter of
/// the longest training sequence (copy at max_len 4: a decoder reads 8 positions).
#[test]
fn fire_reports_its_learned_threshold_and_c() {
    let dir: PathBuf = std::env::temp_dir().join(format!("ordo-fire-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("fire.toml");
    std::fs::write(
        &config,
        "[model]\nd_model = 16\nn_heads = 2\nn_layers = 1\n[model.encoding]\nkind = \"fire\"\n\
         threshold_fraction = 0.25\n[task]\nkind = \"copy\"\nsymbols = 4\nmax_len = 4\n\
         [train]\nsteps = 5\nbatch_size = 4\nwarmup_steps = 1\neval_examples = 8\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = ordo(&["train", config.to_str().unwrap(), "--check"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("threshold = 2.0\nthreshold_fraction = 0.25"),
        "{stdout}"
    );
    let out_dir = format!("out_dir={}", dir.join("runs").display());
    let (ok, _, stderr) = ordo(&[
        "train",
        config.to_str().unwrap(),
        "--set",
        &out_dir,
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    let run = dir.join("runs/fire");
    let (ok, stdout, stderr) = ordo(&["inspect", "fire", "--checkpoint", run.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("learned: "))
        .expect(&stdout);
    assert!(
        line.contains("threshold = ") && line.contains(", c = "),
        "{line}"
    );
    let (ok, _, stderr) = ordo(&[
        "eval",
        run.to_str().unwrap(),
        "--examples",
        "4",
        "--max-factor",
        "1",
    ]);
    assert!(ok, "{stderr}");
    let eval: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    let threshold = eval["learned"]["threshold"].as_f64().expect("threshold");
    let c = eval["learned"]["c"].as_f64().expect("c");
    // Five steps move them a little from L₀ = 2 and c = 0.1, not far.
    assert!(
        (threshold - 2.0).abs() < 0.5 && (c - 0.1).abs() < 0.1,
        "{eval}"
    );
    assert!(
        line.contains(&format!("threshold = {threshold:.4}")),
        "{line} vs {threshold}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Every shipped config, experiment file and data file under the checkout, relative to it.
fn shipped_files() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    let mut stack = vec![
        root.join("configs"),
        root.join("data"),
        root.join("experiments"),
    ];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let in_experiments = rel.starts_with("experiments/");
            if path.is_dir() {
                // An experiment's directory holds results, not inputs.
                if !in_experiments {
                    stack.push(path);
                }
            } else if !rel.starts_with("configs/") || rel.ends_with(".toml") {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// `ordo init DIR` writes every shipped file as it is in the checkout, so that an installed
/// binary runs the README's commands there; a second run replaces nothing, a changed file is
/// kept.
#[test]
fn init_writes_the_shipped_files_and_replaces_none() {
    let dir = std::env::temp_dir().join(format!("ordo-init-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    let (ok, stdout, stderr) = ordo(&["init", dir.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let files = shipped_files();
    assert!(files.len() > 20, "{files:?}");
    for rel in &files {
        let written = std::fs::read(dir.join(rel)).unwrap_or_else(|_| panic!("{rel} missing"));
        assert_eq!(written, std::fs::read(root.join(rel)).unwrap(), "{rel}");
    }
    assert!(
        stdout.contains(&format!("wrote {} files", files.len())),
        "{stdout}"
    );
    // The shipped experiment resolves its task configs from there (checked, not trained).
    let (ok, _, stderr) = ordo(&[
        "ablate",
        dir.join("experiments/quick.toml").to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(ok, "{stderr}");
    // Again, with one file changed by the user: nothing is replaced.
    let mine = dir.join("configs/copy.toml");
    std::fs::write(&mine, "# mine\n").unwrap();
    let (ok, stdout, stderr) = ordo(&["init", dir.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("wrote 0 files") && stdout.contains("kept configs/copy.toml"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "# mine\n");
    std::fs::remove_dir_all(&dir).ok();
}
