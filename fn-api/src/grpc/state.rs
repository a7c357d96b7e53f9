//! The runner's State API: side inputs served from a bundle's
//! [`SideInputs`], decoded and filtered by window as Beam does, and user
//! state (bag, multimap keys, multimap, ordered list: get, append, clear)
//! served from the bundle's [`UserState`].
//!
//! - `iterable_side_input`: the values of the elements in the window.
//! - `multimap_side_input`: the values under one encoded (nested) key.
//! - `multimap_keys_side_input`: the distinct keys.
//! - `multimap_keys_values_side_input`: `KV<key, Iterable<value>>` per key.
//! - `runner` keys starting with [`ALL_ELEMENTS_KEY`]: every element as a
//!   whole windowed value (how an Oxbeam harness gives its executor the
//!   [`SideInputs`] contract).
//! - `runner` keys of state-backed groups: the values of a group too large
//!   to send inline ([`spill_large_groups`]), for harnesses that read
//!   `beam:coder:state_backed_iterable:v1`.
//!
//! Large answers come in pages of about [`STATE_PAGE_BYTES`], split at
//! element boundaries (Beam SDKs decode each page on its own), linked by
//! continuation tokens holding the next page's byte offset.

use std::collections::HashMap;
use std::sync::Arc;

use oxbeam_model::coders::{Coder, Context, wire};
use oxbeam_model::fn_execution::{
    ProcessBundleDescriptor, StateGetResponse, StateRequest, StateResponse, state_key,
    state_request, state_response,
};
use oxbeam_model::pipeline as pb;
use prost::Message;

use super::{STATE_PAGE_BYTES, read_windowed};
use crate::{Error, Result, SideInputs, UserState, UserStateKey, UserStateKind};

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

