//! Round trips of every protocol message: arbitrary instances of each message type
//! (process ids and hashes from any bytes, byte strings, optional fields present and
//! absent, bounded vectors, purposes from a small valid set) encode to canonical CBOR that
//! decodes to the same message, and the control frame around it decodes to it too. A
//! single changed byte of an encoding is refused or decodes to a message that encodes to
//! exactly the changed bytes; nothing panics. The post-agreement signed objects (usage
//! reports, deletion receipts, usage records) sign and verify back to themselves with
//! the ids their domains give, are refused for another key and when they break their
//! rules.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_core::{SigningKey, Timestamp};
use tds_policy::{Amount, Currency, Purpose, Region, Text};
use tds_protocol::frame::{self, Frame};
use tds_protocol::message::{
    AcceptedMsg, Ack, AgreementMsg, AgreementTerminationMsg, CatalogFilter, CatalogItem,
    CatalogPageMsg, CatalogRequestMsg, CheckpointMsg, CheckpointRequestMsg, ChunkRequestMsg,
    ContractOfferMsg, ContractRequestMsg, DeletionReceiptMsg, Hello, NoticeMsg,
    RevocationNoticeMsg, TransferCompletionMsg, TransferRequestMsg, TransferResumeMsg,
    TransferStartMsg, TransferStopMsg, UsageReportMsg, VerificationMsg, MESSAGE_NAMES,
};
use tds_protocol::signed::{self, ActionUses, DeletionReceipt, UsageRecord, UsageReport};
use tds_protocol::{Message, Pid, Refusal};

fn pid() -> impl Strategy<Value = Pid> {
    any::<[u8; 16]>().prop_map(Pid::from_bytes)
}

fn hash() -> impl Strategy<Value = Hash256> {
    any::<[u8; 32]>().prop_map(Hash256::from_bytes)
}

