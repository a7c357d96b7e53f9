//! Merging window fns the runner does not know (a Beam Python `WindowFn`
//! with its own `merge`): the SDK merges, the runner groups.
//!
//! Beam's protocol for this is the `beam:transform:merge_windows:v1`
//! transform, run by the SDK harness of the window fn's environment. Its
//! input is `KV<nonce, Iterable<window>>` (one key's windows); its output
//! is `KV<nonce, KV<Iterable<window>, Iterable<KV<window,
//! Iterable<window>>>>>`: the windows left as they were, and each merged
//! window with the windows it absorbed. The runner sends one key's
//! windows per element and maps every window to its merge result before
//! grouping, exactly as for sessions.
//!
//! [`MergeWindowsSpec::descriptor`] is a self-contained bundle descriptor
//! (data source → merge_windows → data sink) that runs on any harness of
//! that environment; [`encode_request`] and [`decode_response`] speak its
//! data ports. Windows must be interval windows (`IntervalWindowCoder`),
//! which the runner can read to group by them.

use std::collections::BTreeMap;
use std::sync::Arc;

use oxbeam_model::fn_execution::{ProcessBundleDescriptor, RemoteGrpcPort};
use oxbeam_model::pipeline as pb;
use oxbeam_model::urns::{self, standard_coders};
use prost::Message;

use crate::coder::{DecodeError, read_interval_window, write_interval_window};
use crate::error::{Error, Result};
use crate::graph::Graph;

/// The data source transform of [`MergeWindowsSpec::descriptor`].
pub const MERGE_SOURCE: &str = "merge-windows/source";
/// The data sink transform of [`MergeWindowsSpec::descriptor`].
pub const MERGE_SINK: &str = "merge-windows/sink";

/// How a grouping asks an SDK to merge windows.
#[derive(Debug, Clone)]
pub struct MergeWindowsSpec {
    /// Environment of the window fn (whose harness merges).
    pub environment_id: String,
    /// Its URN.
    pub environment_urn: String,
    /// The bundle descriptor running `merge_windows` between
    /// [`MERGE_SOURCE`] and [`MERGE_SINK`].
    pub descriptor: Arc<ProcessBundleDescriptor>,
}

/// Beam's minimum timestamp, in milliseconds.
const MIN_TIMESTAMP_MILLIS: i64 = i64::MIN / 1000;

/// One key's merge result: `(start, end)` of each merged window and of the
/// windows it absorbed. Windows not listed stay as they are.
pub type Merges = Vec<((i64, i64), Vec<(i64, i64)>)>;

