//! Well-formed messages a connector must not act on: for processes it never had, out
//! of their state, signed by the wrong key or tampered with, replayed, or asking for a
//! policy built to cost. Each gets its code, the refusals of contract and transfer
//! requests are logged as `access_denied` and raised as `denial` alerts, and nothing
//! changes: the attacked negotiation itself still completes when the peer behaves.

use tds_connector::AlertKind;
use tds_core::hash::Hash256;
use tds_core::Signer;
use tds_identity::Sector;
use tds_protocol::message::{
    AcceptedMsg, Ack, AgreementMsg, ChunkRequestMsg, ContractRequestMsg, NoticeMsg,
    TransferCompletionMsg, TransferRequestMsg, TransferResumeMsg, TransferStartMsg,
    TransferStopMsg,
};
use tds_protocol::{Message, Pid};

use crate::common::*;

fn ghost(n: u8) -> Pid {
    Pid::from_bytes([n; 16])
}

fn transfer_request(consumer_pid: Pid, agreement: Hash256) -> Message {
    Message::TransferRequest(TransferRequestMsg {
        consumer_pid,
        agreement,
        purpose: "research".parse().unwrap(),
        location: None,
        consent_ref: None,
        export_assessment_ref: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_unknown_processes_are_refused() -> Res {
    let mut s = Scene::new(RESEARCH).await?;
    let raw = s.raw(&s.bank).await?;
    let (a, b) = (ghost(0xa1), ghost(0xb2));
    let notice = Message::NegotiationTermination(NoticeMsg {
        consumer_pid: a,
        provider_pid: b,
        notice: vec![0xa0].into(),
    });
    let stop = TransferStopMsg {
        provider_pid: b,
        consumer_pid: a,
        code: "transfer.x".into(),
        reason: None,
    };
    let cases = vec![
        (
            Message::ContractAgreement(AgreementMsg {
                provider_pid: b,
                consumer_pid: a,
                agreement: vec![0].into(),
            }),
            "negotiation.unknown_process",
        ),
        (
            Message::ContractAccepted(AcceptedMsg {
                consumer_pid: a,
                provider_pid: b,
                request: vec![0].into(),
            }),
            "negotiation.unknown_process",
        ),
        (
            verification(
                &Opened {
                    consumer_pid: a,
                    provider_pid: b,
                    half: vec![],
                },
                vec![0],
            ),
            "negotiation.unknown_process",
        ),
        (notice, "negotiation.unknown_process"),
        (
            Message::ContractRequest(ContractRequestMsg {
                consumer_pid: a,
                provider_pid: Some(b),
                offer: s.published.offer.clone().into(),
                request: vec![0].into(),
            }),
            "negotiation.unknown_process",
        ),
        (
            Message::TransferStart(TransferStartMsg {
                provider_pid: b,
                consumer_pid: a,
                manifest: s.published.manifest.clone().into(),
            }),
            "transfer.unknown_process",
        ),
        (
            Message::TransferResume(TransferResumeMsg {
                provider_pid: b,
                consumer_pid: a,
            }),
            "transfer.unknown_process",
        ),
        (
            Message::TransferSuspension(stop.clone()),
            "transfer.unknown_process",
        ),
        (
            Message::TransferTermination(stop),
            "transfer.unknown_process",
        ),
        (
            Message::TransferCompletion(TransferCompletionMsg {
                provider_pid: b,
                consumer_pid: a,
                receipt: None,
            }),
            "transfer.unknown_process",
        ),
        (
            Message::ChunkRequest(ChunkRequestMsg {
                provider_pid: b,
                consumer_pid: a,
                index: 0,
            }),
            "transfer.unknown_process",
        ),
        // A transfer under an agreement that never was: a transfer request, so logged.
        (
            transfer_request(a, Hash256::from_bytes([7; 32])),
            "transfer.unknown_agreement",
        ),
    ];
    for (m, want) in cases {
        let reply = raw.ask(&m).await?;
        assert_eq!(code(&reply), want, "{}: {reply:?}", m.name());
    }
    denied_logged(&s.provider, "transfer.unknown_agreement").await?;
    s.events
        .alert(AlertKind::Denial, "transfer.unknown_agreement")
        .await?;
    s.still_serves().await
}

/// A negotiation the raw consumer opened is in AGREED on the provider: every other step
/// is refused and changes nothing; the right step then completes it, and the provider
/// has stored and logged the agreement before its FINALIZED arrives (N12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_state_messages_are_refused_and_change_nothing() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let mut raw = s.raw(&s.bank).await?;
    let o = open_negotiation(&mut raw, &s.bank, &s.published.offer, 1).await?;
    let again = signed_request(
        s.bank.key.as_ref(),
        &s.bank,
        &s.published.offer,
        None,
        [2; 16],
    )?;
    let countersigned = tds_policy::contract::countersign(s.bank.key.as_ref(), &o.half)?;
    let stop = TransferStopMsg {
        provider_pid: o.provider_pid,
        consumer_pid: o.consumer_pid,
        code: "transfer.x".into(),
        reason: None,
    };
    let cases = vec![
        // ACCEPTED follows OFFERED only.
        Message::ContractAccepted(AcceptedMsg {
            consumer_pid: o.consumer_pid,
            provider_pid: o.provider_pid,
            request: again.clone().into(),
        }),
        // A counter-request follows an offer only.
        Message::ContractRequest(ContractRequestMsg {
            consumer_pid: o.consumer_pid,
            provider_pid: Some(o.provider_pid),
            offer: s.published.offer.clone().into(),
            request: again.into(),
        }),
    ];
    for m in cases {
        let reply = raw.ask(&m).await?;
        assert_eq!(
            code(&reply),
            "negotiation.invalid_transition",
            "{}: {reply:?}",
            m.name()
        );
    }
    // Only the provider sends an agreement or finalizes (from the consumer they name no
    // negotiation of the provider's); transfer messages with the negotiation's ids name
    // no transfer.
    for m in [
        Message::ContractAgreement(AgreementMsg {
            provider_pid: o.provider_pid,
            consumer_pid: o.consumer_pid,
            agreement: countersigned.clone().into(),
        }),
        Message::ContractFinalized(NoticeMsg {
            consumer_pid: o.consumer_pid,
            provider_pid: o.provider_pid,
            notice: vec![0xa0].into(),
        }),
    ] {
        let reply = raw.ask(&m).await?;
        assert_eq!(
            code(&reply),
            "negotiation.unknown_process",
            "{}: {reply:?}",
            m.name()
        );
    }
    for m in [
        Message::TransferCompletion(TransferCompletionMsg {
            provider_pid: o.provider_pid,
            consumer_pid: o.consumer_pid,
            receipt: None,
        }),
        Message::TransferSuspension(stop),
    ] {
        let reply = raw.ask(&m).await?;
        assert_eq!(
            code(&reply),
            "transfer.unknown_process",
            "{}: {reply:?}",
            m.name()
        );
    }
    // The verification it waits for completes it.
    let reply = raw.ask(&verification(&o, countersigned.clone())).await?;
    assert_eq!(code(&reply), "ack", "{reply:?}");
    let id = tds_policy::contract::verify_agreement(&countersigned)?.id();
    let (provider, pid) = (s.provider.clone(), o.consumer_pid);
    // Checked the moment FINALIZED arrives: the agreement is stored and logged already.
    let (stored, logged) = raw
        .expect("contract_finalized", |m| match m {
            Message::ContractFinalized(n) if n.consumer_pid == pid => {
                let stored = provider
                    .store()
                    .get(tds_connector::store::Table::Agreements, id.as_bytes())
                    .ok()
                    .flatten()
                    .is_some();
                let logged = provider.log().events_for(&id).map(|v| !v.is_empty()).ok();
                Some((stored, logged))
            }
            _ => None,
        })
        .await?;
    assert!(stored, "FINALIZED came before the agreement was stored");
    assert_eq!(
        logged,
        Some(true),
        "FINALIZED came before the agreement was logged"
    );
    // After FINALIZED, a termination of the negotiation is out of state too.
    let reply = raw
        .ask(&Message::NegotiationTermination(NoticeMsg {
            consumer_pid: o.consumer_pid,
            provider_pid: o.provider_pid,
            notice: vec![0xa0].into(),
        }))
        .await?;
    assert_eq!(code(&reply), "negotiation.invalid_transition", "{reply:?}");
    s.still_serves().await
}

/// Contract requests with a broken signature, signed by another key than the peer's,
/// for a tampered or foreign offer: each refused with its code, logged, alerted; the
/// provider negotiates honestly afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_foreign_contract_requests_are_refused_and_logged() -> Res {
    let mut s = Scene::new(RESEARCH).await?;
    let raw = s.raw(&s.bank).await?;
    let offer = s.published.offer.clone();
    let stranger = s.space.member(40, Sector::FINANCE, "CN-SX")?;
    let mut flipped = signed_request(s.bank.key.as_ref(), &s.bank, &offer, None, [1; 16])?;
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    // The bank's request, signed with the stranger's key.
    let wrong_key = signed_request(stranger.key.as_ref(), &s.bank, &offer, None, [2; 16])?;
    // The stranger's own request, sent over the bank's connection.
    let not_the_peer = signed_request(stranger.key.as_ref(), &stranger, &offer, None, [3; 16])?;
    // The offer with a byte of its signature flipped.
    let mut bad_offer = offer.clone();
    let last = bad_offer.len() - 1;
    bad_offer[last] ^= 1;
    let fine = signed_request(s.bank.key.as_ref(), &s.bank, &offer, None, [4; 16])?;
    // Another provider's offer, sent to this one.
    let other = tds_policy::contract::verify_offer(&offer)?.offer().clone();
    let foreign = tds_policy::contract::create_offer(
        stranger.key.as_ref(),
        &tds_policy::contract::Offer {
            provider: stranger.key.id(),
            provider_key: stranger.key.public_key(),
            ..other
        },
    )?;
    let for_foreign = signed_request(s.bank.key.as_ref(), &s.bank, &foreign, None, [5; 16])?;
    let cases: Vec<(&str, Message, &str)> = vec![
        (
            "flipped signature",
            contract_request(ghost(1), &offer, flipped),
            "cose.bad_signature",
        ),
        (
            "another key's signature",
            contract_request(ghost(2), &offer, wrong_key),
            "cose.kid_mismatch",
        ),
        (
            "someone else's request",
            contract_request(ghost(3), &offer, not_the_peer),
            "contract.credential_mismatch",
        ),
        (
            "tampered offer",
            contract_request(ghost(4), &bad_offer, fine),
            "cose.bad_signature",
        ),
        (
            "foreign offer",
            contract_request(ghost(5), &foreign, for_foreign),
            "negotiation.not_my_offer",
        ),
    ];
    for (what, m, want) in cases {
        let reply = raw.ask(&m).await?;
        assert_eq!(code(&reply), want, "{what}: {reply:?}");
        denied_logged(&s.provider, want).await?;
        s.events.alert(AlertKind::Denial, want).await?;
    }
    s.still_serves().await
}

/// The provider-signed agreement comes back tampered with, or countersigned by a key
/// that is not the consumer's: refused; the genuine countersignature then finalizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_wrongly_countersigned_agreements_are_refused() -> Res {
    let mut s = Scene::new(RESEARCH).await?;
    let mut raw = s.raw(&s.bank).await?;
    let stranger = s.space.member(41, Sector::FINANCE, "CN-SX")?;
    let o = open_negotiation(&mut raw, &s.bank, &s.published.offer, 7).await?;
    let good = tds_policy::contract::countersign(s.bank.key.as_ref(), &o.half)?;
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    // The stranger adds its signature where the consumer's belongs.
    let by_stranger = tds_core::cose::add_signature::<tds_policy::contract::AgreementTerms>(
        &o.half,
        stranger.key.as_ref(),
    )?;
    let mut codes = Vec::new();
    for (what, bytes) in [
        ("flipped countersignature", flipped),
        ("countersigned by a stranger", by_stranger),
        ("not countersigned", o.half.clone()),
        ("garbage", vec![0x84, 0x40, 0xa0, 0x40, 0x80]),
    ] {
        let reply = raw.ask(&verification(&o, bytes)).await?;
        let c = code(&reply);
        assert!(
            c.starts_with("cose.") || c.starts_with("contract.") || c.starts_with("negotiation."),
            "{what}: {reply:?}"
        );
        codes.push(c);
    }
    // Each refusal is a protocol violation by an authenticated peer: alerted with its
    // code (`violation`), not only answered.
    let wanted: Vec<(AlertKind, &str)> = codes
        .iter()
        .map(|c| (AlertKind::Violation, c.as_str()))
        .collect();
    s.events.alerts(&wanted).await?;
    let reply = raw.ask(&verification(&o, good)).await?;
    assert_eq!(code(&reply), "ack", "{reply:?}");
    let pid = o.consumer_pid;
    raw.expect("contract_finalized", |m| match m {
        Message::ContractFinalized(n) if n.consumer_pid == pid => Some(()),
        _ => None,
    })
    .await?;
    s.still_serves().await
}

