//! The canonical-form checker and the canonicalizing re-encoder.

use std::cmp::Ordering;

use super::read::{write_header, Major, Reader};
use super::{CborError, Limits};

const BREAK: u8 = 0xff;

/// True when `bytes` are one data item whose declared lengths all fit in the bytes left,
/// with definite lengths only, no tags, and nesting within `max_depth`. It is much cheaper
/// than [`validate_item`]. It checks only what bounds a decoder's allocations, so that
/// `decode` can try its typed round trip first.
pub(super) fn bounded_structure(bytes: &[u8], max_depth: usize) -> bool {
    fn item(r: &mut Reader<'_>, depth: usize, max_depth: usize) -> Option<()> {
        let h = r.header().ok()?;
        if h.is_indefinite() {
            return None;
        }
        match h.major {
            Major::Unsigned | Major::Negative | Major::Simple => Some(()),
            Major::Bytes | Major::Text => {
                if h.arg > r.remaining() as u64 {
                    return None;
                }
                r.take(h.arg).ok().map(|_| ())
            }
            Major::Array | Major::Map => {
                if depth >= max_depth {
                    return None;
                }
                let n = if h.major == Major::Map {
                    h.arg.checked_mul(2)?
                } else {
                    h.arg
                };
                if n > r.remaining() as u64 {
                    return None;
                }
                for _ in 0..n {
                    item(r, depth + 1, max_depth)?;
                }
                Some(())
            }
            Major::Tag => None,
        }
    }
    let mut r = Reader::new(bytes);
    item(&mut r, 0, max_depth).is_some() && r.remaining() == 0
}

/// Checks one data item (and everything inside it) for canonical form.
pub(super) fn validate_item(
    r: &mut Reader<'_>,
    limits: &Limits,
    depth: usize,
) -> Result<(), CborError> {
    let h = r.header()?;
    match h.major {
        Major::Unsigned | Major::Negative => {
            if h.is_indefinite() {
                return Err(malformed(r, h.offset));
            }
            if !h.is_minimal() {
                return Err(CborError::NonMinimal { offset: h.offset });
            }
        }
        Major::Bytes | Major::Text => {
            check_definite_minimal(&h)?;
            if h.arg > r.remaining() as u64 {
                return Err(CborError::LengthTooLarge {
                    offset: h.offset,
                    length: h.arg,
                });
            }
            let body = r.take(h.arg)?;
            if h.major == Major::Text && std::str::from_utf8(body).is_err() {
                return Err(CborError::InvalidUtf8 { offset: h.offset });
            }
        }
        Major::Array => {
            check_definite_minimal(&h)?;
            let depth = enter(limits, depth, h.offset)?;
            if h.arg > r.remaining() as u64 {
                return Err(CborError::LengthTooLarge {
                    offset: h.offset,
                    length: h.arg,
                });
            }
            for _ in 0..h.arg {
                validate_item(r, limits, depth)?;
            }
        }
        Major::Map => {
            check_definite_minimal(&h)?;
            let depth = enter(limits, depth, h.offset)?;
            if h.arg > (r.remaining() / 2) as u64 {
                return Err(CborError::LengthTooLarge {
                    offset: h.offset,
                    length: h.arg,
                });
            }
            let input = r.input();
            let mut previous: Option<&[u8]> = None;
            for _ in 0..h.arg {
                let key_start = r.position();
                validate_item(r, limits, depth)?;
                let key = input
                    .get(key_start..r.position())
                    .ok_or(CborError::Invariant("a key's bytes lie inside the input"))?;
                if let Some(prev) = previous {
                    match prev.cmp(key) {
                        Ordering::Less => {}
                        Ordering::Equal => {
                            return Err(CborError::DuplicateMapKey { offset: key_start })
                        }
                        Ordering::Greater => {
                            return Err(CborError::UnsortedMapKeys { offset: key_start })
                        }
                    }
                }
                previous = Some(key);
                validate_item(r, limits, depth)?;
            }
        }
        Major::Tag if h.is_indefinite() => return Err(malformed(r, h.offset)),
        Major::Tag => {
            return Err(CborError::TagNotAllowed {
                offset: h.offset,
                tag: h.arg,
            })
        }
        Major::Simple => match h.info {
            20..=22 => {}
            25..=27 => {
                if !limits.allow_floats {
                    return Err(CborError::FloatNotAllowed { offset: h.offset });
                }
                let value = float_value(h.info, h.arg);
                let mut shortest = Vec::with_capacity(9);
                write_float(&mut shortest, value);
                let seen = r
                    .input()
                    .get(h.offset..r.position())
                    .ok_or(CborError::Invariant("a float's bytes lie inside the input"))?;
                if seen != shortest.as_slice() {
                    return Err(CborError::NonMinimalFloat { offset: h.offset });
                }
            }
            24 if h.arg < 32 => return Err(malformed(r, h.offset)),
            31 => return Err(malformed(r, h.offset)),
            _ => {
                return Err(CborError::SimpleNotAllowed {
                    offset: h.offset,
                    value: h.arg,
                })
            }
        },
    }
    Ok(())
}

