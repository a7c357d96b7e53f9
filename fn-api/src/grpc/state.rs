//! The runner's State API: side inputs served from a bundle's
//! [`SideInputs`], decoded and filtered by window as Beam does.
//!
//! - `iterable_side_input`: the values of the elements in the window.
//! - `multimap_side_input`: the values under one encoded (nested) key.
//! - `multimap_keys_side_input`: the distinct keys.
//! - `multimap_keys_values_side_input`: `KV<key, Iterable<value>>` per key.
//! - `runner` keys starting with [`ALL_ELEMENTS_KEY`]: every element as a
//!   whole windowed value (how an Oxbeam harness gives its executor the
//!   [`SideInputs`] contract).
//!
//! Large answers come in pages of about [`STATE_PAGE_BYTES`], split at
//! element boundaries (Beam SDKs decode each page on its own), linked by
//! continuation tokens holding the next page's byte offset.

use std::collections::HashMap;
use std::sync::Arc;

use oxbeam_model::coders::{Coder, Context};
use oxbeam_model::fn_execution::{
    ProcessBundleDescriptor, StateGetResponse, StateRequest, StateResponse, state_key,
    state_request, state_response,
};
use oxbeam_model::pipeline as pb;
use prost::Message;

use super::{STATE_PAGE_BYTES, read_windowed};
use crate::{Error, Result, SideInputs};

/// Prefix of the `StateKey.runner.key` an Oxbeam harness sends for all
/// elements of a side input: followed by the transform id, a zero byte and
/// the side input's local name.
pub(crate) const ALL_ELEMENTS_KEY: &[u8] = b"oxbeam/side-input/all-elements\0";

/// The runner key asking for all elements of one side input.
pub(crate) fn all_elements_key(transform: &str, side_input: &str) -> Vec<u8> {
    let mut key = ALL_ELEMENTS_KEY.to_vec();
    key.extend_from_slice(transform.as_bytes());
    key.push(0);
    key.extend_from_slice(side_input.as_bytes());
    key
}

/// How to read one side input's elements.
pub(crate) struct SideInputSpec {
    /// Coder of the side PCollection's values.
    value: Coder,
    /// Its window coder.
    window: Coder,
}

/// Side inputs of a descriptor, by (transform id, local name).
pub(crate) type SideInputSpecs = HashMap<(String, String), SideInputSpec>;

/// The side inputs every ParDo of `d` reads, with their coders.
///
/// # Errors
/// [`Error::Invalid`] for payloads, PCollections or coders that do not
/// resolve.
pub(crate) fn side_input_specs(d: &ProcessBundleDescriptor) -> Result<SideInputSpecs> {
    use oxbeam_model::urns::standard_p_transforms::primitives::PAR_DO;
    let components = pb::Components {
        coders: d.coders.clone(),
        ..Default::default()
    };
    let mut specs = SideInputSpecs::new();
    for (id, t) in &d.transforms {
        let Some(spec) = t.spec.as_ref().filter(|s| s.urn == PAR_DO) else {
            continue;
        };
        let payload = pb::ParDoPayload::decode(spec.payload.as_ref())
            .map_err(|e| Error::invalid(format!("ParDoPayload of transform {id}"), e))?;
        for local in payload.side_inputs.keys() {
            let what = || format!("side input {local} of transform {id}");
            let pc = t
                .inputs
                .get(local)
                .and_then(|p| d.pcollections.get(p))
                .ok_or_else(|| Error::invalid(what(), "names no PCollection of the stage"))?;
            let ws = d
                .windowing_strategies
                .get(&pc.windowing_strategy_id)
                .ok_or_else(|| Error::invalid(what(), "has no windowing strategy"))?;
            let value = Coder::from_proto(&pc.coder_id, &components)
                .map_err(|e| Error::invalid(what(), e))?;
            let window = Coder::from_proto(&ws.window_coder_id, &components)
                .map_err(|e| Error::invalid(what(), e))?;
            specs.insert((id.clone(), local.clone()), SideInputSpec { value, window });
        }
    }
    Ok(specs)
}

