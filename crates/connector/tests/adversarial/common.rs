//! A data space for the attacks: an authority, members, connectors on loopback, and a raw
//! client that speaks below the connector (hand-made frames and messages on a real QUIC
//! connection that passed the hello with a member's credential).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tds_connector::{Alert, AlertKind, Connector, ConnectorConfig, ConnectorEvent, Source};
use tds_core::hash::Hash256;
use tds_core::time::SystemClock;
use tds_core::{Clock, Signer};
use tds_identity::Sector;
use tds_protocol::frame::{self, Frame};
use tds_protocol::message::Ack;
use tds_protocol::{Message, Pid};
use tds_transport::{Connection, Endpoint, LocalIdentity, TransportConfig};
use tokio::sync::{broadcast, mpsc};

pub use crate::base::{data, terms, Member, Res, Space};

/// Every network step of a test finishes within this (generous: the machine is shared).
pub const STEP: Duration = Duration::from_secs(20);

/// Runs `f` bounded by [`STEP`].
pub async fn within<F: std::future::Future>(what: &str, f: F) -> Res<F::Output> {
    tokio::time::timeout(STEP, f)
        .await
        .map_err(|_| format!("{what} took longer than the test allows").into())
}

/// Short timers, so that the attacks that wait for one end quickly: the hello, the
/// refusal linger and the time a request frame may take to arrive.
pub fn transport() -> TransportConfig {
    TransportConfig {
        hello_timeout: Duration::from_secs(4),
        refusal_linger: Duration::from_millis(300),
        request_timeout: Duration::from_secs(2),
        ..TransportConfig::default()
    }
}

pub fn config() -> ConnectorConfig {
    ConnectorConfig {
        transport: transport(),
        ..ConnectorConfig::default()
    }
}

/// A connector of `m` in memory (or in `dir`, on redb) with the test config.
pub async fn connector(space: &Space, m: &Member, dir: Option<&Path>) -> Res<Connector> {
    connector_with(space, m, dir, config(), None).await
}

pub async fn connector_with(
    space: &Space,
    m: &Member,
    dir: Option<&Path>,
    config: ConnectorConfig,
    clock: Option<Arc<dyn Clock>>,
) -> Res<Connector> {
    let mut b = Connector::builder(m.key.clone(), m.credential.clone(), space.trust()?)
        .revocation_list(space.crl.clone())
        .config(config);
    b = match dir {
        None => b.memory(),
        Some(d) => b.data_dir(d),
    };
    if let Some(c) = clock {
        b = b.clock(c);
    }
    Ok(b.start().await?)
}

/// A manifest of `path`'s bytes signed by `owner`, titled `title` (a power-sector asset
/// of general data).
pub fn manifest_for(owner: &Member, path: &Path, title: &str, chunk: u64) -> Res<Vec<u8>> {
    let spec = crate::base::AssetSpec {
        title: title.into(),
        ..crate::base::AssetSpec::default()
    };
    crate::base::manifest_for(owner, path, chunk, &spec)
}

pub const RESEARCH: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";

/// A published asset: the offer's id and signed bytes, the manifest.
pub struct Published {
    pub offer_id: Hash256,
    pub offer: Vec<u8>,
    pub manifest: Vec<u8>,
}

/// Publishes `bytes` (written to `dir/name`) under one offer of `policy`.
pub async fn publish(
    provider: &Connector,
    owner: &Member,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    policy: &str,
) -> Res<Published> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    let manifest = manifest_for(owner, &path, "Load curves", 65536)?;
    let p = provider
        .publish(&manifest, Source::File(path), vec![terms(policy)?])
        .await?;
    let offer_id = p.offers.first().copied().ok_or("no offer")?;
    let offer = provider.offer(&offer_id)?.ok_or("offer not stored")?;
    Ok(Published {
        offer_id,
        offer,
        manifest,
    })
}

/// A provider (power) serving one 200 kB asset under `policy`, an honest consumer
/// (finance), and the members behind them.
pub struct Scene {
    pub space: Space,
    pub grid: Member,
    pub bank: Member,
    pub provider: Connector,
    pub consumer: Connector,
    pub published: Published,
    pub dir: tempfile::TempDir,
    /// The provider's events since the scene was set up.
    pub events: Events,
}

