//! Standard coders (placeholder while being written).