fn bytes() -> impl Strategy<Value = ByteBuf> {
    proptest::collection::vec(any::<u8>(), 0..96).prop_map(ByteBuf::from)
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn purpose() -> impl Strategy<Value = Purpose> {
    prop::sample::select(vec![
        "grid",
        "grid/planning",
        "grid/planning/daily",
        "research",
        "a-1/b2",
    ])
    .prop_filter_map("a valid purpose", |p| p.parse().ok())
}

fn region() -> impl Strategy<Value = Region> {
    prop::sample::select(vec!["CN", "CN-SX", "US", "DE-BY", "HK"])
        .prop_filter_map("a valid region", |r| r.parse().ok())
}

/// Reference text (consent, export assessment): 1 to 1024 bytes without control
/// characters.
fn reference() -> impl Strategy<Value = Text> {
    "[a-zA-Z0-9:/ ._-]{1,40}".prop_filter_map("valid text", |t| t.parse().ok())
}

fn refusal() -> impl Strategy<Value = Refusal> {
    (text(), text()).prop_map(|(code, reason)| Refusal { code, reason })
}

fn stop() -> impl Strategy<Value = TransferStopMsg> {
    (pid(), pid(), text(), proptest::option::of(text())).prop_map(
        |(provider_pid, consumer_pid, code, reason)| TransferStopMsg {
            provider_pid,
            consumer_pid,
            code,
            reason,
        },
    )
}

fn notice() -> impl Strategy<Value = NoticeMsg> {
    (pid(), pid(), bytes()).prop_map(|(consumer_pid, provider_pid, notice)| NoticeMsg {
        consumer_pid,
        provider_pid,
        notice,
    })
}

/// Messages of kind `kind` (the index of its name in [`MESSAGE_NAMES`]).
fn message_of(kind: usize) -> BoxedStrategy<Message> {
    match kind {
        0 => (
            proptest::collection::vec(any::<u64>(), 0..4),
            bytes(),
            proptest::option::of(bytes()),
            text(),
        )
            .prop_map(|(versions, credential, crl, agent)| {
                Message::Hello(Hello {
                    versions,
                    credential,
                    crl,
                    agent,
                })
            })
            .boxed(),
        1 => (proptest::option::of(pid()), proptest::option::of(text()))
            .prop_map(|(pid, state)| Message::Ack(Ack { pid, state }))
            .boxed(),
        2 => refusal().prop_map(Message::Error).boxed(),
        3 => (pid(), proptest::option::of(pid()), bytes(), bytes())
            .prop_map(|(consumer_pid, provider_pid, offer, request)| {
                Message::ContractRequest(ContractRequestMsg {
                    consumer_pid,
                    provider_pid,
                    offer,
                    request,
                })
            })
            .boxed(),
        4 => (pid(), proptest::option::of(pid()), bytes())
            .prop_map(|(provider_pid, consumer_pid, offer)| {
                Message::ContractOffer(ContractOfferMsg {
                    provider_pid,
                    consumer_pid,
                    offer,
                })
            })
            .boxed(),
        5 => (pid(), pid(), bytes())
            .prop_map(|(consumer_pid, provider_pid, request)| {
                Message::ContractAccepted(AcceptedMsg {
                    consumer_pid,
                    provider_pid,
                    request,
                })
            })
            .boxed(),
        6 => (pid(), pid(), bytes())
            .prop_map(|(provider_pid, consumer_pid, agreement)| {
                Message::ContractAgreement(AgreementMsg {
                    provider_pid,
                    consumer_pid,
                    agreement,
                })
            })
            .boxed(),
        7 => (pid(), pid(), bytes())
            .prop_map(|(consumer_pid, provider_pid, agreement)| {
                Message::AgreementVerification(VerificationMsg {
                    consumer_pid,
                    provider_pid,
                    agreement,
                })
            })
            .boxed(),
        8 => notice().prop_map(Message::ContractFinalized).boxed(),
        9 => notice().prop_map(Message::NegotiationTermination).boxed(),
        10 => (
            pid(),
            hash(),
            purpose(),
            proptest::option::of(region()),
            proptest::option::of(reference()),
            proptest::option::of(reference()),
        )
            .prop_map(
                |(
                    consumer_pid,
                    agreement,
                    purpose,
                    location,
                    consent_ref,
                    export_assessment_ref,
                )| {
                    Message::TransferRequest(TransferRequestMsg {
                        consumer_pid,
                        agreement,
                        purpose,
                        location,
                        consent_ref,
                        export_assessment_ref,
                    })
                },
            )
            .boxed(),
        11 => (pid(), pid(), bytes())
            .prop_map(|(provider_pid, consumer_pid, manifest)| {
                Message::TransferStart(TransferStartMsg {
                    provider_pid,
                    consumer_pid,
                    manifest,
                })
            })
            .boxed(),
        12 => (pid(), pid())
            .prop_map(|(provider_pid, consumer_pid)| {
                Message::TransferResume(TransferResumeMsg {
                    provider_pid,
                    consumer_pid,
                })
            })
            .boxed(),
        13 => stop().prop_map(Message::TransferSuspension).boxed(),
        14 => (pid(), pid(), proptest::option::of(bytes()))
            .prop_map(|(provider_pid, consumer_pid, receipt)| {
                Message::TransferCompletion(TransferCompletionMsg {
                    provider_pid,
                    consumer_pid,
                    receipt,
                })
            })
            .boxed(),
        15 => stop().prop_map(Message::TransferTermination).boxed(),
        16 => (pid(), pid(), any::<u64>())
            .prop_map(|(provider_pid, consumer_pid, index)| {
                Message::ChunkRequest(ChunkRequestMsg {
                    provider_pid,
                    consumer_pid,
                    index,
                })
            })
            .boxed(),
        17 => (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(hash()),
            proptest::option::of(bytes()),
            any::<u64>(),
        )
            .prop_map(
                |(sector, keyword, classification, provider, cursor, limit)| {
                    Message::CatalogRequest(CatalogRequestMsg {
                        filter: CatalogFilter {
                            sector,
                            keyword,
                            classification,
                            provider,
                        },
                        cursor,
                        limit,
                    })
                },
            )
            .boxed(),
        18 => (
            proptest::collection::vec(
                (bytes(), bytes()).prop_map(|(offer, manifest)| CatalogItem { offer, manifest }),
                0..4,
            ),
            proptest::option::of(bytes()),
        )
            .prop_map(|(items, next)| Message::CatalogPage(CatalogPageMsg { items, next }))
            .boxed(),
        19 => bytes()
            .prop_map(|crl| Message::RevocationNotice(RevocationNoticeMsg { crl }))
            .boxed(),
        20 => proptest::option::of(any::<u64>())
            .prop_map(|since| Message::CheckpointRequest(CheckpointRequestMsg { since }))
            .boxed(),
        21 => (bytes(), proptest::collection::vec(hash(), 0..6))
            .prop_map(|(checkpoint, consistency)| {
                Message::Checkpoint(CheckpointMsg {
                    checkpoint,
                    consistency,
                })
            })
            .boxed(),
        22 => (hash(), bytes())
            .prop_map(|(agreement, termination)| {
                Message::AgreementTermination(AgreementTerminationMsg {
                    agreement,
                    termination,
                })
            })
            .boxed(),
        23 => bytes()
            .prop_map(|report| Message::UsageReport(UsageReportMsg { report }))
            .boxed(),
        _ => bytes()
            .prop_map(|receipt| Message::DeletionReceipt(DeletionReceiptMsg { receipt }))
            .boxed(),
    }
}

fn message() -> impl Strategy<Value = Message> {
    (0..MESSAGE_NAMES.len()).prop_flat_map(message_of)
}

#[test]
fn the_generator_makes_every_message_type() {
    let mut runner = TestRunner::deterministic();
    for (kind, name) in MESSAGE_NAMES.iter().enumerate() {
        for _ in 0..8 {
            let m = message_of(kind).new_tree(&mut runner).unwrap().current();
            assert_eq!(m.name(), *name);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_message_round_trips(m in message()) {
        let encoded = m.encode().unwrap();
        prop_assert_eq!(&Message::decode(&encoded).unwrap(), &m);
        let f = frame::encode_control(&m).unwrap();
        prop_assert_eq!(f.get(frame::HEADER_LEN..), Some(&encoded[..]));
        match frame::decode(&f).unwrap() {
            Frame::Control(back) => prop_assert_eq!(back, m),
            Frame::Data(..) => prop_assert!(false, "a control frame decoded as data"),
        }
    }

    #[test]
    fn a_changed_byte_is_refused_or_canonical(
        m in message(),
        at in any::<Index>(),
        delta in 1..=255u8,
    ) {
        let mut encoded = m.encode().unwrap();
        let i = at.index(encoded.len());
        encoded[i] = encoded[i].wrapping_add(delta);
        if let Ok(back) = Message::decode(&encoded) {
            prop_assert_eq!(back.encode().unwrap(), encoded.clone());
        }
        // The same change inside a control frame.
        let mut f = frame::encode_control(&m).unwrap();
        let j = at.index(f.len());
        f[j] = f[j].wrapping_add(delta);
        match frame::decode(&f) {
            Ok(Frame::Control(back)) => prop_assert_eq!(frame::encode_control(&back).unwrap(), f),
            Ok(Frame::Data(h, chunk)) => prop_assert_eq!(frame::encode_data(&h, chunk).unwrap(), f),
            Err(_) => {}
        }
    }
}

// ---- the post-agreement signed objects ----

fn key() -> impl Strategy<Value = SigningKey> {
    (1u8..=8).prop_map(|b| SigningKey::from_seed(&[b; 32]))
}

fn time() -> impl Strategy<Value = Timestamp> {
    (0u64..=4_102_444_800_000).prop_map(Timestamp::from_millis)
}

/// Actions in the order a report lists them: each once, by word.
fn actions() -> impl Strategy<Value = Vec<ActionUses>> {
    proptest::collection::btree_map(
        prop::sample::select(tds_policy::Action::ALL.to_vec()),
        any::<u64>(),
        0..6,
    )
    .prop_map(|m| {
        let mut v: Vec<ActionUses> = m
            .into_iter()
            .map(|(action, uses)| ActionUses { action, uses })
            .collect();
        v.sort_by(|a, b| a.action.as_str().cmp(b.action.as_str()));
        v
    })
}

fn usage_report() -> impl Strategy<Value = (SigningKey, UsageReport)> {
    (
        key(),
        hash(),
        time(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        actions(),
        time(),
    )
        .prop_map(|(k, agreement, from, span, uses, bytes, actions, time)| {
            let report = UsageReport {
                agreement,
                consumer: k.id(),
                consumer_key: k.public_key(),
                from,
                to: from.saturating_add_millis(u64::from(span)),
                uses,
                bytes,
                actions,
                time,
            };
            (k, report)
        })
}

fn deletion_receipt() -> impl Strategy<Value = (SigningKey, DeletionReceipt)> {
    (key(), hash(), hash(), any::<u64>(), any::<u64>(), time()).prop_map(
        |(k, agreement, asset, chunks, bytes, time)| {
            let receipt = DeletionReceipt {
                agreement,
                asset,
                consumer: k.id(),
                consumer_key: k.public_key(),
                chunks,
                bytes,
                time,
            };
            (k, receipt)
        },
    )
}

fn usage_record() -> impl Strategy<Value = (SigningKey, UsageRecord)> {
    (
        key(),
        hash(),
        hash(),
        any::<bool>(),
        proptest::option::of(hash()),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        prop::sample::select(vec!["CNY", "EUR", "USD"])
            .prop_filter_map("a currency", |c| c.parse::<Currency>().ok()),
        time(),
    )
        .prop_filter(
            "the other party is not the recorder",
            |(k, _, other, ..)| *other != k.id(),
        )
        .prop_map(
            |(k, agreement, other, as_provider, transfer, uses, bytes, amount, currency, time)| {
                let (provider, consumer) = if as_provider {
                    (k.id(), other)
                } else {
                    (other, k.id())
                };
                let record = UsageRecord {
                    agreement,
                    provider,
                    consumer,
                    transfer,
                    uses,
                    bytes,
                    amount: Amount(amount),
                    currency,
                    time,
                    recorder: k.id(),
                    recorder_key: k.public_key(),
                };
                (k, record)
            },
        )
}

fn code(e: &signed::SignedError) -> &'static str {
    use tds_core::ErrorCode as _;
    e.code()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn usage_reports_round_trip((k, report) in usage_report(), flip in any::<Index>()) {
        let bytes = signed::sign_usage_report(&k, &report).unwrap();
        let v = signed::verify_usage_report(&bytes, &k.public_key()).unwrap();
        prop_assert_eq!(v.report(), &report);
        prop_assert_eq!(v.envelope(), &bytes[..]);
        prop_assert_eq!(v.id(), report.id().unwrap());
        prop_assert_eq!(
            v.id(),
            tds_core::hash::Domain::USAGE_REPORT.hash(&tds_core::cbor::encode(&report).unwrap())
        );
        // Another key is not the consumer the report names.
        let other = SigningKey::from_seed(&[0x55; 32]);
        let e = signed::verify_usage_report(&bytes, &other.public_key()).unwrap_err();
        prop_assert_eq!(code(&e), "protocol.wrong_party");
        prop_assert!(signed::sign_usage_report(&other, &report).is_err());
        // One changed byte never verifies as something else.
        let mut bad = bytes.clone();
        let i = flip.index(bad.len());
        bad[i] ^= 0x01;
        if let Ok(v) = signed::verify_usage_report(&bad, &k.public_key()) {
            prop_assert_eq!(v.envelope(), &bad[..]);
        }
    }

    #[test]
    fn a_report_that_breaks_its_rules_is_refused((k, mut report) in usage_report()) {
        // A period that ends before it starts.
        report.to = report.from;
        report.from = report.from.saturating_add_millis(1);
        if report.from > report.to {
            let e = signed::sign_usage_report(&k, &report).unwrap_err();
            prop_assert_eq!(code(&e), "protocol.signed_invalid");
            // Signed without the rules, it is refused when verified.
            let raw = tds_core::cose::sign(&k, &report).unwrap();
            let e = signed::verify_usage_report(&raw, &k.public_key()).unwrap_err();
            prop_assert_eq!(code(&e), "protocol.signed_invalid");
        }
    }

    #[test]
    fn deletion_receipts_round_trip((k, receipt) in deletion_receipt()) {
        let bytes = signed::sign_deletion_receipt(&k, &receipt).unwrap();
        let v = signed::verify_deletion_receipt(&bytes, &k.public_key()).unwrap();
        prop_assert_eq!(v.receipt(), &receipt);
        prop_assert_eq!(v.id(), receipt.id().unwrap());
        prop_assert_eq!(v.envelope(), &bytes[..]);
        let other = SigningKey::from_seed(&[0x55; 32]);
        let e = signed::verify_deletion_receipt(&bytes, &other.public_key()).unwrap_err();
        prop_assert_eq!(code(&e), "protocol.wrong_party");
    }

    #[test]
    fn usage_records_round_trip((k, record) in usage_record()) {
        let bytes = signed::sign_usage_record(&k, &record).unwrap();
        let v = signed::verify_usage_record(&bytes, &k.public_key()).unwrap();
        prop_assert_eq!(v.record(), &record);
        prop_assert_eq!(v.id(), record.id().unwrap());
        let other = SigningKey::from_seed(&[0x55; 32]);
        let e = signed::verify_usage_record(&bytes, &other.public_key()).unwrap_err();
        prop_assert_eq!(code(&e), "protocol.wrong_party");
        // A recorder that is neither party.
        let mut stranger = record.clone();
        stranger.provider = Hash256::from_bytes([0xee; 32]);
        stranger.consumer = Hash256::from_bytes([0xef; 32]);
        let e = signed::sign_usage_record(&k, &stranger).unwrap_err();
        prop_assert_eq!(code(&e), "protocol.signed_invalid");
    }
}

#[test]
fn a_report_lists_each_action_once_in_order() {
    let k = SigningKey::from_seed(&[1; 32]);
    let report = |actions: Vec<ActionUses>| UsageReport {
        agreement: Hash256::from_bytes([1; 32]),
        consumer: k.id(),
        consumer_key: k.public_key(),
        from: Timestamp::from_secs(1),
        to: Timestamp::from_secs(2),
        uses: 1,
        bytes: 1,
        actions,
        time: Timestamp::from_secs(2),
    };
    let uses = |action| ActionUses { action, uses: 1 };
    use tds_policy::Action::{Analyze, Read};
    assert!(signed::sign_usage_report(&k, &report(vec![uses(Analyze), uses(Read)])).is_ok());
    for bad in [
        vec![uses(Read), uses(Analyze)],
        vec![uses(Read), uses(Read)],
        vec![uses(Read); signed::MAX_REPORT_ACTIONS + 1],
    ] {
        let e = signed::sign_usage_report(&k, &report(bad)).unwrap_err();
        assert_eq!(code(&e), "protocol.signed_invalid");
    }
}
