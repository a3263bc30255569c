//! Catalog paging for hosts: filters and a cursor over signed offers and their
//! manifests, in offer-id order. The cursor is the id (32 bytes) of the last offer of
//! the previous page, so a page is stable under inserts elsewhere.

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_policy::contract;

use crate::message::{CatalogFilter, CatalogItem, CatalogPageMsg, Refusal, MAX_PAGE};

/// Whether a manifest matches the filter.
pub fn matches(
    filter: &CatalogFilter,
    offer: &contract::Offer,
    m: &tds_manifest::Manifest,
) -> bool {
    if filter
        .sector
        .as_deref()
        .is_some_and(|s| s != m.sector.as_str())
    {
        return false;
    }
    if filter
        .classification
        .as_deref()
        .is_some_and(|c| c != m.classification.as_str())
    {
        return false;
    }
    if filter.provider.is_some_and(|p| p != offer.provider) {
        return false;
    }
    if let Some(k) = &filter.keyword {
        let k = k.to_lowercase();
        let hit = m.title.to_lowercase().contains(&k)
            || m.description.to_lowercase().contains(&k)
            || m.keywords.iter().any(|w| w.to_lowercase() == k);
        if !hit {
            return false;
        }
    }
    true
}

/// One page of `entries` (signed offer, signed manifest) matching `filter`, after
/// `cursor`, at most `limit` long. Entries that do not open are skipped.
pub fn page(
    entries: &[(Vec<u8>, Vec<u8>)],
    filter: &CatalogFilter,
    cursor: Option<&[u8]>,
    limit: u64,
) -> Result<CatalogPageMsg, Refusal> {
    let after = match cursor {
        None => None,
        Some(c) => Some(Hash256::from_slice(c).ok_or_else(|| {
            Refusal::new(
                "catalog.bad_cursor",
                "a cursor is the 32-byte id of an offer",
            )
        })?),
    };
    let limit = usize::try_from(limit.clamp(1, MAX_PAGE)).unwrap_or(1);
    let mut found: Vec<(Hash256, &Vec<u8>, &Vec<u8>)> = entries
        .iter()
        .filter_map(|(o, m)| {
            let offer = contract::verify_offer(o).ok()?;
            let manifest = tds_manifest::open(m).ok()?;
            let id = offer.id();
            (after.is_none_or(|a| id > a) && matches(filter, offer.offer(), manifest.manifest()))
                .then_some((id, o, m))
        })
        .collect();
    found.sort_by_key(|a| a.0);
    let more = found.len() > limit;
    found.truncate(limit);
    let next = if more {
        found
            .last()
            .map(|(id, _, _)| ByteBuf::from(id.as_bytes().to_vec()))
    } else {
        None
    };
    Ok(CatalogPageMsg {
        items: found
            .into_iter()
            .map(|(_, o, m)| CatalogItem {
                offer: ByteBuf::from(o.clone()),
                manifest: ByteBuf::from(m.clone()),
            })
            .collect(),
        next,
    })
}
