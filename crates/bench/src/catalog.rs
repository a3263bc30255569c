//! `tds-bench catalog`: catalog searches over many assets, through a provider connector
//! and through the authority's federated catalog, against a bare QUIC round trip
//! measured in the same run.
//!
//! **Connector.** One provider and one consumer [`tds_connector::Connector`] in this
//! process on loopback, each with its redb store and provenance log in its own data
//! directory. The provider publishes `assets` small assets (one open offer each, the
//! bytes in memory), `publish_concurrency` at a time; titles, descriptions, keywords,
//! sectors and classifications vary with the asset's number ([`spec`]). The consumer
//! then searches the provider's catalog with [`tds_connector::Connector::catalog`] (one
//! page, as many entries as a page holds) over the one open QUIC connection, and every
//! entry of the page is checked on its side (offer and manifest signatures) before the
//! call returns:
//!
//! - *few*: a keyword that [`FEW`] assets carry (`lot-K`), every query another one; the
//!   whole catalog is looked at to find them;
//! - *many*: a word of the title that a quarter of the assets have (`hourly`, `daily`,
//!   `weekly`, `monthly`): the first page, [`MAX_PAGE`] entries.
//!
//! The very first search (finding nothing) opens the connection and is the provider's
//! first look at its catalog since it published (`cold_search_ms`); the first search of
//! each kind is reported alone (`*_first_ms`), then `queries` searches of each kind,
//! alternating, give the p50 and p99.
//!
//! **Federated.** An [`AuthorityService`] with its home in the same directory; `providers`
//! members admitted through `tds-join/1` (apply, approve, apply again) each publish
//! their share of `assets` entries (offer and manifest, the same kinds of assets) with
//! [`AuthorityClient::publish`] in batches of [`MAX_PUBLISH`]; one more member searches
//! with [`AuthorityClient::search`] (which checks every entry of the page) with the same
//! two kinds of queries. The service's caps (`max_catalog`, `max_per_provider`) are
//! printed beside.
//!
//! **Baselines.** On the same loopback with the same keys, TLS configuration and QUIC
//! transport parameters: a raw quinn request/response (a new bidirectional stream per
//! request, 1 KiB each way: `raw_rtt_ms`), and the same with a reply as long as the
//! connector's *many* page (`raw_page_rtt_ms`); and, without a network, the checks the
//! consumer makes of every entry of that page (`check_page_ms`: two Ed25519
//! verifications and the decoding of an offer and a manifest per entry).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_bytes::ByteArray;
use tds_authority::message::{MAX_PAGE as AUTHORITY_PAGE, MAX_PUBLISH};
use tds_authority::{
    apply, Application, AuthorityClient, AuthorityConfig, AuthorityService, ClientOptions,
    SearchRequest, Validity,
};
use tds_connector::{Connector, Source};
use tds_core::time::{SystemClock, DAY_MS};
use tds_core::{Clock, Signer, SigningKey};
use tds_identity::store::{AuthorityStore, DirAuthorityStore};
use tds_identity::{ParticipantId, Role, Sector};
use tds_manifest::content::ChunkTree;
use tds_manifest::{
    ChunkSize, Classification, Commitment, Manifest, PersonalInfo, MANIFEST_VERSION,
};
use tds_policy::contract::{create_offer, Offer};
use tds_protocol::join::{AdmissionRequest, ADMISSION_REQUEST_VERSION};
use tds_protocol::message::{CatalogFilter, CatalogItem, MAX_PAGE};
use tds_transport::LocalIdentity;

use crate::negotiate::{r3, raw_exchanges, Quantiles};
use crate::net::{json_line, load_1m, setup, NetBenchError, Space};
use crate::pair::{open_terms, Pair, Repeated};

/// Assets that carry each `lot-K` keyword (what a *few* query finds).
pub const FEW: u64 = 5;

/// What `tds-bench catalog` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogBench {
    /// Assets published (to the provider connector, and as entries of the federated
    /// catalog).
    pub assets: u64,
    /// Timed searches of each kind (few, many) on each side.
    pub queries: u64,
    /// Providers sharing the federated catalog's entries.
    pub providers: u64,
    /// Connector publications in flight.
    pub publish_concurrency: u64,
    /// Raw round trips of each kind.
    pub raw: u64,
}

