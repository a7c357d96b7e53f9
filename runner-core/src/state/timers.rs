//! [`TimerQueue`]: the pending user timers of a stateful stage.

use std::collections::{BTreeSet, HashMap};

use oxbeam_model::coders::{Coder, Context};

use super::{StateError, TimeDomain, window_max_timestamp};
use crate::coder::read_varint;

/// Identifies one timer: the latest one set under an id wins.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TimerId {
    /// Transform that set it.
    pub transform: String,
    /// Its timer family id.
    pub family: String,
    /// Encoded (nested) user key.
    pub key: Vec<u8>,
    /// Encoded window.
    pub window: Vec<u8>,
    /// Dynamic timer tag (empty for plain timers).
    pub tag: String,
}

/// A timer that is due, as [`TimerQueue::fire_due`] hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredTimer {
    /// Which timer.
    pub id: TimerId,
    /// Its time domain.
    pub domain: TimeDomain,
    /// When it fires (event or processing time, milliseconds).
    pub fire_timestamp: i64,
    /// Its output timestamp (watermark hold), milliseconds.
    pub hold_timestamp: i64,
    /// The encoded pane it was set with.
    pub pane: Vec<u8>,
}

impl FiredTimer {
    /// Appends its `beam:coder:timer:v1` encoding (one window, clear bit
    /// unset), as a timer input of a bundle carries it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.key);
        crate::coder::write_varint(out, self.id.tag.len() as u64);
        out.extend_from_slice(self.id.tag.as_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&self.id.window);
        out.push(0);
        crate::coder::write_timestamp(out, self.fire_timestamp);
        crate::coder::write_timestamp(out, self.hold_timestamp);
        out.extend_from_slice(&self.pane);
    }
}

/// (transform, encoded key, encoded window).
type KeyWindow<'a> = (&'a str, &'a [u8], &'a [u8]);

/// A due timer: (fire timestamp, domain slot, sequence, id).
type Candidate<'a> = (i64, usize, u64, &'a TimerId);

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Pending {
    domain: TimeDomain,
    fire: i64,
    hold: i64,
    pane: Vec<u8>,
    seq: u64,
}

/// One timer decoded from `beam:coder:timer:v1` bytes, borrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedTimer<'a> {
    /// Encoded user key.
    pub key: &'a [u8],
    /// Dynamic tag.
    pub tag: &'a str,
    /// Each encoded window.
    pub windows: Vec<&'a [u8]>,
    /// `None` when the timer is cleared; else (fire, hold, encoded pane).
    pub firing: Option<(i64, i64, &'a [u8])>,
}

fn bad(e: impl std::fmt::Display) -> StateError {
    StateError(format!("malformed timer: {e}"))
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], StateError> {
    if input.len() < n {
        return Err(bad(format!("{n} bytes needed, {} left", input.len())));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn read_ts(input: &mut &[u8]) -> Result<i64, StateError> {
    let mut b = [0u8; 8];
    b.copy_from_slice(take(input, 8)?);
    Ok((u64::from_be_bytes(b) ^ (1u64 << 63)) as i64)
}

/// Decodes one timer from the front of `input` (advancing it), with the
/// transform's key coder and window coder.
///
/// # Errors
/// If the bytes are not a timer of these coders.
pub fn decode_timer<'a>(
    input: &mut &'a [u8],
    key_coder: &Coder,
    window_coder: &Coder,
) -> Result<DecodedTimer<'a>, StateError> {
    let start = *input;
    key_coder.skip(input, Context::Nested).map_err(bad)?;
    let key = &start[..start.len() - input.len()];
    let n = read_varint(input).map_err(bad)? as usize;
    let tag = std::str::from_utf8(take(input, n)?).map_err(bad)?;
    let mut count = [0u8; 4];
    count.copy_from_slice(take(input, 4)?);
    let count = i32::from_be_bytes(count);
    if count < 0 {
        return Err(bad(format!("negative window count {count}")));
    }
    let mut windows = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let w = *input;
        window_coder.skip(input, Context::Nested).map_err(bad)?;
        windows.push(&w[..w.len() - input.len()]);
    }
    let clear = take(input, 1)?[0] != 0;
    let firing = if clear {
        None
    } else {
        let fire = read_ts(input)?;
        let hold = read_ts(input)?;
        let p = *input;
        let b = take(input, 1)?[0];
        if b >> 4 > 2 {
            return Err(bad(format!("invalid pane byte {b:#04x}")));
        }
        for _ in 0..(b >> 4) {
            read_varint(input).map_err(bad)?;
        }
        Some((fire, hold, &p[..p.len() - input.len()]))
    };
    Ok(DecodedTimer {
        key,
        tag,
        windows,
        firing,
    })
}

