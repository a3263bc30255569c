//! Fixtures for the simulation tests: an authority, a provider and a consumer with
//! credentials, an asset with its manifest and chunk tree, an offer, and a simulation of
//! the two sessions (side 0 the consumer, side 1 the provider).

use std::num::NonZeroUsize;
use std::sync::Arc;

use tds_core::time::DAY_MS;
use tds_core::{merkle, SigningKey, Timestamp};
use tds_identity::{Admission, Authority, Role, Sector, TrustStore, VerifiedCredential};
use tds_manifest::content::{ChunkTree, ContentBuilder};
use tds_manifest::{ChunkSize, Classification, Manifest, PersonalInfo, MANIFEST_VERSION};
use tds_policy::contract::{create_offer, Offer};
use tds_protocol::session::{Asset, Config, Mode, Session};
use tds_protocol::sim::{MemoryHost, NetConfig, Side, Sim, SimRandom};

pub const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
pub const CONSUMER: usize = 0;
pub const PROVIDER_SEED: [u8; 32] = [1; 32];
pub const CONSUMER_SEED: [u8; 32] = [2; 32];
pub const PROVIDER: usize = 1;

pub struct World {
    pub authority: Authority,
    pub provider: SigningKey,
    pub consumer: SigningKey,
    pub provider_cred: Vec<u8>,
    pub consumer_cred: Vec<u8>,
    pub crl: Vec<u8>,
    pub manifest: Vec<u8>,
    pub asset: Asset,
    pub data: Arc<Vec<u8>>,
    pub tree: Arc<ChunkTree>,
    pub offer: Vec<u8>,
    /// A counter-offer: the same asset, narrower terms.
    pub offer2: Vec<u8>,
}

pub const POLICY: &str = "policy set;\n\npermit use\n  when purpose isA grid;\n";
pub const POLICY2: &str = "policy set;\n\npermit use\n  when purpose isA grid/planning;\n";

pub fn admit(authority: &mut Authority, key: &SigningKey, role: Role) -> Vec<u8> {
    authority
        .admit(
            &Admission {
                subject_key: key.public_key(),
                name: format!("member {role:?}"),
                sectors: vec![Sector::POWER],
                roles: vec![role],
                jurisdiction: "CN-SX".parse().unwrap(),
                not_before: NOW,
                not_after: NOW.saturating_add_millis(30 * DAY_MS),
            },
            NOW,
        )
        .unwrap()
        .into_envelope()
}

/// A world with an asset of `chunks` chunks of 64 KiB (the last one shorter).
pub fn world(chunks: u64) -> World {
    world_of(chunks, PersonalInfo::None)
}

/// A world whose asset holds personal information of level `personal`.
pub fn world_of(chunks: u64, personal: PersonalInfo) -> World {
    let mut authority =
        Authority::new("Shanxi Energy", SigningKey::from_seed(&[0x42; 32])).unwrap();
    let provider = SigningKey::from_seed(&PROVIDER_SEED);
    let consumer = SigningKey::from_seed(&CONSUMER_SEED);
    let provider_cred = admit(&mut authority, &provider, Role::Provider);
    let consumer_cred = admit(&mut authority, &consumer, Role::Consumer);
    let crl = authority
        .revocation_list(NOW, NOW.saturating_add_millis(30 * DAY_MS))
        .unwrap()
        .into_envelope();
    let chunk = ChunkSize::MIN;
    let len = (chunks * chunk.get()).saturating_sub(1000) as usize;
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let builder = ContentBuilder::new(chunk, NonZeroUsize::MIN);
    let (content, tree) = ChunkTree::build(&builder, &data[..]).unwrap();
    assert_eq!(tree.root(), content.root);
    let _ = merkle::leaf_hash(&[]);
    let m = Manifest {
        version: MANIFEST_VERSION,
        title: "Load curves, Taiyuan".into(),
        description: "15-minute feeder load".into(),
        sector: Sector::POWER,
        media_type: "text/csv".into(),
        schema: None,
        keywords: vec!["load".into(), "grid".into()],
        owner: tds_identity::ParticipantId::of(&provider.public_key()),
        owner_key: provider.public_key(),
        created: NOW,
        classification: Classification::General,
        personal,
        residency: None,
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    };
    let manifest = m.sign(&provider).unwrap();
    let verified = tds_manifest::open(&manifest)
        .unwrap()
        .verify(&provider.public_key())
        .unwrap();
    let asset_id = verified.id().to_string();
    let offer = create_offer(
        &provider,
        &Offer {
            asset: asset_id.parse().unwrap(),
            provider: provider.id(),
            provider_key: provider.public_key(),
            policy: tds_policy::parse("offer", POLICY).unwrap(),
            price: None,
            not_before: NOW,
            not_after: NOW.saturating_add_millis(30 * DAY_MS),
            licence: None,
        },
    )
    .unwrap();
    let offer2 = create_offer(
        &provider,
        &Offer {
            asset: asset_id.parse().unwrap(),
            provider: provider.id(),
            provider_key: provider.public_key(),
            policy: tds_policy::parse("offer2", POLICY2).unwrap(),
            price: None,
            not_before: NOW,
            not_after: NOW.saturating_add_millis(30 * DAY_MS),
            licence: None,
        },
    )
    .unwrap();
    World {
        authority,
        provider,
        consumer,
        provider_cred,
        consumer_cred,
        crl,
        manifest: manifest.clone(),
        asset: Asset {
            manifest,
            verified: Arc::new(verified),
        },
        data: Arc::new(data),
        tree: Arc::new(tree),
        offer,
        offer2,
    }
}

