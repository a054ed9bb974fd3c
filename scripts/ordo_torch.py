#!/usr/bin/env python3
"""A trained ordo model in plain PyTorch, from `ordo export model RUN` (one file; needs only torch).

    from ordo_torch import load
    model = load("runs/copy/export")           # model.safetensors + config.json
    logits = model(torch.tensor([[3, 4, 5]]))  # [batch, t, vocab]

Run as a script it checks itself against ordo on the export's `sample.json` (a held-out example
and ordo's logits for it) and prints the largest absolute difference:

    python3 scripts/ordo_torch.py runs/copy/export

What it covers today: every positional encoding ordo has (`none`, `sinusoidal`, `learned`,
`t5`, `shaw` with or without values, `rope` in both layouts with any `fraction`, `alibi` in both
directions, `fire`), causal and bidirectional, at contiguous or randomized positions (pass the
positions). RoPE's eval-time scalings are refused with a message (not written yet).
"""

import json
import math
import struct
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32}


def read_safetensors(path):
    """The tensors of a safetensors file, read with the standard library and torch."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = bytearray(data[8 + n :])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        flat = torch.frombuffer(body[start:end], dtype=DTYPES[info["dtype"]]) if end > start else torch.zeros(0)
        tensors[name] = flat.reshape(info["shape"]).clone()
    return tensors, header.get("__metadata__", {})


def sinusoid(positions, d, base):
    """ordo's sinusoid rows [t, d]: dims 2i and 2i+1 hold sin and cos of p * base^(-2i/d)."""
    pos = positions.double()[:, None]
    i = torch.arange(d) // 2
    angle = pos * base ** (-(2 * i).double() / d)
    table = torch.where(torch.arange(d) % 2 == 0, angle.sin(), angle.cos())
    return table.float()


def t5_bucket(rel, bidirectional, num_buckets, max_distance):
    """T5's bucket of the offset `rel = j - i`, its logarithmic part in float32 as the reference."""
    n, ret = num_buckets, 0
    if bidirectional:
        n //= 2
        ret = n if rel > 0 else 0
        dist = abs(rel)
    else:
        dist = max(-rel, 0)
    max_exact = n // 2
    if dist < max_exact:
        return ret + dist
    f32 = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    ratio = (f32(dist) / f32(max_exact)).log() / (f32(max_distance) / f32(max_exact)).log() * f32(n - max_exact)
    return ret + min(max_exact + int(ratio.item()), n - 1)


def alibi_slopes(n):
    """Press et al.'s geometric slopes (the closest power of two, then every other of 2n)."""

    def power_of_two(n):
        ratio = 2.0 ** (-8.0 / n)
        return [ratio**h for h in range(1, n + 1)]

    if n & (n - 1) == 0:
        return power_of_two(n)
    c = 1 << (n.bit_length() - 1)
    return power_of_two(c) + alibi_slopes(2 * c)[::2][: n - c]


