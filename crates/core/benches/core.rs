//! Benchmarks of the canonical codec and the signed envelope against their plain baselines.
//!
//! `cargo bench -p tds-core --bench core` runs the criterion groups, then a `ratio`
//! section that times each pair again, interleaved in the same process, and prints the
//! ratio of the medians. The machine is shared and noisy, so the ratios are the figures to
//! compare between runs, never the absolute times.
//!
//! The goals: canonical encode at most 1.5x plain cbor4ii, envelope sign and open+verify at
//! most 1.1x the bare Ed25519 operation on the same payload bytes.

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "bench code: a failed unwrap is a failed bench"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use tds_core::cbor::{self, Limits};
use tds_core::cose::{self, SignedObject};
use tds_core::key::SigningKey;
use tds_core::{Domain, Hash256};

/// A data-asset description of the size and shape TDS signs: ~15 fields in natural (not
/// canonical) order, so the canonical pass has to sort the keys as it would in real use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    id: String,
    title: String,
    description: String,
    publisher: String,
    created_at: u64,
    modified_at: u64,
    valid_until: u64,
    content_hash: Hash256,
    size_bytes: u64,
    media_type: String,
    keywords: Vec<String>,
    location: Location,
    superseded: Option<Hash256>,
    license: String,
    #[serde(with = "serde_bytes")]
    sample: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Location {
    region: String,
    grid_operator: String,
    latitude_micro: i64,
    longitude_micro: i64,
}

impl SignedObject for Record {
    const CONTENT_TYPE: &'static str = "application/tds.bench-record+cbor";
}

fn record() -> Record {
    Record {
        id: "urn:tds:asset:7f3c9a1e-5b2d-4e8f-9a61-0c4d2e7b8f13".into(),
        title: "Hourly feed-in measurements, substation Nord-7, 2025".into(),
        description: "Hourly active and reactive power measured at the 20 kV busbar of \
            substation Nord-7, aggregated from 14 feeders. Values are averages over the hour, \
            time-stamped at the end of the interval in UTC. Gaps shorter than two hours are \
            interpolated and flagged; longer gaps are left empty."
            .into(),
        publisher: "sha256:5a1f0e3c7b9d2e4f6a8c0b1d3e5f7a9c2b4d6e8f0a1c3e5b7d9f1a3c5e7b9d2f".into(),
        created_at: 1_735_689_600_000,
        modified_at: 1_750_000_000_000,
        valid_until: 1_767_225_600_000,
        content_hash: Domain::MANIFEST.hash(b"asset body"),
        size_bytes: 48_211_337,
        media_type: "application/vnd.apache.parquet".into(),
        keywords: [
            "energy",
            "feed-in",
            "substation",
            "hourly",
            "active-power",
            "reactive-power",
            "2025",
        ]
        .map(String::from)
        .to_vec(),
        location: Location {
            region: "DE-NI".into(),
            grid_operator: "Netzbetreiber Nord GmbH".into(),
            latitude_micro: 53_075_146,
            longitude_micro: 8_807_054,
        },
        superseded: Some(Domain::MANIFEST.hash(b"previous version")),
        license: "CC-BY-4.0".into(),
        sample: (0..512u32).map(|i| (i * 31 % 251) as u8).collect(),
    }
}

/// Plain cbor4ii encoding, starting from the same capacity `tds_core::cbor::encode` uses,
/// so the difference is the canonical pass alone.
fn plain_encode(r: &Record) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::with_capacity(128), r).unwrap()
}

struct Fixture {
    record: Record,
    canonical: Vec<u8>,
    plain: Vec<u8>,
    key: SigningKey,
    dalek: ed25519_dalek::SigningKey,
    envelope: Vec<u8>,
    raw_signature: ed25519_dalek::Signature,
}

impl Fixture {
    fn new() -> Fixture {
        let seed = [0x5a; 32];
        let record = record();
        let canonical = cbor::encode(&record).unwrap();
        let plain = plain_encode(&record);
        let key = SigningKey::from_seed(&seed);
        let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
        let envelope = cose::sign(&key, &record).unwrap();
        let raw_signature = dalek.sign(&canonical);
        Fixture {
            record,
            canonical,
            plain,
            key,
            dalek,
            envelope,
            raw_signature,
        }
    }

    fn open_verify(&self) -> Record {
        cose::open::<Record>(&self.envelope)
            .unwrap()
            .verify(&self.key.public_key())
            .unwrap()
            .into_value()
    }

    fn raw_verify(&self) {
        self.dalek
            .verifying_key()
            .verify_strict(&self.canonical, &self.raw_signature)
            .unwrap();
    }
}

fn codec(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("cbor");
    g.bench_function("encode/canonical", |b| {
        b.iter(|| cbor::encode(black_box(&f.record)).unwrap())
    });
    g.bench_function("encode/plain_cbor4ii", |b| {
        b.iter(|| plain_encode(black_box(&f.record)))
    });
    g.bench_function("decode/canonical", |b| {
        b.iter(|| cbor::decode::<Record>(black_box(&f.canonical)).unwrap())
    });
    g.bench_function("decode/plain_cbor4ii", |b| {
        b.iter(|| cbor4ii::serde::from_slice::<Record>(black_box(&f.plain)).unwrap())
    });
    // The parts of the canonical path, to see where its time goes.
    g.bench_function("part/canonicalize_plain_bytes", |b| {
        b.iter(|| cbor::canonicalize(black_box(&f.plain), &Limits::DEFAULT).unwrap())
    });
    g.bench_function("part/canonicalize_canonical_bytes", |b| {
        b.iter(|| cbor::canonicalize(black_box(&f.canonical), &Limits::DEFAULT).unwrap())
    });
    g.bench_function("part/validate", |b| {
        b.iter(|| cbor::validate(black_box(&f.canonical), &Limits::DEFAULT).unwrap())
    });
    g.finish();
}

