//! [`InMemoryHarness`]: an SDK harness on a thread of the runner's process,
//! spoken to over the in-memory transport.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use oxbeam_model::fn_execution::ProcessBundleDescriptor;

use super::{FnServer, GrpcExecutor, serve_harness_with};
use crate::{BundleProcessor, Error, Executor, Result};

/// How long the harness thread may take to open its control channel.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// How long a dropped harness may take to finish its bundles and stop.
const CLOSE_WITHIN: Duration = Duration::from_secs(2);

static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);

/// Runs another executor's bundles through the whole Fn API protocol
/// (registration, control requests and responses, the data channel with
/// its `is_last` ends, State API calls for side inputs and user state,
/// timers, splits) without leaving the process: the wrapped executor serves
/// as an SDK harness on its own thread ([`serve_harness_with`]) over the
/// [`super::InMemoryTransport`], and this executor drives it as a
/// [`GrpcExecutor`] would drive a harness process.
///
/// For testing the protocol (same results as the direct executor) and for
/// measuring what the protocol costs apart from gRPC. The harness stops
/// when this is dropped.
pub struct InMemoryHarness {
    name: String,
    executor: GrpcExecutor,
    server: Arc<FnServer>,
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
}

impl std::fmt::Debug for InMemoryHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryHarness")
            .field("name", &self.name)
            .finish()
    }
}

impl InMemoryHarness {
    /// Starts a Fn API server and a harness thread serving `executor` on
    /// it.
    ///
    /// # Errors
    /// If the server or the thread cannot start.
    pub fn start(executor: Arc<dyn Executor>) -> Result<InMemoryHarness> {
        let server = Arc::new(FnServer::start()?);
        let worker_id = format!(
            "in-memory-{}-{}",
            executor.name(),
            NEXT_WORKER.fetch_add(1, Ordering::Relaxed)
        );
        let name = format!("{} (in-memory Fn API harness)", executor.name());
        let transport = server.in_memory_transport();
        let id = worker_id.clone();
        let thread = std::thread::Builder::new()
            .name(format!("oxbeam-{worker_id}"))
            .spawn(move || serve_harness_with(transport, &id, executor))
            .map_err(|e| Error::Internal(format!("cannot start the harness thread: {e}")))?;
        Ok(InMemoryHarness {
            name,
            executor: server
                .executor(&worker_id)
                .with_connect_timeout(CONNECT_WITHIN)
                .with_request_embedding(true),
            server,
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl Executor for InMemoryHarness {
    fn name(&self) -> &str {
        &self.name
    }

    fn create_processor(
        &self,
        descriptor: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>> {
        self.executor.create_processor(descriptor)
    }
}

impl Drop for InMemoryHarness {
    fn drop(&mut self) {
        // Closing the control channel ends the harness's loop; it tears its
        // processors down and its thread returns.
        self.server.shared.close_workers(CLOSE_WITHIN);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("in-memory harness {}: {e}", self.name),
                Err(_) => tracing::warn!("in-memory harness {} panicked", self.name),
            }
        }
    }
}
