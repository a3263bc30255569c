//! Shared helpers: an authority, members, endpoints on 127.0.0.1 with their own clocks.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tds_core::time::{ManualClock, DAY_MS};
use tds_core::{SigningKey, Timestamp};
use tds_identity::{Admission, Authority, Role, Sector, TrustStore};
use tds_transport::{Endpoint, LocalIdentity, SharedTrust, TransportConfig, TransportError};

pub const T0: u64 = 1_800_000_000_000;

/// Every network step of a test finishes within this.
pub const STEP: Duration = Duration::from_secs(5);

pub fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

pub fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

pub fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Runs `f` with the test time limit.
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .expect("a network step took longer than the test allows")
}

pub struct World {
    pub authority: Authority,
    /// The current revocation list (valid for one day from T0).
    pub crl: Vec<u8>,
}

impl World {
    pub fn new() -> World {
        World::with_key(key(100))
    }

    pub fn with_key(k: SigningKey) -> World {
        let mut authority = Authority::new("Test Data Space Authority", k).unwrap();
        let crl = authority
            .revocation_list(t(T0), t(T0 + DAY_MS))
            .unwrap()
            .into_envelope();
        World { authority, crl }
    }

    /// A credential for `k` valid from T0 - 1 day for `days` days.
    pub fn admit_for(&mut self, k: &SigningKey, days: u64) -> Vec<u8> {
        self.authority
            .admit(
                &Admission {
                    subject_key: k.public_key(),
                    name: "Test Member".into(),
                    sectors: vec![Sector::POWER],
                    roles: vec![Role::Provider, Role::Consumer],
                    jurisdiction: "CN-SX".parse().unwrap(),
                    not_before: t(T0 - DAY_MS),
                    not_after: t(T0 - DAY_MS + days * DAY_MS),
                },
                t(T0 - DAY_MS),
            )
            .unwrap()
            .into_envelope()
    }

    pub fn admit(&mut self, k: &SigningKey) -> Vec<u8> {
        self.admit_for(k, 365)
    }

    /// A member's endpoint: key `n`, a fresh credential, this world's trust and list.
    pub fn member(&mut self, n: u8) -> Node {
        let credential = self.admit(&key(n));
        node(self, key(n), credential)
    }

    /// Revokes `serial` and returns the new list (valid one day from `now`).
    pub fn revoke(&mut self, serial: u64, now: u64) -> Vec<u8> {
        self.authority.revoke(serial).unwrap();
        self.crl = self
            .authority
            .revocation_list(t(now), t(now + DAY_MS))
            .unwrap()
            .into_envelope();
        self.crl.clone()
    }

    /// A trust store trusting this authority, holding its current list.
    pub fn trust(&self) -> SharedTrust {
        let mut store = TrustStore::new();
        store.add_authority(self.authority.public_key());
        store.add_revocation_list(&self.crl, t(T0)).unwrap();
        Arc::new(RwLock::new(store))
    }
}

pub fn config() -> TransportConfig {
    TransportConfig {
        hello_timeout: Duration::from_secs(3),
        refusal_linger: Duration::from_millis(500),
        ..TransportConfig::default()
    }
}

/// A member's endpoint with its own clock at T0 and a log of refused incoming
/// connections.
pub struct Node {
    pub endpoint: Endpoint,
    pub clock: Arc<ManualClock>,
    pub trust: SharedTrust,
    pub refusals: Arc<Mutex<Vec<(String, String)>>>,
}

impl Node {
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap()
    }

    /// The refusals seen so far: (code, message).
    pub fn refused(&self) -> Vec<(String, String)> {
        self.refusals.lock().unwrap().clone()
    }

    /// Waits (bounded) until a refusal was observed and returns its code.
    pub async fn first_refusal_code(&self) -> String {
        within(async {
            loop {
                if let Some((code, _)) = self.refused().first() {
                    return code.clone();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}

pub fn node(world: &World, k: SigningKey, credential: Vec<u8>) -> Node {
    node_with(world.trust(), k, credential, Some(world.crl.clone()), |b| b)
}

pub fn node_with(
    trust: SharedTrust,
    k: SigningKey,
    credential: Vec<u8>,
    crl: Option<Vec<u8>>,
    extra: impl FnOnce(tds_transport::EndpointBuilder) -> tds_transport::EndpointBuilder,
) -> Node {
    use tds_core::ErrorCode as _;
    let clock = Arc::new(ManualClock::new(t(T0)));
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let seen = refusals.clone();
    let identity = LocalIdentity::new(k, credential, crl).unwrap();
    let builder = Endpoint::builder(identity, trust.clone())
        .config(config())
        .clock(clock.clone())
        .on_refusal(Arc::new(move |_, e: &TransportError| {
            let inner: &(dyn std::error::Error + 'static) = e;
            seen.lock()
                .unwrap()
                .push((e.code().to_owned(), tds_core::code::full_message(inner)));
        }));
    let endpoint = extra(builder).bind(local()).unwrap();
    Node {
        endpoint,
        clock,
        trust,
        refusals,
    }
}

/// Connects `client` to `server` and accepts on the server, both bounded in time.
pub async fn pair(
    client: &Node,
    server: &Node,
) -> (
    Result<tds_transport::Connection, TransportError>,
    Option<tds_transport::Connection>,
) {
    let addr = server.addr();
    let accept = async {
        tokio::time::timeout(Duration::from_secs(2), server.endpoint.accept())
            .await
            .ok()
            .and_then(Result::ok)
    };
    within(async { tokio::join!(client.endpoint.connect(addr), accept) }).await
}
