//! Engine setup, compile and load.

use crate::http::{HttpState, Pool};
use crate::invoke::HostState;
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, OptLevel,
    PoolingAllocationConfig, Precompiled,
};
use wisp_core::Abi;

/// Engine-wide settings. Defaults suit one node serving many functions.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Use the pooling instance allocator (falls back to on-demand with a
    /// logged reason if the address space cannot be reserved).
    pub pooling: bool,
    /// Instance slots in the pool: the most instances alive at once.
    pub pool_instances: u32,
    /// Largest linear memory any function may be granted, in bytes.
    pub max_memory_bytes: u64,
    /// Epoch tick: the granularity of deadlines and of cooperative yields.
    pub epoch_tick: Duration,
    /// Largest Wasm stack per instance.
    pub max_wasm_stack: usize,
    /// Bytes of a pool slot's linear memory restored in place (not
    /// decommitted) when an instance ends. `None`: 1 MiB of dirty pages when
    /// the kernel has PAGEMAP_SCAN, else the first 64 KiB.
    pub keep_resident: Option<usize>,
    /// Compile epoch checks into guest code (at every function entry and
    /// loop back-edge): what makes timeouts and cooperative yields work.
    /// **Only for measurement**: without them a guest that loops forever
    /// can't be stopped. `wisp bench` turns them off in a second engine to
    /// show what they cost (docs/benchmarks.md, "Runtime").
    pub deadline_checks: bool,
}

/// Default keep-resident with PAGEMAP_SCAN: only dirty pages count, so this
/// bounds the memory a slot keeps between requests (a hello guest dirties
/// well under 256 KiB).
pub const KEEP_RESIDENT_SCAN: usize = 1 << 20;
/// Default keep-resident without it: these bytes are memset every time.
pub const KEEP_RESIDENT_NO_SCAN: usize = 64 << 10;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            pooling: true,
            pool_instances: 2000,
            max_memory_bytes: wisp_core::MAX_MEMORY_BYTES,
            epoch_tick: Duration::from_millis(1),
            max_wasm_stack: 512 << 10,
            keep_resident: None,
            deadline_checks: true,
        }
    }
}

/// The process-wide Wasm runtime: one `Engine`, one linker, one epoch ticker.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) http_linker: wasmtime::component::Linker<HttpState>,
    pub(crate) pool: Pool,
    fingerprint: String,
    pooling: bool,
    pagemap_scan: bool,
    compilations: AtomicU64,
    ticker_stop: Arc<AtomicBool>,
}

/// The output of an ahead-of-time compile.
pub struct Compiled {
    /// What kind of binary it is.
    pub abi: Abi,
    /// The serialized, precompiled artifact (`.cwasm`).
    pub artifact: Vec<u8>,
    /// Compile wall time.
    pub compile_time: Duration,
}

/// A function version ready to instantiate: the warm template.
#[derive(Clone)]
pub enum Loaded {
    /// A command module.
    Command(InstancePre<HostState>),
    /// A `wasi:http` component.
    Http(wasmtime_wasi_http::p2::bindings::ProxyPre<HttpState>),
}

impl Loaded {
    /// The ABI of this template.
    pub fn abi(&self) -> Abi {
        match self {
            Loaded::Command(_) => Abi::Command,
            Loaded::Http(_) => Abi::Http,
        }
    }
}

/// Hasher that feeds SHA-256, so the engine fingerprint is stable across
/// processes (std's `DefaultHasher` makes no such promise).
struct ShaHasher(Sha256);
impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("only used through finalize")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn config(opts: &EngineOptions, pooling: bool, scan: bool) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(opts.deadline_checks);
    c.cranelift_opt_level(OptLevel::Speed);
    c.memory_init_cow(true);
    c.max_wasm_stack(opts.max_wasm_stack);
    c.wasm_component_model(true);
    if pooling {
        let mut p = PoolingAllocationConfig::default();
        p.total_core_instances(opts.pool_instances);
        p.total_component_instances(opts.pool_instances);
        p.total_memories(opts.pool_instances);
        p.total_tables(opts.pool_instances);
        p.total_stacks(opts.pool_instances);
        p.max_memory_size(opts.max_memory_bytes as usize);
        // Resetting a slot with `madvise(DONTNEED)` costs a TLB-shootdown IPI
        // to every core running one of our threads, per request. With the
        // PAGEMAP_SCAN ioctl (Linux >= 6.7) Wasmtime finds the pages the
        // guest dirtied and restores just those with memcpy, keeping them
        // resident: no syscall to unmap, no shootdown, no fault next time.
        // Without it, keep-resident memsets the *first* N bytes whether or
        // not they were touched, so only a little is worth keeping.
        p.pagemap_scan(if scan { Enabled::Yes } else { Enabled::No });
        let keep = opts.keep_resident.unwrap_or(if scan {
            KEEP_RESIDENT_SCAN
        } else {
            KEEP_RESIDENT_NO_SCAN
        });
        p.linear_memory_keep_resident(keep);
        p.table_keep_resident(if scan { 64 << 10 } else { 16 << 10 });
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    }
    c
}

