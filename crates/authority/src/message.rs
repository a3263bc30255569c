//! The messages of `tds-authority/1` (`spec/authority.md` §3): canonical CBOR, externally
//! tagged (a map of one entry, the message name to its body), carried one per control
//! frame, one request and its reply per stream.
//!
//! Decoders are strict: canonical CBOR only (`tds_core::cbor`), no unknown fields, the
//! whole message at most [`MAX_MESSAGE`] bytes (the transport checks the frame length
//! before it allocates; the CBOR decoder checks every declared length against the bytes
//! left before it allocates), and every list and text within the limits below, checked
//! before the message is acted on.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tds_core::cbor::{self, Limits};
use tds_core::hash::Hash256;
use tds_protocol::frame::CONTROL_LIMITS;
use tds_protocol::message::{CatalogFilter, CatalogItem, CatalogPageMsg};
use tds_protocol::Refusal;
use tds_provenance::ConsistencyProof;

use crate::error::AuthorityError;

/// Largest message (the control-frame maximum, 1 MiB).
pub const MAX_MESSAGE: usize = CONTROL_LIMITS.max_size;
/// Catalog entries in one `publish`.
pub const MAX_PUBLISH: usize = 64;
/// Largest signed offer or manifest in a catalog entry (bytes).
pub const MAX_ENTRY_OBJECT: usize = 64 * 1024;
/// Entries in one search page (also the largest `limit`).
pub const MAX_PAGE: u64 = 256;
/// Entries in a page when the request's `limit` is 0.
pub const DEFAULT_PAGE: u64 = 64;
/// Longest text in a search filter (bytes).
pub const MAX_FILTER_TEXT: usize = 256;
/// Longest checkpoint note (bytes).
pub const MAX_CHECKPOINT: usize = 16 * 1024;
/// Hashes in one consistency proof (a proof between two sizes below 2^64 needs at most
/// 2 * 64).
pub const MAX_PROOF_HASHES: usize = 128;

/// The limits messages are decoded with.
pub const LIMITS: Limits = CONTROL_LIMITS;

/// A member's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Request {
    /// The latest signed revocation list.
    RevocationList(RevocationListRequest),
    /// Publish catalog entries (the member's offers with their manifests).
    Publish(PublishRequest),
    /// Search the federated catalog.
    Search(SearchRequest),
    /// Cosign the member's log checkpoint.
    Cosign(CosignRequest),
}

/// `revocation_list`: no fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationListRequest {}

/// `publish`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The entries: a provider-signed offer and the owner-signed manifest it offers.
    pub items: Vec<CatalogItem>,
}

/// `search`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Sector, keyword text, classification, provider; every one given must match.
    pub filter: CatalogFilter,
    /// The `next` of the previous page, absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<ByteBuf>,
    /// Entries wanted (0: [`DEFAULT_PAGE`]; more than [`MAX_PAGE`]: [`MAX_PAGE`]).
    pub limit: u64,
}

/// `cosign`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignRequest {
    /// The checkpoint, a C2SP signed note signed by the member's log key (the member's
    /// participant key; the log is named after it).
    pub checkpoint: String,
    /// A consistency proof from the last checkpoint the authority cosigned for this log;
    /// absent for the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

/// A consistency proof (RFC 9162 §2.1.4) in binary form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// The older size.
    pub size1: u64,
    /// The newer size.
    pub size2: u64,
    /// The older root.
    pub root1: Hash256,
    /// The newer root.
    pub root2: Hash256,
    /// The proof hashes.
    pub hashes: Vec<Hash256>,
}

impl From<&ConsistencyProof> for Proof {
    fn from(p: &ConsistencyProof) -> Proof {
        Proof {
            size1: p.size1,
            size2: p.size2,
            root1: p.root1,
            root2: p.root2,
            hashes: p.proof.clone(),
        }
    }
}

impl From<Proof> for ConsistencyProof {
    fn from(p: Proof) -> ConsistencyProof {
        ConsistencyProof {
            size1: p.size1,
            size2: p.size2,
            root1: p.root1,
            root2: p.root2,
            proof: p.hashes,
        }
    }
}

/// The authority's reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Reply {
    /// To `revocation_list`.
    RevocationList(RevocationListReply),
    /// To `publish`: the ids of the offers now in the catalog.
    Published(PublishedReply),
    /// To `search`.
    Page(CatalogPageMsg),
    /// To `cosign`.
    Cosigned(CosignedReply),
    /// Refused, with a reason code. The same bytes as the connector protocol's `error`
    /// message, which the transport sends when it refuses a request itself.
    Error(Refusal),
}

