//! A pre-LN transformer, top to bottom in data-flow order: attention, MLP, block, model.
//!
//! Legend: `b` batch, `t` sequence length, `d` d_model, `h` heads, `dh` d_head, `f` d_ff,
//! `v` vocabulary.
//!
//! Initialisation (pinned): token embeddings N(0, 1), so each component has RMS 1 (Vaswani's
//! `√d · N(0, 1/d)`; `embedding_std` in the config replaces the 1); absolute positional signals
//! have per-component RMS 1/√2 (sinusoids by construction, learned tables by their init), so
//! content and position start at comparable scale; linear layers use burn's Kaiming-uniform default
//! (`qk_bias_std` redraws the query/key biases N(0, σ²)); LayerNorm γ = 1, β = 0. A tied output
//! head divides the logits by √d so that initial logits have unit scale.

use crate::config::ModelConfig;
use crate::kernels::{self, attention as attention_core, gelu, layer_norm, softmax};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use ordo_encodings::{
    AttentionMode, LayerInput, Placement, PositionContext, Positional, PositionalEncoding,
};

/// Additive value that removes a key from the softmax. No row is ever fully masked (every
/// sequence has a first token, visible to every query), so -inf cannot make a NaN; and unlike a
/// large finite value, whose `exp` takes libm's slow underflow path, `exp(-inf)` is free.
const MASKED: f32 = f32::NEG_INFINITY;

/// Multi-head self-attention with the encoding's hooks.
#[derive(Module, Debug)]
pub struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    dropout: Dropout,
    #[module(skip)]
    n_heads: usize,
}

impl Attention {
    fn new(config: &ModelConfig, device: &Device) -> Self {
        let d = config.d_model;
        // The biases are replaced only when `qk_bias_std` is set: a config without it builds
        // exactly what it always did.
        let mut query = LinearConfig::new(d, d).init(device);
        let mut key = LinearConfig::new(d, d).init(device);
        if let Some(std) = config.qk_bias_std {
            let init = Initializer::Normal { mean: 0.0, std };
            query.bias = Some(init.init([d], device));
            key.bias = Some(init.init([d], device));
        }
        Self {
            query,
            key,
            value: LinearConfig::new(d, d).init(device),
            out: LinearConfig::new(d, d).init(device),
            dropout: DropoutConfig::new(config.dropout).init(),
            n_heads: config.n_heads,
        }
    }

