//! The manifest: what an asset is, who owns it, how sensitive it is, where it may live,
//! what it derives from, and the commitment to its bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tds_core::hash::{Hash256, ParseHashError};
use tds_core::key::PublicKey;
use tds_core::time::Timestamp;
use tds_identity::{Jurisdiction, ParticipantId, Sector};

use crate::content::Commitment;
use crate::error::ManifestError;

/// The manifest format version this crate writes and reads.
pub const MANIFEST_VERSION: u64 = 1;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 256;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 8192;
/// Most keywords.
pub const MAX_KEYWORDS: usize = 32;
/// Longest keyword, in characters.
pub const MAX_KEYWORD_CHARS: usize = 64;
/// Longest media type or schema reference, in bytes.
pub const MAX_REFERENCE_LEN: usize = 2048;
/// Most lineage links.
pub const MAX_LINEAGE: usize = 64;

/// An asset id: the `tds/manifest/v1` hash of the canonical manifest payload, printed as
/// `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AssetId(Hash256);

impl AssetId {
    /// Wraps a hash known to be an asset id.
    pub const fn from_hash(h: Hash256) -> Self {
        AssetId(h)
    }

    /// The hash.
    pub const fn as_hash(&self) -> &Hash256 {
        &self.0
    }
}

impl fmt::Display for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for AssetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssetId({})", self.0)
    }
}

impl FromStr for AssetId {
    type Err = ParseHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(AssetId)
    }
}

/// Classification level (分类分级).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    /// General data.
    General,
    /// Important data.
    Important,
    /// Core data.
    Core,
}

/// Personal-information level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonalInfo {
    /// No personal information.
    None,
    /// Personal information.
    Personal,
    /// Sensitive personal information.
    Sensitive,
}

/// How a derived asset relates to its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Relation {
    /// Transformed from the source.
    Derived,
    /// Aggregated from the source (with others).
    Aggregated,
    /// An anonymized form of the source.
    Anonymized,
}

/// How often an asset is updated (the EU frequency vocabulary DCAT uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateFrequency {
    /// Continuously updated.
    Continuous,
    /// Every hour.
    Hourly,
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
    /// Every month.
    Monthly,
    /// Every quarter.
    Quarterly,
    /// Every year.
    Annual,
    /// At irregular intervals.
    Irregular,
    /// Never updated.
    Never,
}

macro_rules! text_forms {
    ($ty:ty, $($variant:ident => $text:literal),+ $(,)?) => {
        impl $ty {
            /// The name on the wire and in the CLI.
            pub const fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = ManifestError;
            fn from_str(s: &str) -> Result<Self, ManifestError> {
                match s {
                    $($text => Ok(<$ty>::$variant),)+
                    _ => Err(ManifestError::field(
                        stringify!($ty),
                        format!("unknown value {:?} (expected {})", s.chars().take(32).collect::<String>(), [$($text),+].join(", ")),
                    )),
                }
            }
        }
    };
}

text_forms!(Classification, General => "general", Important => "important", Core => "core");
text_forms!(PersonalInfo, None => "none", Personal => "personal", Sensitive => "sensitive");
text_forms!(Relation, Derived => "derived", Aggregated => "aggregated", Anonymized => "anonymized");
text_forms!(UpdateFrequency,
    Continuous => "continuous", Hourly => "hourly", Daily => "daily", Weekly => "weekly",
    Monthly => "monthly", Quarterly => "quarterly", Annual => "annual",
    Irregular => "irregular", Never => "never");

/// One asset this asset was made from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lineage {
    /// The source asset.
    pub asset: AssetId,
    /// How this asset relates to it.
    pub relation: Relation,
    /// The id of the agreement that allowed the derivation, if any.
    pub agreement: Option<Hash256>,
}

/// Quality claims the owner makes (not verified by TDS).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Quality {
    /// Completeness in basis points (0 to 10000 = 100.00 %); integers, since signed
    /// objects carry no floats.
    pub completeness: Option<u16>,
    /// How often the asset is updated.
    pub update_frequency: Option<UpdateFrequency>,
}

