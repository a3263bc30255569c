//! Catalog paging for hosts: filters and a cursor over signed offers and their
//! manifests, in offer-id order. The cursor is the id (32 bytes) of the last offer of
//! the previous page, so a page is stable under inserts elsewhere.

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_policy::contract;

use crate::message::{CatalogFilter, CatalogItem, CatalogPageMsg, Refusal, MAX_PAGE};

/// Most bytes the entries of one catalog page take ([`entry_bytes`]): what a control
/// frame holds ([`MAX_CONTROL`](crate::frame::MAX_CONTROL)) less 4 KiB for the rest of
/// the reply. A page ends early, with a cursor, where its next entry would pass this; it
/// holds at least one entry.
pub const MAX_PAGE_BYTES: usize = crate::frame::MAX_CONTROL as usize - 4096;

/// The bytes an entry takes in a page: its signed offer and manifest, and room for their
/// encoding in the page (a map of two byte strings).
pub fn entry_bytes(offer: &[u8], manifest: &[u8]) -> usize {
    offer
        .len()
        .saturating_add(manifest.len())
        .saturating_add(32)
}

/// The bytes of a page being filled, against [`MAX_PAGE_BYTES`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PageBytes(usize);

impl PageBytes {
    /// Whether an entry of `offer` and `manifest` still goes in this page (the first
    /// always does); counts it when it does.
    pub fn take(&mut self, offer: &[u8], manifest: &[u8]) -> bool {
        let after = self.0.saturating_add(entry_bytes(offer, manifest));
        if self.0 > 0 && after > MAX_PAGE_BYTES {
            return false;
        }
        self.0 = after;
        true
    }
}

/// What a catalog filter looks at in one entry, prepared once: the sector, the
/// classification, the provider, and the title, description and keywords in lower case.
/// An index keeps one per entry, so that a search over many entries does not lower-case
/// every text again for every query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogKeys {
    sector: String,
    classification: &'static str,
    provider: Hash256,
    title: String,
    description: String,
    keywords: Vec<String>,
}

impl CatalogKeys {
    /// The keys of `offer` for the asset `m`.
    pub fn new(offer: &contract::Offer, m: &tds_manifest::Manifest) -> CatalogKeys {
        CatalogKeys {
            sector: m.sector.as_str().to_owned(),
            classification: m.classification.as_str(),
            provider: offer.provider,
            title: m.title.to_lowercase(),
            description: m.description.to_lowercase(),
            keywords: m.keywords.iter().map(|w| w.to_lowercase()).collect(),
        }
    }

    /// The provider named by the offer.
    pub fn provider(&self) -> Hash256 {
        self.provider
    }
}

/// A filter prepared for matching many entries (its keyword lower-cased once).
#[derive(Clone, Debug)]
pub struct CatalogQuery<'a> {
    filter: &'a CatalogFilter,
    keyword: Option<String>,
}

impl<'a> CatalogQuery<'a> {
    /// Prepares `filter`.
    pub fn new(filter: &'a CatalogFilter) -> CatalogQuery<'a> {
        CatalogQuery {
            filter,
            keyword: filter.keyword.as_deref().map(str::to_lowercase),
        }
    }

    /// Whether the entry with these keys matches: every filter given matches (the
    /// keyword is a case-insensitive substring of the title or the description, or
    /// equal to a keyword, ignoring case).
    pub fn matches(&self, keys: &CatalogKeys) -> bool {
        let f = self.filter;
        if f.sector.as_deref().is_some_and(|s| s != keys.sector) {
            return false;
        }
        if f.classification
            .as_deref()
            .is_some_and(|c| c != keys.classification)
        {
            return false;
        }
        if f.provider.is_some_and(|p| p != keys.provider) {
            return false;
        }
        if let Some(k) = &self.keyword {
            let hit = keys.title.contains(k.as_str())
                || keys.description.contains(k.as_str())
                || keys.keywords.iter().any(|w| w == k);
            if !hit {
                return false;
            }
        }
        true
    }
}

/// Whether a manifest matches the filter (see [`CatalogQuery::matches`]; to match many
/// entries, prepare the query and each entry's [`CatalogKeys`] once).
pub fn matches(
    filter: &CatalogFilter,
    offer: &contract::Offer,
    m: &tds_manifest::Manifest,
) -> bool {
    CatalogQuery::new(filter).matches(&CatalogKeys::new(offer, m))
}

/// One page of `entries` (signed offer, signed manifest) matching `filter`, after
/// `cursor`, at most `limit` long and [`MAX_PAGE_BYTES`] of entries. Entries that do not
/// open are skipped.
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
    let mut bytes = PageBytes::default();
    let fit = found
        .iter()
        .take(limit)
        .take_while(|(_, o, m)| bytes.take(o, m))
        .count();
    let more = found.len() > fit;
    found.truncate(fit);
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

#[cfg(test)]
mod tests {
    use tds_core::{SigningKey, Timestamp};
    use tds_identity::Sector;
    use tds_manifest::content::ChunkTree;
    use tds_manifest::{ChunkSize, Classification, Commitment, Manifest, PersonalInfo};

    use super::*;

    fn entry(title: &str, keywords: &[&str]) -> Result<(contract::Offer, Manifest), String> {
        described(title, keywords, "Quarter-hourly FEEDER load, Straße 5")
    }

