//! Turning a case into a Rust SDK pipeline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oxbeam::combiners::{Count, Max, Mean, Min, Sum, Top};
use oxbeam::io::WriteToText;
use oxbeam::sdf::{
    OffsetRange, OffsetRangeTracker, ProcessContinuation, SplittableDoFn, SplittableParDo, Tracked,
};
use oxbeam::{
    BoundedWindow, DoFn, PCollection, ParDo, Pipeline, ProcessContext, SideInput, Timestamp,
    TupleTag, WindowFn,
};

use crate::case::{Case, Format, Input, Step, WindowSpec};

type Kv = (String, i64);

/// Builds `case` into `p`: input, steps, formatting, and a text sink writing
/// the output lines to files `<output_prefix>-SSSSS-of-NNNNN`.
pub fn build(case: &Case, p: &Pipeline, output_prefix: &str) {
    build_with(case, p, output_prefix, None);
}

/// As [`build`]; with `wasm_guest` (the `oxbeam-wasm-guest` example guests,
/// `guest_udfs.wasm`), steps whose user function has a Wasm twin run it as
/// a Wasm stage. The pipeline needs a Wasm executor registered.
pub fn build_with(
    case: &Case,
    p: &Pipeline,
    output_prefix: &str,
    wasm_guest: Option<&Arc<Vec<u8>>>,
) {
    let mut pc = create(p, "Input", &case.input);
    for (i, step) in case.steps.iter().enumerate() {
        let l = format!("S{i}");
        let wasm = wasm_guest.and_then(|m| {
            crate::wasm::apply_step(&pc, step, &|what: &str| format!("{l}{what}"), m)
        });
        pc = match wasm {
            Some(out) => out,
            None => apply_step(p, pc, step, &l),
        };
    }
    let format = case.format;
    pc.par_do("Format", ParDo::of(FormatFn { format }))
        .apply("Write", WriteToText::new(output_prefix));
}

fn create(p: &Pipeline, label: &str, input: &[Input]) -> PCollection<Kv> {
    let timestamped = input.iter().any(|i| i.parts().2.is_some());
    if !timestamped {
        let values: Vec<Kv> = input
            .iter()
            .map(|i| (i.parts().0.to_string(), i.parts().1))
            .collect();
        return p.create(label, values);
    }
    let values: Vec<(Kv, i64)> = input
        .iter()
        .map(|i| {
            let (k, v, t) = i.parts();
            ((k.to_string(), v), t.unwrap_or(0))
        })
        .collect();
    p.create(label, values)
        .with_timestamps(&format!("{label}Timestamps"), |(_, t): &(Kv, i64)| {
            Timestamp::from_millis(*t)
        })
        .map(&format!("{label}Unwrap"), |(kv, _): &(Kv, i64)| kv.clone())
}

fn window_fn(spec: &WindowSpec) -> WindowFn {
    let ms = Duration::from_millis;
    match spec {
        WindowSpec::Global => WindowFn::Global,
        WindowSpec::Fixed(size) => WindowFn::fixed(ms(*size)),
        WindowSpec::Sliding(size, period) => WindowFn::sliding(ms(*size), ms(*period)),
        WindowSpec::Sessions(gap) => WindowFn::sessions(ms(*gap)),
    }
}

