//! bf16 matrix products through oneDNN (Intel's deep-learning primitives library), loaded at
//! run time where it is installed: the route to Intel's AMX tiles.
//!
//! oneDNN's matmul primitive picks its kernel from the CPU it finds: AMX tiles (`tdpbf16ps`)
//! on Sapphire Rapids and newer, `vdpbf16ps` on AVX512-BF16 chips. ordo does not link it: the
//! library (`libdnnl.so.2`, Debian 12's and Ubuntu 22.04's `libdnnl2` package, oneDNN 2.x) is
//! opened with `dlopen` the first time a bf16 product asks for it, so the binary builds and
//! runs on machines without it, and nothing of oneDNN is in this repository. Only the 2.x C
//! API is spoken (`dnnl_matmul_desc_init`; 3.x replaced it): another major version is refused
//! with a message that says so.
//!
//! A product here converts both operands to bf16 (round to nearest even, [`crate::bf16::to_bf16`],
//! the rounding of ordo's own kernel) into contiguous buffers, keeping a row-major or
//! transposed layout as it is, and runs one matmul primitive with bf16 inputs and an fp32
//! output: bf16 × bf16 products summed in fp32, the same arithmetic as [`crate::bf16`]'s
//! kernel up to the order of the fp32 sums. Primitives are created once per shape and layout
//! and kept (the 256 most recently used).
//!
//! Which kernel runs `train.precision = "bf16"` is chosen in [`crate::bf16::unit`]
//! (`ORDO_BF16_KERNEL`).

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::bf16::{View, to_bf16};

/// The shared object opened, by its soname (found on the loader's usual paths and
/// `LD_LIBRARY_PATH`).
pub const LIBRARY: &str = "libdnnl.so.2";

type Handle = *mut c_void;
type Status = c_int;
const SUCCESS: Status = 0;

// From oneDNN 2.x's `dnnl_types.h` (checked against 2.6.3's header by `the_constants_are_the_headers`
// where it is installed).
const ENGINE_CPU: c_int = 1;
const STREAM_IN_ORDER: c_uint = 1;
const DATA_BF16: c_int = 2;
const DATA_F32: c_int = 3;
const ARG_SRC: c_int = 1;
const ARG_DST: c_int = 17;
const ARG_WEIGHTS: c_int = 33;
const QUERY_IMPL_INFO_STR: c_int = 8;
const QUERY_SCRATCHPAD_MD: c_int = 136;
const ARG_SCRATCHPAD: c_int = 80;
const SCRATCHPAD_MODE_USER: c_int = 1;
/// `dnnl_cpu_isa_avx512_core_bf16` and `dnnl_cpu_isa_avx512_core_amx`: each ISA's flag set
/// contains the ones below it.
const ISA_AVX512_BF16: c_int = 0xe7;
const ISA_AMX: c_int = 0x3e7;
/// `DNNL_MAX_NDIMS`: the length of a `dnnl_dims_t`.
const MAX_NDIMS: usize = 12;

#[repr(C)]
struct Version {
    major: c_int,
    minor: c_int,
    patch: c_int,
    hash: *const c_char,
    cpu_runtime: c_uint,
    gpu_runtime: c_uint,
}

#[repr(C)]
struct ExecArg {
    arg: c_int,
    memory: Handle,
}

/// `dnnl_memory_desc_t`, a plain struct in 2.x (696 bytes in 2.6.3), filled by the library:
/// held here as room to spare, never read by ordo.
#[repr(C, align(64))]
struct MemoryDesc([u8; 4096]);

/// `dnnl_matmul_desc_t` (2,800 bytes in 2.6.3), likewise.
#[repr(C, align(64))]
struct MatmulDesc([u8; 16384]);