/// A data-asset manifest, as its owner signs it.
///
/// Every field is always encoded (`None` as `null`), in canonical CBOR order; see
/// `spec/manifest.md`. [`Manifest::check`] enforces the field rules; signing and opening
/// call it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`MANIFEST_VERSION`]).
    pub version: u64,
    /// Title (1 to 256 characters).
    pub title: String,
    /// Description (up to 8192 characters; may be empty).
    pub description: String,
    /// The sector the asset belongs to.
    pub sector: Sector,
    /// IANA media type of the content, e.g. `text/csv`.
    pub media_type: String,
    /// Reference (URI) to a schema the content follows.
    pub schema: Option<String>,
    /// Keywords (up to 32, each 1 to 64 characters, no repeats).
    pub keywords: Vec<String>,
    /// The owner's participant id.
    pub owner: ParticipantId,
    /// The owner's public key; `owner` is its id, and the manifest is signed by it.
    pub owner_key: PublicKey,
    /// When the manifest was made.
    pub created: Timestamp,
    /// Classification level.
    pub classification: Classification,
    /// Personal-information level.
    pub personal: PersonalInfo,
    /// Where the data must reside (region code), if restricted.
    pub residency: Option<Jurisdiction>,
    /// The commitment to the content.
    pub content: Commitment,
    /// The assets this one derives from.
    pub lineage: Vec<Lineage>,
    /// The asset this one supersedes (an earlier version).
    pub supersedes: Option<AssetId>,
    /// Quality claims.
    pub quality: Option<Quality>,
}

fn check_text(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), ManifestError> {
    let n = s.chars().count();
    if n < min {
        return Err(ManifestError::field(field, "must not be empty"));
    }
    if n > max {
        return Err(ManifestError::field(
            field,
            format!("{n} characters exceeds the limit of {max}"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ManifestError::field(field, "contains a control character"));
    }
    Ok(())
}

fn check_reference(field: &'static str, s: &str) -> Result<(), ManifestError> {
    if s.is_empty() || s.len() > MAX_REFERENCE_LEN {
        return Err(ManifestError::field(
            field,
            format!("must be 1 to {MAX_REFERENCE_LEN} bytes"),
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ManifestError::field(
            field,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

fn is_media_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 127
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

impl Manifest {
    /// Checks every field rule; the error names the field and the reason.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::field(
                "version",
                format!(
                    "version {} is not supported (expected {MANIFEST_VERSION})",
                    self.version
                ),
            ));
        }
        check_text("title", &self.title, 1, MAX_TITLE_CHARS)?;
        if self.title.trim() != self.title {
            return Err(ManifestError::field(
                "title",
                "starts or ends with white space",
            ));
        }
        check_text("description", &self.description, 0, MAX_DESCRIPTION_CHARS)?;
        match self.media_type.split_once('/') {
            Some((t, s)) if is_media_token(t) && is_media_token(s) => {}
            _ => {
                return Err(ManifestError::field(
                    "media_type",
                    format!(
                        "{:?} is not a media type such as text/csv",
                        self.media_type.chars().take(64).collect::<String>()
                    ),
                ))
            }
        }
        if let Some(schema) = &self.schema {
            check_reference("schema", schema)?;
        }
        if self.keywords.len() > MAX_KEYWORDS {
            return Err(ManifestError::field(
                "keywords",
                format!(
                    "{} entries exceeds the limit of {MAX_KEYWORDS}",
                    self.keywords.len()
                ),
            ));
        }
        for (i, k) in self.keywords.iter().enumerate() {
            check_text("keywords", k, 1, MAX_KEYWORD_CHARS)?;
            if self.keywords.iter().take(i).any(|other| other == k) {
                return Err(ManifestError::field(
                    "keywords",
                    format!("{k:?} appears more than once"),
                ));
            }
        }
        if !self.owner.is_id_of(&self.owner_key) {
            return Err(ManifestError::field("owner", "is not the id of owner_key"));
        }
        self.content.check()?;
        if self.lineage.len() > MAX_LINEAGE {
            return Err(ManifestError::field(
                "lineage",
                format!(
                    "{} entries exceeds the limit of {MAX_LINEAGE}",
                    self.lineage.len()
                ),
            ));
        }
        for (i, l) in self.lineage.iter().enumerate() {
            if self.lineage.iter().take(i).any(|o| o.asset == l.asset) {
                return Err(ManifestError::field(
                    "lineage",
                    format!("{} appears more than once", l.asset),
                ));
            }
        }
        if let Some(Quality {
            completeness: Some(c),
            ..
        }) = &self.quality
        {
            if *c > 10_000 {
                return Err(ManifestError::field(
                    "quality.completeness",
                    format!("{c} basis points exceeds 10000 (100 %)"),
                ));
            }
        }
        Ok(())
    }
}