/// `revocation_list` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationListReply {
    /// The authority-signed revocation list (COSE_Sign1).
    pub crl: ByteBuf,
}

/// `published` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedReply {
    /// The offer ids, in the order of the request's items.
    pub offers: Vec<Hash256>,
}

/// `cosigned` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignedReply {
    /// The checkpoint with the authority's cosignature line added.
    pub note: String,
}

fn too_many(what: &'static str, count: usize, max: usize) -> Result<(), AuthorityError> {
    if count > max {
        return Err(AuthorityError::TooMany { what, count, max });
    }
    Ok(())
}

fn too_long(what: &'static str, len: usize, max: usize) -> Result<(), AuthorityError> {
    if len > max {
        return Err(AuthorityError::TooLong { what, len, max });
    }
    Ok(())
}

fn check_filter(f: &CatalogFilter) -> Result<(), AuthorityError> {
    for (what, text) in [
        ("filter.sector", &f.sector),
        ("filter.keyword", &f.keyword),
        ("filter.classification", &f.classification),
    ] {
        if let Some(t) = text {
            too_long(what, t.len(), MAX_FILTER_TEXT)?;
        }
    }
    Ok(())
}

fn check_items(items: &[CatalogItem]) -> Result<(), AuthorityError> {
    for item in items {
        too_long("offer", item.offer.len(), MAX_ENTRY_OBJECT)?;
        too_long("manifest", item.manifest.len(), MAX_ENTRY_OBJECT)?;
    }
    Ok(())
}

impl Request {
    /// The message name.
    pub fn name(&self) -> &'static str {
        match self {
            Request::RevocationList(_) => "revocation_list",
            Request::Publish(_) => "publish",
            Request::Search(_) => "search",
            Request::Cosign(_) => "cosign",
        }
    }

    /// Checks the limits of the format (list lengths, text lengths).
    pub fn check(&self) -> Result<(), AuthorityError> {
        match self {
            Request::RevocationList(_) => Ok(()),
            Request::Publish(p) => {
                too_many("items", p.items.len(), MAX_PUBLISH)?;
                check_items(&p.items)
            }
            Request::Search(s) => {
                check_filter(&s.filter)?;
                if let Some(c) = &s.cursor {
                    too_long("cursor", c.len(), 32)?;
                }
                Ok(())
            }
            Request::Cosign(c) => {
                too_long("checkpoint", c.checkpoint.len(), MAX_CHECKPOINT)?;
                if let Some(p) = &c.proof {
                    too_many("proof.hashes", p.hashes.len(), MAX_PROOF_HASHES)?;
                }
                Ok(())
            }
        }
    }

    /// Canonical CBOR.
    pub fn encode(&self) -> Result<Vec<u8>, AuthorityError> {
        self.check()?;
        cbor::encode_with(self, &LIMITS).map_err(|e| AuthorityError::BadRequest(e.to_string()))
    }

    /// Decodes and checks a request: canonical CBOR within [`LIMITS`], then
    /// [`Request::check`].
    pub fn decode(bytes: &[u8]) -> Result<Request, AuthorityError> {
        let r: Request = cbor::decode_with(bytes, &LIMITS)
            .map_err(|e| AuthorityError::BadRequest(tds_core::code::full_message(&e)))?;
        r.check()?;
        Ok(r)
    }
}

