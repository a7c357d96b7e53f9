//! One sandboxed instance of a Wasm UDF: a store with limits, the ABI's
//! exports, the input arena, and the translation of guest failures (traps,
//! deadline, memory cap, malformed results) into messages.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::{Memory, Store, StoreLimitsBuilder, Trap, TypedFunc};

use crate::abi;
use crate::runtime::{EPOCH_TICK, Prepared, Runtime, StoreState, chain};
use crate::wasi::Grants;

/// Resource limits of one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Cap on the instance's linear memory.
    pub max_memory_bytes: usize,
    /// Wall-clock deadline of one bundle (all its batches).
    pub bundle_deadline: Duration,
    /// Fuel of one bundle, if fuel metering is on (`None`: unmetered).
    pub fuel_per_bundle: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 64 << 20,
            bundle_deadline: Duration::from_secs(60),
            fuel_per_bundle: None,
        }
    }
}

/// Why a call failed, and on which record of the batch if known.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) element: Option<u32>,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            element: None,
        }
    }
}

enum Entry {
    Unary(TypedFunc<i32, i64>),
    Combine(TypedFunc<(i32, i32), i64>),
}

struct Live {
    store: Store<StoreState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    entry: Entry,
    last_error: Option<TypedFunc<(), i64>>,
    arena: u32,
    capacity: u32,
}

/// A UDF instance, re-created after any failure (a trapped instance's state
/// is not trusted again).
pub(crate) struct Guest {
    runtime: Arc<Runtime>,
    prepared: Prepared,
    export: String,
    combine: bool,
    config: Bytes,
    limits: Limits,
    grants: Arc<Grants>,
    live: Option<Live>,
}