pub fn trust(w: &World) -> TrustStore {
    let mut t = TrustStore::new();
    t.add_authority(w.authority.public_key());
    t.add_revocation_list(&w.crl, NOW).unwrap();
    t
}

pub fn verified(w: &World, cred: &[u8]) -> VerifiedCredential {
    trust(w).verify(cred, NOW).unwrap()
}

pub fn config(mode: Mode) -> Config {
    Config {
        provider_mode: mode,
        consumer_mode: mode,
        ..Config::default()
    }
}

/// The simulation: side 0 the consumer, side 1 the provider.
pub fn sim(w: &World, consumer: Config, provider: Config, net: NetConfig, seed: u64) -> Sim {
    let chost = Arc::new(MemoryHost::new(trust(w)));
    let phost = Arc::new(MemoryHost::new(trust(w)));
    phost.add_asset(w.asset.clone());
    phost.add_catalog_entry(w.offer.clone(), w.manifest.clone());
    let c = Session::new(
        consumer,
        Arc::new(SigningKey::from_seed(&CONSUMER_SEED)),
        verified(w, &w.provider_cred),
        chost.clone(),
        Arc::new(SimRandom::new(seed ^ 0xc0)),
    );
    let p = Session::new(
        provider,
        Arc::new(SigningKey::from_seed(&PROVIDER_SEED)),
        verified(w, &w.consumer_cred),
        phost.clone(),
        Arc::new(SimRandom::new(seed ^ 0x9e)),
    );
    let mut pside = Side::new(p, phost);
    pside.contents.insert(
        w.asset.verified.id().to_string(),
        (w.data.clone(), w.tree.clone()),
    );
    Sim::new(NOW, net, seed, Side::new(c, chost), pside)
}

pub fn purpose() -> tds_policy::Purpose {
    "grid/planning".parse().unwrap()
}

/// A fresh contract request for `offer` signed by the consumer (for injected messages).
pub fn signed_request(w: &World, offer: &[u8], nonce: u8) -> Vec<u8> {
    let o = tds_policy::contract::verify_offer(offer).unwrap();
    tds_policy::contract::create_request(
        &w.consumer,
        &tds_policy::contract::ContractRequest {
            offer: o.id(),
            consumer: w.consumer.id(),
            consumer_key: w.consumer.public_key(),
            policy: tds_policy::contract::narrow_to_purpose(&o.offer().policy, &purpose()),
            purpose: purpose(),
            nonce: serde_bytes::ByteArray::new([nonce; 16]),
            time: NOW,
        },
    )
    .unwrap()
}

/// Delivers `m` to side `to` as the other side's request; returns the refusal code, or
/// `None` if it was accepted.
pub fn inject(sim: &mut Sim, to: usize, m: tds_protocol::Message) -> Option<String> {
    let frame = tds_protocol::frame::encode_control(&m).unwrap();
    inject_frame(sim, to, &frame)
}

/// Delivers raw bytes to side `to` as a request; returns the refusal code, if refused.
pub fn inject_frame(sim: &mut Sim, to: usize, frame: &[u8]) -> Option<String> {
    let reply = sim.inject(to, frame).expect("every request gets a reply");
    match tds_protocol::frame::decode(&reply).unwrap() {
        tds_protocol::frame::Frame::Control(tds_protocol::Message::Error(r)) => Some(r.code),
        tds_protocol::frame::Frame::Control(tds_protocol::Message::Ack(_)) => None,
        other => panic!("unexpected reply {other:?}"),
    }
}

/// Negotiates the world's offer in the sides' modes (automatic) and returns the
/// consumer's agreement.
pub fn agreed(sim: &mut Sim, w: &World) -> Arc<tds_policy::contract::VerifiedAgreement> {
    let now = sim.now;
    let n = sim.sides[CONSUMER]
        .session
        .request_contract(now, &w.offer, None, purpose())
        .unwrap();
    sim.run_for(2000);
    sim.sides[CONSUMER]
        .session
        .negotiation(n)
        .unwrap()
        .agreement
        .expect("finalized")
}
