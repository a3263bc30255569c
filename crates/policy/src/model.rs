//! The policy model: policies, rules, constraints, duties and the typed values they hold.
//!
//! Every value is validated when it is made (parsed from text, decoded from CBOR or read
//! from ODRL JSON), so a [`Policy`] read by this crate is well formed: each constraint's
//! value has the type its operand needs and each operator is one the operand supports.
//! A `Policy` built in code is checked by [`Policy::validate`], which returns the
//! [`CompiledPolicy`](crate::CompiledPolicy) that proves it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tds_core::{Hash256, Timestamp};

use crate::error::PolicyError;

/// Most rules one policy may hold.
pub const MAX_RULES: usize = 256;
/// Most atomic constraints in one policy, all rules together.
pub const MAX_CONSTRAINTS: usize = 1024;
/// Deepest nesting of logical constraints.
pub const MAX_DEPTH: usize = 16;
/// Most values in one list.
pub const MAX_LIST: usize = 64;
/// Most duties on one rule.
pub const MAX_DUTIES: usize = 32;
/// Longest free text (attribution text, references, targets), in bytes.
pub const MAX_TEXT: usize = 1024;
/// The latest time a policy may name (9999-12-31T23:59:59.999Z), so every time has an
/// RFC 3339 form.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;
/// Deepest purpose path.
pub const MAX_PURPOSE_DEPTH: usize = 8;

/// Quotes at most 64 characters of refused input in messages.
pub(crate) fn quote(s: &str) -> String {
    let q: String = s.chars().take(64).collect();
    format!("{q:?}")
}

macro_rules! word_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $var),+
        }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The word used in the text syntax and on the wire.
            pub const fn as_str(&self) -> &'static str {
                match self { $($name::$var => $text),+ }
            }
            /// The value named by `word`, if any.
            pub fn from_word(word: &str) -> Option<Self> {
                match word { $($text => Some($name::$var),)+ _ => None }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

word_enum! {
    /// What a rule permits, prohibits or obliges. ODRL terms keep their ODRL meaning;
    /// `analyze`, `train-model` and `compute` are TDS profile terms (`tds:`).
    Action {
        /// Any use (ODRL `use`); includes `read`, `display`, `analyze`, `aggregate` and
        /// `compute`.
        Use = "use",
        /// Read the data (ODRL `read`); includes `display`.
        Read = "read",
        /// Show the data to people (ODRL `display`).
        Display = "display",
        /// Pass the data on to third parties (ODRL `distribute`).
        Distribute = "distribute",
        /// Combine with other data into summaries (ODRL `aggregate`).
        Aggregate = "aggregate",
        /// Make new data from it (ODRL `derive`).
        Derive = "derive",
        /// Remove identifying information (ODRL `anonymize`).
        Anonymize = "anonymize",
        /// Delete it (ODRL `delete`).
        Delete = "delete",
        /// Make copies (ODRL `reproduce`).
        Reproduce = "reproduce",
        /// Sell it (ODRL `sell`).
        Sell = "sell",
        /// Statistical or analytical processing (`tds:analyze`).
        Analyze = "analyze",
        /// Use as training data for a machine-learning model (`tds:train-model`).
        TrainModel = "train-model",
        /// Run code next to the data without taking it away (`tds:compute`).
        Compute = "compute",
    }
}

impl Action {
    /// The bit of this action in an action set.
    pub const fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// The set of actions this action includes (itself among them), as bits.
    ///
    /// `use` includes `read`, `display`, `analyze`, `aggregate` and `compute`; `read`
    /// includes `display`. No other inclusions: `distribute`, `sell`, `derive`,
    /// `reproduce`, `train-model`, `anonymize` and `delete` must be granted by name.
    pub const fn includes(self) -> u16 {
        match self {
            Action::Use => {
                Action::Use.bit()
                    | Action::Read.bit()
                    | Action::Display.bit()
                    | Action::Analyze.bit()
                    | Action::Aggregate.bit()
                    | Action::Compute.bit()
            }
            Action::Read => Action::Read.bit() | Action::Display.bit(),
            other => other.bit(),
        }
    }

    /// Whether a permission of `self` covers a request for `other`.
    pub const fn covers(self, other: Action) -> bool {
        self.includes() & other.bit() != 0
    }

    /// Whether a prohibition of `self` touches a request for `other`: either includes the
    /// other (prohibiting `read` also stops a request for all of `use`).
    pub const fn overlaps(self, other: Action) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// Whether the action is a TDS profile term rather than an ODRL core term.
    pub const fn is_tds(self) -> bool {
        matches!(self, Action::Analyze | Action::TrainModel | Action::Compute)
    }
}

word_enum! {
    /// The left operand of a constraint: what about the request it looks at.
    Operand {
        /// The declared purpose (hierarchical: `grid` includes `grid/planning`).
        Purpose = "purpose",
        /// The time of the use.
        DateTime = "dateTime",
        /// Time since the agreement was made.
        ElapsedTime = "elapsedTime",
        /// The number of this use (uses so far + 1).
        Count = "count",
        /// Where processing happens (a region: `CN` includes `CN-SX`).
        Spatial = "spatial",
        /// The recipient's sector.
        Industry = "industry",
        /// The recipient's participant id.
        Recipient = "recipient",
        /// The recipient's roles (`tds:`).
        RecipientRole = "recipientRole",
        /// The classification of the data in use (`tds:`; `general` < `important` < `core`).
        Classification = "classification",
        /// The personal information level (`tds:`; `none` < `personal` < `sensitive`).
        PersonalInfo = "personalInfo",
        /// The amount paid for the use.
        PayAmount = "payAmount",
        /// The currency of the payment (`tds:`).
        Currency = "currency",
        /// Bytes delivered so far, this delivery included (`tds:`).
        Volume = "volume",
        /// Whether a consent reference is presented (`tds:`).
        ConsentRef = "consentRef",
        /// Whether an export-assessment reference is presented (`tds:`).
        ExportAssessmentRef = "exportAssessmentRef",
    }
}

/// How an operand's values compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperandKind {
    /// A hierarchy (purpose paths, region codes).
    Hierarchy,
    /// A total order (times, durations, counts, levels, amounts, bytes).
    Ordered,
    /// Plain equality (participant ids, sectors, currencies).
    Equality,
    /// A set of values (roles).
    Set,
    /// Present or absent.
    Presence,
}

