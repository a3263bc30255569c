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
use std::fmt;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteArray;
use tds_core::cose::{self, CoseError, SignedObject};
use tds_core::rand::RandomSource;
use tds_core::{Domain, ErrorCode, Hash256, PublicKey, Signer, Timestamp};
use tds_identity::{Role, VerifiedCredential};

use crate::compiled::CompiledPolicy;
use crate::contain::{contains_within, Budget, Containment};
use crate::error::{ContainmentLimit, PolicyError};
use crate::eval::{Decision, Effect, Request};
use crate::model::*;

/// How far in the future a request's time may lie (clock skew), in milliseconds.
pub const MAX_FUTURE_SKEW_MS: u64 = 5 * 60 * 1000;
/// How old a contract request may be when it is accepted, in milliseconds. Nonces older
/// than this can be forgotten by a [`NonceStore`].
pub const MAX_REQUEST_AGE_MS: u64 = 24 * 60 * 60 * 1000;
/// How far a contract request's time may lie from the verifier's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// How far in the future a request's time may lie (clock skew), in milliseconds.
    pub max_future_skew_ms: u64,
    /// How old a request may be, in milliseconds.
    pub max_age_ms: u64,
}

impl Freshness {
    /// What [`verify_request`] allows: [`MAX_FUTURE_SKEW_MS`] ahead, [`MAX_REQUEST_AGE_MS`]
    /// old (a request signed offline and carried by hand may take a day).
    pub const OFFLINE: Freshness = Freshness {
        max_future_skew_ms: MAX_FUTURE_SKEW_MS,
        max_age_ms: MAX_REQUEST_AGE_MS,
    };

    /// A leeway of `ms` either way: what an online negotiation allows.
    pub const fn leeway(ms: u64) -> Freshness {
        Freshness {
            max_future_skew_ms: ms,
            max_age_ms: ms,
        }
    }

    /// Whether a request made at `time` is fresh at `now`.
    pub fn is_fresh(&self, time: Timestamp, now: Timestamp) -> bool {
        time <= now.saturating_add_millis(self.max_future_skew_ms)
            && now.millis_since(time) <= self.max_age_ms
    }
}

/// The containment work one contract request may cost its verifier, in the units of
/// [`crate::contain::Budget`] (its containment in the offer and its purpose check
/// together). About a tenth of a second of one core here; realistic requests need a few
/// thousand units.
pub const REQUEST_BUDGET: u64 = 10_000_000;

/// The kind of contract object an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContractObject {
    /// An [`Offer`].
    Offer,
    /// A [`ContractRequest`].
    Request,
    /// [`AgreementTerms`] (half or fully signed).
    Agreement,
    /// A [`Termination`].
    Termination,
}

impl fmt::Display for ContractObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContractObject::Offer => "offer",
            ContractObject::Request => "request",
            ContractObject::Agreement => "agreement",
            ContractObject::Termination => "termination",
        })
    }
}

