//! A test-only executor interpreting a handful of test DoFn URNs, window
//! assignment and the combine components of a sum CombineFn.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use oxbeam_fn_api::{Bundle, BundleProcessor, Error, Executor, Result, UserCodeError};
use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::{self, standard_p_transforms as t};
use prost::Message;

use crate::codec::*;

pub const IDENTITY: &str = "test:dofn:identity:v1";
/// Payload: lines `timestamp|text`; emits each text at its timestamp.
pub const CREATE: &str = "test:dofn:create:v1";
pub const SPLIT_WORDS: &str = "test:dofn:split_words:v1";
pub const PAIR_WITH_ONE: &str = "test:dofn:pair_with_one:v1";
pub const FORMAT: &str = "test:dofn:format:v1";
/// Renders each element with its timestamp and windows into the executor's capture list.
pub const CAPTURE: &str = "test:dofn:capture:v1";
/// Payload: the text that makes it fail.
pub const FAIL_ON: &str = "test:dofn:fail_on:v1";
/// Appends the number of elements of side input `side` to each string.
pub const WITH_SIDE_COUNT: &str = "test:dofn:with_side_count:v1";
/// Payload `mode|log path|value`: on `value`, appends `pid N` to the log,
/// then with mode `exit-once` exits the process if that was the first
/// line, with mode `fail` fails (user code); passes elements through.
pub const ATTEMPT: &str = "test:dofn:attempt:v1";

#[derive(Clone, Default)]
pub struct TestExecutor {
    pub captured: Arc<Mutex<Vec<String>>>,
    pub processors: Arc<AtomicUsize>,
    pub teardowns: Arc<AtomicUsize>,
}

impl TestExecutor {
    pub fn captured(&self) -> Vec<String> {
        let mut v = self.captured.lock().unwrap().clone();
        v.sort();
        v
    }
}

impl Executor for TestExecutor {
    fn name(&self) -> &str {
        "test"
    }

    fn create_processor(
        &self,
        d: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>> {
        self.processors.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(Processor::new(d, self.clone())?))
    }
}

enum WindowFn {
    Global,
    Fixed(i64),
    Sliding(i64, i64),
    Sessions(i64),
}

enum Op {
    Sink {
        id: String,
        coder: TCoder,
    },
    Identity,
    Create(Vec<(i64, String)>),
    Split,
    Pair,
    Format,
    Capture,
    FailOn(String),
    Attempt {
        mode: String,
        log: String,
        value: String,
    },
    WithSideCount {
        side: String,
        coder: TCoder,
    },
    Window(WindowFn),
    Precombine,
    SumIterable,
}

struct Node {
    id: String,
    op: Op,
    output: Option<String>,
}

struct Processor {
    nodes: Vec<Node>,
    consumers: HashMap<String, Vec<usize>>,
    sources: HashMap<String, (TCoder, String)>,
    precombine: BTreeMap<(usize, TV, W), (i64, i64)>,
    exec: TestExecutor,
}

fn ms(d: Option<prost_types::Duration>) -> i64 {
    d.map_or(0, |d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
}

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(what, e)
}

