//! Frames: how messages and chunk data are cut on a byte stream.
//!
//! ```text
//! frame   = type:u8 || length:u32 (big-endian) || payload (length bytes)
//! type    = 0x00 control: payload is one canonical CBOR [`Message`](crate::Message),
//!                         length <= MAX_CONTROL (1 MiB)
//!           0x01 data:    payload = header_len:u16 (big-endian) || header || chunk
//!                         header: canonical CBOR ChunkHeader, <= MAX_DATA_HEADER bytes
//!                         length <= MAX_DATA (16 MiB chunk + header)
//! ```
//!
//! The five header bytes are checked before a single payload byte is read or buffered:
//! an unknown type or a length over the type's maximum is refused there
//! ([`FrameHeader::parse`]), so a peer cannot make a reader allocate more than one frame
//! of the largest allowed size.

use serde::{Deserialize, Serialize};
use tds_core::cbor::{self, Limits};
use tds_core::hash::Hash256;
use tds_manifest::content::{ChunkProof, MAX_PROOF_LEN};
use tds_manifest::ChunkSize;

use crate::error::ProtocolError;
use crate::message::{Message, Pid};

/// Length of a frame header: type and length.
pub const HEADER_LEN: usize = 5;

/// Largest control frame payload: 1 MiB.
pub const MAX_CONTROL: u32 = 1024 * 1024;

/// Largest data frame header (the CBOR chunk header with its proof).
pub const MAX_DATA_HEADER: u32 = 4096;

/// Largest data frame payload: the largest chunk ([`ChunkSize::MAX`]), the header and
/// its two length bytes.
pub const MAX_DATA: u32 = ChunkSize::MAX.as_u32() + MAX_DATA_HEADER + 2;

/// The limits control messages are decoded within.
pub const CONTROL_LIMITS: Limits = Limits {
    max_depth: 16,
    max_size: MAX_CONTROL as usize,
    allow_floats: false,
};

/// The two frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    /// A control message (`0x00`).
    Control,
    /// Chunk data with its proof (`0x01`).
    Data,
}

impl FrameType {
    /// The type byte.
    pub const fn byte(self) -> u8 {
        match self {
            FrameType::Control => 0,
            FrameType::Data => 1,
        }
    }

    /// The largest payload of this type.
    pub const fn max_len(self) -> u32 {
        match self {
            FrameType::Control => MAX_CONTROL,
            FrameType::Data => MAX_DATA,
        }
    }
}

/// A checked frame header: the type is known and the length within the type's maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The frame type.
    pub kind: FrameType,
    /// The payload length.
    pub len: u32,
}

impl FrameHeader {
    /// Parses and checks the five header bytes.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<FrameHeader, ProtocolError> {
        let [t, a, b, c, d] = *bytes;
        let kind = match t {
            0 => FrameType::Control,
            1 => FrameType::Data,
            other => return Err(ProtocolError::UnknownFrameType(other)),
        };
        let len = u32::from_be_bytes([a, b, c, d]);
        if len > kind.max_len() {
            return Err(ProtocolError::FrameTooLarge {
                len: u64::from(len),
                limit: kind.max_len(),
            });
        }
        Ok(FrameHeader { kind, len })
    }

    /// The five header bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let [a, b, c, d] = self.len.to_be_bytes();
        [self.kind.byte(), a, b, c, d]
    }
}

/// The header of a data frame: which transfer and chunk, and the chunk's inclusion path.
///
/// Canonical CBOR: `{"path": [bstr .size 32, ...], "index": uint, "transfer": bstr .size
/// 16}` (canonical key order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkHeader {
    /// The consumer's process id of the transfer.
    pub transfer: Pid,
    /// The chunk index (0-based).
    pub index: u64,
    /// The RFC 9162 inclusion path of the chunk's leaf, leaf upwards.
    pub path: Vec<Hash256>,
}

impl ChunkHeader {
    /// The chunk proof this header carries.
    pub fn proof(&self) -> ChunkProof {
        ChunkProof {
            index: self.index,
            path: self.path.clone(),
        }
    }
}

/// A decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A control message.
    Control(Message),
    /// Chunk data: the header and the chunk bytes (borrowed from the input).
    Data(ChunkHeader, &'a [u8]),
}