class OrdoTransformer(torch.nn.Module):
    """ordo's pre-LN transformer (see crates/model/src/transformer.rs)."""

    def __init__(self, config, tensors):
        super().__init__()
        m = config["model"]
        self.d, self.h, self.layers = m["d_model"], m["n_heads"], m["n_layers"]
        self.causal = m["mode"] == "causal"
        self.encoding = dict(m["encoding"])
        self.kind = self.encoding["kind"]
        supported = {"none", "sinusoidal", "learned", "t5", "shaw", "rope", "alibi", "fire"}
        if self.kind not in supported:
            raise ValueError(f"encoding `{self.kind}`: not in ordo_torch.py yet (it has {sorted(supported)})")
        scaling = self.encoding.get("scaling", {"kind": "none"})
        if self.kind == "rope" and scaling.get("kind", "none") != "none":
            raise ValueError(f"RoPE scaling `{scaling['kind']}`: not in ordo_torch.py yet")
        self.params = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v, requires_grad=False) for k, v in tensors.items()})

    def p(self, name):
        return self.params[name.replace(".", "__")]

    def linear(self, x, name):
        return F.linear(x, self.p(f"{name}.weight"), self.p(f"{name}.bias"))

    def norm(self, x, name):
        # burn's LayerNorm: epsilon 1e-5.
        return F.layer_norm(x, (self.d,), self.p(f"{name}.weight"), self.p(f"{name}.bias"), eps=1e-5)

    def rope(self, x, pos):
        dh = x.shape[-1]
        r = round(self.encoding.get("fraction", 1.0) * dh)
        base = self.encoding.get("base", 10000.0)
        theta = base ** (-(2 * torch.arange(r // 2)).double() / r)
        angle = pos.double()[:, None] * theta  # [t, r/2]
        cos, sin = angle.cos().float(), angle.sin().float()
        rot, rest = x[..., :r], x[..., r:]
        if self.encoding.get("layout", "interleaved") == "interleaved":
            a, b = rot[..., 0::2], rot[..., 1::2]
            out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
        else:
            a, b = rot[..., : r // 2], rot[..., r // 2 :]
            out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
        return torch.cat((out, rest), dim=-1)

    def bias(self, pos):
        if self.kind == "t5":
            nb = self.encoding.get("num_buckets", 32)
            md = self.encoding.get("max_distance", 128)
            p = pos.tolist()
            buckets = torch.tensor([[t5_bucket(j - i, not self.causal, nb, md) for j in p] for i in p])
            return self.p("pos.table")[buckets].permute(2, 0, 1)  # [h, t, t]
        if self.kind == "fire":
            # b_h(i, j) = f(ψ(|i - j|) / (ψ(max(i, |m·L₀|)) + 1e-6)), ψ(x) = log(|c·x| + 1).
            c, m = self.p("pos.c")[0], self.p("pos.multiplier")[0]
            psi = lambda x: (x * c).abs().add(1.0).log()  # noqa: E731
            p = pos.float()
            distance = (p[:, None] - p[None, :]).abs()
            threshold = (m * self.encoding["threshold"]).abs()
            normaliser = psi(torch.maximum(p, threshold))[:, None] + 1e-6
            x = (psi(distance) / normaliser)[..., None]  # [t, t, 1]
            hidden = F.relu(self.linear(x, "pos.hidden"))
            return self.linear(hidden, "pos.out").permute(2, 0, 1)  # [h, t, t]
        if self.kind != "alibi":
            return None
        i, j = pos[:, None], pos[None, :]
        distance = (i - j).clamp(min=0) if self.causal else (i - j).abs()
        distance = distance.double()
        if not self.causal and self.encoding.get("direction", "symmetric") == "asymmetric":
            distance = torch.where(j < i, distance - 0.5, distance)
        slopes = torch.tensor(alibi_slopes(self.h), dtype=torch.float64)[:, None, None]
        return (-slopes * distance).float()  # [h, t, t]

    def shaw_labels(self, pos):
        k = self.encoding.get("max_distance", 16)
        i, j = pos[:, None], pos[None, :]
        return (j - i).clamp(-k, k) + k  # [t, t]

    def forward(self, tokens, positions=None):
        """Logits `[b, t, vocab]` for `tokens` `[b, t]` placed at `positions` (`t` ints, shared
        by the batch; default `0..t`). With randomized positions ordo draws them from the batch's
        tokens with its own generator: pass the ones it used (`sample.json` has them)."""
        b, t = tokens.shape
        pos = torch.arange(t) if positions is None else torch.as_tensor(positions)
        if self.encoding.get("randomized_positions") and positions is None:
            raise ValueError("this model places tokens at randomized positions: pass `positions`")
        x = F.embedding(tokens, self.p("tok_emb.weight"))
        if self.kind == "learned":
            x = x + self.p("pos.table")[pos]
        elif self.kind == "sinusoidal":
            x = x + sinusoid(pos, self.d, self.encoding.get("base", 10000.0))
        bias = self.bias(pos)
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1) if self.causal else None
        dh = self.d // self.h
        for layer in range(self.layers):
            pre = f"blocks.{layer}"
            y = self.norm(x, f"{pre}.ln_attn")
            heads = lambda z: z.view(b, t, self.h, dh).transpose(1, 2)  # noqa: E731
            q = heads(self.linear(y, f"{pre}.attn.query"))
            k = heads(self.linear(y, f"{pre}.attn.key"))
            v = heads(self.linear(y, f"{pre}.attn.value"))
            if self.kind == "rope":
                q, k = self.rope(q, pos), self.rope(k, pos)
            scores = q @ k.transpose(-1, -2)
            if self.kind == "shaw":
                # e_ij = q_i·(k_j + a^K[clip(j - i) + k]) / √dh, one table per layer.
                labels = self.shaw_labels(pos)
                table = self.p("pos.keys")[layer][labels]  # [t, t, dh]
                scores = scores + torch.einsum("bhid,ijd->bhij", q, table)
            scores = scores / math.sqrt(dh)
            if bias is not None:
                scores = scores + bias
            if mask is not None:
                scores = scores.masked_fill(mask, float("-inf"))
            probs = scores.softmax(-1)
            z = probs @ v
            if self.kind == "shaw" and self.encoding.get("values", True):
                # z_i += Σ_j α_ij a^V[clip(j - i) + k].
                z = z + torch.einsum("bhij,ijd->bhid", probs, self.p("pos.values")[layer][self.shaw_labels(pos)])
            a = z.transpose(1, 2).reshape(b, t, self.d)
            x = x + self.linear(a, f"{pre}.attn.out")
            y = self.norm(x, f"{pre}.ln_mlp")
            # The exact (erf) GELU.
            x = x + self.linear(F.gelu(self.linear(y, f"{pre}.mlp.up")), f"{pre}.mlp.down")
        x = self.norm(x, "norm")
        if "head__weight" in self.params:
            return self.linear(x, "head")
        # Tied embeddings: logits x Eᵀ / sqrt(d).
        return x @ self.p("tok_emb.weight").t() / math.sqrt(self.d)


def load(export_dir):
    """The model of an `ordo export model` directory."""
    export_dir = Path(export_dir)
    config = json.loads((export_dir / "config.json").read_text())
    tensors, _ = read_safetensors(export_dir / "model.safetensors")
    return OrdoTransformer(config, tensors).eval()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: ordo_torch.py EXPORT_DIR  (written by `ordo export model RUN`)")
    export_dir = Path(sys.argv[1])
    model = load(export_dir)
    sample = json.loads((export_dir / "sample.json").read_text())
    tokens = torch.tensor([sample["tokens"]])
    with torch.no_grad():
        logits = model(tokens, sample.get("positions"))[0]
    reference = torch.tensor(sample["logits"])
    diff = (logits - reference).abs().max().item()
    agree = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
    print(f"{export_dir}: `{model.kind}` {'causal' if model.causal else 'bidirectional'}, "
          f"{tokens.shape[1]} tokens: max |torch - ordo| = {diff:.3g}, argmax agreement {agree:.3f}")
    sys.exit(0 if diff < 1e-4 else 1)


if __name__ == "__main__":
    main()
