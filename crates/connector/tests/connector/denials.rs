//! Each refusal names its cause, is logged by the provider, and leaves both connectors
//! serving.

use tds_connector::{Connector, ConnectorError, FetchOptions};
use tds_core::ErrorCode;
use tds_identity::Sector;

use crate::common::*;

struct Pair {
    space: Space,
    provider: Connector,
    consumer: Connector,
    consumer_member: Member,
    dir: tempfile::TempDir,
    offer: Vec<u8>,
}

async fn pair(policy: &str, consumer_sector: Sector, spec: AssetSpec) -> Res<Pair> {
    let mut space = Space::new()?;
    let grid = space.member(11, Sector::POWER, "CN-SX")?;
    let other = space.member(12, consumer_sector, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let provider = connector(&space, &grid, Backend::Memory).await?;
    let consumer = connector(&space, &other, Backend::Memory).await?;
    let (_, offer) = publish(
        &provider,
        &grid,
        dir.path(),
        "asset.bin",
        &data(200_000, 3),
        65536,
        &spec,
        policy,
    )
    .await?;
    Ok(Pair {
        space,
        provider,
        consumer,
        consumer_member: other,
        dir,
        offer,
    })
}

impl Pair {
    fn addr(&self) -> Res<std::net::SocketAddr> {
        Ok(self.provider.local_addr()?)
    }

    async fn negotiate(&self, purpose: &str) -> Result<tds_core::hash::Hash256, ConnectorError> {
        let purpose = purpose
            .parse()
            .map_err(|_| ConnectorError::Closed("purpose".into()))?;
        let addr = self.provider.local_addr()?;
        Ok(self
            .consumer
            .negotiate(addr, &self.offer, None, purpose)
            .await?
            .id())
    }

    async fn fetch(
        &self,
        agreement: &tds_core::hash::Hash256,
        n: u32,
    ) -> Result<tds_connector::Receipt, ConnectorError> {
        self.fetch_in(agreement, n, Default::default()).await
    }

    async fn fetch_in(
        &self,
        agreement: &tds_core::hash::Hash256,
        n: u32,
        context: tds_protocol::session::TransferContext,
    ) -> Result<tds_connector::Receipt, ConnectorError> {
        let mut o = FetchOptions::new(
            self.dir.path().join(format!("out-{n}.bin")),
            "research"
                .parse()
                .map_err(|_| ConnectorError::Closed("purpose".into()))?,
        );
        o.context = context;
        let addr = self.provider.local_addr()?;
        self.consumer.fetch(addr, agreement, o).await
    }

    /// The provider logged an `access_denied` naming `code_part` among its reasons, and
    /// both still serve: a fresh catalog query answers.
    async fn denied_and_serving(&self, code_part: &str) -> Res {
        let log = self.provider.log();
        let mut found = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            found.clear();
            for i in 0..log.size() {
                let e = log.event(i)?;
                if let tds_provenance::EventBody::AccessDenied { reasons, .. } = &e.body {
                    found.extend(reasons.iter().map(|r| r.as_str().to_owned()));
                }
            }
            if found.iter().any(|r| r.contains(code_part)) || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            found.iter().any(|r| r.contains(code_part)),
            "no access_denied naming {code_part}: {found:?}"
        );
        let page = self
            .consumer
            .catalog(self.addr()?, Default::default(), None)
            .await?;
        assert_eq!(page.items.len(), 1, "the provider still serves its catalog");
        Ok(())
    }
}

fn refusal_code(e: &ConnectorError) -> String {
    e.refusal()
        .map_or_else(|| e.code().to_owned(), |r| r.code.clone())
}

