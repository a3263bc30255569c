//! Round trips of every protocol message: arbitrary instances of each message type
//! (process ids and hashes from any bytes, byte strings, optional fields present and
//! absent, bounded vectors, purposes from a small valid set) encode to canonical CBOR that
//! decodes to the same message, and the control frame around it decodes to it too. A
//! single changed byte of an encoding is refused or decodes to a message that encodes to
//! exactly the changed bytes; nothing panics.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_bytes::ByteBuf;
use tds_core::hash::Hash256;
use tds_policy::{Purpose, Region, Text};
use tds_protocol::frame::{self, Frame};
use tds_protocol::message::{
    AcceptedMsg, Ack, AgreementMsg, CatalogFilter, CatalogItem, CatalogPageMsg, CatalogRequestMsg,
    CheckpointMsg, CheckpointRequestMsg, ChunkRequestMsg, ContractOfferMsg, ContractRequestMsg,
    Hello, NoticeMsg, RevocationNoticeMsg, TransferCompletionMsg, TransferRequestMsg,
    TransferResumeMsg, TransferStartMsg, TransferStopMsg, VerificationMsg, MESSAGE_NAMES,
};
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
        _ => (bytes(), proptest::collection::vec(hash(), 0..6))
            .prop_map(|(checkpoint, consistency)| {
                Message::Checkpoint(CheckpointMsg {
                    checkpoint,
                    consistency,
                })
            })
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
