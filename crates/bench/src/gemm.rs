//! `ordo bench --gemm`: how fast this machine multiplies matrices the way ordo asks it to, so
//! that a training step's speed can be read against the machine's limit.
//!
//! Two figures, both through the product ordo's model runs (`kernels::matmul`: on `cpu` the `gemm`
//! crate's, with burn-flex's calls but without its zero-filled and copied output; burn's `matmul`
//! on other devices), with the operands laid out as the step lays them out:
//! - the **square limit**: `2048 x 2048 x 2048` in f32, contiguous operands (the size at which a
//!   BLAS reaches its peak; `bench/pytorch_bench.py --gemm` measures the same in PyTorch);
//! - each shape's **dense products**: every matrix product of one training step outside the
//!   attention core (the q, k, v and output projections, the MLP's two layers and the output
//!   head), forward and backward (`dx = dy wᵀ`, `dw = xᵀ dy`, transposed operands read through
//!   their strides), each timed on its own, summed with its count per step. Their time is what
//!   the step would spend in matrix products at the measured rates, and their GFLOP/s against
//!   the square limit says how much the shapes, not the kernels, lose.
//!
//! Each product: one untimed run, then runs until 0.25 s have passed (at least 3); the figure is
//! the median.

use crate::Shape;
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One matrix product `[m, k] x [k, n]` of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// What it computes, e.g. `mlp up xᵀ dy` (the up projection's weight gradient).
    pub name: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Whether the left operand is read transposed (`xᵀ` of a weight gradient).
    pub lhs_transposed: bool,
    /// Whether the right operand is read transposed (`wᵀ` of an input gradient).
    pub rhs_transposed: bool,
    /// How many times one step runs it.
    pub count: usize,
    /// Median seconds of one product (filled in when measured).
    pub seconds: f64,
    /// Median seconds of the same product in bf16 with fp32 sums (`train.precision = "bf16"`,
    /// [`ordo_model::kernels::bf16::matmul`], its operand packing included), where the CPU
    /// runs it.
    #[serde(default)]
    pub bf16_seconds: Option<f64>,
}

impl Product {
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }

    pub fn gflops(&self) -> f64 {
        self.flops() / self.seconds / 1e9
    }

    pub fn bf16_gflops(&self) -> Option<f64> {
        self.bf16_seconds.map(|t| self.flops() / t / 1e9)
    }
}

/// A shape's dense products, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShapeProducts {
    pub shape: String,
    pub products: Vec<Product>,
}

impl ShapeProducts {
    /// Floating-point operations of the dense products of one step.
    pub fn flops(&self) -> f64 {
        self.products
            .iter()
            .map(|p| p.flops() * p.count as f64)
            .sum()
    }

    /// Seconds one step spends in them at the measured rates.
    pub fn seconds(&self) -> f64 {
        self.products
            .iter()
            .map(|p| p.seconds * p.count as f64)
            .sum()
    }

    pub fn gflops(&self) -> f64 {
        self.flops() / self.seconds() / 1e9
    }

    /// Seconds one step would spend in them in bf16, where every one was measured in bf16.
    pub fn bf16_seconds(&self) -> Option<f64> {
        self.products
            .iter()
            .map(|p| p.bf16_seconds.map(|t| t * p.count as f64))
            .sum()
    }
}

/// What `--gemm` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GemmReport {
    /// `2048³`, contiguous.
    pub square: Product,
    pub shapes: Vec<ShapeProducts>,
    /// The kernel of the bf16 figures ([`ordo_model::kernels::bf16::Unit::describe`]:
    /// `"oneDNN 2.6.3 (avx512_core_amx)"`, `"AVX512-BF16 (ordo's kernel)"`), where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bf16_kernel: Option<String>,
}

/// The product `[m, k] x [k, n]` named `name`, with its operands' layout and count.
fn product(name: &str, (m, k, n): (usize, usize, usize), t: (bool, bool), count: usize) -> Product {
    Product {
        name: name.to_string(),
        m,
        k,
        n,
        lhs_transposed: t.0,
        rhs_transposed: t.1,
        count,
        seconds: f64::NAN,
        bf16_seconds: None,
    }
}

/// The dense products of one training step of `shape` (a linear layer `y = x w`, `x`
/// `[rows, i]`, `w` `[i, o]`, runs `x w`, then backward `dy wᵀ` and `xᵀ dy`).
pub fn step_products(shape: &Shape) -> Vec<Product> {
    let rows = shape.batch * shape.seq_len;
    let d = shape.d_model;
    let layers = shape.n_layers;
    let mut out = Vec::new();
    for (name, i, o, count) in [
        ("q k v out", d, d, 4 * layers),
        ("mlp up", d, 4 * d, layers),
        ("mlp down", 4 * d, d, layers),
        ("head", d, shape.vocab, 1),
    ] {
        out.push(product(
            &format!("{name} x w"),
            (rows, i, o),
            (false, false),
            count,
        ));
        out.push(product(
            &format!("{name} dy wᵀ"),
            (rows, o, i),
            (false, true),
            count,
        ));
        out.push(product(
            &format!("{name} xᵀ dy"),
            (i, rows, o),
            (true, false),
            count,
        ));
    }
    out
}

