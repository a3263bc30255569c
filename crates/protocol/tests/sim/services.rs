//! Catalog queries with filters and a cursor, revocation notices, and checkpoint
//! exchange with split-view detection.

use serde_bytes::ByteBuf;
use tds_core::time::DAY_MS;
use tds_protocol::message::{CatalogFilter, CheckpointMsg};
use tds_protocol::session::{CatalogResult, Event, Mode};
use tds_protocol::sim::{NetConfig, Sim};
use tds_provenance::event::{Annotation, Event as LogEvent, EventBody};
use tds_provenance::store::MemoryStore;
use tds_provenance::Log;

use super::common::*;

fn pages(sim: &mut Sim, filter: CatalogFilter, limit: u64) -> Vec<Vec<CatalogResult>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let before = sim.sides[CONSUMER].journal.events.len();
        let now = sim.now;
        let q = sim.sides[CONSUMER]
            .session
            .query_catalog(now, filter.clone(), cursor.clone(), limit)
            .unwrap();
        sim.run_for(1000);
        let page = sim.sides[CONSUMER].journal.events[before..]
            .iter()
            .find_map(|e| match e {
                Event::CatalogPage { query, items, next } if *query == q => {
                    Some((items.clone(), next.clone()))
                }
                _ => None,
            })
            .expect("a page");
        out.push(page.0);
        match page.1 {
            Some(c) => cursor = Some(c),
            None => return out,
        }
        assert!(out.len() < 100, "the cursor must end");
    }
}

#[test]
fn catalog_filters_and_pages_with_a_cursor() {
    let w = world(2);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        41,
    );
    // Four more offers of the same asset, with different validity (so different ids).
    for days in 2..6u64 {
        let o = tds_policy::contract::create_offer(
            &w.provider,
            &tds_policy::contract::Offer {
                asset: w.asset.verified.id().to_string().parse().unwrap(),
                provider: w.provider.id(),
                provider_key: w.provider.public_key(),
                policy: tds_policy::parse("o", POLICY).unwrap(),
                price: None,
                not_before: NOW,
                not_after: NOW.saturating_add_millis(days * DAY_MS),
                licence: None,
            },
        )
        .unwrap();
        sim.sides[PROVIDER]
            .host
            .add_catalog_entry(o, w.manifest.clone());
    }
    let all = pages(&mut sim, CatalogFilter::default(), 2);
    assert_eq!(all.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
    let mut ids: Vec<_> = all.iter().flatten().map(|r| r.offer.id()).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "no offer twice across pages");
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "offer-id order");
    // Every result is the peer's, with its manifest checked.
    assert!(all
        .iter()
        .flatten()
        .all(|r| r.manifest.id() == w.asset.verified.id()));

    let hit = |f: CatalogFilter, sim: &mut Sim| pages(sim, f, 10).into_iter().flatten().count();
    let f = |s: &str, k: &str, c: &str| CatalogFilter {
        sector: (!s.is_empty()).then(|| s.to_owned()),
        keyword: (!k.is_empty()).then(|| k.to_owned()),
        classification: (!c.is_empty()).then(|| c.to_owned()),
        provider: None,
    };
    assert_eq!(hit(f("power", "", ""), &mut sim), 5);
    assert_eq!(hit(f("weather", "", ""), &mut sim), 0);
    assert_eq!(hit(f("", "LOAD", ""), &mut sim), 5);
    assert_eq!(hit(f("", "rainfall", ""), &mut sim), 0);
    assert_eq!(hit(f("power", "load", "core"), &mut sim), 0);
    assert_eq!(hit(f("power", "load", "general"), &mut sim), 5);
    let other = CatalogFilter {
        provider: Some(w.consumer.id()),
        ..CatalogFilter::default()
    };
    assert_eq!(hit(other, &mut sim), 0);
}

#[test]
fn revocation_notices_reach_the_application() {
    let mut w = world(2);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        43,
    );
    w.authority.revoke(1).unwrap();
    let crl = w
        .authority
        .revocation_list(NOW, NOW.saturating_add_millis(DAY_MS))
        .unwrap()
        .into_envelope();
    let now = sim.now;
    sim.sides[PROVIDER]
        .session
        .send_revocation_notice(now, crl.clone())
        .unwrap();
    sim.run_for(100);
    let got = sim.sides[CONSUMER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::RevocationList { crl } => Some(crl.clone()),
            _ => None,
        });
    assert_eq!(got.as_deref(), Some(&crl[..]));
}