impl Operand {
    /// How the operand's values compare.
    pub const fn kind(self) -> OperandKind {
        match self {
            Operand::Purpose | Operand::Spatial => OperandKind::Hierarchy,
            Operand::DateTime
            | Operand::ElapsedTime
            | Operand::Count
            | Operand::Classification
            | Operand::PersonalInfo
            | Operand::PayAmount
            | Operand::Volume => OperandKind::Ordered,
            Operand::Industry | Operand::Recipient | Operand::Currency => OperandKind::Equality,
            Operand::RecipientRole => OperandKind::Set,
            Operand::ConsentRef | Operand::ExportAssessmentRef => OperandKind::Presence,
        }
    }

    /// Whether the operand is a TDS profile term rather than an ODRL core term.
    pub const fn is_tds(self) -> bool {
        matches!(
            self,
            Operand::Currency
                | Operand::Volume
                | Operand::Classification
                | Operand::PersonalInfo
                | Operand::RecipientRole
                | Operand::ConsentRef
                | Operand::ExportAssessmentRef
        )
    }

    /// Whether `op` may be used with this operand.
    pub fn supports(self, op: Operator) -> bool {
        use Operator::*;
        match self.kind() {
            OperandKind::Hierarchy => {
                matches!(op, Eq | Neq | IsA | IsPartOf | HasPart | IsAnyOf | IsNoneOf)
            }
            OperandKind::Ordered => {
                matches!(op, Eq | Neq | Lt | Lteq | Gt | Gteq | IsAnyOf | IsNoneOf)
            }
            OperandKind::Equality => matches!(op, Eq | Neq | IsAnyOf | IsNoneOf),
            OperandKind::Set => matches!(op, Eq | Neq | HasPart | IsAnyOf | IsNoneOf | IsAllOf),
            OperandKind::Presence => matches!(op, Eq | Neq),
        }
    }
}