fn envelope(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("envelope");
    g.bench_function("sign/cose", |b| {
        b.iter(|| cose::sign(&f.key, black_box(&f.record)).unwrap())
    });
    g.bench_function("sign/raw_ed25519", |b| {
        b.iter(|| f.dalek.sign(black_box(&f.canonical)))
    });
    g.bench_function("verify/cose_open_verify", |b| {
        b.iter(|| black_box(f).open_verify())
    });
    g.bench_function("verify/raw_verify_strict", |b| {
        b.iter(|| black_box(f).raw_verify())
    });
    g.finish();
}

/// Median time per call of `a` and of `b` over `rounds` batches of `per_round` calls each,
/// sampled alternately so that both see the same machine load.
fn paired_medians<A, B>(
    rounds: usize,
    per_round: u32,
    mut a: impl FnMut() -> A,
    mut b: impl FnMut() -> B,
) -> (Duration, Duration) {
    fn time<T>(n: u32, f: &mut impl FnMut() -> T) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        start.elapsed() / n
    }
    // Warm up caches and the allocator.
    time(per_round * 50, &mut a);
    time(per_round * 50, &mut b);
    let mut ta = Vec::with_capacity(rounds);
    let mut tb = Vec::with_capacity(rounds);
    for i in 0..rounds {
        if i % 2 == 0 {
            ta.push(time(per_round, &mut a));
            tb.push(time(per_round, &mut b));
        } else {
            tb.push(time(per_round, &mut b));
            ta.push(time(per_round, &mut a));
        }
    }
    ta.sort();
    tb.sort();
    (ta[rounds / 2], tb[rounds / 2])
}

fn report(name: &str, goal: Option<f64>, (a, b): (Duration, Duration)) {
    let ratio = a.as_secs_f64() / b.as_secs_f64();
    let verdict = match goal {
        Some(g) if ratio <= g => format!("goal <= {g:.2}x: met"),
        Some(g) => format!("goal <= {g:.2}x: MISSED"),
        None => "no goal".to_string(),
    };
    println!("ratio {name:<40} {ratio:>5.2}x  ({a:>10.2?} vs {b:>10.2?})  {verdict}");
}

/// The ratios, measured in this run. Skipped in criterion's `--test` mode
/// (`cargo test --benches`), where only a smoke check is wanted.
fn ratios(f: &Fixture) {
    // Many short batches (tens of microseconds each): on a shared, loaded machine most of
    // them run without being preempted, so the medians reflect the code, not the load.
    let fast = (2_001, 32);
    let slow = (1_001, 1);
    println!();
    println!(
        "record: {} bytes canonical, {} bytes plain cbor4ii; envelope {} bytes",
        f.canonical.len(),
        f.plain.len(),
        f.envelope.len()
    );
    println!("ratios: medians of per-call times, pairs sampled alternately in this run");
    report(
        "encode: canonical / plain cbor4ii",
        Some(1.5),
        paired_medians(
            fast.0,
            fast.1,
            || cbor::encode(black_box(&f.record)).unwrap(),
            || plain_encode(black_box(&f.record)),
        ),
    );
    report(
        "decode: canonical / plain cbor4ii",
        None,
        paired_medians(
            fast.0,
            fast.1 / 4,
            || cbor::decode::<Record>(black_box(&f.canonical)).unwrap(),
            || cbor4ii::serde::from_slice::<Record>(black_box(&f.plain)).unwrap(),
        ),
    );
    // Where the canonical encode's time goes: the second pass over the plain bytes.
    report(
        "part: canonicalize(plain bytes) / plain encode",
        None,
        paired_medians(
            fast.0,
            fast.1,
            || cbor::canonicalize(black_box(&f.plain), &Limits::DEFAULT).unwrap(),
            || plain_encode(black_box(&f.record)),
        ),
    );
    report(
        "part: canonicalize(sorted bytes) / plain encode",
        None,
        paired_medians(
            fast.0,
            fast.1,
            || cbor::canonicalize(black_box(&f.canonical), &Limits::DEFAULT).unwrap(),
            || plain_encode(black_box(&f.record)),
        ),
    );
    report(
        "part: validate / plain encode",
        None,
        paired_medians(
            fast.0,
            fast.1,
            || cbor::validate(black_box(&f.canonical), &Limits::DEFAULT).unwrap(),
            || plain_encode(black_box(&f.record)),
        ),
    );
    report(
        "sign: cose::sign / raw ed25519 sign",
        Some(1.1),
        paired_medians(
            slow.0,
            slow.1,
            || cose::sign(&f.key, black_box(&f.record)).unwrap(),
            || f.dalek.sign(black_box(&f.canonical)),
        ),
    );
    report(
        "verify: cose open+verify / raw verify_strict",
        Some(1.1),
        paired_medians(
            slow.0,
            slow.1,
            || black_box(f).open_verify(),
            || black_box(f).raw_verify(),
        ),
    );
}

fn main() {
    let fixture = Fixture::new();
    // Sanity: the baselines handle the same bytes the TDS paths do.
    assert_eq!(
        cbor::canonicalize(&fixture.plain, &Limits::DEFAULT).unwrap(),
        fixture.canonical
    );
    assert_eq!(fixture.open_verify(), fixture.record);
    fixture.raw_verify();

    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    codec(&mut c, &fixture);
    envelope(&mut c, &fixture);
    c.final_summary();

    // Only under `cargo bench`: not in `--test` mode, and not while profiling one bench.
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--bench") && !has("--profile-time") && !has("--list") {
        ratios(&fixture);
    }
}
