//! The authority service on loopback: admission (pending, approve, reject), revocation
//! lists, the federated catalog, and witnessing with split views refused.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use serde_bytes::ByteArray;
use tds_authority::{
    apply, Application, AuthorityClient, AuthorityConfig, AuthorityService, CatalogFilter,
    CatalogItem, ClientOptions, RevokeTarget, SearchRequest, Validity,
};
use tds_core::time::DAY_MS;
use tds_core::{ErrorCode, PublicKey, Signer, SigningKey, Timestamp};
use tds_identity::store::{AuthorityStore, DirAuthorityStore};
use tds_identity::{ParticipantId, Role, Sector, TrustStore};
use tds_manifest::content::{ChunkTree, ContentBuilder};
use tds_manifest::{ChunkSize, Classification, Manifest, PersonalInfo, MANIFEST_VERSION};
use tds_policy::contract::{create_offer, Offer};
use tds_protocol::join::{AdmissionRequest, ADMISSION_REQUEST_VERSION};
use tds_provenance::{Log, LogStore, MemoryStore};
use tds_transport::join::RateLimit;
use tds_transport::LocalIdentity;

type R = Result<(), Box<dyn std::error::Error>>;

struct Fixture {
    _dir: tempfile::TempDir,
    service: AuthorityService,
    addr: SocketAddr,
    key: PublicKey,
    _endpoint: tds_transport::ServiceEndpoint,
}

fn fixture() -> Result<Fixture, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let home_dir = dir.path().join("authority");
    let home = DirAuthorityStore::create_dir(&home_dir, &mut |_| {})?;
    home.create("Test Authority")?;
    // Every applicant of these tests comes from 127.0.0.1: one source address.
    let mut config = AuthorityConfig::default();
    config.join_limits.per_source = RateLimit {
        burst: 64,
        per_minute: 60,
    };
    let service = AuthorityService::open(home, config)?;
    let endpoint = service.serve("127.0.0.1:0".parse()?)?;
    let addr = endpoint.local_addr()?;
    Ok(Fixture {
        _dir: dir,
        key: service.public_key(),
        service,
        addr,
        _endpoint: endpoint,
    })
}

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

fn request(
    key: &SigningKey,
    name: &str,
    sector: Sector,
    nonce: u8,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let now = Timestamp::now();
    Ok(AdmissionRequest {
        version: ADMISSION_REQUEST_VERSION,
        applicant_key: key.public_key(),
        name: name.into(),
        sectors: vec![sector],
        roles: vec![Role::Provider, Role::Consumer],
        jurisdiction: "CN".parse()?,
        not_before: now,
        not_after: now.saturating_add_millis(30 * DAY_MS),
        time: now,
        nonce: ByteArray::new([nonce; 16]),
    }
    .sign(key)?)
}

async fn ask(
    f: &Fixture,
    key: &Arc<SigningKey>,
    sector: Sector,
    nonce: u8,
) -> Result<Application, tds_authority::AuthorityError> {
    let signed = request(key, "Member", sector, nonce)
        .map_err(|e| tds_authority::AuthorityError::BadRequest(e.to_string()))?;
    apply(
        f.addr,
        key.clone() as Arc<dyn Signer>,
        &f.key,
        &signed,
        &options(),
    )
    .await
}

/// Applies, is approved, and returns the member's identity.
async fn member(
    f: &Fixture,
    seed: u8,
    sector: Sector,
) -> Result<(Arc<SigningKey>, LocalIdentity), Box<dyn std::error::Error>> {
    member_with_credential(f, seed, sector)
        .await
        .map(|(k, i, _)| (k, i))
}

async fn member_with_credential(
    f: &Fixture,
    seed: u8,
    sector: Sector,
) -> Result<(Arc<SigningKey>, LocalIdentity, Vec<u8>), Box<dyn std::error::Error>> {
    let key = Arc::new(SigningKey::from_seed(&[seed; 32]));
    let Application::Pending(id) = ask(f, &key, sector.clone(), 1).await? else {
        return Err("expected pending".into());
    };
    f.service.approve(&id, Validity::Requested)?;
    let Application::Admitted(credential) = ask(f, &key, sector, 2).await? else {
        return Err("expected admitted".into());
    };
    let identity = LocalIdentity::new(key.clone() as Arc<dyn Signer>, credential.clone(), None)?;
    Ok((key, identity, credential))
}

fn trust(f: &Fixture) -> TrustStore {
    let mut t = TrustStore::new();
    t.add_authority(f.key);
    t
}

