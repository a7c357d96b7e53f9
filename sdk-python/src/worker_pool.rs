//! `--environment_type=LOOPBACK`: a Beam worker pool
//! (`BeamFnExternalWorkerPool`) served from the pipeline's own process, as
//! Beam's Python SDK serves one for LOOPBACK submissions.
//!
//! The SDK submits the pipeline with a `beam:env:external:v1` environment
//! naming this pool; the job service asks it to start workers
//! (`StartWorker`), and each runs as a thread of this process, serving the
//! runner's control endpoint with the same executors as
//! `python -m oxbeam.runners.worker` (Python stages, Wasm stages). User
//! functions therefore run in the interpreter that defined them. A worker
//! ends when the runner closes its control stream; `StopWorker` has nothing
//! left to do.

use std::sync::Arc;

use oxbeam_model::fn_execution::{
    StartWorkerRequest, StartWorkerResponse, StopWorkerRequest, StopWorkerResponse,
    beam_fn_external_worker_pool_server::{
        BeamFnExternalWorkerPool, BeamFnExternalWorkerPoolServer,
    },
};
use pyo3::prelude::*;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::errors;

/// A worker pool listening on 127.0.0.1 (an ephemeral port) until
/// [`WorkerPool::stop`] or until dropped.
#[pyclass(module = "oxbeam._oxbeam")]
pub struct WorkerPool {
    endpoint: String,
    shutdown: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

#[pymethods]
impl WorkerPool {
    /// Starts the pool's gRPC service.
    ///
    /// # Errors
    /// `ExecutionError` if it cannot bind a port.
    #[new]
    fn new() -> PyResult<Self> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            errors::ExecutionError::new_err(format!("LOOPBACK worker pool: {what}: {e}"))
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("oxbeam-worker-pool")
            .enable_all()
            .build()
            .map_err(|e| fail("cannot start its runtime", &e))?;
        let incoming = runtime
            .block_on(async {
                tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
            })
            .map_err(|e| fail("cannot bind a port", &e))?;
        let addr = incoming
            .local_addr()
            .map_err(|e| fail("no local address", &e))?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .add_service(BeamFnExternalWorkerPoolServer::new(Pool));
        runtime.spawn(async move {
            let stopped = async {
                let _ = stop.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                eprintln!("oxbeam LOOPBACK worker pool failed: {e}");
            }
        });
        Ok(WorkerPool {
            endpoint: addr.to_string(),
            shutdown: Some(shutdown),
            runtime: Some(runtime),
        })
    }

    /// `host:port` of the pool, for the `beam:env:external:v1` payload.
    #[getter]
    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Stops accepting `StartWorker` requests (workers already started run
    /// until the runner closes their control streams).
    fn stop(&mut self, py: Python<'_>) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(rt) = self.runtime.take() {
            py.detach(|| rt.shutdown_background());
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

struct Pool;

#[tonic::async_trait]
impl BeamFnExternalWorkerPool for Pool {
    async fn start_worker(
        &self,
        request: Request<StartWorkerRequest>,
    ) -> Result<Response<StartWorkerResponse>, Status> {
        let r = request.into_inner();
        let control = r.control_endpoint.map(|e| e.url).unwrap_or_default();
        let answer = |error: String| Ok(Response::new(StartWorkerResponse { error }));
        if control.is_empty() {
            return answer(format!("worker {}: no control endpoint", r.worker_id));
        }
        let id = r.worker_id;
        let name = format!("oxbeam-loopback-{id}");
        let config = oxbeam_fn_api::HarnessConfig {
            control_endpoint: control,
            id: id.clone(),
        };
        let worker = id.clone();
        let started = std::thread::Builder::new().name(name).spawn(move || {
            let executor: Arc<dyn oxbeam_fn_api::Executor> = crate::worker_executor();
            if let Err(e) = oxbeam_fn_api::serve_harness(config, executor) {
                eprintln!("oxbeam LOOPBACK worker {worker}: {e}");
            }
        });
        match started {
            Ok(_) => answer(String::new()),
            Err(e) => answer(format!("worker {id}: cannot start a thread: {e}")),
        }
    }

    async fn stop_worker(
        &self,
        _request: Request<StopWorkerRequest>,
    ) -> Result<Response<StopWorkerResponse>, Status> {
        Ok(Response::new(StopWorkerResponse::default()))
    }
}