impl Scene {
    pub async fn new(policy: &str) -> Res<Scene> {
        Scene::in_dir(policy, false).await
    }

    /// With `durable`, the provider keeps its state on redb in `dir/provider`.
    pub async fn in_dir(policy: &str, durable: bool) -> Res<Scene> {
        let mut space = Space::new()?;
        let grid = space.member(11, Sector::POWER, "CN-SX")?;
        let bank = space.member(12, Sector::FINANCE, "CN-SX")?;
        let dir = tempfile::tempdir()?;
        let pdir = dir.path().join("provider");
        let provider = connector(&space, &grid, durable.then_some(pdir.as_path())).await?;
        let consumer = connector(&space, &bank, None).await?;
        let events = Events(provider.subscribe());
        let published = publish(
            &provider,
            &grid,
            dir.path(),
            "asset.bin",
            &data(200_000, 3),
            policy,
        )
        .await?;
        Ok(Scene {
            space,
            grid,
            bank,
            provider,
            consumer,
            published,
            dir,
            events,
        })
    }

    pub fn addr(&self) -> Res<SocketAddr> {
        Ok(self.provider.local_addr()?)
    }

    /// The honest consumer negotiates the offer for research.
    pub async fn negotiate(&self) -> Res<Hash256> {
        let a = within(
            "an honest negotiation",
            self.consumer.negotiate(
                self.addr()?,
                &self.published.offer,
                None,
                "research".parse()?,
            ),
        )
        .await??;
        Ok(a.id())
    }

    /// The honest consumer fetches `agreement` into `out-N.bin` and gets every byte.
    pub async fn fetch(&self, agreement: &Hash256, n: u32) -> Res {
        let out = self.dir.path().join(format!("out-{n}.bin"));
        let options = tds_connector::FetchOptions::new(out.clone(), "research".parse()?);
        within(
            "an honest fetch",
            self.consumer.fetch(self.addr()?, agreement, options),
        )
        .await??;
        assert_eq!(
            std::fs::read(&out)?,
            data(200_000, 3),
            "fetched bytes differ"
        );
        Ok(())
    }

    /// The provider still serves: the honest consumer reads its catalog, negotiates and
    /// fetches.
    pub async fn still_serves(&self) -> Res {
        let page = within(
            "a catalog query",
            self.consumer
                .catalog(self.addr()?, Default::default(), None),
        )
        .await??;
        assert!(!page.items.is_empty(), "the provider's catalog is empty");
        let a = self.negotiate().await?;
        self.fetch(&a, 900).await
    }

    /// A raw client of `m` connected to the provider.
    pub async fn raw(&self, m: &Member) -> Res<Raw> {
        Raw::connect(&self.space, m, self.addr()?).await
    }
}

/// The reason codes of the `access_denied` events in `c`'s log.
pub fn denials(c: &Connector) -> Res<Vec<String>> {
    let log = c.log();
    let mut found = Vec::new();
    for i in 0..log.size() {
        if let tds_provenance::EventBody::AccessDenied { reasons, .. } = &log.event(i)?.body {
            found.extend(reasons.iter().map(|r| r.as_str().to_owned()));
        }
    }
    Ok(found)
}

