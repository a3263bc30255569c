//! The operator verbs as operations on a connector: the running node runs them when its
//! admin API is called (`POST /v1/op/NAME` with the arguments as a JSON object), a verb
//! on a stopped node runs them on a connector it starts from the home for the call. Both
//! paths give the same JSON (spec/node.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};
use tds_connector::records::{AgreementRecord, AssetRecord, OfferRecord};
use tds_connector::store::Table;
use tds_connector::{Connector, FetchOptions, OfferTerms, Source};
use tds_core::time::{SystemClock, DAY_MS};
use tds_core::{Clock, Hash256};
use tds_manifest::content::ContentBuilder;
use tds_manifest::{ChunkSize, Classification, Manifest, PersonalInfo, MANIFEST_VERSION};
use tds_policy::{Action, Purpose};

use super::home::NodeHome;

/// One admin API operation with its parsed arguments: what `POST /v1/op/NAME` names.
enum Op {
    AssetAdd(AssetAdd),
    AssetList,
    CatalogSearch(CatalogSearch),
    Negotiate(Negotiate),
    Fetch(Fetch),
    Agreements,
    Terminate(Terminate),
    Use(Use),
    Duties,
    Delete(Delete),
    /// `log_annotate`, `log_checkpoint`, `log_record`, `log_witnessed`: the log verbs
    /// parse their own arguments (`cmd::log::node_op`).
    Log(&'static str, Value),
    Backup(BackupOp),
}

/// The log operations, by name.
const LOG_OPS: [&str; 4] = [
    "log_annotate",
    "log_checkpoint",
    "log_record",
    "log_witnessed",
];

impl Op {
    /// Operation `name` with its arguments parsed (nothing runs yet).
    fn parse(name: &str, args: Value) -> anyhow::Result<Op> {
        Ok(match name {
            "asset_add" => Op::AssetAdd(parse(args)?),
            "asset_list" => Op::AssetList,
            "catalog_search" => Op::CatalogSearch(parse(args)?),
            "negotiate" => Op::Negotiate(parse(args)?),
            "fetch" => Op::Fetch(parse(args)?),
            "agreements" => Op::Agreements,
            "agreement_terminate" => Op::Terminate(parse(args)?),
            "use" => Op::Use(parse(args)?),
            "duties" => Op::Duties,
            "delete" => Op::Delete(parse(args)?),
            "backup" => Op::Backup(parse(args)?),
            other => match LOG_OPS.iter().find(|op| **op == other) {
                Some(op) => Op::Log(op, args),
                None => bail!("no operation {other:?}"),
            },
        })
    }
}

/// Runs operation `name` with `args` on `connector`.
pub(crate) async fn run(
    connector: &Connector,
    home: &NodeHome,
    name: &str,
    args: Value,
    progress: Option<tds_connector::ProgressFn>,
) -> anyhow::Result<Value> {
    match Op::parse(name, args)? {
        Op::AssetAdd(a) => asset_add(connector, home, a).await,
        Op::AssetList => asset_list(connector),
        Op::CatalogSearch(a) => catalog_search(connector, home, a).await,
        Op::Negotiate(a) => negotiate(connector, a).await,
        Op::Fetch(a) => fetch(connector, a, progress).await,
        Op::Agreements => agreements(connector),
        Op::Terminate(a) => terminate(connector, a).await,
        Op::Use(a) => use_data(connector, a),
        Op::Duties => duties(connector),
        Op::Delete(a) => delete(connector, a).await,
        Op::Log(name, args) => crate::cmd::log::node_op(connector, name, &args).await,
        Op::Backup(a) => {
            if !a.out.is_absolute() {
                bail!("out {:?}: not an absolute path", a.out);
            }
            super::backup::write_archive(home, Some(connector), &a.out).await
        }
    }
}

/// `backup`: where to write the archive.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupOp {
    out: PathBuf,
}

/// Parses the arguments of operation `name` without running it (what the admin API does
/// with a request body before anything happens): the fuzzing seam of the admin API.
pub(crate) fn check_args(name: &str, args: Value) -> anyhow::Result<()> {
    Op::parse(name, args).map(drop)
}

fn parse<T: for<'de> Deserialize<'de>>(args: Value) -> anyhow::Result<T> {
    serde_json::from_value(args).map_err(|e| anyhow!("arguments: {e}"))
}

fn hash(text: &str, what: &str) -> anyhow::Result<Hash256> {
    text.parse()
        .map_err(|_| anyhow!("{what} {text:?} is not an id (sha256:<64 hex digits>)"))
}