/// The periods of titles: the *many* queries.
const PERIODS: [&str; 4] = ["Hourly", "Daily", "Weekly", "Monthly"];
const SUBJECTS: [&str; 9] = [
    "load",
    "generation",
    "ridership",
    "rainfall",
    "prices",
    "admissions",
    "outages",
    "emissions",
    "traffic counts",
];
const PLACES: [&str; 11] = [
    "Taiyuan", "Datong", "Yangquan", "Changzhi", "Jincheng", "Shuozhou", "Jinzhong", "Yuncheng",
    "Xinzhou", "Linfen", "Luliang",
];
const WORDS: [&str; 23] = [
    "grid",
    "meter",
    "forecast",
    "station",
    "sensor",
    "tariff",
    "bus",
    "rail",
    "road",
    "clinic",
    "claims",
    "market",
    "wind",
    "solar",
    "coal",
    "river",
    "air-quality",
    "temperature",
    "humidity",
    "billing",
    "maintenance",
    "quality",
    "open-data",
];

fn sectors() -> [Sector; 5] {
    [
        Sector::POWER,
        Sector::TRANSPORT,
        Sector::WEATHER,
        Sector::FINANCE,
        Sector::HEALTHCARE,
    ]
}

/// What asset `i` of `assets` says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetSpec {
    /// The title (its period word is what *many* queries look for).
    pub title: String,
    /// A sentence or two.
    pub description: String,
    /// Three keywords, the last `lot-K` (what *few* queries look for).
    pub keywords: Vec<String>,
    /// One of five sectors.
    pub sector: Sector,
    /// One of the three classifications.
    pub classification: Classification,
}

/// Entry `n` of `list`, cyclically (`list` is one of the non-empty constants above).
fn pick<T: Clone>(list: &[T], n: u64, fallback: T) -> T {
    let len = list.len().max(1) as u64;
    let i = usize::try_from(n % len).unwrap_or(0);
    list.get(i).cloned().unwrap_or(fallback)
}

/// The number of `lot-K` keywords among `assets` assets.
pub fn lots(assets: u64) -> u64 {
    (assets / FEW).max(1)
}

/// Asset `i` of `assets`.
pub fn spec(i: u64, assets: u64) -> AssetSpec {
    let period = pick(&PERIODS, i, "Hourly");
    let subject = pick(&SUBJECTS, i / 4, "load");
    let place = pick(&PLACES, i / 3, "Taiyuan");
    let sector = pick(&sectors(), i, Sector::POWER);
    let classification = pick(
        &[
            Classification::General,
            Classification::Important,
            Classification::Core,
        ],
        i / 7,
        Classification::General,
    );
    AssetSpec {
        title: format!("{period} {subject} of {place}, series {i}"),
        description: format!(
            "{period} {subject} recorded for {place} ({} sector) by station {}, since {}. \
             Checked for gaps and outliers; units and columns are in the schema.",
            sector.as_str(),
            i % 97,
            2001 + i % 23,
        ),
        keywords: vec![
            pick(&WORDS, i, "grid").to_owned(),
            // Another word: 1 to 22 places further on in the 23.
            pick(&WORDS, i + 1 + (i / 23) % 22, "meter").to_owned(),
            format!("lot-{}", i % lots(assets)),
        ],
        sector,
        classification,
    }
}

/// The *few* filter of query `q`.
fn few_filter(q: u64, assets: u64) -> CatalogFilter {
    CatalogFilter {
        keyword: Some(format!("lot-{}", q.wrapping_mul(37) % lots(assets))),
        ..CatalogFilter::default()
    }
}

/// The *many* filter of query `q`.
fn many_filter(q: u64) -> CatalogFilter {
    CatalogFilter {
        keyword: Some(pick(&PERIODS, q, "Hourly").to_lowercase()),
        ..CatalogFilter::default()
    }
}

