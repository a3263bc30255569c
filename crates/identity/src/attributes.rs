//! The attributes a credential asserts: sectors, roles, jurisdiction and display names.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Invalid;

/// Longest display name (participant or authority), in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Most sectors one credential may list.
pub const MAX_SECTORS: usize = 16;
/// Longest sector token, in bytes.
pub const MAX_SECTOR_LEN: usize = 32;

/// Quotes at most this many characters of a refused value in an error message.
const QUOTE_CHARS: usize = 64;

pub(crate) fn quote(s: &str) -> String {
    s.chars().take(QUOTE_CHARS).collect()
}

/// Whether `c` changes how text around it is displayed without being seen: the Unicode
/// bidirectional controls (embeddings, overrides, isolates and marks) and the zero-width
/// and invisible format characters. A name holding one can pass for another name.
pub fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Checks a display name: 1 to [`MAX_NAME_CHARS`] characters, no control characters, no
/// bidirectional controls or zero-width characters ([`is_invisible_format`]), no white
/// space at either end.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid::Empty);
    }
    let len = name.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(Invalid::TooLong {
            len,
            max: MAX_NAME_CHARS,
        });
    }
    if name.chars().any(char::is_control) {
        return Err(Invalid::BadText("contains a control character"));
    }
    if name.chars().any(is_invisible_format) {
        return Err(Invalid::BadText(
            "contains a bidirectional control or zero-width character",
        ));
    }
    if name.trim() != name {
        return Err(Invalid::BadText("starts or ends with white space"));
    }
    Ok(())
}

/// A sector of the data space: a lowercase token such as `power`, `transport`, `weather`,
/// `finance` or `healthcare` (`a-z`, `0-9` and `-`, starting with a letter, not ending with
/// `-`, at most [`MAX_SECTOR_LEN`] bytes).
///
/// ```
/// use tds_identity::Sector;
///
/// assert_eq!("power".parse::<Sector>()?, Sector::POWER);
/// assert!("Power".parse::<Sector>().is_err());
/// assert!("water-supply".parse::<Sector>().is_ok());
/// # Ok::<(), tds_identity::Invalid>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sector(Cow<'static, str>);

impl Sector {
    /// `power`.
    pub const POWER: Sector = Sector(Cow::Borrowed("power"));
    /// `transport`.
    pub const TRANSPORT: Sector = Sector(Cow::Borrowed("transport"));
    /// `weather`.
    pub const WEATHER: Sector = Sector(Cow::Borrowed("weather"));
    /// `finance`.
    pub const FINANCE: Sector = Sector(Cow::Borrowed("finance"));
    /// `healthcare`.
    pub const HEALTHCARE: Sector = Sector(Cow::Borrowed("healthcare"));

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_token(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            b.len() <= MAX_SECTOR_LEN
                && first.is_ascii_lowercase()
                && *last != b'-'
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        }
        _ => false,
    }
}

impl FromStr for Sector {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        if is_token(s) {
            Ok(Sector(Cow::Owned(s.to_owned())))
        } else {
            Err(Invalid::NotAToken(quote(s)))
        }
    }
}

impl fmt::Display for Sector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sector({})", self.0)
    }
}

impl Serialize for Sector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a participant may do in the data space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Offers data.
    Provider,
    /// Obtains data under agreed terms.
    Consumer,
    /// Runs infrastructure or operates public data under licence.
    Operator,
    /// Admits participants and issues credentials.
    Authority,
    /// Cosigns other participants' provenance log checkpoints.
    Witness,
}

impl Role {
    /// All roles, in declaration order.
    pub const ALL: [Role; 5] = [
        Role::Provider,
        Role::Consumer,
        Role::Operator,
        Role::Authority,
        Role::Witness,
    ];

    /// The lowercase name used on the wire and on the command line.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::Consumer => "consumer",
            Role::Operator => "operator",
            Role::Authority => "authority",
            Role::Witness => "witness",
        }
    }
}

impl FromStr for Role {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Invalid::UnknownRole(quote(s)))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A jurisdiction: an ISO 3166-1 alpha-2 country code (`CN`), optionally with an ISO 3166-2
/// subdivision (`CN-SX`): two capital letters, then optionally `-` and 1 to 3 capital
/// letters or digits.
///
/// ```
/// use tds_identity::Jurisdiction;
///
/// assert!("CN-SX".parse::<Jurisdiction>().is_ok());
/// assert!("cn".parse::<Jurisdiction>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Jurisdiction(String);

