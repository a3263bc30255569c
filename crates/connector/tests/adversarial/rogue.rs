//! A rogue provider: a member running the real protocol session over a real endpoint,
//! with a host that lies (another asset's manifest for an agreement, a tampered manifest,
//! catalog pages with entries that are not its own or do not match). The honest
//! consumer connector refuses each lie with its code, writes nothing, and goes on working
//! with honest providers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use tds_connector::{AlertKind, ConnectorError, FetchOptions};
use tds_core::hash::Hash256;
use tds_core::rand::SystemRandom;
use tds_core::time::SystemClock;
use tds_core::{ErrorCode, Signer, Timestamp};
use tds_identity::{Sector, VerifiedCredential};
use tds_policy::contract::{NonceStore, VerifiedAgreement};
use tds_protocol::message::{CatalogFilter, CatalogItem, CatalogPageMsg};
use tds_protocol::session::{Asset, Config, Event, Host, Mode, PlacedChunk, Session};
use tds_protocol::sim::MemoryHost;
use tds_protocol::Refusal;
use tds_transport::{Driver, Endpoint, LocalIdentity, SessionApp};

use crate::common::*;

/// What the rogue lies about (and, in manual mode, what it answers).
#[derive(Default)]
struct Lies {
    /// Served for every agreement instead of its asset.
    asset: Option<Asset>,
    /// Served as its catalog.
    page: Option<CatalogPageMsg>,
    /// Served as its catalog once, to the next query only.
    page_once: Option<CatalogPageMsg>,
    /// Manual mode: the counter-offer made to the next request (else it agrees).
    counter: Option<Vec<u8>>,
    /// Manual mode: agree with a time of agreement this far ahead of now (ms): terms the
    /// consumer did not ask for.
    agree_ahead_ms: Option<u64>,
}

struct RogueHost {
    honest: MemoryHost,
    lies: Mutex<Lies>,
}

impl Host for RogueHost {
    fn nonces(&self) -> &dyn NonceStore {
        self.honest.nonces()
    }
    fn check_peer(&self, peer: &VerifiedCredential, now: Timestamp) -> Result<(), Refusal> {
        self.honest.check_peer(peer, now)
    }
    fn agreement(&self, id: &Hash256) -> Option<Arc<VerifiedAgreement>> {
        self.honest.agreement(id)
    }
    fn asset(&self, asset: &str) -> Option<Asset> {
        let lie = self.lies.lock().unwrap().asset.clone();
        lie.or_else(|| self.honest.asset(asset))
    }
    fn catalog(
        &self,
        filter: &CatalogFilter,
        cursor: Option<&[u8]>,
        limit: u64,
    ) -> Result<CatalogPageMsg, Refusal> {
        let lie = {
            let mut lies = self.lies.lock().unwrap();
            lies.page_once.take().or_else(|| lies.page.clone())
        };
        match lie {
            Some(page) => Ok(page),
            None => self.honest.catalog(filter, cursor, limit),
        }
    }
}

/// The rogue's application: records the agreements it makes, serves no chunk.
struct RogueApp(Arc<RogueHost>);

impl SessionApp for RogueApp {
    fn event(&mut self, session: &mut Session, now: Timestamp, event: Event) {
        match event {
            Event::Finalized { agreement, .. } => self.0.honest.add_agreement(agreement),
            // Manual mode only.
            Event::RequestReceived { pid } => {
                // One counter-offer; the acceptance that follows is agreed.
                let (counter, ahead) = {
                    let mut lies = self.0.lies.lock().unwrap();
                    (lies.counter.take(), lies.agree_ahead_ms)
                };
                let _ = match (counter, ahead) {
                    (Some(offer), _) => session.offer(now, pid, &offer),
                    (None, Some(ms)) => session.agree(now.saturating_add_millis(ms), pid),
                    (None, None) => session.agree(now, pid),
                };
            }
            Event::AgreementVerified { pid } => {
                let _ = session.finalize(now, pid);
            }
            _ => {}
        }
    }
    fn chunk(&mut self, _: &PlacedChunk, _: &[Bytes]) -> Result<(), Refusal> {
        Ok(())
    }
    fn read_chunk(
        &mut self,
        _: &str,
        _: u64,
        _: u64,
        _: u64,
    ) -> Result<(Bytes, Vec<Hash256>), Refusal> {
        Err(Refusal::new(
            "transfer.source_failed",
            "the rogue serves nothing",
        ))
    }
}

