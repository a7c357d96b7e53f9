//! Control-request and control-response embedding: a small bundle's inputs
//! travel in its ProcessBundleRequest and its outputs in the response, so
//! the data channel carries nothing; a large bundle still streams. Checked
//! by counting the messages the harness sends on its data channel, through
//! a transport that wraps the in-memory one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use oxbeam_fn_api::{
    Bundle, EMBED_BYTES, Executor, FnServer, MessageStream, Metrics, NoSideInputs, OutboundStream,
    Transport, serve_harness_with,
};
use oxbeam_model::fn_execution::{
    Elements, InstructionRequest, InstructionResponse, ProcessBundleDescriptor, ProvisionInfo,
    StateRequest, StateResponse,
};
use tokio_stream::StreamExt;
use tonic::Status;

use crate::testing::{SINK, SOURCE, TestExecutor, UPPER, descriptor, elements, values};

/// The in-memory transport, counting the harness's data messages.
struct Counting {
    inner: Arc<dyn Transport>,
    sent: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Transport for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn control(
        &self,
        worker: &str,
        outbound: OutboundStream<InstructionResponse>,
    ) -> Result<MessageStream<InstructionRequest>, Status> {
        self.inner.control(worker, outbound).await
    }

    async fn descriptor(&self, worker: &str, id: &str) -> Result<ProcessBundleDescriptor, Status> {
        self.inner.descriptor(worker, id).await
    }

    async fn provision(&self) -> Result<ProvisionInfo, Status> {
        self.inner.provision().await
    }

    async fn data(
        &self,
        endpoint: &str,
        worker: &str,
        outbound: OutboundStream<Elements>,
    ) -> Result<MessageStream<Elements>, Status> {
        let sent = self.sent.clone();
        let counted = outbound.map(move |e| {
            sent.fetch_add(1, Ordering::SeqCst);
            e
        });
        self.inner.data(endpoint, worker, Box::pin(counted)).await
    }

    async fn state(
        &self,
        endpoint: &str,
        worker: &str,
        outbound: OutboundStream<StateRequest>,
    ) -> Result<MessageStream<StateResponse>, Status> {
        self.inner.state(endpoint, worker, outbound).await
    }
}

fn run(executor: &dyn Executor, input: &[u8]) -> Vec<String> {
    let mut p = executor
        .create_processor(Arc::new(descriptor(UPPER, b"", false)))
        .unwrap();
    let mut out = Vec::new();
    let mut sink = |s: &str, e: &[u8]| {
        assert_eq!(s, SINK);
        out.extend_from_slice(e);
        Ok(())
    };
    let mut metrics = Metrics::default();
    p.process_bundle(&mut Bundle::new(
        vec![(SOURCE, input)],
        &mut sink,
        &NoSideInputs,
        &mut metrics,
    ))
    .unwrap();
    values(&out)
}

#[test]
fn small_bundles_travel_in_the_control_messages_and_large_ones_stream() {
    let server = FnServer::start().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let transport = Arc::new(Counting {
        inner: server.in_memory_transport(),
        sent: sent.clone(),
    });
    let harness = std::thread::spawn(move || {
        serve_harness_with(transport, "counted", Arc::new(TestExecutor))
    });
    let executor = server.executor("counted").with_request_embedding(true);

    // Small: inputs in the request, outputs in the response.
    let out = run(&executor, &elements(&["a", "b", "c"]));
    assert_eq!(out, ["A", "B", "C"]);
    assert_eq!(sent.load(Ordering::SeqCst), 0, "the data channel was used");

    // Large (past the embedding limit both ways): the data channel carries
    // the outputs, in order.
    let many: Vec<String> = (0..EMBED_BYTES / 8 + 1000)
        .map(|i| format!("v{i:07}"))
        .collect();
    let out = run(&executor, &elements(&many));
    let want: Vec<String> = many.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(out, want);
    assert!(sent.load(Ordering::SeqCst) >= 1, "nothing streamed");

    // Without request embedding, the inputs stream; results are the same.
    let plain = server.executor("counted");
    assert_eq!(run(&plain, &elements(&["x"])), ["X"]);

    drop(executor);
    drop(plain);
    drop(server);
    let _ = harness.join();
}