/// Asset `i`'s bytes and its manifest signed by `owner`.
fn asset(owner: &SigningKey, i: u64, assets: u64) -> Result<(Bytes, Vec<u8>), NetBenchError> {
    let s = spec(i, assets);
    let bytes = Bytes::from(format!("{}\n{}\n", s.title, s.description).into_bytes());
    let len = bytes.len() as u64;
    // One chunk: the root is the chunk's leaf hash.
    let root = ChunkTree::from_leaves([tds_core::merkle::leaf_hash(&bytes)]).root();
    let content = Commitment::new(len, ChunkSize::MIN, root).map_err(setup("commitment"))?;
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        title: s.title,
        description: s.description,
        sector: s.sector,
        media_type: "text/csv".into(),
        schema: None,
        keywords: s.keywords,
        owner: ParticipantId::of(&owner.public_key()),
        owner_key: owner.public_key(),
        created: SystemClock.now(),
        classification: s.classification,
        personal: PersonalInfo::None,
        residency: None,
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    };
    let signed = manifest.sign(owner).map_err(setup("manifest"))?;
    Ok((bytes, signed))
}

/// What the searches of one kind measured.
struct Searches {
    first_ms: f64,
    times: Quantiles,
    /// Entries of the first page of the first search.
    items: usize,
    /// Bytes of that page's signed offers and manifests.
    bytes: usize,
}

/// Runs the first search of each kind, then `queries` of each kind alternating; `search`
/// returns the page's entries and their bytes.
async fn searches<F, Fut>(
    queries: u64,
    assets: u64,
    search: F,
) -> Result<(Searches, Searches), NetBenchError>
where
    F: Fn(CatalogFilter) -> Fut,
    Fut: std::future::Future<Output = Result<(usize, usize), NetBenchError>>,
{
    let timed = |f: CatalogFilter| {
        let t = Instant::now();
        let s = search(f);
        async move {
            let r = s.await?;
            Ok::<_, NetBenchError>((t.elapsed(), r))
        }
    };
    let (few_first, (few_items, few_bytes)) = timed(few_filter(0, assets)).await?;
    let (many_first, (many_items, many_bytes)) = timed(many_filter(0)).await?;
    let (mut few, mut many) = (Vec::new(), Vec::new());
    for q in 1..=queries {
        few.push(timed(few_filter(q, assets)).await?.0);
        many.push(timed(many_filter(q)).await?.0);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok((
        Searches {
            first_ms: ms(few_first),
            times: Quantiles::new(few),
            items: few_items,
            bytes: few_bytes,
        },
        Searches {
            first_ms: ms(many_first),
            times: Quantiles::new(many),
            items: many_items,
            bytes: many_bytes,
        },
    ))
}

/// Publishes `assets` assets to the provider, `concurrency` at a time.
async fn publish_all(
    provider: &Connector,
    space: &Space,
    assets: u64,
    concurrency: u64,
) -> Result<(), NetBenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let owner = space.server.key.clone();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (next, provider, owner) = (next.clone(), provider.clone(), owner.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= assets {
                        return Ok::<_, NetBenchError>(());
                    }
                    let (bytes, manifest) = asset(&owner, i, assets)?;
                    let len = bytes.len() as u64;
                    let source = Source::Custom {
                        name: format!("catalog-{i}"),
                        source: Arc::new(Repeated::new(bytes, len)),
                    };
                    provider
                        .publish(&manifest, source, vec![open_terms()?])
                        .await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await
            .map_err(|e| NetBenchError::Setup(format!("a publishing task failed: {e}")))??;
    }
    Ok(())
}

/// A catalog entry's signed offer and manifest.
type SignedEntry = (Vec<u8>, Vec<u8>);

/// The checks a consumer makes of every entry of a page it receives (the offer's
/// signature, the manifest's signature with the offer's provider key), here without a
/// network: the median of 5 passes over `page`, in milliseconds.
fn check_page(page: &[SignedEntry]) -> Result<f64, NetBenchError> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for (offer, manifest) in page {
            let o = tds_policy::contract::verify_offer(offer).map_err(setup("offer"))?;
            tds_manifest::open(manifest)
                .and_then(|m| m.verify(&o.offer().provider_key))
                .map_err(setup("manifest"))?;
        }
        times.push(t.elapsed());
    }
    Ok(Quantiles::new(times).ms(0.5))
}