fn apply_step(p: &Pipeline, pc: PCollection<Kv>, step: &Step, l: &str) -> PCollection<Kv> {
    let label = |what: &str| format!("{l}{what}");
    match step {
        Step::Window(spec) => pc.window_into(&label("Window"), window_fn(spec)),
        Step::TimestampFromValue => pc.with_timestamps(&label("Timestamps"), |(_, v): &Kv| {
            Timestamp::from_millis(*v)
        }),
        Step::AddToValue(n) => {
            let n = *n;
            pc.map_values(&label("Add"), move |v: &i64| v + n)
        }
        Step::MultiplyValue(n) => {
            let n = *n;
            pc.map_values(&label("Multiply"), move |v: &i64| v * n)
        }
        Step::KeepValuesAtLeast(n) => {
            let n = *n;
            pc.filter(&label("Filter"), move |(_, v): &Kv| *v >= n)
        }
        Step::SumPerKey => pc.combine_per_key(&label("Sum"), Sum::of::<i64>()),
        Step::MinPerKey => pc.combine_per_key(&label("Min"), Min::of::<i64>()),
        Step::MaxPerKey => pc.combine_per_key(&label("Max"), Max::of::<i64>()),
        Step::CountPerKey => pc.combine_per_key(&label("Count"), Count::of::<i64>()),
        Step::MeanPerKey => pc
            .combine_per_key(&label("Mean"), Mean::of::<i64>())
            .map_values(&label("Floor"), |m: &f64| m.floor() as i64),
        Step::GroupAndSum => pc
            .group_by_key(&label("Group"))
            .map(&label("SumGroup"), |(k, vs): &(String, Vec<i64>)| {
                (k.clone(), vs.iter().sum())
            }),
        Step::GroupAndList => pc.group_by_key(&label("Group")).map(
            &label("ListGroup"),
            |(k, vs): &(String, Vec<i64>)| {
                let mut vs = vs.clone();
                vs.sort_unstable();
                let list: Vec<String> = vs.iter().map(i64::to_string).collect();
                (format!("{k}:[{}]", list.join(",")), vs.len() as i64)
            },
        ),
        Step::TopPerKey(n) => pc
            .apply(&label("Top"), Top::largest_per_key::<i64>(*n))
            .flat_map(&label("Explode"), |(k, vs): &(String, Vec<i64>)| {
                vs.iter().map(|v| (k.clone(), *v)).collect::<Vec<_>>()
            }),
        Step::SumGlobally => pc
            .values(&label("Values"))
            .combine_globally(&label("SumAll"), Sum::of::<i64>())
            .map(&label("Key"), |v: &i64| ("*".to_string(), *v)),
        Step::CountPerElement => pc
            .map(&label("Render"), |(k, v): &Kv| format!("{k}={v}"))
            .count_per_element(&label("CountElements")),
        Step::Distinct => pc.distinct(&label("Distinct")),
        Step::Reshuffle => pc.reshuffle(&label("Reshuffle")),
        Step::FlattenWithSelf => pc.flatten_with(&label("Flatten"), std::slice::from_ref(&pc)),
        Step::Partition { n, keep } => {
            let parts = pc.partition(&label("Partition"), *n, |(_, v): &Kv, n| {
                v.rem_euclid(n as i64) as usize
            });
            parts[*keep].clone()
        }
        Step::SplitEvenOdd => {
            let odd = TupleTag::<Kv>::new("odd");
            let (even, tagged) = pc.par_do_with_outputs(
                &label("SplitEvenOdd"),
                ParDo::of(SplitEvenOddFn { odd: odd.clone() }).with_output(&odd),
            );
            even.flatten_with(&label("Rejoin"), &[tagged.get(&odd)])
        }
        Step::AddWindowTotalFromSideInput => {
            let total = pc
                .values(&label("TotalValues"))
                .combine_globally(&label("Total"), Sum::of::<i64>())
                .as_singleton_or(0);
            pc.par_do(
                &label("AddTotal"),
                ParDo::of(AddTotalFn {
                    total: total.clone(),
                })
                .with_side_input(&total),
            )
        }
        Step::AddKeyCountFromMultimap => {
            let multimap = pc.as_multimap();
            pc.par_do(
                &label("AddKeyCount"),
                ParDo::of(AddKeyCountFn {
                    multimap: multimap.clone(),
                })
                .with_side_input(&multimap),
            )
        }
        Step::CoGroupWith(other) => {
            let right = create(p, &label("Right"), other);
            let right =
                if pc.window_fn().is_merging() || !matches!(pc.window_fn(), WindowFn::Global) {
                    right.window_into(&label("RightWindow"), pc.window_fn())
                } else {
                    right
                };
            pc.co_group_by_key(&label("CoGroup"), &right).map(
                &label("Join"),
                |(k, (l, r)): &(String, (Vec<i64>, Vec<i64>))| {
                    (k.clone(), 1000 * l.len() as i64 + r.len() as i64)
                },
            )
        }
        Step::PanicOnValue(bad) => {
            let bad = *bad;
            pc.map(&label("MayPanic"), move |kv: &Kv| {
                if kv.1 == bad {
                    panic!("conformance: refusing value {bad}");
                }
                kv.clone()
            })
        }
        Step::ExpandRange { part, per_call } => pc.par_do_splittable(
            &label("ExpandRange"),
            SplittableParDo::of(ExpandRange {
                part: *part,
                per_call: *per_call,
            }),
        ),
    }
}

