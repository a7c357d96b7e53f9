//! The engine's state in Redis checkpoints: what a restarted job needs,
//! besides its sources' offsets, to give every result exactly once through
//! GroupByKeys (buffered windows, triggers, panes, holds) and stateful
//! stages (user state and timers). See docs/design/streaming.md §4.
//!
//! A snapshot is taken at the quiescent point of a commit, when no bundle
//! is in flight and no stage holds input: all the state there is lives in
//! the groupings and the key partitions. Each step's part is named by the
//! step, so a snapshot is only restored into the same pipeline.

use oxbeam_runner_core::Step;
use oxbeam_runner_core::snapshot;
use serde::{Deserialize, Serialize};

use super::{BEFORE_TIME, Engine, Op, internal};
use crate::Error;

/// One step's state.
#[derive(Serialize, Deserialize)]
enum StepState {
    /// A GroupByKey: its grouping, and panes fired but not yet handed on.
    Group {
        grouping: Vec<u8>,
        early: Vec<Vec<u8>>,
    },
    /// A stateful stage: per key partition, user state and timers.
    Keyed { partitions: Vec<(Vec<u8>, Vec<u8>)> },
}

/// How a snapshot names a step: a GroupByKey by its name, a stateful
/// stage by its stateful transforms (stage ids are only positions).
fn state_name(step: &Step) -> String {
    match step {
        Step::Stage(s) => match &s.state {
            Some(st) => {
                let ids: Vec<&str> = st.transforms.iter().map(|t| t.transform.as_str()).collect();
                format!("stateful transform '{}'", ids.join("', '"))
            }
            None => step.name(),
        },
        _ => step.name(),
    }
}

/// What [`Engine::snapshot_state`] writes: each stateful step, by name.
#[derive(Serialize, Deserialize)]
struct EngineState {
    steps: Vec<(String, StepState)>,
}

impl Engine<'_, '_> {
    /// Whether any step keeps state between bundles (a checkpoint then
    /// needs [`snapshot_state`](Self::snapshot_state)).
    pub(super) fn keeps_state(&self) -> bool {
        self.ops.iter().any(|o| match o {
            Op::Group(_) => true,
            Op::Stage(s) => s.keyed.is_some(),
            _ => false,
        })
    }

    /// The state of every GroupByKey and stateful stage, as bytes.
    ///
    /// # Errors
    /// [`Error::Internal`] if a key partition's lock is poisoned.
    pub(super) fn snapshot_state(&self) -> Result<Vec<u8>, Error> {
        let steps = self.job.plan.steps();
        let mut out = Vec::new();
        for (i, op) in self.ops.iter().enumerate() {
            let state = match op {
                Op::Group(g) => StepState::Group {
                    grouping: g.grouping.snapshot(),
                    early: g.early.clone(),
                },
                Op::Stage(s) => match &s.keyed {
                    Some(parts) => StepState::Keyed {
                        partitions: parts
                            .iter()
                            .map(|p| {
                                let st = p
                                    .state
                                    .lock()
                                    .map_err(|_| internal("poisoned key partition"))?;
                                Ok((st.store.snapshot(), st.timers.snapshot()))
                            })
                            .collect::<Result<_, Error>>()?,
                    },
                    None => continue,
                },
                _ => continue,
            };
            out.push((state_name(&steps[i]), state));
        }
        Ok(snapshot::encode(&EngineState { steps: out }))
    }

    /// Puts a [`snapshot_state`](Self::snapshot_state) back, before the
    /// job reads its sources.
    ///
    /// # Errors
    /// Why not, when the bytes are not a snapshot or come from another
    /// pipeline (a stateful step missing on either side), or from a run
    /// with another number of key partitions (`--parallelism`).
    pub(super) fn restore_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let bad = |m: String| m;
        let saved: EngineState = snapshot::decode("the engine state", bytes).map_err(bad)?;
        let names: Vec<String> = self.job.plan.steps().iter().map(state_name).collect();
        let mut restored = vec![false; self.ops.len()];
        for (name, state) in saved.steps {
            let i = names.iter().position(|n| *n == name).ok_or_else(|| {
                bad(format!(
                    "it holds the state of {name}, which this pipeline does not have \
                     (was it written by another pipeline?)"
                ))
            })?;
            match (&mut self.ops[i], state) {
                (Op::Group(g), StepState::Group { grouping, early }) => {
                    g.grouping
                        .restore(&grouping)
                        .map_err(|e| bad(e.to_string()))?;
                    g.early = early;
                    g.dirty = true;
                }
                (Op::Stage(s), StepState::Keyed { partitions }) if s.keyed.is_some() => {
                    let parts = s.keyed.as_mut().expect("checked");
                    if parts.len() != partitions.len() {
                        return Err(bad(format!(
                            "{name} was checkpointed with {} key partitions, this run has {} \
                             (restart with the same --parallelism)",
                            partitions.len(),
                            parts.len()
                        )));
                    }
                    for (p, (store, timers)) in parts.iter_mut().zip(partitions) {
                        let mut st = p
                            .state
                            .lock()
                            .map_err(|_| "poisoned key partition".to_string())?;
                        st.store.restore(&store).map_err(|e| bad(e.to_string()))?;
                        st.timers.restore(&timers).map_err(|e| bad(e.to_string()))?;
                        p.timer_hold = st.timers.hold();
                        p.has_timers = !st.timers.is_empty();
                        p.next_processing_time = st.timers.next_processing_time();
                        p.fired_at = BEFORE_TIME;
                    }
                }
                _ => return Err(bad(format!("{name} is not the same kind of step here"))),
            }
            restored[i] = true;
        }
        let missing: Vec<&str> = self
            .ops
            .iter()
            .enumerate()
            .filter(|(i, o)| {
                !restored[*i]
                    && matches!(
                        o,
                        Op::Group(_) | Op::Stage(super::StageRt { keyed: Some(_), .. })
                    )
            })
            .map(|(i, _)| names[i].as_str())
            .collect();
        if !missing.is_empty() {
            return Err(bad(format!(
                "it has no state for {} (was it written by another pipeline?)",
                missing.join(", ")
            )));
        }
        Ok(())
    }
}
