//! Per-element-type operations, erased: what the stage builder can do with a
//! PCollection once it knows its element type (sources, sinks, fan-out,
//! window assignment).

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;

use oxbeam_fn_api::{Error, Result};
use oxbeam_model::coders::{WindowCoder, WindowedValueHeader, Windows};
use oxbeam_model::window::BoundedWindow;

use super::{BATCH, Batch, Cx, Erased, Meta, Receiver, WindowedValue, erase, unerase};
use crate::coder::{Coder, Element};
use crate::window::WindowFn;

/// A data source: decodes input buffers into its operator tree.
pub(crate) trait SourceOp: Send {
    fn start(&mut self) -> Result<()>;
    fn process(&mut self, bytes: &[u8], cx: &mut dyn Cx) -> Result<()> {
        self.process_some(bytes, usize::MAX, cx).map(|_| ())
    }
    /// Processes the first `max` elements of `bytes` (all if fewer);
    /// returns the bytes they took.
    fn process_some(&mut self, bytes: &[u8], max: usize, cx: &mut dyn Cx) -> Result<usize>;
    /// The end offset of each element in `bytes`.
    fn element_ends(&self, bytes: &[u8]) -> Result<Vec<usize>>;
    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()>;
    fn teardown(&mut self);
}

/// Operations on PCollections of one element type.
pub(crate) trait TypeOps: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn type_id(&self) -> TypeId;
    /// A receiver dropping everything.
    fn discard(&self) -> Erased;
    /// A receiver cloning into each of `outs`.
    fn fanout(&self, outs: Vec<Erased>, what: &str) -> Result<Erased>;
    /// A data sink encoding to `sink_transform`.
    fn sink(&self, sink_transform: &str, window_coder: WindowCoder) -> Erased;
    /// A data source decoding into `next`.
    fn source(
        &self,
        next: Erased,
        window_coder: WindowCoder,
        what: &str,
    ) -> Result<Box<dyn SourceOp>>;
    /// `beam:transform:window_into:v1` with `window_fn`.
    fn window_into(&self, window_fn: WindowFn, next: Erased, what: &str) -> Result<Erased>;
}

/// The [`TypeOps`] of `T`.
pub(crate) fn ops<T: Element>() -> Arc<dyn TypeOps> {
    Arc::new(Ops::<T>(PhantomData))
}

struct Ops<T>(PhantomData<fn() -> T>);

impl<T: Element> TypeOps for Ops<T> {
    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn type_id(&self) -> TypeId {
        TypeId::of::<T>()
    }

    fn discard(&self) -> Erased {
        erase::<T>(Box::new(Discard))
    }

    fn fanout(&self, outs: Vec<Erased>, what: &str) -> Result<Erased> {
        let mut rs = Vec::with_capacity(outs.len());
        for o in outs {
            rs.push(unerase::<T>(o, what)?);
        }
        Ok(match rs.len() {
            0 => erase::<T>(Box::new(Discard)),
            1 => erase::<T>(rs.pop().unwrap_or_else(|| Box::new(Discard))),
            _ => erase::<T>(Box::new(Fanout(rs, Batch::default()))),
        })
    }

    fn sink(&self, sink_transform: &str, window_coder: WindowCoder) -> Erased {
        erase::<T>(Box::new(SinkOp::<T> {
            transform: sink_transform.to_string(),
            coder: T::Coder::default(),
            window_coder,
            buf: Vec::with_capacity(256),
        }))
    }

    fn source(
        &self,
        next: Erased,
        window_coder: WindowCoder,
        what: &str,
    ) -> Result<Box<dyn SourceOp>> {
        Ok(Box::new(DataSource::<T> {
            transform: what.to_string(),
            coder: T::Coder::default(),
            window_coder,
            next: unerase::<T>(next, what)?,
            batch: Batch::with_capacity(BATCH),
        }))
    }

    fn window_into(&self, window_fn: WindowFn, next: Erased, what: &str) -> Result<Erased> {
        Ok(erase::<T>(Box::new(WindowInto {
            window_fn,
            next: unerase::<T>(next, what)?,
            out: Batch::default(),
        })))
    }
}

