//! Window merging by an SDK harness, for groupings whose merging window
//! fn the runner does not know (`oxbeam_runner_core::merge_windows`).

use std::sync::{Arc, Mutex};

use oxbeam_fn_api::{Bundle, BundleProcessor, Executor, Metrics, NoSideInputs, OutputSink};
use oxbeam_runner_core::merge_windows::{
    MERGE_SINK, MERGE_SOURCE, MergeWindowsSpec, WindowMap, decode_response, encode_request,
    merged_windows,
};

use crate::Error;
use crate::shuffle::WindowMerger;

/// Runs Beam's `merge_windows` transform on a harness, one bundle per key.
pub(crate) struct SdkWindowMerger {
    transform: String,
    processor: Mutex<Box<dyn BundleProcessor>>,
}

impl SdkWindowMerger {
    pub(crate) fn new(
        transform: &str,
        spec: &MergeWindowsSpec,
        executor: &Arc<dyn Executor>,
    ) -> Result<Self, Error> {
        Ok(SdkWindowMerger {
            transform: transform.to_string(),
            processor: Mutex::new(
                executor
                    .create_processor(spec.descriptor.clone())
                    .map_err(Error::Execution)?,
            ),
        })
    }

    fn bad(&self, message: impl std::fmt::Display) -> Error {
        Error::Execution(oxbeam_fn_api::Error::invalid(
            format!("merge_windows response for GroupByKey '{}'", self.transform),
            message,
        ))
    }
}

/// Collects the harness's merge responses.
#[derive(Default)]
struct Responses(Vec<u8>);

impl OutputSink for Responses {
    fn emit(&mut self, sink: &str, element: &[u8]) -> oxbeam_fn_api::Result<()> {
        if sink != MERGE_SINK {
            return Err(oxbeam_fn_api::Error::Internal(format!(
                "merge_windows output for unknown sink {sink}"
            )));
        }
        self.0.extend_from_slice(element);
        Ok(())
    }
}

impl WindowMerger for SdkWindowMerger {
    fn merge(&self, key: &[u8], windows: &[(i64, i64)]) -> Result<WindowMap, Error> {
        let mut input = Vec::new();
        encode_request(&mut input, key, windows);
        let mut out = Responses::default();
        let mut metrics = Metrics::default();
        {
            let mut processor = self
                .processor
                .lock()
                .map_err(|_| Error::Internal("poisoned window merger".into()))?;
            let mut bundle = Bundle::new(
                vec![(MERGE_SOURCE, input.as_slice())],
                &mut out,
                &NoSideInputs,
                &mut metrics,
            );
            processor
                .process_bundle(&mut bundle)
                .map_err(Error::Execution)?;
        }
        let mut bytes = out.0.as_slice();
        let (nonce, merges) = decode_response(&mut bytes).map_err(|e| self.bad(e.0))?;
        if nonce != key || !bytes.is_empty() {
            return Err(self.bad("expected exactly one response, for the key sent"));
        }
        Ok(merged_windows(windows, &merges))
    }
}
