//! The provider's catalog: filters and pages over many offers, withdrawals, a replica
//! writing the same store, and a restart over the same store.

use std::collections::HashSet;
use std::sync::Arc;

use tds_connector::store::{MemoryStore, RedbStore, Store};
use tds_connector::{BytesSource, Connector, ConnectorConfig, Source};
use tds_core::hash::Hash256;
use tds_core::time::SystemClock;
use tds_core::Clock;
use tds_identity::{ParticipantId, Sector};
use tds_manifest::content::ContentBuilder;
use tds_manifest::{ChunkSize, Classification, Manifest, PersonalInfo, MANIFEST_VERSION};
use tds_protocol::message::{CatalogFilter, MAX_PAGE};

use crate::common::*;

const OPEN: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";

/// Asset `i`: every third title says "Rainfall", odd ones are weather data, keyword
/// `k{i % 50}`.
fn asset(owner: &Member, i: u64) -> Res<(Vec<u8>, Source)> {
    asset_described(owner, i, "Sample series".into())
}

/// Asset `i` with `description`.
fn asset_described(owner: &Member, i: u64, description: String) -> Res<(Vec<u8>, Source)> {
    let bytes = bytes::Bytes::from(format!("asset {i}\n").repeat(8).into_bytes());
    let content =
        ContentBuilder::new(ChunkSize::MIN, std::num::NonZeroUsize::MIN).build(&bytes[..])?;
    let m = Manifest {
        version: MANIFEST_VERSION,
        title: format!(
            "Series {i}: {}",
            if i.is_multiple_of(3) {
                "Rainfall"
            } else {
                "Load"
            }
        ),
        description,
        sector: if i % 2 == 1 {
            Sector::WEATHER
        } else {
            Sector::POWER
        },
        media_type: "text/csv".into(),
        schema: None,
        keywords: vec![format!("k{}", i % 50)],
        owner: ParticipantId::of(&owner.key.public_key()),
        owner_key: owner.key.public_key(),
        created: SystemClock.now(),
        classification: Classification::General,
        personal: PersonalInfo::None,
        residency: None,
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    };
    let source = Source::Custom {
        name: format!("asset-{i}"),
        source: Arc::new(BytesSource(bytes)),
    };
    Ok((m.sign(owner.key.as_ref())?, source))
}

/// Publishes assets `range`; returns their offer ids in order.
async fn publish_range(
    provider: &Connector,
    owner: &Member,
    range: std::ops::Range<u64>,
) -> Res<Vec<Hash256>> {
    let mut ids = Vec::new();
    for i in range {
        let (manifest, source) = asset(owner, i)?;
        let p = provider
            .publish(&manifest, source, vec![terms(OPEN)?])
            .await?;
        ids.extend(p.offers);
    }
    Ok(ids)
}

fn keyword(k: &str) -> CatalogFilter {
    CatalogFilter {
        keyword: Some(k.into()),
        ..CatalogFilter::default()
    }
}