/// The C functions used, resolved once.
struct Api {
    set_max_cpu_isa: unsafe extern "C" fn(c_int) -> Status,
    get_effective_cpu_isa: unsafe extern "C" fn() -> c_int,
    engine_create: unsafe extern "C" fn(*mut Handle, c_int, usize) -> Status,
    stream_create: unsafe extern "C" fn(*mut Handle, Handle, c_uint) -> Status,
    stream_wait: unsafe extern "C" fn(Handle) -> Status,
    memory_desc_init_by_strides:
        unsafe extern "C" fn(*mut MemoryDesc, c_int, *const i64, c_int, *const i64) -> Status,
    matmul_desc_init: unsafe extern "C" fn(
        *mut MatmulDesc,
        *const MemoryDesc,
        *const MemoryDesc,
        *const MemoryDesc,
        *const MemoryDesc,
    ) -> Status,
    primitive_desc_create:
        unsafe extern "C" fn(*mut Handle, *const c_void, Handle, Handle, Handle) -> Status,
    primitive_desc_query: unsafe extern "C" fn(Handle, c_int, c_int, *mut c_void) -> Status,
    primitive_desc_query_md: unsafe extern "C" fn(Handle, c_int, c_int) -> *const MemoryDesc,
    memory_desc_get_size: unsafe extern "C" fn(*const MemoryDesc) -> usize,
    primitive_attr_create: unsafe extern "C" fn(*mut Handle) -> Status,
    primitive_attr_destroy: unsafe extern "C" fn(Handle) -> Status,
    primitive_attr_set_scratchpad_mode: unsafe extern "C" fn(Handle, c_int) -> Status,
    primitive_desc_destroy: unsafe extern "C" fn(Handle) -> Status,
    primitive_create: unsafe extern "C" fn(*mut Handle, Handle) -> Status,
    primitive_destroy: unsafe extern "C" fn(Handle) -> Status,
    primitive_execute: unsafe extern "C" fn(Handle, Handle, c_int, *const ExecArg) -> Status,
    memory_create: unsafe extern "C" fn(*mut Handle, *const MemoryDesc, Handle, Handle) -> Status,
    memory_destroy: unsafe extern "C" fn(Handle) -> Status,
}

/// How an operand is laid out after conversion: `[rows, cols]` row-major, or its transpose
/// stored row-major (`[cols, rows]`, column-major as seen from the product).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Layout {
    Rows,
    Columns,
}

/// A product's `(m, n, k)` and its operands' layouts.
type Key = (usize, usize, usize, Layout, Layout);

/// A primitive for one shape and layout, with the memory descriptors its arguments use;
/// destroyed when the last user drops it (evicted from the cache and not running).
///
/// Its scratchpad is the caller's (`dnnl_scratchpad_mode_user`), a buffer per execution: in the
/// library's mode one primitive must not run in two threads at once (and, as Debian builds
/// it, different primitives share one scratchpad), which two cells training in one process
/// (`ordo ablate --jobs`) do: measured, their bf16 runs came out different from run to run
/// and one diverged, where with a scratchpad per execution they repeat exactly.
struct Primitive {
    handle: Handle,
    /// Kept for the scratchpad's descriptor, which lives as long as it.
    pd: Handle,
    /// src `[m, k]`, weights `[k, n]`, dst `[m, n]`.
    descs: Box<[MemoryDesc; 3]>,
    /// The scratchpad's descriptor (inside `pd`) and size in bytes (0: none needed).
    scratchpad: (*const MemoryDesc, usize),
    destroy: unsafe extern "C" fn(Handle) -> Status,
    destroy_pd: unsafe extern "C" fn(Handle) -> Status,
}

impl Drop for Primitive {
    fn drop(&mut self) {
        // SAFETY: created by `dnnl_primitive_create` and `dnnl_primitive_desc_create`,
        // destroyed once, no execution in flight (every execution holds an `Arc` to it).
        unsafe {
            (self.destroy)(self.handle);
            (self.destroy_pd)(self.pd);
        }
    }
}

/// Primitives kept per process: a training run has a few dozen shapes, but the rows of a
/// product follow the batch's padded length (and evaluation's lengths), so the least recently
/// used are dropped beyond this many.
const CACHE_CAPACITY: usize = 256;

/// The primitives by shape and layout, each with the tick of its last use.
#[derive(Default)]
struct Cache {
    entries: HashMap<Key, (Arc<Primitive>, u64)>,
    tick: u64,
}

