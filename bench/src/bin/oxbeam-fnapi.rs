//! The Fn API's cost across processes (see `bench/compare.py fnapi`):
//!
//! ```text
//! oxbeam-fnapi [--elements N] [--bundles B] [--streams S] [--round-trips R] [--in-process | --in-memory]
//! ```
//!
//! Starts this binary again as the SDK harness process of a
//! `beam:env:process:v1` environment (`Harnesses`: a Fn API server on
//! 127.0.0.1, `--worker` plus Beam's boot flags) serving an identity
//! executor, then measures through its executor:
//! - **data plane**: `B` bundles of `N` 100-byte elements each, every
//!   element sent to the harness and back (10 MB each way per bundle at
//!   the default N); with `--streams S`, S such streams of bundles at once,
//!   each on its own processor and thread (runner-local runs a bundle per
//!   worker thread), through the same harness;
//! - **control round trip**: `R` empty bundles, each a ProcessBundleRequest,
//!   the closing of its data ports, and the response.
//!
//! With `--in-process` the harness is a thread of this process (still over
//! loopback gRPC); with `--in-memory` it is a thread connected by the
//! in-memory transport (the same protocol, no sockets, no serialization).
//! Prints one JSON line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use oxbeam_fn_api::{
    Bundle, BundleProcessor, Executor, GrpcTransport, HarnessConfig, HarnessOptions, Harnesses,
    Metrics, NoSideInputs, Transport, serve_harness, serve_harness_with,
};
use oxbeam_model::coders::{Context, WindowedValueHeader, encode_windowed_bytes};
use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::Timestamp;
use prost::Message;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes of one element: an 86-byte value, its length, and the
/// windowed-value header of the global window.
const ELEMENT_BYTES: usize = 100;
const SOURCE: &str = "source";
const SINK: &str = "sink";

#[derive(Parser, Debug)]
struct Args {
    /// 100-byte elements per data-plane bundle.
    #[arg(long, default_value_t = 100_000)]
    elements: usize,
    /// Data-plane bundles measured (after 3 warm-up bundles).
    #[arg(long, default_value_t = 20)]
    bundles: usize,
    /// Bundles in flight at once on the data plane, each stream its own
    /// processor on its own thread (as runner-local runs a bundle per
    /// worker thread); 1: one bundle after another.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Empty bundles measured for the control round trip.
    #[arg(long, default_value_t = 2000)]
    round_trips: usize,
    /// Serve the harness from a thread of this process instead.
    #[arg(long, conflicts_with = "in_memory")]
    in_process: bool,
    /// Serve the harness from a thread over the in-memory transport.
    #[arg(long)]
    in_memory: bool,
    /// Serve as the harness (set when this binary starts itself).
    #[arg(long, hide = true)]
    worker: bool,
    #[arg(long, hide = true)]
    id: Option<String>,
    #[arg(long = "control_endpoint", hide = true)]
    control_endpoint: Option<String>,
    /// The other boot flags a runner passes (unused).
    #[arg(long = "logging_endpoint", hide = true)]
    _logging_endpoint: Option<String>,
    #[arg(long = "artifact_endpoint", hide = true)]
    _artifact_endpoint: Option<String>,
    #[arg(long = "provision_endpoint", hide = true)]
    _provision_endpoint: Option<String>,
    #[arg(long = "semi_persist_dir", hide = true)]
    _semi_persist_dir: Option<String>,
}

/// Sends every input element to the sink unchanged.
struct Identity;

impl Executor for Identity {
    fn name(&self) -> &str {
        "identity"
    }

    fn create_processor(
        &self,
        _: Arc<ProcessBundleDescriptor>,
    ) -> oxbeam_fn_api::Result<Box<dyn BundleProcessor>> {
        Ok(Box::new(Identity))
    }
}

impl BundleProcessor for Identity {
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> oxbeam_fn_api::Result<()> {
        for (_, bytes) in &bundle.inputs {
            // Elements are fixed-size: no decoding needed to split them.
            for element in bytes.chunks(ELEMENT_BYTES) {
                bundle.sink.emit(SINK, element)?;
            }
        }
        Ok(())
    }
}

/// `source -> sink` over windowed bytes in the global window.
fn descriptor() -> ProcessBundleDescriptor {
    let coder = |urn: &str, comps: &[&str]| pb::Coder {
        spec: Some(pb::FunctionSpec {
            urn: urn.into(),
            payload: Default::default(),
        }),
        component_coder_ids: comps.iter().map(|s| s.to_string()).collect(),
    };
    let mut d = ProcessBundleDescriptor {
        id: "fnapi-bench".into(),
        ..Default::default()
    };
    d.coders
        .insert("bytes".into(), coder(urns::standard_coders::BYTES, &[]));
    d.coders.insert(
        "gw".into(),
        coder(urns::standard_coders::GLOBAL_WINDOW, &[]),
    );
    d.coders.insert(
        "wv".into(),
        coder(urns::standard_coders::WINDOWED_VALUE, &["bytes", "gw"]),
    );
    let port =
        |urn: &str, inputs: Vec<(String, String)>, outputs: Vec<(String, String)>| pb::PTransform {
            unique_name: urn.into(),
            spec: Some(pb::FunctionSpec {
                urn: urn.into(),
                payload: RemoteGrpcPort {
                    api_service_descriptor: None,
                    coder_id: "wv".into(),
                }
                .encode_to_vec()
                .into(),
            }),
            inputs: inputs.into_iter().collect(),
            outputs: outputs.into_iter().collect(),
            ..Default::default()
        };
    let pc = || vec![("pc".to_string(), "pc".to_string())];
    d.transforms.insert(
        SOURCE.into(),
        port(urns::fn_api_transforms::runner::DATA_SOURCE, vec![], pc()),
    );
    d.transforms.insert(
        SINK.into(),
        port(urns::fn_api_transforms::runner::DATA_SINK, pc(), vec![]),
    );
    d
}

