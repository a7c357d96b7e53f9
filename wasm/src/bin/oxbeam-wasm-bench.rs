//! Wasm UDF benchmark: native vs Wasm stage time (Map, wordcount
//! tokenizer), per-batch call overhead, cold start and instantiate.
//!
//! `cargo run --release -p oxbeam-wasm --bin oxbeam-wasm-bench -- [ELEMENTS] [WORKLOAD]`
//! (builds the example guest for wasm32-unknown-unknown if needed).
//! `WORKLOAD` (`start`, `map`, `tokenize` or `overhead`; default all) runs
//! one part alone, e.g. under a profiler. `OXBEAM_WASM_BENCH_GUEST=path`
//! uses that module instead of building `guest_udfs`.
//!
//! Native and Wasm runs alternate, three of each; the best of each is
//! reported, in wall time and in the thread's CPU time (steadier on a
//! shared machine).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxbeam_fn_api::{Bundle, Executor, Metrics, NoSideInputs};
use oxbeam_model::coders::{Context, WindowCoder, WindowedValueHeader, decode_windowed, wire};
use oxbeam_model::fn_execution::ProcessBundleDescriptor;
use oxbeam_model::oxbeam::{WasmFunctionKind, WasmFunctionPayload, wasm_function_payload};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::Timestamp;
use oxbeam_wasm::{WasmExecutor, WasmOptions};
use prost::Message;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn guest() -> Res<Vec<u8>> {
    // A prebuilt module (e.g. built with other flags) instead of building one.
    if let Some(path) = std::env::var_os("OXBEAM_WASM_BENCH_GUEST") {
        return Ok(std::fs::read(path)?);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    Ok(oxbeam_wasm::dev::build_guest_udfs(&root)?)
}

/// source → one Wasm ParDo over strings → sink.
fn descriptor(module: &[u8], export: &str, kind: WasmFunctionKind) -> Arc<ProcessBundleDescriptor> {
    let coder = |urn: &str| pb::Coder {
        spec: Some(pb::FunctionSpec {
            urn: urn.into(),
            payload: Default::default(),
        }),
        component_coder_ids: vec![],
    };
    let mut d = ProcessBundleDescriptor {
        id: "bench".into(),
        ..Default::default()
    };
    d.coders
        .insert("str".into(), coder(urns::standard_coders::STRING_UTF8));
    d.coders
        .insert("g".into(), coder(urns::standard_coders::GLOBAL_WINDOW));
    d.windowing_strategies.insert(
        "ws".into(),
        pb::WindowingStrategy {
            window_coder_id: "g".into(),
            ..Default::default()
        },
    );
    for p in ["in", "out"] {
        d.pcollections.insert(
            p.into(),
            pb::PCollection {
                coder_id: "str".into(),
                windowing_strategy_id: "ws".into(),
                ..Default::default()
            },
        );
    }
    let payload = WasmFunctionPayload {
        module: Some(wasm_function_payload::Module::ModuleBytes(
            module.to_vec().into(),
        )),
        export_name: export.into(),
        kind: kind as i32,
        abi_version: 1,
        ..Default::default()
    };
    let pardo = pb::ParDoPayload {
        do_fn: Some(pb::FunctionSpec {
            urn: urns::wasm_functions::DO_FN.into(),
            payload: payload.encode_to_vec().into(),
        }),
        ..Default::default()
    };
    let t = |urn: &str, payload: Vec<u8>, i: Option<&str>, o: Option<&str>| pb::PTransform {
        unique_name: "Udf".into(),
        spec: Some(pb::FunctionSpec {
            urn: urn.into(),
            payload: payload.into(),
        }),
        inputs: i
            .map(|i| ("in".to_string(), i.to_string()))
            .into_iter()
            .collect(),
        outputs: o
            .map(|o| ("out".to_string(), o.to_string()))
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let runner = urns::fn_api_transforms::runner::DATA_SOURCE;
    d.transforms
        .insert("src".into(), t(runner, vec![], None, Some("in")));
    d.transforms.insert(
        "udf".into(),
        t(
            urns::standard_p_transforms::primitives::PAR_DO,
            pardo.encode_to_vec(),
            Some("in"),
            Some("out"),
        ),
    );
    d.transforms.insert(
        "sink".into(),
        t(
            urns::fn_api_transforms::runner::DATA_SINK,
            vec![],
            Some("out"),
            None,
        ),
    );
    Arc::new(d)
}

/// ~1 MiB bundles of windowed strings, as runner-local cuts them.
fn bundles(values: impl Iterator<Item = String>) -> Vec<Vec<u8>> {
    let header = WindowedValueHeader::global(Timestamp::from_millis(0));
    let mut out = vec![Vec::new()];
    for v in values {
        let b = out.last_mut().expect("non-empty");
        header.encode(b);
        wire::write_length_prefixed(b, v.as_bytes());
        if b.len() >= 1 << 20 {
            out.push(Vec::new());
        }
    }
    out
}

/// Runs every bundle through a fresh processor; returns (time, outputs).
fn run_wasm(
    exec: &WasmExecutor,
    d: Arc<ProcessBundleDescriptor>,
    input: &[Vec<u8>],
) -> Res<(Timing, u64)> {
    let mut p = exec.create_processor(d)?;
    let mut n = 0u64;
    let start = Timing::start();
    for b in input {
        let mut sink = |_: &str, e: &[u8]| {
            n += e.len() as u64 & 1 | 1;
            Ok(())
        };
        let mut metrics = Metrics::default();
        p.process_bundle(&mut Bundle::new(
            vec![("src", b)],
            &mut sink,
            &NoSideInputs,
            &mut metrics,
        ))?;
    }
    Ok((Timing::since(start), n))
}

/// The same stage natively: decode each element, call `f`, encode outputs.
fn run_native(
    input: &[Vec<u8>],
    mut f: impl FnMut(&[u8], &mut dyn FnMut(&[u8])),
) -> Res<(Timing, u64)> {
    let mut n = 0u64;
    let mut element = Vec::new();
    let mut value = Vec::new();
    let start = Timing::start();
    for b in input {
        let mut rest = &b[..];
        while !rest.is_empty() {
            let r = decode_windowed(&mut rest, WindowCoder::Global, Context::Nested)?;
            f(r.value, &mut |out: &[u8]| {
                value.clear();
                value.extend_from_slice(out);
                element.clear();
                r.header.encode(&mut element);
                wire::write_length_prefixed(&mut element, &value);
                n += element.len() as u64 & 1 | 1;
                std::hint::black_box(&element);
            });
        }
    }
    Ok((Timing::since(start), n))
}

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`),
/// which other processes on a shared machine inflate far less than wall
/// time; the Wasm guest runs on the calling thread too.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Wall and thread CPU time of one measured run.
#[derive(Clone, Copy)]
struct Timing {
    wall: Duration,
    cpu: Option<Duration>,
}

impl Timing {
    fn start() -> (Instant, Option<Duration>) {
        (Instant::now(), thread_cpu())
    }

    fn since((wall, cpu): (Instant, Option<Duration>)) -> Timing {
        Timing {
            wall: wall.elapsed(),
            cpu: cpu.zip(thread_cpu()).map(|(a, b)| b.saturating_sub(a)),
        }
    }

    /// The faster of two runs (the one least disturbed by other load).
    fn min(self, other: Timing) -> Timing {
        Timing {
            wall: self.wall.min(other.wall),
            cpu: match (self.cpu, other.cpu) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// Runs of each side of a comparison; the best is reported.
const RUNS: usize = 3;

/// `native` and `wasm` alternately, [`RUNS`] times each; the best of each.
fn compare(
    mut native: impl FnMut() -> Res<(Timing, u64)>,
    mut wasm: impl FnMut() -> Res<(Timing, u64)>,
) -> Res<(Timing, Timing, u64)> {
    let (mut nt, mut wt) = (None::<Timing>, None::<Timing>);
    let mut outputs = 0;
    for _ in 0..RUNS {
        let (t, nn) = native()?;
        nt = Some(nt.map_or(t, |b| b.min(t)));
        let (t, wn) = wasm()?;
        wt = Some(wt.map_or(t, |b| b.min(t)));
        assert_eq!(nn, wn, "native and Wasm outputs differ");
        outputs = wn;
    }
    Ok((nt.ok_or("no run")?, wt.ok_or("no run")?, outputs))
}

/// `native {ms} | wasm {ms} | ratio {x}` in wall time, then CPU time.
fn ratios(nt: Timing, wt: Timing) -> String {
    let mut s = format!(
        "native {:8.1} ms | wasm {:8.1} ms | ratio {:.2}x",
        ms(nt.wall),
        ms(wt.wall),
        wt.wall.as_secs_f64() / nt.wall.as_secs_f64()
    );
    if let (Some(n), Some(w)) = (nt.cpu, wt.cpu) {
        s.push_str(&format!(
            " | cpu: native {:8.1} ms | wasm {:8.1} ms | ratio {:.2}x",
            ms(n),
            ms(w),
            w.as_secs_f64() / n.as_secs_f64()
        ));
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Res<()> {
    let elements: usize = std::env::args()
        .nth(1)
        .map_or(Ok(10_000_000), |a| a.parse())?;
    let only = std::env::args().nth(2);
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let module = guest()?;
    println!(
        "guest module: {} bytes; {elements} elements, 4096-element batches",
        module.len()
    );

    // Cold start: compile, load cached + instantiate, instantiate alone.
    let t = Instant::now();
    let exec = WasmExecutor::new(WasmOptions::default());
    let loaded = exec.load(&module)?;
    let compile = t.elapsed();
    if run("start") {
        cold_start(&exec, &loaded, &module, compile)?;
    }
    if run("map") {
        map(&exec, &module, elements)?;
    }
    if run("tokenize") {
        tokenize(&exec, &module, elements)?;
    }
    if run("overhead") {
        overhead(&exec, &module, elements)?;
    }
    Ok(())
}

fn cold_start(
    exec: &WasmExecutor,
    loaded: &oxbeam_wasm::LoadedModule,
    module: &[u8],
    compile: Duration,
) -> Res<()> {
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        exec.load(module)?.instantiate("upper", false)?;
    }
    let cold = t.elapsed() / reps;
    let t = Instant::now();
    for _ in 0..reps {
        loaded.instantiate("upper", false)?;
    }
    let inst = t.elapsed() / reps;
    println!(
        "compile (first load): {:.1} ms | cold start (cached module + instantiate): {:.1} µs | instantiate alone: {:.1} µs",
        ms(compile),
        cold.as_secs_f64() * 1e6,
        inst.as_secs_f64() * 1e6
    );
    Ok(())
}

fn map(exec: &WasmExecutor, module: &[u8], elements: usize) -> Res<()> {
    let words = bundles((0..elements).map(|i| format!("word{i:08}")));
    let upper = |v: &[u8], emit: &mut dyn FnMut(&[u8])| {
        let mut up = [0u8; 64];
        let up = &mut up[..v.len().min(64)];
        for (o, i) in up.iter_mut().zip(v) {
            *o = i.to_ascii_uppercase();
        }
        emit(up)
    };
    let d = descriptor(module, "upper", WasmFunctionKind::Map);
    let (nt, wt, _) = compare(
        || run_native(&words, upper),
        || run_wasm(exec, d.clone(), &words),
    )?;
    println!(
        "map upper:        {} | {:.1} ns/element wasm",
        ratios(nt, wt),
        wt.wall.as_secs_f64() * 1e9 / elements as f64
    );
    Ok(())
}

fn tokenize(exec: &WasmExecutor, module: &[u8], elements: usize) -> Res<()> {
    // Lines of 10 words, `elements` words out.
    let lines = bundles((0..elements / 10).map(|i| {
        (0..10)
            .map(|j| format!("w{}", (i * 7 + j) % 1000))
            .collect::<Vec<_>>()
            .join(" ")
    }));
    let split = |v: &[u8], emit: &mut dyn FnMut(&[u8])| {
        for w in v.split(u8::is_ascii_whitespace) {
            if !w.is_empty() {
                emit(w)
            }
        }
    };
    let d = descriptor(module, "tokenize", WasmFunctionKind::FlatMap);
    let (nt, wt, words) = compare(
        || run_native(&lines, split),
        || run_wasm(exec, d.clone(), &lines),
    )?;
    println!("tokenize:         {} ({words} words)", ratios(nt, wt));
    Ok(())
}

fn overhead(exec: &WasmExecutor, module: &[u8], elements: usize) -> Res<()> {
    // Identity over 1-byte values, batches of 1 vs 4096.
    let n = 1_000_000usize.min(elements);
    let tiny = bundles((0..n).map(|i| ((b'a' + (i % 26) as u8) as char).to_string()));
    let d = descriptor(module, "identity", WasmFunctionKind::Map);
    let one = WasmExecutor::new(WasmOptions {
        batch_elements: 1,
        ..WasmOptions::default()
    });
    let (t1, _) = run_wasm(&one, d.clone(), &tiny)?;
    let (t4k, _) = run_wasm(exec, d, &tiny)?;
    let calls = n as f64 - n as f64 / 4096.0;
    println!(
        "per-batch call overhead: {:.0} ns (batches of 1: {:.1} ms, of 4096: {:.1} ms, {n} elements)",
        (t1.wall.as_secs_f64() - t4k.wall.as_secs_f64()) * 1e9 / calls,
        ms(t1.wall),
        ms(t4k.wall)
    );
    Ok(())
}