word_enum! {
    /// A constraint operator.
    Operator {
        /// Equal (exact, also for hierarchies).
        Eq = "eq",
        /// Not equal.
        Neq = "neq",
        /// Less than.
        Lt = "lt",
        /// Less than or equal.
        Lteq = "lteq",
        /// Greater than.
        Gt = "gt",
        /// Greater than or equal.
        Gteq = "gteq",
        /// An instance of: the value or below it in the hierarchy.
        IsA = "isA",
        /// One of the listed values (exact).
        IsAnyOf = "isAnyOf",
        /// None of the listed values (exact).
        IsNoneOf = "isNoneOf",
        /// Holds all of the listed values (sets).
        IsAllOf = "isAllOf",
        /// Part of: the value or below it in the hierarchy.
        IsPartOf = "isPartOf",
        /// Has as part: the value or above it in the hierarchy; for sets, contains it.
        HasPart = "hasPart",
    }
}

impl Operator {
    /// Whether the right operand is a list.
    pub const fn takes_list(self) -> bool {
        matches!(
            self,
            Operator::IsAnyOf | Operator::IsNoneOf | Operator::IsAllOf
        )
    }

    /// The operator in words, for explanations.
    pub const fn words(self) -> &'static str {
        match self {
            Operator::Eq => "equal to",
            Operator::Neq => "other than",
            Operator::Lt => "less than",
            Operator::Lteq => "at most",
            Operator::Gt => "more than",
            Operator::Gteq => "at least",
            Operator::IsA => "within",
            Operator::IsAnyOf => "one of",
            Operator::IsNoneOf => "none of",
            Operator::IsAllOf => "all of",
            Operator::IsPartOf => "within",
            Operator::HasPart => "including",
        }
    }
}

word_enum! {
    /// A logical constraint.
    LogicalOp {
        /// All hold.
        And = "and",
        /// At least one holds.
        Or = "or",
        /// Exactly one holds.
        Xone = "xone",
        /// All hold, checked in order (the first failure is reported).
        AndSequence = "andSequence",
    }
}

impl LogicalOp {
    /// The connective in the text syntax.
    pub const fn text_word(self) -> &'static str {
        match self {
            LogicalOp::And => "and",
            LogicalOp::Or => "or",
            LogicalOp::Xone => "xone",
            LogicalOp::AndSequence => "then",
        }
    }
}

word_enum! {
    /// What to do when a prohibition and a permission both apply.
    Conflict {
        /// The prohibition wins (the TDS default).
        Prohibit = "prohibit",
        /// The permission wins.
        Permit = "permit",
        /// The policy is void: every request it covers is denied (ODRL's default).
        Invalid = "invalid",
    }
}

#[expect(clippy::derivable_impls, reason = "the enum is declared by a macro")]
impl Default for Conflict {
    fn default() -> Self {
        Conflict::Prohibit
    }
}

word_enum! {
    /// The kind of policy (ODRL `@type`).
    PolicyKind {
        /// A set of rules (ODRL `Set`).
        Set = "set",
        /// An offer from an assigner (ODRL `Offer`).
        Offer = "offer",
        /// Agreed terms between assigner and assignee (ODRL `Agreement`).
        Agreement = "agreement",
    }
}

#[expect(clippy::derivable_impls, reason = "the enum is declared by a macro")]
impl Default for PolicyKind {
    fn default() -> Self {
        PolicyKind::Set
    }
}

word_enum! {
    /// Data classification (分类分级), ordered `general` < `important` < `core`.
    Classification {
        /// General data.
        General = "general",
        /// Important data.
        Important = "important",
        /// Core data.
        Core = "core",
    }
}

word_enum! {
    /// Personal information level, ordered `none` < `personal` < `sensitive`.
    PersonalInfo {
        /// No personal information.
        None = "none",
        /// Personal information.
        Personal = "personal",
        /// Sensitive personal information.
        Sensitive = "sensitive",
    }
}

word_enum! {
    /// The unit a payment is due per.
    PayUnit {
        /// Each use.
        Use = "use",
        /// Each MiB delivered.
        Mib = "mib",
        /// Each GiB delivered.
        Gib = "gib",
        /// Each day of the term.
        Day = "day",
        /// Each month of the term.
        Month = "month",
        /// Each year of the term.
        Year = "year",
        /// Once for the whole agreement.
        Once = "once",
    }
}

fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

