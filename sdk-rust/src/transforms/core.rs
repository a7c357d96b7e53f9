//! Sources and structural transforms: Create, sequences, GroupByKey,
//! CoGroupByKey, Flatten, Partition, Reshuffle, WindowInto.

use std::marker::PhantomData;
use std::sync::Arc;

use oxbeam_fn_api::Result;
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns;
use oxbeam_model::window::Timestamp;
use prost::Message;

use crate::coder::{Element, decode_from_slice, encode_to_vec};
use crate::exec::ops::OpInfo;
use crate::exec::types::ops;
use crate::exec::{BATCH, Batch, Cx, Meta, Receiver, WindowedValue, erase, guard, unerase};
use crate::metrics::set_current_transform;
use crate::pipeline::{MAIN_TAG, PCollection, Pipeline};
use crate::registry::{ParDoArgs, ParDoFn};
use crate::transforms::pardo::{add_pardo, main_output};
use crate::window::{Window, WindowFn};

/// Elements per chunk of a large `Create`, distributed by a reshuffle.
const CREATE_CHUNK: usize = 10_000;

macro_rules! forward {
    () => {
        fn start(&mut self) -> Result<()> {
            self.next.start()
        }
        fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
            self.next.finish(cx)
        }
        fn teardown(&mut self) {
            self.next.teardown()
        }
    };
}

/// Emits a slice of the created values for each chunk index.
struct CreateOp<T> {
    values: Arc<Vec<T>>,
    chunk: usize,
    next: Box<dyn Receiver<T>>,
}

impl<T: Element> Receiver<i64> for CreateOp<T> {
    forward!();

    fn receive(&mut self, wv: WindowedValue<i64>, cx: &mut dyn Cx) -> Result<()> {
        let start = (wv.value.max(0) as usize)
            .saturating_mul(self.chunk)
            .min(self.values.len());
        let end = start.saturating_add(self.chunk).min(self.values.len());
        for v in &self.values[start..end] {
            self.next.receive(wv.with_value(v.clone()), cx)?;
        }
        Ok(())
    }
}

/// Splits `GroupByKey` output back into its values, restoring the
/// timestamps `Reshuffle` reified.
struct UngroupOp<K, T> {
    next: Box<dyn Receiver<T>>,
    _k: PhantomData<fn(K)>,
}

impl<K: Element, T: Element> Receiver<(K, Vec<(T, i64)>)> for UngroupOp<K, T> {
    forward!();

    fn receive(&mut self, wv: WindowedValue<(K, Vec<(T, i64)>)>, cx: &mut dyn Cx) -> Result<()> {
        let mut batch = Batch::with_capacity(wv.value.1.len().min(BATCH));
        for (v, ts) in wv.value.1 {
            let meta = Meta {
                timestamp: Timestamp::from_millis(ts),
                window: wv.window,
                pane: wv.pane,
            };
            batch.push_with(v, meta);
            if batch.len() >= BATCH {
                self.next.receive_batch(&mut batch, cx)?;
            }
        }
        self.next.receive_batch(&mut batch, cx)
    }
}

/// Sends each element to the output its partition function picks.
struct PartitionOp<T, F> {
    info: OpInfo,
    f: Arc<F>,
    outs: Vec<Box<dyn Receiver<T>>>,
}

impl<T: Element, F: Fn(&T, usize) -> usize + Send + Sync + 'static> Receiver<T>
    for PartitionOp<T, F>
{
    fn start(&mut self) -> Result<()> {
        self.outs.iter_mut().try_for_each(|o| o.start())
    }

    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        set_current_transform(self.info.index);
        let n = self.outs.len();
        let f = &*self.f;
        let i = guard(&self.info.name, Some(&wv.value), || {
            let i = f(&wv.value, n);
            assert!(
                i < n,
                "partition function returned {i}, but there are {n} partitions"
            );
            i
        })?;
        self.outs[i].receive(wv, cx)
    }

    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
        self.outs.iter_mut().try_for_each(|o| o.finish(cx))
    }

    fn teardown(&mut self) {
        self.outs.iter_mut().for_each(|o| o.teardown());
    }
}

