//! The two DSP 2025-1 state machines as tables: which step, sent by which role, moves a
//! process from which state to which. Everything not in a table is refused with
//! `negotiation.invalid_transition` or `transfer.invalid_transition`.
//!
//! Contract negotiation (`spec/protocol.md` §4):
//!
//! | from | step (sender) | to |
//! |---|---|---|
//! | (none) | request (consumer) | REQUESTED |
//! | REQUESTED | offer (provider) | OFFERED |
//! | REQUESTED | agreement (provider) | AGREED |
//! | OFFERED | request (consumer, counter-request) | REQUESTED |
//! | OFFERED | accepted (consumer) | ACCEPTED |
//! | ACCEPTED | agreement (provider) | AGREED |
//! | AGREED | verification (consumer) | VERIFIED |
//! | VERIFIED | finalized (provider) | FINALIZED |
//! | any but FINALIZED, TERMINATED | termination (either) | TERMINATED |
//!
//! Transfer process:
//!
//! | from | step (sender) | to |
//! |---|---|---|
//! | (none) | request (consumer) | REQUESTED |
//! | REQUESTED | start (provider) | STARTED |
//! | SUSPENDED | start (either: a restart) | STARTED |
//! | STARTED | suspension (either) | SUSPENDED |
//! | STARTED | completion (either) | COMPLETED |
//! | any but COMPLETED, TERMINATED | termination (either) | TERMINATED |
//!
//! DSP's text lets either side terminate a negotiation in any non-final state; its figure
//! draws fewer arrows. TDS follows the text (and the TCK, which has the provider
//! terminate in ACCEPTED and VERIFIED and the consumer in AGREED).

use std::fmt;

/// Which side of a process a party is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Asks for data.
    Consumer,
    /// Holds data.
    Provider,
}

impl Role {
    /// The other side.
    pub const fn other(self) -> Role {
        match self {
            Role::Consumer => Role::Provider,
            Role::Provider => Role::Consumer,
        }
    }

    /// `consumer` or `provider`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::Provider => "provider",
        }
    }
}

/// DSP contract negotiation states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NegotiationState {
    /// The consumer asked.
    Requested,
    /// The provider offered.
    Offered,
    /// The consumer accepted the offer.
    Accepted,
    /// The provider signed the agreement.
    Agreed,
    /// The consumer countersigned it.
    Verified,
    /// The provider confirmed: the agreement is in force.
    Finalized,
    /// Ended without an agreement (or one side gave up).
    Terminated,
}

impl NegotiationState {
    /// The DSP name (`REQUESTED`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            NegotiationState::Requested => "REQUESTED",
            NegotiationState::Offered => "OFFERED",
            NegotiationState::Accepted => "ACCEPTED",
            NegotiationState::Agreed => "AGREED",
            NegotiationState::Verified => "VERIFIED",
            NegotiationState::Finalized => "FINALIZED",
            NegotiationState::Terminated => "TERMINATED",
        }
    }

    /// FINALIZED and TERMINATED: nothing moves a process out of them.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            NegotiationState::Finalized | NegotiationState::Terminated
        )
    }
}

impl fmt::Display for NegotiationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A negotiation step, named by the DSP message that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NegotiationStep {
    /// `ContractRequestMessage` (initial or counter-request).
    Request,
    /// `ContractOfferMessage`.
    Offer,
    /// `ContractNegotiationEventMessage` ACCEPTED.
    Accepted,
    /// `ContractAgreementMessage`.
    Agreement,
    /// `ContractAgreementVerificationMessage`.
    Verification,
    /// `ContractNegotiationEventMessage` FINALIZED.
    Finalized,
    /// `ContractNegotiationTerminationMessage`.
    Termination,
}

impl NegotiationStep {
    /// The step's name, as in the reason texts.
    pub const fn as_str(self) -> &'static str {
        match self {
            NegotiationStep::Request => "request",
            NegotiationStep::Offer => "offer",
            NegotiationStep::Accepted => "accepted",
            NegotiationStep::Agreement => "agreement",
            NegotiationStep::Verification => "verification",
            NegotiationStep::Finalized => "finalized",
            NegotiationStep::Termination => "termination",
        }
    }
}

/// A step the table does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{step} from the {} is not allowed in state {}", sender.as_str(), from.unwrap_or("(none)"))]
pub struct InvalidTransition {
    /// The DSP name of the state the process was in (`None`: no process yet).
    pub from: Option<&'static str>,
    /// The step.
    pub step: &'static str,
    /// Who sent it.
    pub sender: Role,
}

impl fmt::Display for NegotiationStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The negotiation table: the state after `step` sent by `sender` in `from`.
pub fn negotiation_next(
    from: Option<NegotiationState>,
    step: NegotiationStep,
    sender: Role,
) -> Result<NegotiationState, InvalidTransition> {
    use NegotiationState as S;
    use NegotiationStep as T;
    use Role::{Consumer as C, Provider as P};
    let to = match (from, step, sender) {
        (None, T::Request, C) => Some(S::Requested),
        (Some(S::Requested), T::Offer, P) => Some(S::Offered),
        (Some(S::Requested), T::Agreement, P) => Some(S::Agreed),
        (Some(S::Offered), T::Request, C) => Some(S::Requested),
        (Some(S::Offered), T::Accepted, C) => Some(S::Accepted),
        (Some(S::Accepted), T::Agreement, P) => Some(S::Agreed),
        (Some(S::Agreed), T::Verification, C) => Some(S::Verified),
        (Some(S::Verified), T::Finalized, P) => Some(S::Finalized),
        (Some(s), T::Termination, _) if !s.is_final() => Some(S::Terminated),
        _ => None,
    };
    to.ok_or(InvalidTransition {
        from: from.map(|s| s.as_str()),
        step: step.as_str(),
        sender,
    })
}

