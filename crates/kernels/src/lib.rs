//! Fused CPU kernels for what dominates a small transformer's step after the matrix products:
//! the attention core (scores, bias, Shaw's relative terms, softmax, product with the values:
//! [`attention()`], [`mod@attention`]), softmax, GELU, LayerNorm and the cross-entropy loss; and
//! Shaw's relative terms alone as a gather and a scatter-add (instead of contractions with a
//! one-hot `[t, t, 2k+1]` map).
//!
//! Under autodiff burn 0.22 builds softmax, LayerNorm and log-softmax out of 5-10 tensor ops,
//! each with its own pass over memory in the forward and again in the backward pass, and its
//! GELU calls libm's scalar `erff`. Here each is one forward op and one backward op (burn's
//! backend-extension route: the tensor's primitive, a `Backward` step registered by hand), with
//! vectorised `exp`/`erf` ([`cpu`]).
//!
//! Only the flex backend (f32, no gradient checkpointing) takes this path; every other device
//! (ndarray, wgpu) gets burn's composed ops, which compute the same functions. The tests
//! (`crates/model/tests/kernels.rs`) compare the two, forward and gradients, and
//! [`with_composed_ops`] lets any caller do the same (`ordo bench --composed-ops`).
//!
//! The crate sits below `encodings` (Shaw uses the relative ops) and `model`, which re-exports
//! it as `ordo_model::kernels`.

pub mod attention;
pub mod cpu;

use std::borrow::Cow;
use std::cell::Cell;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, DispatchDevice, Flex, GradientCheckpointingStrategy};
use burn::nn::LayerNorm;
use burn::prelude::*;
use burn::tensor::{DType, Shape, TensorData};

type Tracked = Autodiff<Flex>;

thread_local! {
    static COMPOSED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with burn's composed ops instead of the fused kernels (on this thread): the
/// reference the kernels are tested against, and a way to measure what they gain.
pub fn with_composed_ops<R>(f: impl FnOnce() -> R) -> R {
    let before = COMPOSED.replace(true);
    let out = f();
    COMPOSED.set(before);
    out
}

/// How an op runs for a tensor on `device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Flex, no autodiff: the forward kernel alone.
    Plain,
    /// Flex under autodiff: forward kernel plus a registered backward kernel.
    Tracked,
    /// Anything else: burn's composed ops.
    Composed,
}

fn route<const D: usize>(x: &Tensor<D>) -> Route {
    if x.dtype() != DType::F32 {
        return Route::Composed;
    }
    device_route(&x.device())
}

fn device_route(device: &Device) -> Route {
    if COMPOSED.get() {
        return Route::Composed;
    }
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => Route::Plain,
        DispatchDevice::Autodiff(ad)
            if ad.gradient_checkpointing_strategy() == GradientCheckpointingStrategy::Disabled
                && matches!(ad.clone().inner(), DispatchDevice::Flex(_)) =>
        {
            Route::Tracked
        }
        _ => Route::Composed,
    }
}

/// Whether f32 tensors on `device` go through the kernels (flex, no gradient checkpointing, and
/// not inside [`with_composed_ops`]). The ops that have no composed fallback of their own
/// ([`relative_gather`], [`relative_scatter`]) may only be called when it is true.
pub fn accelerated(device: &Device) -> bool {
    !matches!(device_route(device), Route::Composed)
}

/// Converts a tensor that [`route`] sent to a flex path into its primitive.
fn plain<const D: usize>(x: Tensor<D>) -> FlexTensor {
    x.try_into_primitive::<Flex>()
        .expect("route() checked that the tensor lives on flex")
}

fn tracked<const D: usize>(x: Tensor<D>) -> burn::backend::tensor::FloatTensor<Tracked> {
    x.try_into_primitive::<Tracked>()
        .expect("route() checked that the tensor lives on autodiff(flex)")
}

/// A flex tensor under autodiff as it is, a plain flex tensor as an untracked constant.
fn lift<const D: usize>(x: Tensor<D>) -> burn::backend::tensor::FloatTensor<Tracked> {
    match route(&x) {
        Route::Tracked => tracked(x),
        _ => burn::backend::tensor::FloatTensor::<Tracked>::new(plain(x)),
    }
}