struct Rogue {
    member: Member,
    host: Arc<RogueHost>,
    addr: SocketAddr,
    _endpoint: Endpoint,
}

impl Rogue {
    async fn start(space: &mut Space, seed: u8) -> Res<Rogue> {
        Rogue::start_in(space, seed, Mode::Auto).await
    }

    async fn start_in(space: &mut Space, seed: u8, mode: Mode) -> Res<Rogue> {
        let member = space.member(seed, Sector::POWER, "CN-SX")?;
        let host = Arc::new(RogueHost {
            honest: MemoryHost::new(space.trust()?),
            lies: Mutex::new(Lies::default()),
        });
        let identity = LocalIdentity::new(
            member.key.clone() as Arc<dyn Signer>,
            member.credential.clone(),
            Some(space.crl.clone()),
        )?;
        let endpoint = Endpoint::builder(identity, Arc::new(RwLock::new(space.trust()?)))
            .config(transport())
            .bind("127.0.0.1:0".parse()?)?;
        let addr = endpoint.local_addr()?;
        let (ep, h, key) = (endpoint.clone(), host.clone(), member.key.clone());
        tokio::spawn(async move {
            while let Ok(conn) = ep.accept().await {
                let config = Config {
                    provider_mode: mode,
                    ..Config::default()
                };
                let session = Session::new(
                    config,
                    key.clone() as Arc<dyn Signer>,
                    conn.peer().clone(),
                    h.clone() as Arc<dyn Host>,
                    Arc::new(SystemRandom),
                );
                let app = RogueApp(h.clone());
                let (driver, task) = Driver::spawn(conn, session, app, Arc::new(SystemClock));
                tokio::spawn(async move {
                    let _keep = driver;
                    let _ = task.await;
                });
            }
        });
        Ok(Rogue {
            member,
            host,
            addr,
            _endpoint: endpoint,
        })
    }

    /// Publishes `bytes` (an honest asset of the rogue's): its signed offer.
    fn publish(&self, dir: &std::path::Path, name: &str, bytes: &[u8]) -> Res<(Asset, Vec<u8>)> {
        self.publish_under(dir, name, bytes, RESEARCH)
    }

    fn publish_under(
        &self,
        dir: &std::path::Path,
        name: &str,
        bytes: &[u8],
        policy: &str,
    ) -> Res<(Asset, Vec<u8>)> {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        let manifest = manifest_for(&self.member, &path, name, 65536)?;
        let verified = tds_manifest::open(&manifest)?.verify(&self.member.key.public_key())?;
        let asset = Asset {
            manifest: manifest.clone(),
            verified: Arc::new(verified),
        };
        self.host.honest.add_asset(asset.clone());
        let t = terms(policy)?;
        let offer = tds_policy::contract::create_offer(
            self.member.key.as_ref(),
            &tds_policy::contract::Offer {
                asset: asset.verified.id().to_string().parse()?,
                provider: self.member.key.id(),
                provider_key: self.member.key.public_key(),
                policy: t.policy,
                price: None,
                not_before: t.not_before,
                not_after: t.not_after,
                licence: None,
            },
        )?;
        self.host.honest.add_catalog_entry(offer.clone(), manifest);
        Ok((asset, offer))
    }
}

fn refusal_code(e: &ConnectorError) -> String {
    e.refusal()
        .map_or_else(|| e.code().to_owned(), |r| r.code.clone())
}

