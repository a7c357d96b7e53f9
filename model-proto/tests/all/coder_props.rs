//! Property tests of the coders: random values round-trip through every coder
//! kind and context; random and hostile bytes never make a decoder panic or
//! allocate beyond the input; error messages are pinned as snapshots.

use std::sync::Arc;

use oxbeam_model::coders::{
    Coder, CoderError, Context, Decimal, RowSchema, Timer, TimerFiring, Value, WindowCoder,
    WindowedValue, WindowedValueHeader, Windows, decode_windowed, decode_windowed_with,
    encode_windowed_bytes, wire,
};
use oxbeam_model::pipeline;
use oxbeam_model::pipeline::field_type::TypeInfo;
use oxbeam_model::urns::logical_types;
use oxbeam_model::window::{BoundedWindow, PaneInfo, PaneTiming, Timestamp};
use proptest::prelude::*;

// ------------------------------------------------------------ strategies

fn atomic(t: pipeline::AtomicType, nullable: bool) -> pipeline::FieldType {
    pipeline::FieldType {
        nullable,
        type_info: Some(TypeInfo::AtomicType(t as i32)),
    }
}

fn field(name: &str, ty: pipeline::FieldType) -> pipeline::Field {
    pipeline::Field {
        name: name.to_string(),
        r#type: Some(ty),
        ..Default::default()
    }
}

/// A schema using every atomic type, nulls, arrays, maps, a nested row and
/// logical types.
fn test_schema() -> RowSchema {
    use pipeline::AtomicType as A;
    let inner = pipeline::Schema {
        fields: vec![
            field("s", atomic(A::String, true)),
            field("i", atomic(A::Int64, false)),
        ],
        id: "inner".into(),
        ..Default::default()
    };
    let logical = |urn: &str, repr: pipeline::FieldType, nullable| pipeline::FieldType {
        nullable,
        type_info: Some(TypeInfo::LogicalType(Box::new(pipeline::LogicalType {
            urn: urn.to_string(),
            representation: Some(Box::new(repr)),
            ..Default::default()
        }))),
    };
    let mut fields = Vec::new();
    for (i, t) in [
        A::Byte,
        A::Int16,
        A::Int32,
        A::Int64,
        A::Float,
        A::Double,
        A::String,
        A::Boolean,
        A::Bytes,
    ]
    .into_iter()
    .enumerate()
    {
        fields.push(field(&format!("a{i}"), atomic(t, i % 2 == 0)));
    }
    fields.push(field(
        "arr",
        pipeline::FieldType {
            nullable: true,
            type_info: Some(TypeInfo::ArrayType(Box::new(pipeline::ArrayType {
                element_type: Some(Box::new(atomic(A::Int32, true))),
            }))),
        },
    ));
    fields.push(field(
        "map",
        pipeline::FieldType {
            nullable: false,
            type_info: Some(TypeInfo::MapType(Box::new(pipeline::MapType {
                key_type: Some(Box::new(atomic(A::String, false))),
                value_type: Some(Box::new(atomic(A::Double, true))),
            }))),
        },
    ));
    fields.push(field(
        "row",
        pipeline::FieldType {
            nullable: true,
            type_info: Some(TypeInfo::RowType(pipeline::RowType {
                schema: Some(inner),
            })),
        },
    ));
    fields.push(field(
        "ts",
        logical(
            logical_types::MILLIS_INSTANT,
            atomic(A::Int64, false),
            false,
        ),
    ));
    fields.push(field(
        "dec",
        logical(logical_types::DECIMAL, atomic(A::Bytes, false), true),
    ));
    fields.push(field(
        "chr",
        logical(logical_types::FIXED_CHAR, atomic(A::String, false), false),
    ));
    let schema = pipeline::Schema {
        fields,
        id: "test".into(),
        ..Default::default()
    };
    RowSchema::from_proto(&schema).unwrap()
}

