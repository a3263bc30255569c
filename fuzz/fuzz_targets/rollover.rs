//! Authority key rollover statements: opening never panics, a statement the trust store
//! follows was signed by a key it trusted (the fixture authority's) and makes its new key
//! trusted for the same authority; refused statements change nothing.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tds_core::cose;
use tds_fuzz::identity::Fixture;
use tds_identity::{KeyRollover, ParticipantId};

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(tds_fuzz::identity::fixture)
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let opened = cose::open::<KeyRollover>(data).ok();
    let mut store = f.store.clone();
    let before: Vec<ParticipantId> = store.keys().map(|(id, _)| *id).collect();
    match store.add_rollover(data) {
        Ok(new) => {
            let r = opened.expect("the store followed what open refuses");
            let r = r.value();
            assert_eq!(ParticipantId::of(r.new_key()), new);
            assert!(store.is_trusted(&new), "the new key is not trusted");
            assert!(
                before.contains(&ParticipantId::of(r.old_key())),
                "followed a rollover signed by an untrusted key"
            );
            assert!(store.same_authority(&new, &f.authority));
        }
        Err(_) => {
            let after: Vec<ParticipantId> = store.keys().map(|(id, _)| *id).collect();
            assert_eq!(before, after, "a refused rollover changed the store");
        }
    }
});
