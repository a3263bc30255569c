//! `tds status`: the node's identity, credential, admin URL, counts and alerts, from the
//! running node (through its admin API) or from the home (node stopped).
//!
//! JSON keys: `id`, `name`, `running`, `admin_url` (null when stopped), `listen`,
//! `credential` (`present`, `serial`, `not_before`, `not_after`, `valid_now`), `peers`,
//! `agreements`, `transfers`, `log_size`, `alerts` (by kind, since the node started).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tds_connector::store::{Store, Table};
use tds_core::Clock;

use super::admin::AdminState;
use super::home::NodeHome;

/// Rows of `table` (paged scans).
pub(crate) fn count(store: &dyn Store, table: Table) -> anyhow::Result<u64> {
    let mut n = 0u64;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = store.scan_prefix_after(table, b"", after.as_deref(), 1024)?;
        let Some((last, _)) = rows.last() else {
            return Ok(n);
        };
        n += rows.len() as u64;
        after = Some(last.clone());
    }
}

fn credential(home: &NodeHome) -> anyhow::Result<Value> {
    let Some(bytes) = home.credential()? else {
        return Ok(json!({"present": false}));
    };
    let c = tds_core::cose::open::<tds_identity::Credential>(&bytes)?;
    let c = c.value();
    let now = tds_core::time::SystemClock.now();
    Ok(json!({
        "present": true,
        "serial": c.serial(),
        "not_before": c.not_before().to_rfc3339(),
        "not_after": c.not_after().to_rfc3339(),
        "valid_now": c.not_before() <= now && now < c.not_after(),
    }))
}

fn alerts(map: BTreeMap<&'static str, u64>) -> Value {
    Value::Object(
        map.into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect(),
    )
}

/// The status of a running node (the admin API answers with it).
pub(crate) async fn running(s: &AdminState) -> anyhow::Result<Value> {
    let store = s.connector.store();
    Ok(json!({
        "id": s.connector.id().to_string(),
        "name": s.home.config.node.name,
        "running": true,
        "admin_url": &*s.url,
        "listen": s.connector.local_addr()?.to_string(),
        "credential": credential(&s.home)?,
        "key_encrypted": s.home.key_encrypted()?,
        "peers": s.connector.peer_count(),
        "agreements": count(store.as_ref(), Table::Agreements)?,
        "transfers": count(store.as_ref(), Table::Transfers)?,
        "log_size": s.connector.log().size(),
        "alerts": alerts(s.metrics.alerts()),
    }))
}

/// The status of a stopped node, read from its home.
pub(crate) fn offline(home: &NodeHome) -> anyhow::Result<Value> {
    let public = home.public_key()?;
    let data = home.data_dir();
    let (agreements, transfers) = if data.join(tds_connector::store::FILE_NAME).exists() {
        // Read-only first (a read-only home has a status too); a store left by a killed
        // node needs the repair only a writable open does.
        match tds_connector::store::row_counts_read_only(
            &data,
            &[Table::Agreements, Table::Transfers],
        )
        .as_deref()
        {
            Ok([a, t]) => (*a, *t),
            _ => {
                let store = tds_connector::store::RedbStore::open(&data)?;
                (
                    count(&store, Table::Agreements)?,
                    count(&store, Table::Transfers)?,
                )
            }
        }
    } else {
        (0, 0)
    };
    let log_dir = data.join("log");
    let log_size = if log_dir.exists() {
        use tds_provenance::store::LogStore;
        tds_provenance::store::FileStore::open(
            std::sync::Arc::new(tds_provenance::storage::DirStorage::new(&log_dir)),
            tds_provenance::store::OpenOptions::reader(),
        )?
        .size()
    } else {
        0
    };
    Ok(json!({
        "id": public.id().to_string(),
        "name": home.config.node.name,
        "running": false,
        "admin_url": null,
        "listen": home.config.network.listen.to_string(),
        "credential": credential(home)?,
        "key_encrypted": home.key_encrypted()?,
        "peers": 0,
        "agreements": agreements,
        "transfers": transfers,
        "log_size": log_size,
        "alerts": {},
    }))
}