impl Processor {
    fn new(d: Arc<ProcessBundleDescriptor>, exec: TestExecutor) -> Result<Self> {
        let mut nodes = Vec::new();
        let mut sources = HashMap::new();
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (id, tr) in &d.transforms {
            let spec = tr.spec.clone().unwrap_or_default();
            let input = tr.inputs.values().next().cloned();
            let output = tr.outputs.values().next().cloned();
            let port_coder = || -> Result<TCoder> {
                let port =
                    RemoteGrpcPort::decode(spec.payload.as_ref()).map_err(|e| invalid(id, e))?;
                coder(&d, &port.coder_id).map_err(|e| invalid(id, e))
            };
            let op = match spec.urn.as_str() {
                urns::fn_api_transforms::runner::DATA_SOURCE => {
                    sources.insert(
                        id.clone(),
                        (port_coder()?, output.clone().unwrap_or_default()),
                    );
                    continue;
                }
                urns::fn_api_transforms::runner::DATA_SINK => Op::Sink {
                    id: id.clone(),
                    coder: port_coder()?,
                },
                t::primitives::PAR_DO => {
                    let p = pb::ParDoPayload::decode(spec.payload.as_ref())
                        .map_err(|e| invalid(id, e))?;
                    let f = p.do_fn.unwrap_or_default();
                    let arg = String::from_utf8_lossy(&f.payload).to_string();
                    match f.urn.as_str() {
                        IDENTITY => Op::Identity,
                        CREATE => Op::Create(
                            arg.lines()
                                .filter_map(|l| l.split_once('|'))
                                .map(|(ts, s)| (ts.parse().unwrap(), s.to_string()))
                                .collect(),
                        ),
                        SPLIT_WORDS => Op::Split,
                        PAIR_WITH_ONE => Op::Pair,
                        FORMAT => Op::Format,
                        CAPTURE => Op::Capture,
                        FAIL_ON => Op::FailOn(arg),
                        ATTEMPT => {
                            let mut parts = arg.splitn(3, '|').map(str::to_string);
                            let mut next = || parts.next().unwrap_or_default();
                            Op::Attempt {
                                mode: next(),
                                log: next(),
                                value: next(),
                            }
                        }
                        WITH_SIDE_COUNT => {
                            let side_pcoll = tr
                                .inputs
                                .get("side")
                                .ok_or_else(|| invalid(id, "no side input"))?;
                            Op::WithSideCount {
                                side: "side".into(),
                                coder: windowed_coder(&d, side_pcoll)
                                    .map_err(|e| invalid(id, e))?,
                            }
                        }
                        other => {
                            return Err(Error::Unsupported {
                                transform: id.clone(),
                                message: format!("unknown DoFn {other}"),
                            });
                        }
                    }
                }
                t::primitives::ASSIGN_WINDOWS => {
                    let p = pb::WindowIntoPayload::decode(spec.payload.as_ref())
                        .map_err(|e| invalid(id, e))?;
                    let f = p.window_fn.unwrap_or_default();
                    Op::Window(match f.urn.as_str() {
                        urns::fixed_windows_payload::PROPERTIES => {
                            let p = pb::FixedWindowsPayload::decode(f.payload.as_ref())
                                .map_err(|e| invalid(id, e))?;
                            WindowFn::Fixed(ms(p.size))
                        }
                        urns::sliding_windows_payload::PROPERTIES => {
                            let p = pb::SlidingWindowsPayload::decode(f.payload.as_ref())
                                .map_err(|e| invalid(id, e))?;
                            WindowFn::Sliding(ms(p.size), ms(p.period))
                        }
                        urns::session_windows_payload::PROPERTIES => {
                            let p = pb::SessionWindowsPayload::decode(f.payload.as_ref())
                                .map_err(|e| invalid(id, e))?;
                            WindowFn::Sessions(ms(p.gap_size))
                        }
                        _ => WindowFn::Global,
                    })
                }
                t::combine_components::COMBINE_PER_KEY_PRECOMBINE => Op::Precombine,
                t::combine_components::COMBINE_PER_KEY_MERGE_ACCUMULATORS
                | t::combine_components::COMBINE_GROUPED_VALUES => Op::SumIterable,
                t::combine_components::COMBINE_PER_KEY_EXTRACT_OUTPUTS => Op::Identity,
                other => {
                    return Err(Error::Unsupported {
                        transform: id.clone(),
                        message: format!("unknown URN {other}"),
                    });
                }
            };
            let main_input = match &op {
                Op::WithSideCount { .. } => tr.inputs.get("in").cloned(),
                _ => input,
            };
            if let Some(p) = main_input {
                consumers.entry(p).or_default().push(nodes.len());
            }
            nodes.push(Node {
                id: id.clone(),
                op,
                output,
            });
        }
        Ok(Processor {
            nodes,
            consumers,
            sources,
            precombine: BTreeMap::new(),
            exec,
        })
    }

    fn push(&mut self, pcoll: &str, wv: WV, bundle: &mut Bundle<'_>) -> Result<()> {
        let Some(cs) = self.consumers.get(pcoll).cloned() else {
            return Ok(());
        };
        for c in cs {
            self.apply(c, wv.clone(), bundle)?;
        }
        Ok(())
    }