/// Runs a one-input op on flex, for a route other than `Composed`: `forward` gives the output and
/// the state the op's backward `step` needs (dropped when nothing is tracked).
fn flex_op<const D: usize, const E: usize, BO: Backward<Flex, 1>>(
    x: Tensor<D>,
    route: Route,
    step: BO,
    forward: impl FnOnce(&FlexTensor) -> (FlexTensor, BO::State),
) -> Tensor<E> {
    match route {
        Route::Plain => Tensor::from_primitive::<Flex>(forward(&plain(x)).0),
        Route::Tracked => {
            let x = tracked(x);
            let out = match step
                .prepare::<NoCheckpointing>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (y, state) = forward(x.primitive());
                    prep.finish(state, y)
                }
                OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive()).0),
            };
            Tensor::from_primitive::<Tracked>(out)
        }
        Route::Composed => unreachable!("callers handle the composed route themselves"),
    }
}

/// The tensor's elements in row-major order (a copy only if its layout is strided).
fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .into_data()
                .try_into_vec::<f32>()
                .expect("an f32 tensor"),
        ),
    }
}

fn shape_of(t: &FlexTensor) -> Shape {
    use burn::backend::TensorMetadata;
    t.shape()
}

fn new_tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn last_dim(shape: &Shape) -> usize {
    shape[shape.num_dims() - 1]
}

// ---------------------------------------------------------------------------------------------
// softmax

fn softmax_forward(x: &FlexTensor) -> FlexTensor {
    let shape = shape_of(x);
    let xs = values(x);
    let mut y = vec![0.0; xs.len()];
    cpu::softmax_rows(&xs, &mut y, last_dim(&shape));
    new_tensor(y, shape)
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = FlexTensor; // the output

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let shape = shape_of(&y);
            let (ys, gs) = (values(&y), values(&g));
            let mut dx = vec![0.0; ys.len()];
            cpu::softmax_backward_rows(&ys, &gs, &mut dx, last_dim(&shape));
            new_tensor(dx, shape)
        });
    }
}

/// Softmax over the last dimension.
pub fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match route(&x) {
        Route::Composed => burn::tensor::activation::softmax(x, D - 1),
        route => flex_op(x, route, SoftmaxBackward, |x| {
            let y = softmax_forward(x);
            (y.clone(), y)
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// GELU

fn gelu_forward(x: &FlexTensor) -> FlexTensor {
    let xs = values(x);
    let mut y = vec![0.0; xs.len()];
    cpu::gelu(&xs, &mut y);
    new_tensor(y, shape_of(x))
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor; // the input

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let (xs, gs) = (values(&x), values(&g));
            let mut dx = vec![0.0; xs.len()];
            cpu::gelu_backward(&xs, &gs, &mut dx);
            new_tensor(dx, shape_of(&x))
        });
    }
}

/// The exact GELU, `x Φ(x)`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match route(&x) {
        Route::Composed => burn::tensor::activation::gelu(x),
        route => flex_op(x, route, GeluBackward, |x| (gelu_forward(x), x.clone())),
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

/// burn's `LayerNormConfig` default, which every norm in the model uses.
const LAYER_NORM_EPS: f32 = 1e-5;

fn layer_norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
) -> (FlexTensor, cpu::RowStats) {
    let (xs, gs, bs) = (values(x), values(gamma), values(beta));
    let mut y = vec![0.0; xs.len()];
    let stats = cpu::layer_norm(&xs, &gs, &bs, LAYER_NORM_EPS, &mut y);
    (new_tensor(y, shape_of(x)), stats)
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    /// The input, γ and the row statistics.
    type State = (FlexTensor, FlexTensor, cpu::RowStats);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gamma, stats) = ops.state;
        let g = grads.consume::<Flex>(&ops.node);
        let (xs, gs, gammas) = (values(&x), values(&g), values(&gamma));
        let mut dx = vec![0.0; xs.len()];
        let (dgamma, dbeta) = cpu::layer_norm_backward(&xs, &gs, &gammas, &stats, &mut dx);
        let [px, pgamma, pbeta] = ops.parents;
        let n = gammas.len();
        if let Some(node) = px {
            grads.register::<Flex>(node.id, new_tensor(dx, shape_of(&x)));
        }
        if let Some(node) = pgamma {
            grads.register::<Flex>(node.id, new_tensor(dgamma, Shape::new([n])));
        }
        if let Some(node) = pbeta {
            grads.register::<Flex>(node.id, new_tensor(dbeta, Shape::new([n])));
        }
    }
}