/// See [`Step::ExpandRange`].
#[derive(Clone)]
struct ExpandRange {
    part: i64,
    per_call: i64,
}

impl SplittableDoFn for ExpandRange {
    type In = Kv;
    type Out = Kv;
    type Tracker = OffsetRangeTracker;

    fn initial_restriction(&self, (_, v): &Kv) -> OffsetRange {
        OffsetRange::new(0, (*v).max(0))
    }

    fn split_restriction(&self, _: &Kv, r: &OffsetRange) -> Vec<OffsetRange> {
        r.split(self.part)
    }

    fn new_tracker(&self, r: OffsetRange) -> OffsetRangeTracker {
        OffsetRangeTracker::new(r)
    }

    fn process(
        &mut self,
        (k, _): &Kv,
        tracker: &mut Tracked<'_, OffsetRangeTracker>,
        ctx: &mut ProcessContext<'_, Kv>,
    ) -> ProcessContinuation {
        let start = tracker.current_restriction().start;
        for i in start..start.saturating_add(self.per_call.max(1)) {
            if !tracker.try_claim(i) {
                return ProcessContinuation::Stop;
            }
            ctx.output_with_timestamp((k.clone(), i), Timestamp::from_millis(i));
        }
        ProcessContinuation::Resume(Duration::from_millis(1))
    }
}

#[derive(Clone)]
struct FormatFn {
    format: Format,
}

fn render_window(w: &BoundedWindow) -> String {
    match w {
        BoundedWindow::Global => "global".to_string(),
        BoundedWindow::Interval { start, end } => format!("[{},{})", start.millis(), end.millis()),
    }
}

impl DoFn for FormatFn {
    type In = Kv;
    type Out = String;
    fn process(&mut self, (k, v): &Kv, ctx: &mut ProcessContext<'_, String>) {
        let line = match self.format {
            Format::Kv => format!("{k}={v}"),
            Format::KvWindow => format!("{k}={v}@{}", render_window(ctx.window())),
            Format::KvWindowTimestamp => format!(
                "{k}={v}@{} ts={}",
                render_window(ctx.window()),
                ctx.timestamp().millis()
            ),
        };
        ctx.output(line);
    }
}

#[derive(Clone)]
struct SplitEvenOddFn {
    odd: TupleTag<Kv>,
}

impl DoFn for SplitEvenOddFn {
    type In = Kv;
    type Out = Kv;
    fn process(&mut self, (k, v): &Kv, ctx: &mut ProcessContext<'_, Kv>) {
        if v % 2 == 0 {
            ctx.output((k.clone(), *v));
        } else {
            ctx.output_to(&self.odd, (k.clone(), -v));
        }
    }
}

#[derive(Clone)]
struct AddTotalFn {
    total: SideInput<i64>,
}

impl DoFn for AddTotalFn {
    type In = Kv;
    type Out = Kv;
    fn process(&mut self, (k, v): &Kv, ctx: &mut ProcessContext<'_, Kv>) {
        let total = *ctx.side_input(&self.total);
        ctx.output((k.clone(), v + total));
    }
}

#[derive(Clone)]
struct AddKeyCountFn {
    multimap: SideInput<HashMap<String, Vec<i64>>>,
}

impl DoFn for AddKeyCountFn {
    type In = Kv;
    type Out = Kv;
    fn process(&mut self, (k, v): &Kv, ctx: &mut ProcessContext<'_, Kv>) {
        let map = ctx.side_input(&self.multimap);
        let n = map.get(k).map_or(0, Vec::len) as i64;
        ctx.output((k.clone(), v + n));
    }
}
