//! The round-trip floor of this machine, for reading `oxbeam-fnapi`'s
//! control round trip (see `bench/compare.py fnapi`):
//!
//! ```text
//! oxbeam-rtt-floor [--round-trips R]
//! ```
//!
//! Prints one JSON line with the mean round trip, in microseconds, of
//! - `threads`: two threads of this process handing a message back and
//!   forth over `std::sync::mpsc` (each hop wakes a blocked thread);
//! - `tcp`: 64 bytes echoed by a child process over a blocking loopback TCP
//!   socket (`TCP_NODELAY`);
//! - `grpc`: a message echoed by a child process over one bidirectional
//!   tonic stream (Beam's `BeamFnControl.Control`, the child as the
//!   harness answering each `InstructionRequest` at once, the parent
//!   driving from a tokio task).
//!
//! No Oxbeam code is on these paths: they are what any runner and harness
//! that block while they wait pay here, before doing any work.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use clap::Parser;
use oxbeam_model::fn_execution::{
    GetProcessBundleDescriptorRequest, InstructionRequest, InstructionResponse,
    ProcessBundleDescriptor, beam_fn_control_client::BeamFnControlClient, beam_fn_control_server,
};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

#[derive(Parser)]
struct Args {
    /// Round trips measured per path (after 10% of them as warm-up).
    #[arg(long, default_value_t = 20_000)]
    round_trips: usize,
    /// Child mode: echo 64-byte messages on this TCP address.
    #[arg(long, hide = true)]
    echo_tcp: Option<String>,
    /// Child mode: answer control requests from the gRPC server at this address.
    #[arg(long, hide = true)]
    echo_grpc: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.echo_tcp {
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 64];
        while s.read_exact(&mut b).is_ok() {
            s.write_all(&b)?;
        }
        return Ok(());
    }
    if let Some(addr) = args.echo_grpc {
        return runtime()?.block_on(grpc_echo(addr));
    }
    let n = args.round_trips.max(1);
    let threads = threads(n);
    let tcp = tcp(n)?;
    let grpc = grpc(n)?;
    println!(
        "{{\"threads_us\": {threads:.1}, \"tcp_us\": {tcp:.1}, \"grpc_us\": {grpc:.1}, \"round_trips\": {n}}}"
    );
    Ok(())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Mean microseconds of `n` calls of `f` after `n / 10` unmeasured ones.
fn mean_us(n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn threads(n: usize) -> f64 {
    let (to_echo, echo_rx) = std::sync::mpsc::channel::<u64>();
    let (to_main, main_rx) = std::sync::mpsc::channel::<u64>();
    std::thread::spawn(move || {
        while let Ok(v) = echo_rx.recv() {
            if to_main.send(v).is_err() {
                break;
            }
        }
    });
    mean_us(n, || {
        to_echo.send(1).expect("echo thread");
        main_rx.recv().expect("echo thread");
    })
}

/// This binary again, in a child mode.
fn child(flag: &str, addr: &str) -> anyhow::Result<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .args([flag, addr])
        .stdout(Stdio::null())
        .spawn()?)
}

fn tcp(n: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let mut echo = child("--echo-tcp", &listener.local_addr()?.to_string())?;
    let (mut s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    let mut b = [7u8; 64];
    let mut failed = None;
    let us = mean_us(n, || {
        if failed.is_none() {
            if let Err(e) = s.write_all(&b).and_then(|()| s.read_exact(&mut b)) {
                failed = Some(e);
            }
        }
    });
    drop(s);
    echo.wait()?;
    match failed {
        Some(e) => Err(anyhow::anyhow!("TCP echo failed: {e}")),
        None => Ok(us),
    }
}

type Requests = Pin<Box<dyn Stream<Item = Result<InstructionRequest, Status>> + Send>>;

/// The two ends of the control stream the parent serves: where its
/// requests go, and the child's responses.
type ControlEnds = (
    tokio::sync::mpsc::UnboundedSender<Result<InstructionRequest, Status>>,
    Streaming<InstructionResponse>,
);

/// The parent's control service: hands the one stream it serves to `main`.
struct Control {
    streams: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<ControlEnds>>>,
}

#[tonic::async_trait]
impl beam_fn_control_server::BeamFnControl for Control {
    type ControlStream = Requests;

    async fn control(
        &self,
        request: Request<Streaming<InstructionResponse>>,
    ) -> Result<Response<Requests>, Status> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let taker = self.streams.lock().ok().and_then(|mut s| s.take());
        match taker {
            Some(t) => {
                let _ = t.send((tx, request.into_inner()));
                Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
            }
            None => Err(Status::already_exists("one control stream only")),
        }
    }

    async fn get_process_bundle_descriptor(
        &self,
        _: Request<GetProcessBundleDescriptorRequest>,
    ) -> Result<Response<ProcessBundleDescriptor>, Status> {
        Err(Status::unimplemented("no descriptors here"))
    }
}

fn grpc(n: usize) -> anyhow::Result<f64> {
    let rt = runtime()?;
    rt.block_on(async move {
        let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
            .map_err(|e| anyhow::anyhow!("bind: {e}"))?
            .with_nodelay(Some(true));
        let addr = incoming.local_addr()?;
        let (streams, stream) = tokio::sync::oneshot::channel();
        let service = Control {
            streams: std::sync::Mutex::new(Some(streams)),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(beam_fn_control_server::BeamFnControlServer::new(service))
                .serve_with_incoming(incoming),
        );
        let mut echo = child("--echo-grpc", &addr.to_string())?;
        let (tx, mut responses) = stream.await?;
        let mut round_trip = async || -> anyhow::Result<()> {
            tx.send(Ok(InstructionRequest::default()))
                .map_err(|_| anyhow::anyhow!("control stream closed"))?;
            match responses.next().await {
                Some(Ok(_)) => Ok(()),
                other => Err(anyhow::anyhow!("no response: {other:?}")),
            }
        };
        for _ in 0..n / 10 {
            round_trip().await?;
        }
        let start = Instant::now();
        for _ in 0..n {
            round_trip().await?;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        drop(tx);
        echo.kill()?;
        echo.wait()?;
        Ok(us)
    })
}

async fn grpc_echo(addr: String) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut requests = BeamFnControlClient::new(channel)
        .control(UnboundedReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(Ok(r)) = requests.next().await {
        let answer = InstructionResponse {
            instruction_id: r.instruction_id,
            ..Default::default()
        };
        if tx.send(answer).is_err() {
            break;
        }
    }
    Ok(())
}