/// `norm.forward(x)` for a LayerNorm with a bias and the default epsilon (all of the model's).
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>) -> Tensor<D> {
    let Some(beta) = norm.beta.as_ref() else {
        return norm.forward(x);
    };
    let gamma = norm.gamma.val();
    let route = match (route(&x), route(&gamma)) {
        (a, b) if a == b => a,
        _ => Route::Composed, // parameters and input on different devices: let burn say so
    };
    match route {
        Route::Plain => {
            let (gamma, beta) = (plain(gamma), plain(beta.val()));
            Tensor::from_primitive::<Flex>(layer_norm_forward(&plain(x), &gamma, &beta).0)
        }
        Route::Tracked => {
            let (x, gamma, beta) = (tracked(x), tracked(gamma), tracked(beta.val()));
            let out = match LayerNormBackward
                .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (y, stats) =
                        layer_norm_forward(x.primitive(), gamma.primitive(), beta.primitive());
                    let state = (x.primitive().clone(), gamma.primitive().clone(), stats);
                    prep.finish(state, y)
                }
                OpsKind::UnTracked(prep) => prep.finish(
                    layer_norm_forward(x.primitive(), gamma.primitive(), beta.primitive()).0,
                ),
            };
            Tensor::from_primitive::<Tracked>(out)
        }
        Route::Composed => norm.forward(x),
    }
}

// ---------------------------------------------------------------------------------------------
// cross-entropy

/// Loss value and what its backward pass needs.
fn cross_entropy_forward(
    logits: &FlexTensor,
    targets: &[usize],
    weights: &[f32],
) -> (FlexTensor, Vec<f32>) {
    let shape = shape_of(logits);
    let v = last_dim(&shape);
    let xs = values(logits);
    let lse = cpu::log_sum_exp_rows(&xs, v);
    let total = weights.iter().sum::<f32>().max(1.0);
    let mut sum = 0.0f64;
    for (r, ((&l, &t), &w)) in lse.iter().zip(targets).zip(weights).enumerate() {
        if w != 0.0 {
            sum += (w * (l - xs[r * v + t])) as f64;
        }
    }
    (
        new_tensor(vec![(sum / total as f64) as f32], Shape::new([1])),
        lse,
    )
}

#[derive(Debug, Clone)]
struct CrossEntropyState {
    logits: FlexTensor,
    lse: Vec<f32>,
    targets: Vec<usize>,
    weights: Vec<f32>,
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl Backward<Flex, 1> for CrossEntropyBackward {
    type State = CrossEntropyState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let g = values(&g)[0];
            let total = s.weights.iter().sum::<f32>().max(1.0);
            let scale: Vec<f32> = s.weights.iter().map(|w| g * w / total).collect();
            let xs = values(&s.logits);
            let mut dx = vec![0.0; xs.len()];
            cpu::cross_entropy_backward(&xs, &s.lse, &s.targets, &scale, &mut dx);
            new_tensor(dx, shape_of(&s.logits))
        });
    }
}

/// Whether [`cross_entropy`] runs on the kernels for these logits (otherwise the caller composes
/// burn's ops).
pub fn fused_cross_entropy(logits: &Tensor<3>) -> bool {
    !matches!(route(logits), Route::Composed)
}

