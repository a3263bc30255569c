//! A connection whose hello passed: requests and replies, one bidirectional stream each.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use quinn::VarInt;
use tds_identity::{ParticipantId, VerifiedCredential};
use tds_protocol::frame::{self, ChunkHeader, MAX_CONTROL, MAX_DATA};
use tds_protocol::{Message, Refusal};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::endpoint::Shared;
use crate::error::{close_reason, refusal_of, Closer, TransportError};
use crate::wire::{
    check_whole_frame, read_chunk_reply, read_frame, refuse_rest, stream_code, Accept, ChunkReply,
};

/// Why we closed a connection, kept so our own side can report it; and the peer's
/// requests still arriving.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    closed: Mutex<Option<(u32, Refusal)>>,
    /// One task per request stream of the peer still being read (at most the stream
    /// limit): each reads its frame within the request timeout or refuses it, so a slow
    /// stream never holds up the ones opened after it.
    arriving: tokio::sync::Mutex<JoinSet<Option<Request>>>,
}

/// A request of the peer: its whole frame and the responder for its reply.
type Request = (Vec<u8>, Responder);

impl ConnState {
    /// Closes `conn` with `code` and `refusal` (the first reason given wins).
    pub(crate) fn close(&self, conn: &quinn::Connection, code: u32, refusal: Refusal) {
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        if closed.is_none() {
            conn.close(VarInt::from_u32(code), &close_reason(&refusal));
            *closed = Some((code, refusal));
        }
    }