/// Every row of `table` (paged).
fn rows(connector: &Connector, table: Table) -> anyhow::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = connector
            .store()
            .scan_prefix_after(table, b"", after.as_deref(), 1024)?;
        let Some((last, _)) = page.last() else {
            return Ok(out);
        };
        after = Some(last.clone());
        out.extend(page);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssetAdd {
    pub(crate) file: PathBuf,
    pub(crate) title: String,
    pub(crate) classification: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) keywords: Vec<String>,
    #[serde(default)]
    pub(crate) personal: Option<String>,
    /// Policy text (`--policy FILE`'s content).
    #[serde(default)]
    pub(crate) policy: Option<String>,
    /// A sector template name (`--template`).
    #[serde(default)]
    pub(crate) template: Option<String>,
    /// Price: amount in the currency's units (decimal text) and currency.
    #[serde(default)]
    pub(crate) price: Option<String>,
    #[serde(default)]
    pub(crate) currency: Option<String>,
    /// The authority's licence file this offer of public data is made under
    /// (`--licence`, an absolute path).
    #[serde(default)]
    pub(crate) licence: Option<PathBuf>,
    /// Days the offer is valid.
    #[serde(default = "default_days")]
    pub(crate) days: u64,
}

fn default_days() -> u64 {
    365
}

async fn asset_add(c: &Connector, home: &NodeHome, a: AssetAdd) -> anyhow::Result<Value> {
    let key = home.key()?;
    let classification: Classification = a.classification.parse().map_err(|_| {
        anyhow!(
            "classification {:?}: expected general, important or core",
            a.classification
        )
    })?;
    let personal: PersonalInfo = match &a.personal {
        Some(p) => p
            .parse()
            .map_err(|_| anyhow!("personal {p:?}: expected none, personal or sensitive"))?,
        None => PersonalInfo::None,
    };
    let sector: tds_identity::Sector = home.config.node.sector.parse().map_err(|_| {
        anyhow!(
            "config node.sector {:?} is not a sector",
            home.config.node.sector
        )
    })?;
    let (policy_name, policy_text) = match (&a.policy, &a.template) {
        (Some(_), Some(_)) => bail!("give --policy or --template, not both"),
        (Some(text), None) => ("policy".to_owned(), text.clone()),
        (None, template) => {
            let name = template
                .clone()
                .unwrap_or_else(|| home.config.node.sector.clone());
            let text = tds_policy::templates::template(&name).ok_or_else(|| {
                anyhow!("no policy template {name:?} (power, transport, weather, finance, healthcare, licence)")
            })?;
            (name, text.to_owned())
        }
    };
    let policy =
        tds_policy::parse(&policy_name, &policy_text).map_err(|e| anyhow!("policy: {e}"))?;
    let price = match (&a.price, &a.currency) {
        (None, None) => None,
        (Some(amount), Some(currency)) => Some(tds_policy::contract::Price {
            amount: amount
                .parse()
                .map_err(|_| anyhow!("price {amount:?} is not an amount"))?,
            currency: currency
                .parse()
                .map_err(|_| anyhow!("currency {currency:?} is not a currency code"))?,
        }),
        _ => bail!("a price needs both an amount and a currency"),
    };
    let file = std::path::absolute(&a.file).with_context(|| a.file.display().to_string())?;
    let (content, file) = {
        let path = file.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let f = std::fs::File::open(&path)
                .map_err(|e| anyhow!("{}: {}", path.display(), crate::files::io_reason(&e)))?;
            let size = ChunkSize::new(1 << 20)?;
            let threads =
                std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN);
            let content = ContentBuilder::new(size, threads)
                .build_file(&f)
                .with_context(|| path.display().to_string())?;
            Ok((content, path))
        })
        .await??
    };
    let now = SystemClock.now();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        title: a.title.clone(),
        description: a.description.clone(),
        sector,
        media_type: "application/octet-stream".into(),
        schema: None,
        keywords: a.keywords.clone(),
        owner: tds_identity::ParticipantId::of(&key.public_key()),
        owner_key: key.public_key(),
        created: now,
        classification,
        personal,
        residency: None,
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    };
    let signed = manifest.sign(&key)?;
    let mut not_after = now.saturating_add_millis(a.days.saturating_mul(DAY_MS));
    // Under a licence: the offer ends when the licence does, at the latest (the
    // connector checks the rest before it signs).
    let licence = match &a.licence {
        Some(path) => {
            let bytes = crate::files::read(path)?;
            let l = tds_core::cose::open::<tds_policy::licence::Licence>(&bytes)
                .map_err(|e| anyhow!("{}: not a licence: {e}", path.display()))?;
            not_after = not_after.min(l.value().not_after);
            Some(bytes)
        }
        None => None,
    };
    let terms = OfferTerms {
        policy,
        price,
        not_before: now,
        not_after,
        licence,
    };
    let published = c.publish(&signed, Source::File(file), vec![terms]).await?;
    // Listed in the authority's federated catalog too, when the home knows an authority
    // (a failure there does not undo the publication: the result says so).
    let mut federated = json!(false);
    if let Some(id) = published.offers.first() {
        if let Some(offer) = c.offer(id)? {
            federated = match super::authority::publish_federated(home, offer, signed.clone()).await
            {
                Ok(done) => json!(done),
                Err(e) => json!({"error": format!("{e:#}")}),
            };
        }
    }
    Ok(json!({
        "federated": federated,
        "asset": published.asset,
        "offers": published.offers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "offer_id": published.offers.first().map(ToString::to_string),
        "title": a.title,
        "classification": a.classification,
        "policy": policy_name,
        "not_after": not_after.to_rfc3339(),
        "licence": a.licence.is_some(),
    }))
}