/// The loaded library.
pub struct OneDnn {
    api: Api,
    engine: Handle,
    /// `"2.6.3"`.
    version: String,
    /// `dnnl_get_effective_cpu_isa`.
    isa: c_int,
    primitives: Mutex<Cache>,
    /// Keeps the symbols valid.
    _library: libloading::Library,
}

// SAFETY: oneDNN's engine and primitives may be used from any thread (its documentation:
// primitives are thread-safe to execute, each thread with its own stream, which `stream()`
// gives); the engine is never freed, a primitive only when no execution holds it.
unsafe impl Send for OneDnn {}
unsafe impl Sync for OneDnn {}
unsafe impl Send for Primitive {}
unsafe impl Sync for Primitive {}

fn check(status: Status, what: &str) -> Result<(), String> {
    if status == SUCCESS {
        Ok(())
    } else {
        Err(format!("oneDNN: {what} failed (dnnl_status_t {status})"))
    }
}

/// The library, loaded and checked once per process, or why it cannot be used.
pub fn library() -> Result<&'static OneDnn, String> {
    static LIB: OnceLock<Result<OneDnn, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<OneDnn, String> {
    // SAFETY: opening a shared object runs its initialisers; oneDNN's (and its OpenMP
    // runtime's) are ordinary C++ static constructors.
    let library = unsafe { libloading::Library::new(LIBRARY) }.map_err(|e| {
        format!(
            "cannot load {LIBRARY} ({e}); install oneDNN 2.x (Debian 12 / Ubuntu 22.04: \
             `apt-get install libdnnl2`) or put its directory on LD_LIBRARY_PATH"
        )
    })?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the types are those of oneDNN 2.x's `dnnl.h`; the major version is
            // checked below before any other function is called.
            *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("{LIBRARY}: no symbol {} ({e})", $name))?
        };
    }
    let version_fn: unsafe extern "C" fn() -> *const Version = sym!("dnnl_version");
    // SAFETY: `dnnl_version` returns a pointer to a static struct.
    let v = unsafe { &*version_fn() };
    let version = format!("{}.{}.{}", v.major, v.minor, v.patch);
    if v.major != 2 {
        return Err(format!(
            "{LIBRARY} is oneDNN {version}; ordo speaks oneDNN 2.x's C API \
             (Debian 12's / Ubuntu 22.04's libdnnl2)"
        ));
    }
    let api = Api {
        set_max_cpu_isa: sym!("dnnl_set_max_cpu_isa"),
        get_effective_cpu_isa: sym!("dnnl_get_effective_cpu_isa"),
        engine_create: sym!("dnnl_engine_create"),
        stream_create: sym!("dnnl_stream_create"),
        stream_wait: sym!("dnnl_stream_wait"),
        memory_desc_init_by_strides: sym!("dnnl_memory_desc_init_by_strides"),
        matmul_desc_init: sym!("dnnl_matmul_desc_init"),
        primitive_desc_create: sym!("dnnl_primitive_desc_create"),
        primitive_desc_query: sym!("dnnl_primitive_desc_query"),
        primitive_desc_query_md: sym!("dnnl_primitive_desc_query_md"),
        memory_desc_get_size: sym!("dnnl_memory_desc_get_size"),
        primitive_attr_create: sym!("dnnl_primitive_attr_create"),
        primitive_attr_destroy: sym!("dnnl_primitive_attr_destroy"),
        primitive_attr_set_scratchpad_mode: sym!("dnnl_primitive_attr_set_scratchpad_mode"),
        primitive_desc_destroy: sym!("dnnl_primitive_desc_destroy"),
        primitive_create: sym!("dnnl_primitive_create"),
        primitive_destroy: sym!("dnnl_primitive_destroy"),
        primitive_execute: sym!("dnnl_primitive_execute"),
        memory_create: sym!("dnnl_memory_create"),
        memory_destroy: sym!("dnnl_memory_destroy"),
    };
    // oneDNN 2.x treats AMX as "initial support", off unless asked for: ask, unless the user
    // chose a limit (the library reads these variables itself).
    if std::env::var_os("DNNL_MAX_CPU_ISA").is_none()
        && std::env::var_os("ONEDNN_MAX_CPU_ISA").is_none()
    {
        // SAFETY: plain C calls with an enum value of the header. A failure (the ISA fixed
        // already) leaves the library's default, which `isa` reports.
        let _ = unsafe { (api.set_max_cpu_isa)(ISA_AMX) };
    }
    // SAFETY: as above.
    let isa = unsafe { (api.get_effective_cpu_isa)() };
    if !native_bf16(isa) {
        let why = format!(
            "oneDNN {version} runs on {} here, without native bf16 products (AVX512-BF16 or \
             AMX), where bf16 would be slower than fp32",
            isa_name(isa)
        );
        // Left loaded: unloading a C++ library that has run its initialisers gains nothing.
        std::mem::forget(library);
        return Err(why);
    }
    let mut engine: Handle = std::ptr::null_mut();
    // SAFETY: `engine` is written by the call.
    check(
        unsafe { (api.engine_create)(&mut engine, ENGINE_CPU, 0) },
        "dnnl_engine_create",
    )?;
    let lib = OneDnn {
        api,
        engine,
        version,
        isa,
        primitives: Mutex::new(Cache::default()),
        _library: library,
    };
    Ok(lib)
}

