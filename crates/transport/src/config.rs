//! Timeouts and per-peer limits.

use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, VarInt};

use crate::error::TransportError;

/// Timeouts, keep-alive and per-peer limits of an endpoint. The defaults suit a data
/// space of a few hundred peers on ordinary networks; every field is checked when the
/// endpoint is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Longest time from the first packet of a connection until both hellos have passed
    /// (TLS handshake, hello exchange, credential checks). Default 10 s.
    pub hello_timeout: Duration,
    /// A connection with no packets for this long is closed. Default 30 s.
    pub idle_timeout: Duration,
    /// Send a keep-alive after this long without traffic (less than `idle_timeout`).
    /// Default 10 s.
    pub keep_alive: Duration,
    /// Requests (bidirectional streams) a peer may have open at once. Default 64.
    pub max_concurrent_streams: u32,
    /// Bytes a peer may have in flight on one stream before it waits for us to read.
    /// Default 2 MiB (a 1 MiB chunk and its successor).
    pub stream_window: u32,
    /// Bytes a peer may have in flight on one connection, over all streams. Default
    /// 16 MiB.
    pub connection_window: u32,
    /// Bytes we keep unacknowledged towards one peer. Default 16 MiB.
    pub send_window: u64,
    /// Chunk requests [`Connection::transfer`](crate::Connection::transfer) keeps in
    /// flight at once by default. Default 4.
    pub transfer_parallelism: usize,
    /// Connections being handshaken at once; more are refused at once. Default 128.
    pub max_pending_handshakes: usize,
    /// Accepted connections waiting for [`Endpoint::accept`](crate::Endpoint::accept).
    /// Default 64.
    pub accept_queue: usize,
    /// How long a refusing side waits for its `error` message to be acknowledged before
    /// it closes the connection. Default 1 s.
    pub refusal_linger: Duration,
    /// Longest time one request frame may take to arrive whole once its stream opened.
    /// A slower one (a peer that declares a frame and sends it a byte at a time, or
    /// never) is refused with `transport.timeout` and its stream stopped, so it holds
    /// neither the connection's later requests nor its buffer for longer. Default 10 s,
    /// the protocol's reply timeout: a requester has given up on it by then anyway.
    pub request_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            max_concurrent_streams: 64,
            stream_window: 2 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            send_window: 16 * 1024 * 1024,
            transfer_parallelism: 4,
            max_pending_handshakes: 128,
            accept_queue: 64,
            refusal_linger: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl TransportConfig {
    /// Checks the values fit together.
    pub fn check(&self) -> Result<(), TransportError> {
        let bad = |why: &str| Err(TransportError::Config(why.to_owned()));
        if self.hello_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.request_timeout.is_zero()
        {
            return bad("timeouts must be positive");
        }
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad("keep_alive must be positive and shorter than idle_timeout");
        }
        if self.max_concurrent_streams == 0 {
            return bad("max_concurrent_streams must be at least 1");
        }
        if self.stream_window == 0 || self.connection_window < self.stream_window {
            return bad("stream_window must be positive and at most connection_window");
        }
        if self.send_window == 0 {
            return bad("send_window must be positive");
        }
        if self.transfer_parallelism == 0
            || self.max_pending_handshakes == 0
            || self.accept_queue == 0
        {
            return bad(
                "transfer_parallelism, max_pending_handshakes and accept_queue must be at least 1",
            );
        }
        Ok(())
    }

    /// The quinn transport parameters a connection starts with. Until its hello passed a
    /// peer may open one bidirectional stream (the hello's) and have at most
    /// [`HELLO_WINDOW`] bytes in flight, so an unauthenticated peer cannot make us buffer
    /// more; [`TransportConfig::open_up`] raises both to the configured limits afterwards.
    /// Unidirectional streams and datagrams are off: the protocol uses neither, so a peer
    /// cannot park data in them.
    pub fn quinn(&self) -> Result<Arc<quinn::TransportConfig>, TransportError> {
        self.check()?;
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| TransportError::Config("idle_timeout is too long".into()))?;
        let mut t = quinn::TransportConfig::default();
        t.max_concurrent_bidi_streams(VarInt::from_u32(1))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .stream_receive_window(VarInt::from_u32(self.stream_window))
            .receive_window(VarInt::from_u32(HELLO_WINDOW.min(self.connection_window)))
            .send_window(self.send_window)
            .max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive))
            .datagram_receive_buffer_size(None);
        Ok(Arc::new(t))
    }

    /// Raises a connection whose hello passed to the configured stream count and
    /// connection window (the endpoint does this; public for benches that compare raw
    /// quinn with the same settings).
    pub fn open_up(&self, conn: &quinn::Connection) {
        conn.set_max_concurrent_bi_streams(VarInt::from_u32(self.max_concurrent_streams));
        conn.set_receive_window(VarInt::from_u32(self.connection_window));
    }
}

/// Bytes a peer may have in flight before its hello passed: the largest hello frame
/// (a 1 MiB control frame) and some room.
pub const HELLO_WINDOW: u32 = tds_protocol::frame::MAX_CONTROL + 64 * 1024;
