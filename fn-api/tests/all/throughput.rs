//! Data-plane throughput and control round trip over loopback gRPC, with
//! `serve_harness` in a thread. Ignored by default; run with
//! `cargo test -p oxbeam-fn-api --release --test all throughput -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use oxbeam_fn_api::{
    Bundle, Executor, FnServer, HarnessConfig, Metrics, NoSideInputs, serve_harness,
};

use crate::testing::*;

#[test]
#[ignore = "measurement; run explicitly"]
fn measure_data_plane_throughput_and_control_round_trip() {
    let server = FnServer::start().unwrap();
    let url = server.url().to_string();
    std::thread::spawn(move || {
        serve_harness(
            HarnessConfig {
                control_endpoint: url,
                id: "bench".into(),
            },
            Arc::new(TestExecutor),
        )
    });
    let exec = server.executor("bench");
    let mut p = exec
        .create_processor(Arc::new(descriptor(IDENTITY, b"", false)))
        .unwrap();
    let mut run = |input: &[u8]| -> usize {
        let mut bytes = 0;
        let mut sink = |_: &str, e: &[u8]| {
            bytes += e.len();
            Ok(())
        };
        let mut m = Metrics::default();
        let mut b = Bundle::new(vec![(SOURCE, input)], &mut sink, &NoSideInputs, &mut m);
        p.process_bundle(&mut b).unwrap();
        drop(b);
        bytes
    };
    // 100-byte elements (87-byte values plus the windowed-value header).
    let values: Vec<Vec<u8>> = (0..100_000)
        .map(|i| format!("{i:0>86}").into_bytes())
        .collect();
    let input = elements(&values);
    assert_eq!(input.len(), 100 * values.len());
    for _ in 0..3 {
        run(&input);
    }
    let rounds = 20;
    let start = Instant::now();
    let mut out = 0;
    for _ in 0..rounds {
        out += run(&input);
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (rounds * input.len()) as f64 / 1e6;
    assert_eq!(out, rounds * input.len());
    println!(
        "data plane: {rounds} bundles of {:.1} MB (100-byte elements) in {secs:.3}s: {:.0} MB/s each way, {:.2} M elements/s",
        input.len() as f64 / 1e6,
        mb / secs,
        (rounds * values.len()) as f64 / secs / 1e6
    );
    let rounds = 2000;
    let start = Instant::now();
    for _ in 0..rounds {
        run(&[]);
    }
    let per = start.elapsed().as_secs_f64() / rounds as f64;
    println!("control round trip (empty bundle): {:.0} µs", per * 1e6);
}