/// Mean negative log-likelihood of `targets` where `weights` is non-zero (weighted by it):
/// `Σ w (logsumexp(z) - z[target]) / max(Σ w, 1)`. Only for logits that
/// [`fused_cross_entropy`] accepts.
pub fn cross_entropy(
    logits: Tensor<3>,
    targets: &Tensor<2, Int>,
    weights: &Tensor<2>,
) -> Tensor<1> {
    let route = route(&logits);
    let targets: Vec<usize> = targets
        .to_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("int targets")
        .into_iter()
        .map(|t| t as usize)
        .collect();
    let weights: Vec<f32> = weights
        .to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float weights");
    let [b, t, v] = logits.dims();
    assert!(
        targets.len() == b * t && weights.len() == b * t,
        "cross_entropy: logits [{b}, {t}, {v}] need targets and weights [{b}, {t}]"
    );
    assert!(
        targets.iter().all(|&id| id < v),
        "cross_entropy: a target is outside the vocabulary ({v})"
    );
    flex_op(logits, route, CrossEntropyBackward, |x| {
        let (loss, lse) = cross_entropy_forward(x, &targets, &weights);
        let state = CrossEntropyState {
            logits: x.clone(),
            lse,
            targets,
            weights,
        };
        (loss, state)
    })
}

// ---------------------------------------------------------------------------------------------
// Shaw's relative terms: a gather by clipped offset and its adjoint, a scatter-add

/// Which of the two ops; the backward step of each is the other.
#[derive(Debug, Clone, Copy)]
enum Relative {
    Gather,
    Scatter,
}

fn relative_forward(x: &FlexTensor, op: Relative, k: usize) -> FlexTensor {
    let shape = shape_of(x);
    let [n, t] = [shape[0], shape[1]];
    let r = 2 * k + 1;
    let xs = values(x);
    match op {
        Relative::Gather => {
            assert_eq!(
                shape[2], r,
                "relative_gather: last dimension must be 2k + 1"
            );
            let mut out = vec![0.0; n * t * t];
            cpu::relative_gather(&xs, t, k, &mut out);
            new_tensor(out, Shape::new([n, t, t]))
        }
        Relative::Scatter => {
            assert_eq!(shape[2], t, "relative_scatter: expects [n, t, t]");
            let mut out = vec![0.0; n * t * r];
            cpu::relative_scatter(&xs, t, k, &mut out);
            new_tensor(out, Shape::new([n, t, r]))
        }
    }
}

#[derive(Debug)]
struct RelativeBackward(Relative);

impl Backward<Flex, 1> for RelativeBackward {
    type State = usize; // k

    fn backward(self, ops: Ops<usize, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let adjoint = match self.0 {
            Relative::Gather => Relative::Scatter,
            Relative::Scatter => Relative::Gather,
        };
        let k = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            relative_forward(&g, adjoint, k)
        });
    }
}

fn relative(x: Tensor<3>, op: Relative, k: usize) -> Tensor<3> {
    match route(&x) {
        Route::Composed => panic!("relative ops need an accelerated device (see `accelerated`)"),
        route => flex_op(x, route, RelativeBackward(op), |x| {
            (relative_forward(x, op, k), k)
        }),
    }
}

/// `out[n, i, j] = x[n, i, clip(j - i, -k, k) + k]`: `[n, t, 2k+1]` -> `[n, t, t]` (Shaw's key
/// term, with `x = q wᵀ`). Only where [`accelerated`].
pub fn relative_gather(x: Tensor<3>, k: usize) -> Tensor<3> {
    relative(x, Relative::Gather, k)
}

/// `out[n, i, l] = Σ_{j: clip(j - i, -k, k) + k = l} p[n, i, j]`: `[n, t, t]` -> `[n, t, 2k+1]`
/// (Shaw's value term, with `p` the attention probabilities). Only where [`accelerated`].
pub fn relative_scatter(p: Tensor<3>, k: usize) -> Tensor<3> {
    relative(p, Relative::Scatter, k)
}

// ---------------------------------------------------------------------------------------------
// attention core

/// A `[b, h, t, dh]` flex tensor as a kernel operand (a copy only for negative strides, which
/// the model never makes).
fn operand(x: &FlexTensor) -> (Cow<'_, FlexTensor>, [usize; 4]) {
    let x = if x.layout().has_positive_strides() {
        Cow::Borrowed(x)
    } else {
        Cow::Owned(x.to_contiguous())
    };
    let s = x.layout().strides();
    let strides = [0, 1, 2, 3].map(|i| s[i] as usize);
    (x, strides)
}

