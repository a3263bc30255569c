//! The worked example in `spec/provenance.md` is generated here and checked on every test
//! run: `TDS_PRINT_SPEC_EXAMPLE=1 cargo test -p tds-provenance --test spec_example -- --nocapture`
//! prints it.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use tds_core::hash::Hash256;
use tds_core::key::SigningKey;
use tds_core::Timestamp;
use tds_identity::{Admission, Authority, Role, Sector};
use tds_provenance::event::{Annotation, Event, EventBody};
use tds_provenance::store::{LogStore, MemoryStore};
use tds_provenance::witness::{self, MemoryWitnessMemory, Witness};
use tds_provenance::Log;

fn example() -> String {
    let node = SigningKey::from_seed(&[1; 32]);
    let actor = node.id();
    let log = Log::new(MemoryStore::new(), node);
    let agreement = Hash256::from_bytes([0xab; 32]);
    let events = [
        Event::new(
            tds_core::Timestamp::from_millis(1_700_000_000_000),
            actor,
            EventBody::Annotation {
                text: Annotation::new("log opened").unwrap(),
            },
        ),
        Event::new(
            tds_core::Timestamp::from_millis(1_700_000_000_001),
            actor,
            EventBody::AgreementExpired { agreement },
        ),
        Event::new(
            tds_core::Timestamp::from_millis(1_700_000_000_002),
            actor,
            EventBody::Annotation {
                text: Annotation::new("maintenance").unwrap(),
            },
        ),
    ];
    let mut out = String::new();
    out.push_str("```text\n");
    out.push_str("node key seed        32 bytes of 0x01\n");
    out.push_str(&format!(
        "node public key      {}\n",
        SigningKey::from_seed(&[1; 32]).public_key().to_hex()
    ));
    out.push_str(&format!("actor (participant)  {actor}\n"));
    for (i, e) in events.iter().enumerate() {
        let bytes = e.encode().unwrap();
        log.append(e).unwrap();
        out.push_str(&format!(
            "event {i} ({})\n  cbor  {}\n  leaf  {}\n",
            e.kind(),
            hex::encode(&bytes),
            log.store().leaf(i as u64).unwrap().to_hex()
        ));
    }
    out.push_str(&format!(
        "root of 3            {}\n",
        log.root(3).unwrap().to_hex()
    ));
    out.push_str(&format!("origin               {}\n", log.origin()));
    out.push_str(&format!(
        "log verifier key     {}\n",
        log.verifier_key().unwrap()
    ));
    let witness_key = SigningKey::from_seed(&[2; 32]);
    out.push_str("witness key seed     32 bytes of 0x02\n");
    out.push_str(&format!(
        "witness vkey (0x04)  {}\n",
        witness::witness_key(&witness_key.public_key()).unwrap()
    ));
    out.push_str("```\n\nThe checkpoint note (`tds log checkpoint`):\n\n```text\n");
    let note = log.checkpoint().unwrap();
    out.push_str(&note);
    out.push_str(
        "```\n\nThe same note cosigned at time 1750000000 (`tds witness cosign`):\n\n```text\n",
    );
    // The witness (the authority) cosigns only logs of its members.
    let mut authority = Authority::new("Example", SigningKey::from_seed(&[2; 32])).unwrap();
    let at = Timestamp::from_secs(1_750_000_000);
    let credential = authority
        .admit(
            &Admission {
                subject_key: SigningKey::from_seed(&[1; 32]).public_key(),
                name: "Node".into(),
                sectors: vec![Sector::POWER],
                roles: vec![Role::Provider],
                jurisdiction: "CN".parse().unwrap(),
                not_before: at,
                not_after: at.saturating_add_millis(tds_core::time::DAY_MS),
            },
            at,
        )
        .unwrap();
    let memory = MemoryWitnessMemory::default();
    let cos = Witness::new(&witness_key, &authority, &memory)
        .cosign(
            &log.verifier_key().unwrap(),
            note.as_bytes(),
            None,
            credential.envelope(),
            at,
        )
        .unwrap();
    out.push_str(&cos.note);
    out.push_str("```\n\nThe inclusion proof of event 1 (`tds log prove --index 1`):\n\n```json\n");
    out.push_str(&serde_json::to_string(&log.prove(1, None).unwrap()).unwrap());
    out.push_str("\n```\n\nThe consistency proof from size 1 to 3 (`tds log consistency --from 1`):\n\n```json\n");
    out.push_str(&serde_json::to_string(&log.consistency(1, Some(3)).unwrap()).unwrap());
    out.push_str("\n```\n");
    out
}

#[test]
fn spec_contains_the_generated_example() {
    let text = example();
    if std::env::var_os("TDS_PRINT_SPEC_EXAMPLE").is_some() {
        println!("{text}");
    }
    let spec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/provenance.md"
    ))
    .unwrap();
    assert!(
        spec.contains(&text),
        "spec/provenance.md is out of date; regenerate its worked example:\n{text}"
    );
}
