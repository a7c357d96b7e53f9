//! The wasmtime engine of an executor: configuration (epoch interruption,
//! optional fuel), the epoch ticker thread, and the compiled-module cache.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::{Config, Engine, InstancePre, Linker, Module, StoreLimits};

/// Interval of the epoch ticker: deadlines are rounded up to it.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Per-store host state.
pub(crate) struct StoreState {
    pub(crate) limits: StoreLimits,
    /// What the function may reach through WASI.
    pub(crate) grants: Arc<crate::wasi::Grants>,
    /// Its standard output and error.
    pub(crate) output: crate::wasi::Output,
    /// Zero of its monotonic clock.
    pub(crate) created: std::time::Instant,
}

/// A compiled module, ready to instantiate (its WASI imports resolved).
pub(crate) type Prepared = InstancePre<StoreState>;

/// One engine and its cache. Modules are compiled once per engine and
/// content: the cache is keyed by the module's bytes (hashed, then compared
/// in full, so two different modules never share an entry).
pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) fuel: bool,
    linker: Linker<StoreState>,
    /// foldhash (hashbrown's default) hashes a module's megabytes ~10x
    /// faster than SipHash; entries still compare the full bytes.
    cache: Mutex<hashbrown::HashMap<Arc<[u8]>, Prepared>>,
}

/// Set (to anything) to have guest code show up by function name in
/// `perf record`/`perf report`.
pub const PERF_MAP_ENV: &str = "OXBEAM_WASM_PERF_MAP";

impl Runtime {
    pub(crate) fn new(fuel: bool) -> Result<Arc<Runtime>, String> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(fuel);
        // `perf` names guest functions from /tmp/perf-PID.map.
        if std::env::var_os(PERF_MAP_ENV).is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| format!("cannot create wasm engine: {e}"))?;
        start_ticker(&engine);
        // WASI preview 1 functions are added per module, for those it
        // imports (crate::wasi); anything else fails to link.
        let linker = Linker::new(&engine);
        Ok(Arc::new(Runtime {
            engine,
            fuel,
            linker,
            cache: Mutex::new(hashbrown::HashMap::new()),
        }))
    }

    /// The prepared module for `bytes`, compiling it on first use.
    pub(crate) fn prepare(&self, bytes: &[u8]) -> Result<Prepared, String> {
        if let Some(p) = self.lock().get(bytes) {
            return Ok(p.clone());
        }
        let module = Module::new(&self.engine, bytes)
            .map_err(|e| format!("invalid wasm module: {}", chain(&e)))?;
        let prepared = self.prepare_module(&module)?;
        self.lock().insert(Arc::from(bytes), prepared.clone());
        Ok(prepared)
    }

    /// Links a compiled module: the WASI preview 1 functions it imports,
    /// deny by default ([`crate::wasi`]); other imports fail.
    pub(crate) fn prepare_module(&self, module: &Module) -> Result<Prepared, String> {
        let mut linker = self.linker.clone();
        crate::wasi::link(&mut linker, module)?;
        linker
            .instantiate_pre(module)
            .map_err(|e| format!("cannot link wasm module: {}", chain(&e)))
    }

    /// Number of cached modules.
    pub(crate) fn cached_modules(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, hashbrown::HashMap<Arc<[u8]>, Prepared>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Increments the engine's epoch every [`EPOCH_TICK`] until the engine is
/// dropped, so stores can be given wall-clock deadlines.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("oxbeam-wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    // Without a ticker deadlines never fire; fuel (if on) still applies.
    if let Err(e) = spawned {
        eprintln!("oxbeam-wasm: cannot start the epoch ticker: {e}");
    }
}

/// An error and its causes on one line.
pub(crate) fn chain(e: &wasmtime::Error) -> String {
    let mut s = String::new();
    for (i, cause) in e.chain().enumerate() {
        if i > 0 {
            s.push_str(": ");
        }
        s.push_str(&cause.to_string());
    }
    s
}