/// The side inputs every ParDo of `d` reads, with their coders: ParDos
/// and the components of expanded splittable DoFns (pair with restriction,
/// split and size, truncate, process), which carry the DoFn's payload and
/// read its side inputs under their own transform ids.
///
/// # Errors
/// [`Error::Invalid`] for payloads, PCollections or coders that do not
/// resolve.
pub(crate) fn side_input_specs(d: &ProcessBundleDescriptor) -> Result<SideInputSpecs> {
    use oxbeam_model::urns::standard_p_transforms::primitives::PAR_DO;
    use oxbeam_model::urns::standard_p_transforms::splittable_par_do_components as sdf;
    const READS_SIDE_INPUTS: [&str; 5] = [
        PAR_DO,
        sdf::PAIR_WITH_RESTRICTION,
        sdf::SPLIT_AND_SIZE_RESTRICTIONS,
        sdf::TRUNCATE_SIZED_RESTRICTION,
        sdf::PROCESS_SIZED_ELEMENTS_AND_RESTRICTIONS,
    ];
    let components = pb::Components {
        coders: d.coders.clone(),
        ..Default::default()
    };
    let mut specs = SideInputSpecs::new();
    for (id, t) in &d.transforms {
        let Some(spec) = t
            .spec
            .as_ref()
            .filter(|s| READS_SIDE_INPUTS.contains(&s.urn.as_str()))
        else {
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

/// Element coders of the user state of a descriptor's ParDos, by
/// (transform id, state id): how to split a state's bytes into pages at
/// element boundaries. `(values, map keys)`; map keys only for map and
/// multimap state.
pub(crate) type UserStateSpecs = HashMap<(String, String), (Coder, Option<Coder>)>;

/// The user state every ParDo of `d` declares, with its coders. States
/// whose coders do not resolve are left out (their answers are one page).
///
/// # Errors
/// [`Error::Invalid`] for undecodable ParDo payloads.
pub(crate) fn user_state_specs(d: &ProcessBundleDescriptor) -> Result<UserStateSpecs> {
    use oxbeam_model::urns::standard_p_transforms::primitives::PAR_DO;
    use pb::state_spec::Spec;
    let components = pb::Components {
        coders: d.coders.clone(),
        ..Default::default()
    };
    let coder = |id: &str| Coder::from_proto(id, &components).ok();
    let mut specs = UserStateSpecs::new();
    for (id, t) in &d.transforms {
        let Some(spec) = t.spec.as_ref().filter(|s| s.urn == PAR_DO) else {
            continue;
        };
        let payload = pb::ParDoPayload::decode(spec.payload.as_ref())
            .map_err(|e| Error::invalid(format!("ParDoPayload of transform {id}"), e))?;
        for (state_id, s) in &payload.state_specs {
            let coders = match &s.spec {
                Some(Spec::ReadModifyWriteSpec(x)) => coder(&x.coder_id).map(|c| (c, None)),
                Some(Spec::BagSpec(x)) => coder(&x.element_coder_id).map(|c| (c, None)),
                Some(Spec::SetSpec(x)) => coder(&x.element_coder_id).map(|c| (c, None)),
                Some(Spec::CombiningSpec(x)) => coder(&x.accumulator_coder_id).map(|c| (c, None)),
                Some(Spec::MapSpec(x)) => {
                    coder(&x.value_coder_id).map(|v| (v, coder(&x.key_coder_id)))
                }
                Some(Spec::MultimapSpec(x)) => {
                    coder(&x.value_coder_id).map(|v| (v, coder(&x.key_coder_id)))
                }
                Some(Spec::OrderedListSpec(_)) | None => None,
            };
            if let Some(c) = coders {
                specs.insert((id.clone(), state_id.clone()), c);
            }
        }
    }
    Ok(specs)
}

/// A user state key of a request, if it is one.
fn user_state_key(key: &oxbeam_model::fn_execution::StateKey) -> Option<UserStateKey<'_>> {
    use state_key::Type;
    fn k<'a>(
        transform: &'a str,
        state_id: &'a str,
        window: &'a [u8],
        key: &'a [u8],
        kind: UserStateKind<'a>,
    ) -> UserStateKey<'a> {
        UserStateKey {
            transform,
            state_id,
            window,
            key,
            kind,
        }
    }
    match &key.r#type {
        Some(Type::BagUserState(b)) => Some(k(
            &b.transform_id,
            &b.user_state_id,
            &b.window,
            &b.key,
            UserStateKind::Bag,
        )),
        Some(Type::MultimapKeysUserState(b)) => Some(k(
            &b.transform_id,
            &b.user_state_id,
            &b.window,
            &b.key,
            UserStateKind::MultimapKeys,
        )),
        Some(Type::MultimapUserState(b)) => Some(k(
            &b.transform_id,
            &b.user_state_id,
            &b.window,
            &b.key,
            UserStateKind::Multimap {
                map_key: &b.map_key,
            },
        )),
        Some(Type::OrderedListUserState(b)) => {
            let (start, end) = b
                .range
                .as_ref()
                .map_or((i64::MIN, i64::MAX), |r| (r.start, r.end));
            Some(k(
                &b.transform_id,
                &b.user_state_id,
                &b.window,
                &b.key,
                UserStateKind::OrderedList { start, end },
            ))
        }
        _ => None,
    }
}

/// Where each element of a user state answer ends, if its coder is known.
fn element_ends(data: &[u8], key: &UserStateKey<'_>, specs: &UserStateSpecs) -> Option<Vec<usize>> {
    let mut ends = Vec::new();
    let mut rest = data;
    let spec = specs.get(&(key.transform.to_string(), key.state_id.to_string()));
    while !rest.is_empty() {
        match key.kind {
            UserStateKind::OrderedList { .. } => {
                let mut r = rest;
                let _sort_key = wire::read_varint_u64(&mut r).ok()?;
                let len = usize::try_from(wire::read_varint_u64(&mut r).ok()?).ok()?;
                rest = r.get(len..)?;
            }
            UserStateKind::MultimapKeys => {
                spec?.1.as_ref()?.skip(&mut rest, Context::Nested).ok()?;
            }
            UserStateKind::Bag | UserStateKind::Multimap { .. } => {
                spec?.0.skip(&mut rest, Context::Nested).ok()?;
            }
        }
        ends.push(data.len() - rest.len());
    }
    Some(ends)
}