struct Discard;

impl<T> Receiver<T> for Discard {
    fn start(&mut self) -> Result<()> {
        Ok(())
    }
    fn receive(&mut self, _: WindowedValue<T>, _: &mut dyn Cx) -> Result<()> {
        Ok(())
    }
    fn finish(&mut self, _: &mut dyn Cx) -> Result<()> {
        Ok(())
    }
    fn teardown(&mut self) {}
}

struct Fanout<T>(Vec<Box<dyn Receiver<T>>>, Batch<T>);

impl<T: Element> Receiver<T> for Fanout<T> {
    fn start(&mut self) -> Result<()> {
        self.0.iter_mut().try_for_each(|r| r.start())
    }

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        if let Some((last, rest)) = self.0.split_last_mut() {
            for r in rest {
                r.receive(wv.clone(), cx)?;
            }
            last.receive(wv, cx)?;
        }
        Ok(())
    }

    fn receive_batch(&mut self, batch: &mut Batch<T>, cx: &mut dyn Cx) -> Result<()> {
        if let Some((last, rest)) = self.0.split_last_mut() {
            for r in rest {
                self.1.clear();
                self.1.values.extend(batch.values.iter().cloned());
                self.1.meta.extend_from_slice(&batch.meta);
                if let Err(e) = r.receive_batch(&mut self.1, cx) {
                    batch.clear();
                    return Err(e);
                }
            }
            last.receive_batch(batch, cx)?;
        }
        batch.clear();
        Ok(())
    }

    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
        self.0.iter_mut().try_for_each(|r| r.finish(cx))
    }

    fn teardown(&mut self) {
        self.0.iter_mut().for_each(|r| r.teardown());
    }
}

struct SinkOp<T: Element> {
    transform: String,
    coder: T::Coder,
    window_coder: WindowCoder,
    buf: Vec<u8>,
}

impl<T: Element> SinkOp<T> {
    #[inline]
    fn emit(&mut self, value: &T, meta: &Meta, cx: &mut dyn Cx) -> Result<()> {
        if self.window_coder == WindowCoder::Global && meta.window != BoundedWindow::Global {
            return Err(Error::Internal(format!(
                "data sink {} has a global-window coder but received an element in window {:?}",
                self.transform, meta.window
            )));
        }
        self.buf.clear();
        WindowedValueHeader {
            timestamp: meta.timestamp,
            windows: Windows::one(meta.window),
            pane: meta.pane,
        }
        .encode(&mut self.buf);
        self.coder.encode(value, &mut self.buf);
        cx.emit(&self.transform, &self.buf)
    }
}

impl<T: Element> Receiver<T> for SinkOp<T> {
    fn start(&mut self) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        self.emit(&wv.value, &wv.meta(), cx)
    }

    fn receive_batch(&mut self, batch: &mut Batch<T>, cx: &mut dyn Cx) -> Result<()> {
        let r = batch.iter().try_for_each(|(v, m)| self.emit(v, m, cx));
        batch.clear();
        r
    }

    fn finish(&mut self, _: &mut dyn Cx) -> Result<()> {
        Ok(())
    }

    fn teardown(&mut self) {}
}

struct DataSource<T: Element> {
    transform: String,
    coder: T::Coder,
    window_coder: WindowCoder,
    next: Box<dyn Receiver<T>>,
    batch: Batch<T>,
}

impl<T: Element> SourceOp for DataSource<T> {
    fn start(&mut self) -> Result<()> {
        self.next.start()
    }

