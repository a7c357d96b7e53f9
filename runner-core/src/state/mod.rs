//! User state and timers (Beam stateful processing), engine independent.
//!
//! - [`StateStore`]: in-memory user state cells, addressed like Beam's
//!   State API (bag, multimap keys, multimap, ordered list; by transform,
//!   state id, encoded window and encoded key). Runners adapt it to the
//!   executor contract `oxbeam_fn_api::UserState` with a thin wrapper.
//! - [`TimerQueue`]: pending timers, latest per (transform, family, key,
//!   window, tag) wins; fires event-time timers as the input watermark
//!   passes them and processing-time timers as processing time does, and
//!   holds the output watermark at the earliest output timestamp pending.
//! - [`StageState`]: what the plan records about a stateful stage (its key
//!   and window coders, the state and timer families of each transform).
//!
//! ```
//! use oxbeam_runner_core::state::{CellRef, StateKind, StateStore};
//! let mut store = StateStore::new();
//! let cell = CellRef { transform: "t", state_id: "count", window: b"", key: b"\x01k" };
//! store.append(&cell, StateKind::Bag, b"\x05").unwrap();
//! let mut out = Vec::new();
//! store.get(&cell, StateKind::Bag, &mut out).unwrap();
//! assert_eq!(out, b"\x05");
//! ```
//!
//! How an engine uses them (runner-local's batch engine does exactly this;
//! a streaming engine calls the same methods as its watermark advances):
//! partition a stateful stage's input by key; per partition, one store and
//! one queue (declare every family of [`StageState`] on the queue). Run
//! element bundles with the store as the bundle's user state and feed every
//! timer the bundle sets to [`TimerQueue::set_encoded`]. When the input
//! watermark advances, fire [`TimerQueue::fire_due_earliest_per_key`] as
//! timer bundles (encode with [`FiredTimer::encode`]) until nothing is due,
//! then [`StateStore::expire`] and [`TimerQueue::expire`] expired windows.

mod store;
mod timers;

#[cfg(test)]
mod tests;

use std::fmt;

use oxbeam_model::coders::Coder;
use oxbeam_model::pipeline as pb;
use prost::Message;

pub use store::{CellRef, StateKind, StateStore};
pub use timers::{DecodedTimer, FiredTimer, TimerId, TimerQueue, decode_timer};

use crate::error::{Error, Result};
use crate::graph::{Graph, Kind};

/// A malformed state request or timer, or a misused cell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

/// The time domain of a timer family.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum TimeDomain {
    /// Fires when the input watermark passes the timer.
    EventTime,
    /// Fires when processing time passes the timer.
    ProcessingTime,
}

impl fmt::Display for TimeDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeDomain::EventTime => "event time",
            TimeDomain::ProcessingTime => "processing time",
        })
    }
}

/// A timer family of a stateful transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerFamily {
    /// Its id in `ParDoPayload.timer_family_specs`.
    pub id: String,
    /// Its time domain.
    pub domain: TimeDomain,
}

/// One stateful transform of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulTransform {
    /// Transform id.
    pub transform: String,
    /// Its main input PCollection (keyed).
    pub input: String,
    /// Its state ids, sorted.
    pub state_ids: Vec<String>,
    /// Its timer families, sorted by id.
    pub timer_families: Vec<TimerFamily>,
}

/// What the plan records about a stateful stage: its input must be
/// partitioned by key (`key_coder` splits the key from each KV element),
/// its state lives per (key, window), and its timers come back as timer
/// inputs of the transforms listed.
#[derive(Debug, Clone)]
pub struct StageState {
    /// Coder of the keys of the stateful transforms' input.
    pub key_coder: Coder,
    /// Coder of the values of that input (KV elements are key then value).
    pub value_coder: Coder,
    /// Coder of the windows of that input.
    pub window_coder: Coder,
    /// Allowed lateness of that input's windowing, for state expiry.
    pub allowed_lateness_ms: i64,
    /// The stateful transforms, in stage order.
    pub transforms: Vec<StatefulTransform>,
}

impl StageState {
    /// A fresh timer queue with every timer family of the stage declared.
    pub fn timer_queue(&self) -> TimerQueue {
        let mut q = TimerQueue::new();
        for t in &self.transforms {
            for f in &t.timer_families {
                q.declare_family(&t.transform, &f.id, f.domain);
            }
        }
        q
    }
}

impl fmt::Display for StageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stateful, keyed by {}", self.key_coder.urn())?;
        for t in &self.transforms {
            write!(f, "; {}: state [{}]", t.transform, t.state_ids.join(", "))?;
            let timers: Vec<String> = t
                .timer_families
                .iter()
                .map(|x| format!("{} ({})", x.id, x.domain))
                .collect();
            write!(f, " timers [{}]", timers.join(", "))?;
        }
        Ok(())
    }
}

