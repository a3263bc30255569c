//! The provider's catalog in memory: one entry per live offer (the asset it offers and
//! what catalog filters look at, texts lower-cased once), in offer-id order, so that a
//! search looks at every entry without reading or decoding the store, and reads from the
//! store only the entries of the page it answers.
//!
//! The store stays the truth. The index is built from it on the first search, changed in
//! step by this connector's `publish` and `withdraw`, and checked against a change
//! counter kept in the store (`meta/catalog`, added to in the same batch as every offer
//! written): a search that finds the counter moved since the index was built (another
//! writer of the store, such as a replica of the node) builds it again, reusing the
//! entries it has. Each entry of a page is read back from the store (a withdrawn offer is
//! left out even before the index hears of it), and its asset must be servable.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use tds_core::hash::Hash256;
use tds_protocol::catalog::{CatalogKeys, CatalogQuery, PageBytes};
use tds_protocol::message::{CatalogFilter, CatalogItem, CatalogPageMsg, MAX_PAGE};
use tds_protocol::Refusal;

use crate::core::Core;
use crate::records::{self, AssetRecord, OfferRecord};
use crate::store::{Batch, StoreError, Table};

/// The key of the catalog's change counter in the `meta` table.
pub(crate) const CHANGES: &[u8] = b"catalog";

/// Counts a change of the offers in `batch` (every batch that writes an offer does).
pub(crate) fn count_change(batch: &mut Batch) {
    batch.add(Table::Meta, CHANGES.to_vec(), 1);
}

/// One live offer.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The asset id text it offers.
    pub(crate) asset: String,
    /// What filters look at.
    pub(crate) keys: CatalogKeys,
}

/// The entries as of a value of the change counter.
#[derive(Debug)]
struct Built {
    changes: u64,
    entries: BTreeMap<Hash256, Entry>,
}

/// The index (empty until the first search builds it).
#[derive(Debug, Default)]
pub(crate) struct CatalogIndex {
    built: RwLock<Option<Built>>,
}

fn storage(e: StoreError) -> Refusal {
    Refusal::new("catalog.unavailable", e.to_string())
}

impl Core {
    /// The store's catalog change counter.
    fn catalog_changes(&self) -> Result<u64, StoreError> {
        self.store.counter(Table::Meta, CHANGES)
    }

    /// Offers this connector just wrote (`batch` committed, its change counted):
    /// entries to add (published) and ids to remove (withdrawn). When nothing else
    /// changed the store's offers since the index was built, the index is current again;
    /// otherwise the next search builds it again.
    pub(crate) fn catalog_changed(&self, added: Vec<(Hash256, Entry)>, removed: &[Hash256]) {
        let mut built = self
            .catalog
            .built
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(b) = built.as_mut() else {
            return;
        };
        b.entries.extend(added);
        for id in removed {
            b.entries.remove(id);
        }
        match self.catalog_changes() {
            Ok(now) if now == b.changes.saturating_add(1) => b.changes = now,
            // Someone else changed it too, or the store cannot tell: build again.
            _ => b.changes = u64::MAX,
        }
    }