/// Encodes a control message as a whole frame.
pub fn encode_control(message: &Message) -> Result<Vec<u8>, ProtocolError> {
    let payload = cbor::encode_with(message, &CONTROL_LIMITS)?;
    let len = frame_len(payload.len(), FrameType::Control)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(
        &FrameHeader {
            kind: FrameType::Control,
            len,
        }
        .to_bytes(),
    );
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Encodes the head of a data frame: the frame header, the chunk header's length and the
/// chunk header, for a chunk of `chunk_len` bytes that follows it. Writing the head and
/// then the chunk bytes as they are avoids copying the chunk.
pub fn encode_data_head(header: &ChunkHeader, chunk_len: usize) -> Result<Vec<u8>, ProtocolError> {
    if header.path.len() > MAX_PROOF_LEN {
        return Err(ProtocolError::Invalid {
            what: "chunk header",
            why: "inclusion path longer than 64 hashes",
        });
    }
    let h = cbor::encode(header)?;
    let hlen = u16::try_from(h.len())
        .ok()
        .filter(|n| u32::from(*n) <= MAX_DATA_HEADER)
        .ok_or(ProtocolError::FrameTooLarge {
            len: h.len() as u64,
            limit: MAX_DATA_HEADER,
        })?;
    let total = 2usize
        .checked_add(h.len())
        .and_then(|n| n.checked_add(chunk_len))
        .ok_or(ProtocolError::FrameTooLarge {
            len: u64::MAX,
            limit: MAX_DATA,
        })?;
    let len = frame_len(total, FrameType::Data)?;
    let mut out = Vec::with_capacity(HEADER_LEN + 2 + h.len());
    out.extend_from_slice(
        &FrameHeader {
            kind: FrameType::Data,
            len,
        }
        .to_bytes(),
    );
    out.extend_from_slice(&hlen.to_be_bytes());
    out.extend_from_slice(&h);
    Ok(out)
}

/// Encodes a whole data frame (head and chunk) into one buffer.
pub fn encode_data(header: &ChunkHeader, chunk: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut out = encode_data_head(header, chunk.len())?;
    out.extend_from_slice(chunk);
    Ok(out)
}

fn frame_len(len: usize, kind: FrameType) -> Result<u32, ProtocolError> {
    u32::try_from(len)
        .ok()
        .filter(|n| *n <= kind.max_len())
        .ok_or(ProtocolError::FrameTooLarge {
            len: len as u64,
            limit: kind.max_len(),
        })
}

/// Decodes exactly one whole frame: header, payload, nothing after it.
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, ProtocolError> {
    let (head, payload) = bytes
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(ProtocolError::Truncated)?;
    let header = FrameHeader::parse(head)?;
    let len = header.len as usize;
    if payload.len() < len {
        return Err(ProtocolError::Truncated);
    }
    if payload.len() > len {
        return Err(ProtocolError::TrailingBytes(payload.len() - len));
    }
    decode_payload(header.kind, payload)
}

/// Decodes the chunk header of a data frame (the `header_len` bytes after its two length
/// bytes), for a reader that takes the chunk bytes that follow as they come.
pub fn decode_chunk_header(bytes: &[u8]) -> Result<ChunkHeader, ProtocolError> {
    if bytes.len() > MAX_DATA_HEADER as usize {
        return Err(ProtocolError::FrameTooLarge {
            len: bytes.len() as u64,
            limit: MAX_DATA_HEADER,
        });
    }
    let limits = Limits {
        max_depth: 2,
        max_size: MAX_DATA_HEADER as usize,
        allow_floats: false,
    };
    let header: ChunkHeader = cbor::decode_with(bytes, &limits)?;
    if header.path.len() > MAX_PROOF_LEN {
        return Err(ProtocolError::Invalid {
            what: "chunk header",
            why: "inclusion path longer than 64 hashes",
        });
    }
    Ok(header)
}

/// Decodes a frame payload of a known type (after [`FrameHeader::parse`]).
pub fn decode_payload(kind: FrameType, payload: &[u8]) -> Result<Frame<'_>, ProtocolError> {
    if payload.len() > kind.max_len() as usize {
        return Err(ProtocolError::FrameTooLarge {
            len: payload.len() as u64,
            limit: kind.max_len(),
        });
    }
    match kind {
        FrameType::Control => Ok(Frame::Control(Message::decode(payload)?)),
        FrameType::Data => {
            let (hlen, rest) = payload
                .split_first_chunk::<2>()
                .ok_or(ProtocolError::Truncated)?;
            let hlen = usize::from(u16::from_be_bytes(*hlen));
            if hlen > MAX_DATA_HEADER as usize {
                return Err(ProtocolError::FrameTooLarge {
                    len: hlen as u64,
                    limit: MAX_DATA_HEADER,
                });
            }
            let (h, chunk) = rest
                .split_at_checked(hlen)
                .ok_or(ProtocolError::Truncated)?;
            let header = decode_chunk_header(h)?;
            Ok(Frame::Data(header, chunk))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, Refusal};
    use proptest::prelude::*;

    #[test]
    fn header_limits_are_checked_before_the_payload() {
        let too_big = (MAX_CONTROL + 1).to_be_bytes();
        let h = [0, too_big[0], too_big[1], too_big[2], too_big[3]];
        assert!(matches!(
            FrameHeader::parse(&h),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            FrameHeader::parse(&[7, 0, 0, 0, 1]),
            Err(ProtocolError::UnknownFrameType(7))
        ));
        let ok = MAX_DATA.to_be_bytes();
        assert_eq!(
            FrameHeader::parse(&[1, ok[0], ok[1], ok[2], ok[3]])
                .unwrap()
                .len,
            MAX_DATA
        );
    }

    #[test]
    fn trailing_and_truncated_frames_are_refused() {
        let m = Message::Error(Refusal::new("protocol.invalid", "x"));
        let mut f = encode_control(&m).unwrap();
        assert_eq!(decode(&f).unwrap(), Frame::Control(m));
        f.push(0);
        assert!(matches!(decode(&f), Err(ProtocolError::TrailingBytes(1))));
        f.truncate(f.len() - 2);
        assert!(matches!(decode(&f), Err(ProtocolError::Truncated)));
    }

    proptest! {
        #[test]
        fn data_frames_round_trip(
            transfer in any::<[u8; 16]>(),
            index in any::<u64>(),
            path in proptest::collection::vec(any::<[u8; 32]>(), 0..=64),
            chunk in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let header = ChunkHeader {
                transfer: Pid::from_bytes(transfer),
                index,
                path: path.into_iter().map(Hash256::from_bytes).collect(),
            };
            let f = encode_data(&header, &chunk).unwrap();
            match decode(&f).unwrap() {
                Frame::Data(h, c) => {
                    prop_assert_eq!(h, header);
                    prop_assert_eq!(c, &chunk[..]);
                }
                Frame::Control(_) => prop_assert!(false, "data frame decoded as control"),
            }
        }
    }
}
