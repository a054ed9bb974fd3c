#!/usr/bin/env python3
"""PyTorch reference for `ordo bench`: the same shapes, steps and figures, measured with
x-transformers (and plain PyTorch for Shaw, which x-transformers lacks).

    python bench/pytorch_bench.py [--shapes tiny,small,medium] [--encodings rope,alibi]
        [--eval-shapes small] [--eval-factors 1,4,8] [--eval-tokens 8192]
        [--steps 10] [--warmup 2] [--threads 2]
        [--train-variants math,fused,compile,bf16,bf16-compile] [--gemm] [--json] [--out FILE]
    python bench/pytorch_bench.py --compare ORDO.json PYTORCH.json [ORDO_BF16.json]

Every measurement runs in a child process (this script re-invoked with `--single JOB`) so that
its peak resident set (VmHWM) is its own, as in `ordo bench`. Training: forward, cross-entropy
over every position (weighted mean, as ordo's masked cross-entropy), backward,
`clip_grad_norm_(1.0)`, AdamW (lr 1e-3, betas 0.9/0.98, eps 1e-8, weight decay 0.01: ordo's
defaults). Training is measured in the variants a PyTorch user picks (`--train-variants`):
"math" (x-transformers' attention written out, its default), "fused" (`attn_flash=True`:
`F.scaled_dot_product_attention`), "compile" (`torch.compile` of the fused model, of the math
one where fused cannot run), "bf16" (the fused model under CPU autocast to bfloat16, loss in
fp32) and "bf16-compile" (both). Evaluation: forward only under `torch.inference_mode()`, math
and fused. `--gemm` times `torch.mm` (fp32 and bfloat16) on the products `ordo bench --gemm`
times. See bench/README.md for the encoding mapping.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, seq_len=64, batch=32, vocab=64),
    "small": dict(d_model=128, n_layers=4, n_heads=4, seq_len=128, batch=32, vocab=256),
    "medium": dict(d_model=256, n_layers=4, n_heads=8, seq_len=256, batch=16, vocab=1024),
}
ENCODINGS = ["none", "sinusoidal", "learned", "t5", "shaw", "rope", "alibi"]
# Training variants: attention written out or fused, compiled or not, fp32 or autocast bf16.
VARIANTS = ["math", "fused", "compile", "bf16", "bf16-compile"]
FP32_VARIANTS = ["math", "fused", "compile"]
BF16_VARIANTS = ["bf16", "bf16-compile"]
SHAW_K = 16  # ordo's default clipping distance

# AdamW and clipping: ordo's `[train]` defaults.
LR, BETAS, EPS, WEIGHT_DECAY, GRAD_CLIP = 1e-3, (0.9, 0.98), 1e-8, 0.01, 1.0


def proc_status_mib(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# Models


def implementation_of(encoding: str) -> str:
    return "pytorch" if encoding == "shaw" else "x-transformers"


def fused_supported(encoding: str) -> str | None:
    """Why `attention = fused` cannot run for an encoding, or None."""
    if encoding == "t5":
        return "x-transformers refuses attn_flash with rel_pos_bias (T5)"
    if encoding == "shaw":
        return "Shaw's value term needs the attention probabilities: no fused kernel"
    return None


def build_model(shape: dict, encoding: str, max_len: int, fused: bool):
    import torch.nn as nn
    from x_transformers import Decoder, TransformerWrapper

    d, heads = shape["d_model"], shape["n_heads"]
    if encoding == "shaw":
        if fused:
            raise ValueError(fused_supported("shaw"))
        return ShawLM(shape)
    layers = dict(
        dim=d,
        depth=shape["n_layers"],
        heads=heads,
        attn_dim_head=d // heads,  # x-transformers' default is 64 regardless of d_model
        ff_mult=4,
        attn_flash=fused,
    )
    wrapper = dict(num_tokens=shape["vocab"], max_seq_len=max_len)
    if encoding == "none":
        wrapper["use_abs_pos_emb"] = False
    elif encoding == "sinusoidal":
        wrapper["scaled_sinu_pos_emb"] = True
    elif encoding == "learned":
        pass  # x-transformers' default: a learned absolute table of max_seq_len rows
    elif encoding == "t5":
        layers.update(rel_pos_bias=True, rel_pos_num_buckets=32, rel_pos_max_distance=128)
        wrapper["use_abs_pos_emb"] = False
    elif encoding == "rope":
        layers.update(rotary_pos_emb=True, rotary_emb_dim=d // heads)  # ordo rotates all dims
        wrapper["use_abs_pos_emb"] = False
    elif encoding == "alibi":
        layers.update(alibi_pos_bias=True)
        wrapper["use_abs_pos_emb"] = False
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    model = TransformerWrapper(attn_layers=Decoder(**layers), **wrapper)
    assert isinstance(model, nn.Module)
    return model


def _shaw_classes():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class ShawAttention(nn.Module):
        """Shaw et al. 2018 with ordo's conventions: one key and one value table of 2k+1
        offsets per layer, shared by heads; key term added before the 1/sqrt(dh) scale."""

        def __init__(self, d, heads, k):
            super().__init__()
            self.heads, self.dh, self.k = heads, d // heads, k
            self.qkv = nn.Linear(d, 3 * d)
            self.out = nn.Linear(d, d)
            self.rel_k = nn.Parameter(torch.randn(2 * k + 1, self.dh) * self.dh**-0.5)
            self.rel_v = nn.Parameter(torch.randn(2 * k + 1, self.dh) * self.dh**-0.5)

        def forward(self, x, labels, mask):
            b, t, d = x.shape
            h, dh = self.heads, self.dh
            q, k, v = self.qkv(x).view(b, t, 3, h, dh).permute(2, 0, 3, 1, 4)  # [b, h, t, dh]
            idx = labels.expand(b, h, t, t)
            scores = q @ k.transpose(-1, -2)
            scores = scores + (q @ self.rel_k.t()).gather(-1, idx)  # [b, h, t, 2k+1] -> [.., t]
            probs = F.softmax(scores * dh**-0.5 + mask, dim=-1)
            per_label = torch.zeros(b, h, t, 2 * self.k + 1, dtype=probs.dtype)
            per_label = per_label.scatter_add(-1, idx, probs)
            out = probs @ v + per_label @ self.rel_v
            return self.out(out.transpose(1, 2).reshape(b, t, d))

    class ShawBlock(nn.Module):
        def __init__(self, d, heads, k):
            super().__init__()
            self.ln_attn, self.ln_mlp = nn.LayerNorm(d), nn.LayerNorm(d)
            self.attn = ShawAttention(d, heads, k)
            self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x, labels, mask):
            x = x + self.attn(self.ln_attn(x), labels, mask)
            return x + self.down(F.gelu(self.up(self.ln_mlp(x))))

    class ShawLM(nn.Module):
        """ordo's pre-LN decoder with Shaw attention, in plain PyTorch."""

        def __init__(self, shape):
            super().__init__()
            d = shape["d_model"]
            self.emb = nn.Embedding(shape["vocab"], d)
            self.blocks = nn.ModuleList(
                ShawBlock(d, shape["n_heads"], SHAW_K) for _ in range(shape["n_layers"])
            )
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, shape["vocab"])

        def forward(self, tokens):
            t = tokens.shape[1]
            pos = torch.arange(t)
            labels = ((pos[None, :] - pos[:, None]).clamp(-SHAW_K, SHAW_K) + SHAW_K)[None, None]
            mask = torch.full((t, t), float("-inf")).triu(1)
            x = self.emb(tokens)
            for block in self.blocks:
                x = block(x, labels, mask)
            return self.head(self.norm(x))

    return ShawLM


