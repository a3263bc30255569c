//! `spec/encoding.md` and `spec/vectors/tds/*.json` against `tds-core`.
//!
//! Every marked block of the document, every row of its marked tables and every vector
//! is recomputed here; any difference fails. `TDS_SPEC_BLESS=1` rewrites the worked
//! examples and `envelope.json` from the code instead (then review the diff).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tds_core::cbor::{self, Limits, Value};
use tds_core::cose::{self, CoseSign1, SignedObject};
use tds_core::hash::Hash256;
use tds_spec::example::{key_a, key_b, worked_values, Example, Rendered, EXAMPLE_TAG, SEED_A};
use tds_spec::markdown::{fenced_blocks, replace_blocks, table_rows, BlockValue};
use tds_spec::variant_name;
use tds_spec::vectors::{
    decode_as, envelope_cases, run_envelope, CaseLimits, CborCase, EnvelopeCase, TypedCase,
};

fn spec_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A file of `spec/`; test helpers return errors and leave the panicking to the tests.
fn read(rel: &str) -> Result<String, String> {
    std::fs::read_to_string(spec_path(rel)).map_err(|e| format!("{rel}: {e}"))
}

/// Rewrites a file of `spec/` atomically: tests run in parallel and read these files.
fn write(rel: &str, contents: &str) -> Result<(), String> {
    tds_core::fs::write_atomic(&spec_path(rel), contents.as_bytes(), 0o644, true)
        .map_err(|e| e.to_string())
}

fn bless() -> bool {
    std::env::var_os("TDS_SPEC_BLESS").is_some_and(|v| v != "0" && !v.is_empty())
}

fn h(s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("{s}: {e}"))
}

