//! The WASI preview 1 functions a Wasm UDF may import
//! (`wasi_snapshot_preview1`), deny by default.
//!
//! Guests built for `wasm32-wasip1` import a few of them even when they
//! never use the system (environment and `fd_write` for panic messages,
//! `proc_exit`). The host gives every module the ones it imports:
//!
//! - standard output and error (`fd_write` on fds 1 and 2) are accepted and
//!   kept, the last [`OUTPUT_KEPT`] bytes per instance, for the function's
//!   failure messages; other fds are `EBADF`;
//! - the environment (`environ_*`) holds only the variables granted to the
//!   function (`WasmGrants.env`); there are no arguments;
//! - clocks (`clock_time_get`, `clock_res_get`) and `random_get` answer
//!   `ENOTCAPABLE` unless granted;
//! - `proc_exit` ends the call with a trap naming the exit code;
//! - every other preview 1 function (files, sockets, polling, ...) answers
//!   `ENOTCAPABLE`: there is no filesystem and no network.
//!
//! Imports from any other module still fail to link.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Extern, ExternType, Linker, Memory, Module, Val, ValType};

use crate::runtime::StoreState;

/// The WASI preview 1 import module.
pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

/// Bytes of standard output and error kept per instance.
pub(crate) const OUTPUT_KEPT: usize = 4096;

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOTCAPABLE: i32 = 76;

/// What one function's instances may reach (from `WasmGrants`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// `KEY=VALUE` strings of the guest's environment.
    pub env: Vec<String>,
    /// Wall-clock and monotonic time.
    pub clock: bool,
    /// Random bytes.
    pub random: bool,
}

impl Grants {
    /// From the payload's message (`None`: nothing granted).
    pub(crate) fn from_proto(g: Option<&oxbeam_model::oxbeam::WasmGrants>) -> Self {
        g.map(|g| Grants {
            env: g.env.clone(),
            clock: g.clock,
            random: g.random,
        })
        .unwrap_or_default()
    }
}

/// Standard output and error of one instance: the last bytes written.
#[derive(Debug, Default)]
pub(crate) struct Output {
    kept: Vec<u8>,
}

impl Output {
    fn write(&mut self, bytes: &[u8]) {
        self.kept.extend_from_slice(bytes);
        if self.kept.len() > OUTPUT_KEPT {
            let cut = self.kept.len() - OUTPUT_KEPT;
            self.kept.drain(..cut);
        }
    }

    /// What the guest wrote, trimmed, if anything.
    pub(crate) fn text(&self) -> Option<String> {
        let s = String::from_utf8_lossy(&self.kept);
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    }
}

/// Defines in `linker` the preview 1 functions `module` imports; fails on
/// imports from any other module, or preview 1 imports that are not
/// functions.
pub(crate) fn link(linker: &mut Linker<StoreState>, module: &Module) -> Result<(), String> {
    let mut defined = std::collections::HashSet::new();
    for import in module.imports() {
        let (from, name) = (import.module(), import.name());
        if from != MODULE {
            return Err(format!(
                "module imports {from}::{name}, but Wasm UDFs get no imports besides \
                 WASI preview 1 ({MODULE})"
            ));
        }
        let ExternType::Func(ty) = import.ty() else {
            return Err(format!(
                "module imports {from}::{name} as a non-function; WASI preview 1 has only functions"
            ));
        };
        if !defined.insert(name) {
            continue;
        }
        let result = match name {
            "fd_write" => linker.func_wrap(MODULE, name, fd_write),
            "environ_sizes_get" => linker.func_wrap(MODULE, name, environ_sizes_get),
            "environ_get" => linker.func_wrap(MODULE, name, environ_get),
            "args_sizes_get" => linker.func_wrap(MODULE, name, args_sizes_get),
            "args_get" => linker.func_wrap(MODULE, name, |_: i32, _: i32| ESUCCESS),
            "clock_time_get" => linker.func_wrap(MODULE, name, clock_time_get),
            "clock_res_get" => linker.func_wrap(MODULE, name, clock_res_get),
            "random_get" => linker.func_wrap(MODULE, name, random_get),
            "sched_yield" => linker.func_wrap(MODULE, name, || ESUCCESS),
            "proc_exit" => linker.func_wrap(MODULE, name, proc_exit),
            _ => {
                // Every other preview 1 function returns an errno.
                if ty.results().len() != 1 || !matches!(ty.results().next(), Some(ValType::I32)) {
                    return Err(format!(
                        "module imports {from}::{name} with type {ty:?}, which is not a WASI \
                         preview 1 function"
                    ));
                }
                linker.func_new(MODULE, name, ty.clone(), |_, _, results| {
                    results[0] = Val::I32(ENOTCAPABLE);
                    Ok(())
                })
            }
        };
        result.map_err(|e| format!("cannot provide {from}::{name}: {e}"))?;
    }
    Ok(())
}