/// Whether an ISA multiplies bf16 natively (AVX512-BF16 or AMX: each ISA's flags contain the
/// ones below it).
fn native_bf16(isa: c_int) -> bool {
    isa & ISA_AVX512_BF16 == ISA_AVX512_BF16
}

/// A `dnnl_cpu_isa_t` as oneDNN names it.
fn isa_name(isa: c_int) -> String {
    match isa {
        ISA_AMX => "avx512_core_amx".into(),
        ISA_AVX512_BF16 => "avx512_core_bf16".into(),
        0x27 => "avx512_core".into(),
        0x67 => "avx512_core_vnni".into(),
        0x7 => "avx2".into(),
        0x407 => "avx2_vnni".into(),
        other => format!("cpu isa 0x{other:x}"),
    }
}

thread_local! {
    /// One stream per thread (oneDNN's rule for executing primitives from several threads).
    static STREAM: std::cell::Cell<Handle> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

impl OneDnn {
    /// `"2.6.3"`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The instruction set its kernels dispatch to here, as oneDNN names it.
    pub fn isa_name(&self) -> String {
        isa_name(self.isa)
    }

    /// Whether its kernels multiply bf16 natively (AVX512-BF16 or AMX).
    pub fn has_bf16(&self) -> bool {
        native_bf16(self.isa)
    }

    /// Whether they run on AMX tiles.
    pub fn has_amx(&self) -> bool {
        self.isa & ISA_AMX == ISA_AMX
    }

    fn stream(&self) -> Handle {
        STREAM.with(|s| {
            if s.get().is_null() {
                let mut stream: Handle = std::ptr::null_mut();
                // SAFETY: `stream` is written by the call; the engine lives for the process.
                let status =
                    unsafe { (self.api.stream_create)(&mut stream, self.engine, STREAM_IN_ORDER) };
                check(status, "dnnl_stream_create").unwrap_or_else(|e| panic!("{e}"));
                s.set(stream);
            }
            s.get()
        })
    }

    fn desc(
        &self,
        rows: usize,
        cols: usize,
        data: c_int,
        layout: Layout,
    ) -> Result<MemoryDesc, String> {
        let mut dims = [0i64; MAX_NDIMS];
        let mut strides = [0i64; MAX_NDIMS];
        dims[0] = rows as i64;
        dims[1] = cols as i64;
        (strides[0], strides[1]) = match layout {
            Layout::Rows => (cols as i64, 1),
            Layout::Columns => (1, rows as i64),
        };
        let mut md = MemoryDesc([0; 4096]);
        // SAFETY: `md` has room for the struct; dims and strides hold DNNL_MAX_NDIMS entries.
        let status = unsafe {
            (self.api.memory_desc_init_by_strides)(
                &mut md,
                2,
                dims.as_ptr(),
                data,
                strides.as_ptr(),
            )
        };
        check(status, "dnnl_memory_desc_init_by_strides")?;
        Ok(md)
    }

    /// The three descriptors of an `m × n × k` product: src `[m, k]` and weights `[k, n]` in
    /// bf16 in these layouts, dst `[m, n]` row-major fp32.
    fn descs(
        &self,
        (m, n, k): (usize, usize, usize),
        la: Layout,
        lb: Layout,
    ) -> Result<Box<[MemoryDesc; 3]>, String> {
        Ok(Box::new([
            self.desc(m, k, DATA_BF16, la)?,
            self.desc(k, n, DATA_BF16, lb)?,
            self.desc(m, n, DATA_F32, Layout::Rows)?,
        ]))
    }

    /// The matmul primitive descriptor of `descs`, with a user-managed scratchpad (see
    /// [`Primitive`]); the caller destroys it.
    fn primitive_desc(&self, descs: &[MemoryDesc; 3]) -> Result<Handle, String> {
        let mut op = Box::new(MatmulDesc([0; 16384]));
        let mut pd: Handle = std::ptr::null_mut();
        let mut attr: Handle = std::ptr::null_mut();
        // SAFETY: the descriptors were initialised by the library; a null bias and hint are
        // allowed; `attr` and `pd` are written by the calls, `attr` destroyed once (oneDNN
        // copies it into `pd`).
        unsafe {
            check(
                (self.api.matmul_desc_init)(
                    &mut *op,
                    &descs[0],
                    &descs[1],
                    std::ptr::null(),
                    &descs[2],
                ),
                "dnnl_matmul_desc_init",
            )?;
            check(
                (self.api.primitive_attr_create)(&mut attr),
                "dnnl_primitive_attr_create",
            )?;
            let made = check(
                (self.api.primitive_attr_set_scratchpad_mode)(attr, SCRATCHPAD_MODE_USER),
                "dnnl_primitive_attr_set_scratchpad_mode",
            )
            .and_then(|()| {
                check(
                    (self.api.primitive_desc_create)(
                        &mut pd,
                        (&*op as *const MatmulDesc).cast(),
                        attr,
                        self.engine,
                        std::ptr::null_mut(),
                    ),
                    "dnnl_primitive_desc_create (bf16 matmul)",
                )
            });
            (self.api.primitive_attr_destroy)(attr);
            made.map(|()| pd)
        }
    }

    fn primitive(
        &self,
        shape: (usize, usize, usize),
        la: Layout,
        lb: Layout,
    ) -> Result<Arc<Primitive>, String> {
        let (m, n, k) = shape;
        let key = (m, n, k, la, lb);
        let mut cache = self.primitives.lock().unwrap_or_else(|p| p.into_inner());
        cache.tick += 1;
        let tick = cache.tick;
        if let Some((p, used)) = cache.entries.get_mut(&key) {
            *used = tick;
            return Ok(Arc::clone(p));
        }
        let descs = self.descs(shape, la, lb)?;
        let pd = self.primitive_desc(&descs)?;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: `pd` is a valid primitive descriptor (destroyed here if the primitive cannot
        // be made, else with it); `handle` is written by the call; the scratchpad's descriptor
        // is `pd`'s, read while `pd` lives.
        let scratchpad = unsafe {
            let made = check(
                (self.api.primitive_create)(&mut handle, pd),
                "dnnl_primitive_create",
            );
            if let Err(e) = made {
                (self.api.primitive_desc_destroy)(pd);
                return Err(e);
            }
            let md = (self.api.primitive_desc_query_md)(pd, QUERY_SCRATCHPAD_MD, 0);
            let bytes = if md.is_null() {
                0
            } else {
                (self.api.memory_desc_get_size)(md)
            };
            (md, bytes)
        };
        let p = Arc::new(Primitive {
            handle,
            pd,
            descs,
            scratchpad,
            destroy: self.api.primitive_destroy,
            destroy_pd: self.api.primitive_desc_destroy,
        });
        if cache.entries.len() >= CACHE_CAPACITY {
            let oldest = cache
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                cache.entries.remove(&oldest);
            }
        }
        cache.entries.insert(key, (Arc::clone(&p), tick));
        Ok(p)
    }

    /// The name of the implementation oneDNN picked for an `m × n × k` product
    /// (`"brg:avx512_core_amx"`, `"brg:avx512_core_bf16"`, ...).
    pub fn implementation(&self, m: usize, n: usize, k: usize) -> Result<String, String> {
        let descs = self.descs((m, n, k), Layout::Rows, Layout::Rows)?;
        let pd = self.primitive_desc(&descs)?;
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: `pd` is valid and destroyed once, here; the queried string lives as long as
        // `pd` and is copied before that.
        unsafe {
            let queried = check(
                (self.api.primitive_desc_query)(
                    pd,
                    QUERY_IMPL_INFO_STR,
                    0,
                    (&mut name as *mut *const c_char).cast(),
                ),
                "dnnl_primitive_desc_query",
            );
            let out = queried.map(|()| {
                if name.is_null() {
                    "?".to_string()
                } else {
                    CStr::from_ptr(name).to_string_lossy().into_owned()
                }
            });
            (self.api.primitive_desc_destroy)(pd);
            out
        }
    }

    /// `c[m × n] = a[m × k] · b[k × n]`, both operands rounded to bf16, fp32 sums; `c`
    /// row-major. Sizes are checked by the caller ([`crate::bf16::matmul`]); `m`, `n`, `k`
    /// are at least 1.
    pub(crate) fn matmul(&self, a: View, b: View, c: &mut [f32], m: usize, n: usize, k: usize) {
        let (ab, la) = convert(a, m, k);
        let (bb, lb) = convert(b, k, n);
        let mut run = || -> Result<(), String> {
            let p = self.primitive((m, n, k), la, lb)?;
            let stream = self.stream();
            // This execution's own scratchpad, 64-byte aligned; oneDNN writes it before it reads
            // it, so it is left uninitialised (only ever a raw pointer here).
            let (scratch_md, scratch_bytes) = p.scratchpad;
            let mut scratch: Vec<u8> = Vec::with_capacity(if scratch_bytes > 0 {
                scratch_bytes + 64
            } else {
                0
            });
            let scratch_ptr: Handle = if scratch_bytes > 0 {
                let at = scratch.as_mut_ptr();
                // SAFETY: the offset is below 64, inside the 64 spare bytes.
                unsafe { at.add(at.align_offset(64)) }.cast()
            } else {
                std::ptr::null_mut()
            };
            let mut args: Vec<ExecArg> = Vec::with_capacity(4);
            let wanted: [(c_int, *const MemoryDesc, Handle); 4] = [
                (ARG_SRC, &p.descs[0], ab.as_ptr() as Handle),
                (ARG_WEIGHTS, &p.descs[1], bb.as_ptr() as Handle),
                (ARG_DST, &p.descs[2], c.as_mut_ptr().cast()),
                (ARG_SCRATCHPAD, scratch_md, scratch_ptr),
            ];
            // SAFETY: each buffer holds its descriptor's bytes (`convert`, `c` checked by the
            // caller, the scratchpad its queried size) and outlives the execution, which
            // `stream_wait` completes; oneDNN only reads the sources.
            unsafe {
                let mut made = Ok(());
                for (arg, md, ptr) in wanted {
                    if arg == ARG_SCRATCHPAD && scratch_bytes == 0 {
                        continue;
                    }
                    let mut mem: Handle = std::ptr::null_mut();
                    made = check(
                        (self.api.memory_create)(&mut mem, md, self.engine, ptr),
                        "dnnl_memory_create",
                    );
                    if made.is_err() {
                        break;
                    }
                    args.push(ExecArg { arg, memory: mem });
                }
                let done = made.and_then(|()| {
                    check(
                        (self.api.primitive_execute)(
                            p.handle,
                            stream,
                            args.len() as c_int,
                            args.as_ptr(),
                        ),
                        "dnnl_primitive_execute (bf16 matmul)",
                    )
                    .and_then(|()| check((self.api.stream_wait)(stream), "dnnl_stream_wait"))
                });
                for a in &args {
                    (self.api.memory_destroy)(a.memory);
                }
                drop(scratch);
                done
            }
        };
        // The library passed its self-test when it was chosen (`bf16::unit`); a failure now is
        // an internal error (out of memory inside oneDNN) with nothing a caller could do.
        run().unwrap_or_else(|e| panic!("bf16 product {m}x{n}x{k}: {e}"));
    }
}

/// `x` (`rows × cols`) as contiguous bf16: row-major if its columns are adjacent, transposed
/// if its rows are (a sequential pass over the data either way), row-major gathered otherwise.
fn convert(x: View, rows: usize, cols: usize) -> (Vec<u16>, Layout) {
    // Each line `len` elements, line `i` from `data[i * ls]`, element `j` at `+ j * es`.
    let (len, ls, es, layout) = if x.col == 1 {
        (cols, x.row, 1, Layout::Rows)
    } else if x.row == 1 {
        (rows, x.col, 1, Layout::Columns)
    } else {
        (cols, x.row, x.col, Layout::Rows)
    };
    let mut out = vec![0u16; rows * cols];
    // Lines of at least ~16k elements per task: the conversion is a memory pass.
    let per_task = (16384 / len.max(1)).max(1);
    out.par_chunks_mut(per_task * len)
        .enumerate()
        .for_each(|(t, chunk)| {
            for (i, line) in chunk.chunks_mut(len).enumerate() {
                let start = (t * per_task + i) * ls;
                if es == 1 {
                    for (o, &v) in line.iter_mut().zip(&x.data[start..start + len]) {
                        *o = to_bf16(v);
                    }
                } else {
                    for (j, o) in line.iter_mut().enumerate() {
                        *o = to_bf16(x.data[start + j * es]);
                    }
                }
            }
        });
    (out, layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The enum values copied above, against the installed header where there is one
    /// (`libdnnl-dev`); the ABI sizes against the room given to them.
    #[test]
    fn the_constants_are_the_headers() {
        let Ok(types) = std::fs::read_to_string("/usr/include/oneapi/dnnl/dnnl_types.h") else {
            eprintln!("skipped: no oneDNN header (libdnnl-dev) installed");
            return;
        };
        let version =
            std::fs::read_to_string("/usr/include/oneapi/dnnl/dnnl_version.h").unwrap_or_default();
        if !version.contains("#define DNNL_VERSION_MAJOR 2") {
            eprintln!("skipped: the installed header is not oneDNN 2.x");
            return;
        }
        for (line, value) in [
            ("dnnl_bf16 = ", DATA_BF16),
            ("dnnl_f32 = ", DATA_F32),
            ("dnnl_stream_in_order = 0x", STREAM_IN_ORDER as c_int),
            ("dnnl_cpu_isa_avx512_core_bf16 = 0x", ISA_AVX512_BF16),
            ("dnnl_cpu_isa_avx512_core_amx = 0x", ISA_AMX),
            ("#define DNNL_ARG_SRC_0 ", ARG_SRC),
            ("#define DNNL_ARG_DST_0 ", ARG_DST),
            ("#define DNNL_ARG_WEIGHTS_0 ", ARG_WEIGHTS),
            ("#define DNNL_MAX_NDIMS ", MAX_NDIMS as c_int),
            ("#define DNNL_ARG_SCRATCHPAD ", ARG_SCRATCHPAD),
        ] {
            let at = types
                .find(line)
                .unwrap_or_else(|| panic!("{line} not in the header"));
            let rest = &types[at + line.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
            let radix = if line.ends_with("0x") { 16 } else { 10 };
            let got = i64::from_str_radix(&digits, radix).expect("a number");
            assert_eq!(got, value as i64, "{line}");
        }
        // The enums counted from the start of their lists: `dnnl_cpu` second after
        // `dnnl_any_engine`, `dnnl_query_impl_info_str` eighth after `dnnl_query_undef = 0`.
        let order = |first: &str, name: &str| -> usize {
            let from = types.find(first).expect("enum start");
            let list = &types[from..];
            let until = list.find(name).expect("enum member");
            list[..until]
                .lines()
                .filter(|l| l.trim_start().starts_with("dnnl_"))
                .count()
        };
        assert_eq!(
            order("    dnnl_any_engine,", "    dnnl_cpu,"),
            ENGINE_CPU as usize
        );
        assert_eq!(
            order("    dnnl_query_undef = 0,", "    dnnl_query_impl_info_str,"),
            QUERY_IMPL_INFO_STR as usize
        );
        assert_eq!(
            128 + order(
                "    dnnl_query_some_md = 128,",
                "    dnnl_query_scratchpad_md,"
            ),
            QUERY_SCRATCHPAD_MD as usize
        );
        assert_eq!(
            order(
                "    dnnl_scratchpad_mode_library,",
                "    dnnl_scratchpad_mode_user,"
            ),
            SCRATCHPAD_MODE_USER as usize
        );
    }

    /// Where the library is installed: it loads, names its ISA, and computes a product whose
    /// every term is exact (a transposed and a row-major operand) to the bit.
    #[test]
    fn the_library_multiplies_where_it_is_installed() {
        let lib = match library() {
            Ok(lib) => lib,
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        };
        assert!(lib.version().starts_with("2."));
        assert!(lib.has_bf16(), "{}", lib.isa_name());
        let implementation = lib
            .implementation(64, 48, 40)
            .expect("a matmul implementation");
        assert!(!implementation.is_empty());
        let (m, n, k) = (70, 33, 129);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 9) as f32 - 4.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i % 7) as f32 - 3.0) * 0.5).collect();
        let mut c = vec![f32::NAN; m * n];
        lib.matmul(View::rows(&a, k), View::transposed(&b, k), &mut c, m, n, k);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                assert_eq!(c[i * n + j], want, "[{i}, {j}]");
            }
        }
    }

    /// One primitive per shape, reused, and no more than [`CACHE_CAPACITY`] kept: products of
    /// more shapes than that (rows varying as padded batches do) stay right.
    #[test]
    fn primitives_are_reused_and_the_cache_is_bounded() {
        let Ok(lib) = library() else {
            eprintln!("skipped: no oneDNN");
            return;
        };
        let first = lib
            .primitive((7, 3, 5), Layout::Rows, Layout::Rows)
            .unwrap();
        let again = lib
            .primitive((7, 3, 5), Layout::Rows, Layout::Rows)
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let (n, k) = (3, 5);
        let b: Vec<f32> = (0..k * n).map(|i| i as f32 - 7.0).collect();
        for m in 1..=CACHE_CAPACITY + 40 {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32).collect();
            let mut c = vec![f32::NAN; m * n];
            lib.matmul(View::rows(&a, k), View::rows(&b, n), &mut c, m, n, k);
            let want: Vec<f32> = (0..m * n)
                .map(|e| (0..k).map(|p| a[e / n * k + p] * b[p * n + e % n]).sum())
                .collect();
            assert_eq!(c, want, "m = {m}");
        }
        let kept = lib.primitives.lock().unwrap().entries.len();
        assert!(kept <= CACHE_CAPACITY, "{kept} primitives kept");
        // `first` was the least recently used, evicted while still held here: the cache let
        // go of it, and it is destroyed only now, by its last holder.
        let cached = lib.primitives.lock().unwrap();
        assert!(!cached.entries.values().any(|(p, _)| Arc::ptr_eq(p, &first)));
        drop(cached);
        drop(first);
    }

    /// Two threads running the same primitives at once (two cells training in one process)
    /// each get their exact products: every execution has its own scratchpad.
    #[test]
    fn concurrent_products_are_each_exact() {
        let Ok(lib) = library() else {
            eprintln!("skipped: no oneDNN");
            return;
        };
        let (m, n, k) = (192, 160, 224);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let want = |b: &[f32]| -> Vec<f32> {
            (0..m * n)
                .map(|e| (0..k).map(|p| a[e / n * k + p] * b[p * n + e % n]).sum())
                .collect()
        };
        let bs: Vec<Vec<f32>> = (0..2)
            .map(|t| (0..k * n).map(|i| ((i + t) % 5) as f32 - 2.0).collect())
            .collect();
        let wants: Vec<Vec<f32>> = bs.iter().map(|b| want(b)).collect();
        std::thread::scope(|scope| {
            for (b, want) in bs.iter().zip(&wants) {
                let a = &a;
                scope.spawn(move || {
                    for round in 0..30 {
                        let mut c = vec![f32::NAN; m * n];
                        lib.matmul(View::rows(a, k), View::rows(b, n), &mut c, m, n, k);
                        assert!(c == *want, "round {round}: a product came out wrong");
                    }
                });
            }
        });
    }
}
