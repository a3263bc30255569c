#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod event;
pub mod evidence;
pub mod log;
pub mod note;
pub mod proof;
pub mod storage;
pub mod store;
pub mod witness;
pub mod witnessed;

pub use event::{Event, EventBody};
pub use log::{CheckpointPolicy, Log, LogError};
pub use note::{Checkpoint, Note, VerifierKey};
pub use proof::{ConsistencyProof, InclusionProof};
pub use storage::{DirStorage, SimStorage, Storage};
pub use store::{FileStore, LogStore, MemoryStore};
pub use witness::{Witness, WitnessError};
pub use witnessed::{CosignedStore, DirCosignedStore};
