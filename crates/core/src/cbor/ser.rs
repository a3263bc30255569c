//! A serde serializer that writes canonical CBOR directly.
//!
//! It produces the same bytes as cbor4ii's serializer followed by the canonicalizing pass
//! (a property test checks that), in one pass: integers and lengths are written in their
//! shortest form as they come, and a map's entries are put in order only when they arrive
//! out of order, by moving byte ranges already written. The data model follows cbor4ii's
//! so that cbor4ii's deserializer reads everything back (unit is `[]`, a unit variant is
//! its name, other variants are one-entry maps).

use std::fmt;

use serde::ser::{self, Serialize};

use std::cell::RefCell;

use super::canon::{order_map, order_struct, write_float, Scratch, Span};
use super::read::{write_header, Major};
use super::{CborError, Limits};

/// The serializer's error: a [`CborError`], or a message from a `Serialize` impl.
#[derive(Debug)]
pub(super) struct SerError(pub(super) CborError);

impl fmt::Display for SerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SerError {}

impl ser::Error for SerError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerError(CborError::Encode(msg.to_string()))
    }
}

impl From<CborError> for SerError {
    fn from(e: CborError) -> Self {
        SerError(e)
    }
}

/// Encodes `value` canonically into a new vector.
pub(super) fn to_canonical_vec<T: Serialize + ?Sized>(
    value: &T,
    limits: &Limits,
) -> Result<Vec<u8>, CborError> {
    thread_local! {
        static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
    }
    SCRATCH
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                scratch.reset();
                encode_with(value, limits, &mut scratch)
            }
            // A Serialize impl that encodes something itself: give the inner call its own.
            Err(_) => encode_with(value, limits, &mut Scratch::default()),
        })
        // During thread teardown the thread-local may be gone.
        .unwrap_or_else(|_| encode_with(value, limits, &mut Scratch::default()))
}

fn encode_with<T: Serialize + ?Sized>(
    value: &T,
    limits: &Limits,
    scratch: &mut Scratch,
) -> Result<Vec<u8>, CborError> {
    // Sized from the last value encoded on this thread (values of one type tend to come
    // together): usually one allocation; big ones grow geometrically as usual.
    let hint = scratch.last_len + scratch.last_len / 8;
    let mut out = Vec::with_capacity(hint.clamp(256, 64 << 10));
    let mut s = Serializer {
        out: &mut out,
        scratch,
        limits,
        depth: 0,
    };
    value.serialize(&mut s).map_err(|e| e.0)?;
    scratch.last_len = out.len();
    if out.len() > limits.max_size {
        return Err(CborError::TooLarge {
            size: out.len(),
            limit: limits.max_size,
        });
    }
    Ok(out)
}

pub(super) struct Serializer<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Scratch,
    limits: &'a Limits,
    depth: usize,
}

impl Serializer<'_> {
    fn enter(&mut self) -> Result<(), SerError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(SerError(CborError::TooDeep {
                offset: self.out.len(),
                limit: self.limits.max_depth,
            }));
        }
        Ok(())
    }

    fn check_size(&self) -> Result<(), SerError> {
        if self.out.len() > self.limits.max_size {
            return Err(SerError(CborError::TooLarge {
                size: self.out.len(),
                limit: self.limits.max_size,
            }));
        }
        Ok(())
    }

    #[inline]
    fn text(&mut self, s: &str) {
        write_header(self.out, Major::Text, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: i128) -> Result<(), SerError> {
        if let Ok(u) = u64::try_from(v) {
            write_header(self.out, Major::Unsigned, u);
            return Ok(());
        }
        match u64::try_from(-1 - v) {
            Ok(n) => {
                write_header(self.out, Major::Negative, n);
                Ok(())
            }
            Err(_) => Err(SerError(CborError::Encode(
                "integer outside the 64-bit CBOR range (bignum tags are not allowed)".into(),
            ))),
        }
    }

    fn float(&mut self, v: f64) -> Result<(), SerError> {
        if !self.limits.allow_floats {
            return Err(SerError(CborError::FloatNotAllowed {
                offset: self.out.len(),
            }));
        }
        write_float(self.out, v);
        Ok(())
    }

    /// Starts a map whose entries will be sorted at the end. `len` is the declared count,
    /// if known; the header is fixed up at the end if it was not or was wrong.
    fn begin_map(&mut self, len: Option<usize>) -> Result<MapState, SerError> {
        self.enter()?;
        let header_pos = self.out.len();
        // A placeholder when serde gives no length: the header is rewritten at the end.
        write_header(self.out, Major::Map, len.unwrap_or(0) as u64);
        Ok(MapState {
            header_pos,
            header_len: self.out.len() - header_pos,
            declared: len,
            body_start: self.out.len(),
            spans_start: self.scratch.spans.len(),
            count: 0,
            key_start: 0,
            key_end: 0,
        })
    }

    fn begin_seq(&mut self, len: Option<usize>) -> Result<SeqState, SerError> {
        self.enter()?;
        let header_pos = self.out.len();
        // A placeholder when serde gives no length: the header is rewritten at the end.
        write_header(self.out, Major::Array, len.unwrap_or(0) as u64);
        Ok(SeqState {
            header_pos,
            header_len: self.out.len() - header_pos,
            declared: len,
            count: 0,
        })
    }

    /// Rewrites a header whose final count differs from what was written at `pos`.
    fn fix_header(&mut self, pos: usize, old_len: usize, major: Major, count: u64) {
        let mut header = Vec::with_capacity(9);
        write_header(&mut header, major, count);
        self.out.splice(pos..pos + old_len, header);
    }
}

