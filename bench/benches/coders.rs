//! Coder hot paths: varint encoding and windowed elements as runners move them.
//!
//! Targets on the 2-core reference machine: varint encode ≤ 4 ns; a 100-byte
//! windowed value (global window, no firing) encodes in ≤ 15 ns and decodes in
//! ≤ 10 ns.

// criterion_group! generates an undocumented pub fn.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oxbeam_model::coders::{
    Coder, Context, Value, WindowCoder, WindowedValue, WindowedValueHeader, decode_windowed,
    decode_windowed_with, encode_windowed_bytes, wire,
};
use oxbeam_model::window::{BoundedWindow, PaneInfo, Timestamp};

fn varint(c: &mut Criterion) {
    let mut g = c.benchmark_group("varint_encode");
    let mut out = Vec::with_capacity(64);
    for (name, v) in [
        ("1B", 100u64),
        ("2B", 300),
        ("3B", 100_000),
        ("5B", 1 << 30),
        ("10B", u64::MAX),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                wire::write_varint_u64(&mut out, black_box(v));
                black_box(&out);
            })
        });
    }
    // A realistic mix, per element.
    let values: Vec<u64> = (0..1024u64)
        .map(|i| (i * 2654435761) % (1 << (i % 40)))
        .collect();
    let mut out = Vec::with_capacity(values.len() * 10);
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("mixed_x1024", |b| {
        b.iter(|| {
            out.clear();
            for &v in black_box(&values) {
                wire::write_varint_u64(&mut out, v);
            }
            black_box(&out);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("varint_decode");
    let mut encoded = Vec::new();
    for &v in &values {
        wire::write_varint_u64(&mut encoded, v);
    }
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("mixed_x1024", |b| {
        b.iter(|| {
            let mut input = black_box(&encoded[..]);
            let mut sum = 0u64;
            while !input.is_empty() {
                sum = sum.wrapping_add(wire::read_varint_u64(&mut input).unwrap());
            }
            black_box(sum)
        })
    });
    g.finish();
}

fn windowed_100_bytes(c: &mut Criterion) {
    let mut g = c.benchmark_group("windowed_100B");
    let header = WindowedValueHeader::global(Timestamp::from_millis(1_700_000_000_000));
    let value = [7u8; 100];
    let mut out = Vec::with_capacity(256);
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode_windowed_bytes(
                black_box(&header),
                black_box(&value),
                Context::Nested,
                &mut out,
            );
            black_box(&out);
        })
    });
    let mut encoded = Vec::new();
    encode_windowed_bytes(&header, &value, Context::Nested, &mut encoded);
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut input = black_box(&encoded[..]);
            let r = decode_windowed(&mut input, WindowCoder::Global, Context::Nested).unwrap();
            black_box(&r);
        })
    });
    let coder = Coder::windowed_value(Coder::Bytes, Coder::GlobalWindow);
    g.bench_function("decode_dynamic", |b| {
        b.iter(|| {
            let mut input = black_box(&encoded[..]);
            black_box(coder.decode(&mut input, Context::Nested).unwrap())
        })
    });
    g.finish();
}

fn windowed_kv(c: &mut Criterion) {
    let mut g = c.benchmark_group("windowed_kv_bytes_varint");
    let header = WindowedValueHeader {
        timestamp: Timestamp::from_millis(1_700_000_000_000),
        windows: BoundedWindow::Interval {
            start: Timestamp::from_millis(1_699_999_940_000),
            end: Timestamp::from_millis(1_700_000_000_000),
        }
        .into(),
        pane: PaneInfo::NO_FIRING,
    };
    let key = b"user-4242";
    let count = 123_456i64;
    let mut out = Vec::with_capacity(256);

    // Typed: what a runner does with known coders.
    g.bench_function("encode_typed", |b| {
        b.iter(|| {
            out.clear();
            black_box(&header).encode(&mut out);
            wire::write_length_prefixed(&mut out, black_box(key));
            wire::write_varint_i64(&mut out, black_box(count));
            black_box(&out);
        })
    });
    let mut encoded = Vec::new();
    header.encode(&mut encoded);
    wire::write_length_prefixed(&mut encoded, key);
    wire::write_varint_i64(&mut encoded, count);
    g.bench_function("decode_typed", |b| {
        b.iter(|| {
            let mut input = black_box(&encoded[..]);
            let h = WindowedValueHeader::decode(&mut input, WindowCoder::Interval).unwrap();
            let k = wire::read_length_prefixed(&mut input).unwrap();
            let v = wire::read_varint_i64(&mut input).unwrap();
            black_box((h, k, v))
        })
    });
    // Header typed, kv kept as bytes and split by the dynamic coder's skip.
    let kv = Coder::kv(Coder::Bytes, Coder::Varint);
    g.bench_function("decode_split_kv", |b| {
        b.iter(|| {
            let mut input = black_box(&encoded[..]);
            let r = decode_windowed_with(&mut input, WindowCoder::Interval, &kv, Context::Nested)
                .unwrap();
            let mut value = r.value;
            let (k, v) = kv.split_kv(&mut value, Context::Nested).unwrap();
            black_box((r.header, k, v))
        })
    });

    // Dynamic: the Coder tree and Value.
    let coder = Coder::windowed_value(kv.clone(), Coder::IntervalWindow);
    let element = Value::WindowedValue(Box::new(WindowedValue {
        value: Value::kv(Value::Bytes(key.to_vec()), Value::Int(count)),
        timestamp: header.timestamp,
        windows: header.windows.iter().copied().map(Value::Window).collect(),
        pane: header.pane,
    }));
    g.bench_function("encode_dynamic", |b| {
        b.iter(|| {
            out.clear();
            coder
                .encode(black_box(&element), &mut out, Context::Nested)
                .unwrap();
            black_box(&out);
        })
    });
    g.bench_function("decode_dynamic", |b| {
        b.iter(|| {
            let mut input = black_box(&encoded[..]);
            black_box(coder.decode(&mut input, Context::Nested).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, varint, windowed_100_bytes, windowed_kv);
criterion_main!(benches);