#[test]
fn a_revoked_consumer_gets_no_transfer() {
    let mut w = world(2);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        44,
    );
    let agreement = agreed(&mut sim, &w);
    // The consumer's credential (serial 2) is revoked; the provider learns the new list.
    w.authority.revoke(2).unwrap();
    let crl = w
        .authority
        .revocation_list(NOW, NOW.saturating_add_millis(DAY_MS))
        .unwrap()
        .into_envelope();
    sim.sides[PROVIDER]
        .host
        .trust()
        .add_revocation_list(&crl, NOW)
        .unwrap();
    let now = sim.now;
    let t = sim.sides[CONSUMER]
        .session
        .request_transfer(now, agreement, purpose(), None, Default::default())
        .unwrap();
    sim.run_for(2000);
    assert_eq!(
        sim.sides[CONSUMER].session.transfer(t).unwrap().state,
        tds_protocol::TransferState::Terminated
    );
    let refusal = sim.sides[CONSUMER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::Refused { refusal, .. } => Some(refusal.code.clone()),
            _ => None,
        });
    assert_eq!(refusal.as_deref(), Some("identity.revoked"));
    assert!(sim.sides[CONSUMER].journal.chunks.is_empty());
}

fn log_with(w: &World, texts: &[&str]) -> Log<MemoryStore> {
    let log = Log::new(
        MemoryStore::new(),
        tds_core::SigningKey::from_seed(&PROVIDER_SEED),
    );
    for t in texts {
        log.append(&LogEvent::new(
            NOW,
            w.provider.id(),
            EventBody::Annotation {
                text: Annotation::new(t).unwrap(),
            },
        ))
        .unwrap();
    }
    log
}

fn serve(sim: &mut Sim, log: &Log<MemoryStore>, since: Option<u64>) {
    let note = log.checkpoint().unwrap();
    let consistency = match since {
        Some(s) if s <= log.size() => log.consistency(s, None).unwrap().proof,
        _ => Vec::new(),
    };
    sim.sides[PROVIDER].host.set_checkpoint(CheckpointMsg {
        checkpoint: ByteBuf::from(note.into_bytes()),
        consistency,
    });
}

#[test]
fn checkpoints_are_followed_and_a_split_view_is_raised() {
    let w = world(2);
    let mut sim = sim(
        &w,
        config(Mode::Auto),
        config(Mode::Auto),
        NetConfig::default(),
        45,
    );
    let log = log_with(&w, &["a", "b", "c"]);
    sim.sides[CONSUMER]
        .session
        .follow_log(log.verifier_key().unwrap(), vec![], None);

    serve(&mut sim, &log, None);
    let now = sim.now;
    sim.sides[CONSUMER].session.request_checkpoint(now).unwrap();
    sim.run_for(100);
    let seen = |sim: &Sim| {
        sim.sides[CONSUMER]
            .journal
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Checkpoint(c) => Some(c.size),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(seen(&sim), vec![3]);

    // The log grows honestly: consistent.
    let grown = log_with(&w, &["a", "b", "c", "d", "e"]);
    serve(&mut sim, &grown, Some(3));
    let now = sim.now;
    sim.sides[CONSUMER].session.request_checkpoint(now).unwrap();
    sim.run_for(100);
    assert_eq!(seen(&sim), vec![3, 5]);

    // A forked log signed by the same key: its size-6 tree does not extend the size-5
    // one this side saw.
    let forked = log_with(&w, &["a", "b", "x", "d", "e", "f"]);
    serve(&mut sim, &forked, Some(5));
    let now = sim.now;
    sim.sides[CONSUMER].session.request_checkpoint(now).unwrap();
    sim.run_for(100);
    let split = sim.sides[CONSUMER]
        .journal
        .events
        .iter()
        .find_map(|e| match e {
            Event::SplitView {
                old_size, new_size, ..
            } => Some((*old_size, *new_size)),
            _ => None,
        });
    assert_eq!(split, Some((5, 6)));
    assert_eq!(
        seen(&sim),
        vec![3, 5],
        "the forked checkpoint is not taken as seen"
    );
}