/// A policy of ten thousand constraints in a contract request: refused by its size
/// before any containment work and before its nonce is spent; the same nonce with an
/// honest policy is then accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_with_10000_constraints_is_refused_before_the_nonce_is_spent() -> Res {
    use tds_policy::{
        Action, Constraint, LogicalOp, Operand, Operator, Policy, Rule, RuleKind, Value,
    };
    let mut s = Scene::new(RESEARCH).await?;
    let mut raw = s.raw(&s.bank).await?;
    let items: Vec<Constraint> = (0..10_000u64)
        .map(|i| Constraint::atom(Operand::Count, Operator::Lteq, Value::Count(i + 1)))
        .collect();
    let heavy = Policy {
        rules: vec![Rule {
            constraint: Some(Constraint::Logical {
                op: LogicalOp::And,
                items,
            }),
            ..Rule::new(RuleKind::Permission, Action::Use)
        }],
        ..Policy::default()
    };
    let request = signed_request(
        s.bank.key.as_ref(),
        &s.bank,
        &s.published.offer,
        Some(heavy),
        [9; 16],
    )?;
    assert!(request.len() > 50_000, "{} bytes", request.len());
    let reply = raw
        .ask(&contract_request(ghost(9), &s.published.offer, request))
        .await?;
    let refused = code(&reply);
    assert!(
        refused.starts_with("policy.") || refused.starts_with("contract."),
        "{reply:?}"
    );
    denied_logged(&s.provider, &refused).await?;
    s.events.alert(AlertKind::Denial, &refused).await?;
    // The nonce was not spent: an honest request with it opens a negotiation.
    let opened = open_negotiation(&mut raw, &s.bank, &s.published.offer, 9).await;
    assert!(opened.is_ok(), "{:?}", opened.err());
    s.still_serves().await
}