const RESEARCH: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purpose_outside_the_offer() -> Res {
    let p = pair(RESEARCH, Sector::FINANCE, AssetSpec::default()).await?;
    let e = p.negotiate("marketing").await.err().ok_or("negotiated")?;
    assert_eq!(refusal_code(&e), "contract.purpose_not_offered", "{e}");
    p.denied_and_serving("contract.purpose_not_offered").await?;
    // And a fair request still works.
    p.negotiate("research").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sector() -> Res {
    let policy = "policy set;\n\npermit use\n  when purpose isA research and industry eq power;\n";
    let p = pair(policy, Sector::FINANCE, AssetSpec::default()).await?;
    let e = match p.negotiate("research").await {
        Err(e) => e,
        Ok(a) => p.fetch(&a, 0).await.err().ok_or("fetched")?,
    };
    assert_eq!(refusal_code(&e), "policy.unmet.industry", "{e}");
    p.denied_and_serving("policy.unmet.industry").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_agreement() -> Res {
    let policy =
        "policy set;\n\npermit use\n  when purpose isA research and elapsedTime lteq 1s;\n";
    let p = pair(policy, Sector::FINANCE, AssetSpec::default()).await?;
    let a = p.negotiate("research").await?;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let e = p
        .fetch(&a, 0)
        .await
        .err()
        .ok_or("fetched an expired agreement")?;
    assert!(
        refusal_code(&e).contains("elapsed") || e.to_string().contains("elapsed"),
        "{e}"
    );
    p.denied_and_serving("policy.unmet.elapsed_time").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_count_exhausted() -> Res {
    let policy = "policy set;\n\npermit use\n  when purpose isA research and count lteq 1;\n";
    let p = pair(policy, Sector::FINANCE, AssetSpec::default()).await?;
    let a = p.negotiate("research").await?;
    p.fetch(&a, 1).await?;
    // The provider counts the use once the transfer ended; wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.provider.served(&a).transfers < 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let e = p
        .fetch(&a, 2)
        .await
        .err()
        .ok_or("a second use was served")?;
    assert!(
        refusal_code(&e).contains("count") || e.to_string().contains("count"),
        "{e}"
    );
    p.denied_and_serving("policy.unmet.count").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_agreement() -> Res {
    let p = pair(RESEARCH, Sector::FINANCE, AssetSpec::default()).await?;
    let a = p.negotiate("research").await?;
    p.provider
        .terminate(&a, "the consumer breached the terms")
        .await?;
    let e = p
        .fetch(&a, 0)
        .await
        .err()
        .ok_or("fetched under a terminated agreement")?;
    assert_eq!(refusal_code(&e), "transfer.agreement_terminated", "{e}");
    p.denied_and_serving("transfer.agreement_terminated").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_revoked_between_negotiation_and_fetch() -> Res {
    let mut p = pair(RESEARCH, Sector::FINANCE, AssetSpec::default()).await?;
    let a = p.negotiate("research").await?;
    let serial = p.consumer_member.serial;
    let crl = p.space.revoke(serial)?;
    let mut events = p.provider.subscribe();
    p.provider.apply_revocation_list(&crl)?;
    let e = tokio::time::timeout(std::time::Duration::from_secs(30), p.fetch(&a, 0))
        .await
        .map_err(|_| "the fetch hung")?
        .err()
        .ok_or("a revoked consumer fetched")?;
    let text = format!("{}: {e}", refusal_code(&e));
    assert!(text.contains("revoked"), "{text}");
    // The operator hears of it: the live session closed by the list, and the revoked
    // consumer's attempt to connect again, are both peer_revoked alerts.
    let mut revoked = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while revoked.len() < 2 {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(tds_connector::ConnectorEvent::Alert(a)))
                if a.kind == tds_connector::AlertKind::PeerRevoked =>
            {
                assert_eq!(a.code, "identity.revoked", "{a:?}");
                revoked.push(a.message);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("events: {e}").into()),
            Err(_) => break,
        }
    }
    assert_eq!(revoked.len(), 2, "peer_revoked alerts: {revoked:?}");
    // The provider still serves others: a fresh member negotiates.
    let fresh = p.space.member(13, Sector::FINANCE, "CN-SX")?;
    let other = connector(&p.space, &fresh, Backend::Memory).await?;
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        other.negotiate(p.addr()?, &p.offer, None, "research".parse()?),
    )
    .await
    .map_err(|_| "the negotiation hung")??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_border_without_export_assessment() -> Res {
    // Processing outside CN needs an export-assessment reference.
    let policy = "policy set;\n\npermit use\n  when purpose isA research and (spatial isPartOf CN or exportAssessmentRef eq present);\n";
    let p = pair(policy, Sector::FINANCE, AssetSpec::default()).await?;
    let a = p.negotiate("research").await?;
    let abroad = tds_protocol::session::TransferContext {
        location: Some("SG".parse()?),
        ..Default::default()
    };
    let e = p
        .fetch_in(&a, 0, abroad.clone())
        .await
        .err()
        .ok_or("fetched abroad")?;
    assert!(refusal_code(&e).starts_with("policy.unmet."), "{e}");
    assert!(
        e.to_string().contains("spatial") || e.to_string().contains("exportAssessmentRef"),
        "{e}"
    );
    p.denied_and_serving("policy.unmet.").await?;
    // With an assessment reference it is permitted; at home too.
    let assessed = tds_protocol::session::TransferContext {
        export_assessment_ref: Some("cac-2027-0001".parse()?),
        ..abroad
    };
    p.fetch_in(&a, 1, assessed).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_without_consent() -> Res {
    let policy = "policy set;\n\npermit use\n  when purpose isA research\n  duty obtain-consent(\"pipl-separate-consent\");\n";
    let spec = AssetSpec {
        personal: tds_manifest::PersonalInfo::Personal,
        sector: Sector::HEALTHCARE,
        ..AssetSpec::default()
    };
    let p = pair(policy, Sector::HEALTHCARE, spec).await?;
    let a = p.negotiate("research").await?;
    let e = p
        .fetch(&a, 0)
        .await
        .err()
        .ok_or("fetched personal data without consent")?;
    assert_eq!(refusal_code(&e), "policy.unmet.consent", "{e}");
    p.denied_and_serving("policy.unmet.consent").await?;
    let consented = tds_protocol::session::TransferContext {
        consent_ref: Some("consent:2027/0042".parse()?),
        ..Default::default()
    };
    p.fetch_in(&a, 1, consented).await?;
    Ok(())
}

/// A public-data licence: the operator's connector refuses to sign an offer outside it;
/// the consumer's connector checks the chain (trusted authority -> licence -> offer)
/// before it negotiates, and refuses a licence from an authority it does not trust
/// without asking the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licensed_offers_are_checked_on_both_sides() -> Res {
    use tds_policy::licence::{self, Licence};
    let mut space = Space::new()?;
    let operator = space.member(21, Sector::WEATHER, "CN-SX")?;
    let consumer_member = space.member(22, Sector::POWER, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let provider = connector(&space, &operator, Backend::Memory).await?;
    let consumer = connector(&space, &consumer_member, Backend::Memory).await?;
    let licence_of = |signer: &dyn tds_core::Signer| -> Res<Vec<u8>> {
        let key = signer.public_key();
        Ok(licence::issue(
            signer,
            &Licence {
                resource: "public:observations".parse()?,
                authority: key.id(),
                authority_key: key,
                licensee: operator.key.id(),
                policy: tds_policy::parse(
                    "licence",
                    "policy set;\n\npermit use\n  when purpose isA research;\n\nprohibit sell;\n",
                )?,
                not_before: space.now,
                not_after: space.now.saturating_add_millis(10 * tds_core::time::DAY_MS),
            },
        )?)
    };
    let genuine = licence_of(space.authority.signer().as_ref())?;
    let path = dir.path().join("obs.bin");
    std::fs::write(&path, data(100_000, 9))?;
    let manifest = manifest_for(&operator, &path, 65536, &AssetSpec::default())?;
    let under = |policy: &str, licence: &[u8]| -> Res<tds_connector::OfferTerms> {
        let mut t = terms(policy)?;
        t.licence = Some(licence.to_vec());
        Ok(t)
    };

    // Outside the licence: refused before anything is signed or stored.
    let e = provider
        .publish(
            &manifest,
            tds_connector::Source::File(path.clone()),
            vec![under(
                "policy set;\n\npermit use\n  when purpose isA marketing;\n",
                &genuine,
            )?],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "licence.not_contained", "{e}");
    // Within: published with the licence embedded, and a consumer negotiates it.
    let published = provider
        .publish(
            &manifest,
            tds_connector::Source::File(path.clone()),
            vec![under(RESEARCH, &genuine)?],
        )
        .await?;
    let id = published.offers.first().copied().ok_or("no offer")?;
    let offer = provider.offer(&id)?.ok_or("offer not stored")?;
    let opened = tds_core::cose::open::<tds_policy::contract::Offer>(&offer)?;
    assert_eq!(opened.value().licence.as_deref(), Some(&genuine[..]));
    let addr = provider.local_addr()?;
    let agreement = consumer
        .negotiate(addr, &offer, None, "research".parse()?)
        .await?;
    assert_eq!(agreement.terms().offer, id);

    // An offer (signed by the operator itself) under a licence from a key nobody trusts.
    let rogue = tds_core::SigningKey::from_seed(&[77; 32]);
    let mut forged = opened.value().clone();
    forged.licence = Some(licence_of(&rogue)?);
    let forged = tds_policy::contract::create_offer(operator.key.as_ref(), &forged)?;
    let size = provider.log().size();
    let e = consumer
        .negotiate(addr, &forged, None, "research".parse()?)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "licence.not_authority", "{e}");
    // The provider was never asked: nothing new in its log.
    assert_eq!(provider.log().size(), size);
    Ok(())
}