/// What the connector part measured.
struct Connected {
    /// Publishing every asset.
    published: Duration,
    /// The first search: connection set-up and the provider's first look at its catalog.
    cold: Duration,
    few: Searches,
    many: Searches,
    /// The consumer's checks of the largest page, without a network.
    check_page_ms: f64,
}

/// The connector part.
async fn connector_part(
    space: &Space,
    dir: &Path,
    bench: CatalogBench,
) -> Result<Connected, NetBenchError> {
    let pair = Pair::start(space, dir).await?;
    let run = async {
        let t = Instant::now();
        publish_all(
            &pair.provider,
            space,
            bench.assets,
            bench.publish_concurrency,
        )
        .await?;
        let published = t.elapsed();
        // Opens the one connection the searches use, with a search that finds nothing
        // (the provider's first look at its catalog since it published).
        let t = Instant::now();
        pair.consumer
            .catalog(
                pair.addr,
                CatalogFilter {
                    keyword: Some("no-such-word".into()),
                    ..CatalogFilter::default()
                },
                None,
            )
            .await?;
        let cold = t.elapsed();
        let (consumer, addr) = (pair.consumer.clone(), pair.addr);
        // The largest page seen, kept for the local check baseline.
        let largest: Arc<Mutex<Vec<SignedEntry>>> = Arc::default();
        let (few, many) = searches(bench.queries, bench.assets, |filter| {
            let (consumer, largest) = (consumer.clone(), largest.clone());
            async move {
                let page = consumer.catalog(addr, filter, None).await?;
                let bytes = page
                    .items
                    .iter()
                    .map(|e| e.offer_bytes.len() + e.manifest.envelope().len())
                    .sum();
                let mut l = largest.lock().unwrap_or_else(PoisonError::into_inner);
                if page.items.len() > l.len() {
                    *l = page
                        .items
                        .iter()
                        .map(|e| (e.offer_bytes.clone(), e.manifest.envelope().to_vec()))
                        .collect();
                }
                Ok((page.items.len(), bytes))
            }
        })
        .await?;
        let page = std::mem::take(&mut *largest.lock().unwrap_or_else(PoisonError::into_inner));
        let check_page_ms = tokio::task::spawn_blocking(move || check_page(&page))
            .await
            .map_err(|e| NetBenchError::Setup(format!("checking a page: {e}")))??;
        Ok::<_, NetBenchError>(Connected {
            published,
            cold,
            few,
            many,
            check_page_ms,
        })
    }
    .await;
    pair.shutdown().await;
    run
}

fn admission_request(key: &SigningKey, nonce: u8) -> Result<Vec<u8>, NetBenchError> {
    let now = SystemClock.now();
    AdmissionRequest {
        version: ADMISSION_REQUEST_VERSION,
        applicant_key: key.public_key(),
        name: "Bench Member".into(),
        sectors: vec![Sector::POWER],
        roles: vec![Role::Provider, Role::Consumer],
        jurisdiction: "CN-SX".parse().map_err(setup("jurisdiction"))?,
        not_before: now,
        not_after: now.saturating_add_millis(DAY_MS),
        time: now,
        nonce: ByteArray::new([nonce; 16]),
    }
    .sign(key)
    .map_err(setup("admission request"))
}

/// Admits the holder of `key` through `tds-join/1` (apply, approve, apply again) and
/// connects it to the service.
async fn member(
    service: &AuthorityService,
    addr: SocketAddr,
    key: &Arc<SigningKey>,
) -> Result<AuthorityClient, NetBenchError> {
    let authority = service.public_key();
    let signer: Arc<dyn Signer> = key.clone();
    let options = ClientOptions::default();
    let asked = apply(
        addr,
        signer.clone(),
        &authority,
        &admission_request(key, 1)?,
        &options,
    )
    .await
    .map_err(setup("applying"))?;
    let Application::Pending(id) = asked else {
        return Err(NetBenchError::Setup("expected a pending admission".into()));
    };
    service
        .approve(&id, Validity::Requested)
        .map_err(setup("approving"))?;
    let again = apply(
        addr,
        signer.clone(),
        &authority,
        &admission_request(key, 2)?,
        &options,
    )
    .await
    .map_err(setup("applying again"))?;
    let Application::Admitted(credential) = again else {
        return Err(NetBenchError::Setup("expected an admission".into()));
    };
    let identity = LocalIdentity::new(signer, credential, None)?;
    AuthorityClient::connect(addr, &identity, &authority)
        .await
        .map_err(setup("connecting to the authority"))
}