fn arb_coder() -> impl Strategy<Value = Coder> {
    let leaf = prop_oneof![
        Just(Coder::Bytes),
        Just(Coder::StringUtf8),
        Just(Coder::Bool),
        Just(Coder::Varint),
        Just(Coder::Double),
        Just(Coder::GlobalWindow),
        Just(Coder::IntervalWindow),
        Just(Coder::Row(Arc::new(test_schema()))),
        Just(Coder::length_prefix(Coder::Opaque {
            urn: "beam:coder:not_oxbeam:v1".into(),
            payload: Default::default(),
        })),
    ];
    let window = prop_oneof![Just(Coder::GlobalWindow), Just(Coder::IntervalWindow)];
    leaf.prop_recursive(4, 24, 2, move |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(k, v)| Coder::kv(k, v)),
            inner.clone().prop_map(Coder::iterable),
            inner
                .clone()
                .prop_map(|c| Coder::StateBackedIterable(Arc::new(c))),
            inner.clone().prop_map(Coder::length_prefix),
            inner.clone().prop_map(Coder::nullable),
            inner.clone().prop_map(|c| Coder::ShardedKey(Arc::new(c))),
            (inner.clone(), window.clone()).prop_map(|(v, w)| Coder::windowed_value(v, w)),
            (inner.clone(), window.clone()).prop_map(|(k, w)| Coder::Timer {
                key: Arc::new(k),
                window: Arc::new(w),
            }),
            window
                .clone()
                .prop_map(|w| Coder::CustomWindow(Arc::new(w))),
        ]
    })
}

fn arb_timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        any::<i64>(),
        -1_000_000i64..1_000_000,
        Just(Timestamp::MIN.millis()),
        Just(Timestamp::MAX.millis())
    ]
    .prop_map(Timestamp::from_millis)
}

/// A pane as Beam would decode it (the 1-byte form cannot carry every index).
fn arb_pane() -> impl Strategy<Value = PaneInfo> {
    (any::<bool>(), any::<bool>(), 0u8..4, -1i64..100, -1i64..100).prop_map(
        |(f, l, t, index, on_time_index)| {
            let pane = PaneInfo {
                is_first: f,
                is_last: l,
                timing: PaneTiming::from_bits(t),
                index,
                on_time_index,
                is_retraction: false,
            };
            let mut out = Vec::new();
            wire::write_pane(&mut out, &pane);
            wire::read_pane(&mut &out[..]).unwrap()
        },
    )
}

fn arb_window(coder: &Coder) -> BoxedStrategy<BoundedWindow> {
    match coder {
        Coder::GlobalWindow => Just(BoundedWindow::Global).boxed(),
        _ => (arb_timestamp(), any::<i64>())
            .prop_map(|(end, span)| BoundedWindow::Interval {
                start: Timestamp::from_millis(end.millis().wrapping_sub(span)),
                end,
            })
            .boxed(),
    }
}

fn arb_field(ty: &oxbeam_model::coders::FieldType) -> BoxedStrategy<Value> {
    use oxbeam_model::coders::FieldKind as K;
    let non_null: BoxedStrategy<Value> = match &ty.kind {
        K::Byte => (-128i64..128).prop_map(Value::Int).boxed(),
        K::Int16 => (-32768i64..32768).prop_map(Value::Int).boxed(),
        K::Int32 => any::<i32>().prop_map(|i| Value::Int(i.into())).boxed(),
        K::Int64 => any::<i64>().prop_map(Value::Int).boxed(),
        K::Float => any::<f32>().prop_map(Value::Float).boxed(),
        K::Double => any::<f64>().prop_map(Value::Double).boxed(),
        K::String => ".{0,8}".prop_map(Value::String).boxed(),
        K::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
        K::Bytes => proptest::collection::vec(any::<u8>(), 0..8)
            .prop_map(Value::Bytes)
            .boxed(),
        K::Array(e) | K::Iterable(e) => proptest::collection::vec(arb_field(e), 0..4)
            .prop_map(Value::Iterable)
            .boxed(),
        K::Map { key, value } => {
            proptest::collection::vec((arb_field(key), arb_field(value)), 0..4)
                .prop_map(Value::Map)
                .boxed()
        }
        K::Row(schema) => arb_row(schema),
        K::MillisInstant => arb_timestamp().prop_map(Value::Timestamp).boxed(),
        K::Decimal => (any::<i64>(), -5i32..20)
            .prop_map(|(u, s)| Value::Decimal(Decimal::from_i128(u.into(), s)))
            .boxed(),
        K::Logical { representation, .. } => arb_field(representation),
    };
    if ty.nullable {
        prop_oneof![1 => Just(Value::Null), 3 => non_null].boxed()
    } else {
        non_null
    }
}

