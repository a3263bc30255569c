//! Reading and writing frames on QUIC streams. Every read checks the five header bytes
//! with [`FrameHeader::parse`] (and the caller's tighter limit) before it allocates or
//! reads a payload byte.

use bytes::Bytes;
use tds_core::merkle::{HashedLeaf, LeafHasher};
use tds_protocol::frame::{
    self, ChunkHeader, FrameHeader, FrameType, HEADER_LEN, MAX_DATA, MAX_DATA_HEADER,
};
use tds_protocol::ProtocolError;

use crate::error::TransportError;

/// Stream error codes (QUIC `RESET_STREAM` / `STOP_SENDING`).
pub mod stream_code {
    /// The responder gave up before finishing its reply.
    pub const ABANDONED: u32 = 1;
    /// A frame was refused (too large, unknown type, the wrong type here).
    pub const REFUSED_FRAME: u32 = 2;
    /// The reader no longer wants the rest.
    pub const CANCELLED: u32 = 3;
}

/// Which frame types a read accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Accept {
    /// Control frames only (hellos, requests, admission messages).
    Control,
    /// Control or data frames (replies).
    Any,
}

/// Reads one whole frame (header and payload, as one buffer) from `recv`.
///
/// `Ok(None)` when the stream ended cleanly before a frame began. The header is checked
/// first: its type must be accepted here and its length within both the type's maximum
/// and `limit`. Only then is a payload buffer allocated, and only as large as what has
/// arrived (at most [`UPFRONT`] before the first bytes): a header declaring a megabyte
/// that is followed by ten bytes costs ten bytes, not a megabyte.
pub(crate) async fn read_frame(
    recv: &mut quinn::RecvStream,
    accept: Accept,
    limit: u32,
) -> Result<Option<Vec<u8>>, TransportError> {
    let mut head = [0u8; HEADER_LEN];
    match recv.read_exact(&mut head).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(_)) => {
            return Err(ProtocolError::Truncated.into());
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    let header = check_header(&head, accept, limit)?;
    let total = HEADER_LEN + header.len as usize;
    let mut frame = Vec::with_capacity(total.min(UPFRONT));
    frame.extend_from_slice(&head);
    while frame.len() < total {
        match recv.read_chunk(total - frame.len(), true).await? {
            Some(c) => frame.extend_from_slice(&c.bytes),
            None => return Err(ProtocolError::Truncated.into()),
        }
    }
    Ok(Some(frame))
}

/// Bytes of a frame's buffer allocated before its payload arrives; beyond this it grows
/// with what arrives.
pub(crate) const UPFRONT: usize = 64 * 1024;

/// A reply frame to a chunk request: a control message, or a data frame whose chunk was
/// hashed as it arrived and kept in the pieces QUIC delivered it in (never copied into
/// one buffer).
#[derive(Debug)]
pub enum ChunkReply {
    /// A whole control frame (an `error`, usually).
    Control(Vec<u8>),
    /// A data frame.
    Data {
        /// Its chunk header.
        header: ChunkHeader,
        /// The chunk's leaf hash and length.
        leaf: HashedLeaf,
        /// The chunk's bytes, in order.
        pieces: Vec<Bytes>,
    },
}

async fn read_exact_or(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), TransportError> {
    match recv.read_exact(buf).await {
        Ok(()) => Ok(()),
        Err(quinn::ReadExactError::FinishedEarly(_)) => Err(ProtocolError::Truncated.into()),
        Err(quinn::ReadExactError::ReadError(e)) => Err(e.into()),
    }
}

/// Reads one reply frame to a chunk request; `Ok(None)` at a clean end of the stream.
pub(crate) async fn read_chunk_reply(
    recv: &mut quinn::RecvStream,
) -> Result<Option<ChunkReply>, TransportError> {
    let mut head = [0u8; HEADER_LEN];
    match recv.read_exact(&mut head).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(_)) => {
            return Err(ProtocolError::Truncated.into());
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    let header = check_header(&head, Accept::Any, MAX_DATA)?;
    let len = header.len as usize;
    if header.kind == FrameType::Control {
        let mut frame = vec![0u8; HEADER_LEN + len];
        let (h, payload) = frame.split_at_mut(HEADER_LEN);
        h.copy_from_slice(&head);
        read_exact_or(recv, payload).await?;
        return Ok(Some(ChunkReply::Control(frame)));
    }
    let mut hl = [0u8; 2];
    read_exact_or(recv, &mut hl).await?;
    let hlen = usize::from(u16::from_be_bytes(hl));
    if hlen > MAX_DATA_HEADER as usize {
        return Err(ProtocolError::FrameTooLarge {
            len: hlen as u64,
            limit: MAX_DATA_HEADER,
        }
        .into());
    }
    let mut left = len.checked_sub(2 + hlen).ok_or(ProtocolError::Truncated)?;
    let mut h = vec![0u8; hlen];
    read_exact_or(recv, &mut h).await?;
    let chunk_header = frame::decode_chunk_header(&h)?;
    let mut hasher = LeafHasher::new();
    let mut pieces = Vec::new();
    while left > 0 {
        match recv.read_chunk(left, true).await? {
            Some(c) => {
                let n = c.bytes.len().min(left);
                hasher.update(&c.bytes);
                left -= n;
                pieces.push(c.bytes);
            }
            None => return Err(ProtocolError::Truncated.into()),
        }
    }
    Ok(Some(ChunkReply::Data {
        header: chunk_header,
        leaf: hasher.finish(),
        pieces,
    }))
}

/// Checks a frame header against the type's maximum, the types accepted here and the
/// caller's `limit`.
pub(crate) fn check_header(
    head: &[u8; HEADER_LEN],
    accept: Accept,
    limit: u32,
) -> Result<FrameHeader, ProtocolError> {
    let header = FrameHeader::parse(head)?;
    if accept == Accept::Control && header.kind != FrameType::Control {
        return Err(ProtocolError::Invalid {
            what: "frame",
            why: "a data frame where a control frame is expected",
        });
    }
    if header.len > limit {
        return Err(ProtocolError::FrameTooLarge {
            len: u64::from(header.len),
            limit,
        });
    }
    Ok(header)
}

/// Checks that `frame` is exactly one whole frame of an accepted type (what we send must
/// pass what the peer checks).
pub(crate) fn check_whole_frame(frame: &[u8], accept: Accept) -> Result<(), ProtocolError> {
    let (head, payload) = frame
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(ProtocolError::Truncated)?;
    let header = check_header(head, accept, FrameType::Data.max_len())?;
    let len = header.len as usize;
    if payload.len() < len {
        return Err(ProtocolError::Truncated);
    }
    if payload.len() > len {
        return Err(ProtocolError::TrailingBytes(payload.len() - len));
    }
    Ok(())
}

/// Stops the receiving side of a stream whose frame was refused (the peer's writes fail at
/// once instead of filling our window).
pub(crate) fn refuse_rest(recv: &mut quinn::RecvStream) {
    // Fails only if the stream is already stopped or finished: nothing left to refuse.
    let _ = recv.stop(quinn::VarInt::from_u32(stream_code::REFUSED_FRAME));
}
