//! Errors, each with a stable machine-readable code ([`tds_core::ErrorCode`]).
//!
//! Messages are for people and may change; codes are a contract (the connector protocol
//! sends them as refusal reasons, the provenance log records them). `spec/policy.md` §9
//! lists every code. A variant that wraps another error is `#[error(transparent)]`, so a
//! message never repeats its cause when the chain is printed.

use std::fmt;

use tds_core::ErrorCode;

use crate::model::{LogicalOp, Operand, Operator};

/// Why a policy, request or contract was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A value with the wrong syntax.
    #[error("{value} is not a valid {what}")]
    BadValue {
        /// What was expected.
        what: &'static str,
        /// The refused value, quoted and shortened.
        value: String,
    },
    /// An operator the operand does not support.
    #[error("operator {operator} cannot be used with operand {operand}")]
    BadOperator {
        /// The operand.
        operand: Operand,
        /// The operator.
        operator: Operator,
    },
    /// A value of the wrong type for the operand.
    #[error("operand {operand} cannot be compared with {value}")]
    BadValueType {
        /// The operand.
        operand: Operand,
        /// The value.
        value: String,
    },
    /// A list right operand that is wrong.
    #[error("the value list of operand {operand} {reason}")]
    BadList {
        /// The operand.
        operand: Operand,
        /// Why.
        reason: String,
    },
    /// A logical constraint with fewer than two parts (or too many).
    #[error("logical constraint {op} must combine 2 to 64 constraints, not {count}")]
    BadLogical {
        /// The connective.
        op: LogicalOp,
        /// How many parts it had.
        count: usize,
    },
    /// Nesting deeper than the limit.
    #[error("constraints nest deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// Too many of something.
    #[error("policy has more {what} than the limit of {limit}")]
    TooLarge {
        /// Of what.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// An obligation without duties.
    #[error("an obligation must name at least one duty")]
    EmptyObligation,
    /// A prohibition with duties (ODRL remedies are not supported).
    #[error("a prohibition cannot carry duties")]
    ProhibitionDuty,
    /// Text syntax error, with its position.
    #[error("{file}:{line}:{col}: {message}")]
    Syntax {
        /// The file name (or `<input>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// ODRL JSON that cannot be read.
    #[error(transparent)]
    Odrl(#[from] OdrlError),
    /// A request (JSON) that cannot be read.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// Canonical CBOR refused.
    #[error(transparent)]
    Cbor(#[from] tds_core::cbor::CborError),
    /// Containment analysis gave up (never with a wrong answer).
    #[error(transparent)]
    TooComplex(#[from] ContainmentLimit),
}

impl ErrorCode for PolicyError {
    fn code(&self) -> &'static str {
        match self {
            PolicyError::BadValue { .. } => "policy.bad_value",
            PolicyError::BadOperator { .. } => "policy.bad_operator",
            PolicyError::BadValueType { .. } => "policy.bad_value_type",
            PolicyError::BadList { .. } => "policy.bad_list",
            PolicyError::BadLogical { .. } => "policy.bad_logical",
            PolicyError::TooDeep { .. } => "policy.too_deep",
            PolicyError::TooLarge { .. } => "policy.too_large",
            PolicyError::EmptyObligation => "policy.empty_obligation",
            PolicyError::ProhibitionDuty => "policy.prohibition_duty",
            PolicyError::Syntax { .. } => "policy.syntax",
            PolicyError::Odrl(e) => e.code(),
            PolicyError::Request(e) => e.code(),
            // tds-core's codes (`cbor.*`): the same vocabulary for every signed object.
            PolicyError::Cbor(e) => e.code(),
            PolicyError::TooComplex(e) => e.code(),
        }
    }
}

/// Why containment gave up. It never answers "contained" without having checked, so a
/// caller treats this as "not shown to be contained".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContainmentLimit {
    /// The policies name more roles than the search splits into subsets.
    #[error("containment: the policies name more than {limit} distinct roles")]
    Roles {
        /// The limit ([`crate::contain::MAX_ROLES`]).
        limit: usize,
    },
    /// The search used up its budget of work.
    #[error("containment: gave up after {limit} units of work; simplify the policies")]
    Budget {
        /// The budget that was used up.
        limit: u64,
    },
}

impl ErrorCode for ContainmentLimit {
    fn code(&self) -> &'static str {
        match self {
            ContainmentLimit::Roles { .. } => "policy.containment.too_many_roles",
            ContainmentLimit::Budget { .. } => "policy.containment.over_budget",
        }
    }
}

/// What kind of ODRL term was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TermKind {
    /// A key of the policy object.
    PolicyKey,
    /// A key of a permission or prohibition.
    RuleKey,
    /// A key of an obligation.
    ObligationKey,
    /// A key of a duty.
    DutyKey,
    /// A key of a constraint.
    ConstraintKey,
    /// A rule's action.
    Action,
    /// A duty's action.
    DutyAction,
    /// A constraint's `leftOperand`.
    LeftOperand,
    /// A constraint's operator.
    Operator,
    /// The policy's `@type`.
    PolicyType,
    /// A typed literal's `@type`.
    LiteralType,
    /// The conflict strategy.
    Conflict,
    /// A profile other than the TDS profile.
    Profile,
    /// A `tds:per` unit.
    PayUnit,
    /// A prefixed name in an unknown namespace.
    Term,
}