fn arb_row(schema: &RowSchema) -> BoxedStrategy<Value> {
    let fields: Vec<_> = schema
        .fields
        .iter()
        .map(|f| arb_field(&f.field_type))
        .collect();
    fields.prop_map(Value::Row).boxed()
}

fn arb_value(coder: &Coder) -> BoxedStrategy<Value> {
    match coder {
        Coder::Bytes => proptest::collection::vec(any::<u8>(), 0..16)
            .prop_map(Value::Bytes)
            .boxed(),
        Coder::StringUtf8 => ".{0,12}".prop_map(Value::String).boxed(),
        Coder::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Coder::Varint => any::<i64>().prop_map(Value::Int).boxed(),
        Coder::Double => any::<f64>().prop_map(Value::Double).boxed(),
        Coder::GlobalWindow | Coder::IntervalWindow | Coder::CustomWindow(_) => {
            let w = match coder {
                Coder::CustomWindow(inner) => inner.as_ref(),
                c => c,
            };
            arb_window(w).prop_map(Value::Window).boxed()
        }
        Coder::Kv { key, value } => (arb_value(key), arb_value(value))
            .prop_map(|(k, v)| Value::kv(k, v))
            .boxed(),
        Coder::Iterable(e) => proptest::collection::vec(arb_value(e), 0..4)
            .prop_map(Value::Iterable)
            .boxed(),
        Coder::StateBackedIterable(e) => prop_oneof![
            proptest::collection::vec(arb_value(e), 0..4).prop_map(Value::Iterable),
            (
                proptest::collection::vec(arb_value(e), 0..3),
                proptest::collection::vec(any::<u8>(), 0..6)
            )
                .prop_map(|(prefix, state_token)| Value::StateBackedIterable {
                    prefix,
                    state_token
                }),
        ]
        .boxed(),
        Coder::LengthPrefix(inner) => match inner.as_ref() {
            Coder::Opaque { .. } => proptest::collection::vec(any::<u8>(), 0..16)
                .prop_map(Value::Bytes)
                .boxed(),
            inner => arb_value(inner),
        },
        Coder::Nullable(inner) => {
            prop_oneof![1 => Just(Value::Null), 3 => arb_value(inner)].boxed()
        }
        Coder::ShardedKey(key) => (proptest::collection::vec(any::<u8>(), 0..6), arb_value(key))
            .prop_map(|(shard_id, key)| Value::ShardedKey {
                shard_id,
                key: Box::new(key),
            })
            .boxed(),
        Coder::WindowedValue { value, window } => (
            arb_value(value),
            arb_timestamp(),
            proptest::collection::vec(arb_window(window).prop_map(Value::Window), 0..3),
            arb_pane(),
        )
            .prop_map(|(value, timestamp, windows, pane)| {
                Value::WindowedValue(Box::new(WindowedValue {
                    value,
                    timestamp,
                    windows,
                    pane,
                }))
            })
            .boxed(),
        Coder::Timer { key, window } => (
            arb_value(key),
            ".{0,6}",
            proptest::collection::vec(arb_window(window).prop_map(Value::Window), 0..3),
            proptest::option::of((arb_timestamp(), arb_timestamp(), arb_pane())),
        )
            .prop_map(|(user_key, tag, windows, firing)| {
                Value::Timer(Box::new(Timer {
                    user_key,
                    dynamic_timer_tag: tag,
                    windows,
                    firing: firing.map(|(fire_timestamp, hold_timestamp, pane)| TimerFiring {
                        fire_timestamp,
                        hold_timestamp,
                        pane,
                    }),
                }))
            })
            .boxed(),
        Coder::Row(schema) => arb_row(schema),
        c => panic!("no value strategy for {c:?}"),
    }
}

fn arb_coder_and_value() -> impl Strategy<Value = (Coder, Value)> {
    arb_coder().prop_flat_map(|c| {
        let v = arb_value(&c);
        (Just(c), v)
    })
}