/// The pending timers of a stateful stage (or of one key partition of it).
///
/// - The latest timer set per (transform, family, key, window, tag) wins;
///   a cleared timer is removed.
/// - [`fire_due`](Self::fire_due) removes and returns the event-time timers
///   at or before the input watermark and the processing-time timers at or
///   before the processing time, in timestamp order.
/// - [`hold`](Self::hold) is the minimum output timestamp of pending
///   timers: the stage's output watermark may not pass it.
///
/// Cost: `O(log n)` per set, clear and fired timer.
#[derive(Debug, Default)]
pub struct TimerQueue {
    families: HashMap<(String, String), TimeDomain>,
    pending: HashMap<TimerId, Pending>,
    /// Per domain: (fire timestamp, sequence, id).
    by_time: [BTreeSet<(i64, u64, TimerId)>; 2],
    /// Multiset of hold timestamps.
    holds: std::collections::BTreeMap<i64, usize>,
    seq: u64,
}

fn slot(domain: TimeDomain) -> usize {
    match domain {
        TimeDomain::EventTime => 0,
        TimeDomain::ProcessingTime => 1,
    }
}

impl TimerQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every pending timer, as bytes for a checkpoint (see
    /// [`crate::snapshot`]). Families are the plan's, declared again.
    pub fn snapshot(&self) -> Vec<u8> {
        crate::snapshot::encode(&(&self.pending, &self.by_time, &self.holds, self.seq))
    }

    /// Replaces the pending timers with a [`snapshot`](Self::snapshot)'s.
    ///
    /// # Errors
    /// If the bytes are not a snapshot; the queue is unchanged.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateError> {
        type Snapshot = (
            HashMap<TimerId, Pending>,
            [BTreeSet<(i64, u64, TimerId)>; 2],
            std::collections::BTreeMap<i64, usize>,
            u64,
        );
        let (pending, by_time, holds, seq): Snapshot =
            crate::snapshot::decode("timers", snapshot).map_err(StateError)?;
        self.pending = pending;
        self.by_time = by_time;
        self.holds = holds;
        self.seq = seq;
        Ok(())
    }

    /// Declares timer family `family` of `transform` and its time domain.
    pub fn declare_family(&mut self, transform: &str, family: &str, domain: TimeDomain) {
        self.families
            .insert((transform.to_string(), family.to_string()), domain);
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn remove(&mut self, id: &TimerId) {
        if let Some(p) = self.pending.remove(id) {
            self.by_time[slot(p.domain)].remove(&(p.fire, p.seq, id.clone()));
            if let Some(n) = self.holds.get_mut(&p.hold) {
                *n -= 1;
                if *n == 0 {
                    self.holds.remove(&p.hold);
                }
            }
        }
    }

    /// Sets (replacing any earlier one) or, with `firing == None`, clears
    /// the timer `id`. `firing` is (fire timestamp, hold timestamp, encoded pane).
    ///
    /// # Errors
    /// If the timer family was not declared.
    pub fn set(
        &mut self,
        id: TimerId,
        firing: Option<(i64, i64, &[u8])>,
    ) -> Result<(), StateError> {
        let domain = *self
            .families
            .get(&(id.transform.clone(), id.family.clone()))
            .ok_or_else(|| {
                StateError(format!(
                    "transform {:?} set a timer of undeclared family {:?}",
                    id.transform, id.family
                ))
            })?;
        self.remove(&id);
        let Some((fire, hold, pane)) = firing else {
            return Ok(());
        };
        self.seq += 1;
        self.by_time[slot(domain)].insert((fire, self.seq, id.clone()));
        *self.holds.entry(hold).or_default() += 1;
        self.pending.insert(
            id,
            Pending {
                domain,
                fire,
                hold,
                pane: pane.to_vec(),
                seq: self.seq,
            },
        );
        Ok(())
    }

    /// Sets or clears every timer in `timers` (concatenated
    /// `beam:coder:timer:v1` encodings of family `family` of `transform`),
    /// one per window of each.
    ///
    /// # Errors
    /// For malformed bytes or an undeclared family; timers before the bad
    /// one are applied.
    pub fn set_encoded(
        &mut self,
        transform: &str,
        family: &str,
        mut timers: &[u8],
        key_coder: &Coder,
        window_coder: &Coder,
    ) -> Result<(), StateError> {
        while !timers.is_empty() {
            let t = decode_timer(&mut timers, key_coder, window_coder)?;
            for w in &t.windows {
                let id = TimerId {
                    transform: transform.to_string(),
                    family: family.to_string(),
                    key: t.key.to_vec(),
                    window: w.to_vec(),
                    tag: t.tag.to_string(),
                };
                self.set(id, t.firing)?;
            }
        }
        Ok(())
    }

    fn take_due(&mut self, domain: TimeDomain, limit: i64, out: &mut Vec<FiredTimer>) {
        while let Some((fire, _, id)) = self.by_time[slot(domain)].first().cloned() {
            if fire > limit {
                break;
            }
            if let Some(p) = self.pending.get(&id).cloned() {
                self.remove(&id);
                out.push(FiredTimer {
                    id,
                    domain,
                    fire_timestamp: p.fire,
                    hold_timestamp: p.hold,
                    pane: p.pane,
                });
            } else {
                self.by_time[slot(domain)].pop_first();
            }
        }
    }

    /// Removes and returns every due timer: event-time timers at or before
    /// `input_watermark`, processing-time timers at or before
    /// `processing_time`; in timestamp order (event time first on ties).
    pub fn fire_due(&mut self, input_watermark: i64, processing_time: i64) -> Vec<FiredTimer> {
        let mut out = Vec::new();
        self.take_due(TimeDomain::EventTime, input_watermark, &mut out);
        self.take_due(TimeDomain::ProcessingTime, processing_time, &mut out);
        out.sort_by_key(|t| (t.fire_timestamp, slot(t.domain)));
        out
    }

    /// Like [`fire_due`](Self::fire_due), but only the earliest due timer
    /// of each (transform, key, window); later ones stay pending. Firing
    /// timers a round at a time this way lets the timers of a round clear
    /// or reset the later timers of their key before those fire.
    ///
    /// Cost: a scan of the due timers (not a removal of them) per call.
    pub fn fire_due_earliest_per_key(
        &mut self,
        input_watermark: i64,
        processing_time: i64,
    ) -> Vec<FiredTimer> {
        // Per (transform, key, window): its earliest due timer, by (fire
        // timestamp, domain, sequence); later ones stay queued untouched.
        let mut earliest: HashMap<KeyWindow<'_>, Candidate<'_>> = HashMap::new();
        for (domain, limit) in [
            (TimeDomain::EventTime, input_watermark),
            (TimeDomain::ProcessingTime, processing_time),
        ] {
            for (fire, seq, id) in &self.by_time[slot(domain)] {
                if *fire > limit {
                    break;
                }
                let candidate = (*fire, slot(domain), *seq, id);
                let key = (
                    id.transform.as_str(),
                    id.key.as_slice(),
                    id.window.as_slice(),
                );
                match earliest.get(&key) {
                    Some(e) if (e.0, e.1, e.2) <= (candidate.0, candidate.1, candidate.2) => {}
                    _ => {
                        earliest.insert(key, candidate);
                    }
                }
            }
        }
        let mut chosen: Vec<(i64, usize, u64, TimerId)> = earliest
            .into_values()
            .map(|(f, d, s, id)| (f, d, s, id.clone()))
            .collect();
        chosen.sort();
        let mut out = Vec::with_capacity(chosen.len());
        for (_, _, _, id) in chosen {
            if let Some(p) = self.pending.get(&id).cloned() {
                self.remove(&id);
                out.push(FiredTimer {
                    id,
                    domain: p.domain,
                    fire_timestamp: p.fire,
                    hold_timestamp: p.hold,
                    pane: p.pane,
                });
            }
        }
        out
    }

    /// The output watermark hold: the minimum hold timestamp of the
    /// pending timers.
    pub fn hold(&self) -> Option<i64> {
        self.holds.keys().next().copied()
    }

    /// The earliest pending processing-time timer.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.by_time[1].first().map(|(t, _, _)| *t)
    }

    /// Drops the timers of windows that expired: `max_timestamp +
    /// allowed_lateness_ms < input_watermark`. Returns how many.
    pub fn expire(
        &mut self,
        input_watermark: i64,
        allowed_lateness_ms: i64,
        window_coder: &Coder,
    ) -> usize {
        let doomed: Vec<TimerId> = self
            .pending
            .keys()
            .filter(|id| {
                window_max_timestamp(&id.window, window_coder)
                    .is_some_and(|max| max.saturating_add(allowed_lateness_ms) < input_watermark)
            })
            .cloned()
            .collect();
        for id in &doomed {
            self.remove(id);
        }
        doomed.len()
    }
}