/// The offer ids of every entry `consumer` finds in the catalog at `addr`.
async fn found(
    consumer: &Connector,
    addr: std::net::SocketAddr,
    filter: CatalogFilter,
) -> Res<Vec<Hash256>> {
    Ok(consumer
        .catalog_all(addr, filter)
        .await?
        .iter()
        .map(|e| e.offer.id())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_search_filters_pages_and_withdrawals() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(1, Sector::POWER, "CN-SX")?;
    let bank = space.member(2, Sector::FINANCE, "CN-SX")?;
    let provider = connector(&space, &grid, Backend::Memory).await?;
    let consumer = connector(&space, &bank, Backend::Memory).await?;
    let addr = provider.local_addr()?;
    let n = MAX_PAGE + 44;
    let ids = publish_range(&provider, &grid, 0..n).await?;

    // Two pages, every offer once, in offer-id order.
    let first = consumer
        .catalog(addr, CatalogFilter::default(), None)
        .await?;
    assert_eq!(first.items.len() as u64, MAX_PAGE);
    assert!(first.next.is_some());
    let all = found(&consumer, addr, CatalogFilter::default()).await?;
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(all, sorted);

    // Filters: a title word (any case), a keyword, a sector with a word.
    assert_eq!(
        found(&consumer, addr, keyword("RAINFALL")).await?.len(),
        100
    );
    assert_eq!(found(&consumer, addr, keyword("k7")).await?.len(), 6);
    let weather_rain = CatalogFilter {
        sector: Some("weather".into()),
        ..keyword("rainfall")
    };
    assert_eq!(found(&consumer, addr, weather_rain).await?.len(), 50);
    assert!(found(&consumer, addr, keyword("snow")).await?.is_empty());

    // Withdrawn offers leave the catalog at once; a new one joins it.
    let k7: Vec<Hash256> = (0..n)
        .filter(|i| i % 50 == 7)
        .filter_map(|i| ids.get(usize::try_from(i).ok()?).copied())
        .collect();
    for id in k7.iter().take(2) {
        provider.withdraw(id).await?;
    }
    let left: HashSet<Hash256> = found(&consumer, addr, keyword("k7"))
        .await?
        .into_iter()
        .collect();
    assert_eq!(left, k7.iter().skip(2).copied().collect());
    assert_eq!(
        found(&consumer, addr, CatalogFilter::default())
            .await?
            .len() as u64,
        n - 2
    );
    let new = publish_range(&provider, &grid, 1007..1008).await?;
    let now7 = found(&consumer, addr, keyword("k7")).await?;
    assert_eq!(now7.len(), 5);
    assert!(new.iter().all(|id| now7.contains(id)));

    // A bad cursor is refused.
    let e = consumer
        .catalog(addr, CatalogFilter::default(), Some(vec![1, 2, 3]))
        .await
        .err()
        .ok_or("a 3-byte cursor was taken")?;
    assert!(e.to_string().contains("catalog.bad_cursor"), "{e}");
    provider.shutdown().await;
    consumer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_writing_the_same_store_changes_the_catalog() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(1, Sector::POWER, "CN-SX")?;
    let bank = space.member(2, Sector::FINANCE, "CN-SX")?;
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let with_store = |s: &Arc<dyn Store>| Some(s.clone());
    let a = connector_with(
        &space,
        &grid,
        Backend::Memory,
        ConnectorConfig::default(),
        with_store(&store),
    )
    .await?;
    let b = connector_with(
        &space,
        &grid,
        Backend::Memory,
        ConnectorConfig::default(),
        with_store(&store),
    )
    .await?;
    let consumer = connector(&space, &bank, Backend::Memory).await?;
    let addr = a.local_addr()?;

    let first = publish_range(&a, &grid, 0..3).await?;
    assert_eq!(
        found(&consumer, addr, CatalogFilter::default())
            .await?
            .len(),
        3
    );

    // The replica publishes (its source is registered with both, as replicas do) and
    // withdraws one of the first replica's offers: the first one's catalog shows it.
    let (manifest, source) = asset(&grid, 3)?;
    if let Source::Custom { name, source } = &source {
        a.register_source(name, source.clone());
    }
    let p = b.publish(&manifest, source, vec![terms(OPEN)?]).await?;
    let withdrawn = first.first().copied().ok_or("no offer")?;
    b.withdraw(&withdrawn).await?;
    let now: HashSet<Hash256> = found(&consumer, addr, CatalogFilter::default())
        .await?
        .into_iter()
        .collect();
    let mut expected: HashSet<Hash256> = first.iter().skip(1).copied().collect();
    expected.extend(p.offers);
    assert_eq!(now, expected);
    for c in [&a, &b, &consumer] {
        c.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_rebuilt_from_the_store_after_a_restart() -> Res {
    let dir = tempfile::tempdir()?;
    let mut space = Space::new()?;
    let grid = space.member(1, Sector::POWER, "CN-SX")?;
    let bank = space.member(2, Sector::FINANCE, "CN-SX")?;
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path())?);
    let start = || {
        connector_with(
            &space,
            &grid,
            Backend::Memory,
            ConnectorConfig::default(),
            Some(store.clone()),
        )
    };
    let consumer = connector(&space, &bank, Backend::Memory).await?;
    let before = start().await?;
    let ids = publish_range(&before, &grid, 0..6).await?;
    let withdrawn = ids.first().copied().ok_or("no offer")?;
    before.withdraw(&withdrawn).await?;
    before.shutdown().await;
    drop(before);

    // A new connector over the same store: its sources registered again, the catalog
    // comes from the stored offers and manifests.
    let after = start().await?;
    for i in 0..6 {
        if let (_, Source::Custom { name, source }) = asset(&grid, i)? {
            after.register_source(&name, source);
        }
    }
    let addr = after.local_addr()?;
    let all: HashSet<Hash256> = found(&consumer, addr, CatalogFilter::default())
        .await?
        .into_iter()
        .collect();
    assert_eq!(all, ids.iter().skip(1).copied().collect());
    assert_eq!(found(&consumer, addr, keyword("rainfall")).await?.len(), 1);
    after.shutdown().await;
    consumer.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_large_manifests_stay_within_a_control_frame() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(1, Sector::POWER, "CN-SX")?;
    let bank = space.member(2, Sector::FINANCE, "CN-SX")?;
    let provider = connector(&space, &grid, Backend::Memory).await?;
    let consumer = connector(&space, &bank, Backend::Memory).await?;
    let addr = provider.local_addr()?;
    // Descriptions of the largest length allowed, 3 bytes a character: 60 entries of
    // about 25 KB are more than one control frame (1 MiB) holds.
    let long = "\u{4e2d}".repeat(tds_manifest::MAX_DESCRIPTION_CHARS);
    let mut ids = Vec::new();
    for i in 0..60 {
        let (manifest, source) = asset_described(&grid, i, long.clone())?;
        let p = provider
            .publish(&manifest, source, vec![terms(OPEN)?])
            .await?;
        ids.extend(p.offers);
    }
    let first = consumer
        .catalog(addr, CatalogFilter::default(), None)
        .await?;
    assert!(!first.items.is_empty() && first.items.len() < 60);
    assert!(first.next.is_some());
    let mut all = found(&consumer, addr, CatalogFilter::default()).await?;
    all.sort();
    ids.sort();
    assert_eq!(all, ids);
    provider.shutdown().await;
    consumer.shutdown().await;
    Ok(())
}