/// An offer the provider withdrew is refused to everyone, with its code, logged (N14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_offer_is_refused() -> Res {
    let mut s = Scene::new(RESEARCH).await?;
    s.provider.withdraw(&s.published.offer_id).await?;
    let e = s
        .consumer
        .negotiate(s.addr()?, &s.published.offer, None, "research".parse()?)
        .await
        .err()
        .ok_or("negotiated a withdrawn offer")?;
    let c = e.refusal().map(|r| r.code.clone()).unwrap_or_default();
    assert_eq!(c, "negotiation.offer_withdrawn", "{e}");
    denied_logged(&s.provider, &c).await?;
    s.events.alert(AlertKind::Denial, &c).await?;
    // The provider serves its other offers.
    let fresh = publish(
        &s.provider,
        &s.grid,
        s.dir.path(),
        "other.bin",
        &data(200_000, 3),
        RESEARCH,
    )
    .await?;
    s.published = fresh;
    s.still_serves().await
}

/// The same signed request under a new process id, before and after the provider
/// restarts from its store: refused by its nonce each time (N13), logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_contract_request_is_refused_even_after_a_restart() -> Res {
    let mut s = Scene::in_dir(RESEARCH, true).await?;
    let mut raw = s.raw(&s.bank).await?;
    let request = signed_request(
        s.bank.key.as_ref(),
        &s.bank,
        &s.published.offer,
        None,
        [5; 16],
    )?;
    let reply = raw
        .ask(&contract_request(
            ghost(5),
            &s.published.offer,
            request.clone(),
        ))
        .await?;
    assert_eq!(code(&reply), "ack", "{reply:?}");
    raw.expect("contract_agreement", |m| {
        matches!(m, Message::ContractAgreement(_)).then_some(())
    })
    .await?;
    let replay = contract_request(ghost(6), &s.published.offer, request);
    assert_eq!(code(&raw.ask(&replay).await?), "contract.nonce_reused");
    denied_logged(&s.provider, "contract.nonce_reused").await?;
    // The provider restarts from its data directory, on a new port.
    drop(raw);
    s.provider.shutdown().await;
    let stand_in = connector(&s.space, &s.grid, None).await?;
    drop(std::mem::replace(&mut s.provider, stand_in));
    let dir = s.dir.path().join("provider");
    let deadline = tokio::time::Instant::now() + STEP;
    s.provider = loop {
        // The old connector's tasks let go of the store as they end.
        match connector(&s.space, &s.grid, Some(&dir)).await {
            Ok(c) => break c,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    };
    s.events = Events(s.provider.subscribe());
    let raw = s.raw(&s.bank).await?;
    assert_eq!(code(&raw.ask(&replay).await?), "contract.nonce_reused");
    s.events
        .alert(AlertKind::Denial, "contract.nonce_reused")
        .await?;
    s.still_serves().await
}