/// Re-encodes `bytes` canonically.
pub(super) fn canonicalize(bytes: &[u8], limits: &Limits) -> Result<Vec<u8>, CborError> {
    if bytes.len() > limits.max_size {
        return Err(CborError::TooLarge {
            size: bytes.len(),
            limit: limits.max_size,
        });
    }
    let mut r = Reader::new(bytes);
    let mut out = Vec::with_capacity(bytes.len());
    let mut scratch = Scratch::default();
    canon_item(&mut r, &mut out, &mut scratch, limits, 0)?;
    r.finish()?;
    if out.len() > limits.max_size {
        return Err(CborError::TooLarge {
            size: out.len(),
            limit: limits.max_size,
        });
    }
    Ok(out)
}

/// Buffers reused across nested maps (and, in the serializer, across calls on one thread)
/// so sorting allocates at most a few times.
#[derive(Default)]
pub(super) struct Scratch {
    /// (key start, key end, entry end) offsets into the output, for every open map.
    pub(super) spans: Vec<Span>,
    /// A map's entries gathered in canonical order before they are copied back.
    tmp: Vec<u8>,
    /// The canonical order of the fields of structs already encoded, direct-mapped by a
    /// hash of their key identities (see [`order_struct`]).
    plans: Vec<Plan>,
    /// Working space for an order being computed.
    order: Vec<u16>,
    /// The length of the last output encoded with this scratch, to size the next one.
    pub(super) last_len: usize,
}

/// How to order the entries of a struct whose fields came with these keys, in this order.
#[derive(Default)]
struct Plan {
    /// The static key strings (address and length), in the order the fields came.
    keys: Vec<(usize, usize)>,
    /// The positions of the entries in canonical order.
    order: Vec<u16>,
    /// `order` is the identity (fields declared in canonical order).
    identity: bool,
}

/// Slots of the struct plan cache.
const PLAN_SLOTS: usize = 64;

impl Scratch {
    /// Clears what a failed call may have left, and drops buffers grown unusually large.
    pub(super) fn reset(&mut self) {
        self.spans.clear();
        self.order.clear();
        if self.tmp.capacity() > 1 << 20 {
            self.tmp = Vec::new();
        }
    }
}

