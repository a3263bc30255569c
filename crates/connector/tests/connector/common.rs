//! A data space for connector tests: an authority, members, connectors on loopback.

use std::path::Path;
use std::sync::Arc;

use tds_connector::store::Store;
use tds_connector::{Connector, ConnectorConfig, OfferTerms, Source};
use tds_core::time::{SystemClock, DAY_MS};
use tds_core::{Clock, Signer, SigningKey, Timestamp};
use tds_identity::{Admission, Authority, Jurisdiction, Role, Sector, TrustStore};
use tds_manifest::content::ContentBuilder;
use tds_manifest::{ChunkSize, Classification, Manifest, PersonalInfo, MANIFEST_VERSION};

pub type Res<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Sizes scale with `TDS_TEST_SCALE` (`full`: the sizes).
pub fn full() -> bool {
    std::env::var("TDS_TEST_SCALE").is_ok_and(|v| v == "full")
}

pub struct Member {
    pub key: Arc<SigningKey>,
    pub credential: Vec<u8>,
    pub serial: u64,
}

pub struct Space {
    pub authority: Authority,
    pub now: Timestamp,
    pub crl: Vec<u8>,
}

impl Space {
    pub fn new() -> Res<Space> {
        Space::with_authority_seed(90)
    }

    /// A space whose authority's key is made from `seed`.
    pub fn with_authority_seed(seed: u8) -> Res<Space> {
        let now = SystemClock.now();
        let mut authority = Authority::new("Test Authority", SigningKey::from_seed(&[seed; 32]))?;
        let crl = authority
            .revocation_list(now, now.saturating_add_millis(DAY_MS))?
            .into_envelope();
        Ok(Space {
            authority,
            now,
            crl,
        })
    }

    /// A member admitted now for 30 days.
    pub fn member(&mut self, seed: u8, sector: Sector, jurisdiction: &str) -> Res<Member> {
        let (from, to) = (self.now, self.now.saturating_add_millis(30 * DAY_MS));
        self.member_valid(seed, sector, jurisdiction, from, to)
    }

    /// A member whose credential is valid from `not_before` to `not_after`.
    pub fn member_valid(
        &mut self,
        seed: u8,
        sector: Sector,
        jurisdiction: &str,
        not_before: Timestamp,
        not_after: Timestamp,
    ) -> Res<Member> {
        let key = Arc::new(SigningKey::from_seed(&[seed; 32]));
        let signed = self.authority.admit(
            &Admission {
                subject_key: key.public_key(),
                name: format!("Member {seed}"),
                sectors: vec![sector],
                roles: vec![Role::Provider, Role::Consumer],
                jurisdiction: jurisdiction.parse::<Jurisdiction>()?,
                not_before,
                not_after,
            },
            not_before,
        )?;
        let serial = signed.value().serial();
        Ok(Member {
            key,
            credential: signed.into_envelope(),
            serial,
        })
    }

    /// Revokes a member; returns the new list.
    pub fn revoke(&mut self, serial: u64) -> Res<Vec<u8>> {
        self.authority.revoke(serial)?;
        let now = SystemClock.now();
        self.crl = self
            .authority
            .revocation_list(now, now.saturating_add_millis(DAY_MS))?
            .into_envelope();
        Ok(self.crl.clone())
    }

    pub fn trust(&self) -> Res<TrustStore> {
        let mut trust = TrustStore::new();
        trust.add_authority(self.authority.public_key());
        trust.add_revocation_list(&self.crl, SystemClock.now())?;
        Ok(trust)
    }
}

pub enum Backend<'a> {
    Memory,
    Dir(&'a Path),
}

pub async fn connector(space: &Space, m: &Member, backend: Backend<'_>) -> Res<Connector> {
    connector_with(space, m, backend, ConnectorConfig::default(), None).await
}

pub async fn connector_with(
    space: &Space,
    m: &Member,
    backend: Backend<'_>,
    config: ConnectorConfig,
    store: Option<Arc<dyn Store>>,
) -> Res<Connector> {
    let mut b = Connector::builder(m.key.clone(), m.credential.clone(), space.trust()?)
        .revocation_list(space.crl.clone())
        .config(config);
    b = match backend {
        Backend::Memory => b.memory(),
        Backend::Dir(d) => b.data_dir(d),
    };
    if let Some(s) = store {
        b = b.store(s);
    }
    Ok(b.start().await?)
}