fn memory(caller: &mut Caller<'_, StoreState>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    }
}

/// Reads `len` bytes at `ptr` of the guest's memory.
fn read(caller: &mut Caller<'_, StoreState>, ptr: i32, len: usize) -> Option<Vec<u8>> {
    let m = memory(caller)?;
    let start = usize::try_from(ptr as u32).ok()?;
    m.data(&*caller)
        .get(start..start.checked_add(len)?)
        .map(<[u8]>::to_vec)
}

/// Writes `bytes` at `ptr` of the guest's memory; false if out of bounds.
fn write(caller: &mut Caller<'_, StoreState>, ptr: i32, bytes: &[u8]) -> bool {
    let Some(m) = memory(caller) else {
        return false;
    };
    let start = ptr as u32 as usize;
    match m
        .data_mut(&mut *caller)
        .get_mut(start..start.saturating_add(bytes.len()))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn u32_at(caller: &mut Caller<'_, StoreState>, ptr: i32) -> Option<u32> {
    let b = read(caller, ptr, 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn fd_write(
    mut caller: Caller<'_, StoreState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> i32 {
    if fd != 1 && fd != 2 {
        return EBADF;
    }
    let mut total: u32 = 0;
    for i in 0..iovs_len.max(0) {
        let at = iovs.wrapping_add(i.wrapping_mul(8));
        let (Some(buf), Some(len)) = (
            u32_at(&mut caller, at),
            u32_at(&mut caller, at.wrapping_add(4)),
        ) else {
            return EFAULT;
        };
        let Some(bytes) = read(&mut caller, buf as i32, len as usize) else {
            return EFAULT;
        };
        caller.data_mut().output.write(&bytes);
        // Forwarded as written, as a harness forwards a worker's output.
        let _ = std::io::stderr().write_all(&bytes);
        total = total.saturating_add(len);
    }
    if write(&mut caller, nwritten, &total.to_le_bytes()) {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn environ_sizes_get(mut caller: Caller<'_, StoreState>, count: i32, size: i32) -> i32 {
    let env = &caller.data().grants.env;
    let n = env.len() as u32;
    let bytes: usize = env.iter().map(|v| v.len() + 1).sum();
    let bytes = bytes as u32;
    if write(&mut caller, count, &n.to_le_bytes()) && write(&mut caller, size, &bytes.to_le_bytes())
    {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn environ_get(mut caller: Caller<'_, StoreState>, environ: i32, buf: i32) -> i32 {
    let env = caller.data().grants.env.clone();
    let mut at = buf as u32;
    for (i, v) in env.iter().enumerate() {
        let slot = environ.wrapping_add(4 * i as i32);
        let mut s = v.as_bytes().to_vec();
        s.push(0);
        if !write(&mut caller, slot, &at.to_le_bytes()) || !write(&mut caller, at as i32, &s) {
            return EFAULT;
        }
        at = at.wrapping_add(s.len() as u32);
    }
    ESUCCESS
}

fn args_sizes_get(mut caller: Caller<'_, StoreState>, count: i32, size: i32) -> i32 {
    if write(&mut caller, count, &0u32.to_le_bytes())
        && write(&mut caller, size, &0u32.to_le_bytes())
    {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn clock_time_get(mut caller: Caller<'_, StoreState>, id: i32, _precision: i64, out: i32) -> i32 {
    if !caller.data().grants.clock {
        return ENOTCAPABLE;
    }
    let nanos = match id {
        // realtime
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        // monotonic: since the store was created
        1 => caller.data().created.elapsed().as_nanos() as u64,
        _ => return EINVAL,
    };
    if write(&mut caller, out, &nanos.to_le_bytes()) {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn clock_res_get(mut caller: Caller<'_, StoreState>, id: i32, out: i32) -> i32 {
    if !caller.data().grants.clock {
        return ENOTCAPABLE;
    }
    if id != 0 && id != 1 {
        return EINVAL;
    }
    if write(&mut caller, out, &1000u64.to_le_bytes()) {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn random_get(mut caller: Caller<'_, StoreState>, buf: i32, len: i32) -> i32 {
    if !caller.data().grants.random {
        return ENOTCAPABLE;
    }
    let mut bytes = vec![0u8; len.max(0) as usize];
    if getrandom::fill(&mut bytes).is_err() {
        return EFAULT;
    }
    if write(&mut caller, buf, &bytes) {
        ESUCCESS
    } else {
        EFAULT
    }
}

fn proc_exit(_: Caller<'_, StoreState>, code: i32) -> wasmtime::Result<()> {
    Err(wasmtime::Error::msg(format!(
        "the guest called proc_exit({code})"
    )))
}