    /// `x`: `[b, t, d]`. Returns the output `[b, t, d]` and, when the explicit path ran, the
    /// attention probabilities `[b, h, t, t]` (always when they are wanted: see
    /// [`AttentionPath::choose`]).
    fn forward(&self, x: Tensor<3>, layer: usize, pass: &Pass) -> (Tensor<3>, Option<Tensor<4>>) {
        let [b, t, d] = x.dims();
        let (h, dh) = (self.n_heads, d / self.n_heads);
        let (scheme, ctx) = (pass.pos.scheme(), pass.ctx);

        let heads = |x: Tensor<3>| x.reshape([b, t, h, dh]).swap_dims(1, 2); // [b, h, t, dh]
        // Three projections rather than one fused `d -> 3d` and a split: the split's backward
        // would zero-fill and copy a `[b, t, 3d]` gradient three times.
        let q = heads(kernels::linear(&self.query, x.clone()));
        let k = heads(kernels::linear(&self.key, x.clone()));
        let v = heads(kernels::linear(&self.value, x.clone()));
        let (q, k) = scheme.rotate(q, k, ctx);
        let scale = (dh as f64).powf(-0.5);
        // A content-dependent term of the scheme (CoPE, forgetting gate, Transformer-XL),
        // joined to the shared bias once for whichever path runs.
        let input = LayerInput {
            layer,
            x: &x,
            q: &q,
            k: &k,
            scale,
        };
        let own = scheme.scores(&input, ctx); // [b or 1, h, t, t]
        let relative = scheme.relative();
        // A bias by offset goes to the kernel as it is when nothing joins it; else as the matrix.
        let offsets = pass
            .bias_by_offset
            .filter(|_| own.is_none() && relative.is_none());
        let dense = pass
            .bias_by_offset
            .filter(|_| offsets.is_none())
            .map(|o| kernels::expand_offsets(o.clone(), t));
        let layer_bias = plus_bias(own, dense.as_ref().or(pass.bias));
        let layer_bias = layer_bias.as_ref();

        // The fused and explicit paths: 1/√dh applied to q [b, h, t, dh] rather than to the
        // larger scores [b, h, t, t], then the relative key term (linear in q) and the bias.
        let scaled = |q: Tensor<4>| {
            let q = q.mul_scalar(scale);
            let key_term = relative.map(|r| r.key_scores(&q, layer, ctx)); // [b, h, t, t]
            let bias = plus_bias(key_term, layer_bias);
            (q, bias)
        };
        match pass.path {
            AttentionPath::Kernel => {
                // On flex the kernel computes the relative terms itself; elsewhere the key term
                // is added to the bias (the kernel path then has no value term: see `choose`).
                let (tables, key_term) = match relative {
                    // No one-hot map in the context: the kernel computes the terms itself.
                    Some(r) if ctx.relative.is_none() => (Some(r.tables(layer)), None),
                    // Linear in q: scaled afterwards.
                    Some(r) => (None, Some(r.key_scores(&q, layer, ctx).mul_scalar(scale))), // [b, h, t, t]
                    None => (None, None),
                };
                let bias = plus_bias(key_term, layer_bias);
                let causal = pass.mode == AttentionMode::Causal;
                let out = match offsets {
                    Some(o) => {
                        kernels::attention_by_offset(q, k, v, o.clone(), scale as f32, causal)
                    }
                    None => attention_core(q, k, v, bias, tables, scale as f32, causal),
                }; // [b, t, d]
                (kernels::linear(&self.out, out), None)
            }
            AttentionPath::BurnFused => {
                let (q, bias) = scaled(q);
                let out = fused_attention(q, k, v, bias, pass.mode); // [b, h, t, dh]
                let out = out.swap_dims(1, 2).reshape([b, t, d]); // [b, t, d]
                (kernels::linear(&self.out, out), None)
            }
            AttentionPath::Explicit => {
                let (q, bias) = scaled(q);
                let mut scores = kernels::matmul(q, k.swap_dims(2, 3)); // [b, h, t, t]
                if let Some(bias) = bias {
                    scores = scores + bias;
                }
                let probs = softmax(scores); // [b, h, t, t]
                let dropped = self.dropout.forward(probs.clone());
                let mut out = kernels::matmul(dropped.clone(), v); // [b, h, t, dh]
                if let Some(term) = relative.and_then(|r| r.value_term(&dropped, layer, ctx)) {
                    out = out + term; // [b, h, t, dh]
                }
                let out = out.swap_dims(1, 2).reshape([b, t, d]); // [b, t, d]
                (kernels::linear(&self.out, out), Some(probs))
            }
        }
    }
}

/// How one forward pass computes the attention core `softmax(q kᵀ/√dh + bias) v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttentionPath {
    /// burn's attention kernel, which on CPU tiles over keys with an online softmax (flash
    /// attention) for long sequences and never materialises the `[b, h, t, t]` probabilities.
    BurnFused,
    /// One op ([`attention_core`]): ordo's fused CPU kernel with its own backward on flex
    /// (Shaw's relative terms computed inside it), burn's ops composed elsewhere.
    Kernel,
    /// burn's ops one by one, with the scheme's hooks; the probabilities are kept.
    Explicit,
}

impl AttentionPath {
    /// The one place the path is decided, once per forward pass:
    /// - the attention maps are wanted (`keep_maps`), or dropout acts on the probabilities
    ///   while training: only the explicit path has the probabilities, so `Explicit`;
    /// - inference on a device without ordo's kernels (ndarray, wgpu) and a scheme without a
    ///   value term (burn's kernel cannot add one): `BurnFused`, the fastest there. (On flex
    ///   ordo's kernel is about twice as fast at every length, with one `[t, t]` matrix per
    ///   thread, so flex inference takes `Kernel`);
    /// - a value term (Shaw) that the kernel cannot compute (on this device, or for positions
    ///   other than `0..t`: the context then carries the one-hot map): `Explicit`;
    /// - otherwise `Kernel`.
    fn choose(
        keep_maps: bool,
        dropout: f64,
        device: &Device,
        scheme: &dyn Positional,
        ctx: &PositionContext,
    ) -> Self {
        let training = device.is_autodiff();
        let accelerated = kernels::accelerated(device);
        let value_term = scheme.relative().is_some_and(|r| r.has_values());
        if keep_maps || (dropout > 0.0 && training) {
            AttentionPath::Explicit
        } else if !training && !accelerated && !value_term {
            AttentionPath::BurnFused
        } else if value_term && ctx.relative.is_some() {
            AttentionPath::Explicit
        } else {
            AttentionPath::Kernel
        }
    }

