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
        let now = SystemClock.now();
        let mut authority = Authority::new("Test Authority", SigningKey::from_seed(&[90; 32]))?;
        let crl = authority
            .revocation_list(now, now.saturating_add_millis(DAY_MS))?
            .into_envelope();
        Ok(Space {
            authority,
            now,
            crl,
        })
    }

    pub fn member(&mut self, seed: u8, sector: Sector, jurisdiction: &str) -> Res<Member> {
        let key = Arc::new(SigningKey::from_seed(&[seed; 32]));
        let signed = self.authority.admit(
            &Admission {
                subject_key: key.public_key(),
                name: format!("Member {seed}"),
                sectors: vec![sector],
                roles: vec![Role::Provider, Role::Consumer],
                jurisdiction: jurisdiction.parse::<Jurisdiction>()?,
                not_before: self.now,
                not_after: self.now.saturating_add_millis(30 * DAY_MS),
            },
            self.now,
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
    pub classification: Classification,
    pub personal: PersonalInfo,
    pub sector: Sector,
}

impl Default for AssetSpec {
    fn default() -> Self {
        AssetSpec {
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
        title: "Load curves".into(),
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
