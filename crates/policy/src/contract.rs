//! Offers, contract requests, agreements signed by both parties, and termination notices.
//!
//! ```text
//! provider: Offer            --COSE_Sign1-->  consumer
//! consumer: ContractRequest  --COSE_Sign1-->  provider   (nonce, time, requested policy)
//! provider: AgreementTerms   --COSE_Sign (provider)--> consumer
//! consumer: countersigns     --COSE_Sign (provider, consumer)--> both: the agreement
//! ```
//!
//! Every object names its signer's participant id and public key, so a verifier needs
//! nothing else; a signature counts only if the key is the named party's
//! (`id == tds/participant/v1 hash of the key`). The agreement id is the
//! `tds/agreement/v1` hash of the canonical terms, so it does not depend on who signed
//! first or on signature bytes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;
use tds_core::cose::{self, CoseError, SignedObject};
use tds_core::rand::RandomSource;
use tds_core::{Domain, Hash256, PublicKey, SigningKey, Timestamp};

use crate::contain::{contains, Containment};
use crate::error::PolicyError;
use crate::eval::Request;
use crate::model::*;

/// How far in the future a request's time may lie (clock skew), in milliseconds.
pub const MAX_FUTURE_SKEW_MS: u64 = 5 * 60 * 1000;
/// How old a contract request may be when it is accepted, in milliseconds. Nonces older
/// than this can be forgotten by a [`NonceStore`].
pub const MAX_REQUEST_AGE_MS: u64 = 24 * 60 * 60 * 1000;

/// Why a contract object was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// Envelope or signature problem.
    #[error(transparent)]
    Cose(#[from] CoseError),
    /// Policy problem.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The key that signed is not the party's.
    #[error("{what}: signed by key {found}, but the {what} names {expected}")]
    WrongSigner {
        /// Which object.
        what: &'static str,
        /// The party id named in the object.
        expected: Hash256,
        /// The id of the key that signed.
        found: Hash256,
    },
    /// The offer is not valid at this time.
    #[error("offer: valid from {not_before} until {not_after}, but it is {now}")]
    OfferNotValid {
        /// Start of validity.
        not_before: Timestamp,
        /// End of validity.
        not_after: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The request names another offer.
    #[error("request: names offer {found}, not {expected}")]
    OfferMismatch {
        /// The offer at hand.
        expected: Hash256,
        /// The offer the request names.
        found: Hash256,
    },
    /// The requested policy allows more than the offer.
    #[error("request: the requested policy is not contained in the offer; for example this request would be permitted: {0}")]
    NotContained(String),
    /// The nonce was seen before.
    #[error("request: nonce already used (replayed request)")]
    NonceReused,
    /// The request's time is outside the accepted window.
    #[error("request: time {time} is outside the accepted window around {now}")]
    StaleRequest {
        /// The request's time.
        time: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// A field that is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// A price: amount and currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// The amount.
    pub amount: Amount,
    /// The currency.
    pub currency: Currency,
}

/// An offer: an asset under a policy, signed by its provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The asset (usually a manifest id).
    pub asset: Text,
    /// The provider's participant id.
    pub provider: Hash256,
    /// The provider's public key.
    pub provider_key: PublicKey,
    /// The usage policy.
    pub policy: Policy,
    /// The price, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// Valid from.
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
}

impl SignedObject for Offer {
    const CONTENT_TYPE: &'static str = "application/tds.offer+cbor";
}

/// A consumer's request to contract on an offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractRequest {
    /// The offer's id.
    pub offer: Hash256,
    /// The consumer's participant id.
    pub consumer: Hash256,
    /// The consumer's public key.
    pub consumer_key: PublicKey,
    /// The policy the consumer asks for; must be contained in the offer's.
    pub policy: Policy,
    /// The declared purpose.
    pub purpose: Purpose,
    /// A fresh random value, so a request cannot be replayed.
    pub nonce: ByteArray<16>,
    /// When the request was made.
    pub time: Timestamp,
}

impl SignedObject for ContractRequest {
    const CONTENT_TYPE: &'static str = "application/tds.request+cbor";
}

/// The agreed terms, signed by both parties as one COSE_Sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementTerms {
    /// The offer's id.
    pub offer: Hash256,
    /// The request's id.
    pub request: Hash256,
    /// The asset.
    pub asset: Text,
    /// The provider's participant id.
    pub provider: Hash256,
    /// The provider's public key.
    pub provider_key: PublicKey,
    /// The consumer's participant id.
    pub consumer: Hash256,
    /// The consumer's public key.
    pub consumer_key: PublicKey,
    /// The offer's policy (still binding: a use must be permitted by both).
    pub offer_policy: Policy,
    /// The agreed policy (the consumer's request, contained in the offer's).
    pub policy: Policy,
    /// The declared purpose.
    pub purpose: Purpose,
    /// The price, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// When the provider accepted.
    pub agreed_at: Timestamp,
}