macro_rules! string_type {
    ($(#[$m:meta])* $name:ident, $check:expr, $what:literal) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = PolicyError;
            fn from_str(s: &str) -> Result<Self, PolicyError> {
                let check: fn(&str) -> bool = $check;
                if check(s) {
                    Ok($name(s.to_owned()))
                } else {
                    Err(PolicyError::BadValue { what: $what, value: quote(s) })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = PolicyError;
            fn try_from(s: String) -> Result<Self, PolicyError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    };
}

string_type!(
    /// A purpose path: lowercase tokens separated by `/` (`grid/planning`), at most
    /// eight deep. `grid` includes `grid/planning`.
    Purpose,
    |s| {
        s.len() <= 256
            && s.split('/').count() <= MAX_PURPOSE_DEPTH
            && s.split('/').all(|t| is_token(t, 32))
    },
    "purpose (lowercase tokens separated by '/')"
);

impl Purpose {
    /// Whether `self` is `other` or below it (`grid/planning` is within `grid`).
    pub fn is_within(&self, other: &Purpose) -> bool {
        hier_within(&self.0, &other.0, '/')
    }
}

string_type!(
    /// A region code: ISO 3166-1 alpha-2 (`CN`), optionally with an ISO 3166-2
    /// subdivision (`CN-SX`). `CN` includes `CN-SX`. The same syntax as
    /// `tds_identity::Jurisdiction`.
    Region,
    |s| {
        let (country, sub) = match s.split_once('-') {
            Some((c, sub)) => (c, Some(sub)),
            None => (s, None),
        };
        country.len() == 2
            && country.bytes().all(|c| c.is_ascii_uppercase())
            && sub.is_none_or(|sub| {
                (1..=3).contains(&sub.len())
                    && sub
                        .bytes()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            })
    },
    "region (a code such as CN or CN-SX)"
);

impl Region {
    /// Whether `self` is `other` or a subdivision of it (`CN-SX` is within `CN`).
    pub fn is_within(&self, other: &Region) -> bool {
        hier_within(&self.0, &other.0, '-')
    }
}

/// Whether `a` equals `b` or starts with `b` followed by `sep`.
pub(crate) fn hier_within(a: &str, b: &str, sep: char) -> bool {
    match a.strip_prefix(b) {
        Some("") => true,
        Some(rest) => rest.starts_with(sep),
        None => false,
    }
}

string_type!(
    /// A sector or role token (`power`, `consumer`): lowercase letters, digits and `-`,
    /// starting with a letter, at most 32 bytes. The same syntax as `tds_identity::Sector`.
    Token,
    |s| is_token(s, 32),
    "token (lowercase letters, digits and '-', starting with a letter)"
);

string_type!(
    /// A currency code: three capital letters (ISO 4217, `CNY`).
    Currency,
    |s| s.len() == 3 && s.bytes().all(|c| c.is_ascii_uppercase()),
    "currency (three capital letters such as CNY)"
);

string_type!(
    /// Free text (attribution text, references, asset ids, party names): 1 to 1024 bytes,
    /// no control characters.
    Text,
    |s| !s.is_empty() && s.len() <= MAX_TEXT && !s.chars().any(char::is_control),
    "text (1 to 1024 bytes without control characters)"
);

/// An amount of money with four decimal places, held as ten-thousandths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    /// Ten-thousandths per unit.
    pub const SCALE: u64 = 10_000;
}

impl FromStr for Amount {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::BadValue {
            what: "amount (a decimal number with at most 4 fraction digits)",
            value: quote(s),
        };
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty()
            || int.len() > 15
            || !int.bytes().all(|c| c.is_ascii_digit())
            || frac.len() > 4
            || (s.contains('.') && frac.is_empty())
            || !frac.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        let i: u64 = int.parse().map_err(|_| bad())?;
        let mut f: u64 = 0;
        for (n, c) in frac
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(4)
            .enumerate()
        {
            let _ = n;
            f = f * 10 + u64::from(c - b'0');
        }
        i.checked_mul(Self::SCALE)
            .and_then(|v| v.checked_add(f))
            .map(Amount)
            .ok_or_else(bad)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 / Self::SCALE;
        let frac = self.0 % Self::SCALE;
        if frac == 0 {
            write!(f, "{int}")
        } else {
            let s = format!("{frac:04}");
            write!(f, "{int}.{}", s.trim_end_matches('0'))
        }
    }
}

/// The right operand of a constraint: one typed value, or a list of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    /// A purpose path.
    #[serde(rename = "purpose")]
    Purpose(Purpose),
    /// A region code.
    #[serde(rename = "region")]
    Region(Region),
    /// A point in time.
    #[serde(rename = "time")]
    Time(Timestamp),
    /// A duration in milliseconds.
    #[serde(rename = "duration")]
    Duration(u64),
    /// A count of uses.
    #[serde(rename = "count")]
    Count(u64),
    /// A number of bytes.
    #[serde(rename = "bytes")]
    Bytes(u64),
    /// An amount of money.
    #[serde(rename = "amount")]
    Amount(Amount),
    /// A classification level.
    #[serde(rename = "classification")]
    Classification(Classification),
    /// A personal information level.
    #[serde(rename = "personalInfo")]
    PersonalInfo(PersonalInfo),
    /// A sector or role.
    #[serde(rename = "token")]
    Token(Token),
    /// A participant id.
    #[serde(rename = "participant")]
    Participant(Hash256),
    /// A currency.
    #[serde(rename = "currency")]
    Currency(Currency),
    /// Present (`true`) or absent (`false`).
    #[serde(rename = "present")]
    Present(bool),
    /// A list of values of one type.
    #[serde(rename = "list")]
    List(Vec<Value>),
}

