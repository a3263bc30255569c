//! Writes seed inputs for the provenance fuzz targets (`fuzz/seeds/{event,checkpoint_note,
//! proof,evidence_bundle}`): `cargo run -p tds-provenance --example fuzz_seeds -- fuzz/seeds`.

#![expect(
    clippy::unwrap_used,
    reason = "example code: a failed unwrap ends the example with its message"
)]

use std::path::Path;

use tds_core::hash::Hash256;
use tds_core::key::SigningKey;
use tds_core::Timestamp;
use tds_identity::{Admission, Authority, Role, Sector};
use tds_provenance::event::{Annotation, Code, Event, EventBody, SignedObject};
use tds_provenance::store::MemoryStore;
use tds_provenance::witness;
use tds_provenance::{evidence, Log};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/seeds".into());
    let out = Path::new(&out);
    let node = SigningKey::from_seed(&[1; 32]);
    let actor = node.id();
    let log = Log::new(MemoryStore::new(), node);
    let agreement = Hash256::from_bytes([0xa0; 32]);
    let bodies = [
        EventBody::AgreementConcluded {
            agreement,
            negotiation: Hash256::from_bytes([2; 32]),
            provider: actor,
            consumer: Hash256::from_bytes([3; 32]),
            object: Some(SignedObject {
                kind: Code::new("agreement").unwrap(),
                id: agreement,
                bytes: vec![0xd2, 0x84],
            }),
        },
        EventBody::AccessDenied {
            requester: Hash256::from_bytes([4; 32]),
            target: Hash256::from_bytes([5; 32]),
            agreement: None,
            reasons: vec![Code::new("purpose/marketing").unwrap()],
        },
        EventBody::AgreementExpired { agreement },
        EventBody::Annotation {
            text: Annotation::new("maintenance").unwrap(),
        },
    ];
    for (i, b) in bodies.into_iter().enumerate() {
        let e = Event::new(
            tds_core::Timestamp::from_millis(1_700_000_000_000 + i as u64),
            actor,
            b,
        );
        write(out, "event", &format!("{i}"), &e.encode().unwrap());
        log.append(&e).unwrap();
    }
    let cp = log.checkpoint().unwrap();
    let mut authority =
        Authority::new("Seed authority", SigningKey::from_seed(&[0x42; 32])).unwrap();
    let at = Timestamp::from_secs(1_750_000_000);
    let credential = authority
        .admit(
            &Admission {
                subject_key: SigningKey::from_seed(&[1; 32]).public_key(),
                name: "Seed node".into(),
                sectors: vec![Sector::POWER],
                roles: vec![Role::Provider],
                jurisdiction: "CN".parse().unwrap(),
                not_before: at,
                not_after: at.saturating_add_millis(tds_core::time::DAY_MS),
            },
            at,
        )
        .unwrap()
        .into_envelope();
    let memory = witness::MemoryWitnessMemory::default();
    let cosigned = witness::Witness::new(authority.signer().as_ref(), &authority, &memory)
        .cosign(
            &log.verifier_key().unwrap(),
            cp.as_bytes(),
            None,
            &credential,
            at,
        )
        .unwrap()
        .note;
    write(out, "checkpoint_note", "signed", cp.as_bytes());
    write(out, "checkpoint_note", "cosigned", cosigned.as_bytes());
    write(
        out,
        "checkpoint_note",
        "vkey",
        log.verifier_key().unwrap().to_string().as_bytes(),
    );
    let p = serde_json::to_vec(&log.prove(1, None).unwrap()).unwrap();
    write(out, "proof", "inclusion", &p);
    let c = serde_json::to_vec(&log.consistency(2, Some(4)).unwrap()).unwrap();
    write(out, "proof", "consistency", &c);
    // The embedded agreement is a placeholder (this crate cannot sign one), so the bundle
    // decodes but does not verify: it seeds the decoder and the early checks.
    let b = evidence::export(&log, &agreement, &cosigned, vec![credential]).unwrap();
    let bytes = b.encode().unwrap();
    write(out, "evidence_bundle", "agreement", &bytes);
    println!("seeds written under {}", out.display());
}
