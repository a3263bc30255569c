//! `spec/protocol.md`: the example frame, the message table and the key order of the
//! protocol's signed objects are what the code produces.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap, index or an unexpected value is a failed test"
)]

use tds_core::cbor::{self, Value};
use tds_core::{Hash256, Timestamp};
use tds_protocol::message::{Ack, Message, Pid};
use tds_protocol::signed::{
    ActionUses, DeletionReceipt, Notice, NoticeKind, TransferReceipt, UsageRecord, UsageReport,
};

fn keys(bytes: &[u8]) -> Vec<String> {
    match cbor::decode_with::<Value>(bytes, &cbor::Limits::DEFAULT).unwrap() {
        Value::Map(entries) => entries
            .into_iter()
            .map(|(k, _)| match k {
                Value::Text(t) => t,
                other => panic!("key {other:?}"),
            })
            .collect(),
        other => panic!("not a map: {other:?}"),
    }
}

fn spec() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/protocol.md")).unwrap()
}

/// The keys of the CDDL block that starts with `name = {`, in the order written.
fn spec_keys(name: &str) -> Vec<String> {
    let text = spec();
    let start = text.find(&format!("{name} = {{")).unwrap();
    let block = &text[start..];
    let end = block.find("\n}").unwrap();
    block[..end]
        .lines()
        .skip(1)
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect()
}

#[test]
fn the_example_ack_frame() {
    let f = tds_protocol::frame::encode_control(&Message::Ack(Ack {
        pid: None,
        state: None,
    }))
    .unwrap();
    assert_eq!(hex::encode(&f), "0000000006a16361636ba0");
    assert!(spec().contains("`00 00000006 a1 63 61636b a0`"));
}

#[test]
fn signed_objects_list_their_keys_in_canonical_order() {
    let pid = Pid::from_bytes([1; 16]);
    let key = tds_core::SigningKey::from_seed(&[1; 32]).public_key();
    let notice = Notice {
        kind: NoticeKind::Terminated,
        consumer_pid: pid,
        provider_pid: pid,
        agreement: Some(Hash256::from_bytes([2; 32])),
        party: key.id(),
        party_key: key,
        code: Some("negotiation.declined".into()),
        reason: Some("r".into()),
        time: Timestamp::from_secs(1),
    };
    assert_eq!(keys(&cbor::encode(&notice).unwrap()), spec_keys("notice"));
    let receipt = TransferReceipt {
        consumer_pid: pid,
        provider_pid: pid,
        agreement: Hash256::from_bytes([2; 32]),
        root: Hash256::from_bytes([3; 32]),
        size: 1,
        bytes: 1,
        chunks: 1,
        complete: true,
        consumer: key.id(),
        consumer_key: key,
        time: Timestamp::from_secs(1),
    };
    assert_eq!(
        keys(&cbor::encode(&receipt).unwrap()),
        spec_keys("transfer-receipt")
    );
    let report = UsageReport {
        agreement: Hash256::from_bytes([2; 32]),
        consumer: key.id(),
        consumer_key: key,
        from: Timestamp::from_secs(1),
        to: Timestamp::from_secs(2),
        uses: 1,
        bytes: 1,
        actions: vec![ActionUses {
            action: tds_policy::Action::Read,
            uses: 1,
        }],
        time: Timestamp::from_secs(3),
    };
    assert_eq!(
        keys(&cbor::encode(&report).unwrap()),
        spec_keys("usage-report")
    );
    assert_eq!(
        keys(&cbor::encode(&report.actions[0]).unwrap()),
        spec_keys("action-uses")
    );
    let deletion = DeletionReceipt {
        agreement: Hash256::from_bytes([2; 32]),
        asset: Hash256::from_bytes([3; 32]),
        consumer: key.id(),
        consumer_key: key,
        chunks: 1,
        bytes: 1,
        time: Timestamp::from_secs(1),
    };
    assert_eq!(
        keys(&cbor::encode(&deletion).unwrap()),
        spec_keys("deletion-receipt")
    );
    let record = UsageRecord {
        agreement: Hash256::from_bytes([2; 32]),
        provider: Hash256::from_bytes([4; 32]),
        consumer: key.id(),
        transfer: Some(Hash256::from_bytes([5; 32])),
        uses: 1,
        bytes: 1,
        amount: tds_policy::Amount(1),
        currency: "CNY".parse().unwrap(),
        time: Timestamp::from_secs(1),
        recorder: key.id(),
        recorder_key: key,
    };
    assert_eq!(
        keys(&cbor::encode(&record).unwrap()),
        spec_keys("usage-record")
    );
    let header = tds_protocol::frame::ChunkHeader {
        transfer: pid,
        index: 0,
        path: vec![],
    };
    assert_eq!(
        keys(&cbor::encode(&header).unwrap()),
        spec_keys("chunk-header")
    );
}

#[test]
fn the_message_table_lists_every_message() {
    let text = spec();
    for name in tds_protocol::message::MESSAGE_NAMES {
        assert!(
            text.contains(&format!("\n| `{name}` |")),
            "spec/protocol.md §3 does not list {name}"
        );
    }
}