/// The max timestamp (milliseconds) of an encoded window, for global and
/// interval windows.
pub(crate) fn window_max_timestamp(window: &[u8], window_coder: &Coder) -> Option<i64> {
    match window_coder {
        Coder::GlobalWindow => Some(oxbeam_model::window::Timestamp::GLOBAL_WINDOW_MAX.millis()),
        Coder::IntervalWindow => {
            let mut w = window;
            crate::coder::read_interval_window(&mut w)
                .ok()
                .map(|(_, end)| end.saturating_sub(1))
        }
        _ => None,
    }
}

fn par_do_payload(g: &Graph, id: &str) -> Result<Option<pb::ParDoPayload>> {
    let t = &g.transforms[id];
    if !matches!(t.kind, Kind::ParDo { stateful: true, .. }) {
        return Ok(None);
    }
    pb::ParDoPayload::decode(t.payload.as_slice())
        .map(Some)
        .map_err(|e| Error::Internal(format!("re-decoding ParDoPayload of {id}: {e}")))
}

/// Whether transform `id` of `g` is a stateful ParDo.
pub(crate) fn is_stateful(g: &Graph, id: &str) -> bool {
    g.transforms
        .get(id)
        .is_some_and(|t| matches!(t.kind, Kind::ParDo { stateful: true, .. }))
}

/// The coder ids the state and timer specs of transform `id` use (for the
/// stage descriptor), if it is a stateful ParDo.
pub(crate) fn spec_coder_ids(g: &Graph, id: &str) -> Result<Vec<String>> {
    let Some(p) = par_do_payload(g, id)? else {
        return Ok(Vec::new());
    };
    use pb::state_spec::Spec;
    let mut ids = Vec::new();
    for s in p.state_specs.values() {
        match &s.spec {
            Some(Spec::ReadModifyWriteSpec(x)) => ids.push(x.coder_id.clone()),
            Some(Spec::BagSpec(x)) => ids.push(x.element_coder_id.clone()),
            Some(Spec::OrderedListSpec(x)) => ids.push(x.element_coder_id.clone()),
            Some(Spec::CombiningSpec(x)) => ids.push(x.accumulator_coder_id.clone()),
            Some(Spec::MapSpec(x)) => {
                ids.extend([x.key_coder_id.clone(), x.value_coder_id.clone()])
            }
            Some(Spec::MultimapSpec(x)) => {
                ids.extend([x.key_coder_id.clone(), x.value_coder_id.clone()])
            }
            Some(Spec::SetSpec(x)) => ids.push(x.element_coder_id.clone()),
            None => {}
        }
    }
    ids.extend(
        p.timer_family_specs
            .values()
            .map(|t| t.timer_family_coder_id.clone()),
    );
    ids.retain(|c| !c.is_empty());
    Ok(ids)
}

/// The [`StageState`] of a stage with `transforms`, if any is stateful.
pub(crate) fn stage_state(g: &Graph, transforms: &[String]) -> Result<Option<StageState>> {
    let mut out: Option<StageState> = None;
    for id in transforms {
        let Some(p) = par_do_payload(g, id)? else {
            continue;
        };
        let t = &g.transforms[id];
        let input = t.main_inputs().next().unwrap_or_default().to_string();
        let pc = g
            .pcollections
            .get(&input)
            .ok_or_else(|| Error::Internal(format!("unknown PCollection {input}")))?;
        let coder = crate::coder::build_coder(&pc.coder_id, &g.coders).map_err(Error::Internal)?;
        let Coder::Kv { key, value } = coder else {
            return Err(Error::plan(
                t.describe(),
                "is stateful but its input is not keyed",
            ));
        };
        let ws = &g.windowing_strategies[&pc.windowing_strategy_id];
        let window_coder =
            crate::coder::build_coder(&ws.window_coder_id, &g.coders).map_err(Error::Internal)?;
        let mut state_ids: Vec<String> = p.state_specs.keys().cloned().collect();
        state_ids.sort();
        let mut timer_families: Vec<TimerFamily> = p
            .timer_family_specs
            .iter()
            .map(|(fid, spec)| TimerFamily {
                id: fid.clone(),
                domain: if spec.time_domain == pb::time_domain::Enum::ProcessingTime as i32 {
                    TimeDomain::ProcessingTime
                } else {
                    TimeDomain::EventTime
                },
            })
            .collect();
        timer_families.sort_by(|a, b| a.id.cmp(&b.id));
        let entry = StatefulTransform {
            transform: id.clone(),
            input,
            state_ids,
            timer_families,
        };
        match &mut out {
            Some(s) => s.transforms.push(entry),
            None => {
                out = Some(StageState {
                    key_coder: (*key).clone(),
                    value_coder: (*value).clone(),
                    window_coder,
                    allowed_lateness_ms: ws.allowed_lateness_ms,
                    transforms: vec![entry],
                })
            }
        }
    }
    Ok(out)
}