/// DSP transfer process states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferState {
    /// The consumer asked.
    Requested,
    /// Data flows.
    Started,
    /// Paused; a start resumes it.
    Suspended,
    /// Done.
    Completed,
    /// Ended early.
    Terminated,
}

impl TransferState {
    /// The DSP name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransferState::Requested => "REQUESTED",
            TransferState::Started => "STARTED",
            TransferState::Suspended => "SUSPENDED",
            TransferState::Completed => "COMPLETED",
            TransferState::Terminated => "TERMINATED",
        }
    }

    /// COMPLETED and TERMINATED.
    pub const fn is_final(self) -> bool {
        matches!(self, TransferState::Completed | TransferState::Terminated)
    }
}

impl fmt::Display for TransferState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transfer step, named by the DSP message that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferStep {
    /// `TransferRequestMessage`.
    Request,
    /// `TransferStartMessage` (a restart from SUSPENDED by either side).
    Start,
    /// `TransferSuspensionMessage`.
    Suspension,
    /// `TransferCompletionMessage`.
    Completion,
    /// `TransferTerminationMessage`.
    Termination,
}

impl TransferStep {
    /// The step's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransferStep::Request => "request",
            TransferStep::Start => "start",
            TransferStep::Suspension => "suspension",
            TransferStep::Completion => "completion",
            TransferStep::Termination => "termination",
        }
    }
}

impl fmt::Display for TransferStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transfer table: the state after `step` sent by `sender` in `from`.
pub fn transfer_next(
    from: Option<TransferState>,
    step: TransferStep,
    sender: Role,
) -> Result<TransferState, InvalidTransition> {
    use Role::{Consumer as C, Provider as P};
    use TransferState as S;
    use TransferStep as T;
    let to = match (from, step, sender) {
        (None, T::Request, C) => Some(S::Requested),
        (Some(S::Requested), T::Start, P) => Some(S::Started),
        (Some(S::Suspended), T::Start, _) => Some(S::Started),
        (Some(S::Started), T::Suspension, _) => Some(S::Suspended),
        (Some(S::Started), T::Completion, _) => Some(S::Completed),
        (Some(s), T::Termination, _) if !s.is_final() => Some(S::Terminated),
        _ => None,
    };
    to.ok_or(InvalidTransition {
        from: from.map(|s| s.as_str()),
        step: step.as_str(),
        sender,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEG: [NegotiationState; 7] = [
        NegotiationState::Requested,
        NegotiationState::Offered,
        NegotiationState::Accepted,
        NegotiationState::Agreed,
        NegotiationState::Verified,
        NegotiationState::Finalized,
        NegotiationState::Terminated,
    ];
    const NSTEPS: [NegotiationStep; 7] = [
        NegotiationStep::Request,
        NegotiationStep::Offer,
        NegotiationStep::Accepted,
        NegotiationStep::Agreement,
        NegotiationStep::Verification,
        NegotiationStep::Finalized,
        NegotiationStep::Termination,
    ];

    #[test]
    fn negotiation_table_has_exactly_the_dsp_arrows() {
        let mut allowed = 0;
        for from in std::iter::once(None).chain(NEG.iter().copied().map(Some)) {
            for step in NSTEPS {
                for sender in [Role::Consumer, Role::Provider] {
                    if negotiation_next(from, step, sender).is_ok() {
                        allowed += 1;
                    }
                }
            }
        }
        // 8 single arrows + termination by either side from 5 non-final states.
        assert_eq!(allowed, 8 + 10);
        for s in [NegotiationState::Finalized, NegotiationState::Terminated] {
            for step in NSTEPS {
                for sender in [Role::Consumer, Role::Provider] {
                    assert!(negotiation_next(Some(s), step, sender).is_err());
                }
            }
        }
        // The TCK's refusals.
        let refused = [
            (
                NegotiationState::Offered,
                NegotiationStep::Verification,
                Role::Consumer,
            ),
            (
                NegotiationState::Accepted,
                NegotiationStep::Verification,
                Role::Consumer,
            ),
            (
                NegotiationState::Requested,
                NegotiationStep::Request,
                Role::Consumer,
            ),
            (
                NegotiationState::Requested,
                NegotiationStep::Finalized,
                Role::Provider,
            ),
            (
                NegotiationState::Offered,
                NegotiationStep::Agreement,
                Role::Provider,
            ),
            (
                NegotiationState::Accepted,
                NegotiationStep::Offer,
                Role::Provider,
            ),
            (
                NegotiationState::Agreed,
                NegotiationStep::Finalized,
                Role::Provider,
            ),
        ];
        for (from, step, sender) in refused {
            assert!(
                negotiation_next(Some(from), step, sender).is_err(),
                "{from} {step}"
            );
        }
    }

    #[test]
    fn transfer_table_refuses_what_dsp_refuses() {
        use TransferState as S;
        use TransferStep as T;
        for sender in [Role::Consumer, Role::Provider] {
            assert!(transfer_next(Some(S::Suspended), T::Completion, sender).is_err());
            assert!(transfer_next(Some(S::Requested), T::Completion, sender).is_err());
            assert!(transfer_next(Some(S::Requested), T::Suspension, sender).is_err());
            for step in [T::Start, T::Suspension, T::Completion, T::Termination] {
                assert!(transfer_next(Some(S::Terminated), step, sender).is_err());
                assert!(transfer_next(Some(S::Completed), step, sender).is_err());
            }
        }
        assert!(transfer_next(Some(S::Requested), T::Start, Role::Consumer).is_err());
        assert_eq!(
            transfer_next(Some(S::Suspended), T::Start, Role::Consumer),
            Ok(S::Started)
        );
    }
}
