//! A tiny test-only codec for the coders the test pipelines use.

use oxbeam_model::fn_execution::ProcessBundleDescriptor;
use oxbeam_model::urns::standard_coders as c;

#[derive(Debug, Clone)]
pub enum TCoder {
    Bytes,
    Str,
    Varint,
    Kv(Box<TCoder>, Box<TCoder>),
    Iter(Box<TCoder>),
    LengthPrefix(Box<TCoder>),
    GlobalWindow,
    IntervalWindow,
    Windowed(Box<TCoder>, Box<TCoder>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TV {
    Bytes(Vec<u8>),
    Str(String),
    Int(i64),
    Kv(Box<TV>, Box<TV>),
    Iter(Vec<TV>),
}

impl std::fmt::Display for TV {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TV::Bytes(b) => write!(f, "{b:?}"),
            TV::Str(s) => write!(f, "{s}"),
            TV::Int(i) => write!(f, "{i}"),
            TV::Kv(k, v) => write!(f, "{k}: {v}"),
            TV::Iter(vs) => {
                let mut v: Vec<String> = vs.iter().map(|x| x.to_string()).collect();
                v.sort();
                write!(f, "[{}]", v.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum W {
    Global,
    Interval(i64, i64),
}

#[derive(Debug, Clone)]
pub struct WV {
    pub ts: i64,
    pub windows: Vec<W>,
    pub pane: Vec<u8>,
    pub value: TV,
}

impl WV {
    pub fn with(&self, value: TV) -> WV {
        WV {
            ts: self.ts,
            windows: self.windows.clone(),
            pane: self.pane.clone(),
            value,
        }
    }
}

pub fn coder(d: &ProcessBundleDescriptor, id: &str) -> Result<TCoder, String> {
    let spec = d.coders.get(id).ok_or_else(|| format!("no coder {id}"))?;
    let urn = spec
        .spec
        .as_ref()
        .map(|s| s.urn.as_str())
        .unwrap_or_default();
    let comp = |i: usize| coder(d, &spec.component_coder_ids[i]).map(Box::new);
    Ok(match urn {
        c::BYTES => TCoder::Bytes,
        c::STRING_UTF8 => TCoder::Str,
        c::VARINT => TCoder::Varint,
        c::KV => TCoder::Kv(comp(0)?, comp(1)?),
        c::ITERABLE => TCoder::Iter(comp(0)?),
        c::LENGTH_PREFIX => TCoder::LengthPrefix(comp(0)?),
        c::GLOBAL_WINDOW => TCoder::GlobalWindow,
        c::INTERVAL_WINDOW => TCoder::IntervalWindow,
        c::WINDOWED_VALUE => TCoder::Windowed(comp(0)?, comp(1)?),
        other => return Err(format!("test codec does not know {other}")),
    })
}

/// Coders of every PCollection by id, windowed.
pub fn windowed_coder(d: &ProcessBundleDescriptor, pcoll: &str) -> Result<TCoder, String> {
    let pc = &d.pcollections[pcoll];
    let ws = &d.windowing_strategies[&pc.windowing_strategy_id];
    Ok(TCoder::Windowed(
        Box::new(coder(d, &pc.coder_id)?),
        Box::new(coder(d, &ws.window_coder_id)?),
    ))
}

pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(input: &mut &[u8]) -> Result<u64, String> {
    let mut r = 0u64;
    for i in 0..10 {
        let (&b, rest) = input.split_first().ok_or("truncated varint")?;
        *input = rest;
        r |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(r);
        }
    }
    Err("long varint".into())
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if n > input.len() {
        return Err(format!("need {n} bytes, have {}", input.len()));
    }
    let (h, r) = input.split_at(n);
    *input = r;
    Ok(h)
}

pub fn encode(coder: &TCoder, v: &TV, out: &mut Vec<u8>) {
    match (coder, v) {
        (TCoder::Bytes, TV::Bytes(b)) => {
            write_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        (TCoder::Str, TV::Str(s)) => {
            write_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        (TCoder::Varint, TV::Int(i)) => write_varint(out, *i as u64),
        (TCoder::Kv(kc, vc), TV::Kv(k, v)) => {
            encode(kc, k, out);
            encode(vc, v, out);
        }
        (TCoder::Iter(ec), TV::Iter(vs)) => {
            out.extend_from_slice(&(vs.len() as i32).to_be_bytes());
            for v in vs {
                encode(ec, v, out);
            }
        }
        (TCoder::LengthPrefix(inner), v) => {
            let mut buf = Vec::new();
            encode(inner, v, &mut buf);
            write_varint(out, buf.len() as u64);
            out.extend_from_slice(&buf);
        }
        (c, v) => panic!("test codec cannot encode {v:?} with {c:?}"),
    }
}

pub fn decode(coder: &TCoder, input: &mut &[u8]) -> Result<TV, String> {
    Ok(match coder {
        TCoder::Bytes => {
            let n = read_varint(input)? as usize;
            TV::Bytes(take(input, n)?.to_vec())
        }
        TCoder::Str => {
            let n = read_varint(input)? as usize;
            TV::Str(String::from_utf8(take(input, n)?.to_vec()).map_err(|e| e.to_string())?)
        }
        TCoder::Varint => TV::Int(read_varint(input)? as i64),
        TCoder::Kv(k, v) => TV::Kv(Box::new(decode(k, input)?), Box::new(decode(v, input)?)),
        TCoder::Iter(e) => {
            let n = i32::from_be_bytes(take(input, 4)?.try_into().unwrap());
            let mut vs = Vec::new();
            for _ in 0..n {
                vs.push(decode(e, input)?);
            }
            TV::Iter(vs)
        }
        TCoder::LengthPrefix(inner) => {
            let n = read_varint(input)? as usize;
            let mut bytes = take(input, n)?;
            decode(inner, &mut bytes)?
        }
        other => return Err(format!("not a value coder: {other:?}")),
    })
}

fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1u64 << 63)).to_be_bytes()
}

fn read_ts(input: &mut &[u8]) -> Result<i64, String> {
    Ok((u64::from_be_bytes(take(input, 8)?.try_into().unwrap()) ^ (1u64 << 63)) as i64)
}

pub fn encode_windowed(coder: &TCoder, wv: &WV, out: &mut Vec<u8>) {
    let TCoder::Windowed(vc, _) = coder else {
        panic!("not windowed")
    };
    out.extend_from_slice(&ts_bytes(wv.ts));
    out.extend_from_slice(&(wv.windows.len() as i32).to_be_bytes());
    for w in &wv.windows {
        if let W::Interval(s, e) = w {
            out.extend_from_slice(&ts_bytes(*e));
            write_varint(out, (e - s) as u64);
        }
    }
    out.extend_from_slice(&wv.pane);
    encode(vc, &wv.value, out);
}

pub fn decode_windowed(coder: &TCoder, input: &mut &[u8]) -> Result<WV, String> {
    let TCoder::Windowed(vc, wc) = coder else {
        return Err("not windowed".into());
    };
    let ts = read_ts(input)?;
    let n = i32::from_be_bytes(take(input, 4)?.try_into().unwrap());
    let mut windows = Vec::new();
    for _ in 0..n {
        windows.push(match **wc {
            TCoder::GlobalWindow => W::Global,
            _ => {
                let end = read_ts(input)?;
                let span = read_varint(input)? as i64;
                W::Interval(end - span, end)
            }
        });
    }
    let pane_start = *input;
    let b = take(input, 1)?[0];
    for _ in 0..(b >> 4) {
        read_varint(input)?;
    }
    let pane = pane_start[..pane_start.len() - input.len()].to_vec();
    let value = decode(vc, input)?;
    Ok(WV {
        ts,
        windows,
        pane,
        value,
    })
}