/// Waits (bounded) until `c`'s log holds an `access_denied` naming `code`.
pub async fn denied_logged(c: &Connector, code: &str) -> Res {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let found = denials(c)?;
        if found.iter().any(|r| r == code) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("no access_denied naming {code}: {found:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connector's events from the moment it was subscribed.
pub struct Events(pub broadcast::Receiver<ConnectorEvent>);

impl Events {
    /// The next alert of `kind` with `code` (others are skipped), bounded in time.
    /// Waits until every one of `wanted` (kind, code) has been raised, in any order (two
    /// alerts raised by different tasks may come in either order: looking for them one
    /// after the other would drop the second while waiting for the first).
    pub async fn alerts(&mut self, wanted: &[(AlertKind, &str)]) -> Res<()> {
        let deadline = tokio::time::Instant::now() + STEP;
        let mut missing: Vec<(AlertKind, &str)> = wanted.to_vec();
        let mut seen = Vec::new();
        while !missing.is_empty() {
            match tokio::time::timeout_at(deadline, self.0.recv()).await {
                Ok(Ok(ConnectorEvent::Alert(a))) => {
                    match missing
                        .iter()
                        .position(|(k, c)| *k == a.kind && *c == a.code)
                    {
                        Some(i) => {
                            missing.swap_remove(i);
                        }
                        None => seen.push(format!("{:?} {}", a.kind, a.code)),
                    }
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => return Err(format!("events: {e}").into()),
                Err(_) => return Err(format!("no alerts {missing:?}; also saw {seen:?}").into()),
            }
        }
        Ok(())
    }

    pub async fn alert(&mut self, kind: AlertKind, code: &str) -> Res<Alert> {
        let deadline = tokio::time::Instant::now() + STEP;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.0.recv()).await {
                Ok(Ok(ConnectorEvent::Alert(a))) if a.kind == kind && a.code == code => {
                    return Ok(a)
                }
                Ok(Ok(ConnectorEvent::Alert(a))) => seen.push(format!("{:?} {}", a.kind, a.code)),
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => return Err(format!("events: {e}").into()),
                Err(_) => return Err(format!("no {kind:?} alert with {code}; saw {seen:?}").into()),
            }
        }
    }
}

/// The code of a reply: `ack`, or the refusal's code.
pub fn code(reply: &Message) -> String {
    match reply {
        Message::Error(r) => r.code.clone(),
        Message::Ack(_) => "ack".into(),
        other => other.name().to_owned(),
    }
}

/// A member's raw client: a real endpoint whose connection to the provider passed the
/// hello, through which a test sends whatever it likes. Requests the provider sends it
/// are acknowledged (with the process id they name on the consumer's side) and kept in
/// `inbox`.
pub struct Raw {
    /// Kept so the endpoint lives as long as the connection.
    _endpoint: Endpoint,
    pub conn: Connection,
    pub inbox: mpsc::UnboundedReceiver<Message>,
}

impl Raw {
    pub async fn connect(space: &Space, m: &Member, addr: SocketAddr) -> Res<Raw> {
        let identity = LocalIdentity::new(
            m.key.clone() as Arc<dyn Signer>,
            m.credential.clone(),
            Some(space.crl.clone()),
        )?;
        let endpoint = Endpoint::builder(identity, Arc::new(RwLock::new(space.trust()?)))
            .config(transport())
            .bind("127.0.0.1:0".parse()?)?;
        let conn = within("connecting", endpoint.connect(addr)).await??;
        let (tx, inbox) = mpsc::unbounded_channel();
        let c = conn.clone();
        tokio::spawn(async move {
            while let Ok((bytes, responder)) = c.accept_request().await {
                let Ok(Frame::Control(m)) = frame::decode(&bytes) else {
                    continue;
                };
                let pid = consumer_pid(&m);
                let _ = responder
                    .reply(&Message::Ack(Ack { pid, state: None }))
                    .await;
                if tx.send(m).is_err() {
                    return;
                }
            }
        });
        Ok(Raw {
            _endpoint: endpoint,
            conn,
            inbox,
        })
    }

    /// Sends `m` as a request; its reply.
    pub async fn ask(&self, m: &Message) -> Res<Message> {
        let reply = within("a request", self.conn.request(m)).await??;
        Ok(within("a reply", reply.message()).await??)
    }

    /// Sends `bytes` as they are on a new stream (finished after them); the reply
    /// message.
    pub async fn ask_bytes(&self, bytes: &[u8]) -> Res<Message> {
        let (mut send, mut recv) = self.conn.quic().open_bi().await?;
        // A refused frame stops our stream; its refusal is still the reply.
        let _ = send.write_all(bytes).await;
        let _ = send.finish();
        let reply = within("a reply", recv.read_to_end(1 << 20)).await??;
        match frame::decode(&reply)? {
            Frame::Control(m) => Ok(m),
            Frame::Data(..) => Err("a data frame in reply".into()),
        }
    }

    /// The next request of the provider matching `pick`, bounded in time.
    pub async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(Message) -> Option<T>,
    ) -> Res<T> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(m)) => {
                    if let Some(t) = pick(m) {
                        return Ok(t);
                    }
                }
                Ok(None) => return Err(format!("the connection closed before {what}").into()),
                Err(_) => return Err(format!("no {what} from the provider").into()),
            }
        }
    }
}