struct MapState {
    header_pos: usize,
    header_len: usize,
    declared: Option<usize>,
    body_start: usize,
    spans_start: usize,
    count: usize,
    key_start: usize,
    key_end: usize,
}

struct SeqState {
    header_pos: usize,
    header_len: usize,
    declared: Option<usize>,
    count: usize,
}

/// A map or struct being written.
pub(super) struct Map<'s, 'a> {
    ser: &'s mut Serializer<'a>,
    state: MapState,
    /// For a struct variant: the outer one-entry map is already written.
    variant: bool,
    /// A struct: every key is a static field name (see [`order_struct`]).
    fields: bool,
}

/// An array being written.
pub(super) struct Seq<'s, 'a> {
    ser: &'s mut Serializer<'a>,
    state: SeqState,
    /// For a tuple variant: the outer one-entry map is already written.
    variant: bool,
}

impl<'s, 'a> Map<'s, 'a> {
    fn entry_key<K: Serialize + ?Sized>(&mut self, key: &K) -> Result<(), SerError> {
        self.state.key_start = self.ser.out.len();
        key.serialize(&mut *self.ser)?;
        self.state.key_end = self.ser.out.len();
        Ok(())
    }

    fn entry_value<V: Serialize + ?Sized>(&mut self, value: &V) -> Result<(), SerError> {
        value.serialize(&mut *self.ser)?;
        let span = Span::new(
            self.ser.out,
            self.state.key_start,
            self.state.key_end,
            self.ser.out.len(),
        );
        self.ser.scratch.spans.push(span);
        self.state.count += 1;
        // Sizes grow only through strings and byte strings, which check the limit.
        Ok(())
    }

    /// A struct field: the key is a static text string.
    #[inline]
    fn field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), SerError> {
        let key_start = self.ser.out.len();
        self.ser.text(key);
        let key_end = self.ser.out.len();
        value.serialize(&mut *self.ser)?;
        let span = Span::field(key, key_start, key_end, self.ser.out.len());
        self.ser.scratch.spans.push(span);
        self.state.count += 1;
        Ok(())
    }

    fn finish(self) -> Result<(), SerError> {
        let st = self.state;
        let ser = self.ser;
        let order = if self.fields { order_struct } else { order_map };
        order(
            ser.out,
            st.body_start,
            ser.scratch,
            st.spans_start,
            st.header_pos,
        )?;
        if st.declared != Some(st.count) {
            ser.fix_header(st.header_pos, st.header_len, Major::Map, st.count as u64);
        }
        ser.depth -= 1;
        if self.variant {
            ser.depth -= 1;
        }
        Ok(())
    }
}

impl<'s, 'a> Seq<'s, 'a> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        value.serialize(&mut *self.ser)?;
        self.state.count += 1;
        Ok(())
    }

    fn finish(self) -> Result<(), SerError> {
        let (st, variant) = (self.state, self.variant);
        if st.declared != Some(st.count) {
            self.ser
                .fix_header(st.header_pos, st.header_len, Major::Array, st.count as u64);
        }
        self.ser.depth -= 1;
        if variant {
            self.ser.depth -= 1;
        }
        Ok(())
    }
}

