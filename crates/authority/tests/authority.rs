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
    fixture_with(|_| {})
}

/// A fixture whose service config `edit` changes first.
fn fixture_with(
    edit: impl FnOnce(&mut AuthorityConfig),
) -> Result<Fixture, Box<dyn std::error::Error>> {
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
    edit(&mut config);
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

// ---- issue 13: the adversarial list ----

/// A checkpoint tampered with, one of another member's log, one whose log key is not the
/// connection's, and text that is no checkpoint: each refused with its code; the witness
/// then cosigns the member's genuine checkpoint.
#[tokio::test]
async fn tampered_and_foreign_checkpoints_are_refused_and_the_witness_goes_on() -> R {
    let f = fixture()?;
    let (_key, identity) = member(&f, 50, Sector::POWER).await?;
    let (_other_key, _other) = member(&f, 51, Sector::POWER).await?;
    let c = AuthorityClient::connect(f.addr, &identity, &f.key).await?;
    let log = Log::new(MemoryStore::new(), SigningKey::from_seed(&[50; 32]));
    let theirs = Log::new(MemoryStore::new(), SigningKey::from_seed(&[51; 32]));
    for i in 0..5 {
        LogStore::append(log.store(), format!("e {i}").as_bytes())?;
        LogStore::append(theirs.store(), format!("f {i}").as_bytes())?;
    }
    let genuine = log.checkpoint()?;
    // The size line says 6 where the log signed 5.
    let lied = genuine.replacen("\n5\n", "\n6\n", 1);
    assert_ne!(lied, genuine);
    // A byte of the signature flipped.
    let sig_line = genuine.lines().last().unwrap_or_default().to_owned();
    let mut flipped_sig = sig_line.clone().into_bytes();
    let at = flipped_sig.len() - 3;
    flipped_sig[at] = if flipped_sig[at] == b'A' { b'B' } else { b'A' };
    let flipped = genuine.replace(&sig_line, std::str::from_utf8(&flipped_sig)?);
    for (what, note, want) in [
        ("a changed size", lied, "note.bad_signature"),
        ("a flipped signature", flipped, "note.bad_signature"),
        (
            "another member's log",
            theirs.checkpoint()?,
            "note.checkpoint",
        ),
        ("no checkpoint", "hello\n\n".to_owned(), "note.format"),
        ("empty", String::new(), "note.format"),
    ] {
        let e = c.cosign(&note, None).await.unwrap_err();
        assert_eq!(e.peer_code().unwrap_or(e.code()), want, "{what}: {e}");
    }
    // Nothing was trusted on first use: the genuine checkpoint is the first cosigned.
    c.cosign(&genuine, None).await?;
    Ok(())
}

/// A7: at most `max_pending` admission requests wait; one more is refused with
/// `authority.queue_full` (and recorded nowhere); a pending applicant asking again is
/// still told it is pending; once one is decided, there is room again.
#[tokio::test]
async fn the_admission_queue_is_bounded() -> R {
    let f = fixture_with(|c| c.max_pending = 3)?;
    let mut ids = Vec::new();
    for seed in 60..63u8 {
        let key = Arc::new(SigningKey::from_seed(&[seed; 32]));
        let Application::Pending(id) = ask(&f, &key, Sector::POWER, 1).await? else {
            return Err("expected pending".into());
        };
        ids.push(id);
    }
    let late = Arc::new(SigningKey::from_seed(&[63; 32]));
    let e = ask(&f, &late, Sector::POWER, 1).await.unwrap_err();
    assert_eq!(e.code(), "authority.queue_full", "{e}");
    assert_eq!(f.service.pending()?.len(), 3);
    // An applicant already waiting asks again: still pending, not refused.
    let first = Arc::new(SigningKey::from_seed(&[60; 32]));
    assert!(matches!(
        ask(&f, &first, Sector::POWER, 2).await?,
        Application::Pending(_)
    ));
    f.service.approve(&ids[0], Validity::Requested)?;
    assert!(matches!(
        ask(&f, &late, Sector::POWER, 2).await?,
        Application::Pending(_)
    ));
    Ok(())
}

/// A8: the catalog holds at most `max_catalog` entries and `max_per_provider` of one
/// provider (`authority.catalog_full`, the batch refused whole); an expired offer is
/// refused at publish (`authority.offer_expired`); what was refused is not searchable.
#[tokio::test]
async fn the_catalog_is_bounded_and_refuses_expired_offers() -> R {
    let f = fixture_with(|c| {
        c.max_catalog = 3;
        c.max_per_provider = 2;
    })?;
    let (grid_key, grid) = member(&f, 70, Sector::POWER).await?;
    let (bank_key, bank) = member(&f, 71, Sector::FINANCE).await?;
    let g = AuthorityClient::connect(f.addr, &grid, &f.key).await?;
    let b = AuthorityClient::connect(f.addr, &bank, &f.key).await?;
    let assets: Vec<Asset> = (0..3)
        .map(|i| {
            asset(
                &grid_key,
                &format!("Grid asset {i}"),
                Sector::POWER,
                &["grid"],
                Classification::General,
            )
        })
        .collect::<Result<_, _>>()?;
    g.publish(vec![
        item(&grid_key, &assets[0])?,
        item(&grid_key, &assets[1])?,
    ])
    .await?;
    let e = g
        .publish(vec![item(&grid_key, &assets[2])?])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "authority.catalog_full", "{e}");
    let credit = asset(
        &bank_key,
        "Credit",
        Sector::FINANCE,
        &["credit"],
        Classification::General,
    )?;
    let scores = asset(
        &bank_key,
        "Scores",
        Sector::FINANCE,
        &["scores"],
        Classification::General,
    )?;
    b.publish(vec![item(&bank_key, &credit)?]).await?;
    let e = b
        .publish(vec![item(&bank_key, &scores)?])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "authority.catalog_full", "{e}");
    assert_eq!(f.service.catalog_len(), 3);
    // An offer that ended a second ago.
    let now = Timestamp::now();
    let expired = create_offer(
        bank_key.as_ref(),
        &Offer {
            asset: scores.asset.parse()?,
            provider: bank_key.id(),
            provider_key: bank_key.public_key(),
            policy: tds_policy::parse(
                "offer",
                "policy set;\n\npermit use\n  when purpose isA grid;\n",
            )?,
            price: None,
            not_before: Timestamp::from_millis(now.as_millis() - DAY_MS),
            not_after: Timestamp::from_millis(now.as_millis() - 1000),
            licence: None,
        },
    )?;
    let e = b
        .publish(vec![CatalogItem {
            offer: expired.into(),
            manifest: scores.manifest.clone().into(),
        }])
        .await
        .unwrap_err();
    assert_eq!(e.code(), "authority.offer_expired", "{e}");
    let all = CatalogFilter {
        sector: None,
        keyword: None,
        classification: None,
        provider: None,
    };
    assert_eq!(search(&g, all).await?, 3);
    Ok(())
}

