//! Catalog queries, revocation notices and checkpoint exchange.

use std::sync::Arc;

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_core::{merkle, Timestamp};
use tds_manifest::VerifiedManifest;
use tds_policy::contract::VerifiedOffer;
use tds_provenance::note::{self, VerifierKey};

use super::{refusal_of, CallError, Event, OutId, Outstanding, Purpose as Why, Session};
use crate::message::{
    CatalogFilter, CatalogPageMsg, CatalogRequestMsg, CheckpointMsg, CheckpointRequestMsg, Message,
    Refusal, RevocationNoticeMsg, MAX_PAGE,
};

/// Most consistency-proof hashes accepted (a tree of at most 2^64 leaves).
const MAX_CONSISTENCY: usize = 128;

/// A catalog result whose offer and manifest were both checked: the offer is the peer's,
/// the manifest is the peer's and is the offered asset.
#[derive(Clone, Debug)]
pub struct CatalogResult {
    /// The offer.
    pub offer: Arc<VerifiedOffer>,
    /// Its signed bytes (what [`Session::request_contract`] takes).
    pub offer_bytes: Vec<u8>,
    /// The manifest.
    pub manifest: Arc<VerifiedManifest>,
}

/// A checkpoint of the peer's log, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSeen {
    /// The tree size.
    pub size: u64,
    /// The root.
    pub root: Hash256,
    /// The witnesses (of those this side trusts) whose cosignature verified.
    pub witnessed_by: Vec<String>,
    /// The note (keep it as evidence).
    pub note: Vec<u8>,
}

/// What this side knows of the peer's log.
#[derive(Clone, Debug)]
pub(super) struct PeerLog {
    key: VerifierKey,
    witnesses: Vec<VerifierKey>,
}

impl Session {
    /// Asks the peer's catalog. The page comes as [`Event::CatalogPage`] with this id.
    pub fn query_catalog(
        &mut self,
        now: Timestamp,
        filter: CatalogFilter,
        cursor: Option<Vec<u8>>,
        limit: u64,
    ) -> Result<OutId, CallError> {
        let m = Message::CatalogRequest(CatalogRequestMsg {
            filter,
            cursor: cursor.map(ByteBuf::from),
            limit: limit.clamp(1, MAX_PAGE),
        });
        self.send(now, Why::Catalog, &m, false)
    }

    pub(super) fn on_catalog_request(
        &mut self,
        _now: Timestamp,
        r: CatalogRequestMsg,
    ) -> Result<Message, Refusal> {
        let page = self.host.catalog(
            &r.filter,
            r.cursor.as_deref().map(|c| c.as_slice()),
            r.limit.clamp(1, MAX_PAGE),
        )?;
        Ok(Message::CatalogPage(page))
    }

    pub(super) fn catalog_arrived(&mut self, o: &Outstanding, page: CatalogPageMsg) {
        let query = self.outstanding_id_of(o).unwrap_or(OutId(u64::MAX));
        match self.check_page(page) {
            Ok((items, next)) => self
                .events
                .push_back(Event::CatalogPage { query, items, next }),
            Err(refusal) => {
                // A page that does not check (an offer not the peer's, a manifest that
                // does not match, a page over its limits) is the peer's violation too.
                self.events.push_back(Event::PeerViolation {
                    message: "catalog_page",
                    pid: None,
                    refusal: refusal.clone(),
                });
                self.events.push_back(Event::Refused {
                    message: "catalog_request",
                    refusal,
                    query: Some(query),
                });
            }
        }
    }

    /// The reply's request id is no longer in the table once it arrived; the events name
    /// the first id the query was sent under.
    fn outstanding_id_of(&self, o: &Outstanding) -> Option<OutId> {
        o.first
    }

    fn check_page(
        &mut self,
        page: CatalogPageMsg,
    ) -> Result<(Vec<CatalogResult>, Option<Vec<u8>>), Refusal> {
        if page.items.len() as u64 > MAX_PAGE {
            return Err(Refusal::new(
                "catalog.page_too_large",
                "more entries than a page holds",
            ));
        }
        let peer = *self.peer.subject().as_hash();
        let mut items = Vec::with_capacity(page.items.len());
        for item in page.items {
            let offer = self
                .offers
                .verify(&item.offer)
                .map_err(|e| refusal_of(&e))?;
            if offer.offer().provider != peer {
                return Err(Refusal::new(
                    "catalog.not_peer_offer",
                    "an offer in the page is not the peer's",
                ));
            }
            let manifest = tds_manifest::open(&item.manifest)
                .and_then(|m| m.verify(self.peer.subject_key()))
                .map_err(|e| refusal_of(&e))?;
            if manifest.id().to_string() != offer.offer().asset.as_str() {
                return Err(Refusal::new(
                    "catalog.asset_mismatch",
                    "an offer in the page is not for the manifest beside it",
                ));
            }
            items.push(CatalogResult {
                offer: Arc::new(offer),
                offer_bytes: item.offer.into_vec(),
                manifest: Arc::new(manifest),
            });
        }
        Ok((items, page.next.map(ByteBuf::into_vec)))
    }