fn operand_view<'a>(x: &'a FlexTensor, strides: [usize; 4]) -> attention::Operand<'a> {
    attention::Operand {
        data: x.storage::<f32>(),
        offset: x.layout().start_offset(),
        strides,
    }
}

fn attention_dims(q: &FlexTensor) -> attention::Dims {
    let s = shape_of(q);
    attention::Dims {
        b: s[0],
        h: s[1],
        t: s[2],
        dh: s[3],
    }
}

/// Which dimensions of a `[b or 1, h or 1, t, t]` bias are not broadcast.
fn bias_layout(bias: &FlexTensor, dims: attention::Dims) -> (bool, bool) {
    let s = shape_of(bias);
    let (t, b, h) = (dims.t, dims.b, dims.h);
    assert!(
        s.num_dims() == 4
            && (s[0] == 1 || s[0] == b)
            && (s[1] == 1 || s[1] == h)
            && s[2] == t
            && s[3] == t,
        "attention: bias must be [{b} or 1, {h} or 1, {t}, {t}], got {s:?}"
    );
    (s[0] != 1, s[1] != 1)
}

/// Shaw's relative terms for [`attention`] (see `ordo_encodings::shaw`): the clip distance `k`
/// and the layer's `[2k+1, dh]` key and value tables (tensors; inside this crate also their flex
/// primitives and their values).
#[derive(Debug, Clone)]
pub struct RelativeTables<T = Tensor<2>> {
    pub clip: usize,
    pub keys: Option<T>,
    pub values: Option<T>,
}

impl<T> RelativeTables<T> {
    fn map<U>(self, mut f: impl FnMut(T) -> U) -> RelativeTables<U> {
        RelativeTables {
            clip: self.clip,
            keys: self.keys.map(&mut f),
            values: self.values.map(f),
        }
    }

    fn as_ref(&self) -> RelativeTables<&T> {
        RelativeTables {
            clip: self.clip,
            keys: self.keys.as_ref(),
            values: self.values.as_ref(),
        }
    }
}

#[derive(Debug, Clone)]
struct AttentionState {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    probs: Vec<f32>,
    scale: f32,
    /// Shape and broadcast flags of the bias.
    bias: Option<(Shape, bool, bool)>,
    relative: Option<RelativeTables<FlexTensor>>,
}

/// The flex inputs of [`attention`], `bias` and the tables optional.
struct AttentionInputs<'a> {
    q: &'a FlexTensor,
    k: &'a FlexTensor,
    v: &'a FlexTensor,
    bias: Option<&'a FlexTensor>,
    relative: Option<RelativeTables<&'a FlexTensor>>,
    causal: bool,
}

/// The tables' values as the kernel reads them.
fn relative_view<'s>(
    relative: &'s Option<RelativeTables<Cow<'_, [f32]>>>,
) -> Option<attention::Relative<'s>> {
    relative.as_ref().map(|rel| attention::Relative {
        clip: rel.clip,
        keys: rel.keys.as_deref(),
        values: rel.values.as_deref(),
    })
}