def ShawLM(shape):  # noqa: N802 - a factory that keeps torch imports lazy
    return _shaw_classes()(shape)


# --------------------------------------------------------------------------------------------
# One measurement (child side)


def parse_job(job: str) -> dict:
    parts = job.split(":")
    if parts[0] == "train" and len(parts) == 4:
        mode, shape, encoding, variant = parts
        factor = 1
    elif parts[0] == "eval" and len(parts) == 5:
        mode, shape, encoding, factor, variant = parts
        factor = int(factor)
    else:
        raise SystemExit(
            f"--single {job!r}: expected train:SHAPE:ENC:VARIANT or eval:SHAPE:ENC:FACTOR:ATTN"
        )
    allowed = VARIANTS if mode == "train" else ["math", "fused"]
    if shape not in SHAPES or encoding not in ENCODINGS or variant not in allowed:
        raise SystemExit(f"--single {job!r}: unknown shape, encoding or variant")
    return dict(mode=mode, shape=shape, encoding=encoding, factor=factor, variant=variant)


def attention_of(variant: str, encoding: str) -> str:
    """The attention a variant runs: fused unless it is "math" or the encoding has no fused
    path (T5, Shaw: those compile and autocast the math model)."""
    return "math" if variant == "math" or fused_supported(encoding) else "fused"


