//! Runner-initiated splits of a running bundle (`ProcessBundleSplit`), the
//! harness half of dynamic work rebalancing.
//!
//! A [`Ledger`] keeps, per data source of the bundle, the elements the
//! bundle still covers, in the order they were sent: after a split, the
//! elements up to the channel split's `last_primary_element`, then the
//! primary roots of the element being processed. What the split gives away
//! (the elements from `first_residual_element` on, and the residual roots)
//! becomes new work for the runner.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;

use oxbeam_model::coders::{Coder, Context};
use oxbeam_model::fn_execution::{
    BundleApplication, InstructionResponse, ProcessBundleSplitRequest, ProcessBundleSplitResponse,
    instruction_response, process_bundle_split_request::DesiredSplit,
    process_bundle_split_response::ChannelSplit,
};
use tokio::sync::mpsc;

use crate::Rebalancer;

/// Encoded elements per data source.
pub(crate) type SourceElements = Vec<(String, Vec<u8>)>;

/// What a running bundle still covers.
pub(crate) struct Ledger<'a> {
    /// Per data source: its elements, each one encoded element (or one
    /// primary root standing for the part of an element the bundle kept).
    sources: Vec<(String, Vec<Cow<'a, [u8]>>)>,
}

impl<'a> Ledger<'a> {
    /// The ledger of a bundle sent `inputs` (data source, concatenated
    /// elements; a source may appear several times), whose elements
    /// `coder_of(source)` delimits.
    pub(crate) fn new<'c>(
        inputs: &[(&str, &'a [u8])],
        coder_of: impl Fn(&str) -> Option<&'c Coder>,
    ) -> Result<Self, String> {
        let mut sources: Vec<(String, Vec<Cow<'a, [u8]>>)> = Vec::new();
        for &(source, bytes) in inputs {
            let coder = coder_of(source)
                .ok_or_else(|| format!("bundle input for {source}, which is not a data source"))?;
            let at = match sources.iter().position(|(s, _)| s == source) {
                Some(i) => i,
                None => {
                    sources.push((source.to_string(), Vec::new()));
                    sources.len() - 1
                }
            };
            let mut rest = bytes;
            while !rest.is_empty() {
                let before = rest;
                coder
                    .skip(&mut rest, Context::Nested)
                    .map_err(|e| format!("input of {source}: {e}"))?;
                let element = &before[..before.len() - rest.len()];
                sources[at].1.push(Cow::Borrowed(element));
            }
        }
        Ok(Ledger { sources })
    }

    /// A split request asking every data source with elements to give away
    /// `fraction` of what remains of it.
    pub(crate) fn desired_splits(&self, fraction: f64) -> BTreeMap<String, DesiredSplit> {
        self.sources
            .iter()
            .filter(|(_, elements)| !elements.is_empty())
            .map(|(source, elements)| {
                (
                    source.clone(),
                    DesiredSplit {
                        fraction_of_remainder: fraction,
                        allowed_split_points: Vec::new(),
                        estimated_input_elements: elements.len() as i64,
                    },
                )
            })
            .collect()
    }

    /// Applies a split the harness made: the ledger keeps the primary, and
    /// the residual is returned as elements per data source. `source_of`
    /// names the data source whose elements a root's element is encoded as.
    pub(crate) fn apply(
        &mut self,
        split: &ProcessBundleSplitResponse,
        source_of: impl Fn(&BundleApplication) -> Option<String>,
    ) -> Result<SourceElements, String> {
        let root = |app: Option<&BundleApplication>| -> Result<(String, Vec<u8>), String> {
            let app = app.ok_or("a split root without an application")?;
            let source = source_of(app).ok_or_else(|| {
                format!(
                    "a split root of input {:?} of transform {:?}, which no data source feeds",
                    app.input_id, app.transform_id
                )
            })?;
            Ok((source, app.element.to_vec()))
        };
        let mut residual: SourceElements = Vec::new();
        let mut give =
            |source: &str, bytes: &[u8]| match residual.iter_mut().find(|(s, _)| s == source) {
                Some((_, b)) => b.extend_from_slice(bytes),
                None => residual.push((source.to_string(), bytes.to_vec())),
            };
        let mut primaries: Vec<(String, Vec<u8>)> = Vec::new();
        for r in &split.primary_roots {
            primaries.push(root(Some(r))?);
        }
        for r in &split.residual_roots {
            let (source, bytes) = root(r.application.as_ref())?;
            give(&source, &bytes);
        }
        if split.channel_splits.is_empty() && !primaries.is_empty() {
            return Err(
                "split an element without saying where in its input (no channel split)".into(),
            );
        }
        for cs in &split.channel_splits {
            let Some((_, elements)) = self.sources.iter_mut().find(|(s, _)| *s == cs.transform_id)
            else {
                return Err(format!(
                    "split input {:?}, which is not a data source of the bundle",
                    cs.transform_id
                ));
            };
            let len = elements.len() as i64;
            let (last, first) = (cs.last_primary_element, cs.first_residual_element);
            if last < -1 || first <= last || first > len {
                return Err(format!(
                    "split input {:?} at elements {last}/{first}, outside its {len} elements",
                    cs.transform_id
                ));
            }
            for e in &elements[first as usize..] {
                give(&cs.transform_id, e);
            }
            elements.truncate((last + 1) as usize);
            for (_, bytes) in primaries.iter_mut().filter(|(s, _)| *s == cs.transform_id) {
                elements.push(Cow::Owned(std::mem::take(bytes)));
            }
        }
        Ok(residual)
    }

    /// The elements the bundle still covers, per data source.
    pub(crate) fn kept(&self) -> SourceElements {
        self.sources
            .iter()
            .map(|(source, elements)| (source.clone(), elements.concat()))
            .collect()
    }
}

/// The harness's side: `ProcessBundleSplit` requests for one running
/// bundle, put to its executor as a [`Rebalancer`] and answered from what
/// the executor hands off (splits at element boundaries: channel splits
/// only).
pub(crate) struct SplitRequests {
    /// The descriptor's data sources and their element coders.
    sources: Vec<(String, Coder)>,
    responses: mpsc::UnboundedSender<InstructionResponse>,
    state: Mutex<Pending>,
    /// Locked after `state` where both are.
    offers: Mutex<Offers>,
}

/// Standing offers: a request the executor could not take in time (it
/// was inside a slow element) is declined, and the executor sets work
/// aside at its next check for the runner's next request to claim at once.
#[derive(Default)]
struct Offers {
    /// The share of the remainder the last declined request asked for.
    wanted: Option<f64>,
    /// The open offer: the work set aside and what the bundle then covers.
    open: Option<(SourceElements, SourceElements)>,
    /// A request claimed the last offer.
    claimed: bool,
}

/// A split request of a running bundle.
enum Pending {
    None,
    /// Received: give away this share of the remainder.
    Requested {
        id: String,
        give: f64,
    },
    /// Put to the executor, which has not handed anything off yet.
    Asked {
        id: String,
    },
}

impl SplitRequests {
    pub(crate) fn new(
        sources: Vec<(String, Coder)>,
        responses: mpsc::UnboundedSender<InstructionResponse>,
    ) -> Self {
        SplitRequests {
            sources,
            responses,
            state: Mutex::new(Pending::None),
            offers: Mutex::new(Offers::default()),
        }
    }

    /// A split request `id` for this bundle; answered once the executor
    /// splits or declines, or the bundle ends.
    pub(crate) fn request(&self, id: String, request: &ProcessBundleSplitRequest) {
        let keep = request
            .desired_splits
            .values()
            .map(|d| d.fraction_of_remainder)
            .fold(1.0f64, f64::min);
        let give = 1.0 - keep.clamp(0.0, 1.0);
        let Ok(mut state) = self.state.lock() else {
            return self.answer(id, Default::default());
        };
        // An open offer answers at once; otherwise the request waits for
        // the executor (and replaces a declined one's wish).
        let offered = self.offers.lock().ok().and_then(|mut o| {
            o.wanted = None;
            let open = o.open.take();
            o.claimed |= open.is_some();
            open
        });
        if let Some((work, kept)) = offered {
            drop(state);
            return self.answer_split(id, &work, &kept);
        }
        let previous = std::mem::replace(&mut *state, Pending::Requested { id, give });
        drop(state);
        if let Pending::Requested { id, .. } | Pending::Asked { id } = previous {
            self.answer(id, Default::default());
        }
    }

    /// Declines request `id` if the executor has not taken it yet (it
    /// checks between runs of elements, which one slow element can make
    /// long): the runner gets its answer promptly and asks again later.
    pub(crate) fn decline_if_untaken(&self, id: &str) {
        let untaken = self.state.lock().ok().and_then(|mut s| match &*s {
            Pending::Requested { id: r, .. } if r == id => {
                Some(std::mem::replace(&mut *s, Pending::None))
            }
            _ => None,
        });
        if let Some(Pending::Requested { id, give }) = untaken {
            if let Ok(mut o) = self.offers.lock() {
                o.wanted = Some(give);
            }
            self.answer(id, Default::default());
        }
    }

    /// The bundle ended: a request still open is declined.
    pub(crate) fn finish(&self) {
        let open = self
            .state
            .lock()
            .ok()
            .map(|mut s| std::mem::replace(&mut *s, Pending::None));
        if let Some(Pending::Requested { id, .. } | Pending::Asked { id }) = open {
            self.answer(id, Default::default());
        }
    }

    fn answer(&self, id: String, split: ProcessBundleSplitResponse) {
        let _ = self.responses.send(InstructionResponse {
            instruction_id: id,
            error: String::new(),
            response: Some(instruction_response::Response::ProcessBundleSplit(split)),
        });
    }

    /// The channel split of each source in `kept` or `work`: the primary
    /// keeps the first elements of each, in `kept`.
    fn channel_splits(
        &self,
        work: &[(String, Vec<u8>)],
        kept: &[(String, Vec<u8>)],
    ) -> Result<Vec<ChannelSplit>, String> {
        let mut splits: Vec<ChannelSplit> = Vec::new();
        for (source, _) in work.iter().chain(kept) {
            if splits.iter().any(|c| c.transform_id == *source) {
                continue;
            }
            let coder = self
                .sources
                .iter()
                .find(|(s, _)| s == source)
                .map(|(_, c)| c)
                .ok_or_else(|| {
                    format!("split off work for {source}, which is not a data source")
                })?;
            let mut count = 0i64;
            for (_, bytes) in kept.iter().filter(|(s, _)| s == source) {
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    coder
                        .skip(&mut rest, Context::Nested)
                        .map_err(|e| format!("kept input of {source}: {e}"))?;
                    count += 1;
                }
            }
            splits.push(ChannelSplit {
                transform_id: source.clone(),
                last_primary_element: count - 1,
                first_residual_element: count,
            });
        }
        Ok(splits)
    }
}

impl Rebalancer for SplitRequests {
    fn split_fraction(&self, _elapsed: std::time::Duration) -> Option<f64> {
        let mut state = self.state.lock().ok()?;
        match std::mem::replace(&mut *state, Pending::None) {
            Pending::None => None,
            Pending::Requested { id, give } => {
                *state = Pending::Asked { id };
                Some(give)
            }
            // Asked before and nothing was handed off: nothing to split.
            Pending::Asked { id } => {
                drop(state);
                self.answer(id, Default::default());
                None
            }
        }
    }