/// S15: the rogue starts a transfer with another asset's manifest, then with its own
/// manifest tampered with. The consumer refuses both (`transfer.wrong_asset`, the
/// signature's code), the fetch fails with that code, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_tampered_manifest_at_transfer_start_is_refused() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let mut space = Space::new()?;
    let rogue = Rogue::start(&mut space, 60).await?;
    let dir = tempfile::tempdir()?;
    let (_, offer) = rogue.publish(dir.path(), "genuine.bin", &data(100_000, 6))?;
    let (other, _) = rogue.publish(dir.path(), "other.bin", &data(150_000, 7))?;
    let agreement = within(
        "a negotiation with the rogue",
        s.consumer
            .negotiate(rogue.addr, &offer, None, "research".parse()?),
    )
    .await??
    .id();
    let mut tampered = other.clone();
    let at = tampered
        .manifest
        .windows(9)
        .position(|w| w == b"other.bin")
        .ok_or("no title")?;
    tampered.manifest[at] = b'O';
    let mut events = Events(s.consumer.subscribe());
    for (what, lie, want) in [
        ("another asset", other, "transfer.wrong_asset"),
        ("a tampered manifest", tampered, "cose.bad_signature"),
    ] {
        rogue.host.lies.lock().unwrap().asset = Some(lie);
        let out = dir.path().join(format!("out-{want}.bin"));
        let e = within(
            "a fetch from the rogue",
            s.consumer.fetch(
                rogue.addr,
                &agreement,
                FetchOptions::new(out.clone(), "research".parse()?),
            ),
        )
        .await?
        .err()
        .ok_or("fetched a lie")?;
        assert_eq!(refusal_code(&e), want, "{what}: {e}");
        assert!(
            std::fs::metadata(&out).map_or(true, |m| m.len() == 0),
            "{what}: bytes were written"
        );
        // The consumer's operator hears of it, and its log says why the transfer failed.
        events.alert(AlertKind::Violation, want).await?;
        let kinds: Vec<String> = {
            let log = s.consumer.log();
            let mut v = Vec::new();
            for i in log.events_for(&agreement)? {
                if let tds_provenance::EventBody::TransferFailed { reason, .. } =
                    &log.event(i)?.body
                {
                    v.push(reason.as_str().to_owned());
                }
            }
            v
        };
        assert!(kinds.iter().any(|k| k == want), "{what}: {kinds:?}");
    }
    // The consumer still works with an honest provider.
    s.still_serves().await
}

