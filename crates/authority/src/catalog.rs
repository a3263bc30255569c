//! The federated catalog: what members published, checked, indexed in memory (records in
//! redb), searched by sector, keyword, classification and provider in offer-id order.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_core::{ErrorCode, Timestamp};
use tds_identity::ParticipantId;
use tds_policy::contract;
use tds_protocol::catalog::{CatalogKeys, CatalogQuery, PageBytes};
use tds_protocol::message::{CatalogFilter, CatalogItem, CatalogPageMsg};

use crate::error::AuthorityError;
use crate::message::{DEFAULT_PAGE, MAX_PAGE};
use crate::records::CatalogRecord;

/// One checked entry: what searches look at, and the signed objects they return.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The offer's end of validity (searches skip offers expired by then).
    not_after: Timestamp,
    /// What filters look at (the provider, texts in lower case).
    keys: CatalogKeys,
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

/// Checks catalog entry `index` published by `publisher` (when given; else by the
/// provider its offer names) at `now`: the offer verifies (signed by the provider it
/// names) and that provider is the publisher; the offer has not expired at `now` (when
/// given); the manifest is signed by its owner and that owner is the provider; the offer
/// is for this manifest's asset. Each signature is verified once.
pub(crate) fn check_item(
    index: usize,
    item: &CatalogItem,
    publisher: Option<ParticipantId>,
    now: Option<Timestamp>,
) -> Result<(Hash256, Entry), AuthorityError> {
    let offer = contract::verify_offer(&item.offer).map_err(|e| invalid(index, "offer", &e))?;
    let id = offer.id();
    let o = offer.offer();
    if let Some(publisher) = publisher.filter(|p| o.provider != *p.as_hash()) {
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
            not_after: o.not_after,
            keys: CatalogKeys::new(o, manifest.manifest()),
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
            // Checked as its provider published it, at its publication time, so an offer
            // expired since stays stored but is not shown by searches.
            if let Ok((checked, mut entry)) = check_item(0, &item, None, Some(r.published)) {
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
        let provider = entry.keys.provider();
        if self.entries.insert(id, entry).is_none() {
            *self.per_provider.entry(provider).or_insert(0) += 1;
        }
    }

    /// A page of entries matching `filter` after `cursor`, in offer-id order, at most
    /// `limit` and [`MAX_PAGE_BYTES`](tds_protocol::catalog::MAX_PAGE_BYTES) of entries;
    /// offers expired at `now` are skipped.
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
        let query = CatalogQuery::new(filter);
        let mut items = Vec::new();
        let mut bytes = PageBytes::default();
        let mut next = None;
        for (id, e) in self.entries.range((start, Bound::Unbounded)) {
            if e.not_after <= now || !query.matches(&e.keys) {
                continue;
            }
            if items.len() == limit || !bytes.take(&e.record.offer, &e.record.manifest) {
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

#[cfg(test)]
mod tests {
    use tds_core::{ErrorCode, SigningKey};
    use tds_identity::Sector;
    use tds_manifest::content::ChunkTree;
    use tds_manifest::{
        ChunkSize, Classification, Commitment, Manifest, PersonalInfo, MANIFEST_VERSION,
    };
    use tds_policy::contract::{create_offer, Offer};

    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    type R = Result<(), Box<dyn std::error::Error>>;

    fn item(key: &SigningKey, title: &str) -> Result<CatalogItem, Box<dyn std::error::Error>> {
        described(key, title, "sample")
    }

    fn described(
        key: &SigningKey,
        title: &str,
        description: &str,
    ) -> Result<CatalogItem, Box<dyn std::error::Error>> {
        let root = ChunkTree::from_leaves([tds_core::merkle::leaf_hash(title.as_bytes())]).root();
        let m = Manifest {
            version: MANIFEST_VERSION,
            title: title.into(),
            description: description.into(),
            sector: Sector::POWER,
            media_type: "text/csv".into(),
            schema: None,
            keywords: vec!["grid".into()],
            owner: ParticipantId::of(&key.public_key()),
            owner_key: key.public_key(),
            created: NOW,
            classification: Classification::General,
            personal: PersonalInfo::None,
            residency: None,
            content: Commitment::new(title.len() as u64, ChunkSize::MIN, root)?,
            lineage: vec![],
            supersedes: None,
            quality: None,
        };
        let offer = create_offer(
            key,
            &Offer {
                asset: m.asset_id()?.to_string().parse()?,
                provider: key.id(),
                provider_key: key.public_key(),
                policy: tds_policy::parse("t", "policy set;\n\npermit use;\n")?,
                price: None,
                not_before: NOW,
                not_after: NOW.saturating_add_millis(1000),
                licence: None,
            },
        )?;
        Ok(CatalogItem {
            offer: offer.into(),
            manifest: m.sign(key)?.into(),
        })
    }

    fn filter(keyword: &str) -> CatalogFilter {
        CatalogFilter {
            keyword: Some(keyword.into()),
            ..CatalogFilter::default()
        }
    }

    #[test]
    fn entries_are_checked_once_loaded_and_searched_by_their_keys() -> R {
        let (a, b) = (
            SigningKey::from_seed(&[1; 32]),
            SigningKey::from_seed(&[2; 32]),
        );
        let taiyuan = item(&a, "Load curves Taiyuan")?;
        let datong = item(&a, "Load curves Datong")?;
        // Published by someone else than the provider its offer names: refused; without
        // a publisher, the offer's provider is the publisher.
        let e = check_item(0, &taiyuan, Some(ParticipantId::of(&b.public_key())), None)
            .err()
            .ok_or("accepted from another publisher")?;
        assert_eq!(e.code(), "authority.not_provider");
        let (id1, _) = check_item(0, &taiyuan, None, None)?;
        let (id2, _) = check_item(0, &datong, Some(ParticipantId::of(&a.public_key())), None)?;
        assert_eq!(id1, contract::verify_offer(&taiyuan.offer)?.id());

        // Loading keeps what checks under its own id, and leaves the rest out.
        let record = |i: &CatalogItem| CatalogRecord {
            offer: i.offer.clone(),
            manifest: i.manifest.clone(),
            published: NOW,
        };
        let mut forged = record(&datong);
        forged.manifest = taiyuan.manifest.clone();
        let index = Index::load(vec![
            (id1, record(&taiyuan)),
            (id2, record(&datong)),
            (Hash256::sha256(b"another id"), record(&taiyuan)),
            (Hash256::sha256(b"forged"), forged),
        ]);
        assert_eq!(index.len(), 2);
        assert_eq!(index.provider_count(&a.id()), 2);

        let found = |f: &CatalogFilter, now| -> Result<usize, AuthorityError> {
            Ok(index.search(f, None, 0, now)?.items.len())
        };
        assert_eq!(found(&filter("TAIYUAN"), NOW)?, 1);
        assert_eq!(found(&filter("load curves"), NOW)?, 2);
        assert_eq!(found(&filter("Grid"), NOW)?, 2);
        assert_eq!(found(&filter("gri"), NOW)?, 0);
        let mine = CatalogFilter {
            provider: Some(a.id()),
            ..CatalogFilter::default()
        };
        assert_eq!(found(&mine, NOW)?, 2);
        let theirs = CatalogFilter {
            provider: Some(b.id()),
            ..CatalogFilter::default()
        };
        assert_eq!(found(&theirs, NOW)?, 0);
        // Expired offers are not shown.
        assert_eq!(found(&mine, NOW.saturating_add_millis(1000))?, 0);
        Ok(())
    }

    #[test]
    fn a_page_of_large_entries_fits_in_a_reply() -> R {
        let key = SigningKey::from_seed(&[1; 32]);
        // 60 entries of about 25 KB: more than one reply holds.
        let long = "\u{4e2d}".repeat(tds_manifest::MAX_DESCRIPTION_CHARS);
        let mut index = Index::default();
        for i in 0..60 {
            let (id, entry) =
                check_item(0, &described(&key, &format!("S{i}"), &long)?, None, None)?;
            index.insert(id, entry);
        }
        let all = CatalogFilter::default();
        let (mut cursor, mut seen) = (None::<ByteBuf>, 0);
        loop {
            let page = index.search(&all, cursor.as_deref().map(|c| c.as_slice()), 256, NOW)?;
            assert!(!page.items.is_empty());
            seen += page.items.len();
            let next = page.next.clone();
            let reply = crate::message::Reply::Page(page).encode()?;
            assert!(reply.len() <= crate::message::MAX_MESSAGE);
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, 60);
        Ok(())
    }
}