impl SignedObject for AgreementTerms {
    const CONTENT_TYPE: &'static str = "application/tds.agreement+cbor";
}

impl AgreementTerms {
    /// The agreement id: `tds/agreement/v1` hash of the canonical terms.
    pub fn id(&self) -> Result<Hash256, PolicyError> {
        Ok(Domain::AGREEMENT.hash(&tds_core::cbor::encode(self)?))
    }

    /// Decides a use under the agreement: both the agreed and the offer's policy must
    /// permit it; the duties of both apply.
    pub fn evaluate(&self, req: &Request) -> crate::eval::Decision {
        let mut a = crate::eval::evaluate(&self.policy, req);
        let o = crate::eval::evaluate(&self.offer_policy, req);
        if a.effect == crate::eval::Effect::Permit && o.effect != crate::eval::Effect::Permit {
            a.effect = o.effect;
            a.duties.clear();
        } else if a.effect == crate::eval::Effect::Permit {
            for d in o.duties {
                if !a.duties.contains(&d) {
                    a.duties.push(d);
                }
            }
        }
        a.reasons
            .extend(o.reasons.into_iter().map(|r| format!("offer: {r}")));
        a
    }
}

/// A notice that one party ends an agreement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termination {
    /// The agreement.
    pub agreement: Hash256,
    /// The terminating party's participant id.
    pub party: Hash256,
    /// The terminating party's public key.
    pub party_key: PublicKey,
    /// When it takes effect.
    pub time: Timestamp,
    /// Why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

impl SignedObject for Termination {
    const CONTENT_TYPE: &'static str = "application/tds.termination+cbor";
}

/// Remembers the nonces of accepted requests so none is accepted twice.
pub trait NonceStore {
    /// Records `nonce` from `consumer` seen at `time`; `false` if it was seen before.
    fn insert(&mut self, consumer: &Hash256, nonce: &[u8; 16], time: Timestamp) -> bool;
}

/// A [`NonceStore`] in memory. Call [`MemoryNonceStore::forget_before`] now and then:
/// requests older than [`MAX_REQUEST_AGE_MS`] are refused anyway.
#[derive(Debug, Default)]
pub struct MemoryNonceStore {
    seen: HashMap<(Hash256, [u8; 16]), Timestamp>,
}

impl MemoryNonceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets nonces recorded before `t`.
    pub fn forget_before(&mut self, t: Timestamp) {
        self.seen.retain(|_, at| *at >= t);
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

impl NonceStore for MemoryNonceStore {
    fn insert(&mut self, consumer: &Hash256, nonce: &[u8; 16], time: Timestamp) -> bool {
        self.seen.insert((*consumer, *nonce), time).is_none()
    }
}

/// A nonce store that remembers nothing, for the offline CLI (which cannot keep state
/// between runs; replay protection is the connector's job).
#[derive(Debug, Default)]
pub struct NoNonceStore;

impl NonceStore for NoNonceStore {
    fn insert(&mut self, _: &Hash256, _: &[u8; 16], _: Timestamp) -> bool {
        true
    }
}

/// A fresh random nonce from `source` (a node passes
/// [`tds_core::rand::SystemRandom`]; a simulation a seeded source).
pub fn random_nonce(source: &dyn RandomSource) -> Result<[u8; 16], ContractError> {
    tds_core::rand::random_array(source)
        .map_err(|_| ContractError::Invalid("no randomness available for a nonce".into()))
}

fn check_signer(what: &'static str, named: Hash256, key: &PublicKey) -> Result<(), ContractError> {
    if key.id() != named {
        return Err(ContractError::WrongSigner {
            what,
            expected: named,
            found: key.id(),
        });
    }
    Ok(())
}

/// An offer whose provider signature has been checked. Only [`verify_offer`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedOffer {
    offer: Offer,
    id: Hash256,
    envelope: Vec<u8>,
}

impl VerifiedOffer {
    /// The offer.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// The offer id (`tds/offer/v1` hash of the canonical offer).
    pub fn id(&self) -> Hash256 {
        self.id
    }

    /// The signed envelope.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// Checks that the offer is valid at `now`.
    pub fn check_valid_at(&self, now: Timestamp) -> Result<(), ContractError> {
        if now < self.offer.not_before || now > self.offer.not_after {
            return Err(ContractError::OfferNotValid {
                not_before: self.offer.not_before,
                not_after: self.offer.not_after,
                now,
            });
        }
        Ok(())
    }
}