fn asset_list(c: &Connector) -> anyhow::Result<Value> {
    let mut offers_by_asset: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for (k, v) in rows(c, Table::Offers)? {
        let r: OfferRecord = tds_core::cbor::decode(&v)?;
        let id = Hash256::from_slice(&k)
            .map(|h| h.to_string())
            .unwrap_or_default();
        offers_by_asset
            .entry(r.asset.clone())
            .or_default()
            .push(json!({"offer_id": id, "withdrawn": r.withdrawn}));
    }
    let mut assets = Vec::new();
    for (_, v) in rows(c, Table::Assets)? {
        let r: AssetRecord = tds_core::cbor::decode(&v)?;
        let m = tds_manifest::open(&r.manifest)?;
        let id = m.id().to_string();
        let value = m.manifest();
        assets.push(json!({
            "asset": id,
            "title": value.title,
            "sector": value.sector.to_string(),
            "classification": value.classification.to_string(),
            "size": value.content.size,
            "published": r.published.to_rfc3339(),
            "offers": offers_by_asset.remove(&id).unwrap_or_default(),
        }));
    }
    Ok(json!({ "assets": assets }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CatalogSearch {
    /// The provider to ask; absent: the authority's federated catalog.
    #[serde(default)]
    pub(crate) peer: Option<SocketAddr>,
    #[serde(default)]
    pub(crate) sector: Option<String>,
    #[serde(default)]
    pub(crate) query: Option<String>,
    #[serde(default)]
    pub(crate) classification: Option<String>,
}

async fn catalog_search(c: &Connector, home: &NodeHome, a: CatalogSearch) -> anyhow::Result<Value> {
    let filter = tds_protocol::message::CatalogFilter {
        sector: a.sector,
        keyword: a.query,
        classification: a.classification,
        provider: None,
    };
    let Some(peer) = a.peer else {
        // The federated catalog: entries as the authority lists them, each checked here.
        let items = super::authority::search_federated(home, filter).await?;
        let mut offers = Vec::new();
        for i in items {
            let offer = tds_policy::contract::verify_offer(&i.offer)?;
            let manifest = tds_manifest::open(&i.manifest)?;
            offers.push(offer_json(&offer, manifest.manifest()));
        }
        return Ok(json!({ "federated": true, "offers": offers }));
    };
    let items = c.catalog_all(peer, filter).await?;
    let offers: Vec<Value> = items
        .iter()
        .map(|i| offer_json(&i.offer, i.manifest.manifest()))
        .collect();
    Ok(json!({ "peer": peer.to_string(), "offers": offers }))
}

/// One catalog entry as `catalog_search` prints it.
fn offer_json(offer: &tds_policy::contract::VerifiedOffer, m: &Manifest) -> Value {
    let o = offer.offer();
    json!({
        "offer_id": offer.id().to_string(),
        "asset": o.asset.to_string(),
        "provider": o.provider.to_string(),
        "title": m.title,
        "sector": m.sector.to_string(),
        "classification": m.classification.to_string(),
        "size": m.content.size,
        "policy": tds_policy::text::format(&o.policy),
        "price": price_json(o.price.as_ref()),
        "not_after": o.not_after.to_rfc3339(),
        "licence": licence_json(o.licence.as_deref()),
    })
}

/// What an offer's embedded licence says (not checked here: negotiating checks it).
fn licence_json(bytes: Option<&[u8]>) -> Value {
    let Some(bytes) = bytes else {
        return Value::Null;
    };
    match tds_core::cose::open::<tds_policy::licence::Licence>(bytes) {
        Ok(l) => {
            let v = l.value();
            json!({
                "id": v.id().map(|i| i.to_string()).unwrap_or_default(),
                "resource": v.resource.to_string(),
                "authority": v.authority.to_string(),
                "licensee": v.licensee.to_string(),
                "not_after": v.not_after.to_rfc3339(),
            })
        }
        Err(e) => json!({"error": e.to_string()}),
    }
}

fn price_json(p: Option<&tds_policy::contract::Price>) -> Value {
    p.map_or(
        Value::Null,
        |p| json!({"amount": p.amount.to_string(), "currency": p.currency.to_string()}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Negotiate {
    pub(crate) peer: SocketAddr,
    pub(crate) offer: String,
    pub(crate) purpose: String,
    #[serde(default)]
    pub(crate) policy: Option<String>,
}

async fn negotiate(c: &Connector, a: Negotiate) -> anyhow::Result<Value> {
    let offer_id = hash(&a.offer, "offer")?;
    let purpose: Purpose = a
        .purpose
        .parse()
        .map_err(|_| anyhow!("purpose {:?} is not a purpose", a.purpose))?;
    let items = c.catalog_all(a.peer, Default::default()).await?;
    let item = items
        .iter()
        .find(|i| i.offer.id() == offer_id)
        .ok_or_else(|| anyhow!("the peer at {} offers no {offer_id}", a.peer))?;
    let policy = match &a.policy {
        Some(text) => {
            Some(tds_policy::parse("requested", text).map_err(|e| anyhow!("policy: {e}"))?)
        }
        None => None,
    };
    let agreement = c
        .negotiate(a.peer, &item.offer_bytes, policy, purpose)
        .await?;
    Ok(agreement_json(&agreement, Some(a.peer)))
}

fn agreement_json(a: &tds_policy::contract::VerifiedAgreement, peer: Option<SocketAddr>) -> Value {
    let t = a.terms();
    let mut duties: Vec<String> = Vec::new();
    for rule in t.policy.rules.iter().chain(&t.offer_policy.rules) {
        for d in &rule.duties {
            let text = tds_policy::text::format_duty(d);
            if !duties.contains(&text) {
                duties.push(text);
            }
        }
    }
    json!({
        "agreement_id": a.id().to_string(),
        "offer": t.offer.to_string(),
        "asset": t.asset.to_string(),
        "provider": t.provider.to_string(),
        "consumer": t.consumer.to_string(),
        "purpose": t.purpose.to_string(),
        "duties": duties,
        "price": price_json(t.price.as_ref()),
        "policy": tds_policy::text::format(&t.policy),
        "peer": peer.map(|p| p.to_string()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fetch {
    pub(crate) peer: SocketAddr,
    pub(crate) agreement: String,
    pub(crate) out: PathBuf,
    #[serde(default)]
    pub(crate) purpose: Option<String>,
    /// Where the data will be processed (region code).
    #[serde(default)]
    pub(crate) location: Option<String>,
    /// A consent reference.
    #[serde(default)]
    pub(crate) consent_ref: Option<String>,
    /// An export-assessment reference.
    #[serde(default)]
    pub(crate) export_assessment_ref: Option<String>,
}

async fn fetch(
    c: &Connector,
    a: Fetch,
    progress: Option<tds_connector::ProgressFn>,
) -> anyhow::Result<Value> {
    let id = hash(&a.agreement, "agreement")?;
    let purpose = match &a.purpose {
        Some(p) => p
            .parse()
            .map_err(|_| anyhow!("purpose {p:?} is not a purpose"))?,
        None => agreement_record(c, &id)?
            .map(|(ag, _)| ag.terms().purpose.clone())
            .ok_or_else(|| anyhow!("no agreement {id} here"))?,
    };
    let mut options = FetchOptions::new(a.out, purpose);
    options.progress = progress;
    if let Some(l) = &a.location {
        options.context.location = Some(
            l.parse()
                .map_err(|_| anyhow!("location {l:?} is not a region code"))?,
        );
    }
    if let Some(c) = &a.consent_ref {
        options.context.consent_ref =
            Some(c.parse().map_err(|_| anyhow!("consent reference {c:?}"))?);
    }
    if let Some(x) = &a.export_assessment_ref {
        options.context.export_assessment_ref = Some(
            x.parse()
                .map_err(|_| anyhow!("export-assessment reference {x:?}"))?,
        );
    }
    let r = c.fetch(a.peer, &id, options).await?;
    Ok(json!({
        "agreement_id": id.to_string(),
        "out": r.out.display().to_string(),
        "size": r.size,
        "fetched": r.fetched,
        "resumed": r.resumed,
        "attempts": r.attempts,
        "receipt_sha256": Hash256::sha256(&r.receipt).to_string(),
    }))
}

/// The stored agreement `id` and its record.
fn agreement_record(
    c: &Connector,
    id: &Hash256,
) -> anyhow::Result<Option<(tds_policy::contract::VerifiedAgreement, AgreementRecord)>> {
    let Some(v) = c.store().get(Table::Agreements, id.as_bytes())? else {
        return Ok(None);
    };
    let r: AgreementRecord = tds_core::cbor::decode(&v)?;
    let a = tds_policy::contract::verify_agreement(&r.agreement)?;
    Ok(Some((a, r)))
}

fn agreements(c: &Connector) -> anyhow::Result<Value> {
    let mut out = Vec::new();
    for (_, v) in rows(c, Table::Agreements)? {
        let r: AgreementRecord = tds_core::cbor::decode(&v)?;
        let a = tds_policy::contract::verify_agreement(&r.agreement)?;
        let mut j = agreement_json(&a, r.peer_addr.as_deref().and_then(|p| p.parse().ok()));
        if let Value::Object(m) = &mut j {
            m.insert("side".into(), json!(format!("{:?}", r.side).to_lowercase()));
            m.insert("stored".into(), json!(r.stored.to_rfc3339()));
            m.insert(
                "terminated".into(),
                json!(c
                    .store()
                    .get(Table::Terminations, a.id().as_bytes())?
                    .is_some()),
            );
        }
        out.push(j);
    }
    Ok(json!({ "agreements": out }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Terminate {
    pub(crate) agreement: String,
    pub(crate) reason: String,
}

async fn terminate(c: &Connector, a: Terminate) -> anyhow::Result<Value> {
    let id = hash(&a.agreement, "agreement")?;
    let told = c.terminate(&id, &a.reason).await?;
    Ok(json!({"agreement_id": id.to_string(), "terminated": true, "peer_told": told}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Use {
    pub(crate) agreement: String,
    pub(crate) action: String,
    pub(crate) purpose: String,
}

fn use_data(c: &Connector, a: Use) -> anyhow::Result<Value> {
    let id = hash(&a.agreement, "agreement")?;
    let action = Action::from_word(&a.action).ok_or_else(|| {
        anyhow!(
            "action {:?} is not an action (use, read, analyze, ...)",
            a.action
        )
    })?;
    let purpose: Purpose = a
        .purpose
        .parse()
        .map_err(|_| anyhow!("purpose {:?} is not a purpose", a.purpose))?;
    match c.guard().check_use(&id, action, &purpose) {
        Ok(g) => Ok(json!({
            "agreement_id": id.to_string(),
            "allowed": true,
            "use_number": g.use_number,
            "duties": g.duties.iter().map(tds_policy::text::format_duty).collect::<Vec<_>>(),
        })),
        Err(e) => Err(anyhow!(
            "use refused: {e} ({})",
            tds_core::ErrorCode::code(&e)
        )),
    }
}

fn duties(c: &Connector) -> anyhow::Result<Value> {
    let all = c.duties().map_err(|e| anyhow!("{e}"))?;
    let out: Vec<Value> = all
        .iter()
        .map(|d| {
            json!({
                "agreement_id": d.agreement.to_string(),
                "index": d.index,
                "duty": tds_policy::text::format_duty(&d.duty),
                "due": d.due.map(|t| t.to_rfc3339()),
                "state": format!("{:?}", d.state).to_lowercase(),
                "fulfilled": d.fulfilled.map(|t| t.to_rfc3339()),
            })
        })
        .collect();
    Ok(json!({ "duties": out }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Delete {
    pub(crate) agreement: String,
    #[serde(default)]
    pub(crate) peer: Option<SocketAddr>,
}

async fn delete(c: &Connector, a: Delete) -> anyhow::Result<Value> {
    let id = hash(&a.agreement, "agreement")?;
    let peer = match a.peer {
        Some(p) => p,
        None => agreement_record(c, &id)?
            .and_then(|(_, r)| r.peer_addr)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("the provider's address of {id} is not known; give --peer"))?,
    };
    let receipt = c.delete(peer, &id).await?;
    Ok(json!({"agreement_id": id.to_string(), "deleted": true, "receipt": receipt.to_string()}))
}
