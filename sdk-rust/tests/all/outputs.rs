//! DoFn features: lifecycle, tagged outputs, element metadata.

use oxbeam::{
    BoundedWindow, DoFn, FinishBundleContext, ParDo, ProcessContext, Timestamp, TupleTag,
};

use crate::common::{pipeline, strings};

#[derive(Clone)]
struct Parse {
    errors: TupleTag<String>,
    lengths: TupleTag<i64>,
}

impl DoFn for Parse {
    type In = String;
    type Out = i64;
    fn process(&mut self, s: &String, ctx: &mut ProcessContext<'_, i64>) {
        ctx.output_to(&self.lengths, s.len() as i64);
        match s.parse() {
            Ok(n) => ctx.output(n),
            Err(_) => ctx.output_to(&self.errors, s.clone()),
        }
    }
}

#[test]
fn tagged_outputs() {
    let p = pipeline();
    let errors = TupleTag::<String>::new("errors");
    let lengths = TupleTag::<i64>::new("lengths");
    let (nums, tagged) = p
        .create("Lines", strings(&["1", "x", "22", "yy"]))
        .par_do_with_outputs(
            "Parse",
            ParDo::of(Parse {
                errors: errors.clone(),
                lengths: lengths.clone(),
            })
            .with_output(&errors)
            .with_output(&lengths),
        );
    let nums = nums.collect_for_testing("Nums");
    let errs = tagged
        .get(&errors)
        .map("Upper", |s: &String| s.to_uppercase())
        .collect_for_testing("Errs");
    let lens = tagged
        .get(&lengths)
        .apply("Sum", oxbeam::combiners::Sum::globally())
        .collect_for_testing("Lens");
    p.run().unwrap();
    assert_eq!(nums.sorted(), vec![1, 22]);
    assert_eq!(errs.sorted(), strings(&["X", "YY"]));
    assert_eq!(lens.values(), vec![6]);
}

/// Buffers elements and emits their count per bundle in `finish_bundle`.
#[derive(Clone, Default)]
struct CountPerBundle {
    set_up: bool,
    in_bundle: i64,
}

impl DoFn for CountPerBundle {
    type In = i64;
    type Out = i64;
    fn setup(&mut self) {
        self.set_up = true;
    }
    fn start_bundle(&mut self) {
        assert!(self.set_up, "setup runs before start_bundle");
        self.in_bundle = 0;
    }
    fn process(&mut self, _: &i64, _: &mut ProcessContext<'_, i64>) {
        self.in_bundle += 1;
    }
    fn finish_bundle(&mut self, ctx: &mut FinishBundleContext<'_, i64>) {
        ctx.output(
            self.in_bundle,
            Timestamp::from_millis(0),
            BoundedWindow::Global,
        );
    }
}

#[test]
fn lifecycle_and_finish_bundle_outputs() {
    let p = pipeline();
    let counts = p
        .create("Xs", 0..25_000i64)
        .par_do("CountPerBundle", ParDo::of(CountPerBundle::default()))
        .apply("Sum", oxbeam::combiners::Sum::globally())
        .collect_for_testing("Out");
    p.run().unwrap();
    assert_eq!(counts.values(), vec![25_000]);
}

#[derive(Clone)]
struct Describe;

impl DoFn for Describe {
    type In = i64;
    type Out = String;
    fn process(&mut self, x: &i64, ctx: &mut ProcessContext<'_, String>) {
        let w = match ctx.window() {
            BoundedWindow::Global => "global".to_string(),
            BoundedWindow::Interval { start, end } => {
                format!("[{},{})", start.millis(), end.millis())
            }
        };
        let s = format!(
            "{x}@{}:{w}:first={}",
            ctx.timestamp().millis(),
            ctx.pane().is_first
        );
        ctx.output_with_timestamp(s, Timestamp::from_millis(ctx.timestamp().millis() + 1));
    }
}

#[test]
fn process_context_exposes_timestamp_window_and_pane() {
    let p = pipeline();
    let out = p
        .create("Xs", vec![3i64])
        .with_timestamps("Ts", |x: &i64| Timestamp::from_millis(*x))
        .window_into(
            "Fixed",
            oxbeam::WindowFn::fixed(std::time::Duration::from_millis(10)),
        )
        .par_do("Describe", ParDo::of(Describe))
        .collect_for_testing("Out");
    p.run().unwrap();
    let got = out.windowed();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "3@3:[0,10):first=true");
    assert_eq!(got[0].1, Timestamp::from_millis(4));
}
