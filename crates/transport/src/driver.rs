//! Runs a sans-I/O [`Session`] over a [`Connection`]: the one loop that turns the
//! session's transmits into streams, streams into `handle_*` calls, and its timer into a
//! tokio sleep. One task owns the session; the application reaches it through a
//! [`Driver`] handle and answers its events through a [`SessionApp`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tds_core::hash::Hash256;
use tds_core::{Clock, Timestamp};
use tds_protocol::session::{Event, InId, OutId, PlacedChunk, Session, Transmit};
use tds_protocol::Refusal;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{ChunkReply, Connection, Responder, TransportError};

/// What a driven session asks of the application.
pub trait SessionApp: Send + 'static {
    /// An event of the session. Decisions (manual mode) may call the session at once.
    fn event(&mut self, session: &mut Session, now: Timestamp, event: Event);

    /// A chunk that verified against the manifest: store its bytes (`pieces`, in order,
    /// as QUIC delivered them) at `place.offset`. An error terminates the transfer, and
    /// the chunk no longer counts as verified ([`Session::chunk_not_stored`]).
    fn chunk(&mut self, place: &PlacedChunk, pieces: &[Bytes]) -> Result<(), Refusal>;

    /// Provider: the bytes of chunk `index` of `asset` (`len` bytes at `offset`) and its
    /// inclusion path.
    fn read_chunk(
        &mut self,
        asset: &str,
        index: u64,
        offset: u64,
        len: u64,
    ) -> Result<(Bytes, Vec<Hash256>), Refusal>;
}

type Call = Box<dyn FnOnce(&mut Session, Timestamp) + Send>;

/// Longest time one reply (a chunk, at most 16 MiB) may take to write before its stream
/// is reset.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// A handle to a driven session.
#[derive(Clone, Debug)]
pub struct Driver {
    calls: mpsc::Sender<Call>,
}

impl Driver {
    /// Starts the loop for `session` on `conn` in a new task. The task ends when the
    /// connection closes (its error is the task's result) or every [`Driver`] handle is
    /// dropped; then every transfer still in progress is terminated with the error's code
    /// ([`Session::handle_closed`]) and the app gets those events before the task ends.
    pub fn spawn<A: SessionApp>(
        conn: Connection,
        session: Session,
        app: A,
        clock: Arc<dyn Clock>,
    ) -> (Driver, JoinHandle<TransportError>) {
        Driver::spawn_with(conn, session, |_| app, clock)
    }

    /// As [`Driver::spawn`], with the app made from the session's [`Driver`] before the
    /// loop starts: an app that calls back into its own session from the events it gets
    /// has its handle before the first event, however early the peer speaks.
    pub fn spawn_with<A: SessionApp>(
        conn: Connection,
        session: Session,
        app: impl FnOnce(Driver) -> A,
        clock: Arc<dyn Clock>,
    ) -> (Driver, JoinHandle<TransportError>) {
        let (calls, rx) = mpsc::channel(64);
        let driver = Driver { calls };
        let app = app(driver.clone());
        let task = tokio::spawn(run(conn, session, app, clock, rx));
        (driver, task)
    }

    /// Runs `f` on the session inside its task, with the current time, and returns what
    /// it returns.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session, Timestamp) -> R + Send + 'static,
    ) -> Result<R, TransportError> {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |s, now| {
            let _ = tx.send(f(s, now));
        });
        self.calls
            .send(call)
            .await
            .map_err(|_| TransportError::Task("the session's driver has stopped".into()))?;
        rx.await
            .map_err(|_| TransportError::Task("the session's driver has stopped".into()))
    }
}

struct Loop<A> {
    conn: Connection,
    session: Session,
    app: A,
    clock: Arc<dyn Clock>,
    responders: HashMap<InId, Responder>,
    replies: mpsc::Sender<(OutId, Result<ChunkReply, TransportError>)>,
}

