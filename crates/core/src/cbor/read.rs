//! A byte reader for CBOR data item headers that never panics and never allocates.

use super::CborError;

/// The eight CBOR major types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Major {
    /// 0: unsigned integer.
    Unsigned,
    /// 1: negative integer (-1 - argument).
    Negative,
    /// 2: byte string.
    Bytes,
    /// 3: text string.
    Text,
    /// 4: array.
    Array,
    /// 5: map.
    Map,
    /// 6: tag.
    Tag,
    /// 7: simple values and floats.
    Simple,
}

impl Major {
    fn from_bits(bits: u8) -> Major {
        match bits & 0x07 {
            0 => Major::Unsigned,
            1 => Major::Negative,
            2 => Major::Bytes,
            3 => Major::Text,
            4 => Major::Array,
            5 => Major::Map,
            6 => Major::Tag,
            _ => Major::Simple,
        }
    }

    #[inline(always)]
    pub(crate) fn bits(self) -> u8 {
        match self {
            Major::Unsigned => 0,
            Major::Negative => 1,
            Major::Bytes => 2,
            Major::Text => 3,
            Major::Array => 4,
            Major::Map => 5,
            Major::Tag => 6,
            Major::Simple => 7,
        }
    }
}

/// One decoded data item header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Offset of the initial byte.
    pub offset: usize,
    /// The major type.
    pub major: Major,
    /// The additional information (low five bits of the initial byte).
    pub info: u8,
    /// The argument: the value, length, tag number, simple value or raw float bits.
    /// Zero for indefinite lengths (`info == 31`).
    pub arg: u64,
}

impl Header {
    /// Whether this header starts an indefinite-length item (or is a break, for major 7).
    pub fn is_indefinite(&self) -> bool {
        self.info == 31
    }

    /// Whether the argument is encoded in its shortest form.
    pub fn is_minimal(&self) -> bool {
        match self.info {
            0..=23 => true,
            24 => self.arg >= 24,
            25 => self.arg > 0xff,
            26 => self.arg > 0xffff,
            27 => self.arg > 0xffff_ffff,
            _ => true,
        }
    }
}

/// Reads CBOR headers and raw bytes from a slice, tracking the position.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.buf
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> Result<(), CborError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(CborError::TrailingBytes {
                offset: self.pos,
                count,
            }),
        }
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: u64) -> Result<&'a [u8], CborError> {
        let offset = self.pos;
        let n = usize::try_from(n).map_err(|_| CborError::Truncated { offset })?;
        let end = offset
            .checked_add(n)
            .ok_or(CborError::Truncated { offset })?;
        let out = self
            .buf
            .get(offset..end)
            .ok_or(CborError::Truncated { offset })?;
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(CborError::Truncated { offset: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    /// Peeks at the next initial byte without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Reads one header. Does not check minimality; see [`Header::is_minimal`].
    pub fn header(&mut self) -> Result<Header, CborError> {
        let offset = self.pos;
        let initial = self.byte()?;
        let major = Major::from_bits(initial >> 5);
        let info = initial & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.byte()?),
            25 => be(self.take(2)?),
            26 => be(self.take(4)?),
            27 => be(self.take(8)?),
            31 => 0,
            _ => {
                return Err(CborError::Malformed {
                    offset,
                    byte: initial,
                })
            }
        };
        Ok(Header {
            offset,
            major,
            info,
            arg,
        })
    }

    /// Reads a header and insists it is minimal and definite.
    pub fn strict_header(&mut self) -> Result<Header, CborError> {
        let h = self.header()?;
        if h.major != Major::Simple {
            if h.is_indefinite() {
                return Err(CborError::IndefiniteLength { offset: h.offset });
            }
            if !h.is_minimal() {
                return Err(CborError::NonMinimal { offset: h.offset });
            }
        }
        Ok(h)
    }
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// Appends a header with the shortest encoding of `arg`.
#[inline(always)]
pub(crate) fn write_header(out: &mut Vec<u8>, major: Major, arg: u64) {
    let m = major.bits() << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else {
        write_long_header(out, m, arg);
    }
}

#[inline(never)]
fn write_long_header(out: &mut Vec<u8>, m: u8, arg: u64) {
    if arg <= 0xff {
        out.extend_from_slice(&[m | 24, arg as u8]);
    } else if arg <= 0xffff {
        let b = (arg as u16).to_be_bytes();
        out.extend_from_slice(&[m | 25, b[0], b[1]]);
    } else if arg <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(arg as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}