/// Signs an offer with the provider's key (the offer must name that key).
pub fn create_offer(key: &SigningKey, offer: &Offer) -> Result<Vec<u8>, ContractError> {
    offer.policy.validate()?;
    check_signer("offer", offer.provider, &key.public_key())?;
    if offer.provider_key != key.public_key() {
        return Err(ContractError::Invalid(
            "offer: provider_key is not the signing key".into(),
        ));
    }
    if offer.not_after < offer.not_before {
        return Err(ContractError::Invalid(
            "offer: not_after is before not_before".into(),
        ));
    }
    Ok(cose::sign(key, offer)?)
}

/// Verifies an offer's envelope and its provider's signature.
pub fn verify_offer(bytes: &[u8]) -> Result<VerifiedOffer, ContractError> {
    let opened = cose::open::<Offer>(bytes)?;
    let key = opened.value().provider_key;
    check_signer("offer", opened.value().provider, &key)?;
    let v = opened.verify(&key)?;
    v.value().policy.validate()?;
    let id = Domain::OFFER.hash(v.payload());
    Ok(VerifiedOffer {
        id,
        envelope: v.envelope().to_vec(),
        offer: v.into_value(),
    })
}

/// The request policy to use when the consumer does not write one: the offer's policy
/// with every permission narrowed to the declared purpose.
pub fn narrow_to_purpose(policy: &Policy, purpose: &Purpose) -> Policy {
    let mut p = policy.clone();
    let c = Constraint::atom(
        Operand::Purpose,
        Operator::IsA,
        Value::Purpose(purpose.clone()),
    );
    for r in &mut p.rules {
        if r.kind == RuleKind::Permission {
            r.constraint = Some(match r.constraint.take() {
                None => c.clone(),
                Some(Constraint::Logical {
                    op: LogicalOp::And,
                    mut items,
                }) if items.len() < MAX_LIST => {
                    items.push(c.clone());
                    Constraint::Logical {
                        op: LogicalOp::And,
                        items,
                    }
                }
                Some(old) => Constraint::Logical {
                    op: LogicalOp::And,
                    items: vec![old, c.clone()],
                },
            });
        }
    }
    p.kind = PolicyKind::Set;
    p
}

/// Signs a contract request with the consumer's key.
pub fn create_request(
    key: &SigningKey,
    request: &ContractRequest,
) -> Result<Vec<u8>, ContractError> {
    request.policy.validate()?;
    check_signer("request", request.consumer, &key.public_key())?;
    if request.consumer_key != key.public_key() {
        return Err(ContractError::Invalid(
            "request: consumer_key is not the signing key".into(),
        ));
    }
    Ok(cose::sign(key, request)?)
}

/// A contract request that passed every check of [`verify_request`].
#[derive(Clone, Debug)]
pub struct VerifiedRequest {
    request: ContractRequest,
    id: Hash256,
}

impl VerifiedRequest {
    /// The request.
    pub fn request(&self) -> &ContractRequest {
        &self.request
    }

    /// The request id (`tds/request/v1` hash of the canonical request).
    pub fn id(&self) -> Hash256 {
        self.id
    }
}

/// Verifies a contract request against its offer at `now`: the consumer's signature,
/// the offer id, the offer's validity, the request's age, containment of the requested
/// policy in the offer's, and a fresh nonce (recorded in `nonces` last, only when every
/// other check passed).
pub fn verify_request(
    bytes: &[u8],
    offer: &VerifiedOffer,
    now: Timestamp,
    nonces: &mut dyn NonceStore,
) -> Result<VerifiedRequest, ContractError> {
    let opened = cose::open::<ContractRequest>(bytes)?;
    let key = opened.value().consumer_key;
    check_signer("request", opened.value().consumer, &key)?;
    let v = opened.verify(&key)?;
    let id = Domain::REQUEST.hash(v.payload());
    let req = v.into_value();
    req.policy.validate()?;
    if req.offer != offer.id() {
        return Err(ContractError::OfferMismatch {
            expected: offer.id(),
            found: req.offer,
        });
    }
    offer.check_valid_at(now)?;
    if req.time > now.saturating_add_millis(MAX_FUTURE_SKEW_MS)
        || now.millis_since(req.time) > MAX_REQUEST_AGE_MS
    {
        return Err(ContractError::StaleRequest {
            time: req.time,
            now,
        });
    }
    match contains(&offer.offer().policy, &req.policy)? {
        Containment::Contained => {}
        Containment::NotContained(r) => {
            return Err(ContractError::NotContained(
                serde_json::to_string(&crate::json::request_to_json(&r)).unwrap_or_default(),
            ))
        }
    }
    if !nonces.insert(&req.consumer, &req.nonce, req.time) {
        return Err(ContractError::NonceReused);
    }
    Ok(VerifiedRequest { request: req, id })
}

