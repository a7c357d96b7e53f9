//! Locating the pinned `apache-beam` Python package the tests compare against.
//!
//! The interpreter is `$OXBEAM_PYTHON`, else `<workspace>/.venv/bin/python`
//! (created by `./scripts/test`). A missing interpreter fails the test with a
//! message saying how to get one: these tests must never pass vacuously.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python interpreter that has the pinned apache-beam installed.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OXBEAM_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(
        &std::env::var_os("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with apache-beam: run ./scripts/test (creates .venv) or set OXBEAM_PYTHON"
    );
    venv
}

/// Runs `script` with the Beam interpreter and returns its stdout bytes.
pub fn run(script: &str) -> Vec<u8> {
    run_with_args(script, &[])
}

/// Runs `script` with `sys.argv[1..]` set to `args`; returns its stdout bytes.
pub fn run_with_args(script: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(python())
        .args(["-W", "ignore", "-c", script])
        .args(args)
        .output()
        .expect("start python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Directory of `apache_beam.portability.api` in the pinned package.
pub fn portability_api_dir() -> PathBuf {
    let out = run(
        "import os, apache_beam.portability.api as m; print(os.path.dirname(m.__file__), end='')",
    );
    PathBuf::from(String::from_utf8(out).unwrap())
}

/// Path of `standard_coders.yaml` shipped in the pinned package.
pub fn standard_coders_yaml() -> PathBuf {
    portability_api_dir().join("standard_coders.yaml")
}