impl Value {
    /// The value as a number on its operand's order, for ordered operands.
    pub fn ordinal(&self) -> Option<u64> {
        Some(match self {
            Value::Time(t) => t.as_millis(),
            Value::Duration(d) | Value::Count(d) | Value::Bytes(d) => *d,
            Value::Amount(a) => a.0,
            Value::Classification(c) => *c as u64,
            Value::PersonalInfo(p) => *p as u64,
            _ => return None,
        })
    }

    /// Whether this (non-list) value has the type `operand` takes.
    pub fn fits(&self, operand: Operand) -> bool {
        if let Value::Time(t) = self {
            return operand == Operand::DateTime && t.as_millis() <= MAX_TIME_MS;
        }
        matches!(
            (operand, self),
            (Operand::Purpose, Value::Purpose(_))
                | (Operand::Spatial, Value::Region(_))
                | (Operand::DateTime, Value::Time(_))
                | (Operand::ElapsedTime, Value::Duration(_))
                | (Operand::Count, Value::Count(_))
                | (Operand::Volume, Value::Bytes(_))
                | (Operand::PayAmount, Value::Amount(_))
                | (Operand::Classification, Value::Classification(_))
                | (Operand::PersonalInfo, Value::PersonalInfo(_))
                | (Operand::Industry, Value::Token(_))
                | (Operand::RecipientRole, Value::Token(_))
                | (Operand::Recipient, Value::Participant(_))
                | (Operand::Currency, Value::Currency(_))
                | (Operand::ConsentRef, Value::Present(_))
                | (Operand::ExportAssessmentRef, Value::Present(_))
        )
    }

    /// The items: the list's, or the value itself.
    pub fn items(&self) -> &[Value] {
        match self {
            Value::List(v) => v,
            one => std::slice::from_ref(one),
        }
    }
}

/// A constraint: an atomic comparison or a logical combination.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Constraint {
    /// `operand operator value`.
    #[serde(rename = "atom")]
    Atom {
        /// What is looked at.
        #[serde(rename = "l")]
        operand: Operand,
        /// How it is compared.
        #[serde(rename = "o")]
        operator: Operator,
        /// What it is compared with.
        #[serde(rename = "r")]
        value: Value,
    },
    /// A logical combination of two or more constraints.
    #[serde(rename = "logic")]
    Logical {
        /// The connective.
        #[serde(rename = "o")]
        op: LogicalOp,
        /// The parts.
        #[serde(rename = "c")]
        items: Vec<Constraint>,
    },
}

impl Constraint {
    /// An atomic constraint.
    pub fn atom(operand: Operand, operator: Operator, value: Value) -> Constraint {
        Constraint::Atom {
            operand,
            operator,
            value,
        }
    }

