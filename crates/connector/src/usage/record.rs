//! The guard's keys and records: canonical CBOR values under the `guard/` prefix of
//! [`Table::Usage`](crate::store::Table::Usage) and the `duty/` prefix of
//! [`Table::Duties`](crate::store::Table::Duties).
//!
//! | table | key | value |
//! |---|---|---|
//! | usage | `guard/uses/` ‖ agreement id (32) | counter: uses granted, 8 bytes big-endian |
//! | usage | `guard/state/` ‖ agreement id (32) | [`AgreementRecord`] |
//! | duties | `duty/rec/` ‖ agreement id (32) ‖ duty index (4, big-endian) | [`DutyRecord`] |
//! | duties | `duty/due/` ‖ due time (8, big-endian ms) ‖ agreement id (32) ‖ duty index (4) | empty |
//!
//! The `duty/due/` entries index the open deadlines by time, so the earliest deadline is
//! the first key of the prefix and the overdue duties are the keys before `now`: nobody
//! scans every duty to find what is due. An index entry exists exactly when its duty has a
//! deadline and is not fulfilled (a recurring duty always has one: its next).
//!
//! Everything read back is decoded strictly (`tds_core::cbor::decode`: the bytes must be
//! the canonical encoding of the record, nothing more), and a record of another version,
//! a key of the wrong length or bytes that do not decode are a
//! [`GuardError::Corrupt`], never a panic.

use serde::{Deserialize, Serialize};
use tds_core::{Hash256, Timestamp};
use tds_policy::{Classification, Duty, PersonalInfo};

use super::GuardError;

/// Prefix of the use counters.
pub(super) const USES: &[u8] = b"guard/uses/";
/// Prefix of the per-agreement state records.
pub(super) const STATE: &[u8] = b"guard/state/";
/// Prefix of the duty records.
pub(super) const DUTY_REC: &[u8] = b"duty/rec/";
/// Prefix of the deadline index.
pub(super) const DUTY_DUE: &[u8] = b"duty/due/";

/// The record format version written in every record.
pub(super) const VERSION: u64 = 1;

fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let len = prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.extend_from_slice(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// `guard/uses/<id>`.
pub(super) fn uses_key(id: &Hash256) -> Vec<u8> {
    key(USES, &[id.as_bytes()])
}

/// `guard/state/<id>`.
pub(super) fn state_key(id: &Hash256) -> Vec<u8> {
    key(STATE, &[id.as_bytes()])
}

/// `duty/rec/<id>`: the prefix of one agreement's duties.
pub(super) fn duty_prefix(id: &Hash256) -> Vec<u8> {
    key(DUTY_REC, &[id.as_bytes()])
}

/// `duty/rec/<id><index>`.
pub(super) fn duty_key(id: &Hash256, index: u32) -> Vec<u8> {
    key(DUTY_REC, &[id.as_bytes(), &index.to_be_bytes()])
}

/// `duty/due/<due><id><index>`.
pub(super) fn due_key(due: Timestamp, id: &Hash256, index: u32) -> Vec<u8> {
    key(
        DUTY_DUE,
        &[
            &due.as_millis().to_be_bytes(),
            id.as_bytes(),
            &index.to_be_bytes(),
        ],
    )
}

/// The last possible index key with deadline `t`: scanning after it starts at the first
/// deadline later than `t`.
pub(super) fn due_after(t: Timestamp) -> Vec<u8> {
    key(DUTY_DUE, &[&t.as_millis().to_be_bytes(), &[0xff; 36]])
}

fn split_id_index(rest: &[u8]) -> Option<(Hash256, u32)> {
    let (id, index) = rest.split_first_chunk::<32>()?;
    let index: [u8; 4] = index.try_into().ok()?;
    Some((Hash256::from_bytes(*id), u32::from_be_bytes(index)))
}

/// The agreement and index a duty record's key names.
pub(super) fn parse_duty_key(k: &[u8]) -> Result<(Hash256, u32), GuardError> {
    k.strip_prefix(DUTY_REC)
        .and_then(split_id_index)
        .ok_or_else(|| corrupt("duty", k, "the key is not duty/rec/<id><index>"))
}

/// The deadline, agreement and index a deadline index key names.
pub(super) fn parse_due_key(k: &[u8]) -> Result<(Timestamp, Hash256, u32), GuardError> {
    k.strip_prefix(DUTY_DUE)
        .and_then(|rest| rest.split_first_chunk::<8>())
        .and_then(|(due, rest)| {
            let (id, index) = split_id_index(rest)?;
            Some((Timestamp::from_millis(u64::from_be_bytes(*due)), id, index))
        })
        .ok_or_else(|| {
            corrupt(
                "deadline index",
                k,
                "the key is not duty/due/<due><id><index>",
            )
        })
}

/// What the guard keeps per agreement besides its counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct AgreementRecord {
    /// [`VERSION`].
    pub v: u64,
    /// When data for the agreement arrived first ([`super::UsageGuard::register`]); absent
    /// when the record was made by a deletion before any registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<Timestamp>,
    /// When the local copy was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Timestamp>,
    /// How many duties were recorded (indices `0..duties`).
    pub duties: u32,
    /// The data's classification, if registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// The data's personal-information level, if registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<PersonalInfo>,
    /// Bytes received under the agreement, if registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<u64>,
}