    /// Whether this path hides future keys itself (burn's kernel and ordo's take a causal
    /// flag), so that the mask tensor need not carry them.
    fn hides_future_keys(self) -> bool {
        self != AttentionPath::Explicit
    }
}

/// What every layer of one forward pass shares.
struct Pass<'a> {
    pos: &'a PositionalEncoding,
    /// The scheme's tables for this length.
    ctx: &'a PositionContext,
    /// `[b or 1, h or 1, t, t]`: position bias plus masks; `None` when there is neither, and
    /// without the causal part of the mask when the path hides future keys itself.
    bias: Option<&'a Tensor<4>>,
    /// The position bias by offset (`[h, 2t - 1]`, see `PositionContext::bias_by_offset`)
    /// where it replaces the matrix: the kernel path with no mask; then `bias` is `None`.
    bias_by_offset: Option<&'a Tensor<2>>,
    path: AttentionPath,
    mode: AttentionMode,
}

/// A relative key term `[b, h, t, t]` plus the shared bias, either possibly absent.
fn plus_bias(relative: Option<Tensor<4>>, bias: Option<&Tensor<4>>) -> Option<Tensor<4>> {
    match (relative, bias) {
        (Some(relative), Some(bias)) => Some(relative + bias.clone()), // [b, h, t, t]
        (relative, bias) => relative.or_else(|| bias.cloned()),
    }
}

/// Query rows per call of the fused kernel in causal mode (see [`fused_attention`]).
const CAUSAL_BLOCK: usize = 128;

/// `softmax(q kᵀ + bias) v` by burn's fused kernel; `q` already scaled, `bias` without the
/// causal mask. burn's CPU kernel masks causally but still computes every score, so in causal
/// mode the queries go in blocks of [`CAUSAL_BLOCK`], each against the keys up to its last row
/// only: about half the work at long lengths. (The kernel places the queries at the end of the
/// keys, which is where each block's are.)
fn fused_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Option<Tensor<4>>,
    mode: AttentionMode,
) -> Tensor<4> {
    let options = AttentionModuleOptions {
        scale: Some(1.0),
        softcap: None,
        is_causal: mode == AttentionMode::Causal,
    };
    let [b, h, t, dh] = q.dims();
    if mode == AttentionMode::Bidirectional || t <= 2 * CAUSAL_BLOCK {
        return attention(q, k, v, None, bias, options);
    }
    let blocks = (0..t).step_by(CAUSAL_BLOCK).map(|start| {
        let end = (start + CAUSAL_BLOCK).min(t);
        let bias = bias.as_ref().map(|bias| {
            let [bb, bh, _, _] = bias.dims();
            bias.clone().slice([0..bb, 0..bh, start..end, 0..end])
        });
        attention(
            q.clone().slice([0..b, 0..h, start..end, 0..dh]), // [b, h, block, dh]
            k.clone().slice([0..b, 0..h, 0..end, 0..dh]),     // [b, h, end, dh]
            v.clone().slice([0..b, 0..h, 0..end, 0..dh]),
            None,
            bias,
            options,
        )
    });
    Tensor::cat(blocks.collect(), 2) // [b, h, t, dh]
}

