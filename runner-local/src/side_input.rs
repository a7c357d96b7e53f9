//! What a side input holds when its PCollection fired more than once.
//!
//! Beam's programming guide (side inputs and windowing): "If the side input
//! has multiple trigger firings, Beam uses the value from the latest trigger
//! firing." A global combine under `Repeatedly(AfterCount(n))`, read as a
//! singleton, must see one value: the last pane's, not every pane's.

use std::collections::HashMap;

use oxbeam_model::coders::wire;
use oxbeam_runner_core::coder::Context;
use oxbeam_runner_core::trigger::Trigger;
use oxbeam_runner_core::{Coder, ExecutionPlan, WindowedHeader};

use crate::Error;
use crate::job::{element_ranges, readable_coders};

/// The side input `pcollection`'s elements (`bytes`, whole windowed values)
/// as its readers see them: for a trigger that may fire more than once per
/// window, [`latest_panes`]; otherwise, or if the runner cannot read the
/// windows, all of them.
///
/// # Errors
/// If `bytes` are not whole windowed values of the PCollection's coder.
pub(crate) fn latest_firing(
    plan: &ExecutionPlan,
    pcollection: &str,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    let fires_once = plan
        .pcollection(pcollection)
        .is_none_or(|p| matches!(p.windowing.trigger, Trigger::Default | Trigger::Always));
    match readable_coders(plan, pcollection) {
        Some((coder, window_coder)) if !fires_once => {
            let what = format!("side input element of PCollection {pcollection}");
            latest_panes(&bytes, &coder, &window_coder, &what)
        }
        _ => Ok(bytes),
    }
}

/// Of `bytes` (windowed values of `coder` in windows of `window_coder`), in
/// each window only the elements of its latest pane (highest pane index).
/// An element in several windows stays in those where its pane is the
/// latest.
///
/// # Errors
/// If `bytes` are not whole windowed values; `what` names them.
fn latest_panes(
    bytes: &[u8],
    coder: &Coder,
    window_coder: &Coder,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let bad = |e: String| Error::Execution(oxbeam_fn_api::Error::invalid(what, e));
    // Each element: its bytes, header, pane index and windows.
    let mut elements = Vec::new();
    let mut latest: HashMap<&[u8], i64> = HashMap::new();
    for (range, _) in element_ranges(bytes, coder, window_coder, what)? {
        let element = &bytes[range];
        let header = WindowedHeader::parse(&element, window_coder).map_err(|e| bad(e.0))?;
        let index = wire::read_pane(&mut &header.pane[..])
            .map_err(|e| bad(e.to_string()))?
            .index;
        let mut windows = Vec::with_capacity(header.window_count as usize);
        let mut rest = header.windows;
        for _ in 0..header.window_count {
            let w = window_coder
                .read_encoded(&mut rest, Context::Nested)
                .map_err(|e| bad(e.to_string()))?;
            let max = latest.entry(w).or_insert(index);
            *max = (*max).max(index);
            windows.push(w);
        }
        elements.push((element, header, index, windows));
    }
    let mut out = Vec::with_capacity(bytes.len());
    for (element, header, index, windows) in &elements {
        let kept: Vec<&[u8]> = windows
            .iter()
            .copied()
            .filter(|w| latest.get(w) == Some(index))
            .collect();
        if kept.len() == windows.len() {
            out.extend_from_slice(element);
        } else if !kept.is_empty() {
            // The same element in fewer windows.
            out.extend_from_slice(&element[..8]);
            out.extend_from_slice(&(kept.len() as i32).to_be_bytes());
            kept.iter().for_each(|w| out.extend_from_slice(w));
            out.extend_from_slice(header.pane);
            out.extend_from_slice(header.value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use oxbeam_model::coders::{WindowedValueHeader, Windows, encode_windowed_bytes};
    use oxbeam_model::window::{BoundedWindow, PaneInfo, PaneTiming, Timestamp};

    use super::*;

    fn window(end: i64) -> BoundedWindow {
        BoundedWindow::Interval {
            start: Timestamp::from_millis(end - 10),
            end: Timestamp::from_millis(end),
        }
    }

    fn element(out: &mut Vec<u8>, windows: &[BoundedWindow], index: i64, value: &str) {
        let header = WindowedValueHeader {
            timestamp: Timestamp::from_millis(1),
            windows: Windows::from_vec(windows.to_vec()),
            pane: PaneInfo {
                is_first: index == 0,
                timing: PaneTiming::Early,
                index,
                on_time_index: -1,
                ..PaneInfo::NO_FIRING
            },
        };
        encode_windowed_bytes(&header, value.as_bytes(), Context::Nested, out);
    }

    /// `(windows' ends, value)` of each element, in order.
    fn read(bytes: &[u8]) -> Vec<(Vec<i64>, String)> {
        let mut rest = bytes;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let e = oxbeam_model::coders::decode_windowed(
                &mut rest,
                oxbeam_model::coders::WindowCoder::Interval,
                Context::Nested,
            )
            .unwrap();
            let ends = e
                .header
                .windows
                .as_slice()
                .iter()
                .map(|w| match w {
                    BoundedWindow::Interval { end, .. } => end.millis(),
                    BoundedWindow::Global => -1,
                })
                .collect();
            out.push((ends, String::from_utf8(e.value.to_vec()).unwrap()));
        }
        out
    }

    #[test]
    fn each_window_keeps_its_latest_pane() {
        let mut bytes = Vec::new();
        element(&mut bytes, &[window(10)], 0, "a0");
        element(&mut bytes, &[window(20)], 0, "b0");
        element(&mut bytes, &[window(10)], 1, "a1");
        element(&mut bytes, &[window(10)], 2, "a2");
        element(&mut bytes, &[window(10)], 2, "a2'");
        element(&mut bytes, &[window(10)], 1, "a1'");
        // Latest in window 20, not in window 10: kept in 20 only.
        element(&mut bytes, &[window(10), window(20)], 0, "both");
        let kept = latest_panes(&bytes, &Coder::Bytes, &Coder::IntervalWindow, "test").unwrap();
        assert_eq!(
            read(&kept),
            [
                (vec![20], "b0".to_string()),
                (vec![10], "a2".to_string()),
                (vec![10], "a2'".to_string()),
                (vec![20], "both".to_string()),
            ]
        );
    }

    #[test]
    fn unreadable_bytes_are_an_error_naming_them() {
        let err = latest_panes(
            &[0, 1, 2],
            &Coder::Bytes,
            &Coder::IntervalWindow,
            "side input x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("side input x"), "{err}");
    }
}