/// Transfer requests replayed: the same request again is answered alike without a
/// second transfer; another process id under a one-use agreement is refused while the
/// first runs and after it ended; the ended process id is refused; a third member
/// replaying the request is not a party. The refusals are logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_transfer_request_gets_no_second_use() -> Res {
    let once = "policy set;\n\npermit use\n  when purpose isA research and count lteq 1;\n";
    let mut s = Scene::new(once).await?;
    let agreement = s.negotiate().await?;
    let mut raw = s.raw(&s.bank).await?;
    let first = transfer_request(ghost(1), agreement);
    let reply = raw.ask(&first).await?;
    let Message::Ack(Ack {
        pid: Some(provider_pid),
        ..
    }) = reply
    else {
        return Err(format!("{reply:?}").into());
    };
    raw.expect("transfer_start", |m| {
        matches!(m, Message::TransferStart(_)).then_some(())
    })
    .await?;
    // The same request again: the transfer has moved on (STARTED), so it is no
    // duplicate to answer alike but a process id in use; no second transfer.
    let again = raw.ask(&first).await?;
    assert_eq!(code(&again), "transfer.pid_in_use", "{again:?}");
    // A second transfer while the first runs: over the count.
    assert_eq!(
        code(&raw.ask(&transfer_request(ghost(2), agreement)).await?),
        "policy.unmet.count"
    );
    denied_logged(&s.provider, "policy.unmet.count").await?;
    // The first ends (the consumer terminates it); its use is counted.
    let stop = Message::TransferTermination(TransferStopMsg {
        provider_pid,
        consumer_pid: ghost(1),
        code: "transfer.cancelled".into(),
        reason: None,
    });
    assert_eq!(code(&raw.ask(&stop).await?), "ack");
    let deadline = tokio::time::Instant::now() + STEP;
    while s.provider.served(&agreement).transfers < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the use was never counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The ended process's request again, and a fresh one: both refused.
    let c = code(&raw.ask(&first).await?);
    assert!(
        c == "transfer.pid_in_use" || c == "policy.unmet.count",
        "{c}"
    );
    assert_eq!(
        code(&raw.ask(&transfer_request(ghost(3), agreement)).await?),
        "policy.unmet.count"
    );
    // Another member replaying the request: not a party of the agreement.
    let stranger = s.space.member(42, Sector::FINANCE, "CN-SX")?;
    let other = s.raw(&stranger).await?;
    assert_eq!(
        code(&other.ask(&transfer_request(ghost(4), agreement)).await?),
        "transfer.not_party"
    );
    denied_logged(&s.provider, "transfer.not_party").await?;
    s.events
        .alert(AlertKind::Denial, "transfer.not_party")
        .await?;
    s.still_serves().await
}

