//! Every example of `standard_coders.yaml` from the pinned apache-beam package,
//! encoded and decoded in every context its section asks for.
//!
//! Each section names a coder (URN, components, payload) and maps encoded bytes
//! (a JSON-escaped string whose chars U+0000..U+00FF are the bytes) to a JSON
//! value. The value is turned into a [`Value`] the way Beam's own
//! `standard_coders_test.py` interprets it for that coder. Sections marked
//! `non_deterministic` are checked in the decoding direction only.

use std::collections::BTreeMap;

use oxbeam_model::coders::{Coder, Context, Decimal, Timer, TimerFiring, Value, WindowedValue};
use oxbeam_model::pipeline;
use oxbeam_model::pipeline::field_type::TypeInfo;
use oxbeam_model::urns::{logical_types, standard_coders as urn};
use oxbeam_model::window::{BoundedWindow, PaneInfo, PaneTiming, Timestamp};
use prost::Message;
use serde::Deserialize;
use serde_yaml::Value as Yaml;

use crate::beam_python;

/// Examples Oxbeam deliberately does not support, as (coder URN, encoded bytes
/// as in the YAML, reason). Empty: every vector passes.
const UNSUPPORTED: &[(&str, &str, &str)] = &[];

fn latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| {
            u8::try_from(u32::from(c))
                .unwrap_or_else(|_| panic!("char {c:?} above U+00FF in {s:?}"))
        })
        .collect()
}

fn field<'a>(y: &'a Yaml, name: &str) -> &'a Yaml {
    y.get(name)
        .unwrap_or_else(|| panic!("missing {name:?} in {y:?}"))
}

fn as_str(y: &Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {y:?}"))
}

fn as_i64(y: &Yaml) -> i64 {
    y.as_i64()
        .unwrap_or_else(|| panic!("expected an integer, got {y:?}"))
}

fn urn_of(spec: &Yaml) -> &str {
    as_str(field(spec, "urn"))
}

