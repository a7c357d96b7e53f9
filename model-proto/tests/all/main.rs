//! Integration tests of oxbeam-model against the pinned `apache-beam` package.

mod beam_python;
mod coder_props;
mod coder_vectors;
mod wire_compat;