async fn run<A: SessionApp>(
    conn: Connection,
    session: Session,
    app: A,
    clock: Arc<dyn Clock>,
    mut calls: mpsc::Receiver<Call>,
) -> TransportError {
    let (replies, mut reply_rx) = mpsc::channel(64);
    // Requests of the peer are accepted in their own task, so a cancelled wait never
    // loses a half-read stream.
    let (req_tx, mut req_rx) = mpsc::channel::<(Vec<u8>, Responder)>(64);
    let acceptor = {
        let conn = conn.clone();
        tokio::spawn(async move {
            loop {
                match conn.accept_request().await {
                    Ok(r) => {
                        if req_tx.send(r).await.is_err() {
                            return TransportError::Task("driver stopped".into());
                        }
                    }
                    Err(e) => return e,
                }
            }
        })
    };
    let mut l = Loop {
        conn,
        session,
        app,
        clock,
        responders: HashMap::new(),
        replies,
    };
    let mut next_in = 0u64;
    let error = loop {
        l.drain();
        let now = l.now();
        let sleep = l
            .session
            .poll_timeout()
            .map(|t| Duration::from_millis(t.as_millis().saturating_sub(now.as_millis())))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            call = calls.recv() => match call {
                Some(f) => { let now = l.now(); f(&mut l.session, now) }
                None => break TransportError::Task("every driver handle was dropped".into()),
            },
            req = req_rx.recv() => match req {
                Some((frame, responder)) => {
                    let id = InId(next_in);
                    next_in = next_in.wrapping_add(1);
                    l.responders.insert(id, responder);
                    let now = l.now();
                    l.session.handle_request(now, id, &frame);
                }
                None => break TransportError::Task("the request acceptor stopped".into()),
            },
            reply = reply_rx.recv() => if let Some((id, result)) = reply {
                let now = l.now();
                match result {
                    Ok(ChunkReply::Control(frame)) => {
                        // A control reply carries no chunk (an `error`, or any other reply).
                        let _ = l.session.handle_reply(now, id, &frame);
                    }
                    Ok(ChunkReply::Data { header, leaf, pieces }) => {
                        if let Some(place) = l.session.handle_chunk(now, id, header, &leaf) {
                            if let Err(r) = l.app.chunk(&place, &pieces) {
                                l.session.chunk_not_stored(now, &place, &r.code, &r.reason);
                            }
                        }
                    }
                    Err(_) => l.session.handle_failure(now, id),
                }
            },
            () = tokio::time::sleep(sleep) => {
                let now = l.now();
                l.session.handle_timeout(now);
            }
            closed = l.conn.closed() => break closed,
        }
    };
    acceptor.abort();
    // The session ends the transfers it had in progress and the app hears of each (what
    // the app sends in answer is dropped with the session: no connection carries it).
    let now = l.now();
    l.session
        .handle_closed(now, tds_core::ErrorCode::code(&error), &error.to_string());
    while let Some(event) = l.session.poll_event() {
        if !matches!(event, Event::ChunkWanted { .. }) {
            l.app.event(&mut l.session, now, event);
        }
    }
    error
}

impl<A: SessionApp> Loop<A> {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the session's output out until it has none: its events to the app first,
    /// then its frames to the wire, so what the app does synchronously on an event
    /// (marking an agreement terminated, say) is done before the ack that tells the peer
    /// the message arrived.
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(e) = self.session.poll_event() {
                progressed = true;
                let now = self.now();
                match e {
                    Event::ChunkWanted {
                        reply,
                        asset,
                        index,
                        offset,
                        len,
                        ..
                    } => self.serve(now, reply, &asset, index, offset, len),
                    other => self.app.event(&mut self.session, now, other),
                }
            }
            while let Some(t) = self.session.poll_transmit() {
                progressed = true;
                self.transmit(t);
            }
            if !progressed {
                return;
            }
        }
    }

    fn transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Request { id, frame, data } => {
                let conn = self.conn.clone();
                let replies = self.replies.clone();
                tokio::spawn(async move {
                    let result = async {
                        let mut reply = conn.request_frame(&frame).await?;
                        let first = if data {
                            reply.next_chunk().await?
                        } else {
                            reply.next().await?.map(ChunkReply::Control)
                        };
                        first.ok_or(TransportError::Frame(
                            tds_protocol::ProtocolError::Truncated,
                        ))
                    }
                    .await;
                    let _ = replies.send((id, result)).await;
                });
            }
            Transmit::Reply { to, frame } => {
                if let Some(mut responder) = self.responders.remove(&to) {
                    tokio::spawn(async move {
                        if responder.send_frame(&frame).await.is_ok() {
                            let _ = responder.finish().await;
                        }
                    });
                }
            }
        }
    }

    fn serve(
        &mut self,
        now: Timestamp,
        reply: InId,
        asset: &str,
        index: u64,
        offset: u64,
        len: u64,
    ) {
        let header = self
            .app
            .read_chunk(asset, index, offset, len)
            .and_then(|(bytes, path)| {
                self.session
                    .chunk_header(now, reply, bytes.len() as u64, path)
                    .map(|h| (h, bytes))
                    .map_err(|e| e.refusal)
            });
        match header {
            Ok((header, bytes)) => {
                if let Some(mut responder) = self.responders.remove(&reply) {
                    tokio::spawn(async move {
                        // A consumer that stops reading cannot pin the chunk for ever: the
                        // write gives up (the dropped responder resets the stream).
                        let sent =
                            tokio::time::timeout(SEND_TIMEOUT, responder.send_data(&header, bytes))
                                .await;
                        if matches!(sent, Ok(Ok(()))) {
                            let _ = responder.finish().await;
                        }
                    });
                }
            }
            Err(r) => self.session.refuse_chunk(reply, r),
        }
    }
}