/// The median of `run`'s seconds: one untimed run, then runs until 0.25 s have passed (at
/// least 3).
fn median(mut run: impl FnMut() -> f64) -> f64 {
    run();
    let mut times = Vec::new();
    let budget = Instant::now();
    while times.len() < 3 || budget.elapsed().as_secs_f64() < 0.25 {
        times.push(run());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Median seconds of `p` in bf16 on this CPU, or `None` where it has no bf16 unit.
fn time_bf16(p: &Product) -> Option<f64> {
    use ordo_model::kernels::bf16::{self, View};
    bf16::unit().ok()?;
    let lhs = vec![1.0f32; p.m * p.k];
    let rhs = vec![1.0f32; p.k * p.n];
    // A transposed operand is stored as its transpose and read through strides, as the
    // backward pass reads it.
    fn view(data: &[f32], rows: usize, cols: usize, transposed: bool) -> View<'_> {
        if transposed {
            View::transposed(data, rows)
        } else {
            View::rows(data, cols)
        }
    }
    let mut out = vec![0.0f32; p.m * p.n];
    Some(median(|| {
        let start = Instant::now();
        bf16::matmul(
            view(&lhs, p.m, p.k, p.lhs_transposed),
            view(&rhs, p.k, p.n, p.rhs_transposed),
            &mut out,
            p.m,
            p.n,
            p.k,
        );
        start.elapsed().as_secs_f64()
    }))
}

/// Median seconds of `p` on `device`.
fn time(p: &Product, device: &Device) -> f64 {
    let operand = |rows: usize, cols: usize, transposed: bool| -> Tensor<2> {
        if transposed {
            Tensor::<2>::ones([cols, rows], device).transpose()
        } else {
            Tensor::<2>::ones([rows, cols], device)
        }
    };
    let lhs = operand(p.m, p.k, p.lhs_transposed);
    let rhs = operand(p.k, p.n, p.rhs_transposed);
    median(|| {
        let start = Instant::now();
        // The product ordo runs (`kernels::matmul`: gemm without burn-flex's zero fill and copy
        // on flex, burn's own op elsewhere).
        let out = ordo_model::kernels::matmul(lhs.clone(), rhs.clone());
        // Reading one element waits for a device that computes asynchronously (wgpu).
        let _ = out.slice([0..1, 0..1]).into_data();
        start.elapsed().as_secs_f64()
    })
}

/// Measures the square limit and the dense products of `shapes` on `device`, on the compute
/// pool as the benchmark's steps run. `progress` hears each product as it is measured.
pub fn measure(
    shapes: &[Shape],
    device: &Device,
    mut progress: impl FnMut(&Product) + Send,
) -> GemmReport {
    ordo_train::device::on_compute_pool(|| {
        let mut square = product("square", (2048, 2048, 2048), (false, false), 1);
        square.seconds = time(&square, device);
        square.bf16_seconds = time_bf16(&square);
        progress(&square);
        let shapes = shapes
            .iter()
            .map(|s| {
                let mut products = step_products(s);
                for p in &mut products {
                    p.seconds = time(p, device);
                    p.bf16_seconds = time_bf16(p);
                    progress(p);
                }
                ShapeProducts {
                    shape: s.name.to_string(),
                    products,
                }
            })
            .collect();
        GemmReport {
            square,
            shapes,
            bf16_kernel: ordo_model::kernels::bf16::kernel(),
        }
    })
}

impl GemmReport {
    /// A human-readable table; `step_seconds(shape)` is the measured training step, if any.
    pub fn table(&self, step_seconds: impl Fn(&str) -> Option<f64>) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let bf16 = |p: &Product| {
            p.bf16_gflops()
                .map(|g| format!("{g:.0}"))
                .unwrap_or_else(|| "-".into())
        };
        writeln!(
            out,
            "matrix products: square 2048³ f32 {:.0} GFLOP/s, bf16 {} GFLOP/s{}",
            self.square.gflops(),
            bf16(&self.square),
            self.bf16_kernel
                .as_deref()
                .map(|k| format!(" (bf16: {k})"))
                .unwrap_or_default()
        )
        .ok();
        writeln!(
            out,
            "{:<7} {:<20} {:>16} {:>6} {:>8} {:>9} {:>8}",
            "shape", "product", "m×k×n", "count", "GFLOP/s", "% square", "bf16"
        )
        .ok();
        for s in &self.shapes {
            for p in &s.products {
                writeln!(
                    out,
                    "{:<7} {:<20} {:>16} {:>6} {:>8.0} {:>8.0}% {:>8}",
                    s.shape,
                    p.name,
                    format!("{}×{}×{}", p.m, p.k, p.n),
                    p.count,
                    p.gflops(),
                    100.0 * p.gflops() / self.square.gflops(),
                    bf16(p)
                )
                .ok();
            }
            let step = step_seconds(&s.shape)
                .map(|t| {
                    format!(
                        "; {:.0} % of the measured step ({:.1} ms)",
                        100.0 * s.seconds() / t,
                        t * 1e3
                    )
                })
                .unwrap_or_default();
            let in_bf16 = s
                .bf16_seconds()
                .map(|t| format!("; in bf16 {:.1} ms", t * 1e3))
                .unwrap_or_default();
            writeln!(
                out,
                "{:<7} all dense products: {:.2} GFLOP in {:.1} ms, {:.0} GFLOP/s ({:.0} % of square){step}{in_bf16}",
                s.shape,
                s.flops() / 1e9,
                s.seconds() * 1e3,
                s.gflops(),
                100.0 * s.gflops() / self.square.gflops()
            )
            .ok();
        }
        out
    }
}