    fn apply(&mut self, i: usize, wv: WV, bundle: &mut Bundle<'_>) -> Result<()> {
        let out = self.nodes[i].output.clone().unwrap_or_default();
        let id = self.nodes[i].id.clone();
        match &self.nodes[i].op {
            Op::Sink { id, coder } => {
                let mut buf = Vec::new();
                encode_windowed(coder, &wv, &mut buf);
                bundle.sink.emit(id, &buf)
            }
            Op::Identity => self.push(&out, wv, bundle),
            Op::Create(items) => {
                for (ts, s) in items.clone() {
                    let e = WV {
                        ts,
                        windows: vec![W::Global],
                        pane: vec![0x0F],
                        value: TV::Str(s),
                    };
                    self.push(&out, e, bundle)?;
                }
                Ok(())
            }
            Op::Split => {
                let TV::Str(s) = &wv.value else {
                    return Err(invalid(&id, "not a string"));
                };
                for w in s.split_whitespace() {
                    self.push(&out, wv.with(TV::Str(w.to_string())), bundle)?;
                }
                Ok(())
            }
            Op::Pair => {
                let v = wv.with(TV::Kv(Box::new(wv.value.clone()), Box::new(TV::Int(1))));
                self.push(&out, v, bundle)
            }
            Op::Format => {
                let s = wv.value.to_string();
                self.push(&out, wv.with(TV::Str(s)), bundle)
            }
            Op::Capture => {
                let windows: Vec<String> = wv
                    .windows
                    .iter()
                    .map(|w| match w {
                        W::Global => "global".to_string(),
                        W::Interval(s, e) => format!("[{s},{e})"),
                    })
                    .collect();
                let ts = if wv.ts > 1 << 50 {
                    "end-of-global".to_string()
                } else {
                    wv.ts.to_string()
                };
                self.exec.captured.lock().unwrap().push(format!(
                    "{} @{ts} {} pane={:02x?}",
                    wv.value,
                    windows.join(""),
                    wv.pane
                ));
                Ok(())
            }
            Op::FailOn(bad) => {
                if wv.value == TV::Str(bad.clone()) {
                    return Err(Error::UserCode(UserCodeError {
                        transform: id,
                        message: format!("cannot handle {bad:?}"),
                        element: Some(wv.value.to_string()),
                    }));
                }
                self.push(&out, wv, bundle)
            }
            Op::Attempt { mode, log, value } => {
                if wv.value == TV::Str(value.clone()) {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log)
                        .map_err(|e| invalid(log, e))?;
                    writeln!(f, "pid {}", std::process::id()).map_err(|e| invalid(log, e))?;
                    drop(f);
                    let attempts = std::fs::read_to_string(log).map_or(0, |s| s.lines().count());
                    match mode.as_str() {
                        "exit-once" if attempts == 1 => std::process::exit(3),
                        "fail" => {
                            return Err(Error::UserCode(UserCodeError {
                                transform: id,
                                message: format!("refusing {value:?}"),
                                element: Some(wv.value.to_string()),
                            }));
                        }
                        _ => {}
                    }
                }
                self.push(&out, wv, bundle)
            }
            Op::WithSideCount { side, coder } => {
                let bytes = bundle.side_inputs.side_input(&id, side)?;
                let coder = coder.clone();
                let mut input = bytes;
                let mut n = 0;
                while !input.is_empty() {
                    decode_windowed(&coder, &mut input).map_err(|e| invalid("side input", e))?;
                    n += 1;
                }
                let s = format!("{} (side has {n})", wv.value);
                self.push(&out, wv.with(TV::Str(s)), bundle)
            }
            Op::Window(f) => {
                let ts = wv.ts;
                let windows = match f {
                    WindowFn::Global => vec![W::Global],
                    WindowFn::Fixed(size) => {
                        let start = ts - ts.rem_euclid(*size);
                        vec![W::Interval(start, start + size)]
                    }
                    WindowFn::Sliding(size, period) => {
                        let last = ts - ts.rem_euclid(*period);
                        let mut v = Vec::new();
                        let mut start = last;
                        while start > ts - size {
                            v.push(W::Interval(start, start + size));
                            start -= period;
                        }
                        v
                    }
                    WindowFn::Sessions(gap) => vec![W::Interval(ts, ts + gap)],
                };
                let e = WV { windows, ..wv };
                self.push(&out, e, bundle)
            }
            Op::Precombine => {
                let TV::Kv(k, v) = &wv.value else {
                    return Err(invalid(&id, "not a kv"));
                };
                let TV::Int(v) = **v else {
                    return Err(invalid(&id, "not an int"));
                };
                for w in &wv.windows {
                    let e = self
                        .precombine
                        .entry((i, (**k).clone(), *w))
                        .or_insert((0, wv.ts));
                    e.0 += v;
                }
                Ok(())
            }
            Op::SumIterable => {
                let TV::Kv(k, vs) = &wv.value else {
                    return Err(invalid(&id, "not a kv"));
                };
                let TV::Iter(vs) = &**vs else {
                    return Err(invalid(&id, "not an iterable"));
                };
                let sum = vs
                    .iter()
                    .map(|v| if let TV::Int(i) = v { *i } else { 0 })
                    .sum();
                let e = wv.with(TV::Kv(k.clone(), Box::new(TV::Int(sum))));
                self.push(&out, e, bundle)
            }
        }
    }
}

impl BundleProcessor for Processor {
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        let inputs = bundle.inputs.clone();
        for (source, bytes) in inputs {
            let (coder, pcoll) = self
                .sources
                .get(source)
                .cloned()
                .ok_or_else(|| invalid(source, "unknown source"))?;
            let mut input = bytes;
            while !input.is_empty() {
                let wv = decode_windowed(&coder, &mut input).map_err(|e| invalid(source, e))?;
                self.push(&pcoll, wv, bundle)?;
            }
        }
        let pre = std::mem::take(&mut self.precombine);
        for ((i, k, w), (sum, ts)) in pre {
            let out = self.nodes[i].output.clone().unwrap_or_default();
            let e = WV {
                ts,
                windows: vec![w],
                pane: vec![0x0F],
                value: TV::Kv(Box::new(k), Box::new(TV::Int(sum))),
            };
            self.push(&out, e, bundle)?;
        }
        Ok(())
    }

    fn teardown(&mut self) {
        self.exec.teardowns.fetch_add(1, Ordering::Relaxed);
    }
}
