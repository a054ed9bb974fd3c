//! Device names as written in configs and on the command line.

use burn::prelude::*;

/// Names accepted by [`parse`].
pub const DEVICES: &str = "cpu, flex, ndarray, wgpu";

/// `cpu` and `flex`: burn's flex CPU backend (the default); `ndarray`: burn's older CPU
/// backend; `wgpu`: the GPU backend, when ordo is built with `--features wgpu`.
pub fn parse(name: &str) -> Result<Device, DeviceError> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[allow(deprecated)] // kept selectable on purpose: the comparison is part of the product
        "ndarray" => Ok(Device::ndarray()),
        "wgpu" => wgpu(),
        other => Err(DeviceError::Unknown(other.to_string())),
    }
}

/// A device name [`parse`] does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device {0:?}; expected one of {DEVICES}")]
    Unknown(String),
    #[error("this ordo was built without GPU support; rebuild with `--features wgpu`")]
    NoGpu,
}

/// Runs `f` on a worker thread of rayon's global pool, where burn's flex backend, its matrix
/// products and ordo's kernels split their work.
///
/// Called from any other thread (the main thread, say), every parallel tensor operation hands its
/// work to the pool and sleeps until it is done, then is woken: futex round trips that cost
/// ~15% of a tiny model's training step. From a worker thread the operation splits its work with
/// the other workers directly. Measured on 2 cores: +27% training tokens/s on the tiny shape,
/// +3-19% on small. Inside the pool already, `f` simply runs.
pub fn on_compute_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device, DeviceError> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device, DeviceError> {
    Err(DeviceError::NoGpu)
}