/// Why a contract object was refused. Every variant has a stable code
/// ([`ErrorCode`]); `spec/policy.md` §9 lists them.
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
        what: ContractObject,
        /// The party id named in the object.
        expected: Hash256,
        /// The id of the key that signed.
        found: Hash256,
    },
    /// The object names the signer's id but another public key.
    #[error("{what}: {field} is not the signing key")]
    KeyMismatch {
        /// Which object.
        what: ContractObject,
        /// The key field (`provider_key`, `consumer_key`).
        field: &'static str,
    },
    /// An offer whose validity ends before it begins.
    #[error("offer: not_after {not_after} is before not_before {not_before}")]
    EmptyValidity {
        /// Start of validity.
        not_before: Timestamp,
        /// End of validity.
        not_after: Timestamp,
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
    /// The consumer's credential is for another key.
    #[error("request: the credential is for {subject}, but the request is from {consumer}")]
    CredentialMismatch {
        /// The credential's subject.
        subject: Hash256,
        /// The consumer the request names.
        consumer: Hash256,
    },
    /// The consumer's credential does not hold the consumer role.
    #[error("request: the credential of {subject} does not hold the consumer role")]
    NotAConsumer {
        /// The credential's subject.
        subject: Hash256,
    },
    /// The consumer's credential is not valid at the time of the check.
    #[error("request: the consumer's credential is valid from {not_before} until {not_after}, but it is {now}")]
    CredentialNotValid {
        /// Start of validity.
        not_before: Timestamp,
        /// End of validity.
        not_after: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The requested policy allows more than the offer: this request is an example.
    #[error("request: the requested policy is not contained in the offer; for example this request would be permitted: {}", crate::json::request_to_json(.0))]
    NotContained(Box<Request>),
    /// The requested policy permits uses beyond the declared purpose.
    #[error("request: the requested policy permits uses beyond the declared purpose {purpose}; for example: {}", crate::json::request_to_json(.example))]
    PurposeNotCovered {
        /// The declared purpose.
        purpose: Purpose,
        /// A request the policy permits whose purpose is not within it.
        example: Box<Request>,
    },
    /// The offer permits nothing for the declared purpose: every permission of the offer
    /// asks for a purpose the declared one is not within.
    #[error("request: the offer permits no use for the purpose {0}")]
    PurposeNotOffered(Purpose),
    /// Checking the request would cost more than [`REQUEST_BUDGET`] (or the policies name
    /// more roles than containment splits); refused without an answer.
    #[error("request: the requested policy cannot be checked against the offer within the limits")]
    TooComplex(#[source] ContainmentLimit),
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
    /// An agreement whose two parties are one.
    #[error("agreement: provider and consumer are the same participant {party}")]
    SameParty {
        /// The participant.
        party: Hash256,
    },
    /// An agreement not signed first by the provider, then by the consumer.
    #[error(
        "agreement: signed in the order {found:?}; the provider signs first, then the consumer"
    )]
    SignatureOrder {
        /// The signers' ids, in the order found.
        found: Vec<Hash256>,
    },
    /// A termination by (or for) someone who is not a party to the agreement.
    #[error("{what}: {party} is not a party to the agreement")]
    NotAParty {
        /// Which object.
        what: ContractObject,
        /// The participant.
        party: Hash256,
    },
    /// A termination of another agreement.
    #[error("termination: names agreement {found}, not {expected}")]
    OtherAgreement {
        /// The agreement at hand.
        expected: Hash256,
        /// The agreement the termination names.
        found: Hash256,
    },
    /// The random source failed.
    #[error("request: no randomness available for a nonce")]
    NoRandomness,
}

impl ErrorCode for ContractError {
    fn code(&self) -> &'static str {
        match self {
            // tds-core's codes (`cose.*`, `cbor.*`): one vocabulary for every envelope.
            ContractError::Cose(e) => e.code(),
            ContractError::Policy(e) => e.code(),
            ContractError::WrongSigner { .. } => "contract.wrong_signer",
            ContractError::KeyMismatch { .. } => "contract.key_mismatch",
            ContractError::EmptyValidity { .. } => "contract.empty_validity",
            ContractError::OfferNotValid { .. } => "contract.offer_not_valid",
            ContractError::OfferMismatch { .. } => "contract.offer_mismatch",
            ContractError::CredentialMismatch { .. } => "contract.credential_mismatch",
            ContractError::NotAConsumer { .. } => "contract.not_consumer",
            ContractError::CredentialNotValid { .. } => "contract.credential_not_valid",
            ContractError::NotContained(_) => "contract.not_contained",
            ContractError::PurposeNotCovered { .. } => "contract.purpose_not_covered",
            ContractError::PurposeNotOffered(_) => "contract.purpose_not_offered",
            ContractError::TooComplex(_) => "contract.too_complex",
            ContractError::NonceReused => "contract.nonce_reused",
            ContractError::StaleRequest { .. } => "contract.stale_request",
            ContractError::SameParty { .. } => "contract.same_party",
            ContractError::SignatureOrder { .. } => "contract.signature_order",
            ContractError::NotAParty { .. } => "contract.not_a_party",
            ContractError::OtherAgreement { .. } => "contract.other_agreement",
            ContractError::NoRandomness => "contract.no_randomness",
        }
    }
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
    /// For an operator's offer of public data: the authority's signed licence
    /// ([`crate::licence`]) the offer is made under, embedded so the offer proves its
    /// chain by itself. Absent (and not encoded) otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub licence: Option<Vec<u8>>,
}