    fn process_some(&mut self, bytes: &[u8], max: usize, cx: &mut dyn Cx) -> Result<usize> {
        let mut input = bytes;
        let mut taken = 0;
        let transform = &self.transform;
        let bad = |input: &[u8], e: oxbeam_model::coders::CoderError| {
            Error::invalid(
                format!(
                    "element of data source {transform} at byte {}",
                    bytes.len() - input.len()
                ),
                format!("{e} (decoding {})", std::any::type_name::<T>()),
            )
        };
        self.batch.clear();
        while !input.is_empty() && taken < max {
            taken += 1;
            let h = WindowedValueHeader::decode(&mut input, self.window_coder)
                .map_err(|e| bad(input, e))?;
            let value = self.coder.decode(&mut input).map_err(|e| bad(input, e))?;
            let meta = |window: BoundedWindow| Meta {
                timestamp: h.timestamp,
                window,
                pane: h.pane,
            };
            match h.windows.as_slice() {
                [w] => self.batch.push_with(value, meta(*w)),
                [] => {}
                [rest @ .., last] => {
                    for w in rest {
                        self.batch.push_with(value.clone(), meta(*w));
                    }
                    self.batch.push_with(value, meta(*last));
                }
            }
            if self.batch.len() >= BATCH {
                self.next.receive_batch(&mut self.batch, cx)?;
            }
        }
        self.next.receive_batch(&mut self.batch, cx)?;
        Ok(bytes.len() - input.len())
    }

    fn element_ends(&self, bytes: &[u8]) -> Result<Vec<usize>> {
        let mut input = bytes;
        let mut ends = Vec::new();
        while !input.is_empty() {
            WindowedValueHeader::decode(&mut input, self.window_coder)
                .and_then(|_| self.coder.decode(&mut input).map(|_| ()))
                .map_err(|e| {
                    Error::invalid(
                        format!("element of data source {}", self.transform),
                        e.to_string(),
                    )
                })?;
            ends.push(bytes.len() - input.len());
        }
        Ok(ends)
    }

    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
        self.next.finish(cx)
    }

    fn teardown(&mut self) {
        self.next.teardown();
    }
}

struct WindowInto<T> {
    window_fn: WindowFn,
    next: Box<dyn Receiver<T>>,
    out: Batch<T>,
}

impl<T: Element> Receiver<T> for WindowInto<T> {
    fn start(&mut self) -> Result<()> {
        self.next.start()
    }

    #[inline]
    fn receive(&mut self, wv: WindowedValue<T>, cx: &mut dyn Cx) -> Result<()> {
        match self.window_fn {
            WindowFn::Sliding { .. } => {
                let mut windows = Vec::new();
                self.window_fn.assign(wv.timestamp, |w| windows.push(w));
                let (last, rest) = match windows.split_last() {
                    Some(x) => x,
                    None => return Ok(()),
                };
                for w in rest {
                    self.next.receive(
                        WindowedValue {
                            window: *w,
                            ..wv.clone()
                        },
                        cx,
                    )?;
                }
                self.next.receive(
                    WindowedValue {
                        window: *last,
                        ..wv
                    },
                    cx,
                )
            }
            _ => {
                let mut window = BoundedWindow::Global;
                self.window_fn.assign(wv.timestamp, |w| window = w);
                self.next.receive(WindowedValue { window, ..wv }, cx)
            }
        }
    }

    fn receive_batch(&mut self, batch: &mut Batch<T>, cx: &mut dyn Cx) -> Result<()> {
        if !matches!(self.window_fn, WindowFn::Sliding { .. }) {
            // One window per element: rewrite the metadata column in place.
            for m in &mut batch.meta {
                let mut window = BoundedWindow::Global;
                self.window_fn.assign(m.timestamp, |w| window = w);
                m.window = window;
            }
            return self.next.receive_batch(batch, cx);
        }
        self.out.clear();
        let out = &mut self.out;
        for (v, m) in batch.values.drain(..).zip(batch.meta.drain(..)) {
            let mut first = None;
            self.window_fn.assign(m.timestamp, |w| match first {
                None => first = Some(w),
                Some(_) => out.push_with(v.clone(), Meta { window: w, ..m }),
            });
            if let Some(w) = first {
                out.push_with(v, Meta { window: w, ..m });
            }
        }
        self.next.receive_batch(&mut self.out, cx)
    }

    fn finish(&mut self, cx: &mut dyn Cx) -> Result<()> {
        self.next.finish(cx)
    }

    fn teardown(&mut self) {
        self.next.teardown();
    }
}
