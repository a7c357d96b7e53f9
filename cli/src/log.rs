//! A small stderr logger for `tracing` events (text or JSON lines), so the
//! CLI needs no logging framework.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Writes events at or above a level to stderr, one line each.
pub(crate) struct StderrLogger {
    pub level: Level,
    pub json: bool,
    next_span: AtomicU64,
}

impl StderrLogger {
    pub(crate) fn new(level: Level, json: bool) -> Self {
        StderrLogger {
            level,
            json,
            next_span: AtomicU64::new(1),
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.rest
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.rest
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

impl Subscriber for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.level
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let line = if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("time".into(), serde_json::json!(time));
            obj.insert("level".into(), serde_json::json!(meta.level().as_str()));
            obj.insert("target".into(), serde_json::json!(meta.target()));
            obj.insert("msg".into(), serde_json::json!(f.message));
            for (k, v) in f.rest {
                obj.insert(k, serde_json::json!(v));
            }
            serde_json::Value::Object(obj).to_string()
        } else {
            let mut s = format!("{time:.3} {:>5} {}", meta.level(), f.message);
            for (k, v) in f.rest {
                let _ = write!(s, " {k}={v}");
            }
            s
        };
        eprintln!("{line}");
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}