impl SignedObject for Offer {
    const CONTENT_TYPE: &'static str = "application/tds.offer+cbor";
}

impl Offer {
    /// The offer id: `tds/offer/v1` hash of the canonical offer.
    pub fn id(&self) -> Result<Hash256, PolicyError> {
        Ok(Domain::OFFER.hash(&tds_core::cbor::encode(self)?))
    }
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
    /// The declared purpose; the requested policy permits nothing beyond it.
    pub purpose: Purpose,
    /// A fresh random value, so a request cannot be replayed.
    pub nonce: ByteArray<16>,
    /// When the request was made.
    pub time: Timestamp,
}

impl SignedObject for ContractRequest {
    const CONTENT_TYPE: &'static str = "application/tds.request+cbor";
}

impl ContractRequest {
    /// The request id: `tds/request/v1` hash of the canonical request (what
    /// [`VerifiedRequest::id`] and the agreement's `request` field hold).
    pub fn id(&self) -> Result<Hash256, PolicyError> {
        Ok(Domain::REQUEST.hash(&tds_core::cbor::encode(self)?))
    }
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

    /// Decides a use under the agreement with the reference interpreter, explaining it:
    /// both the agreed and the offer's policy must permit it; the duties of both apply.
    /// The reasons about the offer's policy are marked ([`crate::eval::Reason::offer`]).
    /// [`VerifiedAgreement::decide`] reaches the same decision with the compiled engine.
    pub fn evaluate(&self, req: &Request) -> Decision {
        let mut a = crate::eval::evaluate(&self.policy, req);
        let o = crate::eval::evaluate(&self.offer_policy, req);
        if a.effect == Effect::Permit && o.effect != Effect::Permit {
            a.effect = o.effect;
            a.duties.clear();
        } else if a.effect == Effect::Permit {
            for d in o.duties {
                if !a.duties.contains(&d) {
                    a.duties.push(d);
                }
            }
        }
        a.reasons.extend(o.reasons.into_iter().map(|mut r| {
            r.offer = true;
            r
        }));
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

/// Remembers the nonces of accepted requests so none is accepted twice. Shared by the
/// threads or tasks of a negotiator (`&self`, `Send + Sync`).
pub trait NonceStore: Send + Sync {
    /// Records `nonce` from `consumer` seen at `time`; `false` if it was seen before. A
    /// store that cannot tell (its storage failed) answers `false`: refusing a fresh
    /// request is safe, accepting a replay is not.
    fn insert(&self, consumer: &Hash256, nonce: &[u8; 16], time: Timestamp) -> bool;
}

/// A [`NonceStore`] in memory. Call [`MemoryNonceStore::forget_before`] now and then:
/// requests older than [`MAX_REQUEST_AGE_MS`] are refused anyway.
#[derive(Debug, Default)]
pub struct MemoryNonceStore {
    seen: Mutex<HashMap<(Hash256, [u8; 16]), Timestamp>>,
}

impl MemoryNonceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    // A panic while the lock was held cannot leave the map half-changed (each change is
    // one insert or retain), so a poisoned lock is used as it is.
    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<(Hash256, [u8; 16]), Timestamp>> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets nonces recorded before `t`.
    pub fn forget_before(&self, t: Timestamp) {
        self.seen().retain(|_, at| *at >= t);
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.seen().len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen().is_empty()
    }
}

impl NonceStore for MemoryNonceStore {
    fn insert(&self, consumer: &Hash256, nonce: &[u8; 16], time: Timestamp) -> bool {
        self.seen().insert((*consumer, *nonce), time).is_none()
    }
}

/// Options that weaken the contract checks (as rustls' `client::danger`): for offline
/// tools that cannot keep state, and say so.
pub mod danger {
    use super::*;

    /// A nonce store that remembers nothing, so a replayed request is accepted again.
    /// Only for the offline CLI, which cannot keep state between runs; a negotiator
    /// keeps a real [`NonceStore`] (replay protection is its job).
    #[derive(Debug)]
    pub struct NoNonceStore(());

    impl NoNonceStore {
        /// A store that accepts every nonce, replays included.
        pub fn accepting_replays() -> NoNonceStore {
            NoNonceStore(())
        }
    }