fn arb_context() -> impl Strategy<Value = Context> {
    prop_oneof![Just(Context::Nested), Just(Context::Outer)]
}

// ------------------------------------------------------------ properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn values_round_trip((coder, value) in arb_coder_and_value(), ctx in arb_context()) {
        let mut out = vec![0xAB]; // encoding appends; earlier bytes stay
        coder.encode(&value, &mut out, ctx).unwrap();
        let encoded = &out[1..];
        let mut input = encoded;
        prop_assert_eq!(coder.decode(&mut input, ctx).unwrap(), value.clone());
        prop_assert!(input.is_empty());
        let mut input = encoded;
        coder.skip(&mut input, ctx).unwrap();
        prop_assert!(input.is_empty());

        if ctx == Context::Nested {
            // A nested value knows its own end.
            let mut followed = encoded.to_vec();
            followed.extend_from_slice(b"\xFFtail");
            let mut input = &followed[..];
            prop_assert_eq!(coder.decode(&mut input, ctx).unwrap(), value.clone());
            prop_assert_eq!(input, b"\xFFtail");
            let mut input = &followed[..];
            prop_assert_eq!(coder.read_encoded(&mut input, ctx).unwrap(), encoded);
        }

        // Truncations fail cleanly, with an offset inside the input.
        for cut in 0..encoded.len().min(24) {
            let mut input = &encoded[..cut];
            if let Err(e) = coder.decode(&mut input, Context::Nested) {
                prop_assert!(e.offset().is_none_or(|o| o <= cut), "{e}");
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(coder in arb_coder(), bytes in proptest::collection::vec(any::<u8>(), 0..64), ctx in arb_context()) {
        let mut input = &bytes[..];
        let decoded = coder.decode(&mut input, ctx);
        let decoded_rest = input.len();
        let mut input = &bytes[..];
        let skipped = coder.skip(&mut input, ctx);
        if decoded.is_ok() {
            // skip checks less than decode (no UTF-8), so it succeeds too.
            prop_assert!(skipped.is_ok());
            prop_assert_eq!(input.len(), decoded_rest);
        }
        if let Err(e) = decoded {
            prop_assert!(e.offset().is_none_or(|o| o <= bytes.len()));
        }
        let mut input = &bytes[..];
        let _ = decode_windowed(&mut input, WindowCoder::Interval, ctx);
        let mut input = &bytes[..];
        let _ = decode_windowed_with(&mut input, WindowCoder::Global, &coder, ctx);
    }

    #[test]
    fn fast_path_matches_dynamic_coder(
        timestamp in arb_timestamp(),
        windows in prop_oneof![
            Just(vec![BoundedWindow::Global]),
            proptest::collection::vec(arb_window(&Coder::IntervalWindow), 0..3),
        ],
        pane in arb_pane(),
        value in proptest::collection::vec(any::<u8>(), 0..200),
        ctx in arb_context(),
    ) {
        let global = windows == [BoundedWindow::Global];
        let window_coder = if global { WindowCoder::Global } else { WindowCoder::Interval };
        let header = WindowedValueHeader { timestamp, windows: Windows::from_vec(windows.clone()), pane };
        let mut out = Vec::new();
        encode_windowed_bytes(&header, &value, ctx, &mut out);

        let mut input = &out[..];
        let r = decode_windowed(&mut input, window_coder, ctx).unwrap();
        prop_assert!(input.is_empty());
        prop_assert_eq!(&r.header, &header);
        prop_assert_eq!(r.value, &value[..]);

        let dynamic = Coder::windowed_value(
            Coder::Bytes,
            if global { Coder::GlobalWindow } else { Coder::IntervalWindow },
        );
        let expected = Value::WindowedValue(Box::new(WindowedValue {
            value: Value::Bytes(value.clone()),
            timestamp,
            windows: windows.into_iter().map(Value::Window).collect(),
            pane,
        }));
        let mut dyn_out = Vec::new();
        dynamic.encode(&expected, &mut dyn_out, ctx).unwrap();
        prop_assert_eq!(&dyn_out, &out);
        prop_assert_eq!(dynamic.decode(&mut &out[..], ctx).unwrap(), expected);
    }
}

proptest! {
    /// Coder payloads come from remote SDKs too: any bytes give a coder or an error.
    #[test]
    fn random_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        use oxbeam_model::urns::standard_coders as urn;
        let _ = Coder::from_parts(urn::ROW, &payload, vec![]);
        let _ = Coder::from_parts(urn::PARAM_WINDOWED_VALUE, &payload, vec![Coder::Varint, Coder::IntervalWindow]);
        let _ = Coder::from_parts(urn::PARAM_WINDOWED_VALUE, &payload, vec![Coder::Varint, Coder::GlobalWindow]);
    }
}