fn canon_item(
    r: &mut Reader<'_>,
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
    limits: &Limits,
    depth: usize,
) -> Result<(), CborError> {
    let h = r.header()?;
    match h.major {
        Major::Unsigned | Major::Negative => {
            if h.is_indefinite() {
                return Err(malformed(r, h.offset));
            }
            write_header(out, h.major, h.arg);
        }
        Major::Bytes | Major::Text => {
            if h.is_indefinite() {
                let mut joined = Vec::new();
                loop {
                    if r.peek() == Some(BREAK) {
                        r.take(1)?;
                        break;
                    }
                    let chunk = r.header()?;
                    if chunk.major != h.major || chunk.is_indefinite() {
                        return Err(malformed(r, chunk.offset));
                    }
                    joined.extend_from_slice(r.take(chunk.arg)?);
                }
                if h.major == Major::Text && std::str::from_utf8(&joined).is_err() {
                    return Err(CborError::InvalidUtf8 { offset: h.offset });
                }
                write_header(out, h.major, joined.len() as u64);
                out.extend_from_slice(&joined);
            } else {
                let body = r.take(h.arg)?;
                if h.major == Major::Text && std::str::from_utf8(body).is_err() {
                    return Err(CborError::InvalidUtf8 { offset: h.offset });
                }
                write_header(out, h.major, h.arg);
                out.extend_from_slice(body);
            }
        }
        Major::Array => {
            let depth = enter(limits, depth, h.offset)?;
            if h.is_indefinite() {
                let mut body = Vec::new();
                let mut count = 0u64;
                while r.peek() != Some(BREAK) {
                    canon_item(r, &mut body, scratch, limits, depth)?;
                    count += 1;
                }
                r.take(1)?;
                write_header(out, Major::Array, count);
                out.extend_from_slice(&body);
            } else {
                if h.arg > r.remaining() as u64 {
                    return Err(CborError::LengthTooLarge {
                        offset: h.offset,
                        length: h.arg,
                    });
                }
                write_header(out, Major::Array, h.arg);
                for _ in 0..h.arg {
                    canon_item(r, out, scratch, limits, depth)?;
                }
            }
        }
        Major::Map => {
            let depth = enter(limits, depth, h.offset)?;
            if h.is_indefinite() {
                let mut body = Vec::new();
                let mut count = 0u64;
                let spans_start = scratch.spans.len();
                while r.peek() != Some(BREAK) {
                    map_entry(r, &mut body, scratch, limits, depth)?;
                    count += 1;
                }
                r.take(1)?;
                order_map(&mut body, 0, scratch, spans_start, h.offset)?;
                write_header(out, Major::Map, count);
                out.extend_from_slice(&body);
            } else {
                if h.arg > (r.remaining() / 2) as u64 {
                    return Err(CborError::LengthTooLarge {
                        offset: h.offset,
                        length: h.arg,
                    });
                }
                write_header(out, Major::Map, h.arg);
                let body_start = out.len();
                let spans_start = scratch.spans.len();
                for _ in 0..h.arg {
                    map_entry(r, out, scratch, limits, depth)?;
                }
                order_map(out, body_start, scratch, spans_start, h.offset)?;
            }
        }
        Major::Tag if h.is_indefinite() => return Err(malformed(r, h.offset)),
        Major::Tag => {
            return Err(CborError::TagNotAllowed {
                offset: h.offset,
                tag: h.arg,
            })
        }
        Major::Simple => match h.info {
            20..=22 => out.push((7 << 5) | h.info),
            25..=27 => {
                if !limits.allow_floats {
                    return Err(CborError::FloatNotAllowed { offset: h.offset });
                }
                write_float(out, float_value(h.info, h.arg));
            }
            24 if h.arg < 32 => return Err(malformed(r, h.offset)),
            31 => return Err(malformed(r, h.offset)),
            _ => {
                return Err(CborError::SimpleNotAllowed {
                    offset: h.offset,
                    value: h.arg,
                })
            }
        },
    }
    Ok(())
}

fn map_entry(
    r: &mut Reader<'_>,
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
    limits: &Limits,
    depth: usize,
) -> Result<(), CborError> {
    let key_start = out.len();
    canon_item(r, out, scratch, limits, depth)?;
    let key_end = out.len();
    canon_item(r, out, scratch, limits, depth)?;
    scratch
        .spans
        .push(Span::new(out, key_start, key_end, out.len()));
    Ok(())
}

/// Puts the entries recorded in `scratch.spans[spans_start..]` (all inside
/// `out[body_start..]`) in canonical key order, refusing duplicate keys.
pub(super) fn order_map(
    out: &mut Vec<u8>,
    body_start: usize,
    scratch: &mut Scratch,
    spans_start: usize,
    map_offset: usize,
) -> Result<(), CborError> {
    let Scratch { spans, tmp, .. } = scratch;
    let entries = spans.get_mut(spans_start..).ok_or(CborError::Invariant(
        "a map's entries start inside the span list",
    ))?;
    let sorted = entries.windows(2).all(|w| match w {
        [a, b] => a.cmp_key(b, out).is_lt(),
        _ => true,
    });
    if !sorted {
        let buf: &[u8] = out;
        entries.sort_unstable_by(|a, b| a.cmp_key(b, buf));
        if entries
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.cmp_key(b, buf).is_eq()))
        {
            return Err(CborError::DuplicateMapKey { offset: map_offset });
        }
        gather(out, body_start, tmp, entries.iter())?;
    }
    spans.truncate(spans_start);
    Ok(())
}