/// The merge spec of windowing strategy `ws_id`, for its window fn's
/// FunctionSpec and environment.
pub(crate) fn spec(g: &Graph, ws_id: &str, transform: &str) -> Result<MergeWindowsSpec> {
    let raw = g
        .raw_windowing_strategies
        .get(ws_id)
        .ok_or_else(|| Error::Internal(format!("unknown windowing strategy {ws_id}")))?;
    let ws = pb::WindowingStrategy::decode(raw.as_slice())
        .map_err(|e| Error::Internal(format!("re-decoding windowing strategy {ws_id}: {e}")))?;
    let env = g.environments.get(&ws.environment_id).ok_or_else(|| {
        Error::not_implemented(
            transform,
            format!(
                "its merging window fn has no environment to merge windows in (environment_id {:?})",
                ws.environment_id
            ),
        )
    })?;
    let window_coder = g
        .coders
        .get(&ws.window_coder_id)
        .ok_or_else(|| Error::Internal(format!("unknown coder {}", ws.window_coder_id)))?;
    let coder = |urn: &str, components: &[&str]| pb::Coder {
        spec: Some(pb::FunctionSpec {
            urn: urn.to_string(),
            payload: Default::default(),
        }),
        component_coder_ids: components.iter().map(|c| c.to_string()).collect(),
    };
    let mut d = ProcessBundleDescriptor {
        id: format!("merge-windows-{ws_id}"),
        ..Default::default()
    };
    let coders = [
        ("window", coder(&window_coder.urn, &[])),
        ("bytes", coder(standard_coders::BYTES, &[])),
        ("global", coder(standard_coders::GLOBAL_WINDOW, &[])),
        ("windows", coder(standard_coders::ITERABLE, &["window"])),
        ("in", coder(standard_coders::KV, &["bytes", "windows"])),
        ("merged", coder(standard_coders::KV, &["window", "windows"])),
        ("all-merged", coder(standard_coders::ITERABLE, &["merged"])),
        (
            "result",
            coder(standard_coders::KV, &["windows", "all-merged"]),
        ),
        ("out", coder(standard_coders::KV, &["bytes", "result"])),
        (
            "in/wv",
            coder(standard_coders::WINDOWED_VALUE, &["in", "global"]),
        ),
        (
            "out/wv",
            coder(standard_coders::WINDOWED_VALUE, &["out", "global"]),
        ),
    ];
    d.coders = coders
        .into_iter()
        .map(|(id, c)| (id.to_string(), c))
        .collect();
    d.windowing_strategies
        .insert("global".to_string(), global_windowing());
    for id in ["in", "out"] {
        d.pcollections.insert(
            id.to_string(),
            pb::PCollection {
                unique_name: format!("merge-windows/{id}"),
                coder_id: id.to_string(),
                is_bounded: pb::is_bounded::Enum::Bounded as i32,
                windowing_strategy_id: "global".to_string(),
                display_data: vec![],
            },
        );
    }
    let port =
        |urn: &str, coder_id: &str, input: Option<&str>, output: Option<&str>| pb::PTransform {
            unique_name: String::new(),
            spec: Some(pb::FunctionSpec {
                urn: urn.to_string(),
                payload: RemoteGrpcPort {
                    api_service_descriptor: None,
                    coder_id: coder_id.to_string(),
                }
                .encode_to_vec()
                .into(),
            }),
            inputs: input
                .map(|p| ("in".to_string(), p.to_string()))
                .into_iter()
                .collect(),
            outputs: output
                .map(|p| ("out".to_string(), p.to_string()))
                .into_iter()
                .collect(),
            ..Default::default()
        };
    let runner = urns::fn_api_transforms::runner::DATA_SOURCE;
    d.transforms.insert(
        MERGE_SOURCE.to_string(),
        pb::PTransform {
            unique_name: MERGE_SOURCE.to_string(),
            ..port(runner, "in/wv", None, Some("in"))
        },
    );
    d.transforms.insert(
        "merge-windows".to_string(),
        pb::PTransform {
            unique_name: format!("{transform}/MergeWindows"),
            spec: Some(pb::FunctionSpec {
                urn: urns::standard_p_transforms::primitives::MERGE_WINDOWS.to_string(),
                payload: ws
                    .window_fn
                    .clone()
                    .unwrap_or_default()
                    .encode_to_vec()
                    .into(),
            }),
            inputs: [("in".to_string(), "in".to_string())].into(),
            outputs: [("out".to_string(), "out".to_string())].into(),
            environment_id: ws.environment_id.clone(),
            ..Default::default()
        },
    );
    d.transforms.insert(
        MERGE_SINK.to_string(),
        pb::PTransform {
            unique_name: MERGE_SINK.to_string(),
            ..port(
                urns::fn_api_transforms::runner::DATA_SINK,
                "out/wv",
                Some("out"),
                None,
            )
        },
    );
    let environment = pb::Environment::decode(env.raw.as_slice())
        .map_err(|e| Error::Internal(format!("re-decoding environment: {e}")))?;
    d.environments
        .insert(ws.environment_id.clone(), environment);
    Ok(MergeWindowsSpec {
        environment_id: ws.environment_id,
        environment_urn: env.urn.clone(),
        descriptor: Arc::new(d),
    })
}

fn global_windowing() -> pb::WindowingStrategy {
    pb::WindowingStrategy {
        window_fn: Some(pb::FunctionSpec {
            urn: urns::global_windows_payload::PROPERTIES.to_string(),
            payload: Default::default(),
        }),
        merge_status: pb::merge_status::Enum::NonMerging as i32,
        window_coder_id: "global".to_string(),
        trigger: Some(pb::Trigger {
            trigger: Some(pb::trigger::Trigger::Default(pb::trigger::Default {})),
        }),
        accumulation_mode: pb::accumulation_mode::Enum::Discarding as i32,
        output_time: pb::output_time::Enum::EndOfWindow as i32,
        closing_behavior: pb::closing_behavior::Enum::EmitIfNonempty as i32,
        on_time_behavior: pb::on_time_behavior::Enum::FireIfNonempty as i32,
        allowed_lateness: 0,
        assigns_to_one_window: true,
        environment_id: String::new(),
    }
}