// ------------------------------------------------------------ hostile input

/// Every count or length a hostile sender can inflate, at its maximum.
#[test]
fn huge_lengths_and_counts_fail_fast() {
    let max_varint = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    let cases: Vec<(Coder, Vec<u8>)> = vec![
        (Coder::Bytes, max_varint.to_vec()),
        (Coder::StringUtf8, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F].to_vec()),
        (
            Coder::iterable(Coder::Varint),
            [0x7F, 0xFF, 0xFF, 0xFF].to_vec(),
        ),
        (
            Coder::iterable(Coder::GlobalWindow),
            [0x7F, 0xFF, 0xFF, 0xFF].to_vec(),
        ),
        (
            Coder::iterable(Coder::kv(Coder::GlobalWindow, Coder::GlobalWindow)),
            [0x7F, 0xFF, 0xFF, 0xFF].to_vec(),
        ),
        (
            Coder::iterable(Coder::GlobalWindow),
            [
                &[0xFF, 0xFF, 0xFF, 0xFF][..],
                &[0xFF, 0xFF, 0xFF, 0xFF, 0x07],
            ]
            .concat(),
        ),
        (
            Coder::StateBackedIterable(Arc::new(Coder::Bytes)),
            [&[0xFF, 0xFF, 0xFF, 0xFF][..], &max_varint, &max_varint].concat(),
        ),
        (Coder::length_prefix(Coder::Varint), max_varint.to_vec()),
        (
            Coder::Row(Arc::new(test_schema())),
            [&[0x10][..], &max_varint].concat(),
        ),
        (
            Coder::windowed_value(Coder::Bytes, Coder::GlobalWindow),
            [&[0x80, 0, 0, 0, 0, 0, 0, 0][..], &[0x7F, 0xFF, 0xFF, 0xFF]].concat(),
        ),
    ];
    for (coder, bytes) in cases {
        for ctx in [Context::Nested, Context::Outer] {
            let started = std::time::Instant::now();
            let r = coder.decode(&mut &bytes[..], ctx);
            let s = coder.skip(&mut &bytes[..], ctx);
            // In the outer context bytes and strings own the whole input, so
            // there is no length to inflate.
            if ctx == Context::Nested || !matches!(coder, Coder::Bytes | Coder::StringUtf8) {
                assert!(r.is_err(), "{coder:?} decoded {bytes:?} to {r:?}");
                assert!(s.is_err());
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "{coder:?} took {:?}",
                started.elapsed()
            );
        }
    }
    // A map announcing 2^31-1 entries inside a row.
    let schema = test_schema();
    let mut row = vec![schema.fields.len() as u8];
    let map_at = schema.field_index("map").unwrap();
    // Every field but the map is null.
    let mut bitmap = vec![0u8; schema.fields.len().div_ceil(8)];
    for i in (0..schema.fields.len()).filter(|&i| i != map_at) {
        bitmap[i / 8] |= 1 << (i % 8);
    }
    row.push(bitmap.len() as u8);
    row.extend_from_slice(&bitmap);
    row.extend_from_slice(&[0x7F, 0xFF, 0xFF, 0xFF]);
    let err = Coder::Row(Arc::new(schema))
        .decode(&mut &row[..], Context::Nested)
        .unwrap_err();
    assert!(
        matches!(err, CoderError::LengthExceedsInput { .. }),
        "{err}"
    );
}