/// S16: catalog pages with an offer of another provider, a manifest beside the wrong
/// offer, a tampered manifest or offer: the consumer refuses the whole page with the
/// code; the honest page of the same rogue is then taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_catalog_pages_are_refused_whole() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let mut space = Space::new()?;
    let rogue = Rogue::start(&mut space, 61).await?;
    let dir = tempfile::tempdir()?;
    let (a, offer_a) = rogue.publish(dir.path(), "a.bin", &data(100_000, 8))?;
    let (b, offer_b) = rogue.publish(dir.path(), "b.bin", &data(100_000, 9))?;
    let item = |offer: &[u8], manifest: &[u8]| CatalogItem {
        offer: offer.to_vec().into(),
        manifest: manifest.to_vec().into(),
    };
    let page = |items: Vec<CatalogItem>| CatalogPageMsg { items, next: None };
    let flip = |bytes: &[u8]| {
        let mut v = bytes.to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        v
    };
    let good = item(&offer_a, &a.manifest);
    let cases = vec![
        (
            "an honest provider's offer and manifest",
            page(vec![
                good.clone(),
                item(&s.published.offer, &s.published.manifest),
            ]),
            "catalog.not_peer_offer",
        ),
        (
            "a manifest beside another offer",
            page(vec![good.clone(), item(&offer_a, &b.manifest)]),
            "catalog.asset_mismatch",
        ),
        (
            "a tampered manifest",
            page(vec![item(&offer_b, &flip(&b.manifest))]),
            "cose.bad_signature",
        ),
        (
            "a tampered offer",
            page(vec![item(&flip(&offer_b), &b.manifest)]),
            "cose.bad_signature",
        ),
    ];
    let mut alerts = Events(s.consumer.subscribe());
    for (what, lie, want) in cases {
        rogue.host.lies.lock().unwrap().page = Some(lie);
        let e = within(
            "a catalog query to the rogue",
            s.consumer.catalog(rogue.addr, Default::default(), None),
        )
        .await?
        .err()
        .ok_or("took a forged page")?;
        assert_eq!(refusal_code(&e), want, "{what}: {e}");
        // A forged page is the provider's violation: alerted on the consumer.
        alerts.alert(AlertKind::Violation, want).await?;
    }
    // Two queries at once, one answered with a forged page and one honestly: each caller
    // gets its own answer (the refusal once went to whichever query waited, leaving the
    // other caller's honest page undelivered).
    rogue.host.lies.lock().unwrap().page = None;
    for _ in 0..4 {
        rogue.host.lies.lock().unwrap().page_once =
            Some(page(vec![item(&flip(&offer_b), &b.manifest)]));
        let (one, two) = within("two catalog queries at once", async {
            tokio::join!(
                s.consumer.catalog(rogue.addr, Default::default(), None),
                s.consumer.catalog(rogue.addr, Default::default(), None),
            )
        })
        .await?;
        let (mut refused, mut honest) = (0, 0);
        for r in [one, two] {
            match r {
                Ok(p) if p.items.len() == 2 => honest += 1,
                Ok(p) => return Err(format!("a page of {} items", p.items.len()).into()),
                Err(e) => {
                    assert_eq!(refusal_code(&e), "cose.bad_signature", "{e}");
                    refused += 1;
                }
            }
        }
        assert_eq!((refused, honest), (1, 1));
    }
    rogue.host.lies.lock().unwrap().page = None;
    let honest = within(
        "an honest catalog query",
        s.consumer.catalog(rogue.addr, Default::default(), None),
    )
    .await??;
    assert_eq!(honest.items.len(), 2);
    s.still_serves().await
}

/// S15: the consumer will not send a request for an offer to a peer that is not its
/// provider (`negotiation.not_peer_offer`): nothing is signed or sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_is_negotiated_only_with_its_provider() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let mut space = Space::new()?;
    let rogue = Rogue::start(&mut space, 62).await?;
    let e = within(
        "a negotiation with the wrong peer",
        s.consumer
            .negotiate(rogue.addr, &s.published.offer, None, "research".parse()?),
    )
    .await?
    .err()
    .ok_or("negotiated another provider's offer")?;
    assert_eq!(refusal_code(&e), "negotiation.not_peer_offer", "{e}");
    s.still_serves().await
}