/// One computed answer: its bytes and where each element ends.
pub(crate) struct Paged {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Paged {
    fn push(&mut self, element: &[u8]) {
        self.data.extend_from_slice(element);
        self.ends.push(self.data.len());
    }
}

/// Answers computed during one bundle, by encoded state key, so paging
/// through a large one does not recompute it.
#[derive(Default)]
pub(crate) struct StateCache(HashMap<Vec<u8>, Arc<Paged>>);

/// Answers one state request from `side_inputs`; failures become the
/// response's error text.
pub(crate) fn answer(
    request: &StateRequest,
    specs: &SideInputSpecs,
    side_inputs: &dyn SideInputs,
    cache: &mut StateCache,
) -> StateResponse {
    match get(request, specs, side_inputs, cache) {
        Ok(page) => StateResponse {
            id: request.id.clone(),
            error: String::new(),
            response: Some(state_response::Response::Get(page)),
        },
        Err(e) => StateResponse {
            id: request.id.clone(),
            error: e.to_string(),
            response: None,
        },
    }
}

fn get(
    request: &StateRequest,
    specs: &SideInputSpecs,
    side_inputs: &dyn SideInputs,
    cache: &mut StateCache,
) -> Result<StateGetResponse> {
    let Some(state_request::Request::Get(get)) = &request.request else {
        return Err(Error::invalid(
            "state request",
            "the runner serves side inputs only: state append and clear are not supported over the Fn API yet",
        ));
    };
    let key = request
        .state_key
        .as_ref()
        .ok_or_else(|| Error::invalid("state request", "has no state key"))?;
    let encoded = key.encode_to_vec();
    let paged = match cache.0.get(&encoded) {
        Some(p) => p.clone(),
        None => {
            let p = Arc::new(compute(key, specs, side_inputs)?);
            cache.0.insert(encoded, p.clone());
            p
        }
    };
    let offset = match get.continuation_token.len() {
        0 => 0,
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&get.continuation_token);
            usize::try_from(u64::from_be_bytes(b)).unwrap_or(usize::MAX)
        }
        _ => usize::MAX,
    };
    if offset > paged.data.len() {
        return Err(Error::invalid(
            "state request",
            "continuation token is not one the runner issued",
        ));
    }
    // The page: elements from `offset` up to about a page of bytes, at least one.
    let first = paged.ends.partition_point(|&e| e <= offset);
    let mut end = offset;
    for &e in &paged.ends[first..] {
        if e - offset > STATE_PAGE_BYTES && end > offset {
            break;
        }
        end = e;
    }
    let continuation_token = if end < paged.data.len() {
        (end as u64).to_be_bytes().to_vec().into()
    } else {
        Default::default()
    };
    Ok(StateGetResponse {
        continuation_token,
        data: bytes::Bytes::copy_from_slice(&paged.data[offset..end]),
    })
}

fn spec_for<'a>(
    specs: &'a SideInputSpecs,
    transform: &str,
    side_input: &str,
) -> Result<&'a SideInputSpec> {
    specs
        .get(&(transform.to_string(), side_input.to_string()))
        .ok_or_else(|| {
            Error::invalid(
                "state request",
                format!("transform {transform:?} of this bundle has no side input {side_input:?}"),
            )
        })
}

/// Calls `f` with the windows and value of every element of a side input.
fn for_each<'a>(
    bytes: &'a [u8],
    spec: &SideInputSpec,
    mut f: impl FnMut(&[&'a [u8]], &'a [u8]) -> Result<()>,
) -> Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let parts = read_windowed(&mut rest, &spec.value, &spec.window)
            .map_err(|e| Error::invalid("side input element", e))?;
        f(&parts.windows, parts.value)?;
    }
    Ok(())
}

fn kv_coder(spec: &SideInputSpec) -> Result<&Coder> {
    match &spec.value {
        c @ Coder::Kv { .. } => Ok(c),
        other => Err(Error::invalid(
            "multimap side input",
            format!("its elements are not KVs (coder {})", other.urn()),
        )),
    }
}