#[tokio::test]
async fn join_pending_approve_admitted_credential_verifies() -> R {
    let f = fixture()?;
    let key = Arc::new(SigningKey::from_seed(&[7; 32]));
    let Application::Pending(id) = ask(&f, &key, Sector::POWER, 1).await? else {
        return Err("expected pending".into());
    };
    // Asking again before a decision: still pending, same id, one request queued.
    assert_eq!(
        ask(&f, &key, Sector::POWER, 2).await?,
        Application::Pending(id.clone())
    );
    let pending = f.service.pending()?;
    assert_eq!(pending.len(), 1);
    let p = &pending[0];
    assert_eq!(p.id, id);
    assert_eq!(p.key, key.public_key());
    assert_eq!(p.applicant, ParticipantId::of(&key.public_key()));
    assert_eq!(p.sectors, vec![Sector::POWER]);
    assert_eq!(p.name, "Member");

    // A unique prefix names the request.
    let approved = f.service.approve(&id[..10], Validity::Days(10))?;
    assert!(f.service.pending()?.is_empty());
    let e = f.service.approve(&id, Validity::Requested).unwrap_err();
    assert_eq!(e.code(), "authority.already_decided");

    let Application::Admitted(credential) = ask(&f, &key, Sector::POWER, 3).await? else {
        return Err("expected admitted".into());
    };
    assert_eq!(credential, approved.credential);
    let crl = f.service.revocation_list()?;
    let mut t = trust(&f);
    t.add_revocation_list(&crl, Timestamp::now())?;
    let v = t.verify(&credential, Timestamp::now())?;
    assert_eq!(v.subject(), ParticipantId::of(&key.public_key()));
    assert_eq!(v.serial(), approved.serial);
    Ok(())
}

#[tokio::test]
async fn a_rejected_applicant_is_refused() -> R {
    let f = fixture()?;
    let key = Arc::new(SigningKey::from_seed(&[8; 32]));
    let Application::Pending(id) = ask(&f, &key, Sector::FINANCE, 1).await? else {
        return Err("expected pending".into());
    };
    f.service.reject(&id, "unknown organisation")?;
    let e = ask(&f, &key, Sector::FINANCE, 2).await.unwrap_err();
    assert_eq!(e.code(), "authority.rejected");
    assert!(e.to_string().contains("unknown organisation"), "{e}");
    assert_eq!(
        f.service.reject(&id, "again").unwrap_err().code(),
        "authority.already_decided"
    );
    assert_eq!(
        f.service
            .approve("00000000", Validity::Requested)
            .unwrap_err()
            .code(),
        "authority.unknown_request"
    );
    Ok(())
}

#[tokio::test]
async fn a_revocation_reaches_the_fetched_list_and_the_member_loses_access() -> R {
    let f = fixture()?;
    let (_key, identity, revoked_credential) = member_with_credential(&f, 9, Sector::POWER).await?;
    let (_other, watcher) = member(&f, 10, Sector::POWER).await?;
    let client = AuthorityClient::connect(f.addr, &identity, &f.key).await?;
    let first = client.revocation_list().await?;
    assert!(first.list.serials().is_empty());

    let revoked = f
        .service
        .revoke(RevokeTarget::Participant(identity.id()), "key lost")?;
    assert_eq!(revoked.serials.len(), 1);

    let w = AuthorityClient::connect(f.addr, &watcher, &f.key).await?;
    let fetched = w.revocation_list().await?;
    assert!(fetched.list.sequence() > first.list.sequence());
    assert_eq!(fetched.list.serials(), &revoked.serials[..]);
    // A trust store holding the fetched list refuses the revoked credential.
    let mut t = trust(&f);
    t.add_revocation_list(&fetched.bytes, Timestamp::now())?;
    let e = t.verify(&revoked_credential, Timestamp::now()).unwrap_err();
    assert_eq!(e.code(), "identity.revoked");

    // The revoked member's live connection is refused at its next request, and a new
    // connection is refused at the hello.
    let e = client.revocation_list().await.unwrap_err();
    assert_eq!(e.peer_code(), Some("identity.revoked"), "{e}");
    let e = AuthorityClient::connect(f.addr, &identity, &f.key)
        .await
        .unwrap_err();
    assert_eq!(e.peer_code(), Some("identity.revoked"), "{e}");
    // And asking to join again does not hand the revoked credential out.
    let key = Arc::new(SigningKey::from_seed(&[9; 32]));
    let e = ask(&f, &key, Sector::POWER, 9).await.unwrap_err();
    assert_eq!(e.peer_code(), Some("identity.revoked"), "{e}");
    assert_eq!(
        f.service
            .revoke(
                RevokeTarget::Participant(ParticipantId::of(
                    &SigningKey::from_seed(&[99; 32]).public_key()
                )),
                "x"
            )
            .unwrap_err()
            .code(),
        "authority.unknown_member"
    );
    Ok(())
}

