//! Names a peer chooses never become paths: a provider's manifest whose title, keywords
//! and description are path traversals is published, listed, negotiated and fetched, and
//! no file appears anywhere but where each operator said (the consumer's output file,
//! the provider's data directory under names it derives from hashes).

use tds_identity::Sector;

use crate::common::*;

/// Every file under `dir`, relative, sorted.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_peers_never_become_paths() -> Res {
    let mut space = Space::new()?;
    let grid = space.member(11, Sector::POWER, "CN-SX")?;
    let bank = space.member(12, Sector::FINANCE, "CN-SX")?;
    let root = tempfile::tempdir()?;
    let (pdir, cdir, src) = (
        root.path().join("provider"),
        root.path().join("consumer"),
        root.path().join("source"),
    );
    std::fs::create_dir_all(&src)?;
    let provider = connector(&space, &grid, Some(&pdir)).await?;
    let consumer = connector(&space, &bank, Some(&cdir)).await?;
    let evil = "../../../../../../tmp/tds-pwned";
    let path = src.join("asset.bin");
    std::fs::write(&path, data(150_000, 4))?;
    let manifest = {
        let signed = manifest_for(&grid, &path, evil, 65536)?;
        let mut m = tds_core::cose::open::<tds_manifest::Manifest>(&signed)?
            .value()
            .clone();
        m.keywords = vec!["../../etc/passwd".into(), "/etc/shadow".into()];
        m.description = "..\\..\\windows\\system32".into();
        m.sign(grid.key.as_ref())?
    };
    let p = provider
        .publish(
            &manifest,
            tds_connector::Source::File(path),
            vec![terms(RESEARCH)?],
        )
        .await?;
    let offer_id = p.offers.first().copied().ok_or("no offer")?;
    let offer = provider.offer(&offer_id)?.ok_or("no offer")?;
    let addr = provider.local_addr()?;
    let page = within(
        "a catalog query",
        consumer.catalog(addr, Default::default(), None),
    )
    .await??;
    assert_eq!(
        page.items[0].manifest.manifest().title,
        evil,
        "the title is data, kept as is"
    );
    let agreement = within(
        "a negotiation",
        consumer.negotiate(addr, &offer, None, "research".parse()?),
    )
    .await??
    .id();
    let out = root.path().join("wanted.bin");
    within(
        "a fetch",
        consumer.fetch(
            addr,
            &agreement,
            tds_connector::FetchOptions::new(out.clone(), "research".parse()?),
        ),
    )
    .await??;
    assert_eq!(std::fs::read(&out)?, data(150_000, 4));
    // Nothing named after the peer's strings, anywhere under the root or in /tmp.
    assert!(!std::path::Path::new("/tmp/tds-pwned").exists());
    let all = files(root.path());
    for f in &all {
        assert!(
            !f.contains("pwned") && !f.contains("passwd"),
            "{f} in {all:?}"
        );
    }
    // The provider's own files are named by hashes it computed.
    for f in files(&pdir) {
        let ok = f == "connector.redb"
            || f.starts_with("log/")
            || (f.starts_with("trees/")
                && f.ends_with(".tree")
                && f.len() == "trees/".len() + 64 + ".tree".len());
        assert!(ok, "unexpected provider file {f}");
    }
    assert!(files(&cdir)
        .iter()
        .all(|f| f == "connector.redb" || f.starts_with("log/")));
    Ok(())
}