pub struct AssetSpec {
    pub title: String,
    pub classification: Classification,
    pub personal: PersonalInfo,
    pub sector: Sector,
}

impl Default for AssetSpec {
    fn default() -> Self {
        AssetSpec {
            title: "Load curves".into(),
            classification: Classification::General,
            personal: PersonalInfo::None,
            sector: Sector::POWER,
        }
    }
}

/// A manifest of `path`'s bytes signed by `owner`.
pub fn manifest_for(owner: &Member, path: &Path, chunk: u64, spec: &AssetSpec) -> Res<Vec<u8>> {
    let chunk_size = ChunkSize::new(chunk)?;
    let file = std::fs::File::open(path)?;
    let content = ContentBuilder::new(chunk_size, std::num::NonZeroUsize::MIN).build_file(&file)?;
    let m = Manifest {
        version: MANIFEST_VERSION,
        title: spec.title.clone(),
        description: "Quarter-hourly feeder load".into(),
        sector: spec.sector.clone(),
        media_type: "application/octet-stream".into(),
        schema: None,
        keywords: vec!["load".into()],
        owner: tds_identity::ParticipantId::of(&owner.key.public_key()),
        owner_key: owner.key.public_key(),
        created: SystemClock.now(),
        classification: spec.classification,
        personal: spec.personal,
        residency: None,
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    };
    Ok(m.sign(owner.key.as_ref())?)
}

/// Deterministic bytes.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u64::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn terms(policy: &str) -> Res<OfferTerms> {
    let now = SystemClock.now();
    Ok(OfferTerms {
        policy: tds_policy::parse("test", policy)?,
        price: None,
        not_before: Timestamp::from_millis(now.as_millis().saturating_sub(60_000)),
        not_after: now.saturating_add_millis(DAY_MS),
        licence: None,
    })
}

/// Publishes `bytes` (written to `dir/name`) under one offer of `policy`.
#[expect(clippy::too_many_arguments, reason = "a test helper")]
pub async fn publish(
    provider: &Connector,
    owner: &Member,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    chunk: u64,
    spec: &AssetSpec,
    policy: &str,
) -> Res<(String, Vec<u8>)> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    let manifest = manifest_for(owner, &path, chunk, spec)?;
    let p = provider
        .publish(&manifest, Source::File(path), vec![terms(policy)?])
        .await?;
    let id = p.offers.first().copied().ok_or("no offer")?;
    let rec = provider
        .store()
        .get(tds_connector::store::Table::Offers, id.as_bytes())?
        .ok_or("offer not stored")?;
    let rec: tds_connector::records::OfferRecord = tds_core::cbor::decode(&rec)?;
    Ok((p.asset, rec.offer))
}

/// Publishes `manifest` served from `source` under one offer of `policy`; returns the
/// asset id and the signed offer.
pub async fn publish_source(
    provider: &Connector,
    manifest: &[u8],
    source: Source,
    policy: &str,
) -> Res<(String, Vec<u8>)> {
    let p = provider
        .publish(manifest, source, vec![terms(policy)?])
        .await?;
    let id = p.offers.first().copied().ok_or("no offer")?;
    let rec = provider
        .store()
        .get(tds_connector::store::Table::Offers, id.as_bytes())?
        .ok_or("offer not stored")?;
    let rec: tds_connector::records::OfferRecord = tds_core::cbor::decode(&rec)?;
    Ok((p.asset, rec.offer))
}

/// A provider's data source over bytes that watches and bends what it serves. Nothing
/// happens until [`arm`](Self::arm) (publishing reads the source to build the chunk
/// tree); then every read of one whole chunk is counted, chunk `corrupt` is served with
/// one byte flipped (on its first read, or on every read), and reads of chunks at or
/// after `hold` wait while the source is held.
pub struct ChunkSource {
    pub bytes: Vec<u8>,
    pub chunk: u64,
    armed: std::sync::atomic::AtomicBool,
    reads: Vec<std::sync::atomic::AtomicU64>,
    corrupt: Option<(u64, bool)>,
    corrupted: std::sync::atomic::AtomicU64,
    hold: Option<u64>,
    held: std::sync::atomic::AtomicBool,
}