impl TermKind {
    /// The words used in messages.
    pub const fn words(self) -> &'static str {
        match self {
            TermKind::PolicyKey => "policy key",
            TermKind::RuleKey => "rule key",
            TermKind::ObligationKey => "obligation key",
            TermKind::DutyKey => "duty key",
            TermKind::ConstraintKey => "constraint key",
            TermKind::Action => "action",
            TermKind::DutyAction => "duty action",
            TermKind::LeftOperand => "leftOperand",
            TermKind::Operator => "operator",
            TermKind::PolicyType => "policy @type",
            TermKind::LiteralType => "literal type",
            TermKind::Conflict => "conflict strategy",
            TermKind::Profile => "profile",
            TermKind::PayUnit => "tds:per",
            TermKind::Term => "term",
        }
    }
}

impl fmt::Display for TermKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.words())
    }
}

/// Why ODRL JSON was refused. Terms and keys are kept as given, shortened to 64
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OdrlError {
    /// Not JSON text.
    #[error("odrl: not JSON: {0}")]
    NotJson(String),
    /// Larger than [`crate::text::MAX_INPUT`].
    #[error("odrl: input larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// JSON nested deeper than the limit.
    #[error("odrl: JSON nests deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A key given twice in one object (JSON parsers disagree about which one wins).
    #[error("odrl: key {key:?} given twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A value of the wrong JSON type.
    #[error("odrl: {what} must be {expected}")]
    WrongShape {
        /// Which value.
        what: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A term (key, action, operand, operator, type...) that is not understood.
    #[error("odrl: unknown {kind} {term:?}")]
    Unknown {
        /// What kind of term.
        kind: TermKind,
        /// The term as given.
        term: String,
    },
    /// A required part is missing.
    #[error("odrl: {what} has no {field}")]
    Missing {
        /// The object.
        what: &'static str,
        /// The missing part.
        field: &'static str,
    },
    /// A feature of ODRL that the TDS profile does not take.
    #[error("odrl: {what}")]
    Unsupported {
        /// The feature and that it is not supported, in words.
        what: &'static str,
    },
    /// A remote `@context` other than ODRL's: TDS never fetches contexts, so it cannot
    /// know what the document's terms mean.
    #[error(
        "odrl: @context {context:?} is not the ODRL context (TDS does not fetch remote contexts)"
    )]
    RemoteContext {
        /// The context IRI as given.
        context: String,
    },
    /// An inline `@context` that defines something other than the `odrl`, `tds` and `xsd`
    /// prefixes with their own namespaces (it could change what the terms mean).
    #[error("odrl: @context defines {term:?}; only the prefixes odrl, tds and xsd with their own namespaces may be defined")]
    ContextTerm {
        /// The defined term.
        term: String,
    },
    /// A value that does not parse for its field.
    #[error("odrl: {field}: {reason}")]
    BadValue {
        /// The field.
        field: String,
        /// Why, in words.
        reason: String,
    },
    /// More of something than the limit.
    #[error("odrl: more than {limit} {what}")]
    TooMany {
        /// Of what.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A duty without what its TDS form needs.
    #[error("odrl: duty {action:?} needs {needs}")]
    IncompleteDuty {
        /// The duty's action.
        action: String,
        /// What it needs.
        needs: &'static str,
    },
    /// A plain `attribute` or `inform` duty with no party named and no assigner to
    /// default to.
    #[error("odrl: duty {action:?} names no party and neither the rule nor the policy has an assigner to default to")]
    NoDefaultParty {
        /// The duty's action.
        action: &'static str,
    },
    /// An operator the left operand does not support.
    #[error("odrl: operator {operator} cannot be used with leftOperand {operand}")]
    BadOperator {
        /// The operand.
        operand: Operand,
        /// The operator.
        operator: Operator,
    },
    /// A structural rule of the TDS mapping is broken.
    #[error("odrl: {0}")]
    Shape(&'static str),
}

impl ErrorCode for OdrlError {
    fn code(&self) -> &'static str {
        match self {
            OdrlError::NotJson(_) => "policy.odrl.not_json",
            OdrlError::TooLarge { .. } => "policy.odrl.too_large",
            OdrlError::TooDeep { .. } => "policy.odrl.too_deep",
            OdrlError::DuplicateKey { .. } => "policy.odrl.duplicate_key",
            OdrlError::WrongShape { .. } | OdrlError::Shape(_) => "policy.odrl.wrong_shape",
            OdrlError::Unknown { kind, .. } => match kind {
                TermKind::PolicyKey
                | TermKind::RuleKey
                | TermKind::ObligationKey
                | TermKind::DutyKey
                | TermKind::ConstraintKey => "policy.odrl.unknown_key",
                TermKind::Action | TermKind::DutyAction => "policy.odrl.unknown_action",
                TermKind::LeftOperand => "policy.odrl.unknown_operand",
                TermKind::Operator => "policy.odrl.unknown_operator",
                TermKind::PolicyType | TermKind::LiteralType => "policy.odrl.unknown_type",
                TermKind::Conflict | TermKind::Profile | TermKind::PayUnit | TermKind::Term => {
                    "policy.odrl.unknown_term"
                }
            },
            OdrlError::Missing { .. } => "policy.odrl.missing",
            OdrlError::Unsupported { .. } => "policy.odrl.unsupported",
            OdrlError::RemoteContext { .. } => "policy.odrl.remote_context",
            OdrlError::ContextTerm { .. } => "policy.odrl.context_term",
            OdrlError::BadValue { .. } => "policy.odrl.bad_value",
            OdrlError::TooMany { .. } => "policy.odrl.too_many",
            OdrlError::IncompleteDuty { .. } => "policy.odrl.incomplete_duty",
            OdrlError::NoDefaultParty { .. } => "policy.odrl.no_default_party",
            OdrlError::BadOperator { .. } => "policy.odrl.bad_operator",
        }
    }
}