/// Runs one bundle of `input` through `processor`; returns the bytes that
/// came back.
fn run(processor: &mut dyn BundleProcessor, input: &[u8]) -> anyhow::Result<usize> {
    let mut bytes = 0;
    let mut sink = |_: &str, e: &[u8]| {
        bytes += e.len();
        Ok(())
    };
    let mut metrics = Metrics::default();
    let mut bundle = Bundle::new(
        vec![(SOURCE, input)],
        &mut sink,
        &NoSideInputs,
        &mut metrics,
    );
    processor.process_bundle(&mut bundle)?;
    drop(bundle);
    Ok(bytes)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.worker {
        let config = HarnessConfig {
            control_endpoint: args
                .control_endpoint
                .ok_or_else(|| anyhow::anyhow!("--worker needs --control_endpoint"))?,
            id: args.id.unwrap_or_else(|| "bench".into()),
        };
        serve_harness(config, Arc::new(Identity))?;
        return Ok(());
    }
    let started = Instant::now();
    let harnesses = Harnesses::start(HarnessOptions {
        connect_timeout: Duration::from_secs(30),
        ..HarnessOptions::default()
    })?;
    let executor: Arc<dyn Executor> = if args.in_memory || args.in_process {
        // A harness thread of this process, over either transport.
        let transport: Arc<dyn Transport> = if args.in_memory {
            harnesses.server().in_memory_transport()
        } else {
            Arc::new(GrpcTransport::new(harnesses.server().url()))
        };
        std::thread::spawn(move || serve_harness_with(transport, "bench", Arc::new(Identity)));
        Arc::new(
            harnesses
                .server()
                .executor("bench")
                .with_connect_timeout(Duration::from_secs(30))
                .with_request_embedding(true),
        )
    } else {
        let exe = std::env::current_exe()?;
        let environment = pb::Environment {
            urn: urns::standard_environments::environments::PROCESS.into(),
            payload: pb::ProcessPayload {
                command: format!("{} --worker", exe.display()),
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
            capabilities: vec![oxbeam_fn_api::CONTROL_REQUEST_ELEMENTS_EMBEDDING.to_string()],
            ..Default::default()
        };
        harnesses.executor_for("bench", &environment)?
    };
    let mut processor = executor.create_processor(Arc::new(descriptor()))?;
    let connect = started.elapsed();

    let header = WindowedValueHeader::global(Timestamp::from_millis(0));
    let mut input = Vec::with_capacity(args.elements * ELEMENT_BYTES);
    for i in 0..args.elements {
        encode_windowed_bytes(
            &header,
            format!("{i:0>86}").as_bytes(),
            Context::Nested,
            &mut input,
        );
    }
    anyhow::ensure!(input.len() == args.elements * ELEMENT_BYTES);
    // Each stream: its own processor, warmed up, then `bundles` bundles.
    let streams = args.streams.max(1);
    let mut processors = vec![processor];
    for _ in 1..streams {
        processors.push(executor.create_processor(Arc::new(descriptor()))?);
    }
    for p in &mut processors {
        for _ in 0..3 {
            run(p.as_mut(), &input)?;
        }
    }
    let start = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = processors
            .iter_mut()
            .map(|p| {
                let input = &input;
                scope.spawn(move || -> anyhow::Result<()> {
                    for _ in 0..args.bundles {
                        let out = run(p.as_mut(), input)?;
                        anyhow::ensure!(
                            out == input.len(),
                            "{out} bytes came back of {}",
                            input.len()
                        );
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a stream panicked"))??;
        }
        Ok(())
    })?;
    let data_secs = start.elapsed().as_secs_f64();
    let elements = (streams * args.bundles * args.elements) as f64;
    processor = processors.swap_remove(0);
    drop(processors);

    for _ in 0..100 {
        run(processor.as_mut(), &[])?;
    }
    let start = Instant::now();
    for _ in 0..args.round_trips {
        run(processor.as_mut(), &[])?;
    }
    let round_trip_us = start.elapsed().as_secs_f64() * 1e6 / args.round_trips.max(1) as f64;

    println!(
        "{{\"harness\": \"{}\", \"streams\": {streams}, \"connect_ms\": {:.1}, \"elements\": {elements}, \"seconds\": {data_secs:.4}, \"elements_per_sec\": {:.0}, \"mb_per_sec_each_way\": {:.1}, \"round_trip_us\": {round_trip_us:.1}}}",
        if args.in_memory {
            "in-memory"
        } else if args.in_process {
            "thread"
        } else {
            "process"
        },
        connect.as_secs_f64() * 1e3,
        elements / data_secs,
        elements * ELEMENT_BYTES as f64 / data_secs / 1e6,
    );
    // The harness's control stream closes; it exits.
    drop(processor);
    drop(executor);
    drop(harnesses);
    Ok(())
}