impl Pipeline {
    /// `Create`: a PCollection of `values`, at the minimum timestamp in the
    /// global window. The values travel in the pipeline proto (encoded in
    /// the native function's params); large inputs are split into chunks
    /// spread over workers.
    pub fn create<T: Element>(
        &self,
        label: &str,
        values: impl IntoIterator<Item = T>,
    ) -> PCollection<T> {
        let values: Vec<T> = values.into_iter().collect();
        self.composite(label, None, Vec::new(), || {
            let chunks = values.len().div_ceil(CREATE_CHUNK).max(1) as i64;
            let impulse = self.impulse("Impulse");
            let mut indices = impulse.flat_map("Chunks", move |_: &Vec<u8>| 0..chunks);
            if chunks > 1 {
                indices = indices.reshuffle("Reshuffle");
            }
            let params = encode_to_vec(&values);
            let display = format!("Create of {} {}", values.len(), std::any::type_name::<T>());
            let id = add_pardo(self, "Values", &indices.id, display, params, &[], |_| {
                ParDoFn {
                    input: ops::<i64>(),
                    outputs: vec![main_output::<T>()],
                    side_inputs: Vec::new(),
                    factory: Box::new(|args: ParDoArgs<'_>| {
                        let values = decode_from_slice::<Vec<T>>(args.params).map_err(|e| {
                            oxbeam_fn_api::Error::invalid(
                                format!("Create values of {}", args.info.name),
                                e,
                            )
                        })?;
                        let next = unerase::<T>(args.main, &args.info.transform_id)?;
                        Ok(erase::<i64>(Box::new(CreateOp {
                            values: Arc::new(values),
                            chunk: CREATE_CHUNK,
                            next,
                        })))
                    }),
                }
            });
            self.add_output::<T>(&id, MAIN_TAG, WindowFn::Global)
        })
    }

    /// The integers `start..end` (a bounded `GenerateSequence`), split into
    /// ranges spread over workers.
    pub fn generate_sequence(&self, label: &str, start: i64, end: i64) -> PCollection<i64> {
        const RANGE: i64 = 100_000;
        self.composite(label, None, Vec::new(), || {
            self.impulse("Impulse")
                .flat_map("Ranges", move |_: &Vec<u8>| {
                    let mut v = Vec::new();
                    let mut lo = start;
                    while lo < end {
                        let hi = lo.saturating_add(RANGE).min(end);
                        v.push((lo, hi));
                        lo = hi;
                    }
                    v
                })
                .reshuffle("Reshuffle")
                .flat_map("Generate", |&(lo, hi): &(i64, i64)| lo..hi)
        })
    }

    /// `Flatten`: the union of `inputs`, which must share a windowing strategy.
    ///
    /// # Panics
    /// If `inputs` is empty.
    pub fn flatten<T: Element>(&self, label: &str, inputs: &[PCollection<T>]) -> PCollection<T> {
        assert!(!inputs.is_empty(), "Flatten needs at least one input");
        let spec = pb::FunctionSpec {
            urn: urns::standard_p_transforms::primitives::FLATTEN.to_string(),
            payload: Default::default(),
        };
        let ins = inputs
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("in{i}"), p.id.clone()))
            .collect();
        let id = self.add_transform(label, Some(spec), ins, false);
        self.add_output::<T>(&id, MAIN_TAG, inputs[0].window_fn)
    }
}

/// A key with the values of each side of a [`PCollection::co_group_by_key`].
pub type CoGrouped<K, V, W> = (K, (Vec<V>, Vec<W>));

impl<K: Element, V: Element> PCollection<(K, V)> {
    /// `GroupByKey`: all values of each key (by encoded key) and window.
    pub fn group_by_key(&self, label: &str) -> PCollection<(K, Vec<V>)> {
        let spec = pb::FunctionSpec {
            urn: urns::standard_p_transforms::primitives::GROUP_BY_KEY.to_string(),
            payload: Default::default(),
        };
        let id = self
            .pipeline
            .add_transform(label, Some(spec), self.main_input(), false);
        let out = self
            .pipeline
            .add_output::<(K, Vec<V>)>(&id, MAIN_TAG, self.window_fn);
        self.pipeline.set_continuation_windowing(&self.id, out.id());
        out
    }

    /// `CoGroupByKey` of two keyed collections: per key and window, the
    /// values of each side.
    pub fn co_group_by_key<W: Element>(
        &self,
        label: &str,
        other: &PCollection<(K, W)>,
    ) -> PCollection<CoGrouped<K, V, W>> {
        let p = self.pipeline.clone();
        p.clone()
            .composite(label, None, vec![self.id.clone(), other.id.clone()], || {
                let a = self.owned_map("TagLeft", |(k, v): (K, V)| (k, (0i64, encode_to_vec(&v))));
                let b =
                    other.owned_map("TagRight", |(k, w): (K, W)| (k, (1i64, encode_to_vec(&w))));
                p.flatten("Flatten", &[a, b])
                    .group_by_key("GroupByKey")
                    .map("Untag", |(k, tagged): &(K, Vec<(i64, Vec<u8>)>)| {
                        let (mut left, mut right) = (Vec::new(), Vec::new());
                        for (tag, bytes) in tagged {
                            if *tag == 0 {
                                left.push(
                                    decode_from_slice::<V>(bytes)
                                        .expect("CoGroupByKey: undecodable left value"),
                                );
                            } else {
                                right.push(
                                    decode_from_slice::<W>(bytes)
                                        .expect("CoGroupByKey: undecodable right value"),
                                );
                            }
                        }
                        (k.clone(), (left, right))
                    })
            })
    }
}

