//! Writes the seed corpora in `fuzz/seeds/<target>/`.
//!
//! `cargo run --example gen_seeds` (inside `fuzz/`). Ed25519 signing is deterministic, so
//! running it again rewrites the same files; the seeds are committed and `run-smoke.sh`
//! copies them into the (ignored) `corpus/` directories.

use std::path::{Path, PathBuf};

use tds_core::cbor::{self, Value};
use tds_core::cose;
use tds_core::key::SigningKey;
use tds_fuzz::{sample_note, AnyPayload, Note, OTHER_KEY_SEED};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = fuzz.join("../spec/vectors");
    let cbor_dir = seed_dir(fuzz, "canonical_cbor")?;
    let env_dir = seed_dir(fuzz, "envelope")?;

    // RFC 8949 Appendix A: canonical and non-canonical items alike (the target checks
    // that the checker, the decoder and the canonicalizer agree on both kinds).
    let appendix: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(spec.join("cbor/appendix_a.json"))?)?;
    for (i, case) in appendix.iter().enumerate() {
        let hex_text = case["hex"].as_str().ok_or("appendix_a: no hex")?;
        write(
            &cbor_dir,
            &format!("appendix_a_{i:02}"),
            &hex::decode(hex_text)?,
        )?;
    }

    let key = tds_fuzz::key();
    let other = SigningKey::from_seed(&OTHER_KEY_SEED);
    let note = sample_note();
    let mut with_parent = sample_note();
    with_parent.parent = Some(tds_core::Domain::EVENT.hash(b"parent"));
    let payload = cbor::encode(&note)?;
    let nested = Value::Map(vec![
        (
            Value::Text("a".into()),
            Value::Array(vec![Value::Integer(-1), Value::Null]),
        ),
        (Value::Integer(1), Value::Bytes(vec![0; 40])),
        (Value::Text("ok".into()), Value::Bool(true)),
    ]);
    write(&cbor_dir, "tds_note", &payload)?;
    write(&cbor_dir, "tds_nested_map", &cbor::encode(&nested)?)?;

    // TDS envelopes signed by the key the target verifies with.
    let sign1 = cose::sign(&key, &note)?;
    write(&env_dir, "tds_sign1_note", &sign1)?;
    write(
        &env_dir,
        "tds_sign1_note_parent",
        &cose::sign(&key, &with_parent)?,
    )?;
    write(
        &env_dir,
        "tds_sign1_any",
        &cose::sign(&key, &AnyPayload(nested))?,
    )?;
    write(&env_dir, "tds_sign1_other_key", &cose::sign(&other, &note)?)?;
    write(
        &env_dir,
        "tds_sign_one_signer",
        &cose::sign_multi(&[&key], &note)?,
    )?;
    write(
        &env_dir,
        "tds_sign_two_signers",
        &cose::sign_multi(&[&key, &other], &note)?,
    )?;
    let countersigned = cose::add_signature::<Note>(&cose::sign_multi(&[&other], &note)?, &key)?;
    write(&env_dir, "tds_sign_countersigned", &countersigned)?;
    write(&cbor_dir, "tds_sign1_note", &sign1)?;

    // cose-wg examples: raw COSE_Sign1 messages with other headers and payloads.
    for sub in ["cose/eddsa-examples", "cose/sign1-tests"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(spec.join(sub))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.sort();
        for file in files {
            let case: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
            let Some(hex_text) = case["output"]["cbor"].as_str() else {
                continue;
            };
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or("file name")?;
            write(
                &env_dir,
                &format!("cose_wg_{stem}"),
                &hex::decode(hex_text)?,
            )?;
        }
    }

    // Credentials of the fixture authority (valid, revoked, expired at the target's
    // `NOW`), its revocation list, and one credential from an authority nobody trusts.
    let cred_dir = seed_dir(fuzz, "credential")?;
    let fixture = tds_fuzz::identity::fixture();
    for (i, envelope) in fixture.credentials.iter().enumerate() {
        write(&cred_dir, &format!("credential_serial_{}", i + 1), envelope)?;
    }
    write(&cred_dir, "revocation_list", &fixture.revocation_list)?;
    let mut stranger = tds_identity::Authority::new("Unknown Authority", other)?;
    let foreign = stranger.admit(
        &tds_identity::Admission {
            subject_key: key.public_key(),
            name: "Fuzz Member".into(),
            sectors: vec![tds_identity::Sector::FINANCE],
            roles: vec![tds_identity::Role::Consumer],
            jurisdiction: "FR".parse()?,
            not_before: tds_core::Timestamp::EPOCH,
            not_after: tds_core::Timestamp::from_millis(u64::MAX),
        },
        tds_fuzz::identity::NOW,
    )?;
    write(&cred_dir, "credential_untrusted_issuer", foreign.envelope())?;

    protocol_seeds(fuzz)?;
    signed_object_seeds(fuzz, &key)?;
    // Encrypted key files under the target's passphrase, at costs within its cap.
    let key_dir = seed_dir(fuzz, "key_file")?;
    let pass = tds_core::key::Passphrase::new("fuzz passphrase");
    for (name, m) in [("sealed_m8", 8), ("sealed_m64", 64)] {
        let pem = key
            .to_encrypted_pem(
                &pass,
                tds_core::key::KdfCost {
                    m_kib: m,
                    t: 1,
                    p: 1,
                },
            )
            .map_err(|e| e.to_string())?;
        write(&key_dir, name, pem.as_bytes())?;
    }
    join_and_rollover_seeds(fuzz, &key)?;
    let licence_dir = seed_dir(fuzz, "licence")?;
    for (name, bytes) in tds_fuzz::licence::seeds() {
        write(&licence_dir, name, &bytes)?;
    }
    Ok(())
}