impl Jurisdiction {
    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country part (`CN` of `CN-SX`).
    pub fn country(&self) -> &str {
        self.0
            .split_once('-')
            .map_or(self.0.as_str(), |(country, _)| country)
    }

    /// Whether `self` is `other` or a subdivision of it (`CN-SX` is within `CN`).
    pub fn is_within(&self, other: &Jurisdiction) -> bool {
        self == other || (!other.0.contains('-') && self.country() == other.0)
    }
}

fn is_region(s: &str) -> bool {
    let (country, sub) = match s.split_once('-') {
        Some((c, sub)) => (c, Some(sub)),
        None => (s, None),
    };
    let country_ok = country.len() == 2 && country.bytes().all(|c| c.is_ascii_uppercase());
    let sub_ok = sub.is_none_or(|sub| {
        (1..=3).contains(&sub.len())
            && sub
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    });
    country_ok && sub_ok
}

impl FromStr for Jurisdiction {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        if is_region(s) {
            Ok(Jurisdiction(s.to_owned()))
        } else {
            Err(Invalid::NotARegion(quote(s)))
        }
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jurisdiction({})", self.0)
    }
}

impl Serialize for Jurisdiction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Jurisdiction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_tokens() {
        for ok in [
            "power",
            "transport",
            "weather",
            "finance",
            "healthcare",
            "a",
            "x9-y",
        ] {
            assert!(ok.parse::<Sector>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Power",
            "9power",
            "power-",
            "po wer",
            "pöwer",
            "-x",
            &"a".repeat(33),
        ] {
            assert!(bad.parse::<Sector>().is_err(), "{bad}");
        }
        assert_eq!(Sector::HEALTHCARE.as_str(), "healthcare");
    }

    #[test]
    fn roles_parse_and_print() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert_eq!(
            "admin".parse::<Role>(),
            Err(Invalid::UnknownRole("admin".into()))
        );
    }

    #[test]
    fn regions() {
        for ok in ["CN", "CN-SX", "CN-11", "US-CA", "GB-ENG"] {
            assert!(ok.parse::<Jurisdiction>().is_ok(), "{ok}");
        }
        for bad in [
            "", "C", "CHN", "cn", "CN-", "CN-ABCD", "CN-sx", "CN-SX-1", "-SX",
        ] {
            assert!(bad.parse::<Jurisdiction>().is_err(), "{bad}");
        }
        let sx: Jurisdiction = "CN-SX".parse().unwrap();
        let cn: Jurisdiction = "CN".parse().unwrap();
        assert!(sx.is_within(&cn));
        assert!(!cn.is_within(&sx));
        assert_eq!(sx.country(), "CN");
    }

    #[test]
    fn names() {
        assert!(check_name("State Grid Shanxi 国网山西").is_ok());
        assert_eq!(check_name(""), Err(Invalid::Empty));
        assert_eq!(
            check_name(" x"),
            Err(Invalid::BadText("starts or ends with white space"))
        );
        assert_eq!(
            check_name("a\nb"),
            Err(Invalid::BadText("contains a control character"))
        );
        assert!(check_name(&"é".repeat(128)).is_ok());
        assert!(matches!(
            check_name(&"é".repeat(129)),
            Err(Invalid::TooLong { len: 129, .. })
        ));
    }

    /// Red-team finding 12: names could hide a bidi override or a zero-width character
    /// and pass for another participant's name.
    #[test]
    fn red_team_12_names_refuse_bidi_and_zero_width_characters() {
        for c in [
            '\u{202E}', '\u{2066}', '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{061C}',
        ] {
            let name = format!("State{c}Grid");
            assert_eq!(
                check_name(&name),
                Err(Invalid::BadText(
                    "contains a bidirectional control or zero-width character"
                )),
                "{:?}",
                c
            );
        }
        assert!(check_name("State Grid").is_ok());
    }

    #[test]
    fn long_values_are_quoted_briefly() {
        let long = "X".repeat(1000);
        let msg = long.parse::<Sector>().unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
    }
}
