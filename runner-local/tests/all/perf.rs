//! Runner overhead measurements (ignored by default; run in release with
//! `cargo test --release -p oxbeam-runner-local --test all perf -- --ignored --nocapture`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use oxbeam_fn_api::{Bundle, BundleProcessor, Executor, Executors, Result};
use oxbeam_model::fn_execution::ProcessBundleDescriptor;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::{self, fn_api_transforms::runner};
use oxbeam_runner_local::{LocalOptions, LocalRunner};
use prost::Message;

use crate::codec::write_varint;
use crate::pipelines::Builder;

const GEN: &str = "test:dofn:generate:v1";
const COUNT: &str = "test:dofn:count:v1";

/// Generates `n` KV<string, varint> elements over 10 000 keys; counts input bytes.
struct Fast {
    n: u64,
    seen: Arc<AtomicU64>,
}

struct FastProcessor {
    generate: Option<(String, u64)>,
    seen: Arc<AtomicU64>,
}

impl Executor for Fast {
    fn name(&self) -> &str {
        "fast"
    }

    fn create_processor(
        &self,
        d: Arc<ProcessBundleDescriptor>,
    ) -> Result<Box<dyn BundleProcessor>> {
        let mut generate = None;
        let mut sink = None;
        for (id, t) in &d.transforms {
            let spec = t.spec.clone().unwrap_or_default();
            if spec.urn == runner::DATA_SINK {
                sink = Some(id.clone());
            }
            if spec.urn == urns::standard_p_transforms::primitives::PAR_DO {
                let p = pb::ParDoPayload::decode(spec.payload.as_ref()).unwrap();
                if p.do_fn.unwrap().urn == GEN {
                    generate = Some(self.n);
                }
            }
        }
        Ok(Box::new(FastProcessor {
            generate: generate.map(|n| (sink.unwrap(), n)),
            seen: self.seen.clone(),
        }))
    }
}

impl BundleProcessor for FastProcessor {
    fn process_bundle(&mut self, bundle: &mut Bundle<'_>) -> Result<()> {
        if let Some((sink, n)) = &self.generate {
            let mut buf = Vec::with_capacity(64);
            for i in 0..*n {
                buf.clear();
                buf.extend_from_slice(&(1u64 << 63).to_be_bytes());
                buf.extend_from_slice(&1i32.to_be_bytes());
                buf.push(0x0F);
                let key = i % 10_000;
                buf.push(6);
                buf.extend_from_slice(format!("k{key:05}").as_bytes());
                write_varint(&mut buf, i);
                bundle.sink.emit(sink, &buf)?;
            }
        } else {
            let bytes: usize = bundle.inputs.iter().map(|(_, b)| b.len()).sum();
            self.seen.fetch_add(bytes as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[test]
#[ignore]
fn perf_shuffle() {
    let n = 5_000_000;
    let mut b = Builder::new();
    let imp = b.impulse("Impulse");
    let kvs = b.pardo("Generate", GEN, "", &imp, "kv_str");
    let g = b.gbk("Group", &kvs);
    b.pardo("Count", COUNT, "", &g, "str");
    let p = b.build();
    for parallelism in [1, 2] {
        let seen = Arc::new(AtomicU64::new(0));
        let exec = Fast {
            n,
            seen: seen.clone(),
        };
        let executors = Executors::new().with(urns::oxbeam_environments::NATIVE, Arc::new(exec));
        let start = Instant::now();
        let result = LocalRunner::new(LocalOptions {
            parallelism,
            progress: false,
            ..LocalOptions::default()
        })
        .run(&p, &executors)
        .unwrap();
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "parallelism {parallelism}: {n} elements through a shuffle in {secs:.2}s = {:.1} M elements/s ({} grouped bytes)",
            n as f64 / secs / 1e6,
            seen.load(Ordering::Relaxed)
        );
        for s in &result.steps {
            eprintln!("  {} {:?} ({} tasks)", s.step, s.elapsed, s.tasks);
        }
    }
}