impl Guest {
    /// Instantiates `prepared` and checks its exports.
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        prepared: Prepared,
        export: &str,
        combine: bool,
        config: Bytes,
        limits: Limits,
        grants: Arc<Grants>,
    ) -> Result<Guest, String> {
        let mut g = Guest {
            runtime,
            prepared,
            export: export.to_string(),
            combine,
            config,
            limits,
            grants,
            live: None,
        };
        g.instantiate().map_err(|f| f.message)?;
        Ok(g)
    }

    fn instantiate(&mut self) -> Result<(), Failure> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.max_memory_bytes)
            .instances(1)
            .memories(1)
            .tables(4)
            .table_elements(1 << 20)
            .trap_on_grow_failure(true)
            .build();
        let state = StoreState {
            limits,
            grants: self.grants.clone(),
            output: Default::default(),
            created: std::time::Instant::now(),
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        self.arm(&mut store, None);
        let instance = self
            .prepared
            .instantiate(&mut store)
            .map_err(|e| Failure::new(describe(&e, &self.limits, "instantiating")))?;
        let memory = instance
            .get_memory(&mut store, abi::EXPORT_MEMORY)
            .ok_or_else(|| Failure::new("module does not export its memory as \"memory\""))?;
        let typed = |what: &str, e: wasmtime::Error| {
            Failure::new(format!(
                "export \"{what}\" is missing or has the wrong type: {e}"
            ))
        };
        let version = instance
            .get_typed_func::<(), i32>(&mut store, abi::EXPORT_ABI_VERSION)
            .map_err(|e| typed(abi::EXPORT_ABI_VERSION, e))?
            .call(&mut store, ())
            .map_err(|e| Failure::new(describe(&e, &self.limits, abi::EXPORT_ABI_VERSION)))?;
        if version != abi::ABI_VERSION {
            return Err(Failure::new(format!(
                "module speaks Oxbeam Wasm ABI {version}, this host speaks {}",
                abi::ABI_VERSION
            )));
        }
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, abi::EXPORT_ALLOC)
            .map_err(|e| typed(abi::EXPORT_ALLOC, e))?;
        let entry = if self.combine {
            Entry::Combine(
                instance
                    .get_typed_func::<(i32, i32), i64>(&mut store, &self.export)
                    .map_err(|e| typed(&self.export, e))?,
            )
        } else {
            Entry::Unary(
                instance
                    .get_typed_func::<i32, i64>(&mut store, &self.export)
                    .map_err(|e| typed(&self.export, e))?,
            )
        };
        let last_error = instance
            .get_typed_func::<(), i64>(&mut store, abi::EXPORT_LAST_ERROR)
            .ok();
        let configure = instance
            .get_typed_func::<i32, i32>(&mut store, abi::EXPORT_CONFIGURE)
            .ok();
        let mut live = Live {
            store,
            memory,
            alloc,
            entry,
            last_error,
            arena: 0,
            capacity: 0,
        };
        if !self.config.is_empty() {
            let Some(configure) = configure else {
                return Err(Failure::new(
                    "the function has a config, but the module does not export oxbeam_configure",
                ));
            };
            let len = write_arena(&mut live, &self.config, &self.limits)?;
            let status = configure
                .call(&mut live.store, len)
                .map_err(|e| Failure::new(describe(&e, &self.limits, abi::EXPORT_CONFIGURE)))?;
            if status != 0 {
                return Err(Failure::new(format!(
                    "oxbeam_configure failed: {}",
                    last_error_message(&mut live).unwrap_or_default()
                )));
            }
        }
        self.live = Some(live);
        Ok(())
    }

    /// Sets the deadline (and fuel) of a store for one bundle.
    fn arm(&self, store: &mut Store<StoreState>, ticks: Option<u64>) {
        let ticks = ticks.unwrap_or_else(|| {
            let t = self.limits.bundle_deadline.as_nanos() / EPOCH_TICK.as_nanos();
            u64::try_from(t).unwrap_or(u64::MAX).saturating_add(1)
        });
        store.set_epoch_deadline(ticks);
        if self.runtime.fuel {
            // Fuel metering is on for the engine: unmetered functions get
            // all the fuel there is.
            let fuel = self.limits.fuel_per_bundle.unwrap_or(u64::MAX);
            let _ = store.set_fuel(fuel);
        }
    }

    /// Prepares for a bundle: re-instantiates after a failure, then starts
    /// the bundle's deadline and fuel.
    pub(crate) fn begin_bundle(&mut self) -> Result<(), Failure> {
        if self.live.is_none() {
            self.instantiate()?;
        }
        if let Some(mut live) = self.live.take() {
            self.arm(&mut live.store, None);
            self.live = Some(live);
        }
        Ok(())
    }

    /// Calls the function on one batch and returns its output bytes (in
    /// guest memory, valid until the next call).
    pub(crate) fn call(&mut self, op: i32, batch: &[u8]) -> Result<&[u8], Failure> {
        let Some(mut live) = self.live.take() else {
            return Err(Failure::new("internal: no live instance"));
        };
        match self.call_live(&mut live, op, batch) {
            Ok((ptr, len)) => {
                self.live = Some(live);
                let live = self.live.as_ref().expect("just set");
                let data = live.memory.data(&live.store);
                Ok(&data[ptr..ptr + len])
            }
            // The instance is dropped: the next bundle gets a fresh one.
            Err(f) => Err(f),
        }
    }

    fn call_live(&self, live: &mut Live, op: i32, batch: &[u8]) -> Result<(usize, usize), Failure> {
        let len = write_arena(live, batch, &self.limits)?;
        let result = match &live.entry {
            Entry::Unary(f) => f.call(&mut live.store, len),
            Entry::Combine(f) => f.call(&mut live.store, (op, len)),
        };
        let r = match result {
            Ok(r) => r,
            Err(e) => {
                let mut message = describe(&e, &self.limits, &self.export);
                let trap = e.downcast_ref::<Trap>();
                if !matches!(trap, Some(Trap::Interrupt | Trap::OutOfFuel)) {
                    // A Rust guest's panic hook leaves the panic message.
                    self.arm(&mut live.store, Some(20));
                    if let Some(m) = last_error_message(live).filter(|m| !m.is_empty()) {
                        message = format!("{message}; guest says: {m}");
                    }
                }
                if let Some(out) = live.store.data().output.text() {
                    message = format!("{message}; guest output: {out}");
                }
                return Err(Failure {
                    message,
                    element: cursor(live),
                });
            }
        };
        if r < 0 {
            let m = last_error_message(live)
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("{} returned error code {r}", self.export));
            return Err(Failure {
                message: m,
                element: cursor(live),
            });
        }
        let (ptr, len) = abi::unpack(r);
        let size = live.memory.data_size(&live.store);
        let (ptr, len) = (ptr as usize, len as usize);
        if ptr.checked_add(len).is_none_or(|end| end > size) {
            return Err(Failure::new(format!(
                "malformed output: {} returned bytes {ptr}..{} outside its {size}-byte memory",
                self.export,
                ptr as u64 + len as u64
            )));
        }
        Ok((ptr, len))
    }
}