/// The cases of a vector file, after checking that every object has exactly the allowed
/// fields (`required` always, `optional` maybe) so the schema stays strict.
fn load<T: serde::de::DeserializeOwned>(
    rel: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<Vec<T>, String> {
    let text = read(rel)?;
    let raw: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&text).map_err(|e| format!("{rel}: {e}"))?;
    let mut names = BTreeSet::new();
    for obj in &raw {
        let name = obj.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        assert!(
            names.insert(name.to_owned()),
            "{rel}: duplicate name {name}"
        );
        for field in required {
            assert!(obj.contains_key(*field), "{rel}: {name}: missing {field}");
        }
        for field in obj.keys() {
            assert!(
                required.contains(&field.as_str()) || optional.contains(&field.as_str()),
                "{rel}: {name}: unknown field {field}"
            );
        }
    }
    serde_json::from_str(&text).map_err(|e| format!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Worked examples.
// ---------------------------------------------------------------------------------------

#[test]
fn worked_examples_match_the_code() {
    let values = worked_values().unwrap();
    let mut doc = read("encoding.md").unwrap();
    if bless() {
        let by_name: BTreeMap<_, _> = values.iter().cloned().collect();
        doc = replace_blocks(&doc, |b| match b.worked_example() {
            Some(name) => match by_name.get(name) {
                Some(v) => v.block_body().map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        })
        .unwrap();
        write("encoding.md", &doc).unwrap();
    }
    if let Err(e) = check_worked_examples(&doc, &values) {
        panic!("encoding.md: {e}");
    }
}

/// The checker itself is checked: one changed digit, a dropped block or a duplicated one
/// must each be caught.
#[test]
fn worked_example_check_catches_drift() {
    let values = worked_values().unwrap();
    let doc = read("encoding.md").unwrap();
    check_worked_examples(&doc, &values).unwrap();

    let flipped = replace_blocks(&doc, |b| {
        Ok((b.worked_example() == Some("signature")).then(|| b.body.replacen('d', "e", 1)))
    })
    .unwrap();
    let err = check_worked_examples(&flipped, &values).unwrap_err();
    assert!(err.contains("signature differs"), "{err}");

    let dropped = doc.replace("worked-example:envelope-id", "text");
    let err = check_worked_examples(&dropped, &values).unwrap_err();
    assert!(err.contains("lacks worked example envelope-id"), "{err}");

    let twice = format!("{doc}\n```text worked-example:key-id-b\nx\n```\n");
    let err = check_worked_examples(&twice, &values).unwrap_err();
    assert!(err.contains("key-id-b appears twice"), "{err}");
}

/// Compares every marked block of `doc` with the computed values.
fn check_worked_examples(doc: &str, values: &[(&str, Rendered)]) -> Result<(), String> {
    let blocks = fenced_blocks(doc).map_err(|e| e.to_string())?;
    let mut seen = BTreeSet::new();
    for block in &blocks {
        let Some(name) = block.worked_example() else {
            continue;
        };
        let line = block.line;
        if !seen.insert(name) {
            return Err(format!("line {line}: {name} appears twice"));
        }
        let Some((_, expected)) = values.iter().find(|(n, _)| *n == name) else {
            return Err(format!("line {line}: no worked example is called {name}"));
        };
        let stated = block.value().map_err(|e| e.to_string())?;
        let want = match expected {
            Rendered::Cbor(b) | Rendered::Header(b) | Rendered::Raw(b) => {
                if block.lang() != "hex" {
                    return Err(format!("line {line}: {name} must be a hex block"));
                }
                BlockValue::Bytes(b.clone())
            }
            Rendered::Text(t) => BlockValue::Text(t.clone()),
        };
        if stated != want {
            let body = expected.block_body().map_err(|e| e.to_string())?;
            return Err(format!(
                "line {line}: worked example {name} differs from the code, which gives:\n{body}"
            ));
        }
    }
    match values.iter().find(|(name, _)| !seen.contains(name)) {
        Some((name, _)) => Err(format!("lacks worked example {name}")),
        None => Ok(()),
    }
}

/// The worked example rebuilt from first principles (plain SHA-256, bytes written by
/// hand), so the spec's numbers are checked by something other than the code that made
/// them.
#[test]
fn worked_example_from_first_principles() {
    let a = key_a();
    let example = Example::worked();
    let pk = a.public_key();
    // RFC 8032 public key of the seed 01 × 32, as libsodium and others derive it.
    assert_eq!(
        pk.to_hex(),
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    );

    let text = |t: &str| [vec![0x60 + t.len() as u8], t.as_bytes().to_vec()].concat();
    let mut payload = vec![0xa6];
    payload.extend(text("n"));
    payload.push(0x01);
    payload.extend(text("at"));
    payload.push(0x1b);
    payload.extend(1_700_000_000_000u64.to_be_bytes());
    payload.extend(text("data"));
    payload.extend([0x42, 0xca, 0xfe]);
    payload.extend(text("kind"));
    payload.extend(text("example"));
    payload.extend(text("note"));
    payload.push(0xf6);
    payload.extend(text("owner"));
    payload.extend([0x58, 0x20]);
    payload.extend(pk.as_bytes());
    assert_eq!(cbor::encode(&example).unwrap(), payload);
    assert_eq!(cbor::decode::<Example>(&payload).unwrap(), example);

    // The key file: PKCS#8 v2 (RFC 5958) with the seed and the public key, as §6.4 says.
    let pem = a.to_pkcs8_pem().unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap();
    let mut want = h("3051020101300506032b657004220420").unwrap();
    want.extend(SEED_A);
    want.extend(h("812100").unwrap());
    want.extend(pk.as_bytes());
    assert_eq!(der, want);

    let tagged_hash =
        |tag: &str, bytes: &[u8]| Hash256::sha256(&[tag.as_bytes(), &[0], bytes].concat());
    let object_id = tagged_hash(EXAMPLE_TAG, &payload);
    let key_id = tagged_hash("tds/participant/v1", pk.as_bytes());
    assert_eq!(a.id(), key_id);

    let mut protected = vec![0xa3, 0x01, 0x27, 0x03];
    protected.extend([0x78, Example::CONTENT_TYPE.len() as u8]);
    protected.extend(Example::CONTENT_TYPE.as_bytes());
    protected.extend([0x04, 0x58, 0x20]);
    protected.extend(key_id.as_bytes());

    let bstr = |b: &[u8]| {
        let mut out = match b.len() {
            n @ 0..=23 => vec![0x40 + n as u8],
            n @ 24..=255 => vec![0x58, n as u8],
            n => [vec![0x59], (n as u16).to_be_bytes().to_vec()].concat(),
        };
        out.extend(b);
        out
    };
    let mut tbs = vec![0x84];
    tbs.extend(text("Signature1"));
    tbs.extend(bstr(&protected));
    tbs.push(0x40);
    tbs.extend(bstr(&payload));

    let envelope = cose::sign(&a, &example).unwrap();
    let signature = envelope[envelope.len() - 64..].to_vec();
    pk.verify(&tbs, &signature).unwrap();
    let mut expected = vec![0xd2, 0x84];
    expected.extend(bstr(&protected));
    expected.push(0xa0);
    expected.extend(bstr(&payload));
    expected.extend([0x58, 0x40]);
    expected.extend(&signature);
    assert_eq!(envelope, expected);

    let raw = CoseSign1::from_slice(&envelope).unwrap();
    assert_eq!(raw.protected, protected);
    assert_eq!(raw.to_be_signed(&[], None).unwrap(), tbs);

    let values: BTreeMap<_, _> = worked_values().unwrap().into_iter().collect();
    assert_eq!(values["object-id"], Rendered::Text(object_id.to_string()));
    assert_eq!(values["key-id-a"], Rendered::Text(key_id.to_string()));
    assert_eq!(
        values["envelope-id"],
        Rendered::Text(tagged_hash("tds/envelope/v1", &envelope).to_string())
    );

    // The COSE_Sign: body {3: content type}, signers {1: -8, 4: kid} in order A, B.
    let b = key_b();
    let multi = cose::sign_multi(&[&a, &b], &example).unwrap();
    let mut body = vec![0xa1, 0x03, 0x78, Example::CONTENT_TYPE.len() as u8];
    body.extend(Example::CONTENT_TYPE.as_bytes());
    let signer = |id: Hash256| [&[0xa2, 0x01, 0x27, 0x04, 0x58, 0x20][..], id.as_bytes()].concat();
    let mut prefix = vec![0xd8, 0x62, 0x84];
    prefix.extend(bstr(&body));
    prefix.push(0xa0);
    prefix.extend(bstr(&payload));
    prefix.push(0x82);
    assert!(multi.starts_with(&prefix));
    let mut rest = &multi[prefix.len()..];
    for (key, id) in [(&a, a.id()), (&b, b.id())] {
        let sp = signer(id);
        let mut head = vec![0x83];
        head.extend(bstr(&sp));
        head.extend([0xa0, 0x58, 0x40]);
        assert!(rest.starts_with(&head));
        let sig = &rest[head.len()..head.len() + 64];
        let mut tbs = vec![0x85];
        tbs.extend(text("Signature"));
        tbs.extend(bstr(&body));
        tbs.extend(bstr(&sp));
        tbs.push(0x40);
        tbs.extend(bstr(&payload));
        key.public_key().verify(&tbs, sig).unwrap();
        rest = &rest[head.len() + 64..];
    }
    assert!(rest.is_empty());
}

// ---------------------------------------------------------------------------------------
// canonical-cbor.json
// ---------------------------------------------------------------------------------------

fn cbor_cases() -> Result<Vec<CborCase>, String> {
    load(
        "vectors/tds/canonical-cbor.json",
        &["name", "hex", "valid", "error", "canonical"],
        &["limits"],
    )
}

#[test]
fn canonical_cbor_vectors() {
    let cases = cbor_cases().unwrap();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    assert!(cases.iter().any(|c| c.valid) && cases.iter().any(|c| !c.valid));
    for case in &cases {
        let name = &case.name;
        let bytes = h(&case.hex).unwrap();
        let limits = CaseLimits::limits(case.limits.as_ref());
        let result = cbor::validate(&bytes, &limits);
        match (&result, case.valid, &case.error) {
            (Ok(()), true, None) => {}
            (Err(e), false, Some(want)) => {
                assert_eq!(&variant_name(&format!("{e:?}")), want, "{name}: {e}");
            }
            _ => panic!(
                "{name}: validate gives {result:?}, the vector says valid={} error={:?}",
                case.valid, case.error
            ),
        }
        let canonical = cbor::canonicalize(&bytes, &limits).ok().map(hex::encode);
        assert_eq!(canonical, case.canonical, "{name}: canonicalize");
        if case.valid {
            assert_eq!(case.canonical.as_deref(), Some(case.hex.as_str()), "{name}");
            // Accepted bytes decode and encode back to themselves.
            let value: Value = cbor::decode_with(&bytes, &limits)
                .unwrap_or_else(|e| panic!("{name}: decode: {e}"));
            assert_eq!(cbor::encode_with(&value, &limits).unwrap(), bytes, "{name}");
        }
    }
}

/// The rejection table of encoding.md lists exactly the cases of canonical-cbor.json.
#[test]
fn canonical_cbor_table_matches_the_vectors() {
    let cases = cbor_cases().unwrap();
    let rows = table_rows(&read("encoding.md").unwrap(), "canonical-cbor").unwrap();
    let table: Vec<_> = rows
        .iter()
        .map(|r| {
            assert_eq!(
                r.len(),
                6,
                "row {r:?}: case | rule | hex | limits | validate | canonicalize"
            );
            (
                r[0].clone(),
                (r[2].clone(), r[3].clone(), r[4].clone(), r[5].clone()),
            )
        })
        .collect();
    let table_names: Vec<_> = table.iter().map(|(n, _)| n.clone()).collect();
    let case_names: Vec<_> = cases.iter().map(|c| c.name.clone()).collect();
    assert_eq!(
        table_names, case_names,
        "the table and the vectors list different cases (or order)"
    );
    for (case, (_, (hex, limits, result, canonical))) in cases.iter().zip(&table) {
        let name = &case.name;
        let want_hex = if case.hex.is_empty() {
            "(empty)"
        } else {
            case.hex.as_str()
        };
        assert_eq!(hex, want_hex, "{name}: hex");
        assert_eq!(
            limits,
            &CaseLimits::describe(case.limits.as_ref()),
            "{name}: limits"
        );
        let want_result = case.error.clone().unwrap_or_else(|| "ok".into());
        assert_eq!(result, &want_result, "{name}: result");
        let want_canonical = match &case.canonical {
            None => "refused".to_owned(),
            Some(c) if *c == case.hex => "same".to_owned(),
            Some(c) => c.clone(),
        };
        assert_eq!(canonical, &want_canonical, "{name}: canonicalize");
    }
}

/// Every `CborError` variant that `validate` can return has a vector.
#[test]
fn every_validate_error_has_a_vector() {
    let errors: BTreeSet<_> = cbor_cases()
        .unwrap()
        .into_iter()
        .filter_map(|c| c.error)
        .collect();
    for variant in [
        "Truncated",
        "TrailingBytes",
        "NonMinimal",
        "IndefiniteLength",
        "Malformed",
        "UnsortedMapKeys",
        "DuplicateMapKey",
        "FloatNotAllowed",
        "NonMinimalFloat",
        "TagNotAllowed",
        "SimpleNotAllowed",
        "InvalidUtf8",
        "TooDeep",
        "TooLarge",
        "LengthTooLarge",
    ] {
        assert!(errors.contains(variant), "no vector yields {variant}");
    }
}

// ---------------------------------------------------------------------------------------
// typed-decode.json
// ---------------------------------------------------------------------------------------

#[test]
fn typed_decode_vectors() {
    let cases: Vec<TypedCase> = load(
        "vectors/tds/typed-decode.json",
        &["name", "type", "hex", "valid", "error"],
        &[],
    )
    .unwrap();
    for case in &cases {
        let name = &case.name;
        let bytes = h(&case.hex).unwrap();
        cbor::validate(&bytes, &Limits::DEFAULT)
            .unwrap_or_else(|e| panic!("{name}: typed cases are canonical CBOR: {e}"));
        let result = decode_as(&case.type_name, &bytes).unwrap();
        match (&result, case.valid, &case.error) {
            (Ok(()), true, None) => {}
            (Err(e), false, Some(want)) => {
                assert_eq!(&variant_name(&format!("{e:?}")), want, "{name}: {e}");
            }
            _ => panic!(
                "{name}: decode gives {result:?}, the vector says valid={} error={:?}",
                case.valid, case.error
            ),
        }
    }
    let rows = table_rows(&read("encoding.md").unwrap(), "typed-decode").unwrap();
    let table: Vec<_> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.len(), 5, "row {r:?}: case | type | rule | hex | decode");
            (r[0].clone(), r[1].clone(), r[3].clone(), r[4].clone())
        })
        .collect();
    let want: Vec<_> = cases
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.type_name.clone(),
                c.hex.clone(),
                c.error.clone().unwrap_or_else(|| "ok".into()),
            )
        })
        .collect();
    assert_eq!(
        table, want,
        "the typed-decode table differs from the vectors"
    );
}