/// One duty of an agreement and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DutyRecord {
    /// [`VERSION`].
    pub v: u64,
    /// The duty, as the policy states it.
    pub duty: Duty,
    /// The (next) deadline; absent for duties without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<Timestamp>,
    /// When it was (last, for a recurring duty) fulfilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfilled: Option<Timestamp>,
}

/// A record kind: its name in errors and its version.
pub(super) trait Record: Serialize + serde::de::DeserializeOwned {
    /// Named in errors.
    const WHAT: &'static str;
    /// The version it carries.
    fn version(&self) -> u64;
}

impl Record for AgreementRecord {
    const WHAT: &'static str = "agreement state";
    fn version(&self) -> u64 {
        self.v
    }
}

impl Record for DutyRecord {
    const WHAT: &'static str = "duty";
    fn version(&self) -> u64 {
        self.v
    }
}

/// The canonical encoding of a record.
pub(super) fn encode<R: Record>(key: &[u8], r: &R) -> Result<Vec<u8>, GuardError> {
    tds_core::cbor::encode(r).map_err(|e| corrupt(R::WHAT, key, &format!("cannot encode: {e}")))
}

/// Decodes a record read back from `key`, strictly.
pub(super) fn decode<R: Record>(key: &[u8], bytes: &[u8]) -> Result<R, GuardError> {
    let r: R = tds_core::cbor::decode(bytes).map_err(|e| corrupt(R::WHAT, key, &e.to_string()))?;
    if r.version() != VERSION {
        return Err(corrupt(
            R::WHAT,
            key,
            &format!("version {} (this build reads {VERSION})", r.version()),
        ));
    }
    Ok(r)
}

/// A corrupt-record error naming the record kind and key.
pub(super) fn corrupt(what: &'static str, key: &[u8], reason: &str) -> GuardError {
    GuardError::Corrupt {
        what,
        key: printable(key),
        reason: reason.to_owned(),
    }
}

