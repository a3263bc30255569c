//! `tds demo`: the five-sector data space on loopback, played through the real protocol.
//!
//! An authority and connector nodes for a power grid company, a transport operator, a
//! weather service, a bank and a hospital (plus the research institute the hospital's
//! scenario needs as consumer), each a real node home under one temporary directory,
//! admitted by the authority, talking QUIC to each other on 127.0.0.1. The scenarios go
//! through the same operations the `tds` verbs use ([`super::ops`]); every decision is
//! the provider's or the consumer guard's, with the reason code they gave. At the end one
//! evidence bundle is exported and verified offline, and every node's log is verified
//! and cosigned by the authority's witness.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tds_authority::{AuthorityConfig, AuthorityService, RevokeTarget, Validity};
use tds_connector::Connector;
use tds_core::time::{SystemClock, DAY_MS};
use tds_core::{Clock, Hash256};
use tds_identity::TrustStore;

use super::config::{
    AdminSection, LogSection, NetworkSection, NodeConfig, NodeSection, TransferSection,
};
use super::home::NodeHome;
use super::{authority, ops, serve};

/// One participant of the demo.
struct Node {
    label: &'static str,
    home: NodeHome,
    connector: Connector,
    serial: u64,
}

impl Node {
    fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.connector.local_addr()?)
    }

    async fn op(&self, name: &str, args: Value) -> anyhow::Result<Value> {
        ops::run(&self.connector, &self.home, name, args, None).await
    }
}

/// The narrated table.
struct Table {
    rows: u32,
    denials: u32,
}

impl Table {
    fn header() -> Table {
        println!(
            "{:<3} {:<22} {:<46} {:<9} {:<30} {:>10} {:>8}",
            "#", "who", "what", "decision", "reason", "bytes", "ms"
        );
        println!("{}", "-".repeat(134));
        Table {
            rows: 0,
            denials: 0,
        }
    }

    fn row(&mut self, who: &str, what: &str, decision: &str, reason: &str, bytes: u64, ms: f64) {
        self.rows += 1;
        if decision == "DENIED" {
            self.denials += 1;
        }
        println!(
            "{:<3} {:<22} {:<46} {:<9} {:<30} {:>10} {:>8.1}",
            self.rows,
            clip(who, 22),
            clip(what, 46),
            decision,
            clip(reason, 30),
            if bytes == 0 {
                "-".to_owned()
            } else {
                bytes.to_string()
            },
            ms
        );
    }