impl<'s, 'a> ser::Serializer for &'s mut Serializer<'a> {
    type Ok = ();
    type Error = SerError;
    type SerializeSeq = Seq<'s, 'a>;
    type SerializeTuple = Seq<'s, 'a>;
    type SerializeTupleStruct = Seq<'s, 'a>;
    type SerializeTupleVariant = Seq<'s, 'a>;
    type SerializeMap = Map<'s, 'a>;
    type SerializeStruct = Map<'s, 'a>;
    type SerializeStructVariant = Map<'s, 'a>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), SerError> {
        self.out.push(if v { 0xf5 } else { 0xf4 });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), SerError> {
        self.int(i128::from(v))
    }

    fn serialize_i16(self, v: i16) -> Result<(), SerError> {
        self.int(i128::from(v))
    }

    fn serialize_i32(self, v: i32) -> Result<(), SerError> {
        self.int(i128::from(v))
    }

    fn serialize_i64(self, v: i64) -> Result<(), SerError> {
        self.int(i128::from(v))
    }

    fn serialize_i128(self, v: i128) -> Result<(), SerError> {
        self.int(v)
    }

    fn serialize_u8(self, v: u8) -> Result<(), SerError> {
        write_header(self.out, Major::Unsigned, u64::from(v));
        Ok(())
    }

    fn serialize_u16(self, v: u16) -> Result<(), SerError> {
        write_header(self.out, Major::Unsigned, u64::from(v));
        Ok(())
    }

    fn serialize_u32(self, v: u32) -> Result<(), SerError> {
        write_header(self.out, Major::Unsigned, u64::from(v));
        Ok(())
    }

    fn serialize_u64(self, v: u64) -> Result<(), SerError> {
        write_header(self.out, Major::Unsigned, v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), SerError> {
        match u64::try_from(v) {
            Ok(u) => {
                write_header(self.out, Major::Unsigned, u);
                Ok(())
            }
            Err(_) => Err(SerError(CborError::Encode(
                "integer outside the 64-bit CBOR range (bignum tags are not allowed)".into(),
            ))),
        }
    }

    fn serialize_f32(self, v: f32) -> Result<(), SerError> {
        self.float(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), SerError> {
        self.float(v)
    }

    fn serialize_char(self, v: char) -> Result<(), SerError> {
        let mut buf = [0u8; 4];
        self.text(v.encode_utf8(&mut buf));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), SerError> {
        self.text(v);
        self.check_size()
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), SerError> {
        write_header(self.out, Major::Bytes, v.len() as u64);
        self.out.extend_from_slice(v);
        self.check_size()
    }

    fn serialize_none(self) -> Result<(), SerError> {
        self.out.push(0xf6);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), SerError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), SerError> {
        // cbor4ii's data model: unit is the empty array.
        self.out.push(0x80);
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), SerError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), SerError> {
        self.text(variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        self.enter()?;
        write_header(self.out, Major::Map, 1);
        self.text(variant);
        value.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'s, 'a>, SerError> {
        let state = self.begin_seq(len)?;
        Ok(Seq {
            ser: self,
            state,
            variant: false,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Seq<'s, 'a>, SerError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Seq<'s, 'a>, SerError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq<'s, 'a>, SerError> {
        self.enter()?;
        write_header(self.out, Major::Map, 1);
        self.text(variant);
        let state = self.begin_seq(Some(len))?;
        Ok(Seq {
            ser: self,
            state,
            variant: true,
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Map<'s, 'a>, SerError> {
        let state = self.begin_map(len)?;
        Ok(Map {
            ser: self,
            state,
            variant: false,
            fields: false,
        })
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Map<'s, 'a>, SerError> {
        let state = self.begin_map(Some(len))?;
        Ok(Map {
            ser: self,
            state,
            variant: false,
            fields: true,
        })
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Map<'s, 'a>, SerError> {
        self.enter()?;
        write_header(self.out, Major::Map, 1);
        self.text(variant);
        let state = self.begin_map(Some(len))?;
        Ok(Map {
            ser: self,
            state,
            variant: true,
            fields: true,
        })
    }
}

impl ser::SerializeSeq for Seq<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.element(value)
    }
    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Seq<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.element(value)
    }
    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Seq<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.element(value)
    }
    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Seq<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.element(value)
    }
    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}

impl ser::SerializeMap for Map<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), SerError> {
        self.entry_key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SerError> {
        self.entry_value(value)
    }
    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Map<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Map<'_, '_> {
    type Ok = ();
    type Error = SerError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), SerError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), SerError> {
        self.finish()
    }
}
