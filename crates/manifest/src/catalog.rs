//! Catalog entries (a verified manifest plus its offers) and their export as DCAT 3
//! JSON-LD (`dcat:Catalog` / `dcat:Dataset` / `odrl:hasPolicy`).

use serde_json::{json, Map, Value};

use crate::envelope::SelfSignedManifest;
use crate::model::{Manifest, UpdateFrequency};

/// The IRI prefix of TDS terms that DCAT has no word for.
pub const TDS_VOCAB: &str = "https://tds.example.invalid/ns#";

/// An offer as the catalog shows it: its id and its ODRL policy (JSON-LD), produced by the
/// policy crate. The manifest crate does not interpret it.
#[derive(Clone, Debug, PartialEq)]
pub struct OfferRef {
    /// The offer id (`sha256:...`).
    pub id: String,
    /// The ODRL policy, a JSON-LD object.
    pub policy: Value,
}

/// One catalog entry: a manifest and the offers made for it.
///
/// A catalog shows what owners published: each manifest is checked to be signed by the
/// key it names (a [`SelfSignedManifest`]), which is what a catalog can check on its own.
/// Whether that key belongs to a member is the job of the registration receipt or the
/// owner's credential; an authenticated [`VerifiedManifest`](crate::VerifiedManifest)
/// goes in through [`into_self_signed`](crate::VerifiedManifest::into_self_signed).
#[derive(Clone, Debug)]
pub struct CatalogEntry {
    /// The manifest, checked against the key it names.
    pub manifest: SelfSignedManifest,
    /// The offers, possibly none.
    pub offers: Vec<OfferRef>,
}

/// A catalog: a title and entries.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// The catalog title.
    pub title: String,
    /// The entries, in the order they are shown.
    pub entries: Vec<CatalogEntry>,
}

fn asset_iri(id: &impl std::fmt::Display) -> String {
    format!("urn:tds:asset:{id}")
}

fn participant_iri(id: &impl std::fmt::Display) -> String {
    format!("urn:tds:participant:{id}")
}

fn frequency_iri(f: UpdateFrequency) -> &'static str {
    match f {
        UpdateFrequency::Continuous => {
            "http://publications.europa.eu/resource/authority/frequency/CONT"
        }
        UpdateFrequency::Hourly => {
            "http://publications.europa.eu/resource/authority/frequency/HOURLY"
        }
        UpdateFrequency::Daily => {
            "http://publications.europa.eu/resource/authority/frequency/DAILY"
        }
        UpdateFrequency::Weekly => {
            "http://publications.europa.eu/resource/authority/frequency/WEEKLY"
        }
        UpdateFrequency::Monthly => {
            "http://publications.europa.eu/resource/authority/frequency/MONTHLY"
        }
        UpdateFrequency::Quarterly => {
            "http://publications.europa.eu/resource/authority/frequency/QUARTERLY"
        }
        UpdateFrequency::Annual => {
            "http://publications.europa.eu/resource/authority/frequency/ANNUAL"
        }
        UpdateFrequency::Irregular => {
            "http://publications.europa.eu/resource/authority/frequency/IRREG"
        }
        UpdateFrequency::Never => {
            "http://publications.europa.eu/resource/authority/frequency/NEVER"
        }
    }
}

/// The JSON-LD `@context` of every export.
pub fn dcat_context() -> Value {
    json!({
        "dcat": "http://www.w3.org/ns/dcat#",
        "dct": "http://purl.org/dc/terms/",
        "odrl": "http://www.w3.org/ns/odrl/2/",
        "prov": "http://www.w3.org/ns/prov#",
        "spdx": "http://spdx.org/rdf/terms#",
        "xsd": "http://www.w3.org/2001/XMLSchema#",
        "tds": TDS_VOCAB,
    })
}