/// What the federated part measured.
struct Federated {
    published: Duration,
    entries: usize,
    max_catalog: usize,
    max_per_provider: usize,
    few: Searches,
    many: Searches,
}

/// The federated part, with the authority's home under `dir`.
async fn federated_part(dir: &Path, bench: CatalogBench) -> Result<Federated, NetBenchError> {
    let home = DirAuthorityStore::create_dir(&dir.join("authority"), &mut |_| {})
        .map_err(setup("authority home"))?;
    home.create("Bench Authority")
        .map_err(setup("authority home"))?;
    let mut config = AuthorityConfig::default();
    // Every member of this bench applies from 127.0.0.1.
    config.join_limits.per_source = tds_transport::join::RateLimit {
        burst: 1024,
        per_minute: 6000,
    };
    let (max_catalog, max_per_provider) = (config.max_catalog, config.max_per_provider);
    let service = AuthorityService::open(home, config).map_err(setup("authority service"))?;
    let endpoint = service
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(setup("authority endpoint"))?;
    let addr = endpoint.local_addr()?;

    let providers = bench.providers.max(1);
    let t = Instant::now();
    let mut clients = Vec::new();
    for p in 0..providers {
        let seed = u8::try_from(p % 200).unwrap_or(0).wrapping_add(10);
        let key = Arc::new(SigningKey::from_seed(&[seed; 32]));
        let client = member(&service, addr, &key).await?;
        let now = SystemClock.now();
        let mine: Vec<u64> = (0..bench.assets).filter(|i| i % providers == p).collect();
        for batch in mine.chunks(MAX_PUBLISH) {
            let mut items = Vec::with_capacity(batch.len());
            for &i in batch {
                let (_, manifest) = asset(&key, i, bench.assets)?;
                let id = tds_manifest::open(&manifest)
                    .map_err(setup("manifest"))?
                    .id()
                    .to_string();
                let offer = create_offer(
                    key.as_ref(),
                    &Offer {
                        asset: id.parse().map_err(setup("asset id"))?,
                        provider: key.key_id(),
                        provider_key: key.public_key(),
                        policy: tds_policy::parse("bench", crate::pair::OPEN_POLICY)
                            .map_err(setup("policy"))?,
                        price: None,
                        not_before: now,
                        not_after: now.saturating_add_millis(DAY_MS),
                        licence: None,
                    },
                )
                .map_err(setup("offer"))?;
                items.push(CatalogItem {
                    offer: offer.into(),
                    manifest: manifest.into(),
                });
            }
            client
                .publish(items)
                .await
                .map_err(setup("publishing to the authority"))?;
        }
        clients.push(client);
    }
    let published = t.elapsed();
    let entries = service.catalog_len();

    let searcher = member(&service, addr, &Arc::new(SigningKey::from_seed(&[250; 32]))).await?;
    let searcher = Arc::new(searcher);
    let limit = AUTHORITY_PAGE.min(MAX_PAGE);
    let (few, many) = searches(bench.queries, bench.assets, |filter| {
        let searcher = searcher.clone();
        async move {
            let page = searcher
                .search(&SearchRequest {
                    filter,
                    cursor: None,
                    limit,
                })
                .await
                .map_err(setup("searching the authority"))?;
            let bytes = page
                .items
                .iter()
                .map(|e| e.offer.len() + e.manifest.len())
                .sum();
            Ok((page.items.len(), bytes))
        }
    })
    .await?;
    searcher.close();
    for c in &clients {
        c.close();
    }
    drop(endpoint);
    Ok(Federated {
        published,
        entries,
        max_catalog,
        max_per_provider,
        few,
        many,
    })
}

