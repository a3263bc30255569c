//! `tds offer create`, `tds contract request|accept|countersign`, `tds agreement verify`:
//! the offline contract flow.
//!
//! The offline CLI checks signatures, credentials, containment and time windows, but it
//! cannot remember nonces between runs (it says so by using
//! `contract::danger::NoNonceStore`); replay protection is the stateful negotiator's job.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value as Json};
use tds_core::{PublicKey, Timestamp};
use tds_policy::contract::{self, ContractRequest, Offer, Price};

use crate::cmd::policy::load;
use crate::{files, output};

/// `tds offer ...`
#[derive(Debug, Subcommand)]
pub(crate) enum OfferCommand {
    /// Sign an offer: an asset under a policy, with an optional price.
    Create(OfferArgs),
}

#[derive(Debug, Args)]
pub(crate) struct OfferArgs {
    /// The provider's key file.
    #[arg(long, value_name = "PROVIDER_KEY")]
    key: PathBuf,
    /// The asset id (usually the manifest id).
    #[arg(long, value_name = "ASSET_ID")]
    asset: String,
    /// The policy file (text or ODRL JSON).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The price, a decimal amount.
    #[arg(long, value_name = "AMOUNT", requires = "currency")]
    price: Option<String>,
    /// The price's currency (three capital letters).
    #[arg(long, value_name = "CODE", requires = "price")]
    currency: Option<String>,
    /// Days the offer stays valid.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3660))]
    days: u64,
    /// Where to write the offer.
    #[arg(long, value_name = "OFFER")]
    out: PathBuf,
}

/// `tds contract ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ContractCommand {
    /// Sign a contract request for an offer (consumer).
    Request {
        /// The offer file.
        #[arg(value_name = "OFFER")]
        offer: PathBuf,
        /// The consumer's key file.
        #[arg(long, value_name = "CONSUMER_KEY")]
        key: PathBuf,
        /// The declared purpose (e.g. grid/planning).
        #[arg(long, value_name = "P")]
        purpose: String,
        /// The requested policy (default: the offer's, narrowed to the purpose).
        #[arg(long, value_name = "REQUEST_POLICY")]
        policy: Option<PathBuf>,
        /// Where to write the request.
        #[arg(long, value_name = "REQUEST")]
        out: PathBuf,
    },
    /// Check a request against its offer and sign the terms (provider). The consumer
    /// must hold a membership credential with the consumer role, checked first.
    Accept {
        /// The request file.
        #[arg(value_name = "REQUEST")]
        request: PathBuf,
        /// The offer file.
        #[arg(long, value_name = "OFFER")]
        offer: PathBuf,
        /// The provider's key file.
        #[arg(long, value_name = "PROVIDER_KEY")]
        key: PathBuf,
        /// The consumer's membership credential.
        #[arg(long, value_name = "FILE")]
        credential: PathBuf,
        /// A trusted authority public key, 64 hex digits; may repeat.
        #[arg(long = "authority-key", value_name = "HEX", required = true, value_parser = parse_public_key)]
        authority_keys: Vec<PublicKey>,
        /// The authority's revocation list; without it revocation is not checked
        /// ("revocation_checked": false).
        #[arg(long, value_name = "FILE")]
        crl: Option<PathBuf>,
        /// Where to write the provider-signed terms.
        #[arg(long, value_name = "HALF")]
        out: PathBuf,
    },
    /// Countersign provider-signed terms (consumer): the agreement.
    Countersign {
        /// The provider-signed terms.
        #[arg(value_name = "HALF")]
        half: PathBuf,
        /// The consumer's key file.
        #[arg(long, value_name = "CONSUMER_KEY")]
        key: PathBuf,
        /// Where to write the agreement.
        #[arg(long, value_name = "AGREEMENT")]
        out: PathBuf,
    },
}

/// `tds agreement ...`
#[derive(Debug, Subcommand)]
pub(crate) enum AgreementCommand {
    /// Verify an agreement's two signatures and show its terms.
    Verify {
        /// The agreement file.
        #[arg(value_name = "AGREEMENT")]
        agreement: PathBuf,
    },
    /// Terminate an agreement this node holds; the peer is told.
    Terminate(crate::node::verbs::TerminateArgs),
}

fn named<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow!("{}: {e}", path.display())
}

fn parse_public_key(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(s).map_err(|e| e.to_string())
}

fn time(m: &mut Map<String, Json>, name: &str, t: Timestamp) {
    m.insert(name.into(), json!(t.to_rfc3339()));
    m.insert(format!("{name}_ms"), json!(t.as_millis()));
}

pub(crate) fn offer(c: OfferCommand) -> anyhow::Result<()> {
    let OfferCommand::Create(a) = c;
    let key = files::read_key(&a.key)?;
    let (policy, _) = load(&a.policy)?;
    let price = match (a.price, a.currency) {
        (Some(p), Some(c)) => Some(Price {
            amount: p.parse().map_err(|e| anyhow!("--price: {e}"))?,
            currency: c.parse().map_err(|e| anyhow!("--currency: {e}"))?,
        }),
        _ => None,
    };
    let now = Timestamp::now();
    let o = Offer {
        asset: a.asset.parse().map_err(|e| anyhow!("--asset: {e}"))?,
        provider: key.id(),
        provider_key: key.public_key(),
        policy,
        price,
        not_before: now,
        not_after: now.saturating_add_millis(a.days.saturating_mul(tds_core::time::DAY_MS)),
        licence: None,
    };
    let bytes = contract::create_offer(&key, &o)?;
    let v = contract::verify_offer(&bytes)?;
    files::write(&a.out, &bytes, files::PUBLIC_MODE)?;
    let mut m = Map::new();
    m.insert("offer_id".into(), json!(v.id().to_string()));
    m.insert("provider".into(), json!(o.provider.to_string()));
    m.insert("asset".into(), json!(o.asset.as_str()));
    time(&mut m, "not_before", o.not_before);
    time(&mut m, "not_after", o.not_after);
    m.insert("out".into(), json!(a.out.display().to_string()));
    output::print(&Json::Object(m))
}