    fn described(
        title: &str,
        keywords: &[&str],
        description: &str,
    ) -> Result<(contract::Offer, Manifest), String> {
        let key = SigningKey::from_seed(&[7; 32]);
        let root = ChunkTree::from_leaves([tds_core::merkle::leaf_hash(b"x")]).root();
        let m = Manifest {
            version: tds_manifest::MANIFEST_VERSION,
            title: title.into(),
            description: description.into(),
            sector: Sector::WEATHER,
            media_type: "text/csv".into(),
            schema: None,
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
            owner: tds_identity::ParticipantId::of(&key.public_key()),
            owner_key: key.public_key(),
            created: Timestamp::from_secs(1_800_000_000),
            classification: Classification::Important,
            personal: PersonalInfo::None,
            residency: None,
            content: Commitment::new(1, ChunkSize::MIN, root).map_err(|e| e.to_string())?,
            lineage: vec![],
            supersedes: None,
            quality: None,
        };
        let offer = contract::Offer {
            asset: m
                .asset_id()
                .map_err(|e| e.to_string())?
                .to_string()
                .parse()
                .map_err(|e| format!("{e}"))?,
            provider: key.id(),
            provider_key: key.public_key(),
            policy: tds_policy::parse("t", "policy set;\n\npermit use;\n")
                .map_err(|e| e.to_string())?,
            price: None,
            not_before: Timestamp::from_secs(1_800_000_000),
            not_after: Timestamp::from_secs(1_900_000_000),
            licence: None,
        };
        Ok((offer, m))
    }

    fn filter(keyword: Option<&str>) -> CatalogFilter {
        CatalogFilter {
            keyword: keyword.map(str::to_owned),
            ..CatalogFilter::default()
        }
    }

    #[test]
    fn prepared_keys_match_as_the_filter_says() -> Result<(), String> {
        let (offer, m) = entry("Daily Rainfall of Taiyuan", &["Grid", "open-data"])?;
        let keys = CatalogKeys::new(&offer, &m);
        assert_eq!(keys.provider(), offer.provider);
        let hit = |f: &CatalogFilter| {
            let prepared = CatalogQuery::new(f).matches(&keys);
            // The one-off form gives the same answer.
            assert_eq!(prepared, matches(f, &offer, &m), "{f:?}");
            prepared
        };
        // The keyword: a substring of the title or description, or a whole keyword,
        // ignoring case (also beyond ASCII).
        for k in [
            "rainfall", "RAINFALL", "of tai", "feeder", "STRASSE", "straße",
        ] {
            assert_eq!(hit(&filter(Some(k))), k != "STRASSE", "{k}");
        }
        assert!(hit(&filter(Some("grid"))));
        assert!(hit(&filter(Some("OPEN-DATA"))));
        // A keyword matches whole, not a part of one.
        assert!(!hit(&filter(Some("open"))));
        assert!(!hit(&filter(Some("snow"))));
        assert!(hit(&filter(None)));
        // Sector, classification and provider match exactly; every one given must.
        let mut f = filter(Some("rainfall"));
        f.sector = Some("weather".into());
        f.classification = Some("important".into());
        f.provider = Some(offer.provider);
        assert!(hit(&f));
        for change in 0..3 {
            let mut g = f.clone();
            match change {
                0 => g.sector = Some("power".into()),
                1 => g.classification = Some("core".into()),
                _ => g.provider = Some(Hash256::sha256(b"someone else")),
            }
            assert!(!hit(&g), "{g:?}");
        }
        Ok(())
    }

    #[test]
    fn a_page_of_large_entries_ends_before_a_control_frame_is_full() -> Result<(), String> {
        let key = SigningKey::from_seed(&[7; 32]);
        let long = "\u{4e2d}".repeat(tds_manifest::MAX_DESCRIPTION_CHARS);
        let mut entries = Vec::new();
        for i in 0..60 {
            let (offer, m) = described(&format!("Series {i}"), &[], &long)?;
            entries.push((
                contract::create_offer(&key, &offer).map_err(|e| e.to_string())?,
                m.sign(&key).map_err(|e| e.to_string())?,
            ));
        }
        let all = CatalogFilter::default();
        let mut cursor: Option<Vec<u8>> = None;
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let page =
                page(&entries, &all, cursor.as_deref(), MAX_PAGE).map_err(|r| r.reason.clone())?;
            assert!(!page.items.is_empty());
            let bytes: usize = page
                .items
                .iter()
                .map(|i| entry_bytes(&i.offer, &i.manifest))
                .sum();
            assert!(bytes <= MAX_PAGE_BYTES);
            seen += page.items.len();
            pages += 1;
            // The page is one control frame.
            crate::frame::encode_control(&crate::message::Message::CatalogPage(page.clone()))
                .map_err(|e| e.to_string())?;
            match page.next {
                Some(n) => cursor = Some(n.into_vec()),
                None => break,
            }
        }
        assert_eq!(seen, 60);
        assert!(pages > 1);
        // One entry goes in a page whatever its size.
        let mut one = PageBytes::default();
        assert!(one.take(&[0; 16], &vec![0; MAX_PAGE_BYTES]));
        assert!(!one.take(&[0; 16], &[0; 16]));
        Ok(())
    }
}