/// Why a request in its JSON form was refused. Keys are kept as given, shortened to 64
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not JSON text.
    #[error("request: not JSON: {0}")]
    NotJson(String),
    /// A key given twice in one object.
    #[error("request: key {key:?} given twice")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// Not a JSON object.
    #[error("request: must be a JSON object")]
    NotObject,
    /// A required key is missing.
    #[error("request: {key} is missing")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A value of the wrong JSON type.
    #[error("request: {key} must be {expected}")]
    WrongType {
        /// The key (`recipient.roles` for nested keys).
        key: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A key that is not part of the request form.
    #[error("request: unknown key {key:?}")]
    UnknownKey {
        /// The key (`recipient.x` for nested keys).
        key: String,
    },
    /// An action that is not one of the thirteen.
    #[error("request: unknown action {action:?}")]
    UnknownAction {
        /// The action as given.
        action: String,
    },
    /// A value that does not parse for its key.
    #[error("request: {key}: {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// Why, in words.
        reason: String,
    },
    /// More values than the limit.
    #[error("request: {key} holds more than {limit} values")]
    TooMany {
        /// The key.
        key: &'static str,
        /// The limit.
        limit: usize,
    },
}

impl ErrorCode for RequestError {
    fn code(&self) -> &'static str {
        match self {
            RequestError::NotJson(_) => "policy.request.not_json",
            RequestError::DuplicateKey { .. } => "policy.request.duplicate_key",
            RequestError::NotObject => "policy.request.not_object",
            RequestError::Missing { .. } => "policy.request.missing",
            RequestError::WrongType { .. } => "policy.request.wrong_type",
            RequestError::UnknownKey { .. } => "policy.request.unknown_key",
            RequestError::UnknownAction { .. } => "policy.request.unknown_action",
            RequestError::BadValue { .. } => "policy.request.bad_value",
            RequestError::TooMany { .. } => "policy.request.too_many",
        }
    }
}

/// At most 64 characters of refused input, for error values.
pub(crate) fn short(s: &str) -> String {
    s.chars().take(64).collect()
}