pub(crate) fn contract(c: ContractCommand) -> anyhow::Result<()> {
    match c {
        ContractCommand::Request {
            offer,
            key,
            purpose,
            policy,
            out,
        } => {
            let key = files::read_key(&key)?;
            let o = contract::verify_offer(&files::read(&offer)?).map_err(named(&offer))?;
            let now = Timestamp::now();
            o.check_valid_at(now).map_err(named(&offer))?;
            let purpose: tds_policy::Purpose =
                purpose.parse().map_err(|e| anyhow!("--purpose: {e}"))?;
            let asked = match &policy {
                Some(p) => load(p)?.0,
                None => contract::narrow_to_purpose(&o.offer().policy, &purpose),
            };
            // Fail early, with the counterexample, rather than at the provider (the same
            // checks and budget as the provider's).
            contract::check_request_policy(
                &o.offer().policy,
                &asked,
                &purpose,
                &mut tds_policy::Budget::new(contract::REQUEST_BUDGET),
            )
            .map_err(named(policy.as_deref().unwrap_or(&offer)))?;
            let r = ContractRequest {
                offer: o.id(),
                consumer: key.id(),
                consumer_key: key.public_key(),
                policy: asked,
                purpose: purpose.clone(),
                nonce: serde_bytes::ByteArray::new(contract::random_nonce(
                    &tds_core::rand::SystemRandom,
                )?),
                time: now,
            };
            let bytes = contract::create_request(&key, &r)?;
            files::write(&out, &bytes, files::PUBLIC_MODE)?;
            let mut m = Map::new();
            m.insert("request_id".into(), json!(r.id()?.to_string()));
            m.insert("offer_id".into(), json!(o.id().to_string()));
            m.insert("consumer".into(), json!(key.id().to_string()));
            m.insert("purpose".into(), json!(purpose.as_str()));
            time(&mut m, "time", now);
            m.insert("out".into(), json!(out.display().to_string()));
            output::print(&Json::Object(m))
        }
        ContractCommand::Accept {
            request,
            offer,
            key,
            credential,
            authority_keys,
            crl,
            out,
        } => {
            let key_file = key;
            let key = files::read_key(&key_file)?;
            let o = contract::verify_offer(&files::read(&offer)?).map_err(named(&offer))?;
            let now = Timestamp::now();
            let store = crate::trust::store(&authority_keys, &[] as &[&Path], crl.as_deref(), now)?;
            let consumer = crate::trust::credential(&store, &credential, crl.as_deref(), now)?;
            // The offline CLI cannot remember nonces between runs.
            let nonces = contract::danger::NoNonceStore::accepting_replays();
            let r = contract::verify_request(&files::read(&request)?, &o, &consumer, now, &nonces)
                .map_err(named(&request))?;
            let accepted = contract::accept(&key, &o, &r, now).map_err(named(&key_file))?;
            files::write(&out, &accepted.envelope, files::PUBLIC_MODE)?;
            output::print(&json!({
                "agreement_id": accepted.id.to_string(),
                "provider": o.offer().provider.to_string(),
                "consumer": r.request().consumer.to_string(),
                "consumer_credential": consumer.id().to_string(),
                "revocation_checked": consumer.revocation_checked(),
                "signatures": 1,
                "out": out.display().to_string(),
            }))
        }
        ContractCommand::Countersign { half, key, out } => {
            let key = files::read_key(&key)?;
            let full = contract::countersign(&key, &files::read(&half)?).map_err(named(&half))?;
            let a = contract::verify_agreement(&full)?;
            files::write(&out, &full, files::PUBLIC_MODE)?;
            output::print(&json!({
                "agreement_id": a.id().to_string(),
                "provider": a.terms().provider.to_string(),
                "consumer": a.terms().consumer.to_string(),
                "signatures": 2,
                "out": out.display().to_string(),
            }))
        }
    }
}

pub(crate) fn agreement(c: AgreementCommand) -> anyhow::Result<()> {
    let agreement = match c {
        AgreementCommand::Verify { agreement } => agreement,
        AgreementCommand::Terminate(a) => return crate::node::verbs::terminate(a),
    };
    let a = contract::verify_agreement(&files::read(&agreement)?).map_err(named(&agreement))?;
    let t = a.terms();
    let mut terms = Map::new();
    terms.insert("offer_id".into(), json!(t.offer.to_string()));
    terms.insert("request_id".into(), json!(t.request.to_string()));
    terms.insert("asset".into(), json!(t.asset.as_str()));
    terms.insert("purpose".into(), json!(t.purpose.as_str()));
    terms.insert("policy".into(), json!(tds_policy::format(&t.policy)));
    terms.insert(
        "offer_policy".into(),
        json!(tds_policy::format(&t.offer_policy)),
    );
    terms.insert(
        "price".into(),
        t.price.as_ref().map_or(
            Json::Null,
            |p| json!({"amount": p.amount.to_string(), "currency": p.currency.as_str()}),
        ),
    );
    time(&mut terms, "agreed_at", t.agreed_at);
    output::print(&json!({
        "agreement_id": a.id().to_string(),
        "provider": t.provider.to_string(),
        "provider_key": t.provider_key.to_hex(),
        "consumer": t.consumer.to_string(),
        "consumer_key": t.consumer_key.to_hex(),
        "terms": terms,
        "signatures_checked": 2,
    }))
}
