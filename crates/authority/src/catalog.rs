//! The federated catalog: what members published, checked, indexed in memory (records in
//! redb), searched by sector, keyword, classification and provider in offer-id order.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_core::{ErrorCode, Timestamp};
use tds_identity::ParticipantId;
use tds_manifest::Manifest;
use tds_policy::contract::{self, Offer};
use tds_protocol::message::{CatalogFilter, CatalogItem, CatalogPageMsg};

use crate::error::AuthorityError;
use crate::message::{DEFAULT_PAGE, MAX_PAGE};
use crate::records::CatalogRecord;

/// One checked entry.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    offer: Offer,
    manifest: Manifest,
    pub(crate) record: CatalogRecord,
}

fn invalid(
    index: usize,
    what: &str,
    e: &(impl ErrorCode + std::error::Error + 'static),
) -> AuthorityError {
    AuthorityError::InvalidEntry {
        index,
        reason: format!("{what}: {} ({})", tds_core::code::full_message(e), e.code()),
    }
}

/// Checks catalog entry `index` published by `publisher` at `now`: the offer verifies
/// (signed by the provider it names) and that provider is the publisher; the offer has
/// not expired at `now` (when given); the manifest is signed by its owner and that owner is the provider; the
/// offer is for this manifest's asset.
pub(crate) fn check_item(
    index: usize,
    item: &CatalogItem,
    publisher: ParticipantId,
    now: Option<Timestamp>,
) -> Result<(Hash256, Entry), AuthorityError> {
    let offer = contract::verify_offer(&item.offer).map_err(|e| invalid(index, "offer", &e))?;
    let id = offer.id();
    let o = offer.offer();
    if o.provider != *publisher.as_hash() {
        return Err(AuthorityError::NotProvider {
            index,
            provider: ParticipantId::from_hash(o.provider),
            publisher,
        });
    }
    if now.is_some_and(|now| o.not_after <= now) {
        return Err(AuthorityError::OfferExpired { index });
    }
    let opened = tds_manifest::open(&item.manifest).map_err(|e| invalid(index, "manifest", &e))?;
    if opened.manifest().owner_key != o.provider_key {
        return Err(AuthorityError::NotOwner { index });
    }
    let manifest = opened
        .verify(&o.provider_key)
        .map_err(|e| invalid(index, "manifest", &e))?;
    let asset = manifest.id().to_string();
    if o.asset.as_str() != asset {
        return Err(AuthorityError::AssetMismatch {
            index,
            offer_asset: o.asset.as_str().to_owned(),
            manifest: asset,
        });
    }
    Ok((
        id,
        Entry {
            offer: o.clone(),
            manifest: manifest.manifest().clone(),
            record: CatalogRecord {
                offer: item.offer.clone(),
                manifest: item.manifest.clone(),
                published: now.unwrap_or_default(),
            },
        },
    ))
}

/// The catalog in memory.
#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: BTreeMap<Hash256, Entry>,
    per_provider: HashMap<Hash256, usize>,
}

impl Index {
    /// Loads stored entries (checked again: a record that no longer verifies is left out).
    pub(crate) fn load(records: Vec<(Hash256, CatalogRecord)>) -> Index {
        let mut index = Index::default();
        for (id, r) in records {
            let item = CatalogItem {
                offer: r.offer.clone(),
                manifest: r.manifest.clone(),
            };
            let Ok(offer) = contract::verify_offer(&item.offer) else {
                continue;
            };
            let publisher = ParticipantId::from_hash(offer.offer().provider);
            // Loaded at their publication time, so an offer expired since stays stored but
            // is not shown by searches.
            if let Ok((checked, mut entry)) = check_item(0, &item, publisher, Some(r.published)) {
                if checked == id {
                    entry.record.published = r.published;
                    index.insert(id, entry);
                }
            }
        }
        index
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn contains(&self, id: &Hash256) -> bool {
        self.entries.contains_key(id)
    }

    pub(crate) fn provider_count(&self, provider: &Hash256) -> usize {
        self.per_provider.get(provider).copied().unwrap_or(0)
    }

    pub(crate) fn insert(&mut self, id: Hash256, entry: Entry) {
        let provider = entry.offer.provider;
        if self.entries.insert(id, entry).is_none() {
            *self.per_provider.entry(provider).or_insert(0) += 1;
        }
    }

    /// A page of entries matching `filter` after `cursor`, in offer-id order; offers
    /// expired at `now` are skipped.
    pub(crate) fn search(
        &self,
        filter: &CatalogFilter,
        cursor: Option<&[u8]>,
        limit: u64,
        now: Timestamp,
    ) -> Result<CatalogPageMsg, AuthorityError> {
        let start = match cursor {
            None => Bound::Unbounded,
            Some(c) => Bound::Excluded(Hash256::from_slice(c).ok_or(AuthorityError::BadCursor)?),
        };
        let limit = match limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let limit = usize::try_from(limit).unwrap_or(1);
        let mut items = Vec::new();
        let mut next = None;
        for (id, e) in self.entries.range((start, Bound::Unbounded)) {
            if e.offer.not_after <= now
                || !tds_protocol::catalog::matches(filter, &e.offer, &e.manifest)
            {
                continue;
            }
            if items.len() == limit {
                // One more match exists: the page ends at the last one taken.
                next = items.last().map(|(last, _): &(Hash256, CatalogItem)| {
                    ByteBuf::from(last.as_bytes().to_vec())
                });
                break;
            }
            items.push((
                *id,
                CatalogItem {
                    offer: e.record.offer.clone(),
                    manifest: e.record.manifest.clone(),
                },
            ));
        }
        Ok(CatalogPageMsg {
            items: items.into_iter().map(|(_, i)| i).collect(),
            next,
        })
    }
}
