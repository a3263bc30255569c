//! After an agreement: its termination by either party, and the consumer's usage reports
//! and deletion receipts to the provider. Each is a request of its own, answered by `ack`
//! or `error`; the sender learns the outcome as [`Event::Delivered`] or
//! [`Event::Undelivered`]. The receiver remembers the digests of the last ones it
//! accepted, so a retry is acknowledged again without a second event.

use std::sync::Arc;

use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_core::Timestamp;
use tds_policy::contract::{self, VerifiedAgreement};

use super::{call, refusal_of, CallError, Event, OutId, Purpose as Why, Session};
use crate::message::{
    Ack, AgreementTerminationMsg, DeletionReceiptMsg, Message, Refusal, UsageReportMsg,
};
use crate::signed::{self, SignedError, MAX_SIGNED_LEN};
use crate::state::Role;

/// Digests of accepted post-agreement messages remembered per session.
const ACCEPTED: usize = 256;

fn unknown_agreement(id: &Hash256) -> Refusal {
    Refusal::new(
        "agreement.unknown",
        format!("no agreement {id} with this participant"),
    )
}

fn not_party() -> Refusal {
    Refusal::new(
        "agreement.not_party",
        "the agreement is not between these two participants",
    )
}

fn not_consumers(what: &str) -> Refusal {
    Refusal::new(
        "agreement.wrong_role",
        format!("only the agreement's consumer sends a {what} to its provider"),
    )
}

fn plain_ack() -> Message {
    Message::Ack(Ack {
        pid: None,
        state: None,
    })
}

impl Session {
    /// This side's role in `agreement`, if it is between this side and the peer.
    fn role_in(&self, agreement: &VerifiedAgreement) -> Option<Role> {
        let t = agreement.terms();
        let peer = *self.peer.subject().as_hash();
        if t.provider == self.me && t.consumer == peer {
            Some(Role::Provider)
        } else if t.consumer == self.me && t.provider == peer {
            Some(Role::Consumer)
        } else {
            None
        }
    }

    /// The agreement `id` the host holds and this side's role in it, if it is between
    /// this side and the peer.
    fn agreement_with_peer(&self, id: &Hash256) -> Result<(Arc<VerifiedAgreement>, Role), Refusal> {
        let a = self
            .host
            .agreement(id)
            .ok_or_else(|| unknown_agreement(id))?;
        let role = self.role_in(&a).ok_or_else(not_party)?;
        Ok((a, role))
    }

    /// An agreement whose consumer sends the peer (its provider) a report: the host
    /// holds it and this side is its consumer.
    fn consumers_agreement(&self, id: &Hash256, what: &str) -> Result<(), Refusal> {
        match self.agreement_with_peer(id)? {
            (_, Role::Consumer) => Ok(()),
            (_, Role::Provider) => Err(not_consumers(what)),
        }
    }

    /// An agreement under which the peer (its consumer) reports to this side.
    fn providers_agreement(
        &self,
        id: &Hash256,
        what: &str,
    ) -> Result<Arc<VerifiedAgreement>, Refusal> {
        match self.agreement_with_peer(id)? {
            (a, Role::Provider) => Ok(a),
            (_, Role::Consumer) => Err(not_consumers(what)),
        }
    }

    fn accepted_before(&self, digest: &Hash256) -> bool {
        self.accepted.contains(digest)
    }

    fn remember_accepted(&mut self, digest: Hash256) -> Message {
        if self.accepted.len() >= ACCEPTED {
            self.accepted.pop_front();
        }
        self.accepted.push_back(digest);
        plain_ack()
    }

    // ---- calls ----

    /// Either party: ends `agreement` (between this side and the peer) with
    /// `termination`, a termination notice this side signed for it
    /// ([`tds_policy::contract::terminate`]). Reported at once as
    /// [`Event::AgreementTerminated`] by this side (the notice is signed: it does not
    /// wait for the peer's consent); whether the peer accepted it comes as
    /// [`Event::Delivered`] or [`Event::Undelivered`] with the returned id.
    pub fn terminate_agreement(
        &mut self,
        now: Timestamp,
        agreement: &Arc<VerifiedAgreement>,
        termination: Vec<u8>,
    ) -> Result<OutId, CallError> {
        let role = self
            .role_in(agreement)
            .ok_or_else(|| CallError::from(not_party()))?;
        if termination.len() > MAX_SIGNED_LEN {
            return Err(call(SignedError::TooLarge {
                what: "termination",
                len: termination.len(),
            }));
        }
        let v = contract::verify_termination(&termination, agreement).map_err(call)?;
        if v.party() != self.me {
            return Err(call(SignedError::WrongParty {
                what: "termination",
                named: v.party(),
                peer: self.me,
            }));
        }
        let m = Message::AgreementTermination(AgreementTerminationMsg {
            agreement: agreement.id(),
            termination: ByteBuf::from(termination),
        });
        let id = self.send(now, Why::Delivery, &m, false)?;
        self.events.push_back(Event::AgreementTerminated {
            agreement: agreement.id(),
            by: role,
            termination: Arc::new(v),
        });
        Ok(id)
    }

