//! The canonical-form checker and the canonicalizing re-encoder.

use std::cmp::Ordering;

use super::read::{write_header, Major, Reader};
use super::{CborError, Limits};

const BREAK: u8 = 0xff;

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
                let key = input.get(key_start..r.position()).unwrap_or_default();
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
                let seen = r.input().get(h.offset..r.position()).unwrap_or_default();
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

/// Buffers reused across nested maps so sorting allocates at most a few times per call.
#[derive(Default)]
pub(super) struct Scratch {
    /// (key start, key end, entry end) offsets into the output, for every open map.
    pub(super) spans: Vec<Span>,
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
    let spans = scratch.spans.get_mut(spans_start..).unwrap_or_default();
    let sorted = spans.windows(2).all(|w| match w {
        [a, b] => a.cmp_key(b, out).is_lt(),
        _ => true,
    });
    if !sorted {
        let buf: &[u8] = out;
        spans.sort_unstable_by(|a, b| a.cmp_key(b, buf));
        if spans
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.cmp_key(b, buf).is_eq()))
        {
            return Err(CborError::DuplicateMapKey { offset: map_offset });
        }
        // Append the entries in order after the body, then move them over it: no
        // allocation beyond the output's own growth.
        let body_end = out.len();
        for span in spans.iter() {
            if span.key_start < span.end && span.end <= body_end {
                out.extend_from_within(span.key_start..span.end);
            }
        }
        if out.len() - body_end != body_end - body_start {
            return Err(CborError::Encode(
                "internal: map entry spans do not cover the map".into(),
            ));
        }
        out.copy_within(body_end.., body_start);
        out.truncate(body_end);
    }
    scratch.spans.truncate(spans_start);
    Ok(())
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
}

impl Span {
    pub(super) fn new(out: &[u8], key_start: usize, key_end: usize, end: usize) -> Span {
        let key = out.get(key_start..key_end).unwrap_or_default();
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
