//! The TDS connector protocol without I/O.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod catalog;
pub mod error;
pub mod frame;
pub mod message;
pub mod session;
pub mod signed;
pub mod sim;
pub mod state;

pub use error::ProtocolError;
pub use message::{Message, Pid, Refusal};
pub use session::{Config, Event, Host, InId, Mode, OutId, Session, Transmit};
pub use signed::{Notice, TransferReceipt};
pub use state::{NegotiationState, Role, TransferState};
