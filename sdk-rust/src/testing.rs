//! Test helpers: capture a PCollection's elements in memory.
//!
//! Works with runners that execute user code in this process (the local
//! runner): the captured values land in a shared buffer read after
//! [`Pipeline::run`](crate::Pipeline::run).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let p = oxbeam::Pipeline::default();
//! let out = p.create("Xs", vec![1i64, 2, 3]).map("Double", |x: &i64| x * 2).collect_for_testing("Out");
//! # if false {
//! p.run()?;
//! assert_eq!(out.sorted(), vec![2, 4, 6]);
//! # }
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use oxbeam_fn_api::Result;
use oxbeam_model::window::{BoundedWindow, Timestamp};

use crate::coder::Element;
use crate::exec::{Cx, Receiver, WindowedValue};
use crate::pipeline::PCollection;

type Buffer<T> = Arc<Mutex<Vec<(T, Timestamp, BoundedWindow)>>>;

/// The elements a PCollection had in a run, with timestamps and windows.
#[derive(Debug)]
pub struct Collected<T> {
    buffer: Buffer<T>,
}

impl<T: Clone> Collected<T> {
    /// The values, in arrival order.
    pub fn values(&self) -> Vec<T> {
        self.windowed().into_iter().map(|(v, _, _)| v).collect()
    }

    /// The values with their timestamps and windows, in arrival order.
    pub fn windowed(&self) -> Vec<(T, Timestamp, BoundedWindow)> {
        self.buffer.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// The values, sorted.
    pub fn sorted(&self) -> Vec<T>
    where
        T: Ord,
    {
        let mut v = self.values();
        v.sort();
        v
    }
}

struct CollectOp<T> {
    buffer: Buffer<T>,
    next: Box<dyn Receiver<()>>,
    _t: PhantomData<fn(T)>,
}

impl<T: Element> Receiver<T> for CollectOp<T> {
    fn start(&mut self) -> Result<()> {
        Ok(())
    }
    fn receive(&mut self, wv: WindowedValue<T>, _: &mut dyn Cx) -> Result<()> {
        if let Ok(mut b) = self.buffer.lock() {
            b.push((wv.value, wv.timestamp, wv.window));
        }
        Ok(())
    }
    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
        self.next.finish(cx)
    }
    fn teardown(&mut self) {}
}

impl<T: Element> PCollection<T> {
    /// Captures this collection's elements for assertions after the run.
    pub fn collect_for_testing(&self, label: &str) -> Collected<T> {
        let buffer: Buffer<T> = Arc::default();
        let b = buffer.clone();
        self.simple_pardo::<()>(label, "collect_for_testing", move |_, next| {
            Box::new(CollectOp {
                buffer: b.clone(),
                next,
                _t: PhantomData,
            })
        });
        Collected { buffer }
    }
}