struct Asset {
    manifest: Vec<u8>,
    asset: String,
}

fn asset(
    owner: &SigningKey,
    title: &str,
    sector: Sector,
    keywords: &[&str],
    classification: Classification,
) -> Result<Asset, Box<dyn std::error::Error>> {
    let data: Vec<u8> = title.bytes().cycle().take(5000).collect();
    let builder = ContentBuilder::new(ChunkSize::MIN, NonZeroUsize::MIN);
    let (content, _tree) = ChunkTree::build(&builder, &data[..])?;
    let m = Manifest {
        version: MANIFEST_VERSION,
        title: title.into(),
        description: format!("{title}, sample"),
        sector,
        media_type: "text/csv".into(),
        schema: None,
        keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        owner: ParticipantId::of(&owner.public_key()),
        owner_key: owner.public_key(),
        created: Timestamp::now(),
        classification,
        personal: PersonalInfo::None,
        residency: None,
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    };
    let manifest = m.sign(owner)?;
    Ok(Asset {
        asset: m.asset_id()?.to_string(),
        manifest,
    })
}

fn offer(provider: &SigningKey, asset: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let now = Timestamp::now();
    Ok(create_offer(
        provider,
        &Offer {
            asset: asset.parse()?,
            provider: provider.id(),
            provider_key: provider.public_key(),
            policy: tds_policy::parse(
                "offer",
                "policy set;\n\npermit use\n  when purpose isA grid;\n",
            )?,
            price: None,
            not_before: now,
            not_after: now.saturating_add_millis(30 * DAY_MS),
            licence: None,
        },
    )?)
}

fn item(provider: &SigningKey, a: &Asset) -> Result<CatalogItem, Box<dyn std::error::Error>> {
    Ok(CatalogItem {
        offer: offer(provider, &a.asset)?.into(),
        manifest: a.manifest.clone().into(),
    })
}

async fn search(
    c: &AuthorityClient,
    filter: CatalogFilter,
) -> Result<usize, Box<dyn std::error::Error>> {
    let page = c
        .search(&SearchRequest {
            filter,
            cursor: None,
            limit: 0,
        })
        .await?;
    Ok(page.items.len())
}

#[tokio::test]
async fn publish_and_search_by_sector_keyword_classification_provider() -> R {
    let f = fixture()?;
    let (grid_key, grid) = member(&f, 20, Sector::POWER).await?;
    let (bank_key, bank) = member(&f, 21, Sector::FINANCE).await?;
    let g = AuthorityClient::connect(f.addr, &grid, &f.key).await?;
    let b = AuthorityClient::connect(f.addr, &bank, &f.key).await?;

    let load = asset(
        &grid_key,
        "Load curves Taiyuan",
        Sector::POWER,
        &["load", "grid"],
        Classification::General,
    )?;
    let outage = asset(
        &grid_key,
        "Outage records",
        Sector::POWER,
        &["outage"],
        Classification::Important,
    )?;
    let credit = asset(
        &bank_key,
        "Credit scores",
        Sector::FINANCE,
        &["credit"],
        Classification::Core,
    )?;
    let load_item = item(&grid_key, &load)?;
    let ids = g
        .publish(vec![load_item.clone(), item(&grid_key, &outage)?])
        .await?;
    assert_eq!(ids.len(), 2);
    b.publish(vec![item(&bank_key, &credit)?]).await?;
    // Publishing the same entry again changes nothing.
    assert_eq!(g.publish(vec![load_item]).await?, ids[..1]);
    assert_eq!(f.service.catalog_len(), 3);

    let all = CatalogFilter {
        sector: None,
        keyword: None,
        classification: None,
        provider: None,
    };
    assert_eq!(
        search(
            &b,
            CatalogFilter {
                sector: Some("power".into()),
                ..all.clone()
            }
        )
        .await?,
        2
    );
    assert_eq!(
        search(
            &b,
            CatalogFilter {
                sector: Some("finance".into()),
                ..all.clone()
            }
        )
        .await?,
        1
    );
    assert_eq!(
        search(
            &b,
            CatalogFilter {
                keyword: Some("OUTAGE".into()),
                ..all.clone()
            }
        )
        .await?,
        1
    );
    assert_eq!(
        search(
            &b,
            CatalogFilter {
                keyword: Some("taiyuan".into()),
                ..all.clone()
            }
        )
        .await?,
        1
    );
    assert_eq!(
        search(
            &b,
            CatalogFilter {
                classification: Some("core".into()),
                ..all.clone()
            }
        )
        .await?,
        1
    );
    assert_eq!(
        search(
            &g,
            CatalogFilter {
                provider: Some(bank.id().into()),
                ..all.clone()
            }
        )
        .await?,
        1
    );
    assert_eq!(
        search(
            &g,
            CatalogFilter {
                provider: Some(grid.id().into()),
                sector: Some("power".into()),
                ..all.clone()
            }
        )
        .await?,
        2
    );

    // Paging: one at a time, every entry once.
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let page = g
            .search(&SearchRequest {
                filter: all.clone(),
                cursor: cursor.clone(),
                limit: 1,
            })
            .await?;
        seen.extend(page.items);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
        assert!(seen.len() <= 4, "paging does not end");
    }
    assert_eq!(seen.len(), f.service.catalog_len());

    // Forged entries: an offer naming another provider, a manifest signed by someone
    // else, an offer for another asset.
    let e = b.publish(vec![item(&grid_key, &load)?]).await.unwrap_err();
    assert_eq!(e.code(), "authority.not_provider", "{e}");
    let e = b.publish(vec![item(&bank_key, &load)?]).await.unwrap_err();
    assert_eq!(e.code(), "authority.not_owner", "{e}");
    let e = g
        .publish(vec![CatalogItem {
            offer: offer(&grid_key, &outage.asset)?.into(),
            manifest: load.manifest.clone().into(),
        }])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "authority.asset_mismatch", "{e}");
    let mut bad = item(&grid_key, &outage)?;
    if let Some(last) = bad.offer.last_mut() {
        *last ^= 1;
    }
    let e = g.publish(vec![bad]).await.unwrap_err();
    assert_eq!(e.code(), "authority.invalid_entry", "{e}");
    assert_eq!(f.service.catalog_len(), 3);
    Ok(())
}