/// Seeds of the `signed_objects` target: a usage report, a deletion receipt and a usage
/// record signed by the fixed key (envelopes and payloads), and a report whose period
/// runs backwards (signed without the rules).
fn signed_object_seeds(fuzz: &Path, key: &SigningKey) -> Result<(), Box<dyn std::error::Error>> {
    use tds_core::{Hash256, Timestamp};
    use tds_protocol::signed::{self, ActionUses, DeletionReceipt, UsageRecord, UsageReport};
    let dir = seed_dir(fuzz, "signed_objects")?;
    let other = SigningKey::from_seed(&OTHER_KEY_SEED);
    let agreement = tds_core::Domain::AGREEMENT.hash(b"agreement");
    let t = Timestamp::from_secs(1_800_000_000);
    let report = UsageReport {
        agreement,
        consumer: key.id(),
        consumer_key: key.public_key(),
        from: t,
        to: t.saturating_add_millis(86_400_000),
        uses: 3,
        bytes: 3 << 20,
        actions: vec![
            ActionUses {
                action: tds_policy::Action::Analyze,
                uses: 2,
            },
            ActionUses {
                action: tds_policy::Action::Read,
                uses: 1,
            },
        ],
        time: t.saturating_add_millis(86_400_000),
    };
    write(
        &dir,
        "usage_report",
        &signed::sign_usage_report(key, &report)?,
    )?;
    write(&dir, "usage_report_payload", &cbor::encode(&report)?)?;
    let mut backwards = report.clone();
    backwards.from = backwards.to.saturating_add_millis(1);
    write(
        &dir,
        "usage_report_backwards",
        &cose::sign(key, &backwards)?,
    )?;
    let receipt = DeletionReceipt {
        agreement,
        asset: tds_core::Domain::MANIFEST.hash(b"asset"),
        consumer: key.id(),
        consumer_key: key.public_key(),
        chunks: 3,
        bytes: 3 << 16,
        time: t,
    };
    write(
        &dir,
        "deletion_receipt",
        &signed::sign_deletion_receipt(key, &receipt)?,
    )?;
    write(&dir, "deletion_receipt_payload", &cbor::encode(&receipt)?)?;
    let record = UsageRecord {
        agreement,
        provider: other.id(),
        consumer: key.id(),
        transfer: Some(Hash256::from_bytes([7; 32])),
        uses: 1,
        bytes: 3 << 16,
        amount: tds_policy::Amount(125_000),
        currency: "CNY".parse()?,
        time: t,
        recorder: key.id(),
        recorder_key: key.public_key(),
    };
    write(
        &dir,
        "usage_record",
        &signed::sign_usage_record(key, &record)?,
    )?;
    write(&dir, "usage_record_payload", &cbor::encode(&record)?)?;
    Ok(())
}