impl Reply {
    /// The message name.
    pub fn name(&self) -> &'static str {
        match self {
            Reply::RevocationList(_) => "revocation_list",
            Reply::Published(_) => "published",
            Reply::Page(_) => "page",
            Reply::Cosigned(_) => "cosigned",
            Reply::Error(_) => "error",
        }
    }

    /// Checks the limits of the format.
    pub fn check(&self) -> Result<(), AuthorityError> {
        match self {
            Reply::RevocationList(_) | Reply::Error(_) => Ok(()),
            Reply::Published(p) => too_many("offers", p.offers.len(), MAX_PUBLISH),
            Reply::Page(p) => {
                too_many("items", p.items.len(), MAX_PAGE as usize)?;
                check_items(&p.items)?;
                if let Some(c) = &p.next {
                    too_long("next", c.len(), 32)?;
                }
                Ok(())
            }
            Reply::Cosigned(c) => too_long("note", c.note.len(), 2 * MAX_CHECKPOINT),
        }
    }

    /// Canonical CBOR.
    pub fn encode(&self) -> Result<Vec<u8>, AuthorityError> {
        cbor::encode_with(self, &LIMITS).map_err(|e| AuthorityError::BadRequest(e.to_string()))
    }

    /// Decodes and checks a reply, as [`Request::decode`] does.
    pub fn decode(bytes: &[u8]) -> Result<Reply, AuthorityError> {
        let r: Reply = cbor::decode_with(bytes, &LIMITS)
            .map_err(|e| AuthorityError::BadRequest(tds_core::code::full_message(&e)))?;
        r.check()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hash() -> impl Strategy<Value = Hash256> {
        any::<[u8; 32]>().prop_map(Hash256::from_bytes)
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-z0-9 ./-]{0,24}"
    }

    fn bytes() -> impl Strategy<Value = ByteBuf> {
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(ByteBuf::from)
    }

    fn item() -> impl Strategy<Value = CatalogItem> {
        (bytes(), bytes()).prop_map(|(offer, manifest)| CatalogItem { offer, manifest })
    }

    fn filter() -> impl Strategy<Value = CatalogFilter> {
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(hash()),
        )
            .prop_map(
                |(sector, keyword, classification, provider)| CatalogFilter {
                    sector,
                    keyword,
                    classification,
                    provider,
                },
            )
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            Just(Request::RevocationList(RevocationListRequest {})),
            proptest::collection::vec(item(), 0..4)
                .prop_map(|items| Request::Publish(PublishRequest { items })),
            (
                filter(),
                proptest::option::of(hash().prop_map(|h| ByteBuf::from(h.as_bytes().to_vec()))),
                any::<u64>()
            )
                .prop_map(|(filter, cursor, limit)| Request::Search(SearchRequest {
                    filter,
                    cursor,
                    limit
                })),
            (
                text(),
                proptest::option::of(
                    (
                        any::<u64>(),
                        any::<u64>(),
                        hash(),
                        hash(),
                        proptest::collection::vec(hash(), 0..8)
                    )
                        .prop_map(|(size1, size2, root1, root2, hashes)| {
                            Proof {
                                size1,
                                size2,
                                root1,
                                root2,
                                hashes,
                            }
                        })
                )
            )
                .prop_map(|(checkpoint, proof)| Request::Cosign(CosignRequest {
                    checkpoint,
                    proof
                })),
        ]
    }

    fn reply() -> impl Strategy<Value = Reply> {
        prop_oneof![
            bytes().prop_map(|crl| Reply::RevocationList(RevocationListReply { crl })),
            proptest::collection::vec(hash(), 0..4)
                .prop_map(|offers| Reply::Published(PublishedReply { offers })),
            (
                proptest::collection::vec(item(), 0..4),
                proptest::option::of(hash().prop_map(|h| ByteBuf::from(h.as_bytes().to_vec())))
            )
                .prop_map(|(items, next)| Reply::Page(CatalogPageMsg { items, next })),
            text().prop_map(|note| Reply::Cosigned(CosignedReply { note })),
            ("[a-z]{1,8}\\.[a-z_]{1,12}", text())
                .prop_map(|(code, reason)| Reply::Error(Refusal::new(code, reason))),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(r in request()) {
            let bytes = r.encode().unwrap();
            prop_assert_eq!(Request::decode(&bytes).unwrap(), r);
        }

        #[test]
        fn replies_round_trip(r in reply()) {
            let bytes = r.encode().unwrap();
            prop_assert_eq!(Reply::decode(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn an_error_reply_is_the_connector_protocols_error_message() {
        let r = Refusal::new("identity.revoked", "serial 3 is revoked");
        let ours = Reply::Error(r.clone()).encode().unwrap();
        let theirs = tds_protocol::Message::Error(r).encode().unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_spec_example_bytes() {
        // spec/authority.md §3.
        let bytes = Request::RevocationList(RevocationListRequest {})
            .encode()
            .unwrap();
        let mut expected = vec![0xa1, 0x6f];
        expected.extend_from_slice(b"revocation_list");
        expected.push(0xa0);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn limits_are_checked_on_decode() {
        let items = vec![
            CatalogItem {
                offer: ByteBuf::new(),
                manifest: ByteBuf::new()
            };
            MAX_PUBLISH + 1
        ];
        let bytes = cbor::encode(&Request::Publish(PublishRequest { items })).unwrap();
        let e = Request::decode(&bytes).unwrap_err();
        assert_eq!(tds_core::ErrorCode::code(&e), "authority.too_many");
        let e = Request::decode(&[0xa1, 0x61]).unwrap_err();
        assert_eq!(tds_core::ErrorCode::code(&e), "authority.bad_request");
    }
}