    fn section(&self, title: &str) {
        println!("\n== {title}");
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// The reason code of a refusal, from the error chain.
fn code_of(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<tds_connector::ConnectorError>() {
            if c.to_string().contains("identity.revoked") || c.to_string().contains("is revoked") {
                return "identity.revoked".to_owned();
            }
            return c.refusal().map_or_else(
                || tds_core::ErrorCode::code(c).to_owned(),
                |r| r.code.clone(),
            );
        }
        if let Some(g) = cause.downcast_ref::<tds_connector::UseDenied>() {
            return tds_core::ErrorCode::code(g).to_owned();
        }
    }
    let text = format!("{e:#}");
    if text.contains("revoked") {
        return "identity.revoked".to_owned();
    }
    text.rsplit_once('(')
        .and_then(|(_, c)| c.strip_suffix(')'))
        .map_or(text.clone(), str::to_owned)
}

/// Deterministic demo data: `lines` CSV lines of `width` characters.
fn csv(path: &Path, header: &str, lines: usize, seed: u64) -> anyhow::Result<u64> {
    let mut x = seed | 1;
    let mut out = String::with_capacity(lines * 48);
    out.push_str(header);
    out.push('\n');
    for i in 0..lines {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{i},{},{}.{:02}\n", x % 997, x % 89, x % 100));
    }
    std::fs::write(path, &out).with_context(|| path.display().to_string())?;
    Ok(out.len() as u64)
}

/// Runs the demo; `keep` keeps the homes there instead of a temporary directory.
pub(crate) fn demo(keep: Option<PathBuf>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let tmp;
    let dir = match &keep {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                bail!(
                    "{}: not empty; give a new or empty directory to --keep",
                    d.display()
                );
            }
            crate::home::create_private_dir(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new().prefix("tds-demo-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let started = Instant::now();
    runtime.block_on(run(&dir))?;
    println!(
        "\nThe whole demo took {:.1} s.{}",
        started.elapsed().as_secs_f64(),
        match &keep {
            Some(d) => format!(
                " Homes kept in {} (try `tds status --home {}/grid`).",
                d.display(),
                d.display()
            ),
            None => " Temporary homes removed.".to_owned(),
        }
    );
    Ok(())
}

async fn run(dir: &Path) -> anyhow::Result<()> {
    let now = SystemClock.now();
    // The authority: a home like `tds authority init` makes, and its service on
    // 127.0.0.1 like `tds authority serve` runs (admission over tds-join/1; revocation
    // lists, the federated catalog and witnessing over tds-authority/1).
    let store = crate::home::create(&dir.join("authority"))?;
    let licensor = {
        use tds_identity::AuthorityStore;
        store
            .create("Provincial Data Space Authority")?
            .signer()
            .clone()
    };
    let mut auth_config = AuthorityConfig::default();
    // Six nodes join from one address, each asking twice.
    auth_config.join_limits.per_source.burst = 64;
    let service = AuthorityService::open(store, auth_config)?;
    let endpoint = service.serve(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let auth_addr = endpoint.local_addr()?;
    let auth_key = service.public_key();
    let trust = |list: &[u8]| -> anyhow::Result<TrustStore> {
        let mut t = TrustStore::new();
        t.add_authority(auth_key);
        t.add_revocation_list(list, SystemClock.now())?;
        Ok(t)
    };

    println!("TDS five-sector demo: an authority and six connector nodes on 127.0.0.1, real QUIC, real signatures.");
    println!("Homes: {}\n", dir.display());
    let mut table = Table::header();
    table.section("admission: the authority admits each participant (membership credential)");
    let specs: [(&str, &str, &str, &str); 6] = [
        ("grid", "Shanxi Grid Co.", "power", "CN-SX"),
        (
            "transport",
            "Provincial Transport Op.",
            "transport",
            "CN-SX",
        ),
        ("weather", "Provincial Weather Svc.", "weather", "CN-SX"),
        ("bank", "Green Finance Bank", "finance", "CN-SX"),
        ("hospital", "People's Hospital", "healthcare", "CN-SX"),
        ("research", "Medical Research Inst.", "healthcare", "CN-SX"),
    ];
    let mut nodes = Vec::new();
    for (short, label, sector, region) in specs {
        let t = Instant::now();
        let config = NodeConfig {
            node: NodeSection {
                name: label.into(),
                sector: sector.into(),
                roles: vec!["provider".into(), "consumer".into()],
                jurisdiction: region.into(),
            },
            network: NetworkSection {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                authority_addr: Some(auth_addr),
                connect_timeout_ms: 5_000,
                witness_every_s: 300,
            },
            admin: AdminSection::default(),
            transfer: TransferSection::default(),
            log: LogSection::default(),
        };
        let home = NodeHome::create(&dir.join(short), &config)?;
        // `tds join`: a signed admission request, queued; the operator approves it
        // (`tds authority approve`); asked again, the node is handed its credential
        // and the authority's revocation list.
        let asked = authority::apply_once(&home, auth_addr, &auth_key, 365).await?;
        let request = asked
            .pointer("/request_id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{label}: the authority did not queue the request: {asked}"))?;
        service.approve(request, Validity::Requested)?;
        let admitted = authority::apply_once(&home, auth_addr, &auth_key, 365).await?;
        let (Some(_), Some(serial)) = (
            home.credential()?,
            admitted.pointer("/serial").and_then(Value::as_u64),
        ) else {
            bail!("{label}: not admitted after approval: {admitted}");
        };
        let connector = serve::start_connector(&home, None).await?;
        table.row(
            label,
            &format!("joins over tds-join/1: {sector}, {region}, serial {serial}"),
            "admitted",
            "request approved",
            0,
            ms(t),
        );
        nodes.push(Node {
            label,
            home,
            connector,
            serial,
        });
    }
    // Everyone fetches the newest list (issued after the last admission).
    for n in &nodes {
        authority::fetch_list(&n.home, &n.connector).await?;
    }
    let [grid, transport, weather, bank, hospital, research] = &nodes[..] else {
        bail!("six nodes expected");
    };
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;

    // 1. weather → power
    table.section("1. weather -> power: hourly forecasts for renewable forecasting, priced, no redistribution");
    let file = data.join("forecast.csv");
    csv(&file, "hour,irradiance_wm2,wind_ms,temp_c", 60_000, 11)?;
    let t = Instant::now();
    let policy = "policy set;\n\npermit use\n  when purpose isA energy/renewable-forecasting;\n\nprohibit distribute;\n";
    let offer = weather
        .op("asset_add", json!({"file": file, "title": "Hourly solar and wind forecast 2027", "classification": "general", "policy": policy, "price": "0.5", "currency": "CNY", "keywords": ["forecast", "solar", "wind"]}))
        .await?;
    table.row(
        weather.label,
        "publishes hourly forecasts at 0.5 CNY per use",
        "offered",
        "-",
        0,
        ms(t),
    );
    let offer_id = offer
        .pointer("/offer_id")
        .unwrap_or(&Value::Null)
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let agreement = negotiate(
        &mut table,
        grid,
        weather,
        &offer_id,
        "energy/renewable-forecasting",
        "negotiates for renewable forecasting",
    )
    .await?;
    fetch(
        &mut table,
        grid,
        weather,
        &agreement,
        &data.join("grid-forecast.csv"),
        json!({}),
    )
    .await?;
    use_data(
        &mut table,
        grid,
        &agreement,
        "use",
        "energy/renewable-forecasting",
        "uses it in its forecasting model",
    )
    .await;
    use_data(
        &mut table,
        grid,
        &agreement,
        "distribute",
        "energy/renewable-forecasting",
        "tries to pass it on to a third party",
    )
    .await;
    let metered = grid.connector.export_usage(Some(&hash(&agreement)?))?;
    table.row(
        grid.label,
        &format!(
            "meters the use: {} signed usage record(s)",
            metered.lines().count()
        ),
        "recorded",
        "-",
        0,
        0.0,
    );

    // 2. power → finance
    table.section(
        "2. power -> finance: aggregated load for green-credit assessment, anonymize duty",
    );
    let file = data.join("load.csv");
    csv(&file, "feeder,month,load_mwh,peak_mw", 40_000, 22)?;
    let t = Instant::now();
    let policy =
        "policy set;\n\npermit use\n  when purpose isA finance/green-credit\n  duty anonymize;\n";
    let offer = grid
        .op("asset_add", json!({"file": file, "title": "Aggregated feeder load, monthly", "classification": "important", "policy": policy, "keywords": ["load"]}))
        .await?;
    table.row(
        grid.label,
        "publishes aggregated load (important data)",
        "offered",
        "-",
        0,
        ms(t),
    );
    let load_offer = offer
        .pointer("/offer_id")
        .unwrap_or(&Value::Null)
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let agreement = negotiate(
        &mut table,
        bank,
        grid,
        &load_offer,
        "finance/green-credit",
        "negotiates for green-credit assessment",
    )
    .await?;
    fetch(
        &mut table,
        bank,
        grid,
        &agreement,
        &data.join("bank-load.csv"),
        json!({}),
    )
    .await?;

    // 3. transport → power
    table.section(
        "3. transport -> power: EV-charging traffic flow for grid planning, count-limited",
    );
    let file = data.join("ev-flow.csv");
    csv(&file, "station,hour,vehicles,kwh", 50_000, 33)?;
    let t = Instant::now();
    let policy = "policy set;\n\npermit use\n  when purpose isA grid/planning and count lteq 2;\n";
    let offer = transport
        .op("asset_add", json!({"file": file, "title": "EV charging traffic flow", "classification": "general", "policy": policy, "keywords": ["ev", "traffic"]}))
        .await?;
    table.row(
        transport.label,
        "publishes EV-charging flows, at most 2 uses",
        "offered",
        "-",
        0,
        ms(t),
    );
    let ev_offer = offer
        .pointer("/offer_id")
        .unwrap_or(&Value::Null)
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let agreement = negotiate(
        &mut table,
        grid,
        transport,
        &ev_offer,
        "grid/planning",
        "negotiates for grid planning",
    )
    .await?;
    for i in 1..=3 {
        let out = data.join(format!("grid-ev-{i}.csv"));
        fetch(&mut table, grid, transport, &agreement, &out, json!({})).await?;
    }

    // 4. healthcare → research
    table.section("4. healthcare -> research: sensitive records, consent, residency CN, delete within 30 days");
    let file = data.join("cardiology.csv");
    csv(&file, "patient_pseudonym,visit,ef_percent,bnp", 30_000, 44)?;
    let t = Instant::now();
    let policy = "policy set;\n\npermit use\n  when purpose isA research and spatial isPartOf CN\n  duty obtain-consent(\"pipl-separate-consent\"), delete(within 30d);\n";
    let offer = hospital
        .op("asset_add", json!({"file": file, "title": "Cardiology follow-up records", "classification": "important", "personal": "sensitive", "policy": policy, "keywords": ["cardiology"]}))
        .await?;
    table.row(
        hospital.label,
        "publishes sensitive records (PIPL)",
        "offered",
        "-",
        0,
        ms(t),
    );
    let med_offer = offer
        .pointer("/offer_id")
        .unwrap_or(&Value::Null)
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let med_agreement = negotiate(
        &mut table,
        research,
        hospital,
        &med_offer,
        "research",
        "negotiates for research",
    )
    .await?;
    fetch(
        &mut table,
        research,
        hospital,
        &med_agreement,
        &data.join("research-a.csv"),
        json!({"location": "CN-SX"}),
    )
    .await?;
    fetch(
        &mut table,
        research,
        hospital,
        &med_agreement,
        &data.join("research-b.csv"),
        json!({"location": "CN-SX", "consent_ref": "consent:2027/0042"}),
    )
    .await?;
    let t = Instant::now();
    let deleted = research
        .op("delete", json!({"agreement": med_agreement}))
        .await?;
    table.row(
        research.label,
        "deletes its copy, sends a signed deletion receipt",
        "deleted",
        "-",
        0,
        ms(t),
    );
    let receipt = deleted
        .pointer("/receipt")
        .unwrap_or(&Value::Null)
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let t = Instant::now();
    let logged = wait_for_event(
        &hospital.connector,
        &hash(&med_agreement)?,
        "duty_fulfilled",
    )
    .await?;
    table.row(
        hospital.label,
        &format!("verifies and logs the receipt {}", short(&receipt)),
        if logged { "verified" } else { "missing" },
        "-",
        0,
        ms(t),
    );

    // 5. public-data authorized operation
    table.section(
        "5. public data: the authority licenses the weather service to operate public data",
    );
    let licence_text =
        tds_policy::templates::template("licence").ok_or_else(|| anyhow!("no licence template"))?;
    let t = Instant::now();
    let licence = tds_policy::licence::issue(
        licensor.as_ref(),
        &tds_policy::licence::Licence {
            resource: "public:meteorological-observations"
                .parse()
                .map_err(|_| anyhow!("resource name"))?,
            authority: auth_key.id(),
            authority_key: auth_key,
            licensee: weather.connector.id(),
            policy: tds_policy::parse("licence", licence_text)?,
            not_before: now,
            not_after: now.saturating_add_millis(3 * 365 * DAY_MS),
        },
    )?;
    let licence_file = data.join("weather-licence.cose");
    std::fs::write(&licence_file, &licence)?;
    table.row(
        "authority",
        "licenses the weather svc: public observations",
        "licensed",
        "public-data licence template",
        0,
        ms(t),
    );
    let file = data.join("observations.csv");
    csv(&file, "station,hour,rain_mm,temp_c", 20_000, 77)?;
    let within = licence_text.replace(
        "(purpose isA public-service or purpose isA urban-planning or purpose isA research)",
        "purpose isA research",
    );
    let outside = "policy set;\n\npermit use\n  when purpose isA marketing;\n\npermit sell;\n";
    let mut public_offer = String::new();
    for (who, what, text) in [
        (
            weather,
            "offers observations for research (within)",
            within.as_str(),
        ),
        (weather, "offers them for marketing and resale", outside),
        (
            transport,
            "offers them under the weather svc's licence",
            within.as_str(),
        ),
    ] {
        let t = Instant::now();
        let added = who
            .op("asset_add", json!({"file": file, "title": "Public meteorological observations", "classification": "general", "policy": text, "licence": licence_file, "keywords": ["public", "weather"]}))
            .await;
        match added {
            Ok(v) => {
                public_offer = v
                    .pointer("/offer_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                table.row(
                    who.label,
                    what,
                    "offered",
                    "contained in the licence",
                    0,
                    ms(t),
                );
            }
            Err(e) => table.row(who.label, what, "DENIED", &code_of(&e), 0, ms(t)),
        }
    }
    // The consumer's node checks the chain (authority -> licence -> offer) before it
    // negotiates.
    negotiate(
        &mut table,
        grid,
        weather,
        &public_offer,
        "research",
        "checks the licence chain, negotiates",
    )
    .await?;

    // 6. denials that must happen
    table.section("6. denials that must happen");
    // Cross-border processing without an export assessment.
    let file = data.join("telemetry.csv");
    csv(&file, "substation,minute,kv,mw", 20_000, 55)?;
    let policy = "policy set;\n\npermit use\n  when purpose isA finance/green-credit and (spatial isPartOf CN or exportAssessmentRef eq present);\n";
    let offer = grid
        .op("asset_add", json!({"file": file, "title": "Substation telemetry", "classification": "important", "policy": policy}))
        .await?;
    let tele_offer = offer
        .pointer("/offer_id")
        .unwrap_or(&Value::Null)
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let agreement = negotiate(
        &mut table,
        bank,
        grid,
        &tele_offer,
        "finance/green-credit",
        "negotiates for substation telemetry",
    )
    .await?;
    fetch(
        &mut table,
        bank,
        grid,
        &agreement,
        &data.join("bank-tele-sg.csv"),
        json!({"location": "SG"}),
    )
    .await?;
    // Use after expiry.
    let file = data.join("road.csv");
    csv(&file, "sensor,second,speed_kmh", 10_000, 66)?;
    let policy =
        "policy set;\n\npermit use\n  when purpose isA grid/planning and elapsedTime lteq 1s;\n";
    let offer = transport
        .op("asset_add", json!({"file": file, "title": "Road sensor snapshot (valid 1 s)", "classification": "general", "policy": policy}))
        .await?;
    let road_offer = offer
        .pointer("/offer_id")
        .unwrap_or(&Value::Null)
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let agreement = negotiate(
        &mut table,
        grid,
        transport,
        &road_offer,
        "grid/planning",
        "negotiates a 1-second agreement",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    fetch(
        &mut table,
        grid,
        transport,
        &agreement,
        &data.join("grid-road.csv"),
        json!({}),
    )
    .await?;
    // A purpose outside the offer.
    negotiate(
        &mut table,
        grid,
        weather,
        &offer_id,
        "marketing",
        "asks for the forecasts for marketing",
    )
    .await
    .ok();
    // A revoked participant.
    let bank_agreement = hash(
        &negotiate(
            &mut table,
            bank,
            grid,
            &load_offer,
            "finance/green-credit",
            "negotiates again",
        )
        .await?,
    )?;
    let t = Instant::now();
    let revoked = service.revoke(RevokeTarget::Serial(bank.serial), "demo: revoked")?;
    for n in &nodes {
        // Members fetch the new list from the authority; the revoked one may no longer
        // ask, and learns it from the list its peers hand it.
        if authority::fetch_list(&n.home, &n.connector).await.is_err() {
            n.connector.apply_revocation_list(&revoked.crl)?;
        }
    }
    table.row(
        "authority",
        &format!(
            "revokes {} (serial {}), members fetch the list",
            bank.label, bank.serial
        ),
        "revoked",
        "-",
        0,
        ms(t),
    );
    fetch(
        &mut table,
        bank,
        grid,
        &bank_agreement.to_string(),
        &data.join("bank-load-2.csv"),
        json!({}),
    )
    .await?;

    // Evidence and logs.
    table.section("evidence: witnessed logs, one evidence bundle verified offline");
    let trust_now = trust(&service.revocation_list()?)?;
    let t = Instant::now();
    let (mut entries, mut cosigned) = (0, 0);
    for n in &nodes {
        n.connector.log().verify()?;
        entries += n.connector.log().size();
        // Each node sends its checkpoint to the authority's witness (what `tds serve`
        // does on a schedule). A revoked member's log is not cosigned any more.
        match authority::cosign_once(&n.home, &n.connector).await {
            Ok(Some(_)) => cosigned += 1,
            Ok(None) => bail!("{}: no authority to witness its log", n.label),
            Err(e) => table.row(
                "authority witness",
                &format!("refuses to cosign the log of {}", n.label),
                "DENIED",
                &code_of(&e),
                0,
                0.0,
            ),
        }
    }
    table.row(
        "authority witness",
        &format!("verifies 6 logs ({entries} entries), cosigns {cosigned}"),
        "cosigned",
        "every log verifies",
        0,
        ms(t),
    );
    let t = Instant::now();
    let bundle = hospital.connector.evidence(&hash(&med_agreement)?)?;
    let path = dir.join("evidence-healthcare.cbor");
    std::fs::write(&path, &bundle)?;
    let verified = tds_provenance::evidence::verify(
        &bundle,
        &trust_now,
        &tds_objects::StandardVerifier::with_trust(&trust_now),
    );
    match verified {
        Ok(_) => table.row(
            hospital.label,
            "exports the evidence of scenario 4; verified offline",
            "verified",
            "-",
            bundle.len() as u64,
            ms(t),
        ),
        Err(e) => bail!("the evidence bundle does not verify: {e}"),
    }

    for n in &nodes {
        n.connector.shutdown().await;
    }
    endpoint.close();
    println!(
        "\n{} steps, {} denials (each with the reason its enforcer gave). Evidence bundle: {}",
        table.rows,
        table.denials,
        path.display()
    );
    if table.denials < 7 {
        bail!("expected at least 7 denials, saw {}", table.denials);
    }
    Ok(())
}

fn hash(text: &str) -> anyhow::Result<Hash256> {
    text.parse().map_err(|_| anyhow!("not an id: {text}"))
}

fn short(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

async fn negotiate(
    table: &mut Table,
    consumer: &Node,
    provider: &Node,
    offer: &str,
    purpose: &str,
    what: &str,
) -> anyhow::Result<String> {
    let t = Instant::now();
    let args = json!({"peer": provider.addr()?, "offer": offer, "purpose": purpose});
    match consumer.op("negotiate", args).await {
        Ok(a) => {
            let duties: Vec<String> = a
                .pointer("/duties")
                .unwrap_or(&Value::Null)
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let price = a
                .pointer("/price/amount")
                .unwrap_or(&Value::Null)
                .as_str()
                .map(|p| {
                    format!(
                        ", {p} {}",
                        a.pointer("/price/currency")
                            .unwrap_or(&Value::Null)
                            .as_str()
                            .unwrap_or("")
                    )
                });
            let reason = if duties.is_empty() {
                "-".to_owned()
            } else {
                format!("duties: {}", duties.join(", "))
            };
            table.row(
                consumer.label,
                &format!("{what}{}", price.unwrap_or_default()),
                "agreed",
                &reason,
                0,
                ms(t),
            );
            Ok(a.pointer("/agreement_id")
                .unwrap_or(&Value::Null)
                .as_str()
                .unwrap_or_default()
                .to_owned())
        }
        Err(e) => {
            table.row(consumer.label, what, "DENIED", &code_of(&e), 0, ms(t));
            Err(e)
        }
    }
}

async fn fetch(
    table: &mut Table,
    consumer: &Node,
    provider: &Node,
    agreement: &str,
    out: &Path,
    context: Value,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut args = json!({"peer": provider.addr()?, "agreement": agreement, "out": out});
    if let (Value::Object(a), Value::Object(c)) = (&mut args, context.clone()) {
        a.extend(c);
    }
    let mut what = format!("fetches from {}", provider.label);
    if let Some(l) = context
        .pointer("/location")
        .unwrap_or(&Value::Null)
        .as_str()
    {
        what.push_str(&format!(", processing in {l}"));
    }
    if context.get("consent_ref").is_some() {
        what.push_str(", with consent ref");
    }
    match consumer.op("fetch", args).await {
        Ok(r) => {
            table.row(
                consumer.label,
                &what,
                "fetched",
                "every chunk verified",
                r.pointer("/size")
                    .unwrap_or(&Value::Null)
                    .as_u64()
                    .unwrap_or(0),
                ms(t),
            );
        }
        Err(e) => table.row(consumer.label, &what, "DENIED", &code_of(&e), 0, ms(t)),
    }
    Ok(())
}

async fn use_data(
    table: &mut Table,
    consumer: &Node,
    agreement: &str,
    action: &str,
    purpose: &str,
    what: &str,
) {
    let t = Instant::now();
    let args = json!({"agreement": agreement, "action": action, "purpose": purpose});
    match consumer.op("use", args).await {
        Ok(r) => table.row(
            consumer.label,
            what,
            "allowed",
            &format!("use #{}", r.pointer("/use_number").unwrap_or(&Value::Null)),
            0,
            ms(t),
        ),
        Err(e) => table.row(consumer.label, what, "DENIED", &code_of(&e), 0, ms(t)),
    }
}

/// Whether the provider's log holds an event `kind` for `agreement` (waits up to 10 s:
/// the receipt is verified and logged as it arrives).
async fn wait_for_event(c: &Connector, agreement: &Hash256, kind: &str) -> anyhow::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = c.log();
        for i in log.events_for(agreement)? {
            if log.event(i)?.kind() == kind {
                return Ok(true);
            }
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