    /// Pushes a revocation list to the peer (the authority, or any member relaying it).
    pub fn send_revocation_notice(
        &mut self,
        now: Timestamp,
        crl: Vec<u8>,
    ) -> Result<OutId, CallError> {
        let m = Message::RevocationNotice(RevocationNoticeMsg {
            crl: ByteBuf::from(crl),
        });
        self.send(now, Why::Notice, &m, false)
    }

    /// Follows the peer's log: `key` verifies its checkpoints, `witnesses` are the
    /// witnesses this side trusts (a checkpoint must carry a cosignature of at least one
    /// when any are given), `last` the last checkpoint of that log this side verified.
    pub fn follow_log(
        &mut self,
        key: VerifierKey,
        witnesses: Vec<VerifierKey>,
        last: Option<(u64, Hash256)>,
    ) {
        self.peer_log = Some(PeerLog { key, witnesses });
        self.last_checkpoint = last;
    }

    /// Asks the peer for its latest checkpoint with a consistency proof from the last one
    /// seen. The answer comes as [`Event::Checkpoint`] or [`Event::SplitView`].
    pub fn request_checkpoint(&mut self, now: Timestamp) -> Result<OutId, CallError> {
        if self.peer_log.is_none() {
            return Err(CallError::new(
                "checkpoint.no_log_key",
                "call follow_log first: the peer's log key is not known",
            ));
        }
        let since = self.last_checkpoint;
        let m = Message::CheckpointRequest(CheckpointRequestMsg {
            since: since.map(|(s, _)| s),
        });
        self.send(now, Why::Checkpoint { since }, &m, false)
    }

    pub(super) fn checkpoint_arrived(&mut self, since: Option<(u64, Hash256)>, c: CheckpointMsg) {
        match self.check_checkpoint(since, &c) {
            Ok(Some(seen)) => {
                self.last_checkpoint = Some((seen.size, seen.root));
                self.events.push_back(Event::Checkpoint(seen));
            }
            Ok(None) => {}
            Err(refusal) => self.events.push_back(Event::Refused {
                message: "checkpoint_request",
                refusal,
                query: None,
            }),
        }
    }

    /// `Ok(None)`: a split view was raised.
    fn check_checkpoint(
        &mut self,
        since: Option<(u64, Hash256)>,
        c: &CheckpointMsg,
    ) -> Result<Option<CheckpointSeen>, Refusal> {
        let log = self.peer_log.clone().ok_or_else(|| {
            Refusal::new("checkpoint.no_log_key", "the peer's log key is not known")
        })?;
        if c.consistency.len() > MAX_CONSISTENCY {
            return Err(Refusal::new(
                "checkpoint.proof_too_long",
                "consistency proof too long",
            ));
        }
        let v = note::verify_checkpoint(&c.checkpoint, &log.key).map_err(|e| refusal_of(&e))?;
        let mut witnessed_by = Vec::new();
        for w in &log.witnesses {
            if note::verify_cosignature(v.note(), w).is_ok() {
                witnessed_by.push(w.name.clone());
            }
        }
        if !log.witnesses.is_empty() && witnessed_by.is_empty() {
            return Err(Refusal::new(
                "checkpoint.not_witnessed",
                "no trusted witness cosigned the checkpoint",
            ));
        }
        let cp = v.checkpoint();
        let (size, root) = (cp.size, cp.root);
        if let Some((old_size, old_root)) = since {
            let consistent = size >= old_size
                && (if size == old_size {
                    root == old_root
                } else {
                    merkle::verify_consistency(old_size, size, &c.consistency, &old_root, &root)
                        .is_ok()
                });
            if !consistent {
                self.events.push_back(Event::SplitView {
                    old_size,
                    old_root,
                    new_size: size,
                    new_root: root,
                    note: c.checkpoint.to_vec(),
                });
                return Ok(None);
            }
        }
        Ok(Some(CheckpointSeen {
            size,
            root,
            witnessed_by,
            note: c.checkpoint.to_vec(),
        }))
    }
}
