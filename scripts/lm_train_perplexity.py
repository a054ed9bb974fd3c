#!/usr/bin/env python3
"""Perplexity of a trained `lm` run on text it was trained on, by the protocol of `ordo eval`.

    python3 scripts/lm_train_perplexity.py RUN_DIR OUT_DIR [ORDO] [--probe-from LINE]

`ordo eval` scores the held-out text: the last `valid_percent` of the corpus lines. To score
training text the same way, this script writes a probe corpus, the run's training lines followed
by as many of them again (from the first line equal to `--probe-from`, default `Emma`), so that
the probe's last `valid_percent` of lines are training text; copies the run directory to
`OUT_DIR/<run>`, pointing its config at the probe corpus and at the run's own `tokenizer.json`
(so the text is cut into exactly the run's tokens; a BPE retrained on the probe could differ);
and runs `ORDO eval` (default `target/release/ordo`) on the copy with every window of the
probe's tail. The difference to the run's own `eval.json` is the train/held-out gap.
"""
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path


def main():
    args = sys.argv[1:]
    probe_from = "Emma"
    if "--probe-from" in args:
        i = args.index("--probe-from")
        probe_from = args[i + 1]
        del args[i : i + 2]
    run, out = Path(args[0]), Path(args[1])
    ordo = args[2] if len(args) > 2 else "target/release/ordo"
    config = (run / "config.toml").read_text()
    # Input paths in a run's config.toml are relative to the run directory (or absolute).
    corpus = run / Path(re.search(r'^corpus = "(.*)"$', config, re.M).group(1))
    percent = int(re.search(r"^valid_percent = (\d+)$", config, re.M).group(1))
    # The lm task's split (crates/train/src/tasks/lm.rs): non-empty lines, the last
    # ceil(n * percent / 100) held out.
    lines = [l for l in corpus.read_text().splitlines() if l.strip()]
    held = -(-len(lines) * percent // 100)
    train = lines[: len(lines) - held]
    start = train.index(probe_from)
    probe = train[start : start + held]
    text = train + probe
    assert -(-len(text) * percent // 100) == len(probe), "the probe must be the held-out tail"
    copy = out / run.name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    # The copy reads another corpus on purpose: drop the input hashes that would refuse it.
    for name in ("eval.json", "eval.csv", "inputs.json"):
        (copy / name).unlink(missing_ok=True)
    probe_path = out / "probe_corpus.txt"
    probe_path.write_text("\n".join(text) + "\n")
    config = re.sub(r'^corpus = ".*"$', f'corpus = "{probe_path.resolve()}"', config, flags=re.M)
    config = re.sub(
        r'^tokenizer = ".*"$',
        f'tokenizer = "{(copy / "tokenizer.json").resolve()}"',
        config,
        flags=re.M,
    )
    config = re.sub(r"^vocab_size = \d+\n", "", config, flags=re.M)
    (copy / "config.toml").write_text(config)
    subprocess.run([ordo, "eval", str(copy), "--examples", "100000"], check=True)
    train_eval = json.loads((copy / "eval.json").read_text())
    held_eval = json.loads((run / "eval.json").read_text())
    print(f"{run.name}: perplexity on training text (probe from {probe_from!r}) / held-out")
    for t, h in zip(train_eval["lengths"], held_eval["lengths"]):
        if t["metrics"] and h["metrics"]:
            pt, ph = math.exp(t["metrics"]["loss"]), math.exp(h["metrics"]["loss"])
            print(f"  {t['length']:5d}  train {pt:8.2f}  held-out {ph:8.2f}  gap {ph / pt:.2f}x")


if __name__ == "__main__":
    main()