/// The user state a bundle's state requests are served from.
pub(crate) struct UserStateAccess<'a> {
    pub state: &'a mut dyn UserState,
    pub specs: &'a UserStateSpecs,
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
/// through a large one does not recompute it. User state answers are
/// dropped at every append or clear.
#[derive(Default)]
pub(crate) struct StateCache {
    side_inputs: HashMap<Vec<u8>, Arc<Paged>>,
    user: HashMap<Vec<u8>, Arc<Paged>>,
    /// State-backed groups handed to the harness so far (their keys).
    groups: usize,
}

/// Answers one state request from `side_inputs` or `user`; failures become
/// the response's error text.
pub(crate) fn answer(
    request: &StateRequest,
    specs: &SideInputSpecs,
    side_inputs: &dyn SideInputs,
    user: &mut UserStateAccess<'_>,
    cache: &mut StateCache,
) -> StateResponse {
    let response = match &request.request {
        Some(state_request::Request::Get(_)) => {
            get(request, specs, side_inputs, user, cache).map(state_response::Response::Get)
        }
        Some(state_request::Request::Append(a)) => write(request, user, cache, Some(&a.data))
            .map(|()| state_response::Response::Append(Default::default())),
        Some(state_request::Request::Clear(_)) => write(request, user, cache, None)
            .map(|()| state_response::Response::Clear(Default::default())),
        None => Err(Error::invalid(
            "state request",
            "has no get, append or clear",
        )),
    };
    match response {
        Ok(r) => StateResponse {
            id: request.id.clone(),
            error: String::new(),
            response: Some(r),
        },
        Err(e) => StateResponse {
            id: request.id.clone(),
            error: e.to_string(),
            response: None,
        },
    }
}

/// An append (`data`) or a clear (`None`) of user state.
fn write(
    request: &StateRequest,
    user: &mut UserStateAccess<'_>,
    cache: &mut StateCache,
    data: Option<&[u8]>,
) -> Result<()> {
    let key = request
        .state_key
        .as_ref()
        .and_then(user_state_key)
        .ok_or_else(|| {
            Error::invalid(
                "state request",
                "appends and clears are only for user state (bag, multimap, ordered list)",
            )
        })?;
    cache.user.clear();
    match data {
        Some(d) => user.state.append(&key, d),
        None => user.state.clear(&key),
    }
}

fn get(
    request: &StateRequest,
    specs: &SideInputSpecs,
    side_inputs: &dyn SideInputs,
    user: &mut UserStateAccess<'_>,
    cache: &mut StateCache,
) -> Result<StateGetResponse> {
    let Some(state_request::Request::Get(get)) = &request.request else {
        return Err(Error::Internal("not a get request".into()));
    };
    let key = request
        .state_key
        .as_ref()
        .ok_or_else(|| Error::invalid("state request", "has no state key"))?;
    let encoded = key.encode_to_vec();
    let paged = if let Some(uk) = user_state_key(key) {
        match cache.user.get(&encoded) {
            Some(p) if !get.continuation_token.is_empty() => p.clone(),
            _ => {
                let mut data = Vec::new();
                user.state.get(&uk, &mut data)?;
                let ends = element_ends(&data, &uk, user.specs).unwrap_or_else(|| vec![data.len()]);
                let p = Arc::new(Paged { data, ends });
                cache.user.insert(encoded, p.clone());
                p
            }
        }
    } else {
        match cache.side_inputs.get(&encoded) {
            Some(p) => p.clone(),
            None => {
                let p = Arc::new(compute(key, specs, side_inputs)?);
                cache.side_inputs.insert(encoded, p.clone());
                p
            }
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
                format!("state key {kind} is not one the runner serves"),
            ));
        }
    }
    Ok(out)
}