/// A raw member connection on `tds-authority/1`: TLS with the member's key, the hello
/// with its credential, acknowledged.
async fn raw_member(
    f: &Fixture,
    key: &Arc<SigningKey>,
    credential: Vec<u8>,
) -> Result<quinn::Connection, Box<dyn std::error::Error>> {
    use tds_protocol::frame;
    let tls = tds_transport::tls::client_config(
        key.clone() as Arc<dyn Signer>,
        tds_transport::tls::ALPN_AUTHORITY,
    )?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let conn = ep
        .connect_with(quinn::ClientConfig::new(Arc::new(quic)), f.addr, "tds")?
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = tds_protocol::Message::Hello(tds_protocol::message::Hello {
        versions: tds_protocol::message::VERSIONS.to_vec(),
        credential: credential.into(),
        crl: None,
        agent: "raw".into(),
    });
    send.write_all(&frame::encode_control(&hello)?).await?;
    send.finish()?;
    let reply = recv.read_to_end(1 << 16).await?;
    match frame::decode(&reply)? {
        frame::Frame::Control(tds_protocol::Message::Ack(_)) => Ok(conn),
        other => Err(format!("hello refused: {other:?}").into()),
    }
}

/// One whole request on a new stream; its reply payload.
async fn raw_request(conn: &quinn::Connection) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let payload =
        tds_authority::Request::RevocationList(tds_authority::message::RevocationListRequest {})
            .encode()?;
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(payload.len())?.to_be_bytes());
    frame.extend_from_slice(&payload);
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&frame).await?;
    send.finish()?;
    Ok(recv.read_to_end(1 << 20).await?)
}