/// S14: a transfer completion whose receipt is missing, signed by another key, names
/// other processes, another agreement or asset, or is tampered with: refused with its
/// code, the transfer still open; the genuine receipt then completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transfer_receipts_are_refused() -> Res {
    use tds_protocol::signed::{sign_receipt, TransferReceipt};
    let mut s = Scene::new(RESEARCH).await?;
    let agreement = s.negotiate().await?;
    let mut raw = s.raw(&s.bank).await?;
    let consumer_pid = ghost(1);
    let reply = raw.ask(&transfer_request(consumer_pid, agreement)).await?;
    let Message::Ack(Ack {
        pid: Some(provider_pid),
        ..
    }) = reply
    else {
        return Err(format!("{reply:?}").into());
    };
    let manifest = raw
        .expect("transfer_start", |m| match m {
            Message::TransferStart(t) => Some(t.manifest.into_vec()),
            _ => None,
        })
        .await?;
    let root = tds_manifest::open(&manifest)?
        .verify(&s.grid.key.public_key())?
        .manifest()
        .content
        .root;
    let good = TransferReceipt {
        consumer_pid,
        provider_pid,
        agreement,
        root,
        size: 200_000,
        bytes: 200_000,
        chunks: 4,
        complete: true,
        consumer: s.bank.key.id(),
        consumer_key: s.bank.key.public_key(),
        time: s.space.now,
    };
    let stranger = s.space.member(43, Sector::FINANCE, "CN-SX")?;
    let by_stranger = sign_receipt(
        stranger.key.as_ref(),
        &TransferReceipt {
            consumer: stranger.key.id(),
            consumer_key: stranger.key.public_key(),
            ..good.clone()
        },
    )?;
    let other_pids = sign_receipt(
        s.bank.key.as_ref(),
        &TransferReceipt {
            consumer_pid: ghost(9),
            ..good.clone()
        },
    )?;
    let other_agreement = sign_receipt(
        s.bank.key.as_ref(),
        &TransferReceipt {
            agreement: Hash256::from_bytes([3; 32]),
            ..good.clone()
        },
    )?;
    let other_root = sign_receipt(
        s.bank.key.as_ref(),
        &TransferReceipt {
            root: Hash256::from_bytes([4; 32]),
            ..good.clone()
        },
    )?;
    let mut flipped = sign_receipt(s.bank.key.as_ref(), &good)?;
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let completion = |receipt: Option<Vec<u8>>| {
        Message::TransferCompletion(TransferCompletionMsg {
            provider_pid,
            consumer_pid,
            receipt: receipt.map(Into::into),
        })
    };
    let cases = vec![
        ("missing", None, "transfer.receipt_missing"),
        (
            "signed by a stranger",
            Some(by_stranger),
            "cose.kid_mismatch",
        ),
        (
            "other processes",
            Some(other_pids),
            "protocol.signed_mismatch",
        ),
        (
            "another agreement",
            Some(other_agreement),
            "transfer.receipt_mismatch",
        ),
        (
            "another asset",
            Some(other_root),
            "transfer.receipt_mismatch",
        ),
        ("flipped signature", Some(flipped), "cose.bad_signature"),
        ("garbage", Some(vec![0xff; 40]), "cose.structure"),
    ];
    for (what, receipt, want) in cases {
        let reply = raw.ask(&completion(receipt)).await?;
        assert_eq!(code(&reply), want, "{what}: {reply:?}");
    }
    // The genuine receipt completes the transfer, and the provider logs it.
    let mut events = s.provider.subscribe();
    let reply = raw
        .ask(&completion(Some(sign_receipt(s.bank.key.as_ref(), &good)?)))
        .await?;
    assert_eq!(code(&reply), "ack", "{reply:?}");
    within("the provider's completion", async {
        loop {
            if let Ok(tds_connector::ConnectorEvent::TransferCompleted { agreement: a, .. }) =
                events.recv().await
            {
                if a == agreement {
                    return;
                }
            }
        }
    })
    .await?;
    let _ = &mut s;
    s.still_serves().await
}
