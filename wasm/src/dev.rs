//! Development helper shared by tests, benchmarks and the conformance suite:
//! builds the guest SDK's `guest_udfs` example module with cargo.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `oxbeam-wasm-guest`'s `guest_udfs` example for
/// `wasm32-unknown-unknown` (release, without debug info) in the workspace at
/// `workspace_root`, and returns the module's bytes.
///
/// The module lands in `$CARGO_TARGET_DIR` (or `<root>/target`), so repeated
/// calls reuse cargo's build.
///
/// # Errors
/// If cargo cannot run, the build fails (typically: the Rust target is not
/// installed — `rustup target add wasm32-unknown-unknown`; scripts/env.sh
/// does it), or the module cannot be read. The message carries cargo's
/// diagnostics.
pub fn build_guest_udfs(workspace_root: &Path) -> Result<Vec<u8>, String> {
    build_guest_udfs_for(workspace_root, "wasm32-unknown-unknown")
}

/// [`build_guest_udfs`] for another Wasm target, e.g. `wasm32-wasip1`
/// (whose std imports a few WASI functions, see `crate::wasi`).
///
/// # Errors
/// As [`build_guest_udfs`].
pub fn build_guest_udfs_for(workspace_root: &Path, target: &str) -> Result<Vec<u8>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root)
        // Small modules: no debug info in the guest (the workspace release
        // profile keeps it for the host). One codegen unit with LTO inlines
        // the guest SDK's loop into each UDF: the tokenizer runs 15% faster.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .args([
            "build",
            "-q",
            "-p",
            "oxbeam-wasm-guest",
            "--target",
            target,
            "--release",
            "--example",
            "guest_udfs",
        ])
        .output()
        .map_err(|e| format!("running cargo to build the Wasm guest: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the Wasm guest failed (is the {target} target installed? \
             `rustup target add {target}`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root.join("target"));
    let path = target_dir
        .join(target)
        .join("release/examples/guest_udfs.wasm");
    std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))
}
