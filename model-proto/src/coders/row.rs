//! Schema rows (`beam:coder:row:v1`): [`RowSchema`] and the row encoding.
//!
//! A row is: varint field count; varint length and bytes of a little-endian
//! bitmap of null fields (bit = schema field index); then each non-null field
//! in encoding-position order, nested. Field encodings: `BYTE` 1 byte,
//! `INT16` 2 bytes big-endian, `INT32` 32-bit varint, `INT64` varint, `FLOAT`
//! and `DOUBLE` big-endian IEEE-754, `STRING`/`BYTES` length-prefixed,
//! `BOOLEAN` 1 byte, `ARRAY`/`ITERABLE` as `beam:coder:iterable:v1`, `MAP` a
//! 4-byte count then keys and values, `ROW` a nested row, logical types as
//! their representation — except `millis_instant` (8-byte timestamp, like
//! Java's `InstantCoder`) and `decimal` (Java's `BigDecimalCoder`: varint
//! scale, length-prefixed two's-complement unscaled value). Nullable types
//! inside arrays, maps and logical types carry a 0/1 null byte.

use std::sync::Arc;

use super::coder::{Budget, MAX_CODER_DEPTH, check_count, read_iterable};
use super::error::{CoderError, Result};
use super::value::{Decimal, Value};
use super::wire;
use crate::pipeline;
use crate::pipeline::field_type::TypeInfo;
use crate::urns::logical_types;

/// A row schema, compiled from `pipeline::Schema` for encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct RowSchema {
    /// The schema's id (a UUID in Beam).
    pub id: String,
    /// Fields in schema order; [`Value::Row`] values follow this order.
    pub fields: Vec<RowField>,
    /// `encoding_order[i]` is the index in `fields` of the i-th encoded field.
    encoding_order: Vec<usize>,
}

/// A named, typed field of a [`RowSchema`].
#[derive(Clone, Debug, PartialEq)]
pub struct RowField {
    /// Field name.
    pub name: String,
    /// Field type.
    pub field_type: FieldType,
}

/// A schema type and whether it admits null.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldType {
    /// Whether the value may be [`Value::Null`].
    pub nullable: bool,
    /// The type.
    pub kind: FieldKind,
}

/// The schema types Oxbeam encodes, with the [`Value`] each takes.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldKind {
    /// `BYTE`: [`Value::Int`] in `-128..=127`.
    Byte,
    /// `INT16`: [`Value::Int`].
    Int16,
    /// `INT32`: [`Value::Int`].
    Int32,
    /// `INT64`: [`Value::Int`].
    Int64,
    /// `FLOAT`: [`Value::Float`].
    Float,
    /// `DOUBLE`: [`Value::Double`].
    Double,
    /// `STRING`: [`Value::String`].
    String,
    /// `BOOLEAN`: [`Value::Bool`].
    Boolean,
    /// `BYTES`: [`Value::Bytes`].
    Bytes,
    /// `ARRAY`: [`Value::Iterable`].
    Array(Box<FieldType>),
    /// `ITERABLE`: [`Value::Iterable`].
    Iterable(Box<FieldType>),
    /// `MAP`: [`Value::Map`].
    Map {
        /// Key type.
        key: Box<FieldType>,
        /// Value type.
        value: Box<FieldType>,
    },
    /// Nested `ROW`: [`Value::Row`].
    Row(Arc<RowSchema>),
    /// Logical type `beam:logical_type:millis_instant:v1`: [`Value::Timestamp`].
    MillisInstant,
    /// Logical type `beam:logical_type:decimal:v1`: [`Value::Decimal`].
    Decimal,
    /// Any other logical type, encoded (and valued) as its representation.
    Logical {
        /// Logical type URN.
        urn: String,
        /// The representation type.
        representation: Box<FieldType>,
    },
}

impl RowSchema {
    /// Compiles a schema proto.
    ///
    /// # Errors
    /// [`CoderError::BadSchema`] for fields without a type, unknown atomic
    /// types, logical types without a representation (other than
    /// `millis_instant` and `decimal`), duplicate encoding positions, or
    /// nesting deeper than [`MAX_CODER_DEPTH`].
    pub fn from_proto(schema: &pipeline::Schema) -> Result<Self> {
        schema_from_proto(schema, 0)
    }

    /// Field indices in encoding order (schema order unless the schema sets
    /// encoding positions).
    pub fn encoding_order(&self) -> &[usize] {
        &self.encoding_order
    }