/// Seeds of the `frame`, `message` and `session` targets (`tds_fuzz::protocol`).
fn protocol_seeds(fuzz: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use tds_fuzz::protocol;
    let frame_dir = seed_dir(fuzz, "frame")?;
    let message_dir = seed_dir(fuzz, "message")?;
    let session_dir = seed_dir(fuzz, "session")?;
    let mut counts = std::collections::HashMap::new();
    for m in protocol::sample_messages() {
        let n = counts.entry(m.name()).or_insert(0u32);
        *n += 1;
        let name = format!("{}_{}", m.name(), n);
        write(&message_dir, &name, &m.encode()?)?;
        write(
            &frame_dir,
            &format!("control_{name}"),
            &tds_protocol::frame::encode_control(&m)?,
        )?;
    }
    for name in tds_protocol::message::MESSAGE_NAMES {
        if !counts.contains_key(name) {
            return Err(format!("no seed for message {name}").into());
        }
    }
    for (i, f) in protocol::sample_data_frames().iter().enumerate() {
        write(&frame_dir, &format!("data_{i}"), f)?;
    }
    // Each script is played once here: it must pass the checks and reach what it is for.
    for (name, script, expect) in protocol::seed_scripts() {
        let outcome = protocol::run(&script);
        if !outcome.meets(expect) {
            return Err(
                format!("seed script {name} does not reach {expect:?}: {outcome:?}").into(),
            );
        }
        write(&session_dir, &name, &script)?;
    }
    Ok(())
}

/// Seeds of `join` (a signed admission request by the fixed key at `NOW`, its frame,
/// its payload) and `rollover` (the fixture authority's key endorsing another).
fn join_and_rollover_seeds(
    fuzz: &Path,
    key: &SigningKey,
) -> Result<(), Box<dyn std::error::Error>> {
    use tds_core::time::DAY_MS;
    use tds_core::Timestamp;
    use tds_fuzz::licence::NOW;
    let dir = seed_dir(fuzz, "join")?;
    let request = tds_transport::join::AdmissionRequest {
        version: tds_transport::join::ADMISSION_REQUEST_VERSION,
        applicant_key: key.public_key(),
        name: "Stadtwerke Beispiel".into(),
        sectors: vec![tds_identity::Sector::POWER],
        roles: vec![tds_identity::Role::Provider, tds_identity::Role::Consumer],
        jurisdiction: "CN-SX".parse().map_err(|_| "region")?,
        not_before: NOW,
        not_after: Timestamp::from_millis(NOW.as_millis() + 365 * DAY_MS),
        time: NOW,
        nonce: [7u8; 16].into(),
    };
    let signed = request.sign(key)?;
    write(&dir, "admission_request", &signed)?;
    write(&dir, "admission_request_payload", &cbor::encode(&request)?)?;
    let frame = tds_transport::join::JoinMessage::AdmissionRequest(
        tds_transport::join::AdmissionRequestMsg {
            request: signed.into(),
        },
    )
    .encode_frame()?;
    write(&dir, "admission_frame", &frame)?;

    let dir = seed_dir(fuzz, "rollover")?;
    let mut authority = tds_identity::Authority::new("Fuzz Data Space Authority", tds_fuzz::key())?;
    let (statement, _) = authority.rollover(SigningKey::from_seed(&OTHER_KEY_SEED), NOW)?;
    write(&dir, "rollover_to_other_key", statement.envelope())?;
    Ok(())
}

/// `seeds/<target>/`, or `$TDS_SEEDS_OUT/<target>/` when that is set: the fuzz campaign
/// (`run-campaign.sh`) writes a second set there from a `--cfg fuzzing` build, whose
/// signatures are the fuzzing stand-in (`tds_core::key::fuzzing_stand_in`), so the seeds
/// reach the logic behind signature checks in the fuzzers too.
fn seed_dir(fuzz: &Path, target: &str) -> std::io::Result<PathBuf> {
    let dir = match std::env::var_os("TDS_SEEDS_OUT") {
        Some(out) => PathBuf::from(out).join(target),
        None => fuzz.join("seeds").join(target),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(dir.join(name), bytes)
}