    /// Checks operator, operand and value types, list sizes and nesting depth.
    pub fn validate(&self, depth: usize, atoms: &mut usize) -> Result<(), PolicyError> {
        if depth > MAX_DEPTH {
            return Err(PolicyError::TooDeep { limit: MAX_DEPTH });
        }
        match self {
            Constraint::Atom {
                operand,
                operator,
                value,
            } => {
                *atoms += 1;
                if *atoms > MAX_CONSTRAINTS {
                    return Err(PolicyError::TooLarge {
                        what: "constraints",
                        limit: MAX_CONSTRAINTS,
                    });
                }
                if !operand.supports(*operator) {
                    return Err(PolicyError::BadOperator {
                        operand: *operand,
                        operator: *operator,
                    });
                }
                match (operator.takes_list(), value) {
                    (true, Value::List(items)) => {
                        if items.is_empty() || items.len() > MAX_LIST {
                            return Err(PolicyError::BadList {
                                operand: *operand,
                                reason: format!("must hold 1 to {MAX_LIST} values"),
                            });
                        }
                        if let Some(bad) = items.iter().find(|v| !v.fits(*operand)) {
                            return Err(PolicyError::BadValueType {
                                operand: *operand,
                                value: format!("{bad:?}"),
                            });
                        }
                    }
                    (true, _) => {
                        return Err(PolicyError::BadList {
                            operand: *operand,
                            reason: format!("operator {operator} needs a list"),
                        })
                    }
                    (false, v) => {
                        if !v.fits(*operand) {
                            return Err(PolicyError::BadValueType {
                                operand: *operand,
                                value: format!("{v:?}"),
                            });
                        }
                    }
                }
                Ok(())
            }
            Constraint::Logical { op, items } => {
                if items.len() < 2 || items.len() > MAX_LIST {
                    return Err(PolicyError::BadLogical {
                        op: *op,
                        count: items.len(),
                    });
                }
                for c in items {
                    c.validate(depth + 1, atoms)?;
                }
                Ok(())
            }
        }
    }

    /// Calls `f` on every atomic constraint.
    pub fn for_each_atom<'a>(&'a self, f: &mut impl FnMut(Operand, Operator, &'a Value)) {
        match self {
            Constraint::Atom {
                operand,
                operator,
                value,
            } => f(*operand, *operator, value),
            Constraint::Logical { items, .. } => {
                for c in items {
                    c.for_each_atom(f);
                }
            }
        }
    }
}

/// A duty: something the assignee must do when exercising a permission (or at all, for
/// an obligation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Duty {
    /// Name the source with this text (ODRL `attribute`).
    #[serde(rename = "attribute")]
    Attribute(Text),
    /// Delete the data within this many milliseconds of receiving it (ODRL `delete`).
    #[serde(rename = "delete")]
    Delete {
        /// The deadline, in milliseconds.
        within: u64,
    },
    /// Anonymize before use (ODRL `anonymize`).
    #[serde(rename = "anonymize")]
    Anonymize,
    /// Tell this party about each use (ODRL `inform`).
    #[serde(rename = "notify")]
    Notify(Text),
    /// Pay this amount per unit (ODRL `compensate`).
    #[serde(rename = "pay")]
    Pay {
        /// The amount.
        amount: Amount,
        /// The currency.
        currency: Currency,
        /// Per what.
        per: PayUnit,
    },
    /// Report usage at this interval in milliseconds (`tds:reportUsage`).
    #[serde(rename = "reportUsage")]
    ReportUsage {
        /// The interval.
        every: u64,
    },
    /// Hold the data subject's consent under this reference (`tds:obtainConsent`); the
    /// request must present it.
    #[serde(rename = "obtainConsent")]
    ObtainConsent(Text),
}

impl Duty {
    /// The duty's name in the text syntax.
    pub const fn name(&self) -> &'static str {
        match self {
            Duty::Attribute(_) => "attribute",
            Duty::Delete { .. } => "delete",
            Duty::Anonymize => "anonymize",
            Duty::Notify(_) => "notify",
            Duty::Pay { .. } => "pay",
            Duty::ReportUsage { .. } => "report-usage",
            Duty::ObtainConsent(_) => "obtain-consent",
        }
    }
}

word_enum! {
    /// Whether a rule permits, prohibits or obliges.
    RuleKind {
        /// A permission.
        Permission = "permit",
        /// A prohibition.
        Prohibition = "prohibit",
        /// An obligation (a duty that applies whatever is done).
        Obligation = "obligation",
    }
}