/// Elements that take no bytes cannot multiply through nesting: the element
/// budget covers the whole decode, not one iterable.
#[test]
fn zero_width_elements_share_one_budget() {
    let coder = Coder::iterable(Coder::iterable(Coder::GlobalWindow));
    let mut bytes = 64i32.to_be_bytes().to_vec();
    for _ in 0..64 {
        bytes.extend_from_slice(&((1 << 20) - 1i32).to_be_bytes());
    }
    let started = std::time::Instant::now();
    let err = coder.decode(&mut &bytes[..], Context::Nested).unwrap_err();
    assert!(matches!(err, CoderError::TooManyElements { .. }), "{err}");
    assert!(coder.skip(&mut &bytes[..], Context::Nested).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(2));

    // Rows of a wide schema that encode no fields are two bytes each.
    use oxbeam_model::urns::standard_coders as urn;
    use prost::Message;
    let schema = pipeline::Schema {
        fields: (0..10_000)
            .map(|i| field(&format!("f{i}"), atomic(pipeline::AtomicType::Int64, true)))
            .collect(),
        id: "wide".into(),
        ..Default::default()
    };
    let row = Coder::from_parts(urn::ROW, &schema.encode_to_vec(), vec![]).unwrap();
    let coder = Coder::iterable(row);
    let mut bytes = 100_000i32.to_be_bytes().to_vec();
    for _ in 0..100_000 {
        bytes.extend_from_slice(&[0, 0]);
    }
    let err = coder.decode(&mut &bytes[..], Context::Nested).unwrap_err();
    assert!(matches!(err, CoderError::TooManyElements { .. }), "{err}");
}

#[test]
fn unknown_coders_need_a_length_prefix() {
    let comps = pipeline::Components {
        coders: [
            (
                "unknown".to_string(),
                pipeline::Coder {
                    spec: Some(pipeline::FunctionSpec {
                        urn: "beam:coder:pickled_python:v1".into(),
                        payload: Default::default(),
                    }),
                    component_coder_ids: vec![],
                },
            ),
            (
                "kv".to_string(),
                pipeline::Coder {
                    spec: Some(pipeline::FunctionSpec {
                        urn: oxbeam_model::urns::standard_coders::KV.into(),
                        payload: Default::default(),
                    }),
                    component_coder_ids: vec!["unknown".into(), "unknown".into()],
                },
            ),
        ]
        .into(),
        ..Default::default()
    };
    let kv = Coder::from_proto("kv", &comps).unwrap();
    assert!(!kv.is_self_delimiting());
    let err = kv.decode(&mut &b"abc"[..], Context::Outer).unwrap_err();
    assert!(
        matches!(&err, CoderError::OpaqueNested { urn } if urn == "beam:coder:pickled_python:v1")
    );
    // The value (last, outer) part is readable; wrapped in length_prefix, all is.
    let lp = Coder::length_prefix(Coder::from_proto("unknown", &comps).unwrap());
    assert_eq!(
        lp.decode(&mut &b"\x02ab"[..], Context::Nested).unwrap(),
        Value::Bytes(b"ab".to_vec())
    );
}

#[test]
fn cyclic_and_missing_coder_specs_are_errors() {
    let coder = |urn: &str, comps: &[&str]| pipeline::Coder {
        spec: Some(pipeline::FunctionSpec {
            urn: urn.into(),
            payload: Default::default(),
        }),
        component_coder_ids: comps.iter().map(|s| s.to_string()).collect(),
    };
    use oxbeam_model::urns::standard_coders as urn;
    let comps = pipeline::Components {
        coders: [
            ("a".to_string(), coder(urn::ITERABLE, &["b"])),
            ("b".to_string(), coder(urn::NULLABLE, &["a"])),
            ("c".to_string(), coder(urn::KV, &["a"])),
            ("d".to_string(), coder(urn::LENGTH_PREFIX, &["nope"])),
        ]
        .into(),
        ..Default::default()
    };
    insta::assert_snapshot!(
        Coder::from_proto("a", &comps).unwrap_err(),
        @r#"bad coder beam:coder:iterable:v1: coder "a" contains itself"#
    );
    insta::assert_snapshot!(
        Coder::from_proto("d", &comps).unwrap_err(),
        @r#"coder id "nope" is not in the pipeline components"#
    );
    // A kv with one component is malformed before its cycle is reached.
    assert!(Coder::from_proto("c", &comps).is_err());
}