    /// The index of the field called `name`.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

fn schema_from_proto(schema: &pipeline::Schema, depth: usize) -> Result<RowSchema> {
    if depth > MAX_CODER_DEPTH {
        return Err(CoderError::BadSchema(format!(
            "schema {:?} nests deeper than {MAX_CODER_DEPTH}",
            schema.id
        )));
    }
    let fields = schema
        .fields
        .iter()
        .map(|f| {
            let ty = f
                .r#type
                .as_ref()
                .ok_or_else(|| CoderError::BadSchema(format!("field {:?} has no type", f.name)))?;
            Ok(RowField {
                name: f.name.clone(),
                field_type: field_type_from_proto(ty, depth + 1)
                    .map_err(|e| prefix_schema_error(e, &f.name))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut encoding_order: Vec<usize> = (0..fields.len()).collect();
    if schema.encoding_positions_set {
        let positions: Vec<i32> = schema.fields.iter().map(|f| f.encoding_position).collect();
        encoding_order.sort_by_key(|&i| positions[i]);
        if encoding_order
            .windows(2)
            .any(|w| positions[w[0]] == positions[w[1]])
        {
            return Err(CoderError::BadSchema(format!(
                "schema {:?} has duplicate encoding positions",
                schema.id
            )));
        }
    }
    Ok(RowSchema {
        id: schema.id.clone(),
        fields,
        encoding_order,
    })
}

fn prefix_schema_error(e: CoderError, field: &str) -> CoderError {
    match e {
        CoderError::BadSchema(m) => CoderError::BadSchema(format!("field {field:?}: {m}")),
        e => e,
    }
}

fn field_type_from_proto(ty: &pipeline::FieldType, depth: usize) -> Result<FieldType> {
    if depth > MAX_CODER_DEPTH {
        return Err(CoderError::BadSchema(format!(
            "types nest deeper than {MAX_CODER_DEPTH}"
        )));
    }
    let sub = |t: &Option<Box<pipeline::FieldType>>, what: &str| -> Result<Box<FieldType>> {
        let t = t
            .as_deref()
            .ok_or_else(|| CoderError::BadSchema(format!("{what} type missing")))?;
        field_type_from_proto(t, depth + 1).map(Box::new)
    };
    let kind = match &ty.type_info {
        None => {
            return Err(CoderError::BadSchema(
                "field type has no type_info".to_string(),
            ));
        }
        Some(TypeInfo::AtomicType(a)) => match pipeline::AtomicType::try_from(*a) {
            Ok(pipeline::AtomicType::Byte) => FieldKind::Byte,
            Ok(pipeline::AtomicType::Int16) => FieldKind::Int16,
            Ok(pipeline::AtomicType::Int32) => FieldKind::Int32,
            Ok(pipeline::AtomicType::Int64) => FieldKind::Int64,
            Ok(pipeline::AtomicType::Float) => FieldKind::Float,
            Ok(pipeline::AtomicType::Double) => FieldKind::Double,
            Ok(pipeline::AtomicType::String) => FieldKind::String,
            Ok(pipeline::AtomicType::Boolean) => FieldKind::Boolean,
            Ok(pipeline::AtomicType::Bytes) => FieldKind::Bytes,
            Ok(pipeline::AtomicType::Unspecified) | Err(_) => {
                return Err(CoderError::BadSchema(format!(
                    "unsupported atomic type {a}"
                )));
            }
        },
        Some(TypeInfo::ArrayType(a)) => FieldKind::Array(sub(&a.element_type, "array element")?),
        Some(TypeInfo::IterableType(a)) => {
            FieldKind::Iterable(sub(&a.element_type, "iterable element")?)
        }
        Some(TypeInfo::MapType(m)) => FieldKind::Map {
            key: sub(&m.key_type, "map key")?,
            value: sub(&m.value_type, "map value")?,
        },
        Some(TypeInfo::RowType(r)) => {
            let schema = r
                .schema
                .as_ref()
                .ok_or_else(|| CoderError::BadSchema("row type without schema".to_string()))?;
            FieldKind::Row(Arc::new(schema_from_proto(schema, depth + 1)?))
        }
        Some(TypeInfo::LogicalType(l)) => {
            if l.urn == logical_types::MILLIS_INSTANT {
                FieldKind::MillisInstant
            } else if l.urn == logical_types::DECIMAL {
                FieldKind::Decimal
            } else {
                let representation = sub(
                    &l.representation,
                    &format!("representation of logical type {}", l.urn),
                )?;
                FieldKind::Logical {
                    urn: l.urn.clone(),
                    representation,
                }
            }
        }
    };
    Ok(FieldType {
        nullable: ty.nullable,
        kind,
    })
}

fn mismatch(kind: &FieldKind, value: &Value, detail: impl Into<String>) -> CoderError {
    CoderError::ValueMismatch {
        coder: format!("row field of type {}", kind_name(kind)),
        found: value.kind(),
        detail: detail.into(),
    }
}

fn kind_name(kind: &FieldKind) -> &'static str {
    match kind {
        FieldKind::Byte => "BYTE",
        FieldKind::Int16 => "INT16",
        FieldKind::Int32 => "INT32",
        FieldKind::Int64 => "INT64",
        FieldKind::Float => "FLOAT",
        FieldKind::Double => "DOUBLE",
        FieldKind::String => "STRING",
        FieldKind::Boolean => "BOOLEAN",
        FieldKind::Bytes => "BYTES",
        FieldKind::Array(_) => "ARRAY",
        FieldKind::Iterable(_) => "ITERABLE",
        FieldKind::Map { .. } => "MAP",
        FieldKind::Row(_) => "ROW",
        FieldKind::MillisInstant => "millis_instant",
        FieldKind::Decimal => "decimal",
        FieldKind::Logical { .. } => "logical",
    }
}

// ---------------------------------------------------------------- encode

pub(crate) fn encode_row(schema: &RowSchema, values: &[Value], out: &mut Vec<u8>) -> Result<()> {
    if values.len() != schema.fields.len() {
        return Err(CoderError::ValueMismatch {
            coder: format!("row schema {:?}", schema.id),
            found: "row",
            detail: format!("{} values for {} fields", values.len(), schema.fields.len()),
        });
    }
    wire::write_varint_u64(out, values.len() as u64);
    // Bitmap of null fields, trailing zero bytes dropped (Java's BitSet form).
    let last_null = values.iter().rposition(|v| matches!(v, Value::Null));
    match last_null {
        None => out.push(0),
        Some(last) => {
            let len = last / 8 + 1;
            wire::write_varint_u64(out, len as u64);
            let start = out.len();
            out.resize(start + len, 0);
            for (i, v) in values.iter().enumerate().take(last + 1) {
                if matches!(v, Value::Null) {
                    out[start + i / 8] |= 1 << (i % 8);
                }
            }
        }
    }
    for &i in &schema.encoding_order {
        let (field, v) = (&schema.fields[i], &values[i]);
        if matches!(v, Value::Null) {
            if !field.field_type.nullable {
                return Err(CoderError::ValueMismatch {
                    coder: format!("row schema {:?}", schema.id),
                    found: "null",
                    detail: format!("field {:?} is not nullable", field.name),
                });
            }
            continue;
        }
        encode_nonnull(&field.field_type.kind, v, out)?;
    }
    Ok(())
}

fn encode_field(ty: &FieldType, v: &Value, out: &mut Vec<u8>) -> Result<()> {
    if ty.nullable {
        if matches!(v, Value::Null) {
            out.push(0);
            return Ok(());
        }
        out.push(1);
    }
    encode_nonnull(&ty.kind, v, out)
}

fn int_in(kind: &FieldKind, v: &Value, lo: i64, hi: i64) -> Result<i64> {
    match v {
        Value::Int(i) if (lo..=hi).contains(i) => Ok(*i),
        Value::Int(i) => Err(mismatch(kind, v, format!("{i} is out of range"))),
        _ => Err(mismatch(kind, v, "expected an int")),
    }
}

fn encode_nonnull(kind: &FieldKind, v: &Value, out: &mut Vec<u8>) -> Result<()> {
    match (kind, v) {
        (FieldKind::Byte, _) => {
            out.push(int_in(kind, v, i8::MIN.into(), i8::MAX.into())? as i8 as u8)
        }
        (FieldKind::Int16, _) => wire::write_i16_be(
            out,
            int_in(kind, v, i16::MIN.into(), i16::MAX.into())? as i16,
        ),
        (FieldKind::Int32, _) => wire::write_varint_i32(
            out,
            int_in(kind, v, i32::MIN.into(), i32::MAX.into())? as i32,
        ),
        (FieldKind::Int64, Value::Int(i)) => wire::write_varint_i64(out, *i),
        (FieldKind::Float, Value::Float(f)) => wire::write_f32_be(out, *f),
        (FieldKind::Double, Value::Double(d)) => wire::write_f64_be(out, *d),
        (FieldKind::String, Value::String(s)) => wire::write_length_prefixed(out, s.as_bytes()),
        (FieldKind::Boolean, Value::Bool(b)) => wire::write_bool(out, *b),
        (FieldKind::Bytes, Value::Bytes(b)) => wire::write_length_prefixed(out, b),
        (FieldKind::Array(elem) | FieldKind::Iterable(elem), Value::Iterable(items)) => {
            let count =
                i32::try_from(items.len()).map_err(|_| mismatch(kind, v, "too many elements"))?;
            wire::write_i32_be(out, count);
            for item in items {
                encode_field(elem, item, out)?;
            }
        }
        (FieldKind::Map { key, value }, Value::Map(entries)) => {
            let count =
                i32::try_from(entries.len()).map_err(|_| mismatch(kind, v, "too many entries"))?;
            wire::write_i32_be(out, count);
            for (k, val) in entries {
                encode_field(key, k, out)?;
                encode_field(value, val, out)?;
            }
        }
        (FieldKind::Row(schema), Value::Row(fields)) => encode_row(schema, fields, out)?,
        (FieldKind::MillisInstant, Value::Timestamp(ts)) => wire::write_timestamp(out, *ts),
        (FieldKind::Decimal, Value::Decimal(d)) => {
            wire::write_varint_i32(out, d.scale);
            wire::write_length_prefixed(out, &d.unscaled);
        }
        (FieldKind::Logical { representation, .. }, _) => encode_field(representation, v, out)?,
        _ => {
            return Err(mismatch(
                kind,
                v,
                format!("expected a {} value", kind_name(kind)),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- decode

/// Reads the field count and null bitmap.
fn read_header<'a>(input: &mut &'a [u8]) -> Result<(u64, &'a [u8])> {
    let count = wire::read_varint_u64(input)?;
    let nulls = wire::read_length_prefixed(input)?;
    Ok((count, nulls))
}

#[inline]
fn is_null(bitmap: &[u8], i: usize) -> bool {
    bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

pub(crate) fn decode_row(
    schema: &RowSchema,
    input: &mut &[u8],
    budget: &mut Budget,
) -> Result<Value> {
    let before = *input;
    let (count, nulls) = read_header(input)?;
    budget
        .charge(schema.fields.len() as u64)
        .inspect_err(|_| *input = before)?;
    let mut values = vec![Value::Null; schema.fields.len()];
    // Fields beyond the encoded count (a newer schema) stay null; encoded
    // fields beyond the schema (an older one) are not read, as in Beam.
    let present = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(schema.fields.len());
    for &i in &schema.encoding_order[..present] {
        if !is_null(nulls, i) {
            values[i] = decode_nonnull(&schema.fields[i].field_type.kind, input, budget)?;
        }
    }
    Ok(Value::Row(values))
}

pub(crate) fn skip_row(schema: &RowSchema, input: &mut &[u8], budget: &mut Budget) -> Result<()> {
    let before = *input;
    let (count, nulls) = read_header(input)?;
    budget
        .charge(schema.fields.len() as u64)
        .inspect_err(|_| *input = before)?;
    let present = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(schema.fields.len());
    for &i in &schema.encoding_order[..present] {
        if !is_null(nulls, i) {
            skip_nonnull(&schema.fields[i].field_type.kind, input, budget)?;
        }
    }
    Ok(())
}

fn read_present(input: &mut &[u8]) -> Result<bool> {
    match input.first() {
        Some(0) | Some(1) => Ok(wire::read_u8(input)? == 1),
        Some(b) => Err(CoderError::invalid(
            "nullable marker",
            format!("byte {b:#04x} is neither 0 (null) nor 1 (present)"),
        )),
        None => wire::read_u8(input).map(|_| false),
    }
}

fn decode_field(ty: &FieldType, input: &mut &[u8], budget: &mut Budget) -> Result<Value> {
    if ty.nullable && !read_present(input)? {
        return Ok(Value::Null);
    }
    decode_nonnull(&ty.kind, input, budget)
}

fn skip_field(ty: &FieldType, input: &mut &[u8], budget: &mut Budget) -> Result<()> {
    if ty.nullable && !read_present(input)? {
        return Ok(());
    }
    skip_nonnull(&ty.kind, input, budget)
}

/// Smallest encoding of a value of `ty` (every schema type takes a byte).
const MIN_FIELD_LEN: usize = 1;

fn read_map_count(input: &mut &[u8], budget: &mut Budget) -> Result<usize> {
    let before = *input;
    let count = wire::read_i32_be(input)?;
    let Ok(count) = usize::try_from(count) else {
        *input = before;
        return Err(CoderError::invalid(
            "map size",
            format!("{count} is negative"),
        ));
    };
    check_count(input, count as u64, 2 * MIN_FIELD_LEN, budget).inspect_err(|_| *input = before)?;
    Ok(count)
}

fn read_decimal_scale(input: &mut &[u8]) -> Result<i32> {
    let before = *input;
    let raw = wire::read_varint_u64(input)?;
    // Java writes the scale as a 32-bit varint, Python as a 64-bit one.
    match u32::try_from(raw) {
        Ok(v) => Ok(v as i32),
        Err(_) => i32::try_from(raw as i64).map_err(|_| {
            *input = before;
            CoderError::invalid("decimal scale", format!("{} overflows 32 bits", raw as i64))
        }),
    }
}

fn decode_nonnull(kind: &FieldKind, input: &mut &[u8], budget: &mut Budget) -> Result<Value> {
    Ok(match kind {
        FieldKind::Byte => Value::Int(i64::from(wire::read_u8(input)? as i8)),
        FieldKind::Int16 => Value::Int(i64::from(wire::read_i16_be(input)?)),
        FieldKind::Int32 => Value::Int(i64::from(wire::read_varint_i32(input)?)),
        FieldKind::Int64 => Value::Int(wire::read_varint_i64(input)?),
        FieldKind::Float => Value::Float(wire::read_f32_be(input)?),
        FieldKind::Double => Value::Double(wire::read_f64_be(input)?),
        FieldKind::String => Value::String(wire::read_str(input)?.to_owned()),
        FieldKind::Boolean => Value::Bool(wire::read_bool(input)?),
        FieldKind::Bytes => Value::Bytes(wire::read_length_prefixed(input)?.to_vec()),
        FieldKind::Array(elem) | FieldKind::Iterable(elem) => {
            let mut items = Vec::new();
            read_iterable(input, MIN_FIELD_LEN, false, budget, |i, budget| {
                items.push(decode_field(elem, i, budget)?);
                Ok(())
            })?;
            Value::Iterable(items)
        }
        FieldKind::Map { key, value } => {
            let count = read_map_count(input, budget)?;
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let k = decode_field(key, input, budget)?;
                let v = decode_field(value, input, budget)?;
                entries.push((k, v));
            }
            Value::Map(entries)
        }
        FieldKind::Row(schema) => decode_row(schema, input, budget)?,
        FieldKind::MillisInstant => Value::Timestamp(wire::read_timestamp(input)?),
        FieldKind::Decimal => {
            let scale = read_decimal_scale(input)?;
            let unscaled = wire::read_length_prefixed(input)?.to_vec();
            Value::Decimal(Decimal { unscaled, scale })
        }
        FieldKind::Logical { representation, .. } => decode_field(representation, input, budget)?,
    })
}

fn skip_nonnull(kind: &FieldKind, input: &mut &[u8], budget: &mut Budget) -> Result<()> {
    match kind {
        FieldKind::Byte => {
            wire::read_u8(input)?;
        }
        FieldKind::Int16 => {
            wire::read_i16_be(input)?;
        }
        FieldKind::Int32 | FieldKind::Int64 => {
            wire::read_varint_u64(input)?;
        }
        FieldKind::Float => {
            wire::read_array::<4>(input)?;
        }
        FieldKind::Double | FieldKind::MillisInstant => {
            wire::read_array::<8>(input)?;
        }
        FieldKind::String | FieldKind::Bytes => {
            wire::read_length_prefixed(input)?;
        }
        FieldKind::Boolean => {
            wire::read_bool(input)?;
        }
        FieldKind::Array(elem) | FieldKind::Iterable(elem) => {
            read_iterable(input, MIN_FIELD_LEN, false, budget, |i, budget| {
                skip_field(elem, i, budget)
            })?;
        }
        FieldKind::Map { key, value } => {
            for _ in 0..read_map_count(input, budget)? {
                skip_field(key, input, budget)?;
                skip_field(value, input, budget)?;
            }
        }
        FieldKind::Row(schema) => skip_row(schema, input, budget)?,
        FieldKind::Decimal => {
            read_decimal_scale(input)?;
            wire::read_length_prefixed(input)?;
        }
        FieldKind::Logical { representation, .. } => skip_field(representation, input, budget)?,
    }
    Ok(())
}