/// [`order_map`] for a struct, whose keys are static strings: the order found for a
/// sequence of keys is kept, so the next value of the same type is reordered without
/// comparing keys. Spans made by [`Span::field`] carry the key's address and length: the
/// same address and length name the same bytes of an immutable static string, so equal
/// sequences of them are equal key sequences, and a plan is only ever applied to the keys it
/// was computed from. (The address alone is not enough: `&S[..1]` and `S` share it.)
pub(super) fn order_struct(
    out: &mut Vec<u8>,
    body_start: usize,
    scratch: &mut Scratch,
    spans_start: usize,
    map_offset: usize,
) -> Result<(), CborError> {
    let dynamic = {
        let entries = scratch
            .spans
            .get(spans_start..)
            .ok_or(CborError::Invariant(
                "a struct's fields start inside the span list",
            ))?;
        entries.len() > usize::from(u16::MAX) || entries.iter().any(|e| e.key_id == 0)
    };
    if dynamic {
        return order_map(out, body_start, scratch, spans_start, map_offset);
    }
    let Scratch {
        spans,
        tmp,
        plans,
        order,
        ..
    } = scratch;
    let entries = spans.get(spans_start..).ok_or(CborError::Invariant(
        "a struct's fields start inside the span list",
    ))?;
    let mut h = entries.len() as u64;
    for e in entries {
        h = (h ^ e.key_id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h = (h ^ e.key_len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    let slot = (h >> 58) as usize % PLAN_SLOTS;
    if plans.len() < PLAN_SLOTS {
        plans.resize_with(PLAN_SLOTS, Plan::default);
    }
    let plan = plans
        .get_mut(slot)
        .ok_or_else(|| CborError::Encode("internal: plan slot".into()))?;
    let known = plan.keys.len() == entries.len()
        && plan
            .keys
            .iter()
            .zip(entries)
            .all(|(k, e)| *k == (e.key_id, e.key_len));
    if !known {
        order.clear();
        order.extend(0..entries.len() as u16);
        let buf: &[u8] = out;
        let key = |i: u16| {
            entries
                .get(usize::from(i))
                .and_then(|e| buf.get(e.key_start..e.key_end))
        };
        order.sort_unstable_by(|a, b| key(*a).cmp(&key(*b)));
        if order
            .windows(2)
            .any(|w| matches!(w, [a, b] if key(*a) == key(*b)))
        {
            return Err(CborError::DuplicateMapKey { offset: map_offset });
        }
        plan.keys.clear();
        plan.keys
            .extend(entries.iter().map(|e| (e.key_id, e.key_len)));
        plan.order.clear();
        plan.order.extend_from_slice(order);
        plan.identity = order.iter().enumerate().all(|(i, o)| usize::from(*o) == i);
    }
    if !plan.identity {
        let ordered = plan
            .order
            .iter()
            .filter_map(|i| entries.get(usize::from(*i)));
        gather(out, body_start, tmp, ordered)?;
    }
    spans.truncate(spans_start);
    Ok(())
}

/// Puts the entries in the given order: copies them into `tmp`, then over
/// `out[body_start..]`. When little precedes the map (the outermost map), `tmp` gets that
/// prefix too and the two buffers trade places instead: one copy instead of two.
fn gather<'a>(
    out: &mut Vec<u8>,
    body_start: usize,
    tmp: &mut Vec<u8>,
    entries: impl Iterator<Item = &'a Span>,
) -> Result<(), CborError> {
    const SWAP_PREFIX: usize = 64;
    tmp.clear();
    let swap = body_start <= SWAP_PREFIX;
    if swap {
        tmp.reserve(out.len());
        tmp.extend_from_slice(out.get(..body_start).ok_or(CborError::Invariant(
            "a map's body starts inside the output",
        ))?);
    }
    for span in entries {
        if let Some(entry) = out.get(span.key_start..span.end) {
            tmp.extend_from_slice(entry);
        }
    }
    if swap {
        if tmp.len() == out.len() {
            std::mem::swap(out, tmp);
            return Ok(());
        }
    } else if let Some(body) = out.get_mut(body_start..) {
        if body.len() == tmp.len() {
            body.copy_from_slice(tmp);
            return Ok(());
        }
    }
    Err(CborError::Encode(
        "internal: map entry spans do not cover the map".into(),
    ))
}

/// One map entry written to the output: where its key starts and ends, where the entry
/// ends, and the key's first eight bytes as a big-endian number, so most comparisons are
/// one integer comparison.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    prefix: u64,
    key_start: usize,
    key_end: usize,
    end: usize,
    /// For a struct field, the address of its static key string; otherwise 0.
    key_id: usize,
    /// For a struct field, the length of its static key string.
    key_len: usize,
}

impl Span {
    #[expect(
        clippy::expect_used,
        reason = "the encoder records key_start <= key_end <= out.len() as it writes the key"
    )]
    pub(super) fn new(out: &[u8], key_start: usize, key_end: usize, end: usize) -> Span {
        let key = out
            .get(key_start..key_end)
            .expect("a key span lies inside the output");
        let prefix = match key.first_chunk::<8>() {
            Some(first) => u64::from_be_bytes(*first),
            None => {
                let mut first = [0u8; 8];
                for (dst, src) in first.iter_mut().zip(key) {
                    *dst = *src;
                }
                u64::from_be_bytes(first)
            }
        };
        Span {
            prefix,
            key_start,
            key_end,
            end,
            key_id: 0,
            key_len: 0,
        }
    }

    /// A struct field's entry: `key` is the field's static name. No prefix is taken (it
    /// is zero, so comparisons fall through to the key bytes): ordering a struct goes
    /// through its plan.
    pub(super) fn field(key: &'static str, key_start: usize, key_end: usize, end: usize) -> Span {
        Span {
            prefix: 0,
            key_start,
            key_end,
            end,
            key_id: key.as_ptr() as usize,
            key_len: key.len(),
        }
    }

    /// Bytewise order of the encoded keys. Zero padding can make two different prefixes
    /// equal but never reverses their order, so equal prefixes fall back to the bytes.
    fn cmp_key(&self, other: &Span, out: &[u8]) -> Ordering {
        self.prefix.cmp(&other.prefix).then_with(|| {
            out.get(self.key_start..self.key_end)
                .cmp(&out.get(other.key_start..other.key_end))
        })
    }
}