impl ChunkSource {
    pub fn new(bytes: Vec<u8>, chunk: u64) -> ChunkSource {
        let chunks = (bytes.len() as u64).div_ceil(chunk);
        ChunkSource {
            bytes,
            chunk,
            armed: false.into(),
            reads: (0..chunks).map(|_| 0.into()).collect(),
            corrupt: None,
            corrupted: 0.into(),
            hold: None,
            held: false.into(),
        }
    }

    /// Serves chunk `index` corrupted: on its first read only, or on `every` read.
    pub fn corrupting(mut self, index: u64, every: bool) -> ChunkSource {
        self.corrupt = Some((index, every));
        self
    }

    /// Holds reads of chunks from `index` on until [`release`](Self::release).
    pub fn holding_from(mut self, index: u64) -> ChunkSource {
        self.hold = Some(index);
        self.held = true.into();
        self
    }

    pub fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.held.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn chunks(&self) -> u64 {
        self.reads.len() as u64
    }

    /// Reads of each chunk since armed.
    pub fn reads(&self) -> Vec<u64> {
        self.reads
            .iter()
            .map(|r| r.load(std::sync::atomic::Ordering::SeqCst))
            .collect()
    }

    /// Corrupted chunks served.
    pub fn corrupted(&self) -> u64 {
        self.corrupted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The correct bytes of chunk `index`.
    pub fn chunk_bytes(&self, index: u64) -> &[u8] {
        let start = usize::try_from(index * self.chunk).unwrap_or(usize::MAX);
        let end = usize::try_from((index + 1) * self.chunk)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        self.bytes.get(start..end).unwrap_or_default()
    }
}

impl tds_connector::DataSource for ChunkSource {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let src = usize::try_from(offset)
            .ok()
            .and_then(|s| self.bytes.get(s..s.checked_add(buf.len())?))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        let index = offset / self.chunk;
        let whole = offset.is_multiple_of(self.chunk)
            && buf.len() as u64 == self.chunk.min(self.len() - offset);
        if !self.armed.load(SeqCst) || !whole {
            return Ok(());
        }
        if self.hold.is_some_and(|h| index >= h) {
            // Bounded, so a test that fails before releasing cannot hang.
            let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while self.held.load(SeqCst) && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let first = self
            .reads
            .get(usize::try_from(index).unwrap_or(usize::MAX))
            .map_or(0, |r| r.fetch_add(1, SeqCst))
            == 0;
        if let Some((bad, every)) = self.corrupt {
            if index == bad && (every || first) {
                if let Some(b) = buf.get_mut(buf.len() / 2) {
                    *b ^= 0x5a;
                }
                self.corrupted.fetch_add(1, SeqCst);
            }
        }
        Ok(())
    }
}

/// Bytes of the chunks `state` marks verified, and their indexes.
pub fn verified_chunks(state: &tds_manifest::content::VerifierState) -> (u64, Vec<u64>) {
    let chunks = state.size.div_ceil(state.chunk_size.max(1));
    let mut bytes = 0;
    let mut set = Vec::new();
    for i in 0..chunks {
        let byte = state
            .verified
            .get(usize::try_from(i / 8).unwrap_or(usize::MAX))
            .copied()
            .unwrap_or(0);
        if byte & (1 << (i % 8)) != 0 {
            set.push(i);
            bytes += state.chunk_size.min(state.size - i * state.chunk_size);
        }
    }
    (bytes, set)
}

/// The resume state a consumer stored for `agreement`, if any.
pub fn stored_state(
    consumer: &Connector,
    agreement: &tds_core::hash::Hash256,
) -> Res<Option<tds_manifest::content::VerifierState>> {
    let Some(rec) = consumer
        .store()
        .get(tds_connector::store::Table::Transfers, agreement.as_bytes())?
    else {
        return Ok(None);
    };
    let rec: tds_connector::records::FetchRecord = tds_core::cbor::decode(&rec)?;
    if rec.verified.is_empty() {
        return Ok(None);
    }
    Ok(Some(tds_manifest::content::VerifierState::from_bytes(
        &rec.verified,
    )?))
}

/// The kinds of the events of `c`'s log naming `agreement`, oldest first.
pub fn event_kinds(c: &Connector, agreement: &tds_core::hash::Hash256) -> Res<Vec<String>> {
    let log = c.log();
    let mut v = Vec::new();
    for i in log.events_for(agreement)? {
        v.push(log.event(i)?.kind().to_owned());
    }
    Ok(v)
}