impl CatalogEntry {
    /// The entry as a `dcat:Dataset` node (without `@context`).
    pub fn to_dcat(&self) -> Value {
        let m: &Manifest = self.manifest.manifest();
        let id = self.manifest.id();
        let mut d = Map::new();
        d.insert("@id".into(), json!(asset_iri(&id)));
        d.insert("@type".into(), json!("dcat:Dataset"));
        d.insert("dct:identifier".into(), json!(id.to_string()));
        d.insert("dct:title".into(), json!(m.title));
        if !m.description.is_empty() {
            d.insert("dct:description".into(), json!(m.description));
        }
        d.insert("dcat:keyword".into(), json!(m.keywords));
        d.insert(
            "dcat:theme".into(),
            json!({ "@id": format!("{TDS_VOCAB}sector/{}", m.sector.as_str()) }),
        );
        d.insert(
            "dct:publisher".into(),
            json!({ "@id": participant_iri(&m.owner) }),
        );
        d.insert(
            "dct:issued".into(),
            json!({ "@value": m.created.to_rfc3339(), "@type": "xsd:dateTime" }),
        );
        if let Some(schema) = &m.schema {
            d.insert("dct:conformsTo".into(), json!({ "@id": schema }));
        }
        if let Some(region) = &m.residency {
            d.insert("dct:spatial".into(), json!(region.as_str()));
            d.insert("tds:residency".into(), json!(region.as_str()));
        }
        d.insert(
            "tds:classification".into(),
            json!(m.classification.as_str()),
        );
        d.insert("tds:personalInformation".into(), json!(m.personal.as_str()));
        if let Some(prev) = &m.supersedes {
            d.insert("dct:replaces".into(), json!({ "@id": asset_iri(prev) }));
        }
        if !m.lineage.is_empty() {
            let sources: Vec<Value> = m
                .lineage
                .iter()
                .map(|l| {
                    let mut q = json!({
                        "@type": "prov:Derivation",
                        "prov:entity": { "@id": asset_iri(&l.asset) },
                        "prov:hadRole": { "@id": format!("{TDS_VOCAB}relation/{}", l.relation.as_str()) },
                    });
                    if let (Some(a), Some(obj)) = (&l.agreement, q.as_object_mut()) {
                        obj.insert("tds:agreement".into(), json!(a.to_string()));
                    }
                    q
                })
                .collect();
            d.insert(
                "prov:wasDerivedFrom".into(),
                Value::Array(
                    m.lineage
                        .iter()
                        .map(|l| json!({ "@id": asset_iri(&l.asset) }))
                        .collect(),
                ),
            );
            d.insert("prov:qualifiedDerivation".into(), Value::Array(sources));
        }
        if let Some(q) = &m.quality {
            if let Some(f) = q.update_frequency {
                d.insert(
                    "dct:accrualPeriodicity".into(),
                    json!({ "@id": frequency_iri(f) }),
                );
            }
            if let Some(c) = q.completeness {
                d.insert(
                    "tds:completenessBasisPoints".into(),
                    json!({ "@value": c.to_string(), "@type": "xsd:nonNegativeInteger" }),
                );
            }
        }
        d.insert(
            "dcat:distribution".into(),
            json!([{
                "@type": "dcat:Distribution",
                "dcat:mediaType": { "@id": format!("https://www.iana.org/assignments/media-types/{}", m.media_type) },
                "dcat:byteSize": { "@value": m.content.size.to_string(), "@type": "xsd:nonNegativeInteger" },
                "spdx:checksum": {
                    "@type": "spdx:Checksum",
                    "spdx:algorithm": { "@id": format!("{TDS_VOCAB}merkle-sha256-rfc9162") },
                    "spdx:checksumValue": m.content.root.to_hex(),
                },
                "tds:chunkSize": { "@value": m.content.chunk_size.get().to_string(), "@type": "xsd:nonNegativeInteger" },
            }]),
        );
        d.insert(
            "odrl:hasPolicy".into(),
            Value::Array(
                self.offers
                    .iter()
                    .map(|o| {
                        let mut p = o.policy.clone();
                        if let Some(obj) = p.as_object_mut() {
                            obj.entry("@id")
                                .or_insert_with(|| json!(format!("urn:tds:offer:{}", o.id)));
                        }
                        p
                    })
                    .collect(),
            ),
        );
        Value::Object(d)
    }
}

impl Catalog {
    /// The catalog as DCAT 3 JSON-LD: a `dcat:Catalog` with one `dcat:Dataset` per entry.
    pub fn to_dcat(&self) -> Value {
        json!({
            "@context": dcat_context(),
            "@type": "dcat:Catalog",
            "dct:title": self.title,
            "dcat:dataset": self.entries.iter().map(CatalogEntry::to_dcat).collect::<Vec<_>>(),
        })
    }
}
