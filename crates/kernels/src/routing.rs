//! Which path an op takes for a tensor ([`Route`]: the flex kernels with or without autodiff,
//! or burn's composed ops), [`with_composed_ops`] and [`accelerated`], and the helpers every op
//! shares: turning tensors into flex primitives and back, running a one-input op with its
//! backward step ([`flex_op`]), reading a primitive's values.

use std::borrow::Cow;
use std::cell::Cell;

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, DispatchDevice, Flex, GradientCheckpointingStrategy};
use burn::prelude::*;
use burn::tensor::{DType, Shape, TensorData};

pub(crate) type Tracked = Autodiff<Flex>;

thread_local! {
    static COMPOSED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with burn's composed ops instead of the fused kernels (on this thread): the
/// reference the kernels are tested against, and a way to measure what they gain.
pub fn with_composed_ops<R>(f: impl FnOnce() -> R) -> R {
    scoped(&COMPOSED, true, f)
}

/// Runs `f` with this thread's `flag` set to `value`, then restores what it was: the switches
/// the ops read ([`with_composed_ops`], [`with_precision`](crate::with_precision)).
pub(crate) fn scoped<T: Copy, R>(
    flag: &'static std::thread::LocalKey<Cell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    let before = flag.replace(value);
    let out = f();
    flag.set(before);
    out
}

/// How an op runs for a tensor on `device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Flex, no autodiff: the forward kernel alone.
    Plain,
    /// Flex under autodiff: forward kernel plus a registered backward kernel.
    Tracked,
    /// Anything else: burn's composed ops.
    Composed,
}

pub(crate) fn route<const D: usize>(x: &Tensor<D>) -> Route {
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
/// ([`relative_gather`](crate::relative_gather),
/// [`relative_scatter`](crate::relative_scatter)) may only be called when it is true.
pub fn accelerated(device: &Device) -> bool {
    !matches!(device_route(device), Route::Composed)
}

/// Converts a tensor that [`route`] sent to a flex path into its primitive.
pub(crate) fn plain<const D: usize>(x: Tensor<D>) -> FlexTensor {
    x.try_into_primitive::<Flex>()
        .expect("route() checked that the tensor lives on flex")
}

pub(crate) fn tracked<const D: usize>(x: Tensor<D>) -> burn::backend::tensor::FloatTensor<Tracked> {
    x.try_into_primitive::<Tracked>()
        .expect("route() checked that the tensor lives on autodiff(flex)")
}

/// A flex tensor under autodiff as it is, a plain flex tensor as an untracked constant.
pub(crate) fn lift<const D: usize>(x: Tensor<D>) -> burn::backend::tensor::FloatTensor<Tracked> {
    match route(&x) {
        Route::Tracked => tracked(x),
        _ => burn::backend::tensor::FloatTensor::<Tracked>::new(plain(x)),
    }
}

/// Runs a one-input op on flex, for a route other than `Composed`: `forward` gives the output and
/// the state the op's backward `step` needs (dropped when nothing is tracked).
pub(crate) fn flex_op<const D: usize, const E: usize, BO: Backward<Flex, 1>>(
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
pub(crate) fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
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

pub(crate) fn shape_of(t: &FlexTensor) -> Shape {
    use burn::backend::TensorMetadata;
    t.shape()
}

pub(crate) fn new_tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

pub(crate) fn last_dim(shape: &Shape) -> usize {
    shape[shape.num_dims() - 1]
}