/// S15: after the provider's counter-offer, an acceptance that asks for other terms than
/// the counter-offer's (narrowed to its purpose) is refused with
/// `negotiation.not_the_offer` and changes nothing; the exact acceptance is agreed.
/// (A provider on the bare session in manual mode: connectors never counter-offer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptance_other_than_the_counter_offer_is_refused() -> Res {
    let mut space = Space::new()?;
    let provider = Rogue::start_in(&mut space, 63, Mode::Manual).await?;
    let consumer = space.member(64, Sector::FINANCE, "CN-SX")?;
    let dir = tempfile::tempdir()?;
    let (asset, offer) = provider.publish(dir.path(), "a.bin", &data(100_000, 2))?;
    let narrower = "policy set;\n\npermit use\n  when purpose isA research and count lteq 10;\n";
    let t = terms(narrower)?;
    let counter = tds_policy::contract::create_offer(
        provider.member.key.as_ref(),
        &tds_policy::contract::Offer {
            asset: asset.verified.id().to_string().parse()?,
            provider: provider.member.key.id(),
            provider_key: provider.member.key.public_key(),
            policy: t.policy,
            price: None,
            not_before: t.not_before,
            not_after: t.not_after,
            licence: None,
        },
    )?;
    provider.host.lies.lock().unwrap().counter = Some(counter.clone());
    let mut raw = Raw::connect(&space, &consumer, provider.addr).await?;
    let consumer_pid = tds_protocol::Pid::from_bytes([1; 16]);
    let request = signed_request(consumer.key.as_ref(), &consumer, &offer, None, [1; 16])?;
    let reply = raw
        .ask(&contract_request(consumer_pid, &offer, request))
        .await?;
    let tds_protocol::Message::Ack(tds_protocol::message::Ack {
        pid: Some(provider_pid),
        ..
    }) = reply
    else {
        return Err(format!("{reply:?}").into());
    };
    raw.expect("contract_offer", |m| {
        matches!(m, tds_protocol::Message::ContractOffer(_)).then_some(())
    })
    .await?;
    let accepted = |request: Vec<u8>| {
        tds_protocol::Message::ContractAccepted(tds_protocol::message::AcceptedMsg {
            consumer_pid,
            provider_pid,
            request: request.into(),
        })
    };
    // Within the counter-offer, but not its terms: a count of 5, not 10.
    let fewer = tds_policy::parse(
        "fewer",
        "policy set;\n\npermit use\n  when purpose isA research and count lteq 5;\n",
    )?;
    let other_terms = signed_request(
        consumer.key.as_ref(),
        &consumer,
        &counter,
        Some(fewer),
        [2; 16],
    )?;
    let reply = raw.ask(&accepted(other_terms)).await?;
    assert_eq!(code(&reply), "negotiation.not_the_offer", "{reply:?}");
    // The first offer's terms are not the counter-offer's either.
    let first_terms = signed_request(consumer.key.as_ref(), &consumer, &offer, None, [3; 16])?;
    let c = code(&raw.ask(&accepted(first_terms)).await?);
    assert!(
        c.starts_with("negotiation.") || c.starts_with("contract."),
        "{c}"
    );
    // The exact acceptance is agreed.
    let exact = signed_request(consumer.key.as_ref(), &consumer, &counter, None, [4; 16])?;
    assert_eq!(code(&raw.ask(&accepted(exact)).await?), "ack");
    raw.expect("contract_agreement", |m| {
        matches!(m, tds_protocol::Message::ContractAgreement(_)).then_some(())
    })
    .await?;
    Ok(())
}

/// A rogue provider answers a request with an agreement the consumer did not ask for (its
/// time of agreement an hour ahead, signed by the provider). The consumer refuses it and
/// ends the negotiation at once with `negotiation.agreement_mismatch` (only the provider
/// can send an agreement on this connection, so no better one is waited for: before, the
/// negotiation waited out its 5-minute timer), and raises a `violation` alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agreement_other_than_the_request_ends_the_negotiation_at_once() -> Res {
    let mut space = Space::new()?;
    let provider = Rogue::start_in(&mut space, 65, Mode::Manual).await?;
    provider.host.lies.lock().unwrap().agree_ahead_ms = Some(3_600_000);
    let bank = space.member(66, Sector::FINANCE, "CN-SX")?;
    let consumer = connector(&space, &bank, None).await?;
    let mut events = Events(consumer.subscribe());
    let dir = tempfile::tempdir()?;
    let (_, offer) = provider.publish(dir.path(), "a.bin", &data(10_000, 4))?;
    let e = within(
        "a negotiation answered with other terms",
        consumer.negotiate(provider.addr, &offer, None, "research".parse()?),
    )
    .await?
    .err()
    .ok_or("the consumer countersigned terms it did not ask for")?;
    assert_eq!(refusal_code(&e), "negotiation.agreement_mismatch", "{e}");
    events
        .alert(AlertKind::Violation, "negotiation.agreement_mismatch")
        .await?;
    assert!(consumer
        .store()
        .scan_prefix_after(tds_connector::store::Table::Agreements, b"", None, 8)?
        .is_empty());
    Ok(())
}