    fn hand_off(&self, work: Vec<(String, Vec<u8>)>, kept: Vec<(String, Vec<u8>)>) {
        let asked = self
            .state
            .lock()
            .ok()
            .map(|mut s| std::mem::replace(&mut *s, Pending::None));
        let Some(Pending::Asked { id }) = asked else {
            return;
        };
        self.answer_split(id, &work, &kept);
    }

    fn offer_fraction(&self) -> Option<f64> {
        self.offers.lock().ok()?.wanted.take()
    }

    fn offer(&self, work: Vec<(String, Vec<u8>)>, kept: Vec<(String, Vec<u8>)>) {
        if let Ok(mut o) = self.offers.lock() {
            o.open = Some((work, kept));
            o.claimed = false;
        }
    }

    fn withdraw(&self) -> bool {
        self.offers.lock().is_ok_and(|mut o| {
            let open = o.open.take();
            open.is_none() && std::mem::take(&mut o.claimed)
        })
    }
}

impl SplitRequests {
    /// Answers request `id` with the channel splits of handing off `work`
    /// and keeping `kept`.
    fn answer_split(&self, id: String, work: &[(String, Vec<u8>)], kept: &[(String, Vec<u8>)]) {
        match self.channel_splits(work, kept) {
            Ok(channel_splits) => self.answer(
                id,
                ProcessBundleSplitResponse {
                    channel_splits,
                    ..Default::default()
                },
            ),
            Err(error) => {
                let _ = self.responses.send(InstructionResponse {
                    instruction_id: id,
                    error,
                    response: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use oxbeam_model::fn_execution::DelayedBundleApplication;

    use super::*;

    fn coder() -> Coder {
        // Length-prefixed bytes: element `x` is `[len, x...]`.
        Coder::Bytes
    }

    fn elements(values: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in values {
            out.push(v.len() as u8);
            out.extend_from_slice(v);
        }
        out
    }

    fn app(element: &[u8]) -> BundleApplication {
        BundleApplication {
            transform_id: "sdf".into(),
            input_id: "in".into(),
            element: elements(&[element]).into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_channel_split_gives_away_the_tail_and_keeps_the_primary_root() {
        let input = elements(&[b"a", b"b", b"c", b"d"]);
        let c = coder();
        let mut ledger = Ledger::new(&[("src", &input[..])], |_| Some(&c)).unwrap();
        let desired = ledger.desired_splits(0.5);
        assert_eq!(desired["src"].estimated_input_elements, 4);
        // Element 1 ("b") split in two: b1 kept, b2 given away, with c, d.
        let split = ProcessBundleSplitResponse {
            primary_roots: vec![app(b"b1")],
            residual_roots: vec![DelayedBundleApplication {
                application: Some(app(b"b2")),
                requested_time_delay: None,
            }],
            channel_splits: vec![ChannelSplit {
                transform_id: "src".into(),
                last_primary_element: 0,
                first_residual_element: 2,
            }],
        };
        let residual = ledger.apply(&split, |_| Some("src".into())).unwrap();
        assert_eq!(
            residual,
            vec![("src".to_string(), elements(&[b"b2", b"c", b"d"]))]
        );
        assert_eq!(
            ledger.kept(),
            vec![("src".to_string(), elements(&[b"a", b"b1"]))]
        );
        // A second split, at an element boundary after the primary root.
        let split = ProcessBundleSplitResponse {
            channel_splits: vec![ChannelSplit {
                transform_id: "src".into(),
                last_primary_element: 0,
                first_residual_element: 1,
            }],
            ..Default::default()
        };
        let residual = ledger.apply(&split, |_| Some("src".into())).unwrap();
        assert_eq!(residual, vec![("src".to_string(), elements(&[b"b1"]))]);
        assert_eq!(ledger.kept(), vec![("src".to_string(), elements(&[b"a"]))]);
    }

    #[test]
    fn impossible_splits_are_errors() {
        let input = elements(&[b"a", b"b"]);
        let c = coder();
        let mut ledger = Ledger::new(&[("src", &input[..])], |_| Some(&c)).unwrap();
        let outside = ProcessBundleSplitResponse {
            channel_splits: vec![ChannelSplit {
                transform_id: "src".into(),
                last_primary_element: 1,
                first_residual_element: 3,
            }],
            ..Default::default()
        };
        let err = ledger.apply(&outside, |_| Some("src".into())).unwrap_err();
        assert_eq!(
            err,
            "split input \"src\" at elements 1/3, outside its 2 elements"
        );
        let unknown = ProcessBundleSplitResponse {
            channel_splits: vec![ChannelSplit {
                transform_id: "other".into(),
                last_primary_element: 0,
                first_residual_element: 1,
            }],
            ..Default::default()
        };
        let err = ledger.apply(&unknown, |_| Some("src".into())).unwrap_err();
        assert_eq!(
            err,
            "split input \"other\", which is not a data source of the bundle"
        );
        assert_eq!(ledger.kept(), vec![("src".to_string(), input.clone())]);
    }

    fn split_request(keep: f64) -> ProcessBundleSplitRequest {
        ProcessBundleSplitRequest {
            instruction_id: "bundle-1".into(),
            desired_splits: [(
                "src".to_string(),
                DesiredSplit {
                    fraction_of_remainder: keep,
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    fn split_answer(
        rx: &mut mpsc::UnboundedReceiver<InstructionResponse>,
    ) -> (String, ProcessBundleSplitResponse) {
        let r = rx.try_recv().expect("an answer");
        match r.response {
            Some(instruction_response::Response::ProcessBundleSplit(s)) => (r.instruction_id, s),
            other => panic!("not a split answer: {other:?} {}", r.error),
        }
    }

    /// The channel split of source `src` keeping elements `..=last`.
    fn cut_after(last: i64) -> Vec<ChannelSplit> {
        vec![ChannelSplit {
            transform_id: "src".into(),
            last_primary_element: last,
            first_residual_element: last + 1,
        }]
    }

    #[test]
    fn the_harness_answers_a_split_from_the_executors_hand_off_or_declines() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let requests = SplitRequests::new(vec![("src".into(), coder())], tx);
        // Nothing asked: the executor keeps going.
        assert_eq!(requests.split_fraction(Duration::ZERO), None);
        // Not taken in time: declined (an empty split).
        requests.request("split-1".into(), &split_request(0.5));
        requests.decline_if_untaken("split-1");
        assert_eq!(
            split_answer(&mut rx),
            ("split-1".into(), Default::default())
        );
        assert_eq!(requests.split_fraction(Duration::ZERO), None);
        // Taken: the executor gives away 3/4 of what is left and keeps "a".
        requests.request("split-2".into(), &split_request(0.25));
        assert_eq!(requests.split_fraction(Duration::ZERO), Some(0.75));
        requests.decline_if_untaken("split-2");
        assert!(
            rx.try_recv().is_err(),
            "taken requests wait for the hand-off"
        );
        requests.hand_off(
            vec![("src".into(), elements(&[b"b", b"c", b"d"]))],
            vec![("src".into(), elements(&[b"a"]))],
        );
        let (id, split) = split_answer(&mut rx);
        assert_eq!(id, "split-2");
        assert_eq!(split.channel_splits, cut_after(0));
        // A request still open when the bundle ends is declined.
        requests.request("split-3".into(), &split_request(0.5));
        requests.finish();
        assert_eq!(
            split_answer(&mut rx),
            ("split-3".into(), Default::default())
        );
    }

    #[test]
    fn a_declined_request_leaves_an_offer_the_next_request_claims() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let requests = SplitRequests::new(vec![("src".into(), coder())], tx);
        assert_eq!(requests.offer_fraction(), None);
        // Declined while the executor was inside an element...
        requests.request("split-1".into(), &split_request(0.5));
        requests.decline_if_untaken("split-1");
        assert_eq!(
            split_answer(&mut rx),
            ("split-1".into(), Default::default())
        );
        // ...which at its next check sets half of what is left aside, once.
        assert_eq!(requests.offer_fraction(), Some(0.5));
        assert_eq!(requests.offer_fraction(), None);
        requests.offer(
            vec![("src".into(), elements(&[b"c", b"d"]))],
            vec![("src".into(), elements(&[b"a", b"b"]))],
        );
        // The next request is answered at once with the offer...
        requests.request("split-2".into(), &split_request(0.5));
        let (id, split) = split_answer(&mut rx);
        assert_eq!(id, "split-2");
        assert_eq!(split.channel_splits, cut_after(1));
        assert_eq!(requests.split_fraction(Duration::ZERO), None);
        // ...so the executor does not take its work back.
        assert!(requests.withdraw());
        // An offer no request claimed goes back to the executor, and a
        // later request waits for the executor as usual.
        requests.request("split-3".into(), &split_request(0.5));
        requests.decline_if_untaken("split-3");
        split_answer(&mut rx);
        assert_eq!(requests.offer_fraction(), Some(0.5));
        requests.offer(
            vec![("src".into(), elements(&[b"d"]))],
            vec![("src".into(), elements(&[b"a", b"b", b"c"]))],
        );
        assert!(!requests.withdraw());
        requests.request("split-4".into(), &split_request(0.5));
        assert!(rx.try_recv().is_err(), "no offer left to answer with");
        assert_eq!(requests.split_fraction(Duration::ZERO), Some(0.5));
    }
}
