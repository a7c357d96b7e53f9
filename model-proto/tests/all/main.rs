//! Integration tests of oxbeam-model against the pinned `apache-beam` package.

mod beam_python;
mod wire_compat;
