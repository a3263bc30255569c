//! N17: the provider's log stops taking appends (a full disk, a failed device). Every
//! step that must be recorded fails instead of going on unrecorded: an agreement is not
//! concluded (and never served) unless it is logged, a denial it cannot log is raised as
//! a `storage` alert, and so is every other failed append; once the log works again the
//! provider serves as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tds_connector::AlertKind;
use tds_core::hash::Hash256;
use tds_core::merkle::{MerkleError, NodeSource};
use tds_identity::Sector;
use tds_protocol::message::TransferRequestMsg;
use tds_protocol::{Message, Pid};
use tds_provenance::store::{LogStore, MemoryStore, StoreError};

use crate::common::*;

/// A log in memory whose appends fail while `fail` is set.
struct FailingLog {
    inner: MemoryStore,
    fail: Arc<AtomicBool>,
}

impl NodeSource for FailingLog {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash256, MerkleError> {
        self.inner.perfect(level, index)
    }
}

impl LogStore for FailingLog {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn append(&self, record: &[u8]) -> Result<u64, StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                file: "events".into(),
                source: std::io::Error::other("no space left on device (test)"),
            });
        }
        self.inner.append(record)
    }
    fn read(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        self.inner.read(index)
    }
    fn add_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        self.inner.add_checkpoint(note)
    }
    fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.checkpoints()
    }
    fn note_ids(&self, index: u64, ids: &[Hash256]) {
        self.inner.note_ids(index, ids);
    }
    fn entries_naming(&self, id: &Hash256) -> Result<Option<Vec<u64>>, StoreError> {
        self.inner.entries_naming(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_log_stops_what_it_cannot_record_and_raises_storage_alerts() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(11, Sector::POWER, "CN-SX")?;
    let bank = space.member(12, Sector::FINANCE, "CN-SX")?;
    let fail = Arc::new(AtomicBool::new(false));
    let provider = tds_connector::Connector::builder(
        grid.key.clone(),
        grid.credential.clone(),
        space.trust()?,
    )
    .revocation_list(space.crl.clone())
    .config(config())
    .memory()
    .log_store(Box::new(FailingLog {
        inner: MemoryStore::new(),
        fail: fail.clone(),
    }))
    .start()
    .await?;
    let mut events = Events(provider.subscribe());
    let consumer = connector(&space, &bank, None).await?;
    let dir = tempfile::tempdir()?;
    let published = publish(
        &provider,
        &grid,
        dir.path(),
        "a.bin",
        &data(200_000, 3),
        RESEARCH,
    )
    .await?;
    let addr = provider.local_addr()?;

    fail.store(true, Ordering::SeqCst);
    // A negotiation whose agreement cannot be logged is not concluded: the consumer is
    // told why, the operator gets a storage alert.
    let e = within(
        "a negotiation while the log fails",
        consumer.negotiate(addr, &published.offer, None, "research".parse()?),
    )
    .await?
    .err()
    .ok_or("concluded an agreement the log did not take")?;
    let code = e.refusal().map(|r| r.code.clone()).unwrap_or_default();
    assert_eq!(code, "store.io", "{e}");
    events.alert(AlertKind::Storage, &code).await?;
    // A consumer that countersigned such an agreement holds it, but the provider never
    // serves it: it was not recorded.
    let mut raw = Raw::connect(&space, &bank, addr).await?;
    let o = open_negotiation(&mut raw, &bank, &published.offer, 3).await?;
    let agreement = tds_policy::contract::countersign(bank.key.as_ref(), &o.half)?;
    let id = tds_policy::contract::verify_agreement(&agreement)?.id();
    assert_eq!(
        code_of(&raw.ask(&verification(&o, agreement)).await?),
        "ack"
    );
    let pid = o.consumer_pid;
    raw.expect("the negotiation's termination", |m| match m {
        Message::NegotiationTermination(n) if n.consumer_pid == pid => Some(()),
        _ => None,
    })
    .await?;
    assert!(provider
        .store()
        .get(tds_connector::store::Table::Agreements, id.as_bytes())?
        .is_none());
    let asked = Message::TransferRequest(TransferRequestMsg {
        consumer_pid: Pid::from_bytes([9; 16]),
        agreement: id,
        purpose: "research".parse()?,
        location: None,
        consent_ref: None,
        export_assessment_ref: None,
    });
    assert_eq!(
        code_of(&raw.ask(&asked).await?),
        "transfer.unknown_agreement"
    );
    // That denial could not be logged either: a storage alert says so. (Looked for in
    // any order: before the connector raised the denial's alert first, the failed append
    // of its record could come first, and a check for one after the other missed it —
    // the failure of session 7's clean-clone CI run.)
    events
        .alerts(&[
            (AlertKind::Denial, "transfer.unknown_agreement"),
            (AlertKind::Storage, &code),
        ])
        .await?;

    // The log works again: the provider serves.
    fail.store(false, Ordering::SeqCst);
    let a = within(
        "a negotiation after the log recovered",
        consumer.negotiate(addr, &published.offer, None, "research".parse()?),
    )
    .await??;
    let out = dir.path().join("out.bin");
    within(
        "a fetch after the log recovered",
        consumer.fetch(
            addr,
            &a.id(),
            tds_connector::FetchOptions::new(out.clone(), "research".parse()?),
        ),
    )
    .await??;
    assert_eq!(std::fs::read(out)?, data(200_000, 3));
    Ok(())
}

fn code_of(m: &Message) -> String {
    code(m)
}