    impl NonceStore for NoNonceStore {
        fn insert(&self, _: &Hash256, _: &[u8; 16], _: Timestamp) -> bool {
            true
        }
    }
}

/// A fresh random nonce from `source` (a node passes
/// [`tds_core::rand::SystemRandom`]; a simulation a seeded source).
pub fn random_nonce(source: &dyn RandomSource) -> Result<[u8; 16], ContractError> {
    tds_core::rand::random_array(source).map_err(|_| ContractError::NoRandomness)
}

fn check_signer(
    what: ContractObject,
    named: Hash256,
    key: &PublicKey,
) -> Result<(), ContractError> {
    if key.id() != named {
        return Err(ContractError::WrongSigner {
            what,
            expected: named,
            found: key.id(),
        });
    }
    Ok(())
}

/// An offer whose provider signature has been checked, with its policy compiled. Only
/// [`verify_offer`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedOffer {
    offer: Offer,
    policy: CompiledPolicy,
    id: Hash256,
    envelope: Vec<u8>,
}

impl VerifiedOffer {
    /// The offer.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// The offer's policy, compiled (and so valid).
    pub fn policy(&self) -> &CompiledPolicy {
        &self.policy
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
pub fn create_offer(key: &dyn Signer, offer: &Offer) -> Result<Vec<u8>, ContractError> {
    offer.policy.validate()?;
    check_signer(ContractObject::Offer, offer.provider, &key.public_key())?;
    if offer.provider_key != key.public_key() {
        return Err(ContractError::KeyMismatch {
            what: ContractObject::Offer,
            field: "provider_key",
        });
    }
    if offer.not_after < offer.not_before {
        return Err(ContractError::EmptyValidity {
            not_before: offer.not_before,
            not_after: offer.not_after,
        });
    }
    Ok(cose::sign(key, offer)?)
}

/// Verifies an offer's envelope and its provider's signature, and compiles its policy.
pub fn verify_offer(bytes: &[u8]) -> Result<VerifiedOffer, ContractError> {
    let opened = cose::open::<Offer>(bytes)?;
    let key = opened.value().provider_key;
    check_signer(ContractObject::Offer, opened.value().provider, &key)?;
    let v = opened.verify(&key)?;
    let id = Domain::OFFER.hash(v.payload());
    let envelope = v.envelope().to_vec();
    let offer = v.into_value();
    let policy = offer.policy.validate()?;
    Ok(VerifiedOffer {
        id,
        envelope,
        policy,
        offer,
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

/// The policy that permits every action for `purpose` and nothing else: a requested
/// policy covered by the purpose is contained in it.
fn purpose_policy(purpose: &Purpose) -> Policy {
    let when = Constraint::atom(
        Operand::Purpose,
        Operator::IsA,
        Value::Purpose(purpose.clone()),
    );
    Policy {
        rules: Action::ALL
            .iter()
            .map(|a| Rule {
                constraint: Some(when.clone()),
                ..Rule::new(RuleKind::Permission, *a)
            })
            .collect(),
        ..Policy::default()
    }
}

/// Signs a contract request with the consumer's key.
pub fn create_request(
    key: &dyn Signer,
    request: &ContractRequest,
) -> Result<Vec<u8>, ContractError> {
    request.policy.validate()?;
    check_signer(ContractObject::Request, request.consumer, &key.public_key())?;
    if request.consumer_key != key.public_key() {
        return Err(ContractError::KeyMismatch {
            what: ContractObject::Request,
            field: "consumer_key",
        });
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

/// Checks that the requested policy is contained in the offer's and permits nothing
/// beyond the declared purpose, drawing on `budget` for both.
pub fn check_request_policy(
    offer: &Policy,
    asked: &Policy,
    purpose: &Purpose,
    budget: &mut Budget,
) -> Result<(), ContractError> {
    let limited = |e: PolicyError| match e {
        PolicyError::TooComplex(limit) => ContractError::TooComplex(limit),
        e => ContractError::Policy(e),
    };
    if !admits_purpose(offer, purpose) {
        return Err(ContractError::PurposeNotOffered(purpose.clone()));
    }
    if let Containment::NotContained(r) = contains_within(offer, asked, budget).map_err(limited)? {
        return Err(ContractError::NotContained(r));
    }
    if let Containment::NotContained(example) =
        contains_within(&purpose_policy(purpose), asked, budget).map_err(limited)?
    {
        return Err(ContractError::PurposeNotCovered {
            purpose: purpose.clone(),
            example,
        });
    }
    Ok(())
}

/// Whether some permission of `policy` can apply to a use for `purpose`: it names no
/// purpose condition, or one of its `purpose eq / isA / isAnyOf` values covers `purpose`.
/// A request for a purpose no permission covers would make an agreement that permits
/// nothing (the narrowed policy is contained in anything), so it is refused up front.
fn admits_purpose(policy: &Policy, purpose: &Purpose) -> bool {
    use crate::model::{Operand, Operator, Value};
    policy.permissions().any(|rule| {
        let Some(c) = &rule.constraint else {
            return true;
        };
        let mut named = false;
        let mut covered = false;
        c.for_each_atom(&mut |operand, operator, value| {
            if operand != Operand::Purpose {
                return;
            }
            let values: Vec<&Value> = match value {
                Value::List(items) => items.iter().collect(),
                v => vec![v],
            };
            match operator {
                Operator::Eq | Operator::IsA | Operator::IsAnyOf => {
                    named = true;
                    covered |= values
                        .iter()
                        .any(|v| matches!(v, Value::Purpose(p) if purpose.is_within(p)));
                }
                _ => {}
            }
        });
        !named || covered
    })
}

/// Verifies a contract request against its offer at `now`, cheapest checks first, so a
/// request costs its verifier little before it is known to come from a member:
///
/// 1. the envelope, and that `consumer` (a credential the caller verified with its trust
///    store) is the named consumer's (subject key = `consumer_key`), holds the consumer
///    role and is valid at `now`;
/// 2. the consumer's signature, the offer id, the offer's validity, the request's age;
/// 3. the requested policy is valid, contained in the offer's and permits nothing beyond
///    the declared purpose, within [`REQUEST_BUDGET`] units of containment work;
/// 4. a fresh nonce (recorded in `nonces` last, only when every other check passed).
pub fn verify_request(
    bytes: &[u8],
    offer: &VerifiedOffer,
    consumer: &VerifiedCredential,
    now: Timestamp,
    nonces: &dyn NonceStore,
) -> Result<VerifiedRequest, ContractError> {
    verify_request_with(bytes, offer, consumer, now, nonces, &Freshness::OFFLINE)
}

/// [`verify_request`] with the request's allowed age and clock skew given by `freshness`
/// (the connector protocol allows a few minutes either way).
pub fn verify_request_with(
    bytes: &[u8],
    offer: &VerifiedOffer,
    consumer: &VerifiedCredential,
    now: Timestamp,
    nonces: &dyn NonceStore,
    freshness: &Freshness,
) -> Result<VerifiedRequest, ContractError> {
    let opened = cose::open::<ContractRequest>(bytes)?;
    let named = opened.value();
    if *consumer.subject_key() != named.consumer_key
        || *consumer.subject().as_hash() != named.consumer
    {
        return Err(ContractError::CredentialMismatch {
            subject: *consumer.subject().as_hash(),
            consumer: named.consumer,
        });
    }
    if !consumer.has_role(Role::Consumer) {
        return Err(ContractError::NotAConsumer {
            subject: *consumer.subject().as_hash(),
        });
    }
    if !consumer.is_valid_at(now) {
        return Err(ContractError::CredentialNotValid {
            not_before: consumer.not_before(),
            not_after: consumer.not_after(),
            now,
        });
    }
    let key = named.consumer_key;
    check_signer(ContractObject::Request, named.consumer, &key)?;
    let v = opened.verify(&key)?;
    let id = Domain::REQUEST.hash(v.payload());
    let req = v.into_value();
    if req.offer != offer.id() {
        return Err(ContractError::OfferMismatch {
            expected: offer.id(),
            found: req.offer,
        });
    }
    offer.check_valid_at(now)?;
    if !freshness.is_fresh(req.time, now) {
        return Err(ContractError::StaleRequest {
            time: req.time,
            now,
        });
    }
    req.policy.validate()?;
    check_request_policy(
        &offer.offer().policy,
        &req.policy,
        &req.purpose,
        &mut Budget::new(REQUEST_BUDGET),
    )?;
    if !nonces.insert(&req.consumer, &req.nonce, req.time) {
        return Err(ContractError::NonceReused);
    }
    Ok(VerifiedRequest { request: req, id })
}

/// Provider-signed terms: the first of the agreement's two signatures, and the id the
/// agreement will have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The agreement id (`tds/agreement/v1` hash of the terms).
    pub id: Hash256,
    /// The COSE_Sign with the provider's signature, for the consumer to countersign.
    pub envelope: Vec<u8>,
}

/// The provider accepts a verified request: builds the terms and signs them (the first
/// of the two signatures of the agreement's COSE_Sign).
pub fn accept(
    key: &dyn Signer,
    offer: &VerifiedOffer,
    request: &VerifiedRequest,
    now: Timestamp,
) -> Result<Accepted, ContractError> {
    let o = offer.offer();
    check_signer(ContractObject::Offer, o.provider, &key.public_key())?;
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
    Ok(Accepted {
        id: terms.id()?,
        envelope: cose::sign_multi(&[key], &terms)?,
    })
}

/// The consumer countersigns the provider-signed terms, after checking the provider's
/// signature and that the terms name this consumer.
pub fn countersign(key: &dyn Signer, half: &[u8]) -> Result<Vec<u8>, ContractError> {
    let opened = cose::open_multi::<AgreementTerms>(half)?;
    let terms = opened.value().clone();
    check_signer(
        ContractObject::Agreement,
        terms.provider,
        &terms.provider_key,
    )?;
    check_signer(ContractObject::Agreement, terms.consumer, &key.public_key())?;
    if terms.consumer_key != key.public_key() {
        return Err(ContractError::KeyMismatch {
            what: ContractObject::Agreement,
            field: "consumer_key",
        });
    }
    opened.verify(&[terms.provider_key])?;
    Ok(cose::add_signature::<AgreementTerms>(half, key)?)
}

/// What a use under an agreement may do: the effect and, for a permit, the duties of
/// both policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessDecision {
    /// Permit, deny or not applicable.
    pub effect: Effect,
    /// The duties the recipient takes on (for a permit): the agreed policy's, then the
    /// offer's, without repeats.
    pub duties: Vec<Duty>,
}

/// An agreement whose two signatures (provider, then consumer) have been checked, with
/// both its policies compiled. Only [`verify_agreement`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedAgreement {
    terms: AgreementTerms,
    policy: CompiledPolicy,
    offer_policy: CompiledPolicy,
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

    /// The agreed policy, compiled.
    pub fn policy(&self) -> &CompiledPolicy {
        &self.policy
    }

    /// The offer's policy, compiled.
    pub fn offer_policy(&self) -> &CompiledPolicy {
        &self.offer_policy
    }

    /// Decides a use under the agreement with the compiled engine (the per-access path):
    /// both policies must permit it; the duties of both apply. The same decision as the
    /// reference [`AgreementTerms::evaluate`]; [`VerifiedAgreement::explain`] gives the
    /// reasons.
    pub fn decide(&self, req: &Request) -> AccessDecision {
        let deny = |effect| AccessDecision {
            effect,
            duties: Vec::new(),
        };
        let a = self.policy.decide(req);
        if a.effect != Effect::Permit {
            return deny(a.effect);
        }
        let o = self.offer_policy.decide(req);
        if o.effect != Effect::Permit {
            return deny(o.effect);
        }
        let mut duties = self.policy.duties(&a);
        for d in self.offer_policy.duties(&o) {
            if !duties.contains(&d) {
                duties.push(d);
            }
        }
        AccessDecision {
            effect: Effect::Permit,
            duties,
        }
    }

    /// Decides a use with the reference interpreter and explains it
    /// ([`AgreementTerms::evaluate`]), for a refusal that must say why.
    pub fn explain(&self, req: &Request) -> Decision {
        self.terms.evaluate(req)
    }
}

/// Verifies an agreement: a COSE_Sign of the terms carrying exactly two signatures, the
/// provider's first and the consumer's second, by the keys the terms name; compiles both
/// policies.
pub fn verify_agreement(bytes: &[u8]) -> Result<VerifiedAgreement, ContractError> {
    open_agreement(bytes, None)
}

/// As [`verify_agreement`], for the countersigned agreement that completes `half`: the
/// provider-signed agreement this side made ([`Accepted::envelope`], as the provider) or
/// verified ([`countersign`], as the consumer). Every rule is checked as by
/// `verify_agreement`, and `bytes` must be `half` with the consumer's signature added;
/// the provider's signature, unchanged from `half`, is not verified again (a negotiation
/// then costs each side one verification fewer).
pub fn verify_countersigned(bytes: &[u8], half: &[u8]) -> Result<VerifiedAgreement, ContractError> {
    open_agreement(bytes, Some(half))
}

fn open_agreement(bytes: &[u8], half: Option<&[u8]>) -> Result<VerifiedAgreement, ContractError> {
    let opened = cose::open_multi::<AgreementTerms>(bytes)?;
    let terms = opened.value();
    check_signer(
        ContractObject::Agreement,
        terms.provider,
        &terms.provider_key,
    )?;
    check_signer(
        ContractObject::Agreement,
        terms.consumer,
        &terms.consumer_key,
    )?;
    if terms.provider == terms.consumer {
        return Err(ContractError::SameParty {
            party: terms.provider,
        });
    }
    let keys = [terms.provider_key, terms.consumer_key];
    // The consumer countersigns what the provider accepted; a consumer's signature
    // first would be terms the provider never offered to sign.
    if opened.kids() == [terms.consumer, terms.provider] {
        return Err(ContractError::SignatureOrder {
            found: opened.kids().to_vec(),
        });
    }
    let policy = terms.policy.validate()?;
    let offer_policy = terms.offer_policy.validate()?;
    let v = match half {
        None => opened.verify(&keys)?,
        Some(half) => opened.verify_extending(&keys, half)?,
    };
    let id = Domain::AGREEMENT.hash(v.payload());
    Ok(VerifiedAgreement {
        id,
        envelope: v.envelope().to_vec(),
        terms: v.into_value(),
        policy,
        offer_policy,
    })
}

/// Signs a termination notice by one party of a verified agreement.
pub fn terminate(
    key: &dyn Signer,
    agreement: &VerifiedAgreement,
    time: Timestamp,
    reason: Option<Text>,
) -> Result<Vec<u8>, ContractError> {
    let t = agreement.terms();
    let me = key.key_id();
    if me != t.provider && me != t.consumer {
        return Err(ContractError::NotAParty {
            what: ContractObject::Termination,
            party: me,
        });
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

/// A termination notice whose signature by a party of its agreement has been checked.
/// Only [`verify_termination`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedTermination {
    termination: Termination,
    envelope: Vec<u8>,
}

impl VerifiedTermination {
    /// The notice.
    pub fn termination(&self) -> &Termination {
        &self.termination
    }

    /// The notice id: the `tds/termination/v1` hash of its canonical CBOR (the signed
    /// payload).
    pub fn id(&self) -> Result<Hash256, PolicyError> {
        Ok(Domain::TERMINATION.hash(&tds_core::cbor::encode(&self.termination)?))
    }

    /// The agreement it ends.
    pub fn agreement(&self) -> Hash256 {
        self.termination.agreement
    }

    /// The terminating party.
    pub fn party(&self) -> Hash256 {
        self.termination.party
    }

    /// The signed envelope.
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The notice, consuming the proof.
    pub fn into_termination(self) -> Termination {
        self.termination
    }
}

/// Verifies a termination notice for `agreement`: signed by one of its parties.
pub fn verify_termination(
    bytes: &[u8],
    agreement: &VerifiedAgreement,
) -> Result<VerifiedTermination, ContractError> {
    let opened = cose::open::<Termination>(bytes)?;
    let n = opened.value();
    check_signer(ContractObject::Termination, n.party, &n.party_key)?;
    let t = agreement.terms();
    let party_key = if n.party == t.provider {
        t.provider_key
    } else if n.party == t.consumer {
        t.consumer_key
    } else {
        return Err(ContractError::NotAParty {
            what: ContractObject::Termination,
            party: n.party,
        });
    };
    if n.agreement != agreement.id() {
        return Err(ContractError::OtherAgreement {
            expected: agreement.id(),
            found: n.agreement,
        });
    }
    let v = opened.verify(&party_key)?;
    Ok(VerifiedTermination {
        envelope: v.envelope().to_vec(),
        termination: v.into_value(),
    })
}