def variant_of(record: dict) -> str | None:
    """A training record's variant (reports written before variants: its attention); None for
    ordo's records."""
    return record.get("variant") or record.get("attention")


# --------------------------------------------------------------------------------------------
# Matrix products (--gemm): the products `ordo bench --gemm` times, through torch.mm


def step_products(shape: dict) -> list[dict]:
    """The dense products of one training step, as `crates/bench/src/gemm.rs` lists them."""
    rows, d, layers = shape["batch"] * shape["seq_len"], shape["d_model"], shape["n_layers"]
    out = []
    for name, i, o, count in [
        ("q k v out", d, d, 4 * layers),
        ("mlp up", d, 4 * d, layers),
        ("mlp down", 4 * d, d, layers),
        ("head", d, shape["vocab"], 1),
    ]:
        out.append(dict(name=f"{name} x w", m=rows, k=i, n=o, lhs_t=False, rhs_t=False, count=count))
        out.append(dict(name=f"{name} dy wᵀ", m=rows, k=o, n=i, lhs_t=False, rhs_t=True, count=count))
        out.append(dict(name=f"{name} xᵀ dy", m=i, k=rows, n=o, lhs_t=True, rhs_t=False, count=count))
    return out


def time_mm(p: dict, dtype) -> float:
    """Median seconds of one `torch.mm` with `p`'s shape and layout (as ordo's: one untimed run,
    then runs for 0.25 s, at least 3)."""
    import torch

    def operand(rows, cols, transposed):
        return torch.ones(cols, rows, dtype=dtype).t() if transposed else torch.ones(rows, cols, dtype=dtype)

    a, b = operand(p["m"], p["k"], p["lhs_t"]), operand(p["k"], p["n"], p["rhs_t"])
    torch.mm(a, b)
    times, start = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < 0.25:
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def measure_gemm(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    report = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        square = dict(name="square", m=2048, k=2048, n=2048, lhs_t=False, rhs_t=False, count=1)
        square["seconds"] = time_mm(square, dtype)
        shapes = []
        for s in args.shapes:
            products = step_products(SHAPES[s])
            for p in products:
                p["seconds"] = time_mm(p, dtype)
            shapes.append(dict(shape=s, products=products))
        report[label] = dict(square=square, shapes=shapes)
        print(f"gemm {label}: square {gflops(square):.0f} GFLOP/s", file=sys.stderr, flush=True)
    return report


def gflops(p: dict) -> float:
    return 2.0 * p["m"] * p["k"] * p["n"] / p["seconds"] / 1e9


def dense_total(shape: dict) -> tuple[float, float]:
    """(GFLOP, seconds) of a shape's dense products per step."""
    flops = sum(2.0 * p["m"] * p["k"] * p["n"] * p["count"] for p in shape["products"])
    return flops / 1e9, sum(p["seconds"] * p["count"] for p in shape["products"])


def gemm_table(gemm: dict) -> str:
    out = []
    for label, g in gemm.items():
        out.append(f"torch.mm {label}: square 2048³ {gflops(g['square']):.0f} GFLOP/s")
        for s in g["shapes"]:
            gf, sec = dense_total(s)
            out.append(f"  {s['shape']:<7} dense products of a step: {gf:.2f} GFLOP in "
                       f"{sec * 1e3:.1f} ms, {gf / sec:.0f} GFLOP/s")  # fmt: skip
    return "\n".join(out)


def summarise(times):
    s = sorted(times)
    n = len(s)
    median = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    return median, s[0], s[-1]


def measure(job: dict, args) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start_rss = proc_status_mib("VmRSS")
    shape = SHAPES[job["shape"]]
    variant = job["variant"]
    attention = attention_of(variant, job["encoding"]) if job["mode"] == "train" else variant
    fused = attention == "fused"
    gen = torch.Generator().manual_seed(args.seed)
    times, losses = [], []
    if job["mode"] == "train":
        t, b = shape["seq_len"], shape["batch"]
        model = build_model(shape, job["encoding"], t, fused)
        model.train()
        forward = torch.compile(model) if variant.endswith("compile") else model
        bf16 = variant.startswith("bf16")
        rows = torch.randint(0, shape["vocab"], (b, t + 1), generator=gen)
        tokens, targets = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()
        weights = torch.ones(b, t)
        optim = torch.optim.AdamW(
            model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY
        )
        for i in range(args.warmup + args.steps):
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = forward(tokens)
            nll = F.cross_entropy(
                logits.float().reshape(b * t, -1), targets.reshape(-1), reduction="none"
            ).view(b, t)
            loss = (nll * weights).sum() / weights.sum().clamp(min=1.0)
            losses.append(loss.item())
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optim.step()
            if i >= args.warmup:
                times.append(time.perf_counter() - started)
    else:
        t = job["factor"] * shape["seq_len"]
        b = max(args.eval_tokens // t, 1)
        max_len = max(args.max_eval_factor, job["factor"]) * shape["seq_len"]
        model = build_model(shape, job["encoding"], max_len, fused)
        model.eval()
        tokens = torch.randint(0, shape["vocab"], (b, t), generator=gen)
        with torch.inference_mode():
            for i in range(args.warmup + args.steps):
                started = time.perf_counter()
                logits = model(tokens)
                del logits
                if i >= args.warmup:
                    times.append(time.perf_counter() - started)
    median, lo, hi = summarise(times)
    return dict(
        mode=job["mode"],
        shape=job["shape"],
        encoding=job["encoding"],
        implementation=implementation_of(job["encoding"]),
        attention=attention,
        variant=variant,
        device="cpu",
        factor=job["factor"],
        seq_len=t,
        batch=b,
        params=sum(p.numel() for p in model.parameters()),
        steps=args.steps,
        warmup=args.warmup,
        step_seconds=median,
        step_seconds_min=lo,
        step_seconds_max=hi,
        tokens_per_second=b * t / max(median, 1e-12),
        peak_rss_mib=proc_status_mib("VmHWM"),
        start_rss_mib=start_rss,
        loss_first=losses[0] if losses else None,
        loss_last=losses[-1] if losses else None,
        threads=torch.get_num_threads(),
    )


# --------------------------------------------------------------------------------------------
# The parent: one child per job


def jobs_of(args) -> tuple[list[str], list[dict]]:
    jobs, skipped = [], []
    for s in args.shapes:
        for e in args.encodings:
            for v in args.train_variants:
                job = f"train:{s}:{e}:{v}"
                if v == "fused" and fused_supported(e):
                    skipped.append(dict(job=job, reason=fused_supported(e)))
                else:
                    jobs.append(job)
    for s in args.eval_shapes:
        for e in args.encodings:
            for f in args.eval_factors:
                for a in ("math", "fused"):
                    job = f"eval:{s}:{e}:{f}:{a}"
                    if a == "fused" and fused_supported(e):
                        skipped.append(dict(job=job, reason=fused_supported(e)))
                    else:
                        jobs.append(job)
    return jobs, skipped


def child_args(args) -> list[str]:
    return [
        "--steps", str(args.steps),
        "--warmup", str(args.warmup),
        "--threads", str(args.threads),
        "--eval-tokens", str(args.eval_tokens),
        "--eval-factors", ",".join(str(f) for f in args.eval_factors) or "1",
        "--seed", str(args.seed),
    ]  # fmt: skip


def run_child(job: str, args) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--single", job] + child_args(args)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if proc.returncode == 0:
                return record
    noise = ("Traceback", "  File", "    ", "warnings.warn")
    tail = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith(noise)][-3:]
    raise RuntimeError(f"exit {proc.returncode}: {' | '.join(tail) or 'no output'}")


def versions() -> dict:
    import torch
    import x_transformers  # noqa: F401
    from importlib.metadata import version

    return dict(torch=torch.__version__, x_transformers=version("x-transformers"))


def table(report: dict) -> str:
    o = report["options"]
    out = [
        f"PyTorch {report['versions']['torch']}, x-transformers "
        f"{report['versions']['x_transformers']} ({o['threads']} threads"
        + (f", load average {report['load_average']:.2f} at start" if report["load_average"] is not None else "")
        + "): median of "
        f"{o['steps']} timed steps after {o['warmup']} warm-up steps"
    ]
    train = [r for r in report["records"] if r["mode"] == "train"]
    if train:
        out += ["", "training (forward + backward + clip + AdamW)"]
        out.append(
            f"{'shape':<7} {'encoding':<11} {'variant':<12} {'params':>9} {'batch×T':>9} "
            f"{'step ms':>10} {'tok/s':>10} {'peak MiB':>9}"
        )
        for r in train:
            out.append(
                f"{r['shape']:<7} {r['encoding']:<11} {variant_of(r):<12} {r['params']:>9} "
                f"{str(r['batch']) + '×' + str(r['seq_len']):>9} {r['step_seconds'] * 1e3:>10.1f} "
                f"{r['tokens_per_second']:>10.0f} {r['peak_rss_mib'] or 0:>9.0f}"
            )
    ev = [r for r in report["records"] if r["mode"] == "eval"]
    if ev:
        out += ["", f"evaluation (forward only, {o['eval_tokens']} tokens per forward)"]
        out.append(
            f"{'shape':<7} {'encoding':<11} {'attn':<6} {'length':>7} {'batch×T':>9} "
            f"{'step ms':>10} {'tok/s':>10} {'peak MiB':>9}"
        )
        for r in ev:
            out.append(
                f"{r['shape']:<7} {r['encoding']:<11} {r['attention']:<6} "
                f"{str(r['factor']) + 'x':>7} {str(r['batch']) + '×' + str(r['seq_len']):>9} "
                f"{r['step_seconds'] * 1e3:>10.1f} {r['tokens_per_second']:>10.0f} "
                f"{r['peak_rss_mib'] or 0:>9.0f}"
            )
    if report.get("gemm"):
        out += ["", gemm_table(report["gemm"])]
    if report["skipped"]:
        out += ["", "not measured"] + [f"{s['job']}: {s['reason']}" for s in report["skipped"]]
    if report["failures"]:
        out += ["", "failed"] + [f"{f['job']}: {f['error']}" for f in report["failures"]]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# ordo vs PyTorch


def describe_machine(machine: dict | None) -> str:
    """The CPU and its instruction sets, as ordo recorded them."""
    if not machine or not machine.get("cpu"):
        return "not recorded"
    isa = " ".join(machine.get("isa", []))
    return f"{machine['cpu']} ({isa})" if isa else machine["cpu"]


def compare(ordo_path: str, torch_path: str, bf16_path: str | None = None) -> str:
    """The side-by-side tables; `bf16_path`: an `ordo bench --precision bf16` report, set
    beside PyTorch's autocast variants."""
    with open(ordo_path) as f:
        ordo = json.load(f)
    with open(torch_path) as f:
        pt = json.load(f)
    ordo_bf16 = None
    if bf16_path:
        with open(bf16_path) as f:
            ordo_bf16 = json.load(f)

    def index(records):
        return {(r["mode"], r["shape"], r["encoding"], r["factor"],
                 variant_of(r) if r["mode"] == "train" else r.get("attention")): r
                for r in records}  # fmt: skip

    o, p = index(ordo["records"]), index(pt["records"])
    ob = index(ordo_bf16["records"]) if ordo_bf16 else {}

    def tps(r):
        return f"{r['tokens_per_second']:.0f}" if r else "n/a"

    def ratio(a, b, key="tokens_per_second"):
        if not a or not b or not a.get(key) or not b.get(key):
            return "n/a"
        return f"{a[key] / b[key]:.2f}"

    def mib(r):
        return f"{r['peak_rss_mib']:.0f}" if r and r.get("peak_rss_mib") else "n/a"

    def grown(r):
        """Peak RSS minus the RSS before the model was built: the measurement's own memory."""
        if not r or r.get("peak_rss_mib") is None or r.get("start_rss_mib") is None:
            return "n/a"
        return f"{r['peak_rss_mib'] - r['start_rss_mib']:.0f}"

    def load(report):
        l = report.get("load_average")
        return "?" if l is None else f"{l:.2f}"

    lines = [
        f"ordo {ordo.get('version', '?')} ({ordo['options']['device']}) vs PyTorch "
        f"{pt['versions']['torch']} + x-transformers {pt['versions']['x_transformers']}; "
        f"load average at start: ordo {load(ordo)}, PyTorch {load(pt)}",
        "CPU: " + describe_machine(ordo.get("machine")),
    ]
    if ordo_bf16 and ordo_bf16.get("bf16_kernel"):
        lines.append("ordo's bf16 products: " + ordo_bf16["bf16_kernel"])
    lines += [
        "ratio = ordo / PyTorch (tokens/s: >1 means ordo is faster; memory: <1 means ordo uses less)",
        "peak = peak RSS of the measuring process (MiB); +model = peak minus the RSS before the "
        "model was built (the runtime's own baseline, e.g. ~0.5 GiB for importing torch, left out)",
        "",
        "training tokens/s and memory (PyTorch: x-transformers' default, attention written out)",
        f"{'shape':<7} {'encoding':<11} {'ordo':>9} {'pytorch':>9} {'ratio':>6}   "
        f"{'ordo peak':>9} {'pt peak':>8} {'ordo +model':>11} {'pt +model':>9}",
    ]
    keys = sorted({k[:4] for k in o if k[0] == "train"} | {k[:4] for k in p if k[0] == "train"},
                  key=lambda k: (list(SHAPES).index(k[1]), ENCODINGS.index(k[2])))  # fmt: skip
    for k in keys:
        a, b = o.get(k + (None,)), p.get(k + ("math",))
        lines.append(
            f"{k[1]:<7} {k[2]:<11} {tps(a):>9} {tps(b):>9} {ratio(a, b):>6}   "
            f"{mib(a):>9} {mib(b):>8} {grown(a):>11} {grown(b):>9}"
        )
    measured = [v for v in VARIANTS if any(k[0] == "train" and k[4] == v for k in p)]
    if measured != ["math"] and measured:
        lines += [
            "",
            "training tokens/s against every PyTorch variant measured; best fp32 = the fastest of "
            "math, fused and compile, best bf16 = of bf16 and bf16-compile (autocast)"
            + ("; ordo bf16 = `ordo bench --precision bf16`" if ordo_bf16 else ""),
            f"{'shape':<7} {'encoding':<11} {'ordo':>9} "
            + " ".join(f"{v:>12}" for v in measured)
            + f" {'/best fp32':>10} {'/best bf16':>10}"
            + (f" {'ordo bf16':>10} {'/best bf16':>10}" if ordo_bf16 else ""),
        ]
        for k in keys:
            a = o.get(k + (None,))
            row = [p.get(k + (v,)) for v in measured]

            def best(group):
                rs = [r for v, r in zip(measured, row) if v in group and r]
                return max(rs, key=lambda r: r["tokens_per_second"]) if rs else None

            extra = ""
            if ordo_bf16:
                c = ob.get(k + (None,))
                extra = f" {tps(c):>10} {ratio(c, best(BF16_VARIANTS)):>10}"
            lines.append(
                f"{k[1]:<7} {k[2]:<11} {tps(a):>9} "
                + " ".join(f"{tps(r):>12}" for r in row)
                + f" {ratio(a, best(FP32_VARIANTS)):>10} {ratio(a, best(BF16_VARIANTS)):>10}"
                + extra
            )
    ekeys = sorted({k[:4] for k in o if k[0] == "eval"} | {k[:4] for k in p if k[0] == "eval"},
                   key=lambda k: (list(SHAPES).index(k[1]), ENCODINGS.index(k[2]), k[3]))  # fmt: skip
    if ekeys:
        lines += [
            "",
            f"evaluation tokens/s (forward only, {ordo['options']['eval_tokens']} tokens per forward); "
            "math = attention written out, fused = F.scaled_dot_product_attention",
            f"{'shape':<7} {'encoding':<11} {'length':>6} {'ordo':>9} {'math':>9} {'ratio':>6} "
            f"{'fused':>9} {'ratio':>6}   {'ordo +model':>11} {'math +model':>11}",
        ]
        for k in ekeys:
            a, m, f = o.get(k + (None,)), p.get(k + ("math",)), p.get(k + ("fused",))
            lines.append(
                f"{k[1]:<7} {k[2]:<11} {str(k[3]) + 'x':>6} {tps(a):>9} {tps(m):>9} "
                f"{ratio(a, m):>6} {tps(f):>9} {ratio(a, f):>6}   {grown(a):>11} {grown(m):>11}"
            )
    og, pg = ordo.get("gemm"), pt.get("gemm")
    if og or pg:
        lines += ["", "matrix products, GFLOP/s (f32 unless marked; dense = every product of one "
                  "training step outside the attention core, at its own size and layout)"]  # fmt: skip
        header = f"{'':<22} {'ordo (gemm)':>12} {'torch fp32':>11} {'ratio':>6} {'torch bf16':>11}"
        lines.append(header)

        def rate(g, shape=None):
            if not g:
                return None
            if shape is None:
                return gflops(g["square"])
            for s in g["shapes"]:
                if s["shape"] == shape:
                    gf, sec = dense_total(s)
                    return gf / sec
            return None

        def fmt(x):
            return "n/a" if x is None else f"{x:.0f}"

        shapes = [s["shape"] for s in (og or pg["fp32"])["shapes"]]
        for label, shape in [("square 2048³", None)] + [(f"{s} dense", s) for s in shapes]:
            a = rate(og, shape)
            b = rate(pg and pg.get("fp32"), shape)
            c = rate(pg and pg.get("bf16"), shape)
            r = "n/a" if a is None or b is None else f"{a / b:.2f}"
            lines.append(f"{label:<22} {fmt(a):>12} {fmt(b):>11} {r:>6} {fmt(c):>11}")
        if og:
            for s in og["shapes"]:
                step = o.get(("train", s["shape"], "none", 1, None))
                if step:
                    _, sec = dense_total(s)
                    lines.append(
                        f"ordo {s['shape']}: dense products at these rates take "
                        f"{100 * sec / step['step_seconds']:.0f} % of its measured step (none)"
                    )
    notes = [f"{f['job']}: {f['error']}" for f in ordo.get("failures", []) + pt.get("failures", [])]
    if notes:
        lines += ["", "failed"] + notes
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------


def csv(kind):
    def parse(text):
        items = [x.strip() for x in text.split(",") if x.strip()]
        return [kind(x) for x in items]

    return parse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", type=csv(str), default=list(SHAPES))
    ap.add_argument("--encodings", type=csv(str), default=ENCODINGS)
    ap.add_argument("--eval-shapes", type=csv(str), default=["small"])
    ap.add_argument("--eval-factors", type=csv(int), default=[1, 4, 8])
    ap.add_argument("--eval-tokens", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu only (accepted for ordo's options)")
    ap.add_argument(
        "--train-variants",
        type=csv(str),
        default=None,
        help=f"training variants measured, of {','.join(VARIANTS)} (default: math)",
    )
    ap.add_argument(
        "--train-attention",
        choices=["math", "fused", "both"],
        default=None,
        help="older spelling: --train-variants math, fused or math,fused",
    )
    ap.add_argument("--gemm", action="store_true",
                    help="also time torch.mm (fp32, bf16) on the products ordo bench --gemm times")  # fmt: skip
    ap.add_argument("--json", action="store_true", help="print the JSON report instead of a table")
    ap.add_argument("--out", help="also write the JSON report to this file")
    ap.add_argument("--single", help=argparse.SUPPRESS)
    ap.add_argument("--compare", nargs="+", metavar="JSON",
                    help="ORDO_JSON PYTORCH_JSON [ORDO_BF16_JSON]: print ordo's (fp32, and "
                         "bf16 if given) and PyTorch's figures side by side, then exit")  # fmt: skip
    args = ap.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore")  # x-transformers' torch.jit deprecation notices
    if args.compare:
        if len(args.compare) not in (2, 3):
            ap.error("--compare takes ORDO_JSON PYTORCH_JSON [ORDO_BF16_JSON]")
        sys.stdout.write(compare(*args.compare))
        return 0
    if args.device != "cpu":
        ap.error("only --device cpu is measured here")
    if args.steps < 1 or args.eval_tokens < 1 or any(f < 1 for f in args.eval_factors):
        ap.error("--steps, --eval-tokens and --eval-factors must be positive")
    args.shapes = [s for s in args.shapes if s != "none"]
    args.eval_shapes = [s for s in args.eval_shapes if s != "none"]
    for s in args.shapes + args.eval_shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s!r}; expected one of {', '.join(SHAPES)}")
    for e in args.encodings:
        if e not in ENCODINGS:
            ap.error(f"unknown encoding {e!r}; expected one of {', '.join(ENCODINGS)}")
    args.max_eval_factor = max(args.eval_factors, default=1)
    if args.train_variants is None:
        older = {None: ["math"], "math": ["math"], "fused": ["fused"], "both": ["math", "fused"]}
        args.train_variants = older[args.train_attention]
    for v in args.train_variants:
        if v not in VARIANTS:
            ap.error(f"unknown training variant {v!r}; expected one of {', '.join(VARIANTS)}")

    if args.single:
        record = measure(parse_job(args.single), args)
        print(json.dumps(record), flush=True)
        return 0

    load = load_average()
    if load is not None and load >= 0.5 * (os.cpu_count() or 1):
        print(
            f"warning: load average {load:.2f} on {os.cpu_count()} hardware threads: other "
            "processes compete for the cores. PyTorch's OpenMP threads spin while they wait and "
            "slow down sharply under contention (OMP_WAIT_POLICY=PASSIVE softens it); the figures "
            "will be low and noisy.",
            file=sys.stderr,
        )
    jobs, skipped = jobs_of(args)
    records, failures = [], []
    for n, job in enumerate(jobs, 1):
        try:
            r = run_child(job, args)
            records.append(r)
            print(
                f"[{n}/{len(jobs)}] {job}: {r['tokens_per_second']:.0f} tok/s, "
                f"{r['step_seconds'] * 1e3:.1f} ms/step, peak {r['peak_rss_mib'] or 0:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
        except RuntimeError as e:
            failures.append(dict(job=job, error=str(e)))
            print(f"[{n}/{len(jobs)}] {job}: FAILED: {e}", file=sys.stderr, flush=True)
    options = dict(
        steps=args.steps,
        warmup=args.warmup,
        device="cpu",
        eval_tokens=args.eval_tokens,
        max_eval_factor=args.max_eval_factor,
        seed=args.seed,
        threads=args.threads,
        train_variants=args.train_variants,
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
    )
    gemm = measure_gemm(args) if args.gemm else None
    report = dict(
        implementation="pytorch",
        versions=versions(),
        options=options,
        threads=args.threads,
        load_average=load,
        records=records,
        skipped=skipped,
        failures=failures,
        gemm=gemm,
    )
    text = json.dumps(report, indent=2)
    if args.out:
        tmp = f"{args.out}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.out)  # atomic: a killed run leaves the last report whole
    if args.json:
        print(text)
    else:
        sys.stdout.write(table(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