// ---------------------------------------------------------------------------------------
// envelope.json
// ---------------------------------------------------------------------------------------

#[test]
fn envelope_vectors() {
    let generated = envelope_cases().unwrap();
    let rel = "vectors/tds/envelope.json";
    if bless() {
        let text = serde_json::to_string_pretty(&generated).unwrap();
        write(rel, &(text + "\n")).unwrap();
    }
    let cases: Vec<EnvelopeCase> = load(
        rel,
        &[
            "name",
            "rule",
            "structure",
            "hex",
            "verify_with",
            "valid",
            "stage",
            "error",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        cases, generated,
        "{rel} is not what the generator makes; rerun with TDS_SPEC_BLESS=1"
    );
    for case in &cases {
        let name = &case.name;
        let result = run_envelope(case).unwrap();
        match (&result, case.valid) {
            (Ok(()), true) => assert!(case.stage.is_none() && case.error.is_none(), "{name}"),
            (Err(r), false) => {
                assert_eq!(Some(r.stage), case.stage.as_deref(), "{name}: stage");
                assert_eq!(Some(&r.error), case.error.as_ref(), "{name}: error");
            }
            _ => panic!(
                "{name}: gives {result:?}, the vector says valid={}",
                case.valid
            ),
        }
    }
    let rows = table_rows(&read("encoding.md").unwrap(), "envelope").unwrap();
    let table: Vec<_> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.len(), 4, "row {r:?}: case | rule | stage | error");
            (r[0].clone(), r[2].clone(), r[3].clone())
        })
        .collect();
    let want: Vec<_> = cases
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.stage.clone().unwrap_or_else(|| "—".into()),
                c.error.clone().unwrap_or_else(|| "ok".into()),
            )
        })
        .collect();
    assert_eq!(table, want, "the envelope table differs from the vectors");
}

/// The worked envelope is what `tds inspect` would call an example.
#[test]
fn content_type_is_visible_without_verifying() {
    let envelope = cose::sign(&key_a(), &Example::worked()).unwrap();
    assert_eq!(
        cose::peek_content_type(&envelope).unwrap(),
        "application/tds.example+cbor"
    );
}