fn components(spec: &Yaml) -> Vec<&Yaml> {
    spec.get("components")
        .and_then(Yaml::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

fn payload(spec: &Yaml) -> Vec<u8> {
    spec.get("payload")
        .map(|p| latin1(as_str(p)))
        .unwrap_or_default()
}

/// Registers `spec` and its components in `comps`; returns its id.
fn add_coder(spec: &Yaml, comps: &mut pipeline::Components) -> String {
    let component_coder_ids = components(spec)
        .into_iter()
        .map(|c| add_coder(c, comps))
        .collect();
    let id = format!("coder{}", comps.coders.len());
    comps.coders.insert(
        id.clone(),
        pipeline::Coder {
            spec: Some(pipeline::FunctionSpec {
                urn: urn_of(spec).to_string(),
                payload: payload(spec).into(),
            }),
            component_coder_ids,
        },
    );
    id
}

fn timestamp(y: &Yaml) -> Timestamp {
    Timestamp::from_millis(as_i64(y))
}

fn pane(y: Option<&Yaml>) -> PaneInfo {
    let Some(y) = y else {
        return PaneInfo::NO_FIRING;
    };
    PaneInfo {
        is_first: field(y, "is_first").as_bool().unwrap(),
        is_last: field(y, "is_last").as_bool().unwrap(),
        timing: match as_str(field(y, "timing")) {
            "EARLY" => PaneTiming::Early,
            "ON_TIME" => PaneTiming::OnTime,
            "LATE" => PaneTiming::Late,
            "UNKNOWN" => PaneTiming::Unknown,
            t => panic!("unknown timing {t}"),
        },
        index: as_i64(field(y, "index")),
        on_time_index: as_i64(field(y, "on_time_index")),
        is_retraction: false,
    }
}

fn parse_f64(y: &Yaml) -> f64 {
    match y {
        Yaml::String(s) => s.parse().unwrap_or_else(|_| panic!("not a double: {s}")),
        y => y.as_f64().unwrap(),
    }
}

/// The [`Value`] a coder's JSON example stands for, per `standard_coders_test.py`.
fn to_value(spec: &Yaml, json: &Yaml) -> Value {
    let comps = components(spec);
    let comp = |i: usize, y: &Yaml| to_value(comps[i], y);
    let u = urn_of(spec);
    match u {
        _ if u == urn::BYTES => Value::Bytes(as_str(json).as_bytes().to_vec()),
        _ if u == urn::STRING_UTF8 => Value::String(as_str(json).to_string()),
        _ if u == urn::BOOL => Value::Bool(json.as_bool().unwrap()),
        _ if u == urn::VARINT => Value::Int(as_i64(json)),
        _ if u == urn::DOUBLE => Value::Double(parse_f64(json)),
        _ if u == urn::KV => Value::kv(comp(0, field(json, "key")), comp(1, field(json, "value"))),
        _ if u == urn::INTERVAL_WINDOW => {
            let end = as_i64(field(json, "end"));
            let span = as_i64(field(json, "span"));
            Value::Window(BoundedWindow::Interval {
                start: Timestamp::from_millis(end - span),
                end: Timestamp::from_millis(end),
            })
        }
        _ if u == urn::GLOBAL_WINDOW => Value::Window(BoundedWindow::Global),
        _ if u == urn::ITERABLE || u == urn::STATE_BACKED_ITERABLE => Value::Iterable(
            json.as_sequence()
                .unwrap()
                .iter()
                .map(|y| comp(0, y))
                .collect(),
        ),
        _ if u == urn::WINDOWED_VALUE || u == urn::PARAM_WINDOWED_VALUE => {
            Value::WindowedValue(Box::new(WindowedValue {
                value: comp(0, field(json, "value")),
                timestamp: timestamp(field(json, "timestamp")),
                windows: windows(&comps, field(json, "windows")),
                pane: pane(json.get("pane")),
            }))
        }
        _ if u == urn::TIMER => {
            let clear = field(json, "clearBit").as_bool().unwrap();
            Value::Timer(Box::new(Timer {
                user_key: comp(0, field(json, "userKey")),
                dynamic_timer_tag: as_str(field(json, "dynamicTimerTag")).to_string(),
                windows: windows(&comps, field(json, "windows")),
                firing: (!clear).then(|| TimerFiring {
                    fire_timestamp: timestamp(field(json, "fireTimestamp")),
                    hold_timestamp: timestamp(field(json, "holdTimestamp")),
                    pane: pane(json.get("pane")),
                }),
            }))
        }
        _ if u == urn::SHARDED_KEY => Value::ShardedKey {
            shard_id: as_str(field(json, "shardId")).as_bytes().to_vec(),
            key: Box::new(comp(0, field(json, "key"))),
        },
        _ if u == urn::CUSTOM_WINDOW => comp(0, field(json, "window")),
        _ if u == urn::NULLABLE => match json {
            Yaml::Null => Value::Null,
            y => comp(0, y),
        },
        _ if u == urn::ROW => {
            let schema =
                pipeline::Schema::decode(&payload(spec)[..]).expect("row payload is a Schema");
            row_value(&schema, json)
        }
        _ => panic!("no JSON interpretation for coder {u}"),
    }
}

fn windows(comps: &[&Yaml], json: &Yaml) -> Vec<Value> {
    json.as_sequence()
        .unwrap()
        .iter()
        .map(|w| to_value(comps[1], w))
        .collect()
}

fn row_value(schema: &pipeline::Schema, json: &Yaml) -> Value {
    let map = json.as_mapping().unwrap();
    for key in map.keys() {
        assert!(
            schema
                .fields
                .iter()
                .any(|f| Some(f.name.as_str()) == key.as_str()),
            "example field {key:?} not in the schema"
        );
    }
    Value::Row(
        schema
            .fields
            .iter()
            .map(|f| match json.get(&f.name) {
                None | Some(Yaml::Null) => Value::Null,
                Some(v) => field_value(f.r#type.as_ref().unwrap(), v),
            })
            .collect(),
    )
}

fn parse_decimal(s: &str) -> Decimal {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits: i128 = format!("{int}{frac}").parse().unwrap();
    Decimal::from_i128(digits, frac.len() as i32)
}

fn field_value(ty: &pipeline::FieldType, y: &Yaml) -> Value {
    if y.is_null() {
        return Value::Null;
    }
    match ty.type_info.as_ref().unwrap() {
        TypeInfo::AtomicType(a) => match pipeline::AtomicType::try_from(*a).unwrap() {
            pipeline::AtomicType::Byte
            | pipeline::AtomicType::Int16
            | pipeline::AtomicType::Int32
            | pipeline::AtomicType::Int64 => Value::Int(as_i64(y)),
            pipeline::AtomicType::Float => Value::Float(match y {
                Yaml::String(s) => s.parse().unwrap(),
                y => y.as_f64().unwrap() as f32,
            }),
            pipeline::AtomicType::Double => Value::Double(parse_f64(y)),
            pipeline::AtomicType::String => Value::String(as_str(y).to_string()),
            pipeline::AtomicType::Boolean => Value::Bool(y.as_bool().unwrap()),
            pipeline::AtomicType::Bytes => Value::Bytes(as_str(y).as_bytes().to_vec()),
            pipeline::AtomicType::Unspecified => panic!("unspecified atomic type"),
        },
        TypeInfo::ArrayType(a) => Value::Iterable(
            y.as_sequence()
                .unwrap()
                .iter()
                .map(|e| field_value(a.element_type.as_ref().unwrap(), e))
                .collect(),
        ),
        TypeInfo::IterableType(a) => Value::Iterable(
            y.as_sequence()
                .unwrap()
                .iter()
                .map(|e| field_value(a.element_type.as_ref().unwrap(), e))
                .collect(),
        ),
        TypeInfo::MapType(m) => Value::Map(
            y.as_mapping()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    (
                        field_value(m.key_type.as_ref().unwrap(), k),
                        field_value(m.value_type.as_ref().unwrap(), v),
                    )
                })
                .collect(),
        ),
        TypeInfo::RowType(r) => row_value(r.schema.as_ref().unwrap(), y),
        // The YAML gives millis_instant as its shifted int64 representation,
        // decimal as its decimal string, other logical types as their
        // representation.
        TypeInfo::LogicalType(l) if l.urn == logical_types::MILLIS_INSTANT => {
            Value::Timestamp(Timestamp::from_millis(as_i64(y) ^ i64::MIN))
        }
        TypeInfo::LogicalType(l) if l.urn == logical_types::DECIMAL => {
            Value::Decimal(parse_decimal(as_str(y)))
        }
        TypeInfo::LogicalType(l) => field_value(l.representation.as_ref().unwrap(), y),
    }
}

/// Replaces a state-backed iterable's token with the elements the section's
/// `state` map holds for it, as the Python test's state reader does.
fn resolve_state(spec: &Yaml, elem: &Coder, value: Value) -> Value {
    let Value::StateBackedIterable {
        prefix,
        state_token,
    } = value
    else {
        return value;
    };
    let token = String::from_utf8(state_token).unwrap();
    let state = spec
        .get("state")
        .and_then(|s| s.get(&token))
        .map(|s| latin1(as_str(s)))
        .unwrap_or_default();
    let mut items = prefix;
    let mut input = &state[..];
    while !input.is_empty() {
        items.push(elem.decode(&mut input, Context::Nested).unwrap());
    }
    Value::Iterable(items)
}

#[derive(Deserialize)]
struct Section {
    coder: Yaml,
    nested: Option<bool>,
    examples: serde_yaml::Mapping,
}

fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Checks one example in one context; returns a failure message.
fn check(
    section: &Section,
    coder: &Coder,
    bytes: &[u8],
    json: &Yaml,
    ctx: Context,
) -> Result<(), String> {
    let non_deterministic = section
        .coder
        .get("non_deterministic")
        .and_then(Yaml::as_bool)
        .unwrap_or(false);
    let expected = to_value(&section.coder, json);
    if !non_deterministic {
        let mut out = Vec::new();
        coder
            .encode(&expected, &mut out, ctx)
            .map_err(|e| format!("encode failed: {e}"))?;
        if out != bytes {
            return Err(format!("encoded to b\"{}\"", escape(&out)));
        }
    }
    let mut input = bytes;
    let decoded = coder
        .decode(&mut input, ctx)
        .map_err(|e| format!("decode failed: {e}"))?;
    if !input.is_empty() {
        return Err(format!("decode left {} bytes", input.len()));
    }
    let decoded = match coder {
        Coder::StateBackedIterable(elem) => resolve_state(&section.coder, elem, decoded),
        _ => decoded,
    };
    if decoded != expected {
        return Err(format!("decoded to {decoded:?}, expected {expected:?}"));
    }
    let mut input = bytes;
    coder
        .skip(&mut input, ctx)
        .map_err(|e| format!("skip failed: {e}"))?;
    if !input.is_empty() {
        return Err(format!("skip left {} bytes", input.len()));
    }
    Ok(())
}

#[test]
fn standard_coders_yaml() {
    let path = beam_python::standard_coders_yaml();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut total = 0;
    let mut failures = Vec::new();
    let mut sections = 0;
    let mut urns = BTreeMap::<String, usize>::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let section = Section::deserialize(doc).expect("section parses");
        sections += 1;
        let u = urn_of(&section.coder).to_string();
        *urns.entry(u.clone()).or_default() += 1;
        let mut comps = pipeline::Components::default();
        let id = add_coder(&section.coder, &mut comps);
        let coder = Coder::from_proto(&id, &comps)
            .unwrap_or_else(|e| panic!("section {sections} ({u}): {e}"));
        let contexts: &[Context] = match section.nested {
            Some(true) => &[Context::Nested],
            Some(false) => &[Context::Outer],
            None => &[Context::Nested, Context::Outer],
        };
        for (key, json) in &section.examples {
            let bytes = latin1(as_str(key));
            for &ctx in contexts {
                if UNSUPPORTED
                    .iter()
                    .any(|(uu, k, _)| *uu == u && latin1(k) == bytes)
                {
                    continue;
                }
                total += 1;
                if let Err(msg) = check(&section, &coder, &bytes, json, ctx) {
                    failures.push(format!(
                        "section {sections} {u} {ctx:?} b\"{}\": {msg}",
                        escape(&bytes)
                    ));
                }
            }
        }
    }
    let passed = total - failures.len();
    println!(
        "{passed}/{total} vectors passed ({sections} sections, {} unsupported)",
        UNSUPPORTED.len()
    );
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(
        sections >= 40,
        "only {sections} sections found in {}",
        path.display()
    );
    // Every standard coder with vectors is exercised.
    for u in [
        urn::BYTES,
        urn::BOOL,
        urn::STRING_UTF8,
        urn::VARINT,
        urn::KV,
        urn::INTERVAL_WINDOW,
        urn::ITERABLE,
        urn::TIMER,
        urn::GLOBAL_WINDOW,
        urn::WINDOWED_VALUE,
        urn::PARAM_WINDOWED_VALUE,
        urn::DOUBLE,
        urn::ROW,
        urn::SHARDED_KEY,
        urn::STATE_BACKED_ITERABLE,
        urn::CUSTOM_WINDOW,
        urn::NULLABLE,
    ] {
        assert!(urns.contains_key(u), "no section for {u}");
    }
    assert!(
        failures.is_empty(),
        "{} of {total} vectors failed",
        failures.len()
    );
}