/// A9: a member connection gets at most 8 requests handled at once. Seven requests that
/// never finish leave room for an eighth; an eighth that never finishes fills the
/// connection, and a whole request then waits until a slow one is refused at the request
/// timeout (`transport.timeout`), never before.
#[tokio::test]
async fn a_member_connection_is_served_eight_requests_at_a_time() -> R {
    let timeout = Duration::from_secs(3);
    let f = fixture_with(|c| c.transport.request_timeout = timeout)?;
    let (key, _identity, credential) = member_with_credential(&f, 80, Sector::POWER).await?;
    let conn = raw_member(&f, &key, credential).await?;
    let mut stalled = Vec::new();
    for _ in 0..7 {
        let (mut send, recv) = conn.open_bi().await?;
        send.write_all(&[0]).await?;
        stalled.push((send, recv));
    }
    // Seven stalled, one slot free: a whole request is answered at once...
    let reply = tokio::time::timeout(Duration::from_secs(20), raw_request(&conn)).await??;
    assert!(reply.len() > 5, "{reply:?}");
    // ...while every stalled one is still waiting for its time to run out.
    for (_, recv) in &mut stalled {
        let mut b = [0u8; 1];
        let pending = tokio::time::timeout(Duration::from_millis(1), recv.read(&mut b)).await;
        assert!(pending.is_err(), "a stalled request was answered early");
    }
    // The eighth stalled one fills the connection: the next request waits for a slot.
    let (mut send, recv) = conn.open_bi().await?;
    send.write_all(&[0]).await?;
    stalled.push((send, recv));
    let asked = std::time::Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(20), raw_request(&conn)).await??;
    assert!(reply.len() > 5, "{reply:?}");
    assert!(
        asked.elapsed() >= Duration::from_millis(500),
        "a ninth request was handled beside eight: answered after {:?}",
        asked.elapsed()
    );
    for (_, mut recv) in stalled {
        let r = tokio::time::timeout(Duration::from_secs(20), recv.read_to_end(1 << 16)).await??;
        let m = tds_protocol::frame::decode(&r)?;
        assert!(
            matches!(&m, tds_protocol::frame::Frame::Control(tds_protocol::Message::Error(e)) if e.code == "transport.timeout"),
            "{m:?}"
        );
    }
    Ok(())
}

/// An authority service whose catalog pages are forged (a compromised or malicious
/// authority).
struct ForgedCatalog {
    page: std::sync::Mutex<tds_authority::CatalogPageMsg>,
    trust: TrustStore,
}

impl tds_transport::ServiceHandler for ForgedCatalog {
    fn check_member(
        &self,
        credential: &[u8],
        now: Timestamp,
    ) -> Result<tds_identity::VerifiedCredential, tds_identity::IdentityError> {
        self.trust.verify(credential, now)
    }
    fn handle(&self, _: &tds_identity::VerifiedCredential, _: &[u8]) -> Vec<u8> {
        let page = self
            .page
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        tds_authority::Reply::Page(page)
            .encode()
            .unwrap_or_default()
    }
}

/// A10: a member checks every entry of a federated catalog page it receives (the
/// offer's signature, the manifest's owner and signature, the offer's asset): a forged
/// entry fails the whole search with `authority.invalid_reply`.
#[tokio::test]
async fn a_member_checks_every_federated_catalog_entry() -> R {
    let f = fixture()?;
    let (grid_key, grid) = member(&f, 90, Sector::POWER).await?;
    let (bank_key, _bank) = member(&f, 91, Sector::FINANCE).await?;
    let load = asset(
        &grid_key,
        "Load",
        Sector::POWER,
        &["load"],
        Classification::General,
    )?;
    let other = asset(
        &grid_key,
        "Other",
        Sector::POWER,
        &["x"],
        Classification::General,
    )?;
    let genuine = item(&grid_key, &load)?;
    let mut trust = trust(&f);
    trust.dangerous().accept_missing_revocation_lists();
    let fake_key = Arc::new(SigningKey::from_seed(&[92; 32]));
    let handler = Arc::new(ForgedCatalog {
        page: std::sync::Mutex::new(tds_authority::CatalogPageMsg {
            items: vec![],
            next: None,
        }),
        trust,
    });
    let fake = tds_transport::ServiceEndpoint::builder(fake_key.clone() as Arc<dyn Signer>)
        .service(handler.clone(), tds_transport::ServiceLimits::default())
        .bind("127.0.0.1:0".parse()?)?;
    let client =
        AuthorityClient::connect(fake.local_addr()?, &grid, &fake_key.public_key()).await?;
    let mut flipped = genuine.clone();
    if let Some(b) = flipped.offer.last_mut() {
        *b ^= 1;
    }
    let cases = vec![
        ("a tampered offer", flipped),
        (
            "another asset's manifest",
            CatalogItem {
                offer: genuine.offer.clone(),
                manifest: other.manifest.clone().into(),
            },
        ),
        ("a manifest of someone else", item(&bank_key, &load)?),
    ];
    let all = CatalogFilter {
        sector: None,
        keyword: None,
        classification: None,
        provider: None,
    };
    for (what, forged) in cases {
        *handler.page.lock().unwrap() = tds_authority::CatalogPageMsg {
            items: vec![genuine.clone(), forged],
            next: None,
        };
        let e = search(&client, all.clone()).await.unwrap_err();
        let code = e
            .downcast_ref::<tds_authority::AuthorityError>()
            .map(ErrorCode::code);
        assert_eq!(code, Some("authority.invalid_reply"), "{what}: {e}");
    }
    *handler.page.lock().unwrap() = tds_authority::CatalogPageMsg {
        items: vec![genuine],
        next: None,
    };
    assert_eq!(search(&client, all).await?, 1);
    Ok(())
}