/// The output and, when `tracked`, the state of the backward step (otherwise its `probs` are
/// empty: inference keeps one `[t, t]` matrix per thread, not `[b, h, t, t]`).
fn attention_forward(
    x: AttentionInputs,
    scale: f32,
    tracked: bool,
) -> (FlexTensor, AttentionState) {
    let dims = attention_dims(x.q);
    for (t, name) in [(x.k, "k"), (x.v, "v")] {
        assert_eq!(
            attention_dims(t),
            dims,
            "attention: `{name}` must have q's shape"
        );
    }
    let ((q, qs), (k, ks), (v, vs)) = (operand(x.q), operand(x.k), operand(x.v));
    let bias = x.bias.map(|b| (b, bias_layout(b, dims)));
    let bias_values = bias.as_ref().map(|(b, _)| values(b));
    let tables = x
        .relative
        .as_ref()
        .map(|rel| rel.as_ref().map(|t| values(t)));
    let attention::Dims { b, h, t, dh } = dims;
    let mut probs = vec![0.0; if tracked { b * h * t * t } else { 0 }];
    let mut out = vec![0.0; b * t * h * dh];
    attention::forward(
        dims,
        scale,
        operand_view(&q, qs),
        operand_view(&k, ks),
        operand_view(&v, vs),
        bias.as_ref()
            .zip(bias_values.as_deref())
            .map(|((_, (per_sequence, per_head)), data)| attention::Bias {
                data,
                per_sequence: *per_sequence,
                per_head: *per_head,
            }),
        relative_view(&tables),
        x.causal,
        tracked.then_some(&mut probs[..]),
        &mut out,
    );
    let state = AttentionState {
        q: q.into_owned(),
        k: k.into_owned(),
        v: v.into_owned(),
        probs,
        scale,
        bias: bias.map(|(b, (s, h))| (shape_of(b), s, h)),
        relative: x.relative.map(|rel| rel.map(FlexTensor::clone)),
    };
    (new_tensor(out, Shape::new([b, t, h * dh])), state)
}

/// Backward step of [`attention`]; parents `[q, k, v, bias, keys, values]` (the absent ones
/// stand in as untracked placeholders).
#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 6> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 6>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        let g = grads.consume::<Flex>(&ops.node);
        let dims = attention_dims(&s.q);
        let attention::Dims { b, h, t, dh } = dims;
        let size = b * t * h * dh;
        let (mut dq, mut dk, mut dv) = (vec![0.0; size], vec![0.0; size], vec![0.0; size]);
        let [pq, pk, pv, pbias, pkeys, pvalues] = ops.parents;
        let mut dscores = pbias.as_ref().map(|_| vec![0.0; b * h * t * t]);
        let tables = s.relative.as_ref().map(|rel| rel.as_ref().map(values));
        let (keys, vals) = match &s.relative {
            Some(rel) => (rel.keys.as_ref(), rel.values.as_ref()),
            None => (None, None),
        };
        let zeros_like = |wanted: bool, table: Option<&FlexTensor>| {
            table
                .filter(|_| wanted)
                .map(|t| vec![0.0; shape_of(t).num_elements()])
        };
        let mut dkeys = zeros_like(pkeys.is_some(), keys);
        let mut dvalues = zeros_like(pvalues.is_some(), vals);
        let ((q, qs), (k, ks), (v, vs)) = (operand(&s.q), operand(&s.k), operand(&s.v));
        attention::backward(
            dims,
            s.scale,
            operand_view(&q, qs),
            operand_view(&k, ks),
            operand_view(&v, vs),
            relative_view(&tables),
            &s.probs,
            &values(&g),
            attention::Grads {
                q: &mut dq,
                k: &mut dk,
                v: &mut dv,
                scores: dscores.as_deref_mut(),
                keys: dkeys.as_deref_mut(),
                values: dvalues.as_deref_mut(),
            },
        );
        // Written in [b, t, h, dh] order: the [b, h, t, dh] gradient is a permuted view.
        let heads_view =
            |x: Vec<f32>| new_tensor(x, Shape::new([b, t, h, dh])).permute(&[0, 2, 1, 3]);
        for (parent, grad) in [pq, pk, pv].into_iter().zip([dq, dk, dv]) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, heads_view(grad));
            }
        }
        if let (Some(node), Some(ds), Some((shape, per_sequence, per_head))) =
            (pbias, dscores, s.bias)
        {
            let db = attention::reduce_bias(dims, per_sequence, per_head, &ds);
            grads.register::<Flex>(node.id, new_tensor(db, shape));
        }
        for (parent, grad, table) in [(pkeys, dkeys, keys), (pvalues, dvalues, vals)] {
            if let (Some(node), Some(grad), Some(table)) = (parent, grad, table) {
                grads.register::<Flex>(node.id, new_tensor(grad, shape_of(table)));
            }
        }
    }
}