/// One rule of a policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Permission, prohibition or obligation.
    #[serde(rename = "kind")]
    pub kind: RuleKind,
    /// The action (for an obligation, the action the duties relate to, usually `use`).
    #[serde(rename = "action")]
    pub action: Action,
    /// The asset, if it differs from the policy's.
    #[serde(rename = "target", default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Text>,
    /// The party granting the rule, if it differs from the policy's.
    #[serde(rename = "assigner", default, skip_serializing_if = "Option::is_none")]
    pub assigner: Option<Text>,
    /// The party the rule is for; any recipient when absent.
    #[serde(rename = "assignee", default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<Hash256>,
    /// When the rule applies; always when absent.
    #[serde(rename = "when", default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<Constraint>,
    /// What the assignee must do.
    #[serde(rename = "duties", default, skip_serializing_if = "Vec::is_empty")]
    pub duties: Vec<Duty>,
}

impl Rule {
    /// A rule with no constraint, duty or party of its own.
    pub fn new(kind: RuleKind, action: Action) -> Rule {
        Rule {
            kind,
            action,
            target: None,
            assigner: None,
            assignee: None,
            constraint: None,
            duties: Vec::new(),
        }
    }
}

/// A usage policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Policy {
    /// Set, offer or agreement.
    #[serde(rename = "kind")]
    pub kind: PolicyKind,
    /// An identifier chosen by the author (ODRL `uid`).
    #[serde(rename = "uid", default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Text>,
    /// The asset the rules are about.
    #[serde(rename = "target", default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Text>,
    /// The party granting the rules.
    #[serde(rename = "assigner", default, skip_serializing_if = "Option::is_none")]
    pub assigner: Option<Text>,
    /// What happens when a prohibition and a permission both apply.
    #[serde(rename = "conflict", default)]
    pub conflict: Conflict,
    /// The rules, in order.
    #[serde(rename = "rules")]
    pub rules: Vec<Rule>,
}

impl Policy {
    /// Checks every bound and every constraint's types, and compiles the policy: the
    /// [`CompiledPolicy`](crate::CompiledPolicy) is the proof of validity and the fast
    /// evaluator. (It holds a copy of the policy; [`CompiledPolicy::new`] takes the policy
    /// by value instead.)
    ///
    /// [`CompiledPolicy::new`]: crate::CompiledPolicy::new
    pub fn validate(&self) -> Result<crate::CompiledPolicy, PolicyError> {
        crate::CompiledPolicy::compile(self)
    }

    /// The checks of [`Policy::validate`] without compiling (compiling may refuse more:
    /// more than 256 distinct values for one operand).
    pub(crate) fn check(&self) -> Result<(), PolicyError> {
        if self.rules.len() > MAX_RULES {
            return Err(PolicyError::TooLarge {
                what: "rules",
                limit: MAX_RULES,
            });
        }
        let mut atoms = 0;
        for r in &self.rules {
            if r.duties.len() > MAX_DUTIES {
                return Err(PolicyError::TooLarge {
                    what: "duties",
                    limit: MAX_DUTIES,
                });
            }
            if r.kind == RuleKind::Obligation && r.duties.is_empty() {
                return Err(PolicyError::EmptyObligation);
            }
            if r.kind == RuleKind::Prohibition && !r.duties.is_empty() {
                return Err(PolicyError::ProhibitionDuty);
            }
            if let Some(c) = &r.constraint {
                c.validate(1, &mut atoms)?;
            }
        }
        Ok(())
    }

    /// The canonical CBOR form, for hashing and signing.
    pub fn to_cbor(&self) -> Result<Vec<u8>, PolicyError> {
        Ok(tds_core::cbor::encode(self)?)
    }

    /// Reads the canonical CBOR form, refusing anything non-canonical or invalid.
    pub fn from_cbor(bytes: &[u8]) -> Result<Policy, PolicyError> {
        let p: Policy = tds_core::cbor::decode(bytes)?;
        p.validate()?;
        Ok(p)
    }

    /// The policy id: `tds/policy/v1` hash of the canonical CBOR form.
    pub fn id(&self) -> Result<Hash256, PolicyError> {
        Ok(tds_core::Domain::POLICY.hash(&self.to_cbor()?))
    }

    /// The permissions.
    pub fn permissions(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.kind == RuleKind::Permission)
    }
}