/// The provider accepts a verified request: builds the terms and signs them (the first
/// of the two signatures of the agreement's COSE_Sign).
pub fn accept(
    key: &SigningKey,
    offer: &VerifiedOffer,
    request: &VerifiedRequest,
    now: Timestamp,
) -> Result<Vec<u8>, ContractError> {
    let o = offer.offer();
    check_signer("offer", o.provider, &key.public_key())?;
    let r = request.request();
    let terms = AgreementTerms {
        offer: offer.id(),
        request: request.id(),
        asset: o.asset.clone(),
        provider: o.provider,
        provider_key: o.provider_key,
        consumer: r.consumer,
        consumer_key: r.consumer_key,
        offer_policy: o.policy.clone(),
        policy: r.policy.clone(),
        purpose: r.purpose.clone(),
        price: o.price.clone(),
        agreed_at: now,
    };
    Ok(cose::sign_multi(&[key], &terms)?)
}

/// The consumer countersigns the provider-signed terms, after checking the provider's
/// signature and that the terms name this consumer.
pub fn countersign(key: &SigningKey, half: &[u8]) -> Result<Vec<u8>, ContractError> {
    let opened = cose::open_multi::<AgreementTerms>(half)?;
    let terms = opened.value().clone();
    check_signer("agreement", terms.provider, &terms.provider_key)?;
    check_signer("agreement", terms.consumer, &key.public_key())?;
    if terms.consumer_key != key.public_key() {
        return Err(ContractError::Invalid(
            "agreement: consumer_key is not the signing key".into(),
        ));
    }
    opened.verify(&[terms.provider_key])?;
    Ok(cose::add_signature::<AgreementTerms>(half, key)?)
}

/// An agreement whose two signatures (provider and consumer) have been checked. Only
/// [`verify_agreement`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedAgreement {
    terms: AgreementTerms,
    id: Hash256,
    envelope: Vec<u8>,
}

impl VerifiedAgreement {
    /// The terms.
    pub fn terms(&self) -> &AgreementTerms {
        &self.terms
    }

    /// The agreement id.
    pub fn id(&self) -> Hash256 {
        self.id
    }

    /// The signed envelope.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }
}

/// Verifies an agreement: a COSE_Sign of the terms carrying exactly the provider's and
/// the consumer's signatures, by the keys the terms name.
pub fn verify_agreement(bytes: &[u8]) -> Result<VerifiedAgreement, ContractError> {
    let opened = cose::open_multi::<AgreementTerms>(bytes)?;
    let terms = opened.value().clone();
    check_signer("agreement", terms.provider, &terms.provider_key)?;
    check_signer("agreement", terms.consumer, &terms.consumer_key)?;
    if terms.provider == terms.consumer {
        return Err(ContractError::Invalid(
            "agreement: provider and consumer are the same participant".into(),
        ));
    }
    terms.policy.validate()?;
    terms.offer_policy.validate()?;
    let v = opened.verify(&[terms.provider_key, terms.consumer_key])?;
    let id = Domain::AGREEMENT.hash(v.payload());
    Ok(VerifiedAgreement {
        id,
        envelope: v.envelope().to_vec(),
        terms: v.into_value(),
    })
}

/// Signs a termination notice by one party of a verified agreement.
pub fn terminate(
    key: &SigningKey,
    agreement: &VerifiedAgreement,
    time: Timestamp,
    reason: Option<Text>,
) -> Result<Vec<u8>, ContractError> {
    let t = agreement.terms();
    let me = key.id();
    if me != t.provider && me != t.consumer {
        return Err(ContractError::Invalid(format!(
            "termination: {me} is not a party to the agreement"
        )));
    }
    Ok(cose::sign(
        key,
        &Termination {
            agreement: agreement.id(),
            party: me,
            party_key: key.public_key(),
            time,
            reason,
        },
    )?)
}

/// Verifies a termination notice for `agreement`: signed by one of its parties.
pub fn verify_termination(
    bytes: &[u8],
    agreement: &VerifiedAgreement,
) -> Result<Termination, ContractError> {
    let opened = cose::open::<Termination>(bytes)?;
    let n = opened.value().clone();
    check_signer("termination", n.party, &n.party_key)?;
    let t = agreement.terms();
    let party_key = if n.party == t.provider {
        t.provider_key
    } else if n.party == t.consumer {
        t.consumer_key
    } else {
        return Err(ContractError::Invalid(format!(
            "termination: {} is not a party to the agreement",
            n.party
        )));
    };
    if n.agreement != agreement.id() {
        return Err(ContractError::Invalid(
            "termination: names another agreement".into(),
        ));
    }
    Ok(opened.verify(&party_key)?.into_value())
}