/// A key for messages: the ASCII prefix as text, the binary rest in hex (at most 96
/// bytes of it).
fn printable(key: &[u8]) -> String {
    use std::fmt::Write as _;
    let text = key
        .iter()
        .position(|b| !(b.is_ascii_lowercase() || *b == b'/'))
        .unwrap_or(key.len());
    let (head, rest) = key.split_at(text);
    let mut s = String::from_utf8_lossy(head).into_owned();
    for b in rest.iter().take(96) {
        let _ = write!(s, "{b:02x}");
    }
    if rest.len() > 96 {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tds_core::ErrorCode;
    use tds_policy::{Amount, PayUnit};

    fn duty() -> impl Strategy<Value = Duty> {
        prop_oneof![
            any::<u64>().prop_map(|within| Duty::Delete { within }),
            any::<u64>().prop_map(|every| Duty::ReportUsage { every }),
            Just(Duty::Anonymize),
            "[a-z ]{1,20}".prop_map(|t| Duty::Attribute(t.parse().unwrap())),
            "[a-z]{1,10}".prop_map(|t| Duty::Notify(t.parse().unwrap())),
            "[a-z-]{1,10}".prop_map(|t| Duty::ObtainConsent(t.parse().unwrap())),
            (
                any::<u64>(),
                prop_oneof![Just(PayUnit::Gib), Just(PayUnit::Use)]
            )
                .prop_map(|(a, per)| Duty::Pay {
                    amount: Amount(a),
                    currency: "CNY".parse().unwrap(),
                    per,
                }),
        ]
    }

    fn ts() -> impl Strategy<Value = Option<Timestamp>> {
        proptest::option::of(any::<u64>().prop_map(Timestamp::from_millis))
    }

    fn duty_record() -> impl Strategy<Value = DutyRecord> {
        (duty(), ts(), ts()).prop_map(|(duty, due, fulfilled)| DutyRecord {
            v: VERSION,
            duty,
            due,
            fulfilled,
        })
    }

    fn agreement_record() -> impl Strategy<Value = AgreementRecord> {
        (
            ts(),
            ts(),
            any::<u32>(),
            proptest::option::of(prop_oneof![
                Just(Classification::General),
                Just(Classification::Important),
                Just(Classification::Core)
            ]),
            proptest::option::of(prop_oneof![
                Just(PersonalInfo::None),
                Just(PersonalInfo::Personal),
                Just(PersonalInfo::Sensitive)
            ]),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(
                |(received, deleted, duties, classification, personal, volume)| AgreementRecord {
                    v: VERSION,
                    received,
                    deleted,
                    duties,
                    classification,
                    personal,
                    volume,
                },
            )
    }

    /// Every prefix shorter than the whole and every single-byte change of `bytes` either
    /// decodes (to a record that encodes back to those bytes) or is a corrupt-record error:
    /// never a panic.
    fn damaged_never_panics<R: Record + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
        for cut in 0..bytes.len() {
            let r = decode::<R>(b"k", bytes.get(..cut).unwrap());
            assert!(
                matches!(r, Err(GuardError::Corrupt { .. })),
                "a truncated record decoded: {r:?}"
            );
        }
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x20, 0x80, 0xff] {
                let mut b = bytes.to_vec();
                b[i] ^= flip;
                match decode::<R>(b"k", &b) {
                    Ok(r) => assert_eq!(encode(b"k", &r).unwrap(), b),
                    Err(e) => assert_eq!(e.code(), "guard.corrupt_record"),
                }
            }
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(
            decode::<R>(b"k", &longer).is_err(),
            "trailing bytes accepted"
        );
    }

    proptest! {
        #[test]
        fn duty_records_round_trip(r in duty_record()) {
            let bytes = encode(b"k", &r).unwrap();
            prop_assert_eq!(decode::<DutyRecord>(b"k", &bytes).unwrap(), r);
        }

        #[test]
        fn agreement_records_round_trip(r in agreement_record()) {
            let bytes = encode(b"k", &r).unwrap();
            prop_assert_eq!(decode::<AgreementRecord>(b"k", &bytes).unwrap(), r);
        }

        #[test]
        fn damaged_duty_records_are_errors(r in duty_record()) {
            damaged_never_panics::<DutyRecord>(&encode(b"k", &r).unwrap());
        }

        #[test]
        fn damaged_agreement_records_are_errors(r in agreement_record()) {
            damaged_never_panics::<AgreementRecord>(&encode(b"k", &r).unwrap());
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<DutyRecord>(b"k", &b);
            let _ = decode::<AgreementRecord>(b"k", &b);
            let _ = parse_duty_key(&b);
            let _ = parse_due_key(&b);
        }

        #[test]
        fn keys_parse_back(id in any::<[u8; 32]>(), index in any::<u32>(), due in any::<u64>()) {
            let id = Hash256::from_bytes(id);
            let due = Timestamp::from_millis(due);
            prop_assert_eq!(parse_duty_key(&duty_key(&id, index)).unwrap(), (id, index));
            prop_assert_eq!(parse_due_key(&due_key(due, &id, index)).unwrap(), (due, id, index));
            prop_assert!(due_key(due, &id, index) <= due_after(due));
            if let Some(next) = due.checked_add_millis(1) {
                prop_assert!(due_key(next, &Hash256::from_bytes([0; 32]), 0) > due_after(due));
            }
        }
    }

    #[test]
    fn other_versions_and_short_keys_are_corrupt() {
        let r = DutyRecord {
            v: 2,
            duty: Duty::Anonymize,
            due: None,
            fulfilled: None,
        };
        let bytes = tds_core::cbor::encode(&r).unwrap();
        let e = decode::<DutyRecord>(b"duty/rec/x", &bytes).unwrap_err();
        assert_eq!(e.code(), "guard.corrupt_record");
        assert!(e.to_string().contains("version 2"), "{e}");
        // An agreement record is not a duty record, and the reverse.
        let a = encode(
            b"k",
            &AgreementRecord {
                v: VERSION,
                ..AgreementRecord::default()
            },
        )
        .unwrap();
        assert!(decode::<DutyRecord>(b"k", &a).is_err());
        for k in [
            &b"duty/rec/"[..],
            b"duty/rec/abc",
            b"duty/due/12345678",
            b"",
        ] {
            assert_eq!(
                parse_duty_key(k).unwrap_err().code(),
                "guard.corrupt_record"
            );
            assert_eq!(parse_due_key(k).unwrap_err().code(), "guard.corrupt_record");
        }
        let id = Hash256::from_bytes([7; 32]);
        let mut long = duty_key(&id, 1);
        long.push(0);
        assert!(parse_duty_key(&long).is_err());
        let e = parse_duty_key(&long).unwrap_err().to_string();
        assert!(e.starts_with("duty record duty/rec/0707"), "{e}");
    }
}
