//! The attention core as one op: [`attention()`] picks the path (burn's composed ops, or the
//! kernel without or with autodiff), and `AttentionBackward` is its backward step. The loops
//! over (sequence, head) pairs that both call, and the maths, are in [`kernel`]; its items are
//! re-exported here.

use std::borrow::Cow;

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::{Shape, TensorData};

use crate::routing::{Route, Tracked, lift, new_tensor, plain, route, shape_of, values};

pub mod kernel;

pub use kernel::{
    BLOCKED_FROM, Bias, Dims, Grads, Operand, Relative, backward, forward, reduce_bias,
};

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

fn operand_view<'a>(x: &'a FlexTensor, strides: [usize; 4]) -> kernel::Operand<'a> {
    kernel::Operand {
        data: x.storage::<f32>(),
        offset: x.layout().start_offset(),
        strides,
    }
}

fn attention_dims(q: &FlexTensor) -> kernel::Dims {
    let s = shape_of(q);
    kernel::Dims {
        b: s[0],
        h: s[1],
        t: s[2],
        dh: s[3],
    }
}

/// Which dimensions of a `[b or 1, h or 1, t, t]` bias (`by_offset`: a `[h or 1, 2t - 1]` one,
/// see [`attention_by_offset`]) are not broadcast.
fn bias_layout(bias: &FlexTensor, dims: kernel::Dims, by_offset: bool) -> (bool, bool) {
    let s = shape_of(bias);
    let (t, b, h) = (dims.t, dims.b, dims.h);
    if by_offset {
        assert!(
            s.num_dims() == 2 && (s[0] == 1 || s[0] == h) && s[1] == 2 * t - 1,
            "attention: offsets must be [{h} or 1, {}], got {s:?}",
            2 * t - 1
        );
        return (false, s[0] != 1);
    }
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
    /// Whether `bias` is given by offsets ([`attention_by_offset`]).
    by_offset: bool,
    relative: Option<RelativeTables<&'a FlexTensor>>,
    causal: bool,
}

/// The tables' values as the kernel reads them.
fn relative_view<'s>(
    relative: &'s Option<RelativeTables<Cow<'_, [f32]>>>,
) -> Option<kernel::Relative<'s>> {
    relative.as_ref().map(|rel| kernel::Relative {
        clip: rel.clip,
        keys: rel.keys.as_deref(),
        values: rel.values.as_deref(),
    })
}

/// The output and, when `tracked`, the state of the backward step (otherwise its `probs` are
/// empty: inference keeps one `[t, t]` matrix per thread, or one `[128, t]` block beyond 256
/// tokens, not `[b, h, t, t]`).
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
    let bias = x.bias.map(|b| (b, bias_layout(b, dims, x.by_offset)));
    let bias_values = bias.as_ref().map(|(b, _)| values(b));
    let tables = x
        .relative
        .as_ref()
        .map(|rel| rel.as_ref().map(|t| values(t)));
    let kernel::Dims { b, h, t, dh } = dims;
    let mut probs = vec![0.0; if tracked { b * h * t * t } else { 0 }];
    let mut out = vec![0.0; b * t * h * dh];
    kernel::forward(
        dims,
        scale,
        operand_view(&q, qs),
        operand_view(&k, ks),
        operand_view(&v, vs),
        bias.as_ref()
            .zip(bias_values.as_deref())
            .map(|((_, (per_sequence, per_head)), data)| kernel::Bias {
                data,
                per_sequence: *per_sequence,
                per_head: *per_head,
                by_offset: x.by_offset,
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
        let kernel::Dims { b, h, t, dh } = dims;
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
        kernel::backward(
            dims,
            s.scale,
            operand_view(&q, qs),
            operand_view(&k, ks),
            operand_view(&v, vs),
            relative_view(&tables),
            &s.probs,
            &values(&g),
            kernel::Grads {
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
            let db = kernel::reduce_bias(dims, per_sequence, per_head, &ds);
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
/// On flex ([`accelerated`](crate::accelerated)) one fused op with its own backward
/// ([`kernel`]), which keeps no `[b, h, t, t]` tensor but the probabilities; elsewhere burn's
/// ops, except for the relative terms, which only the kernel computes (`ordo_encodings::shaw`
/// composes its own).
///
/// # Panics
/// If `relative` is given for a device that is not [`accelerated`](crate::accelerated).
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
                by_offset: false,
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
                        by_offset: false,
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

/// The `[1, hb, t, t]` matrix of a bias given by offsets (`[hb, 2t - 1]`, see
/// [`attention_by_offset`]): entry `(i, j)` is column `t - 1 + j - i`. A constant (no gradient
/// reaches `offsets` through it), on `offsets`' device.
pub fn expand_offsets(offsets: Tensor<2>, t: usize) -> Tensor<4> {
    let [hb, width] = offsets.dims();
    assert_eq!(
        width,
        2 * t - 1,
        "attention: offsets must be [h or 1, 2t - 1]"
    );
    let device = offsets.device();
    let v = offsets
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 offsets");
    let mut dense = Vec::with_capacity(hb * t * t);
    for row in v.chunks_exact(width) {
        for i in 0..t {
            dense.extend_from_slice(&row[t - 1 - i..][..t]);
        }
    }
    Tensor::from_data(TensorData::new(dense, [1, hb, t, t]), &device)
}

/// [`attention`] without relative terms, for inference with a bias that depends only on the
/// key's offset from the query: `offsets` `[h or 1, 2t - 1]`, the bias of query `i` and key `j`
/// at column `t - 1 + j - i` (ALiBi at positions `0..t`). On flex (no autodiff) beyond
/// [`BLOCKED_FROM`] positions the kernel reads each query's row of the bias from it, so no
/// `[h, t, t]` matrix exists; otherwise the matrix is built ([`expand_offsets`], the same
/// values) and [`attention`] runs. Either way the same numbers, to the bit.
pub fn attention_by_offset(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    offsets: Tensor<2>,
    scale: f32,
    causal: bool,
) -> Tensor<3> {
    let t = q.dims()[2];
    let plain_route = [&q, &k, &v]
        .into_iter()
        .map(route)
        .all(|r| r == Route::Plain)
        && route(&offsets) == Route::Plain;
    if !plain_route || t <= BLOCKED_FROM {
        let bias = expand_offsets(offsets, t);
        return attention(q, k, v, Some(bias), None, scale, causal);
    }
    let (q, k, v, offsets) = (plain(q), plain(k), plain(v), plain(offsets));
    let inputs = AttentionInputs {
        q: &q,
        k: &k,
        v: &v,
        bias: Some(&offsets),
        by_offset: true,
        relative: None,
        causal,
    };
    Tensor::from_primitive::<Flex>(attention_forward(inputs, scale, false).0)
}