#[tokio::test]
async fn cosign_consistent_checkpoints_then_refuse_a_split_view() -> R {
    let f = fixture()?;
    let (key, identity) = member(&f, 30, Sector::POWER).await?;
    let c = AuthorityClient::connect(f.addr, &identity, &f.key).await?;
    let log = Log::new(MemoryStore::new(), SigningKey::from_seed(&[30; 32]));
    for i in 0..10 {
        LogStore::append(log.store(), format!("a {i}").as_bytes())?;
    }
    let c1 = log.checkpoint()?;
    let note = c.cosign(&c1, None).await?;
    assert!(note.starts_with(
        &c1[..c1.len() - 1]
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    ));

    for i in 10..20 {
        LogStore::append(log.store(), format!("a {i}").as_bytes())?;
    }
    let c2 = log.checkpoint()?;
    // Without the proof: refused, not a split view.
    let e = c.cosign(&c2, None).await.unwrap_err();
    assert_eq!(e.peer_code(), Some("witness.proof_needed"), "{e}");
    let p = log.consistency(10, Some(20))?;
    c.cosign(&c2, Some(&p)).await?;

    // Another history under the same key: a split view.
    let fork = Log::new(MemoryStore::new(), SigningKey::from_seed(&[30; 32]));
    for i in 0..30 {
        LogStore::append(fork.store(), format!("b {i}").as_bytes())?;
    }
    let c3 = fork.checkpoint()?;
    let p3 = fork.consistency(20, Some(30))?;
    let e = c.cosign(&c3, Some(&p3)).await.unwrap_err();
    assert_eq!(e.code(), "authority.split_view", "{e}");
    // And the same size with another root.
    let fork20 = Log::new(MemoryStore::new(), SigningKey::from_seed(&[30; 32]));
    for i in 0..20 {
        LogStore::append(fork20.store(), format!("c {i}").as_bytes())?;
    }
    let e = c.cosign(&fork20.checkpoint()?, None).await.unwrap_err();
    assert_eq!(e.code(), "authority.split_view", "{e}");
    let _ = key;
    Ok(())
}

#[tokio::test]
async fn a_connect_to_nothing_times_out_with_an_authority_code() -> R {
    let f = fixture()?;
    let (_key, identity) = member(&f, 40, Sector::POWER).await?;
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let opts = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let e = AuthorityClient::connect_with(silent.local_addr()?, &identity, &f.key, opts)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "authority.timeout", "{e}");
    // The wrong authority key: refused before our credential is sent.
    let other = SigningKey::from_seed(&[41; 32]).public_key();
    let e = AuthorityClient::connect(f.addr, &identity, &other)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "transport.hello.unexpected_peer", "{e}");
    Ok(())
}