/// Null bits follow schema field order even when encoding positions reorder
/// the fields. Expected bytes from apache-beam 2.77's Python `RowCoder`.
#[test]
fn row_null_bitmap_with_encoding_positions_matches_python() {
    use oxbeam_model::urns::standard_coders as urn;
    let schema = b"\n\x0b\n\x01a\x1a\x04\x08\x01\x10\x07(\x01\n\x07\n\x01b\x1a\x02\x10\x04\n\x0b\n\x01c\x1a\x04\x08\x01\x10\x07(\x02\x12\x01x \x01";
    let coder = Coder::from_parts(urn::ROW, schema, vec![]).unwrap();
    for (fields, bytes) in [
        (
            vec![Value::Null, Value::Int(5), Value::String("z".into())],
            &b"\x03\x01\x01\x05\x01z"[..],
        ),
        (
            vec![Value::String("y".into()), Value::Int(5), Value::Null],
            &b"\x03\x01\x04\x05\x01y"[..],
        ),
    ] {
        let row = Value::Row(fields);
        let mut out = Vec::new();
        coder.encode(&row, &mut out, Context::Nested).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(coder.decode(&mut &out[..], Context::Nested).unwrap(), row);
    }
}

// ------------------------------------------------------------ error messages

fn decode_err(coder: &Coder, bytes: &[u8], ctx: Context) -> CoderError {
    coder.decode(&mut &bytes[..], ctx).unwrap_err()
}

#[test]
fn error_messages() {
    insta::assert_snapshot!(
        decode_err(&Coder::Varint, &[0x80, 0x80], Context::Nested),
        @"truncated input at byte 0: needed 3 bytes, 2 available"
    );
    insta::assert_snapshot!(
        decode_err(&Coder::Varint, &[0xFF; 11], Context::Nested),
        @"invalid varint at byte 0: longer than 10 bytes or overflows 64 bits"
    );
    insta::assert_snapshot!(
        decode_err(&Coder::kv(Coder::Bytes, Coder::StringUtf8), b"\x01a\x04ok\xC3\x28", Context::Nested),
        @"invalid UTF-8 at byte 5: invalid utf-8 sequence of 1 bytes from index 2"
    );
    insta::assert_snapshot!(
        decode_err(&Coder::iterable(Coder::Bytes), b"\x00\x00\x00\x02\x01a\x05ab", Context::Nested),
        @"length 5 at byte 6 exceeds the 2 bytes remaining"
    );
    insta::assert_snapshot!(
        decode_err(&Coder::iterable(Coder::Varint), b"\x7F\xFF\xFF\xFF\x01", Context::Nested),
        @"length 2147483647 at byte 0 exceeds the 1 bytes remaining"
    );
    insta::assert_snapshot!(
        decode_err(&Coder::iterable(Coder::GlobalWindow), b"\x7F\xFF\xFF\xFF", Context::Nested),
        @"2147483647 more elements at byte 0 exceed the limit of 1048640 for this input"
    );
    insta::assert_snapshot!(
        decode_err(&Coder::nullable(Coder::Bool), b"\x01\x02", Context::Nested),
        @"invalid bool at byte 1: byte 0x02 is neither 0 nor 1"
    );
    insta::assert_snapshot!(
        decode_err(&Coder::length_prefix(Coder::kv(Coder::Varint, Coder::Varint)), b"\x02\x01\x80", Context::Nested),
        @"truncated input at byte 2: needed 2 bytes, 1 available"
    );
    insta::assert_snapshot!(
        decode_err(
            &Coder::Opaque { urn: "beam:coder:pickled_python:v1".into(), payload: Default::default() },
            b"x",
            Context::Nested
        ),
        @"coder beam:coder:pickled_python:v1 is not known to Oxbeam, so it cannot be read in the nested context; wrap it in beam:coder:length_prefix:v1"
    );
    let mut out = Vec::new();
    insta::assert_snapshot!(
        Coder::kv(Coder::Bytes, Coder::Varint)
            .encode(&Value::kv(Value::Bytes(vec![]), Value::String("x".into())), &mut out, Context::Nested)
            .unwrap_err(),
        @"cannot encode string with beam:coder:varint:v1: beam:coder:varint:v1 does not encode a string value"
    );
    assert!(out.is_empty(), "failed encodes leave the buffer as it was");
}
