//! The TDS connector protocol without I/O: frames, messages, and the two Dataspace
//! Protocol (DSP 2025-1) state machines — contract negotiation and transfer process —
//! as a deterministic [`Session`] per connected peer. No sockets, no clock, no
//! randomness inside: bytes and time go in, bytes, events and timers come out (the
//! quinn-proto model). `tds-transport` moves the bytes over QUIC; [`sim`] moves them
//! over a simulated network in tests. `spec/protocol.md` is the byte-level description.
//!
//! # Driving a session
//!
//! The transport verified the peer's membership credential when the connection was set
//! up ([`message::Hello`]); a [`Session`] starts from that [`tds_identity::VerifiedCredential`],
//! this side's signing key, a [`Host`] (state that outlives the session: agreements,
//! usage, assets, nonces) and a random source. Then, in any order the I/O gives:
//!
//! 1. **Input.** A whole request of the peer arrived on a stream: call
//!    [`Session::handle_request`] with an id for that stream ([`InId`]). The reply to one
//!    of this side's requests arrived: [`Session::handle_reply`] with the request's
//!    [`OutId`] (a verified chunk comes back for the caller to store). The stream of a
//!    request failed: [`Session::handle_failure`]. The application decided something:
//!    the call for it ([`Session::request_contract`], [`Session::agree`],
//!    [`Session::request_transfer`], [`Session::send_chunk`],
//!    [`Session::terminate_agreement`], [`Session::send_usage_report`], ...).
//! 2. **Output, after every input.** Drain [`Session::poll_transmit`] (each
//!    [`Transmit::Request`] opens a stream; each [`Transmit::Reply`] answers one) and
//!    [`Session::poll_event`] (what the application must record or decide).
//! 3. **Time.** Arm one timer for [`Session::poll_timeout`]; when it fires, call
//!    [`Session::handle_timeout`] with the current time, then drain the output again.
//! 4. **End.** When the connection is gone, call [`Session::handle_closed`] and drain the
//!    events: every transfer still in progress ends with a `TransferTerminated` event the
//!    application records (the transmits have nowhere to go).
//!
//! Every call takes `now` explicitly; the session never reads a clock.
//!
//! ```
//! use tds_core::Timestamp;
//! use tds_protocol::{Event, Session, Transmit};
//!
//! /// What a driver does after every input: move the output out, handle the events.
//! fn drain(session: &mut Session, send: &mut Vec<Transmit>, now: Timestamp) -> Option<Timestamp> {
//!     while let Some(t) = session.poll_transmit() {
//!         send.push(t);
//!     }
//!     while let Some(e) = session.poll_event() {
//!         if let Event::Finalized { agreement, .. } = e {
//!             // Record the agreement where the host will find it.
//!             let _ = agreement.id();
//!         }
//!     }
//!     let _ = now;
//!     session.poll_timeout()
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod catalog;
pub mod error;
pub mod frame;
pub mod join;
pub mod message;
pub mod session;
pub mod signed;
pub mod sim;
pub mod state;

pub use error::ProtocolError;
pub use message::{Message, Pid, Refusal};
pub use session::{Config, Event, Host, InId, Mode, OutId, Session, TransferContext, Transmit};
pub use signed::{Notice, TransferReceipt};
pub use state::{NegotiationState, Role, TransferState};