/// Grouped values larger than this go to a harness that reads state-backed
/// iterables through the State API instead of inline (see
/// [`state_backed_sources`]).
pub(crate) const STATE_BACKED_GROUP_BYTES: usize = 1 << 20;

/// Prefix of the runner keys of state-backed groups.
const GROUP_KEY: &[u8] = b"oxbeam/group/";

/// How to read the elements of a data source of grouped values,
/// `KV<key, Iterable<value>>` in windows.
pub(crate) struct GroupCoders {
    /// `KV<key, Iterable<value>>`.
    kv: Coder,
    value: Coder,
    window: Coder,
}

/// Makes every data source of `d` that reads grouped values
/// (`windowed_value<KV<K, iterable<V>>>`, a GroupByKey's output) read them
/// with `beam:coder:state_backed_iterable:v1` instead: a harness then takes
/// a large group's values through the State API, a page at a time, as
/// Beam's runners hand large groups to Beam's SDK harnesses. Returns the
/// coders of each such source, by transform id.
///
/// # Errors
/// [`Error::Invalid`] for ports or coders that do not decode.
pub(crate) fn state_backed_sources(
    d: &mut ProcessBundleDescriptor,
) -> Result<HashMap<String, GroupCoders>> {
    use oxbeam_model::fn_execution::RemoteGrpcPort;
    use oxbeam_model::urns::fn_api_transforms::runner::DATA_SOURCE;
    use oxbeam_model::urns::standard_coders as urn;
    let mut out = HashMap::new();
    let ids: Vec<String> = d.transforms.keys().cloned().collect();
    for id in ids {
        let t = &d.transforms[&id];
        let Some(spec) = t.spec.as_ref().filter(|s| s.urn == DATA_SOURCE) else {
            continue;
        };
        let mut port = RemoteGrpcPort::decode(spec.payload.as_ref())
            .map_err(|e| Error::invalid(format!("RemoteGrpcPort of transform {id}"), e))?;
        // The coder `cid`, if it has URN `u`.
        let coder = |cid: &str, u: &str| {
            d.coders
                .get(cid)
                .filter(|c| c.spec.as_ref().is_some_and(|s| s.urn == u))
        };
        let Some([kv_id, window_id]) =
            coder(&port.coder_id, urn::WINDOWED_VALUE).map(|c| c.component_coder_ids.as_slice())
        else {
            continue;
        };
        let Some([key_id, iter_id]) =
            coder(kv_id, urn::KV).map(|c| c.component_coder_ids.as_slice())
        else {
            continue;
        };
        let Some([value_id]) =
            coder(iter_id, urn::ITERABLE).map(|c| c.component_coder_ids.as_slice())
        else {
            continue;
        };
        let components = pb::Components {
            coders: d.coders.clone(),
            ..Default::default()
        };
        let rust = |cid: &str| {
            Coder::from_proto(cid, &components)
                .map_err(|e| Error::invalid(format!("coder {cid} of data port {id}"), e))
        };
        let coders = GroupCoders {
            kv: rust(kv_id)?,
            value: rust(value_id)?,
            window: rust(window_id)?,
        };
        let (key_id, value_id, window_id) = (key_id.clone(), value_id.clone(), window_id.clone());
        let (kv_id, iter_id) = (kv_id.clone(), iter_id.clone());
        let fresh = |d: &ProcessBundleDescriptor, base: &str| {
            let mut n = format!("{base}/state-backed");
            while d.coders.contains_key(&n) {
                n.push('_');
            }
            n
        };
        let new = |urn: &str, components: Vec<String>| pb::Coder {
            spec: Some(pb::FunctionSpec {
                urn: urn.to_string(),
                payload: Default::default(),
            }),
            component_coder_ids: components,
        };
        let sbi = fresh(d, &iter_id);
        d.coders
            .insert(sbi.clone(), new(urn::STATE_BACKED_ITERABLE, vec![value_id]));
        let kv2 = fresh(d, &kv_id);
        d.coders
            .insert(kv2.clone(), new(urn::KV, vec![key_id, sbi]));
        let wv2 = fresh(d, &port.coder_id);
        d.coders
            .insert(wv2.clone(), new(urn::WINDOWED_VALUE, vec![kv2, window_id]));
        port.coder_id = wv2;
        if let Some(spec) = d.transforms.get_mut(&id).and_then(|t| t.spec.as_mut()) {
            spec.payload = port.encode_to_vec().into();
        }
        out.insert(id, coders);
    }
    Ok(out)
}