/// Copies `bytes` into the guest's input arena, growing it if needed.
fn write_arena(live: &mut Live, bytes: &[u8], limits: &Limits) -> Result<i32, Failure> {
    let len = i32::try_from(bytes.len())
        .map_err(|_| Failure::new(format!("batch of {} bytes is over 2 GiB", bytes.len())))?;
    if bytes.len() > live.capacity as usize {
        // Grow geometrically so a slowly growing batch size does not call
        // oxbeam_alloc per batch.
        let want = bytes.len().max(live.capacity as usize * 2).max(64 << 10);
        let want = i32::try_from(want).unwrap_or(len);
        let ptr = live
            .alloc
            .call(&mut live.store, want)
            .map_err(|e| Failure::new(describe(&e, limits, abi::EXPORT_ALLOC)))?;
        if ptr == 0 {
            return Err(Failure::new(format!(
                "oxbeam_alloc could not provide {want} bytes for a batch (memory cap {} bytes)",
                limits.max_memory_bytes
            )));
        }
        live.arena = ptr as u32;
        live.capacity = want as u32;
    }
    let start = live.arena as usize;
    let dst = live
        .memory
        .data_mut(&mut live.store)
        .get_mut(start..start + bytes.len())
        .ok_or_else(|| {
            Failure::new(format!(
                "malformed output: oxbeam_alloc returned arena {start} outside memory"
            ))
        })?;
    dst.copy_from_slice(bytes);
    Ok(len)
}

/// The record index the guest last reported in the batch header.
fn cursor(live: &Live) -> Option<u32> {
    let at = live.arena as usize + 4;
    let b = live.memory.data(&live.store).get(at..at + 4)?;
    let c = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    (c != abi::NO_CURSOR).then_some(c)
}

fn last_error_message(live: &mut Live) -> Option<String> {
    let f = live.last_error.as_ref()?;
    let r = f.call(&mut live.store, ()).ok()?;
    if r <= 0 {
        return None;
    }
    let (ptr, len) = abi::unpack(r);
    let data = live.memory.data(&live.store);
    let bytes = data.get(ptr as usize..(ptr as usize).checked_add(len.min(4096) as usize)?)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// A one-line description of a failed call to `what`.
fn describe(e: &wasmtime::Error, limits: &Limits, what: &str) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!(
            "deadline exceeded: {what} ran past the bundle deadline of {} ms (wasm trap: interrupt)",
            limits.bundle_deadline.as_millis()
        ),
        Some(Trap::OutOfFuel) => format!(
            "fuel exhausted: {what} used more than {} fuel in one bundle (wasm trap: all fuel consumed)",
            limits.fuel_per_bundle.unwrap_or(0)
        ),
        Some(trap) => format!("wasm trap in {what}: {trap}"),
        None => {
            let c = chain(e);
            if c.contains("growing memory") || c.contains("memory growth") {
                format!(
                    "memory limit exceeded: {what} tried to grow memory past the cap of {} bytes ({c})",
                    limits.max_memory_bytes
                )
            } else {
                format!("wasm error in {what}: {c}")
            }
        }
    }
}