/// Checks a stateful ParDo: a keyed input whose key the runner can split
/// off (self-delimiting), standard windows, and no splittable DoFn.
pub(crate) fn check_stateful(g: &Graph, t: &crate::graph::Transform) -> Result<()> {
    if matches!(
        t.kind,
        Kind::ParDo {
            splittable: true,
            ..
        }
    ) {
        return Err(Error::not_implemented(
            t.describe(),
            "splittable DoFns with state or timers",
        ));
    }
    let Some(input) = t.main_inputs().next() else {
        return Err(Error::plan(
            t.describe(),
            "is stateful but has no main input",
        ));
    };
    let Some(pc) = g.pcollections.get(input) else {
        return Ok(()); // reported by the PCollection checks
    };
    let coder = crate::coder::build_coder(&pc.coder_id, &g.coders)
        .map_err(|e| Error::plan(t.describe(), e))?;
    let Coder::Kv { key, .. } = coder else {
        return Err(Error::plan(
            t.describe(),
            format!(
                "is stateful (declares state or timers), so its input must be keyed, but PCollection '{input}' has coder '{}' ({}), not a KV coder",
                pc.coder_id,
                coder.urn()
            ),
        ));
    };
    if !key.is_self_delimiting() {
        return Err(Error::plan(
            t.describe(),
            format!(
                "is stateful, but its key coder ({}) contains a coder unknown to the runner outside any length prefix; \
                 wrap it in beam:coder:length_prefix:v1",
                key.urn()
            ),
        ));
    }
    if let Some(ws) = g.windowing_strategies.get(&pc.windowing_strategy_id)
        && ws.merging
    {
        return Err(Error::not_implemented(
            t.describe(),
            format!(
                "state and timers in merging windows ({}); re-window or group first",
                ws.window_fn
            ),
        ));
    }
    if let Some(ws) = g.windowing_strategies.get(&pc.windowing_strategy_id)
        && ws.window_coder == crate::windowing::WindowCoderKind::Other
    {
        return Err(Error::not_implemented(
            t.describe(),
            format!(
                "state and timers in windows of coder '{}' (only global and interval windows)",
                ws.window_coder_id
            ),
        ));
    }
    Ok(())
}

/// Makes the timer family coders of stateful ParDos `beam:coder:timer:v1`
/// of the (length-prefixed) key coder of their input and its window coder,
/// so that harnesses encode timer keys as the runner reads keys. SDKs may
/// declare timer coders with key coders the runner cannot skip (Beam
/// Python's pickled coders); Beam's runners rewrite them likewise.
/// Malformed transforms are left for validation to report.
pub(crate) fn align_timer_coders(g: &mut Graph) {
    let ids: Vec<String> = g
        .transforms
        .values()
        .filter(|t| matches!(t.kind, Kind::ParDo { stateful: true, .. }))
        .map(|t| t.id.clone())
        .collect();
    for id in ids {
        let t = &g.transforms[&id];
        let Ok(mut payload) = pb::ParDoPayload::decode(t.payload.as_slice()) else {
            continue;
        };
        if payload.timer_family_specs.is_empty() {
            continue;
        }
        let Some(input) = t.main_inputs().next() else {
            continue;
        };
        let Some(pc) = g.pcollections.get(input) else {
            continue;
        };
        let (Some(kv), Some(ws)) = (
            g.coders.get(&pc.coder_id),
            g.windowing_strategies.get(&pc.windowing_strategy_id),
        ) else {
            continue;
        };
        if kv.urn != oxbeam_model::urns::standard_coders::KV || kv.components.len() != 2 {
            continue;
        }
        let spec = crate::coder::CoderSpec {
            urn: oxbeam_model::urns::standard_coders::TIMER.to_string(),
            payload: Vec::new(),
            components: vec![kv.components[0].clone(), ws.window_coder_id.clone()],
        };
        let timer_coder = g.add_coder(&format!("{id}/timer"), spec);
        for f in payload.timer_family_specs.values_mut() {
            f.timer_family_coder_id = timer_coder.clone();
        }
        if let Some(t) = g.transforms.get_mut(&id) {
            t.payload = payload.encode_to_vec();
        }
    }
}