/// `tds-bench catalog`: the run described in the module docs, with the data directories
/// under `dir`. One JSON line.
pub async fn catalog(bench: CatalogBench, dir: &Path) -> Result<String, NetBenchError> {
    let space = crate::net::space()?;
    let load = load_1m();
    let Connected {
        published,
        cold,
        few,
        many,
        check_page_ms,
    } = connector_part(&space, dir, bench).await?;
    let fed = federated_part(dir, bench).await?;

    let raw_n = bench.raw.max(1);
    let rtt = raw_exchanges(&space, raw_n, 1, false, 1024).await?;
    let page_rtt = raw_exchanges(&space, raw_n, 1, false, many.bytes.max(1)).await?;
    let (rtt, page_rtt) = (rtt.times.ms(0.5), page_rtt.times.ms(0.5));
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| r3(a / b));
    let (few_p50, many_p50) = (few.times.ms(0.5), many.times.ms(0.5));
    let (fed_few_p50, fed_many_p50) = (fed.few.times.ms(0.5), fed.many.times.ms(0.5));
    Ok(json_line(&[
        ("assets", bench.assets.into()),
        ("queries", bench.queries.into()),
        ("few_matches", few.items.into()),
        ("many_page_items", many.items.into()),
        ("many_page_bytes", many.bytes.into()),
        ("publish_s", r3(published.as_secs_f64()).into()),
        ("cold_search_ms", r3(cold.as_secs_f64() * 1e3).into()),
        ("few_first_ms", r3(few.first_ms).into()),
        ("few_p50_ms", r3(few_p50).into()),
        ("few_p99_ms", r3(few.times.ms(0.99)).into()),
        ("many_first_ms", r3(many.first_ms).into()),
        ("many_p50_ms", r3(many_p50).into()),
        ("many_p99_ms", r3(many.times.ms(0.99)).into()),
        ("check_page_ms", r3(check_page_ms).into()),
        ("federated_providers", bench.providers.max(1).into()),
        ("federated_entries", fed.entries.into()),
        ("federated_max_catalog", fed.max_catalog.into()),
        ("federated_max_per_provider", fed.max_per_provider.into()),
        (
            "federated_publish_s",
            r3(fed.published.as_secs_f64()).into(),
        ),
        ("federated_few_matches", fed.few.items.into()),
        ("federated_many_page_items", fed.many.items.into()),
        ("federated_few_first_ms", r3(fed.few.first_ms).into()),
        ("federated_few_p50_ms", r3(fed_few_p50).into()),
        ("federated_few_p99_ms", r3(fed.few.times.ms(0.99)).into()),
        ("federated_many_first_ms", r3(fed.many.first_ms).into()),
        ("federated_many_p50_ms", r3(fed_many_p50).into()),
        ("federated_many_p99_ms", r3(fed.many.times.ms(0.99)).into()),
        ("raw_rtt_ms", r3(rtt).into()),
        ("raw_page_rtt_ms", r3(page_rtt).into()),
        ("few_ratio_vs_rtt", ratio(few_p50, rtt).into()),
        ("many_ratio_vs_page_rtt", ratio(many_p50, page_rtt).into()),
        ("federated_few_ratio_vs_rtt", ratio(fed_few_p50, rtt).into()),
        (
            "federated_many_ratio_vs_page_rtt",
            ratio(fed_many_p50, page_rtt).into(),
        ),
        ("dir", dir.display().to_string().into()),
        ("load_1m", load.into()),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_and_many_queries_find_what_the_specs_say() {
        let assets = 1000;
        let few = few_filter(3, assets);
        let lot = few.keyword.clone().unwrap_or_default();
        let hits = (0..assets)
            .filter(|i| spec(*i, assets).keywords.contains(&lot))
            .count();
        assert_eq!(hits as u64, FEW);
        let word = many_filter(1).keyword.unwrap_or_default();
        let many = (0..assets)
            .filter(|i| spec(*i, assets).title.to_lowercase().contains(&word))
            .count();
        assert_eq!(many as u64, assets / 4);
        // No title or description holds a lot keyword; keywords differ.
        assert!((0..assets).all(|i| {
            let s = spec(i, assets);
            !s.title.contains("lot-")
                && !s.description.contains("lot-")
                && s.keywords.first() != s.keywords.get(1)
        }));
    }
}
