//! Integration tests of oxbeam-model against the pinned `apache-beam` package.

mod beam_python;
mod coder_props;
mod coder_vectors;
mod opaque_rows;
mod wire_compat;