    fn local_close(&self) -> Option<(u32, Refusal)> {
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A connection to a peer whose credential verified and whose TLS key it names. Cheap to
/// clone; all clones are the same connection.
#[derive(Clone)]
pub struct Connection {
    conn: quinn::Connection,
    peer: Arc<VerifiedCredential>,
    version: u64,
    state: Arc<ConnState>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.conn.remote_address())
            .field("peer", &self.peer.subject())
            .field("version", &self.version)
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(
        conn: quinn::Connection,
        peer: Arc<VerifiedCredential>,
        version: u64,
        state: Arc<ConnState>,
        shared: Arc<Shared>,
    ) -> Self {
        Connection {
            conn,
            peer,
            version,
            state,
            shared,
        }
    }

    /// The peer's verified credential (its subject key is the connection's TLS key).
    pub fn peer(&self) -> &VerifiedCredential {
        &self.peer
    }

    /// The peer's participant id.
    pub fn peer_id(&self) -> ParticipantId {
        self.peer.subject()
    }

    /// The protocol version both sides agreed on.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// The underlying QUIC connection (for statistics, and for tests that must speak
    /// below the frame layer).
    pub fn quic(&self) -> &quinn::Connection {
        &self.conn
    }

    /// An error from quinn, with our own close reason if we closed the connection.
    fn err(&self, e: impl Into<TransportError>) -> TransportError {
        let e = e.into();
        match (&e, self.state.local_close()) {
            (
                TransportError::Lost(quinn::ConnectionError::LocallyClosed),
                Some((code, refusal)),
            ) => TransportError::Closed {
                by: Closer::Local,
                close_code: u64::from(code),
                refusal,
            },
            _ => e,
        }
    }

    /// Sends a request (one control message) on a new stream and returns its reply.
    pub async fn request(&self, message: &Message) -> Result<Reply, TransportError> {
        let frame = frame::encode_control(message)?;
        self.request_frame(&frame).await
    }

    /// Sends a request that is already one whole control frame (as
    /// [`frame::encode_control`] makes it) and returns its reply.
    pub async fn request_frame(&self, frame: &[u8]) -> Result<Reply, TransportError> {
        check_whole_frame(frame, Accept::Control)?;
        let (mut send, recv) = self.conn.open_bi().await.map_err(|e| self.err(e))?;
        match send.write_all(frame).await {
            // A responder that refused the frame stops reading; its refusal is the reply.
            Ok(()) | Err(quinn::WriteError::Stopped(_)) => {}
            Err(e) => return Err(self.err(e)),
        }
        let _ = send.finish();
        Ok(Reply {
            recv,
            done: false,
            conn: self.clone(),
        })
    }

    /// Waits for the peer's next request: one control frame on a new stream (whole, with
    /// its header), and the responder for the reply. A request stream whose frame is
    /// refused (too large, not a control frame) is answered with an `error` message here
    /// and not returned. Fails when the connection is closed.
    ///
    /// The peer's streams are read at the same time, each on its own: a request is
    /// returned as soon as its frame is whole, so requests may come back in another order
    /// than their streams were opened. A request frame must arrive whole within
    /// [`TransportConfig::request_timeout`](crate::TransportConfig::request_timeout) of
    /// its stream opening; a slower one is refused (`transport.timeout`) the same way.
    pub async fn accept_request(&self) -> Result<Request, TransportError> {
        let limit = self.shared.config.request_timeout;
        let mut arriving = self.state.arriving.lock().await;
        loop {
            tokio::select! {
                Some(read) = arriving.join_next() => {
                    if let Ok(Some(request)) = read {
                        return Ok(request);
                    }
                }
                accepted = self.conn.accept_bi() => {
                    let (send, recv) = accepted.map_err(|e| self.err(e))?;
                    arriving.spawn(read_request(send, recv, limit));
                }
            }
        }
    }

    /// Sends `requests` (whole control frames, typically chunk requests) with at most
    /// `parallelism` in flight (default [`TransportConfig::transfer_parallelism`](crate::TransportConfig::transfer_parallelism)),
    /// each on its own stream, and hands every reply frame to `sink` with the index of its
    /// request. Frames of one request arrive in order; requests interleave.
    ///
    /// Backpressure: at most `2 * parallelism` frames wait for `sink`; while it is busy,
    /// the request tasks stop reading, and QUIC flow control stops the responder.
    pub async fn transfer<F>(
        &self,
        requests: Vec<Vec<u8>>,
        parallelism: Option<usize>,
        mut sink: F,
    ) -> Result<(), TransportError>
    where
        F: FnMut(usize, Vec<u8>) -> Result<(), TransportError>,
    {
        let parallelism = parallelism
            .unwrap_or(self.shared.config.transfer_parallelism)
            .max(1);
        let queue = Arc::new(Mutex::new(
            requests.into_iter().enumerate().collect::<VecDeque<_>>(),
        ));
        let (tx, mut rx) =
            mpsc::channel::<Result<(usize, Vec<u8>), TransportError>>(2 * parallelism);
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..parallelism {
            let (conn, queue, tx) = (self.clone(), queue.clone(), tx.clone());
            workers.spawn(async move {
                loop {
                    let next = queue
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    let Some((index, request)) = next else { return };
                    let result = async {
                        let mut reply = conn.request_frame(&request).await?;
                        while let Some(frame) = reply.next().await? {
                            if tx.send(Ok((index, frame))).await.is_err() {
                                break;
                            }
                        }
                        Ok::<(), TransportError>(())
                    }
                    .await;
                    if let Err(e) = result {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            });
        }
        drop(tx);
        while let Some(item) = rx.recv().await {
            let (index, frame) = item?;
            sink(index, frame)?;
        }
        while let Some(joined) = workers.join_next().await {
            joined.map_err(|e| TransportError::Task(e.to_string()))?;
        }
        Ok(())
    }

    /// Closes the connection with application close code `code` and `refusal` as the
    /// reason.
    pub fn close(&self, code: u32, refusal: Refusal) {
        self.state.close(&self.conn, code, refusal);
    }

    /// Waits until the connection is closed and says why.
    pub async fn closed(&self) -> TransportError {
        let e = self.conn.closed().await;
        self.err(e)
    }
}

/// Reads one request of the peer from a new stream within `limit`: the whole frame and
/// the responder for its reply; `None` for a stream that ended or was reset before a
/// frame, or whose frame was refused (too large, not a control frame, too slow), which
/// is answered with an `error` message here. A failed connection is `None` too: the next
/// `accept_bi` reports it.
async fn read_request(
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    limit: std::time::Duration,
) -> Option<Request> {
    let responder = Responder { send: Some(send) };
    let read = tokio::time::timeout(limit, read_frame(&mut recv, Accept::Control, MAX_CONTROL))
        .await
        .unwrap_or(Err(TransportError::Timeout("a request frame")));
    let refusal = match read {
        Ok(Some(frame)) => return Some((frame, responder)),
        Err(TransportError::Frame(e)) => refusal_of(&e),
        Err(e @ TransportError::Timeout(_)) => refusal_of(&e),
        Ok(None) | Err(_) => return None,
    };
    refuse_rest(&mut recv);
    let _ = responder.reply(&Message::Error(refusal)).await;
    None
}

/// The reply to a request: the frames the responder sends, until it finishes the stream.
/// Dropping it before the end tells the responder to stop.
pub struct Reply {
    recv: quinn::RecvStream,
    done: bool,
    conn: Connection,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("done", &self.done).finish()
    }
}

impl Reply {
    /// The next reply frame (control or data, whole with its header), or `None` after the
    /// last. The header is checked before the payload is read.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        if self.done {
            return Ok(None);
        }
        match read_frame(&mut self.recv, Accept::Any, MAX_DATA).await {
            Ok(Some(f)) => Ok(Some(f)),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                if matches!(e, TransportError::Frame(_)) {
                    refuse_rest(&mut self.recv);
                }
                Err(self.conn.err(e))
            }
        }
    }

    /// The next reply frame to a chunk request, reading a data frame's chunk as QUIC
    /// delivers it: hashed on the way, kept in its pieces, never copied into one buffer.
    /// `None` after the last frame.
    pub async fn next_chunk(&mut self) -> Result<Option<ChunkReply>, TransportError> {
        if self.done {
            return Ok(None);
        }
        match read_chunk_reply(&mut self.recv).await {
            Ok(Some(f)) => Ok(Some(f)),
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                if matches!(e, TransportError::Frame(_)) {
                    refuse_rest(&mut self.recv);
                }
                Err(self.conn.err(e))
            }
        }
    }

    /// Reads the reply to its end, expecting exactly one control message.
    pub async fn message(mut self) -> Result<Message, TransportError> {
        let frame = self
            .next()
            .await?
            .ok_or(tds_protocol::ProtocolError::Truncated)?;
        if self.next().await?.is_some() {
            return Err(tds_protocol::ProtocolError::Invalid {
                what: "reply",
                why: "more than one frame where one message was expected",
            }
            .into());
        }
        match frame::decode(&frame)? {
            frame::Frame::Control(m) => Ok(m),
            frame::Frame::Data(..) => Err(tds_protocol::ProtocolError::Invalid {
                what: "reply",
                why: "a data frame where a message was expected",
            }
            .into()),
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.recv.stop(VarInt::from_u32(stream_code::CANCELLED));
        }
    }
}