fn check_definite_minimal(h: &super::Header) -> Result<(), CborError> {
    if h.is_indefinite() {
        return Err(CborError::IndefiniteLength { offset: h.offset });
    }
    if !h.is_minimal() {
        return Err(CborError::NonMinimal { offset: h.offset });
    }
    Ok(())
}

fn enter(limits: &Limits, depth: usize, offset: usize) -> Result<usize, CborError> {
    let depth = depth + 1;
    if depth > limits.max_depth {
        return Err(CborError::TooDeep {
            offset,
            limit: limits.max_depth,
        });
    }
    Ok(depth)
}

fn malformed(r: &Reader<'_>, offset: usize) -> CborError {
    CborError::Malformed {
        offset,
        // `offset` is where a header was read, so the byte exists; 0 would only mislabel
        // the error, not accept anything.
        byte: r.input().get(offset).copied().unwrap_or_default(),
    }
}

fn float_value(info: u8, bits: u64) -> f64 {
    match info {
        25 => f64::from(half::f16::from_bits(bits as u16).to_f32()),
        26 => f64::from(f32::from_bits(bits as u32)),
        _ => f64::from_bits(bits),
    }
}

/// Writes the shortest exact encoding of `v` (NaN as the half-precision quiet NaN).
pub(super) fn write_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(&[0xf9, 0x7e, 0x00]);
        return;
    }
    let single = v as f32;
    if f64::from(single) == v {
        let halfv = half::f16::from_f32(single);
        if halfv.to_f32() == single {
            out.push(0xf9);
            out.extend_from_slice(&halfv.to_bits().to_be_bytes());
        } else {
            out.push(0xfa);
            out.extend_from_slice(&single.to_bits().to_be_bytes());
        }
    } else {
        out.push(0xfb);
        out.extend_from_slice(&v.to_bits().to_be_bytes());
    }
}
