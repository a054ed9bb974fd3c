//! Device names as written in configs and on the command line.

use burn::prelude::*;

/// Names accepted by [`parse`].
pub const DEVICES: &str = "cpu, flex, ndarray, wgpu";

/// `cpu` and `flex`: burn's flex CPU backend (the default); `ndarray`: burn's older CPU
/// backend; `wgpu`: the GPU backend, when ordo is built with `--features wgpu`.
pub fn parse(name: &str) -> Result<Device, String> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[allow(deprecated)] // kept selectable on purpose: the comparison is part of the product
        "ndarray" => Ok(Device::ndarray()),
        "wgpu" => wgpu(),
        other => Err(format!(
            "unknown device {other:?}; expected one of {DEVICES}"
        )),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Device, String> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Device, String> {
    Err("this ordo was built without GPU support; rebuild with `--features wgpu`".into())
}
