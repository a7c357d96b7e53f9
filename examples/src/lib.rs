//! Runnable Oxbeam example pipelines.