impl Runtime {
    /// Build the engine and start the single epoch ticker thread.
    pub fn new(opts: EngineOptions) -> Result<Runtime> {
        let scan = PoolingAllocationConfig::is_pagemap_scan_available();
        let (engine, pooling) = if opts.pooling {
            match Engine::new(&config(&opts, true, scan)) {
                Ok(e) => (e, true),
                Err(e) => {
                    tracing::warn!(
                        reason = %format!("{e:#}"),
                        "pooling allocator unavailable (address space could not be reserved); \
                         falling back to on-demand instance allocation"
                    );
                    (
                        Engine::new(&config(&opts, false, false)).map_err(internal)?,
                        false,
                    )
                }
            }
        } else {
            (
                Engine::new(&config(&opts, false, false)).map_err(internal)?,
                false,
            )
        };

        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut HostState| &mut s.wasi)
            .map_err(internal)?;
        // wasi:http plus wasi:cli & co., as `wasmtime serve -Scli` links them.
        let mut http_linker = wasmtime::component::Linker::<HttpState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut http_linker).map_err(internal)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker)
            .map_err(internal)?;

        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        // Our own config choices that change the artifact's meaning.
        "wisp-artifact-v1".hash(&mut h);
        let fingerprint = hex::encode(&h.0.finalize()[..12]);

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            let tick = opts.epoch_tick;
            std::thread::Builder::new()
                .name("wisp-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| Error::Internal(format!("spawning epoch ticker: {e}")))?;
        }

        Ok(Runtime {
            engine,
            linker,
            http_linker,
            pool: crate::http::new_pool(),
            fingerprint,
            pooling,
            pagemap_scan: scan,
            compilations: AtomicU64::new(0),
            ticker_stop,
        })
    }

    /// Hex fingerprint of the engine's compatibility: artifacts compiled by
    /// an engine with another fingerprint must be recompiled.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Whether pool slots are reset by scanning for dirty pages (PAGEMAP_SCAN).
    pub fn pagemap_scan(&self) -> bool {
        self.pooling && self.pagemap_scan
    }

    /// Number of Cranelift compilations this process performed.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// The engine (for benchmarks and tools).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Validate `wasm` and compile it ahead of time. Blocking and CPU-heavy:
    /// call it from a blocking thread.
    pub fn compile(&self, wasm: &[u8]) -> Result<Compiled> {
        let abi = detect_abi(wasm)?;
        let start = Instant::now();
        let artifact = match abi {
            Abi::Command => self.engine.precompile_module(wasm),
            Abi::Http => self.engine.precompile_component(wasm),
        }
        .map_err(|e| {
            Error::Invalid(format!(
                "invalid WebAssembly {}: {}",
                what(abi),
                root_cause(&e)
            ))
        })?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        Ok(Compiled {
            abi,
            artifact,
            compile_time: start.elapsed(),
        })
    }

    /// Map a precompiled artifact written by [`Runtime::compile`] and link it.
    ///
    /// Returns [`Error::Invalid`] if the module imports something the host
    /// does not provide or lacks `_start`.
    pub fn load(&self, artifact: &Path) -> Result<Loaded> {
        // SAFETY: the artifact was produced by `Engine::precompile_module`
        // of an engine with this fingerprint and written by the store
        // atomically (temp + fsync + rename), never modified in place.
        // Wasmtime also checks its header and compatibility before use.
        let kind = Engine::detect_precompiled_file(artifact)
            .map_err(|e| Error::Internal(format!("reading {}: {e:#}", artifact.display())))?;
        match kind {
            Some(Precompiled::Component) => {
                // SAFETY: as above.
                let c = unsafe {
                    wasmtime::component::Component::deserialize_file(&self.engine, artifact)
                }
                .map_err(|e| Error::Internal(format!("loading {}: {e:#}", artifact.display())))?;
                self.link_component(c)
            }
            _ => {
                let module =
                    unsafe { Module::deserialize_file(&self.engine, artifact) }.map_err(|e| {
                        Error::Internal(format!("loading {}: {e:#}", artifact.display()))
                    })?;
                self.link(module)
            }
        }
    }

    /// Compile and link in memory, without an artifact (`wisp run`).
    pub fn load_bytes(&self, wasm: &[u8]) -> Result<Loaded> {
        let abi = detect_abi(wasm)?;
        self.compilations.fetch_add(1, Ordering::Relaxed);
        match abi {
            Abi::Command => {
                let module = Module::from_binary(&self.engine, wasm).map_err(|e| {
                    Error::Invalid(format!("invalid WebAssembly module: {}", root_cause(&e)))
                })?;
                self.link(module)
            }
            Abi::Http => {
                let c = wasmtime::component::Component::from_binary(&self.engine, wasm).map_err(
                    |e| {
                        Error::Invalid(format!("invalid WebAssembly component: {}", root_cause(&e)))
                    },
                )?;
                self.link_component(c)
            }
        }
    }

    fn link_component(&self, c: wasmtime::component::Component) -> Result<Loaded> {
        let pre = self.http_linker.instantiate_pre(&c).map_err(|e| {
            Error::Invalid(format!(
                "cannot link component: {} (components may import wasi:http, wasi:cli, wasi:io, wasi:clocks, \
                 wasi:random, wasi:filesystem and wasi:sockets)",
                root_cause(&e)
            ))
        })?;
        let proxy = wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map_err(|e| {
            Error::Invalid(format!(
                "component does not export wasi:http/incoming-handler: {} (build it for the wasi:http/proxy world)",
                root_cause(&e)
            ))
        })?;
        Ok(Loaded::Http(proxy))
    }

    fn link(&self, module: Module) -> Result<Loaded> {
        match module.get_export("_start") {
            Some(wasmtime::ExternType::Func(_)) => {}
            _ => {
                return Err(Error::Invalid(
                    "module has no `_start` function: build it as a WASI command \
                     (e.g. a Rust binary for wasm32-wasip1)"
                        .into(),
                ));
            }
        }
        for import in module.imports() {
            if import.module() != "wasi_snapshot_preview1" {
                return Err(Error::Invalid(format!(
                    "module imports `{}::{}`, which Wisp does not provide \
                     (command modules may import only wasi_snapshot_preview1)",
                    import.module(),
                    import.name()
                )));
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| Error::Invalid(format!("cannot link module: {}", root_cause(&e))))?;
        Ok(Loaded::Command(pre))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{e:#}"))
}

fn what(abi: Abi) -> &'static str {
    match abi {
        Abi::Command => "module",
        Abi::Http => "component",
    }
}

fn root_cause(e: &wasmtime::Error) -> String {
    format!("{e:#}")
}

/// Classify the binary: core module or component; reject anything else
/// with a message a user can act on.
fn detect_abi(wasm: &[u8]) -> Result<Abi> {
    if let Some(p) = Engine::detect_precompiled(wasm) {
        let what = match p {
            Precompiled::Module => "module",
            Precompiled::Component => "component",
        };
        return Err(Error::Invalid(format!(
            "this is a precompiled {what} (.cwasm); deploy the original .wasm: \
             Wisp compiles it itself and never trusts foreign native code"
        )));
    }
    if wasm.len() < 8 || &wasm[0..4] != b"\0asm" {
        return Err(Error::Invalid(
            "not a WebAssembly binary (missing the \\0asm magic header)".into(),
        ));
    }
    match (
        wasm[4..6] == [1, 0],
        wasm[6..8] == [0, 0],
        wasm[6..8] == [1, 0],
    ) {
        (true, true, _) => Ok(Abi::Command),
        (_, _, true) => Ok(Abi::Http),
        _ => Err(Error::Invalid(
            "unsupported WebAssembly binary version".into(),
        )),
    }
}