fn compute(
    key: &oxbeam_model::fn_execution::StateKey,
    specs: &SideInputSpecs,
    side_inputs: &dyn SideInputs,
) -> Result<Paged> {
    use state_key::Type;
    let mut out = Paged {
        data: Vec::new(),
        ends: Vec::new(),
    };
    match &key.r#type {
        Some(Type::IterableSideInput(k)) => {
            let spec = spec_for(specs, &k.transform_id, &k.side_input_id)?;
            let bytes = side_inputs.side_input(&k.transform_id, &k.side_input_id)?;
            for_each(bytes, spec, |windows, value| {
                if windows.contains(&k.window.as_ref()) {
                    out.push(value);
                }
                Ok(())
            })?;
        }
        Some(Type::MultimapSideInput(k)) => {
            let spec = spec_for(specs, &k.transform_id, &k.side_input_id)?;
            let kv = kv_coder(spec)?;
            let bytes = side_inputs.side_input(&k.transform_id, &k.side_input_id)?;
            for_each(bytes, spec, |windows, value| {
                if windows.contains(&k.window.as_ref()) {
                    let (key, v) = kv
                        .split_kv(&mut &value[..], Context::Nested)
                        .map_err(|e| Error::invalid("side input element", e))?;
                    if key == k.key.as_ref() {
                        out.push(v);
                    }
                }
                Ok(())
            })?;
        }
        Some(Type::MultimapKeysSideInput(k)) => {
            let spec = spec_for(specs, &k.transform_id, &k.side_input_id)?;
            let kv = kv_coder(spec)?;
            let bytes = side_inputs.side_input(&k.transform_id, &k.side_input_id)?;
            let mut seen = std::collections::HashSet::new();
            for_each(bytes, spec, |windows, value| {
                if windows.contains(&k.window.as_ref()) {
                    let (key, _) = kv
                        .split_kv(&mut &value[..], Context::Nested)
                        .map_err(|e| Error::invalid("side input element", e))?;
                    if seen.insert(key) {
                        out.push(key);
                    }
                }
                Ok(())
            })?;
        }
        Some(Type::MultimapKeysValuesSideInput(k)) => {
            let spec = spec_for(specs, &k.transform_id, &k.side_input_id)?;
            let kv = kv_coder(spec)?;
            let bytes = side_inputs.side_input(&k.transform_id, &k.side_input_id)?;
            let mut groups: Vec<(&[u8], Vec<&[u8]>)> = Vec::new();
            let mut index: HashMap<&[u8], usize> = HashMap::new();
            for_each(bytes, spec, |windows, value| {
                if windows.contains(&k.window.as_ref()) {
                    let (key, v) = kv
                        .split_kv(&mut &value[..], Context::Nested)
                        .map_err(|e| Error::invalid("side input element", e))?;
                    let i = *index.entry(key).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    groups[i].1.push(v);
                }
                Ok(())
            })?;
            let mut element = Vec::new();
            for (key, values) in groups {
                element.clear();
                element.extend_from_slice(key);
                element.extend_from_slice(&(values.len() as i32).to_be_bytes());
                for v in values {
                    element.extend_from_slice(v);
                }
                out.push(&element);
            }
        }
        Some(Type::Runner(r)) if r.key.starts_with(ALL_ELEMENTS_KEY) => {
            let rest = &r.key[ALL_ELEMENTS_KEY.len()..];
            let split = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| Error::invalid("state key", "malformed all-elements runner key"))?;
            let transform =
                std::str::from_utf8(&rest[..split]).map_err(|e| Error::invalid("state key", e))?;
            let local = std::str::from_utf8(&rest[split + 1..])
                .map_err(|e| Error::invalid("state key", e))?;
            let spec = spec_for(specs, transform, local)?;
            let bytes = side_inputs.side_input(transform, local)?;
            let mut rest = bytes;
            while !rest.is_empty() {
                let before = rest;
                read_windowed(&mut rest, &spec.value, &spec.window)
                    .map_err(|e| Error::invalid("side input element", e))?;
                out.push(&before[..before.len() - rest.len()]);
            }
        }
        other => {
            let kind = match other {
                None => "an empty state key".to_string(),
                Some(t) => format!("{t:?}")
                    .split('(')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            };
            return Err(Error::invalid(
                "state request",
                format!(
                    "state key {kind}: the runner serves side inputs only (user state is not supported over the Fn API yet)"
                ),
            ));
        }
    }
    Ok(out)
}