/// Sends the reply to one request: data frames, then optionally one control message, then
/// the end of the stream. Dropped without [`Responder::finish`] or [`Responder::reply`],
/// the stream is reset, so a partial reply never looks complete.
pub struct Responder {
    send: Option<quinn::SendStream>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("open", &self.send.is_some())
            .finish()
    }
}

impl Responder {
    fn stream(&mut self) -> Result<&mut quinn::SendStream, TransportError> {
        self.send
            .as_mut()
            .ok_or_else(|| TransportError::Task("the reply is already finished".into()))
    }

    /// Sends one data frame: the head ([`frame::encode_data_head`]) and then `chunk`
    /// itself, handed to QUIC without a copy. Waits while the peer's window is full.
    pub async fn send_data(
        &mut self,
        header: &ChunkHeader,
        chunk: Bytes,
    ) -> Result<(), TransportError> {
        let head = frame::encode_data_head(header, chunk.len())?;
        let send = self.stream()?;
        send.write_all(&head).await?;
        send.write_chunk(chunk).await?;
        Ok(())
    }

    /// Sends one whole frame as it is (checked to be exactly one frame).
    pub async fn send_frame(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        check_whole_frame(frame, Accept::Any)?;
        self.stream()?.write_all(frame).await?;
        Ok(())
    }

    /// Sends `message` as the last frame and ends the reply.
    pub async fn reply(mut self, message: &Message) -> Result<(), TransportError> {
        let frame = frame::encode_control(message)?;
        self.stream()?.write_all(&frame).await?;
        self.finish_now()
    }

    /// Ends the reply.
    pub async fn finish(mut self) -> Result<(), TransportError> {
        self.finish_now()
    }

    fn finish_now(&mut self) -> Result<(), TransportError> {
        match self.send.take() {
            Some(mut send) => Ok(send.finish()?),
            None => Ok(()),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(mut send) = self.send.take() {
            let _ = send.reset(VarInt::from_u32(stream_code::ABANDONED));
        }
    }
}