impl<T: Element> PCollection<T> {
    /// `WindowInto`: assigns each element to windows of a window fn by its
    /// timestamp. Pass a [`WindowFn`], or a [`Window`] to also set the
    /// trigger, accumulation mode, allowed lateness and timestamp combiner
    /// of the GroupByKeys downstream.
    pub fn window_into(&self, label: &str, window: impl Into<Window>) -> PCollection<T> {
        let window = window.into();
        let window_fn = window.window_fn();
        let payload = pb::WindowIntoPayload {
            window_fn: Some(window_fn.to_proto()),
        };
        let spec = pb::FunctionSpec {
            urn: urns::standard_p_transforms::primitives::ASSIGN_WINDOWS.to_string(),
            payload: payload.encode_to_vec().into(),
        };
        let id = self
            .pipeline
            .add_transform(label, Some(spec), self.main_input(), true);
        let out = self.pipeline.add_output::<T>(&id, MAIN_TAG, window_fn);
        self.pipeline
            .set_windowing_strategy(out.id(), window_fn, window.to_proto());
        out
    }

    /// Union with `others` (see [`Pipeline::flatten`]).
    pub fn flatten_with(&self, label: &str, others: &[PCollection<T>]) -> PCollection<T> {
        let mut all = vec![self.clone()];
        all.extend(others.iter().cloned());
        self.pipeline.flatten(label, &all)
    }

    /// `Partition`: splits into `n` collections; `f(element, n)` picks the
    /// index of each element's collection (an index `>= n` fails the job).
    pub fn partition<F: Fn(&T, usize) -> usize + Send + Sync + 'static>(
        &self,
        label: &str,
        n: usize,
        f: F,
    ) -> Vec<PCollection<T>> {
        assert!(n > 0, "Partition needs at least one partition");
        let f = Arc::new(f);
        let tags: Vec<Arc<str>> = (0..n)
            .map(|i| {
                if i == 0 {
                    MAIN_TAG.into()
                } else {
                    format!("p{i}").into()
                }
            })
            .collect();
        let entry_tags = tags.clone();
        let id = add_pardo(
            &self.pipeline,
            label,
            &self.id,
            std::any::type_name::<F>().to_string(),
            Vec::new(),
            &[],
            move |_| {
                let outputs = entry_tags
                    .iter()
                    .map(|t| (t.clone(), ops::<T>(), main_output::<T>().2))
                    .collect();
                ParDoFn {
                    input: ops::<T>(),
                    outputs,
                    side_inputs: Vec::new(),
                    factory: Box::new(move |args: ParDoArgs<'_>| {
                        let what = args.info.transform_id.clone();
                        let mut outs = vec![unerase::<T>(args.main, &what)?];
                        for e in args.extra {
                            outs.push(unerase::<T>(e.output.receiver, &what)?);
                        }
                        Ok(erase::<T>(Box::new(PartitionOp {
                            info: args.info,
                            f: f.clone(),
                            outs,
                        })))
                    }),
                }
            },
        );
        tags.iter()
            .map(|t| self.pipeline.add_output::<T>(&id, t, self.window_fn))
            .collect()
    }

    /// `Reshuffle`: redistributes elements across workers (a GroupByKey on
    /// random keys), keeping their timestamps and windows. Use it to break
    /// fusion, e.g. after a high fan-out.
    pub fn reshuffle(&self, label: &str) -> PCollection<T> {
        let p = self.pipeline.clone();
        let spec = pb::FunctionSpec {
            urn: urns::standard_p_transforms::composites::RESHUFFLE.to_string(),
            payload: Default::default(),
        };
        let name = p.reserve_name(label);
        p.composite_reserved(&name, Some(spec), vec![self.id.clone()], || {
            let mut counter: u64 = 0;
            let keyed = self.owned_pardo("AddRandomKeys", move |wv: WindowedValue<T>| {
                // A scrambled counter per processor spreads elements over 4096 keys.
                counter = counter.wrapping_add(1);
                let key = (counter.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as i64;
                let ts = wv.timestamp.millis();
                Some(wv.map(|v| (key, (v, ts))))
            });
            let grouped = keyed.group_by_key("GroupByKey");
            grouped.simple_pardo("RestoreTimestamps", "RestoreTimestamps", |_, next| {
                Box::new(UngroupOp::<i64, T> {
                    next,
                    _k: PhantomData,
                })
            })
        })
    }
}