/// Position-wise feed-forward: `d -> f -> d` with GELU.
#[derive(Module, Debug)]
pub struct Mlp {
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn new(config: &ModelConfig, device: &Device) -> Self {
        Self {
            up: LinearConfig::new(config.d_model, config.d_ff()).init(device),
            down: LinearConfig::new(config.d_ff(), config.d_model).init(device),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        kernels::linear(&self.down, gelu(kernels::linear(&self.up, x))) // [b, t, f] -> [b, t, d]
    }
}

/// `x + attn(ln(x))`, then `x + mlp(ln(x))`.
#[derive(Module, Debug)]
pub struct Block {
    ln_attn: LayerNorm,
    attn: Attention,
    ln_mlp: LayerNorm,
    mlp: Mlp,
    dropout: Dropout,
}

impl Block {
    fn new(config: &ModelConfig, device: &Device) -> Self {
        Self {
            ln_attn: LayerNormConfig::new(config.d_model).init(device),
            attn: Attention::new(config, device),
            ln_mlp: LayerNormConfig::new(config.d_model).init(device),
            mlp: Mlp::new(config, device),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    fn forward(&self, x: Tensor<3>, layer: usize, pass: &Pass) -> (Tensor<3>, Option<Tensor<4>>) {
        let (a, probs) = self
            .attn
            .forward(layer_norm(&self.ln_attn, x.clone()), layer, pass);
        let x = x + self.dropout.forward(a);
        let x = x.clone()
            + self
                .dropout
                .forward(self.mlp.forward(layer_norm(&self.ln_mlp, x)));
        (x, probs)
    }
}

/// A batch of right-padded token sequences.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[b, t]` token ids; positions at or past a sequence's length hold padding.
    pub tokens: Tensor<2, Int>,
    /// Real length of each sequence (`<= t`).
    pub lengths: Vec<usize>,
}

/// The model: embeddings, positional encoding, blocks, final norm, output head.
#[derive(Module, Debug)]
pub struct Transformer {
    tok_emb: Embedding,
    pos: PositionalEncoding,
    dropout: Dropout,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Option<Linear>,
    #[module(skip)]
    mode: AttentionMode,
    /// Where the tokens sit: `0..t` or randomized positions (the encoding's option).
    #[module(skip)]
    placement: Placement,
}

impl ModelConfig {
    /// Builds the model for a vocabulary of `vocab_size` tokens.
    ///
    /// # Panics
    /// If [`validate`](Self::validate) fails: call it first at a config boundary.
    pub fn init(&self, vocab_size: usize, device: &Device) -> Transformer {
        if let Err(e) = self.validate() {
            panic!("invalid model config: {e}");
        }
        let tok_emb = EmbeddingConfig::new(vocab_size, self.d_model)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: self.embedding_std,
            })
            .init(device);
        Transformer {
            tok_emb,
            pos: self.encoding.init(&self.dims(), device),
            dropout: DropoutConfig::new(self.dropout).init(),
            blocks: (0..self.n_layers)
                .map(|_| Block::new(self, device))
                .collect(),
            norm: LayerNormConfig::new(self.d_model).init(device),
            head: (!self.tie_embeddings)
                .then(|| LinearConfig::new(self.d_model, vocab_size).init(device)),
            mode: self.mode,
            placement: self.encoding.placement(),
        }
    }
}

impl Transformer {
    /// Logits `[b, t, v]` for every position.
    ///
    /// # Panics
    /// If the scheme cannot represent `t` positions: ask [`supports`](Self::supports) first.
    pub fn forward(&self, batch: &Batch) -> Tensor<3> {
        self.run(batch, false).0
    }

    /// Logits and the attention probabilities of every layer (`n_layers` x `[b, h, t, t]`).
    pub fn forward_with_attention(&self, batch: &Batch) -> (Tensor<3>, Vec<Tensor<4>>) {
        self.run(batch, true)
    }

    /// Whether sequences of `len` tokens can be encoded by this model's positional scheme
    /// (and placed, with randomized positions).
    pub fn supports(&self, len: usize) -> bool {
        self.unsupported(len).is_none()
    }

    /// Why sequences of `len` tokens cannot be encoded, if they cannot.
    pub fn unsupported(&self, len: usize) -> Option<String> {
        if !self.pos.supports(len) {
            return Some(format!(
                "`{}` cannot represent {len} positions",
                self.pos.kind()
            ));
        }
        let max = self.placement.max_len()?;
        (len > max).then(|| {
            format!("randomized positions are drawn from 0..{max}, fewer than {len} positions")
        })
    }

    /// Where this model places its tokens: `0..t`, or randomized positions.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The positions each row of `batch` is placed at: row `r` (of `lengths[r]` tokens) sits
    /// at the first `lengths[r]` of the batch's one draw of `t` positions (`t` the padded
    /// length). What [`forward`](Self::forward) uses; exposed so that tests can check the
    /// distribution of positions a row meets in training and in evaluation.
    pub fn row_positions(&self, batch: &Batch) -> Vec<Vec<usize>> {
        let [_, t] = batch.tokens.dims();
        let positions = self.place(batch, t);
        batch
            .lengths
            .iter()
            .map(|&len| positions.as_slice()[..len].to_vec())
            .collect()
    }