    /// Consumer: sends a usage report this side signed
    /// ([`signed::sign_usage_report`]) for an agreement with the peer (the provider),
    /// which the host holds. The outcome comes as [`Event::Delivered`] or
    /// [`Event::Undelivered`] with the returned id.
    pub fn send_usage_report(
        &mut self,
        now: Timestamp,
        report: Vec<u8>,
    ) -> Result<OutId, CallError> {
        let v = signed::verify_usage_report(&report, &self.key.public_key()).map_err(call)?;
        self.consumers_agreement(&v.report().agreement, "usage report")?;
        let m = Message::UsageReport(UsageReportMsg {
            report: ByteBuf::from(report),
        });
        self.send(now, Why::Delivery, &m, false)
    }

    /// Consumer: sends a deletion receipt this side signed
    /// ([`signed::sign_deletion_receipt`]) for an agreement with the peer (the provider),
    /// which the host holds, and its asset. The outcome comes as [`Event::Delivered`] or
    /// [`Event::Undelivered`] with the returned id.
    pub fn send_deletion_receipt(
        &mut self,
        now: Timestamp,
        receipt: Vec<u8>,
    ) -> Result<OutId, CallError> {
        let v = signed::verify_deletion_receipt(&receipt, &self.key.public_key()).map_err(call)?;
        let r = v.receipt();
        self.consumers_agreement(&r.agreement, "deletion receipt")?;
        self.check_deleted_asset(r)?;
        let m = Message::DeletionReceipt(DeletionReceiptMsg {
            receipt: ByteBuf::from(receipt),
        });
        self.send(now, Why::Delivery, &m, false)
    }

    /// A deletion receipt names its agreement's asset.
    fn check_deleted_asset(&self, r: &signed::DeletionReceipt) -> Result<(), Refusal> {
        let same = self
            .host
            .agreement(&r.agreement)
            .is_some_and(|a| a.terms().asset.as_str() == r.asset.to_string());
        if same {
            Ok(())
        } else {
            Err(refusal_of(&SignedError::Mismatch {
                what: "deletion receipt",
                field: "asset",
            }))
        }
    }

    // ---- the peer's messages ----

    pub(super) fn on_agreement_termination(
        &mut self,
        digest: Hash256,
        r: AgreementTerminationMsg,
    ) -> Result<Message, Refusal> {
        if self.accepted_before(&digest) {
            return Ok(plain_ack());
        }
        if r.termination.len() > MAX_SIGNED_LEN {
            return Err(refusal_of(&SignedError::TooLarge {
                what: "termination",
                len: r.termination.len(),
            }));
        }
        let (agreement, role) = self.agreement_with_peer(&r.agreement)?;
        let v =
            contract::verify_termination(&r.termination, &agreement).map_err(|e| refusal_of(&e))?;
        let peer = *self.peer.subject().as_hash();
        if v.party() != peer {
            return Err(refusal_of(&SignedError::WrongParty {
                what: "termination",
                named: v.party(),
                peer,
            }));
        }
        self.events.push_back(Event::AgreementTerminated {
            agreement: agreement.id(),
            by: role.other(),
            termination: Arc::new(v),
        });
        Ok(self.remember_accepted(digest))
    }

    pub(super) fn on_usage_report(
        &mut self,
        digest: Hash256,
        r: UsageReportMsg,
    ) -> Result<Message, Refusal> {
        if self.accepted_before(&digest) {
            return Ok(plain_ack());
        }
        let v = signed::verify_usage_report(&r.report, self.peer.subject_key())
            .map_err(|e| refusal_of(&e))?;
        self.providers_agreement(&v.report().agreement, "usage report")?;
        self.events.push_back(Event::UsageReport {
            report: Box::new(v),
        });
        Ok(self.remember_accepted(digest))
    }

    pub(super) fn on_deletion_receipt(
        &mut self,
        digest: Hash256,
        r: DeletionReceiptMsg,
    ) -> Result<Message, Refusal> {
        if self.accepted_before(&digest) {
            return Ok(plain_ack());
        }
        let v = signed::verify_deletion_receipt(&r.receipt, self.peer.subject_key())
            .map_err(|e| refusal_of(&e))?;
        self.providers_agreement(&v.receipt().agreement, "deletion receipt")?;
        self.check_deleted_asset(v.receipt())?;
        self.events.push_back(Event::DeletionReceipt {
            receipt: Box::new(v),
        });
        Ok(self.remember_accepted(digest))
    }
}