/// Appends the merge request of one key (`nonce`) with `windows`: a
/// windowed value in the global window, at the minimum timestamp.
pub fn encode_request(out: &mut Vec<u8>, nonce: &[u8], windows: &[(i64, i64)]) {
    // The element's time plays no part: Beam's minimum timestamp.
    crate::coder::write_timestamp(out, MIN_TIMESTAMP_MILLIS);
    out.extend_from_slice(&1u32.to_be_bytes()); // one window: global (empty)
    out.push(0x0F); // pane: first, last, on time, index 0
    crate::coder::write_varint(out, nonce.len() as u64);
    out.extend_from_slice(nonce);
    out.extend_from_slice(
        &u32::try_from(windows.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for &(start, end) in windows {
        write_interval_window(out, start, end);
    }
}

/// Reads one merge response element (a windowed value as the harness
/// writes it to [`MERGE_SINK`]): the key's nonce and its merges.
///
/// # Errors
/// If the bytes are not a well-formed response.
pub fn decode_response(input: &mut &[u8]) -> std::result::Result<(Vec<u8>, Merges), DecodeError> {
    let header = crate::coder::WindowedHeader::parse(input, &crate::Coder::GlobalWindow)?;
    let mut p = header.value;
    let len = crate::coder::read_varint(&mut p)?;
    let nonce = take(&mut p, len)?.to_vec();
    let mut unmerged = 0usize;
    read_iterable(&mut p, |p| {
        read_interval_window(p)?;
        unmerged += 1;
        Ok(())
    })?;
    let mut merges = Merges::new();
    read_iterable(&mut p, |p| {
        let merged = read_interval_window(p)?;
        let mut from = Vec::new();
        read_iterable(p, |p| {
            from.push(read_interval_window(p)?);
            Ok(())
        })?;
        merges.push((merged, from));
        Ok(())
    })?;
    *input = p;
    Ok((nonce, merges))
}

fn take<'a>(p: &mut &'a [u8], n: u64) -> std::result::Result<&'a [u8], DecodeError> {
    let n = usize::try_from(n).map_err(|_| DecodeError("length overflows".into()))?;
    if n > p.len() {
        return Err(DecodeError(format!(
            "needs {n} bytes, {} left in a merge_windows response",
            p.len()
        )));
    }
    let (head, rest) = p.split_at(n);
    *p = rest;
    Ok(head)
}

/// Reads a Beam iterable: a big-endian element count, or -1 and then
/// counted blocks ending with a zero count.
fn read_iterable(
    p: &mut &[u8],
    mut each: impl FnMut(&mut &[u8]) -> std::result::Result<(), DecodeError>,
) -> std::result::Result<(), DecodeError> {
    let count = i32::from_be_bytes(take(p, 4)?.try_into().unwrap_or_default());
    if count >= 0 {
        for _ in 0..count {
            each(p)?;
        }
        return Ok(());
    }
    loop {
        let block = crate::coder::read_varint(p)?;
        if block == 0 {
            return Ok(());
        }
        for _ in 0..block {
            each(p)?;
        }
    }
}

/// `(start, end)` of windows, mapped to the window each merges into.
pub type WindowMap = BTreeMap<(i64, i64), (i64, i64)>;

/// Every window of `windows` mapped to the window it merges into.
pub fn merged_windows(windows: &[(i64, i64)], merges: &Merges) -> WindowMap {
    let mut map: WindowMap = windows.iter().map(|&w| (w, w)).collect();
    for (merged, from) in merges {
        for w in from {
            map.insert(*w, *merged);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_decode_as_beam_python_writes_them() {
        // WindowedValueCoder(KV(Bytes, KV(Iterable(IntervalWindow),
        // Iterable(KV(IntervalWindow, Iterable(IntervalWindow)))))) in
        // apache-beam 2.77, of (b'k', ({[1, 1001)}, [([2, 102), {[2, 100),
        // [100, 102)})])) in the global window.
        let mut bytes = Vec::new();
        crate::coder::write_timestamp(&mut bytes, MIN_TIMESTAMP_MILLIS);
        bytes.extend_from_slice(&[0, 0, 0, 1, 0x0F, 1, b'k']);
        bytes.extend_from_slice(&[0, 0, 0, 1]);
        write_interval_window(&mut bytes, 1, 1001);
        bytes.extend_from_slice(&[0, 0, 0, 1]);
        write_interval_window(&mut bytes, 2, 102);
        bytes.extend_from_slice(&[0, 0, 0, 2]);
        write_interval_window(&mut bytes, 2, 100);
        write_interval_window(&mut bytes, 100, 102);
        let mut input = &bytes[..];
        let (nonce, merges) = decode_response(&mut input).unwrap();
        assert!(input.is_empty());
        assert_eq!(nonce, b"k");
        assert_eq!(merges, vec![((2, 102), vec![(2, 100), (100, 102)])]);
        let map = merged_windows(&[(1, 1001), (2, 100), (100, 102)], &merges);
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            vec![
                ((1, 1001), (1, 1001)),
                ((2, 100), (2, 102)),
                ((100, 102), (2, 102))
            ]
        );
        let mut short = &bytes[..bytes.len() - 3];
        assert!(decode_response(&mut short).is_err());
    }
}