    /// The entries of the store's live offers, reusing those of `old` (an entry does not
    /// change while its offer lives); offers that do not verify, or whose asset's
    /// manifest does not, are left out (and logged).
    fn build_catalog(&self, changes: u64, old: Option<Built>) -> Result<Built, StoreError> {
        let mut old = old.map(|b| b.entries).unwrap_or_default();
        let mut entries = BTreeMap::new();
        let mut manifests: HashMap<String, Option<tds_manifest::Manifest>> = HashMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = self
                .store
                .scan_prefix_after(Table::Offers, b"", after.as_deref(), 256)?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            after = Some(last.clone());
            for (key, value) in rows {
                let Some(id) = Hash256::from_slice(&key) else {
                    continue;
                };
                let rec: OfferRecord = match records::decode(Table::Offers, &key, &value) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "an offer record does not decode");
                        continue;
                    }
                };
                if rec.withdrawn {
                    continue;
                }
                if let Some(e) = old.remove(&id) {
                    entries.insert(id, e);
                    continue;
                }
                let offer = match tds_policy::contract::verify_offer(&rec.offer) {
                    Ok(o) if o.id() == id => o,
                    _ => {
                        tracing::error!(offer = %id, "a stored offer does not verify");
                        continue;
                    }
                };
                let manifest = manifests
                    .entry(rec.asset.clone())
                    .or_insert_with(|| self.catalog_manifest(&rec.asset));
                let Some(manifest) = manifest else {
                    continue;
                };
                let keys = CatalogKeys::new(offer.offer(), manifest);
                entries.insert(
                    id,
                    Entry {
                        asset: rec.asset,
                        keys,
                    },
                );
            }
        }
        Ok(Built { changes, entries })
    }

    /// The manifest of a published asset (verified with this connector's key), from the
    /// served assets when open there, else from its stored record.
    fn catalog_manifest(&self, asset: &str) -> Option<tds_manifest::Manifest> {
        if let Some(s) = self.cached_served(asset) {
            return Some(s.asset.verified.manifest().clone());
        }
        let rec: AssetRecord =
            match records::get(self.store.as_ref(), Table::Assets, asset.as_bytes()) {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!(error = %e, asset, "reading an asset record");
                    return None;
                }
            };
        match tds_manifest::open(&rec.manifest).and_then(|m| m.verify(&self.signer.public_key())) {
            Ok(m) => Some(m.manifest().clone()),
            Err(e) => {
                tracing::error!(error = %e, asset, "a published manifest does not verify");
                None
            }
        }
    }

    /// One page of the live offers matching `filter` after `cursor` (the id of the last
    /// offer of the previous page), at most `limit` long and
    /// [`MAX_PAGE_BYTES`](tds_protocol::catalog::MAX_PAGE_BYTES) of entries, in offer-id
    /// order.
    pub(crate) fn catalog_page(
        &self,
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
        let changes = self.catalog_changes().map_err(storage)?;
        let mut built = self
            .catalog
            .built
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if built.as_ref().is_none_or(|b| b.changes != changes) {
            drop(built);
            let mut w = self
                .catalog
                .built
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if w.as_ref().is_none_or(|b| b.changes != changes) {
                let old = w.take();
                *w = Some(self.build_catalog(changes, old).map_err(storage)?);
            }
            drop(w);
            built = self
                .catalog
                .built
                .read()
                .unwrap_or_else(PoisonError::into_inner);
        }
        let Some(b) = built.as_ref() else {
            return Err(Refusal::new(
                "catalog.unavailable",
                "the catalog could not be read",
            ));
        };
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let query = CatalogQuery::new(filter);
        let mut items = Vec::new();
        let mut bytes = PageBytes::default();
        let mut last = None;
        let mut next = None;
        for (id, e) in b.entries.range((start, Bound::Unbounded)) {
            if !query.matches(&e.keys) {
                continue;
            }
            let rec: OfferRecord = match records::get::<OfferRecord>(
                self.store.as_ref(),
                Table::Offers,
                id.as_bytes(),
            )
            .map_err(storage)?
            {
                Some(r) if !r.withdrawn => r,
                _ => continue,
            };
            let Some(served) = self.served_asset(&e.asset) else {
                continue;
            };
            if items.len() == limit || !bytes.take(&rec.offer, &served.asset.manifest) {
                next = last;
                break;
            }
            items.push(CatalogItem {
                offer: serde_bytes::ByteBuf::from(rec.offer),
                manifest: serde_bytes::ByteBuf::from(served.asset.manifest.clone()),
            });
            last = Some(*id);
        }
        Ok(CatalogPageMsg {
            items,
            next: next.map(|id: Hash256| serde_bytes::ByteBuf::from(id.as_bytes().to_vec())),
        })
    }
}