/// `softmax(scale · q kᵀ + bias + key term) v + value term` with the heads merged: `q`, `k`,
/// `v` `[b, h, t, dh]`, `bias` `[b or 1, h or 1, t, t]` (position bias and masks), `relative`
/// Shaw's terms, `causal` hiding each query's future keys (without a mask tensor); output
/// `[b, t, h·dh]`.
///
/// On flex ([`accelerated`]) one fused op with its own backward ([`mod@attention`]), which
/// keeps no `[b, h, t, t]` tensor but the probabilities; elsewhere burn's ops, except for the
/// relative terms, which only the kernel computes (`ordo_encodings::shaw` composes its own).
///
/// # Panics
/// If `relative` is given for a device that is not [`accelerated`].
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: Option<Tensor<4>>,
    relative: Option<RelativeTables>,
    scale: f32,
    causal: bool,
) -> Tensor<3> {
    let [b, h, t, dh] = q.dims();
    // Tracked if anything is (the rest join as constants), plain if everything is.
    let tables = relative
        .iter()
        .flat_map(|rel| rel.keys.iter().chain(&rel.values));
    let routes: Vec<Route> = [&q, &k, &v]
        .into_iter()
        .chain(&bias)
        .map(route)
        .chain(tables.map(route))
        .collect();
    let joint = if routes.contains(&Route::Composed) {
        Route::Composed
    } else if routes.contains(&Route::Tracked) {
        Route::Tracked
    } else {
        Route::Plain
    };
    match joint {
        Route::Composed => {
            assert!(
                relative.is_none(),
                "attention: relative terms need an accelerated device (see `accelerated`)"
            );
            let device = q.device();
            let mut scores = q.mul_scalar(scale).matmul(k.swap_dims(2, 3)); // [b, h, t, t]
            if let Some(bias) = bias {
                scores = scores + bias;
            }
            if causal {
                let future: Vec<f32> = (0..t * t)
                    .map(|ij| {
                        if ij % t > ij / t {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                    .collect();
                scores = scores + Tensor::from_data(TensorData::new(future, [1, 1, t, t]), &device);
            }
            let probs = burn::tensor::activation::softmax(scores, 3);
            probs.matmul(v).swap_dims(1, 2).reshape([b, t, h * dh])
        }
        Route::Plain => {
            let bias = bias.map(plain);
            let (q, k, v) = (plain(q), plain(k), plain(v));
            let tables = relative.map(|rel| rel.map(plain));
            let inputs = AttentionInputs {
                q: &q,
                k: &k,
                v: &v,
                bias: bias.as_ref(),
                relative: tables.as_ref().map(RelativeTables::as_ref),
                causal,
            };
            Tensor::from_primitive::<Flex>(attention_forward(inputs, scale, false).0)
        }
        Route::Tracked => {
            let device = q.device();
            let placeholder = || lift(Tensor::<1>::zeros([1], &device));
            let optional = |x: Option<Tensor<2>>| x.map(lift);
            let (keys, values, clip) = match relative {
                Some(rel) => (optional(rel.keys), optional(rel.values), Some(rel.clip)),
                None => (None, None, None),
            };
            let (has_bias, has_keys, has_values) =
                (bias.is_some(), keys.is_some(), values.is_some());
            let inputs = [
                lift(q),
                lift(k),
                lift(v),
                bias.map(lift).unwrap_or_else(placeholder),
                keys.unwrap_or_else(placeholder),
                values.unwrap_or_else(placeholder),
            ];
            let forward = |tracked| {
                let [q, k, v, bias, keys, values] = inputs.each_ref().map(|x| x.primitive());
                attention_forward(
                    AttentionInputs {
                        q,
                        k,
                        v,
                        bias: has_bias.then_some(bias),
                        relative: clip.map(|clip| RelativeTables {
                            clip,
                            keys: has_keys.then_some(keys),
                            values: has_values.then_some(values),
                        }),
                        causal,
                    },
                    scale,
                    tracked,
                )
            };
            let guards = inputs.each_ref().map(|x| x.node());
            let out = match AttentionBackward
                .prepare::<NoCheckpointing>(guards)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let (out, state) = forward(true);
                    prep.finish(state, out)
                }
                OpsKind::UnTracked(prep) => prep.finish(forward(false).0),
            };
            Tensor::from_primitive::<Tracked>(out)
        }
    }
}