/// The consumer-side process id a provider's message names.
fn consumer_pid(m: &Message) -> Option<Pid> {
    match m {
        Message::ContractAgreement(a) => Some(a.consumer_pid),
        Message::ContractFinalized(n) | Message::NegotiationTermination(n) => Some(n.consumer_pid),
        Message::ContractOffer(o) => o.consumer_pid,
        Message::TransferStart(s) => Some(s.consumer_pid),
        Message::TransferCompletion(c) => Some(c.consumer_pid),
        Message::TransferSuspension(s) | Message::TransferTermination(s) => Some(s.consumer_pid),
        _ => None,
    }
}

/// A contract request of `m` for `offer` and `purpose` with `nonce`, signed as is (the
/// policy unchecked, so a test can send what an honest library would not sign).
pub fn signed_request(
    signer: &dyn Signer,
    m: &Member,
    offer: &[u8],
    policy: Option<tds_policy::Policy>,
    nonce: [u8; 16],
) -> Res<Vec<u8>> {
    let o = tds_policy::contract::verify_offer(offer)?;
    let purpose: tds_policy::Purpose = "research".parse()?;
    let policy = policy
        .unwrap_or_else(|| tds_policy::contract::narrow_to_purpose(&o.offer().policy, &purpose));
    let r = tds_policy::contract::ContractRequest {
        offer: o.id(),
        consumer: m.key.id(),
        consumer_key: m.key.public_key(),
        policy,
        purpose,
        nonce: serde_bytes::ByteArray::new(nonce),
        time: SystemClock.now(),
    };
    Ok(tds_core::cose::sign(signer, &r)?)
}

pub fn contract_request(consumer_pid: Pid, offer: &[u8], request: Vec<u8>) -> Message {
    Message::ContractRequest(tds_protocol::message::ContractRequestMsg {
        consumer_pid,
        provider_pid: None,
        offer: offer.to_vec().into(),
        request: request.into(),
    })
}

/// A negotiation a raw consumer opened: its pids and the provider-signed agreement.
pub struct Opened {
    pub consumer_pid: Pid,
    pub provider_pid: Pid,
    pub half: Vec<u8>,
}

/// The raw consumer `m` requests `offer` (nonce `n`) and waits for the provider's
/// signed agreement.
pub async fn open_negotiation(raw: &mut Raw, m: &Member, offer: &[u8], n: u8) -> Res<Opened> {
    let consumer_pid = Pid::from_bytes([n; 16]);
    let request = signed_request(m.key.as_ref(), m, offer, None, [n; 16])?;
    let reply = raw
        .ask(&contract_request(consumer_pid, offer, request))
        .await?;
    let Message::Ack(Ack {
        pid: Some(provider_pid),
        ..
    }) = reply
    else {
        return Err(format!("the request was not accepted: {reply:?}").into());
    };
    let half = raw
        .expect("contract_agreement", |m| match m {
            Message::ContractAgreement(a) if a.consumer_pid == consumer_pid => {
                Some(a.agreement.into_vec())
            }
            _ => None,
        })
        .await?;
    Ok(Opened {
        consumer_pid,
        provider_pid,
        half,
    })
}

/// The verification message of an opened negotiation carrying `agreement`.
pub fn verification(o: &Opened, agreement: Vec<u8>) -> Message {
    Message::AgreementVerification(tds_protocol::message::VerificationMsg {
        consumer_pid: o.consumer_pid,
        provider_pid: o.provider_pid,
        agreement: agreement.into(),
    })
}