    fn place(&self, batch: &Batch, t: usize) -> ordo_encodings::Positions {
        self.placement.place(t, || {
            batch.tokens.clone().into_data().iter::<i64>().collect()
        })
    }

    /// The positional encoding module.
    pub fn encoding(&self) -> &PositionalEncoding {
        &self.pos
    }

    /// Mutable access, for eval-time knobs such as RoPE scaling.
    pub fn encoding_mut(&mut self) -> &mut PositionalEncoding {
        &mut self.pos
    }

    fn run(&self, batch: &Batch, keep: bool) -> (Tensor<3>, Vec<Tensor<4>>) {
        let [b, t] = batch.tokens.dims();
        assert_eq!(batch.lengths.len(), b, "one length per sequence");
        assert!(
            batch.lengths.iter().all(|&l| (1..=t).contains(&l)),
            "every length must be in 1..={t}: {:?}",
            batch.lengths
        );
        assert!(
            self.supports(t),
            "the positional encoding cannot represent {t} positions"
        );
        let device = batch.tokens.device();

        // Where the tokens sit: `0..t`, or (randomized) drawn from the batch's tokens.
        let positions = self.place(batch, t);
        let x = self.tok_emb.forward(batch.tokens.clone()); // [b, t, d]
        let scheme = self.pos.scheme();
        let mut x = self.dropout.forward(scheme.embed(x, &positions)); // [b, t, d]

        // Shared by every layer: position tables and the combined additive bias.
        let ctx = scheme.context(&positions, &device);
        let path = AttentionPath::choose(keep, self.dropout.prob, &device, scheme, &ctx);
        let causal = self.mode == AttentionMode::Causal && !path.hides_future_keys();
        let mask = self.mask_bias(&batch.lengths, t, causal, &device); // [b or 1, 1, t, t]
        // A bias by offset (ALiBi's, T5's, DPB's: long inference) reaches the kernel path as it is where no
        // mask joins it; otherwise it is the `[1, h, t, t]` matrix, as every other bias.
        let bias_by_offset = ctx
            .bias_by_offset
            .as_ref()
            .filter(|_| mask.is_none() && path == AttentionPath::Kernel);
        let pos_bias = match bias_by_offset {
            Some(_) => None,
            None => ctx.dense_bias(),
        };
        let bias = match (&pos_bias, mask) {
            (Some(pos_bias), Some(mask)) => Some(pos_bias.clone() + mask), // [b or 1, h, t, t]
            (pos_bias, mask) => mask.or_else(|| pos_bias.clone()),
        };

        let pass = Pass {
            pos: &self.pos,
            ctx: &ctx,
            bias: bias.as_ref(),
            bias_by_offset,
            path,
            mode: self.mode,
        };
        let mut maps = Vec::new();
        for (layer, block) in self.blocks.iter().enumerate() {
            let (y, probs) = block.forward(x, layer, &pass);
            x = y;
            if keep {
                maps.extend(probs);
            }
        }
        let x = layer_norm(&self.norm, x); // [b, t, d]
        let logits = match &self.head {
            Some(head) => kernels::linear(head, x), // [b, t, v]
            None => {
                let d = x.dims()[2];
                let w = self.tok_emb.weight.val(); // [v, d]
                kernels::dense(x, w, true).div_scalar((d as f64).sqrt())
            }
        };
        (logits, maps)
    }

    /// Additive mask: `MASKED` where key `j` is padding or (if `causal`) after query `i`.
    /// `[1, 1, t, t]` when nothing is padded, else `[b, 1, t, t]`; `None` if nothing is masked.
    fn mask_bias(
        &self,
        lengths: &[usize],
        t: usize,
        causal: bool,
        device: &Device,
    ) -> Option<Tensor<4>> {
        let padded = lengths.iter().any(|&l| l < t);
        if !padded && !causal {
            return None;
        }
        let rows: Vec<usize> = if padded { lengths.to_vec() } else { vec![t] };
        let mut values = Vec::with_capacity(rows.len() * t * t);
        for &len in &rows {
            for i in 0..t {
                for j in 0..t {
                    let hidden = j >= len || (causal && j > i);
                    values.push(if hidden { MASKED } else { 0.0 });
                }
            }
        }
        Some(Tensor::from_data(
            TensorData::new(values, [rows.len(), 1, t, t]),
            device,
        ))
    }
}