/// `piece` (whole grouped elements of a source with `coders`) as the
/// harness is to receive it: each group whose values take more than
/// [`STATE_BACKED_GROUP_BYTES`] becomes a state-backed iterable (count −1,
/// no inline block, varint −1 and a runner key), its values put in `cache`
/// under that key for the bundle's State API requests; other groups are
/// unchanged. Borrows `piece` when no group is that large.
///
/// # Errors
/// [`Error::Invalid`] for elements that do not decode.
pub(crate) fn spill_large_groups<'a>(
    piece: &'a [u8],
    coders: &GroupCoders,
    cache: &mut StateCache,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    let bad = |e| Error::invalid("grouped element", e);
    let mut out: Option<Vec<u8>> = None;
    let mut rest = piece;
    while !rest.is_empty() {
        let start = rest;
        let kv = super::read_windowed(&mut rest, &coders.kv, &coders.window)
            .map_err(bad)?
            .value;
        let element = &start[..start.len() - rest.len()];
        let (_, mut iterable) = coders
            .kv
            .split_kv(&mut &kv[..], Context::Nested)
            .map_err(bad)?;
        let head = &element[..element.len() - iterable.len()];
        // A count, then the values (count −1: already in blocks, passed on
        // as it is).
        let count = wire::read_i32_be(&mut iterable).map_err(bad)?;
        let values = iterable;
        if count < 0 || values.len() <= STATE_BACKED_GROUP_BYTES {
            if let Some(o) = out.as_mut() {
                o.extend_from_slice(element);
            }
            continue;
        }
        let mut ends = Vec::with_capacity(count as usize);
        let mut v = values;
        for _ in 0..count {
            coders.value.skip(&mut v, Context::Nested).map_err(bad)?;
            ends.push(values.len() - v.len());
        }
        let o = out.get_or_insert_with(|| {
            let done = piece.len() - start.len();
            let mut v = Vec::with_capacity(done + 64);
            v.extend_from_slice(&piece[..done]);
            v
        });
        let mut token = GROUP_KEY.to_vec();
        token.extend_from_slice(&(cache.groups as u64).to_be_bytes());
        cache.groups += 1;
        o.extend_from_slice(head);
        wire::write_i32_be(o, -1);
        wire::write_varint_i64(o, -1);
        wire::write_length_prefixed(o, &token);
        let key = oxbeam_model::fn_execution::StateKey {
            r#type: Some(state_key::Type::Runner(state_key::Runner {
                key: token.into(),
            })),
        };
        cache.side_inputs.insert(
            key.encode_to_vec(),
            Arc::new(Paged {
                data: values.to_vec(),
                ends,
            }),
        );
    }
    Ok(match out {
        Some(o) => std::borrow::Cow::Owned(o),
        None => std::borrow::Cow::Borrowed(piece),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use oxbeam_model::fn_execution::{
        StateAppendRequest, StateClearRequest, StateGetRequest, StateKey,
    };
    use oxbeam_model::urns;

    use super::*;
    use crate::NoSideInputs;

    /// User state as plain bags by (state id, kind).
    #[derive(Default)]
    struct Bags(HashMap<(String, String), Vec<u8>>);

    fn id(key: &UserStateKey<'_>) -> (String, String) {
        (key.state_id.to_string(), format!("{:?}", key.kind))
    }

    impl UserState for Bags {
        fn get(&mut self, key: &UserStateKey<'_>, out: &mut Vec<u8>) -> Result<()> {
            out.extend(self.0.get(&id(key)).cloned().unwrap_or_default());
            Ok(())
        }
        fn append(&mut self, key: &UserStateKey<'_>, data: &[u8]) -> Result<()> {
            self.0.entry(id(key)).or_default().extend_from_slice(data);
            Ok(())
        }
        fn clear(&mut self, key: &UserStateKey<'_>) -> Result<()> {
            self.0.remove(&id(key));
            Ok(())
        }
    }

    fn descriptor() -> ProcessBundleDescriptor {
        let payload = pb::ParDoPayload {
            state_specs: [(
                "bag".to_string(),
                pb::StateSpec {
                    spec: Some(pb::state_spec::Spec::BagSpec(pb::BagStateSpec {
                        element_coder_id: "str".into(),
                    })),
                    protocol: None,
                },
            )]
            .into(),
            ..Default::default()
        };
        ProcessBundleDescriptor {
            transforms: [(
                "t".to_string(),
                pb::PTransform {
                    spec: Some(pb::FunctionSpec {
                        urn: urns::standard_p_transforms::primitives::PAR_DO.into(),
                        payload: payload.encode_to_vec().into(),
                    }),
                    ..Default::default()
                },
            )]
            .into(),
            coders: [(
                "str".to_string(),
                pb::Coder {
                    spec: Some(pb::FunctionSpec {
                        urn: urns::standard_coders::STRING_UTF8.into(),
                        payload: Default::default(),
                    }),
                    component_coder_ids: vec![],
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    fn bag_key() -> StateKey {
        StateKey {
            r#type: Some(state_key::Type::BagUserState(state_key::BagUserState {
                transform_id: "t".into(),
                user_state_id: "bag".into(),
                window: Default::default(),
                key: b"\x01k".to_vec().into(),
            })),
        }
    }

    fn request(r: state_request::Request) -> StateRequest {
        StateRequest {
            id: "1".into(),
            instruction_id: "b".into(),
            state_key: Some(bag_key()),
            request: Some(r),
        }
    }

    #[test]
    fn user_state_appends_clears_and_pages_at_element_boundaries() {
        let d = descriptor();
        let specs = user_state_specs(&d).unwrap();
        let mut bags = Bags::default();
        let mut cache = StateCache::default();
        let ask = |r: state_request::Request, bags: &mut Bags, cache: &mut StateCache| {
            let mut user = UserStateAccess {
                state: bags,
                specs: &specs,
            };
            answer(
                &request(r),
                &HashMap::new(),
                &NoSideInputs,
                &mut user,
                cache,
            )
        };
        // 3000 strings of 1002 bytes each (2-byte length prefix + 1000).
        let mut all = Vec::new();
        for i in 0..3000 {
            let s = format!("{i:04}{}", "x".repeat(996));
            let mut e = Vec::new();
            wire::write_length_prefixed(&mut e, s.as_bytes());
            all.extend_from_slice(&e);
            let r = ask(
                state_request::Request::Append(StateAppendRequest { data: e.into() }),
                &mut bags,
                &mut cache,
            );
            assert!(r.error.is_empty(), "{}", r.error);
        }
        let mut read = Vec::new();
        let mut token = Vec::new();
        let mut pages = 0;
        loop {
            let r = ask(
                state_request::Request::Get(StateGetRequest {
                    continuation_token: token.clone().into(),
                }),
                &mut bags,
                &mut cache,
            );
            let Some(state_response::Response::Get(page)) = r.response else {
                panic!("no page: {}", r.error)
            };
            // Every page decodes on its own.
            let mut rest = &page.data[..];
            while !rest.is_empty() {
                wire::read_length_prefixed(&mut rest).unwrap();
            }
            read.extend_from_slice(&page.data);
            pages += 1;
            if page.continuation_token.is_empty() {
                break;
            }
            token = page.continuation_token.to_vec();
        }
        assert_eq!(read, all);
        assert_eq!(pages, 3);
        let r = ask(
            state_request::Request::Clear(StateClearRequest {}),
            &mut bags,
            &mut cache,
        );
        assert!(matches!(
            r.response,
            Some(state_response::Response::Clear(_))
        ));
        let r = ask(
            state_request::Request::Get(StateGetRequest::default()),
            &mut bags,
            &mut cache,
        );
        let Some(state_response::Response::Get(page)) = r.response else {
            panic!("no page")
        };
        assert!(page.data.is_empty() && page.continuation_token.is_empty());
    }

    #[test]
    fn appends_to_side_inputs_are_refused() {
        let mut bags = Bags::default();
        let specs = UserStateSpecs::new();
        let mut user = UserStateAccess {
            state: &mut bags,
            specs: &specs,
        };
        let r = answer(
            &StateRequest {
                id: "7".into(),
                instruction_id: "b".into(),
                state_key: Some(StateKey {
                    r#type: Some(state_key::Type::IterableSideInput(
                        state_key::IterableSideInput {
                            transform_id: "t".into(),
                            side_input_id: "s".into(),
                            window: Default::default(),
                        },
                    )),
                }),
                request: Some(state_request::Request::Append(StateAppendRequest {
                    data: b"x".to_vec().into(),
                })),
            },
            &HashMap::new(),
            &NoSideInputs,
            &mut user,
            &mut StateCache::default(),
        );
        assert_eq!(r.id, "7");
        assert_eq!(
            r.error,
            "invalid state request: appends and clears are only for user state (bag, multimap, ordered list)"
        );
    }

    /// A grouped element in the global window: key `k`, values `vs` (bytes).
    fn group(k: &[u8], vs: &[Vec<u8>]) -> Vec<u8> {
        let mut e = Vec::new();
        wire::write_i64_be(&mut e, 0);
        wire::write_i32_be(&mut e, 1);
        e.push(0x0F);
        wire::write_length_prefixed(&mut e, k);
        wire::write_i32_be(&mut e, vs.len() as i32);
        for v in vs {
            wire::write_length_prefixed(&mut e, v);
        }
        e
    }

    #[test]
    fn large_groups_become_state_backed_and_small_ones_stay_inline() {
        let coders = GroupCoders {
            kv: Coder::Kv {
                key: Arc::new(Coder::Bytes),
                value: Arc::new(Coder::Iterable(Arc::new(Coder::Bytes))),
            },
            value: Coder::Bytes,
            window: Coder::GlobalWindow,
        };
        let small = group(b"s", &[b"a".to_vec(), b"b".to_vec()]);
        let big_values: Vec<Vec<u8>> = (0..3000u32).map(|i| vec![i as u8; 500]).collect();
        let big = group(b"big", &big_values);
        let mut cache = StateCache::default();
        // Only small groups: the piece is passed on as it is.
        let piece = [small.clone(), small.clone()].concat();
        let out = spill_large_groups(&piece, &coders, &mut cache).unwrap();
        assert!(matches!(out, std::borrow::Cow::Borrowed(_)));
        // A large group between small ones: count -1, no inline block,
        // varint -1, then the runner key; its values are in the cache.
        let piece = [small.clone(), big.clone(), small.clone()].concat();
        let out = spill_large_groups(&piece, &coders, &mut cache).unwrap();
        let head_len = 8 + 4 + 1 + 4; // timestamp, window count, pane, key "big"
        let mut expected = small.clone();
        expected.extend_from_slice(&big[..head_len]);
        wire::write_i32_be(&mut expected, -1);
        wire::write_varint_i64(&mut expected, -1);
        let token = [GROUP_KEY, &0u64.to_be_bytes()].concat();
        wire::write_length_prefixed(&mut expected, &token);
        expected.extend_from_slice(&small);
        assert_eq!(out.as_ref(), expected.as_slice());
        let key = StateKey {
            r#type: Some(state_key::Type::Runner(state_key::Runner {
                key: token.into(),
            })),
        };
        let paged = &cache.side_inputs[&key.encode_to_vec()];
        assert_eq!(paged.data, big[head_len + 4..].to_vec());
        assert_eq!(paged.ends.len(), 3000);
        assert_eq!(paged.ends[0], 2 + 500);
    }
}
