//! Requests, decisions and the reference evaluator that explains them.
//!
//! [`evaluate`] is the small, obviously-correct interpreter: it walks the policy as
//! written and says why, rule by rule. [`crate::compiled::CompiledPolicy`] reaches the
//! same decision quickly; a property test holds the two together.
//!
//! Constraints are three-valued: an atomic constraint about something the request does
//! not say is *unknown*. A permission is granted only when its constraint is *true*; a
//! prohibition applies unless its constraint is *false*. So a request that leaves things
//! out can never gain a permission or escape a prohibition by doing so.

use std::fmt;

use serde::{Deserialize, Serialize};
use tds_core::{Hash256, Timestamp};

use crate::model::*;

/// One requested use of the data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// What the recipient wants to do.
    pub action: Action,
    /// The asset, when the request names it (rules for another asset do not apply).
    pub target: Option<Text>,
    /// The declared purpose.
    pub purpose: Option<Purpose>,
    /// When the use happens.
    pub time: Option<Timestamp>,
    /// Milliseconds since the agreement was made.
    pub elapsed: Option<u64>,
    /// The recipient's participant id.
    pub recipient: Option<Hash256>,
    /// The recipient's sector.
    pub sector: Option<Token>,
    /// The recipient's roles (an empty list is a known empty set).
    pub roles: Vec<Token>,
    /// The recipient's jurisdiction (informational; `spatial` looks at `location`).
    pub jurisdiction: Option<Region>,
    /// Where processing happens.
    pub location: Option<Region>,
    /// Uses so far, not counting this one.
    pub uses: Option<u64>,
    /// Bytes delivered so far, this delivery included.
    pub volume: Option<u64>,
    /// The classification of the data in use.
    pub classification: Option<Classification>,
    /// The personal information level of the data in use.
    pub personal_info: Option<PersonalInfo>,
    /// The amount paid.
    pub pay_amount: Option<Amount>,
    /// The currency paid in.
    pub currency: Option<Currency>,
    /// A consent reference the recipient presents.
    pub consent_ref: Option<Text>,
    /// An export-assessment reference the recipient presents.
    pub export_assessment_ref: Option<Text>,
}

impl Request {
    /// A request for `action` that says nothing else.
    pub fn new(action: Action) -> Request {
        Request {
            action,
            target: None,
            purpose: None,
            time: None,
            elapsed: None,
            recipient: None,
            sector: None,
            roles: Vec::new(),
            jurisdiction: None,
            location: None,
            uses: None,
            volume: None,
            classification: None,
            personal_info: None,
            pay_amount: None,
            currency: None,
            consent_ref: None,
            export_assessment_ref: None,
        }
    }

    /// The request's value for an operand (`None` when the request does not say).
    pub fn actual(&self, operand: Operand) -> Option<Actual<'_>> {
        Some(match operand {
            Operand::Purpose => Actual::Hier(self.purpose.as_ref()?.as_str(), '/'),
            Operand::Spatial => Actual::Hier(self.location.as_ref()?.as_str(), '-'),
            Operand::DateTime => Actual::Ord(self.time?.as_millis()),
            Operand::ElapsedTime => Actual::Ord(self.elapsed?),
            Operand::Count => Actual::Ord(self.uses?.saturating_add(1)),
            Operand::Volume => Actual::Ord(self.volume?),
            Operand::PayAmount => Actual::Ord(self.pay_amount?.0),
            Operand::Classification => Actual::Ord(self.classification? as u64),
            Operand::PersonalInfo => Actual::Ord(self.personal_info? as u64),
            Operand::Industry => Actual::Token(self.sector.as_ref()?.as_str()),
            Operand::Currency => Actual::Token(self.currency.as_ref()?.as_str()),
            Operand::Recipient => Actual::Participant(self.recipient?),
            Operand::RecipientRole => Actual::Set(&self.roles),
            Operand::ConsentRef => Actual::Present(self.consent_ref.is_some()),
            Operand::ExportAssessmentRef => Actual::Present(self.export_assessment_ref.is_some()),
        })
    }
}

/// A request's value for one operand.
#[derive(Clone, Copy, Debug)]
pub enum Actual<'a> {
    /// A hierarchical value and its separator.
    Hier(&'a str, char),
    /// A value on a total order.
    Ord(u64),
    /// A token compared for equality.
    Token(&'a str),
    /// A participant id.
    Participant(Hash256),
    /// A set of roles.
    Set(&'a [Token]),
    /// Whether a reference is present.
    Present(bool),
}

/// A three-valued truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tri {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Cannot be told: the request does not say.
    Unknown,
}

impl Tri {
    fn from(b: bool) -> Tri {
        if b {
            Tri::True
        } else {
            Tri::False
        }
    }
}

fn text_of(v: &Value) -> Option<&str> {
    Some(match v {
        Value::Purpose(p) => p.as_str(),
        Value::Region(r) => r.as_str(),
        Value::Token(t) => t.as_str(),
        Value::Currency(c) => c.as_str(),
        _ => return None,
    })
}

fn same(a: &Actual<'_>, v: &Value) -> bool {
    match a {
        Actual::Hier(s, _) | Actual::Token(s) => text_of(v) == Some(*s),
        Actual::Ord(n) => v.ordinal() == Some(*n),
        Actual::Participant(h) => matches!(v, Value::Participant(x) if x == h),
        Actual::Present(p) => matches!(v, Value::Present(x) if x == p),
        Actual::Set(_) => false,
    }
}

/// Evaluates one atomic constraint against a request.
pub fn atom(operand: Operand, operator: Operator, value: &Value, req: &Request) -> Tri {
    let Some(a) = req.actual(operand) else {
        return Tri::Unknown;
    };
    let items = value.items();
    Tri::from(match (a, operator) {
        (Actual::Set(roles), op) => {
            let has = |v: &Value| roles.iter().any(|r| text_of(v) == Some(r.as_str()));
            match op {
                Operator::Eq | Operator::HasPart => has(value),
                Operator::Neq => !has(value),
                Operator::IsAnyOf => items.iter().any(has),
                Operator::IsNoneOf => !items.iter().any(has),
                Operator::IsAllOf => items.iter().all(has),
                _ => false,
            }
        }
        (a, Operator::Eq) => same(&a, value),
        (a, Operator::Neq) => !same(&a, value),
        (a, Operator::IsAnyOf) => items.iter().any(|v| same(&a, v)),
        (a, Operator::IsNoneOf) => !items.iter().any(|v| same(&a, v)),
        (Actual::Hier(s, sep), Operator::IsA | Operator::IsPartOf) => {
            text_of(value).is_some_and(|v| hier_within(s, v, sep))
        }
        (Actual::Hier(s, sep), Operator::HasPart) => {
            text_of(value).is_some_and(|v| hier_within(v, s, sep))
        }
        (Actual::Ord(n), op) => match value.ordinal() {
            Some(v) => match op {
                Operator::Lt => n < v,
                Operator::Lteq => n <= v,
                Operator::Gt => n > v,
                Operator::Gteq => n >= v,
                _ => false,
            },
            None => false,
        },
        _ => false,
    })
}

/// Evaluates a constraint (three-valued, Kleene logic; `xone` is unknown if any part is).
pub fn constraint(c: &Constraint, req: &Request) -> Tri {
    match c {
        Constraint::Atom {
            operand,
            operator,
            value,
        } => atom(*operand, *operator, value, req),
        Constraint::Logical { op, items } => {
            let vals: Vec<Tri> = items.iter().map(|i| constraint(i, req)).collect();
            let any = |t: Tri| vals.contains(&t);
            match op {
                LogicalOp::And | LogicalOp::AndSequence => {
                    if any(Tri::False) {
                        Tri::False
                    } else if any(Tri::Unknown) {
                        Tri::Unknown
                    } else {
                        Tri::True
                    }
                }
                LogicalOp::Or => {
                    if any(Tri::True) {
                        Tri::True
                    } else if any(Tri::Unknown) {
                        Tri::Unknown
                    } else {
                        Tri::False
                    }
                }
                LogicalOp::Xone => {
                    if any(Tri::Unknown) {
                        Tri::Unknown
                    } else {
                        Tri::from(vals.iter().filter(|t| **t == Tri::True).count() == 1)
                    }
                }
            }
        }
    }
}

/// The outcome of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// The use is permitted (with the duties that apply).
    #[serde(rename = "permit")]
    Permit,
    /// The use is denied.
    #[serde(rename = "deny")]
    Deny,
    /// No permission covers the action and no prohibition applies; treat as deny.
    #[serde(rename = "not_applicable")]
    NotApplicable,
}

impl Effect {
    /// `permit`, `deny` or `not_applicable`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Effect::Permit => "permit",
            Effect::Deny => "deny",
            Effect::NotApplicable => "not_applicable",
        }
    }
}

/// A decision with the duties that apply and the reasons, rule by rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Permit, deny or not applicable.
    pub effect: Effect,
    /// The duties the recipient takes on (for a permit).
    pub duties: Vec<Duty>,
    /// One per rule considered, and the conclusion.
    pub reasons: Vec<Reason>,
}

/// A rule named in a reason: its 1-based number, kind and action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef {
    /// 1-based position in the policy.
    pub number: usize,
    /// Permission, prohibition or obligation.
    pub kind: RuleKind,
    /// The rule's action.
    pub action: Action,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({})",
            rule_word(self.kind),
            self.number,
            self.action
        )
    }
}

/// What a reason says, as a stable code (the same vocabulary as the error codes: the
/// connector protocol sends them, and `access_denied` events record them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReasonCode {
    /// The rule is about another asset.
    OtherAsset,
    /// The rule does not cover (a prohibition: does not concern) the requested action.
    OtherAction,
    /// A permission whose condition or duties fail.
    NotGranted,
    /// A permission that is granted.
    Granted,
    /// A prohibition or obligation whose condition is false.
    DoesNotApply,
    /// A prohibition or obligation that applies.
    Applies,
    /// A prohibition that applies because the request leaves out what would rule it out.
    AppliesUnknown,
    /// Denied: a prohibition applies and prohibitions win (`conflict prohibit`).
    ConflictProhibit,
    /// Denied: a permission and a prohibition apply and the policy is void
    /// (`conflict invalid`).
    ConflictInvalid,
    /// A prohibition applies but permissions win (`conflict permit`).
    ConflictPermit,
    /// Denied: a prohibition applies.
    Prohibited,
    /// Denied: permissions cover the action but none is granted.
    NoneGranted,
    /// Not applicable: no permission covers the action.
    NotApplicable,
    /// Denied: an obligation's duty cannot be met.
    ObligationUnmet,
    /// Permitted.
    Permitted,
}

impl ReasonCode {
    /// The code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReasonCode::OtherAsset => "policy.rule.other_asset",
            ReasonCode::OtherAction => "policy.rule.other_action",
            ReasonCode::NotGranted => "policy.rule.not_granted",
            ReasonCode::Granted => "policy.rule.granted",
            ReasonCode::DoesNotApply => "policy.rule.does_not_apply",
            ReasonCode::Applies => "policy.rule.applies",
            ReasonCode::AppliesUnknown => "policy.rule.applies_unknown",
            ReasonCode::ConflictProhibit => "policy.deny.conflict_prohibit",
            ReasonCode::ConflictInvalid => "policy.deny.conflict_invalid",
            ReasonCode::ConflictPermit => "policy.conflict_permit",
            ReasonCode::Prohibited => "policy.deny.prohibited",
            ReasonCode::NoneGranted => "policy.deny.not_granted",
            ReasonCode::NotApplicable => "policy.not_applicable",
            ReasonCode::ObligationUnmet => "policy.deny.obligation_unmet",
            ReasonCode::Permitted => "policy.permit",
        }
    }

    /// Every code, in declaration order.
    pub const ALL: [ReasonCode; 15] = [
        ReasonCode::OtherAsset,
        ReasonCode::OtherAction,
        ReasonCode::NotGranted,
        ReasonCode::Granted,
        ReasonCode::DoesNotApply,
        ReasonCode::Applies,
        ReasonCode::AppliesUnknown,
        ReasonCode::ConflictProhibit,
        ReasonCode::ConflictInvalid,
        ReasonCode::ConflictPermit,
        ReasonCode::Prohibited,
        ReasonCode::NoneGranted,
        ReasonCode::NotApplicable,
        ReasonCode::ObligationUnmet,
        ReasonCode::Permitted,
    ];
}

impl tds_core::ErrorCode for ReasonCode {
    fn code(&self) -> &'static str {
        self.as_str()
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A duty the request cannot meet.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DutyUnmet {
    /// `obtain-consent`, and the request presents no consent reference.
    NoConsent {
        /// The duty's consent scheme.
        scheme: Text,
    },
    /// `pay`, and the request pays in another currency.
    OtherCurrency {
        /// The currency the duty names.
        due: Currency,
        /// The currency the request pays in.
        offered: Currency,
    },
}

impl fmt::Display for DutyUnmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DutyUnmet::NoConsent { scheme } => write!(
                f,
                "duty obtain-consent({scheme}) cannot be met: the request presents no consent reference"
            ),
            DutyUnmet::OtherCurrency { due, offered } => write!(
                f,
                "duty pay cannot be met: payment is due in {due}, the request pays in {offered}"
            ),
        }
    }
}

/// Why a rule's condition does not hold (for a prohibition: why it does not apply, or
/// why the request does not rule it out), or why its duties cannot be met.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unmet {
    /// An atomic constraint that does not hold for the request (or that the request does
    /// not decide: `actual` is `None` when it does not give the field).
    Constraint {
        /// The atomic constraint.
        constraint: Constraint,
        /// The request's value, in words.
        actual: Option<String>,
    },
    /// An `or` none of whose parts holds.
    NoneHolds(Vec<Unmet>),
    /// An `xone` where not exactly one part holds.
    NotExactlyOne {
        /// The `xone` constraint.
        constraint: Constraint,
        /// How many parts hold.
        holding: usize,
    },
    /// The rule is for another recipient (or the request names none).
    Assignee {
        /// The rule's assignee.
        expected: Hash256,
        /// The request's recipient.
        actual: Option<Hash256>,
    },
    /// A duty the request cannot meet.
    Duty(DutyUnmet),
}

impl Unmet {
    /// The first atomic constraint this explanation names, if any.
    pub fn constraint(&self) -> Option<&Constraint> {
        match self {
            Unmet::Constraint { constraint, .. } | Unmet::NotExactlyOne { constraint, .. } => {
                Some(constraint)
            }
            Unmet::NoneHolds(parts) => parts.iter().find_map(Unmet::constraint),
            Unmet::Assignee { .. } | Unmet::Duty(_) => None,
        }
    }

    /// What was expected, in words (`at most 100`, `equal to sha256:…`).
    pub fn expected(&self) -> Option<String> {
        match self {
            Unmet::Constraint {
                constraint:
                    Constraint::Atom {
                        operator, value, ..
                    },
                ..
            } => Some(format!(
                "{} {}",
                operator.words(),
                crate::text::format_value(value)
            )),
            Unmet::Constraint { .. } => None,
            Unmet::NotExactlyOne { .. } => Some("exactly one part holds".into()),
            Unmet::NoneHolds(parts) => parts.first().and_then(Unmet::expected),
            Unmet::Assignee { expected, .. } => Some(format!("recipient {expected}")),
            Unmet::Duty(DutyUnmet::NoConsent { .. }) => Some("a consent reference".into()),
            Unmet::Duty(DutyUnmet::OtherCurrency { due, .. }) => Some(format!("payment in {due}")),
        }
    }

    /// The request's value, in words (`None` when the request does not give it).
    pub fn actual(&self) -> Option<String> {
        match self {
            Unmet::Constraint { actual, .. } => actual.clone(),
            Unmet::NotExactlyOne { holding, .. } => Some(format!("{holding} hold")),
            Unmet::NoneHolds(parts) => parts.first().and_then(Unmet::actual),
            Unmet::Assignee { actual, .. } => actual.map(|a| a.to_string()),
            Unmet::Duty(DutyUnmet::NoConsent { .. }) => None,
            Unmet::Duty(DutyUnmet::OtherCurrency { offered, .. }) => {
                Some(format!("payment in {offered}"))
            }
        }
    }
}

const NOT_GIVEN: &str = "not given in the request";

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmet::Constraint {
                constraint:
                    Constraint::Atom {
                        operand,
                        operator,
                        value,
                    },
                actual,
            } => write!(
                f,
                "{operand} must be {} {}, actual: {}",
                operator.words(),
                crate::text::format_value(value),
                actual.as_deref().unwrap_or(NOT_GIVEN)
            ),
            Unmet::Constraint { constraint, .. } => {
                f.write_str(&crate::text::format_constraint(constraint))
            }
            Unmet::NoneHolds(parts) => {
                f.write_str("none of these holds: ")?;
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
            Unmet::NotExactlyOne {
                constraint,
                holding,
            } => write!(
                f,
                "exactly one of ({}) must hold, {holding} do",
                crate::text::format_constraint(constraint)
            ),
            Unmet::Assignee { expected, actual } => match actual {
                Some(a) => write!(f, "it is for assignee {expected}, the recipient is {a}"),
                None => write!(
                    f,
                    "it is for assignee {expected}, the recipient is {NOT_GIVEN}"
                ),
            },
            Unmet::Duty(d) => write!(f, "{d}"),
        }
    }
}

/// One reason of a decision: a code, the rule it is about, and what did not hold. Its
/// `Display` is the line `tds policy eval` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// What the reason says.
    pub code: ReasonCode,
    /// The rule it is about (for a final reason, the obligation that is not met).
    pub rule: Option<RuleRef>,
    /// The requested action, for [`ReasonCode::OtherAction`] and
    /// [`ReasonCode::NotApplicable`].
    pub action: Option<Action>,
    /// What did not hold.
    pub unmet: Option<Unmet>,
    /// Whether the reason is about the offer's policy of an agreement (printed after
    /// `offer: `).
    pub offer: bool,
}

impl Reason {
    fn new(code: ReasonCode) -> Reason {
        Reason {
            code,
            rule: None,
            action: None,
            unmet: None,
            offer: false,
        }
    }

    fn about(code: ReasonCode, rule: RuleRef) -> Reason {
        Reason {
            rule: Some(rule),
            ..Reason::new(code)
        }
    }

    fn unmet(mut self, unmet: Option<Unmet>) -> Reason {
        self.unmet = unmet;
        self
    }

    fn action(mut self, action: Action) -> Reason {
        self.action = Some(action);
        self
    }

    /// The first atomic constraint the reason names, if any.
    pub fn constraint(&self) -> Option<&Constraint> {
        self.unmet.as_ref().and_then(Unmet::constraint)
    }

    /// What was expected, in words, if the reason says.
    pub fn expected(&self) -> Option<String> {
        self.unmet.as_ref().and_then(Unmet::expected)
    }

    /// The request's value, in words, if the reason names one the request gives.
    pub fn actual(&self) -> Option<String> {
        self.unmet.as_ref().and_then(Unmet::actual)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offer {
            f.write_str("offer: ")?;
        }
        let unmet = |f: &mut fmt::Formatter<'_>| match &self.unmet {
            Some(u) => write!(f, "{u}"),
            None => Ok(()),
        };
        let action = |f: &mut fmt::Formatter<'_>| match self.action {
            Some(a) => write!(f, "{a}"),
            None => Ok(()),
        };
        if let Some(rule) = &self.rule {
            if self.code == ReasonCode::ObligationUnmet {
                write!(f, "denied: obligation {}: ", rule.number)?;
                return unmet(f);
            }
            write!(f, "{rule}: ")?;
        }
        match self.code {
            ReasonCode::OtherAsset => f.write_str("is about another asset"),
            ReasonCode::OtherAction => {
                if self.rule.is_some_and(|r| r.kind == RuleKind::Prohibition) {
                    f.write_str("does not concern action ")?;
                } else {
                    f.write_str("does not cover action ")?;
                }
                action(f)
            }
            ReasonCode::NotGranted => {
                f.write_str("not granted: ")?;
                unmet(f)
            }
            ReasonCode::Granted => f.write_str("granted"),
            ReasonCode::DoesNotApply => {
                f.write_str("does not apply: ")?;
                unmet(f)
            }
            ReasonCode::Applies => f.write_str("applies"),
            ReasonCode::AppliesUnknown => {
                f.write_str("applies because the request does not rule it out: ")?;
                unmet(f)
            }
            ReasonCode::ConflictProhibit => f.write_str(
                "denied: a prohibition applies and prohibitions override permissions (conflict prohibit)",
            ),
            ReasonCode::ConflictInvalid => f.write_str(
                "denied: a permission and a prohibition both apply and the policy is void on conflict (conflict invalid)",
            ),
            ReasonCode::ConflictPermit => f.write_str(
                "a prohibition applies but permissions override it (conflict permit)",
            ),
            ReasonCode::Prohibited => f.write_str("denied: a prohibition applies"),
            ReasonCode::NoneGranted => f.write_str("denied: no permission is granted"),
            ReasonCode::NotApplicable => {
                f.write_str("not applicable: no permission covers action ")?;
                action(f)
            }
            ReasonCode::ObligationUnmet => {
                f.write_str("denied: obligation: ")?;
                unmet(f)
            }
            ReasonCode::Permitted => f.write_str("permitted"),
        }
    }
}

/// Whether a duty can be met by this request, and why not.
pub fn duty_unmet(d: &Duty, req: &Request) -> Option<DutyUnmet> {
    match d {
        Duty::ObtainConsent(scheme) if req.consent_ref.is_none() => Some(DutyUnmet::NoConsent {
            scheme: scheme.clone(),
        }),
        Duty::Pay { currency, .. } => match &req.currency {
            Some(c) if c != currency => Some(DutyUnmet::OtherCurrency {
                due: currency.clone(),
                offered: c.clone(),
            }),
            _ => None,
        },
        _ => None,
    }
}

fn describe_actual(operand: Operand, req: &Request) -> Option<String> {
    match operand {
        Operand::Purpose => req.purpose.as_ref().map(|p| p.to_string()),
        Operand::Spatial => req.location.as_ref().map(|p| p.to_string()),
        Operand::DateTime => req.time.map(|t| t.to_rfc3339()),
        Operand::ElapsedTime => req.elapsed.map(crate::text::format_duration),
        Operand::Count => req
            .uses
            .map(|u| format!("use number {} ({u} so far)", u.saturating_add(1))),
        Operand::Volume => req.volume.map(|v| format!("{v} bytes")),
        Operand::PayAmount => req.pay_amount.map(|a| a.to_string()),
        Operand::Classification => req.classification.map(|c| c.to_string()),
        Operand::PersonalInfo => req.personal_info.map(|c| c.to_string()),
        Operand::Industry => req.sector.as_ref().map(|p| p.to_string()),
        Operand::Currency => req.currency.as_ref().map(|p| p.to_string()),
        Operand::Recipient => req.recipient.map(|p| p.to_string()),
        Operand::RecipientRole => Some(if req.roles.is_empty() {
            "no role".to_string()
        } else {
            req.roles
                .iter()
                .map(Token::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }),
        Operand::ConsentRef => Some(
            if req.consent_ref.is_some() {
                "present"
            } else {
                "absent"
            }
            .into(),
        ),
        Operand::ExportAssessmentRef => Some(
            if req.export_assessment_ref.is_some() {
                "present"
            } else {
                "absent"
            }
            .into(),
        ),
    }
}

/// Explains why a constraint is not true: for `and`, its first part that is not true;
/// `None` when every part is true (callers ask only about constraints that are not).
fn why(c: &Constraint, req: &Request) -> Option<Unmet> {
    match c {
        Constraint::Atom { operand, .. } => Some(Unmet::Constraint {
            constraint: c.clone(),
            actual: describe_actual(*operand, req),
        }),
        Constraint::Logical { op, items } => match op {
            LogicalOp::And | LogicalOp::AndSequence => items
                .iter()
                .find(|i| constraint(i, req) != Tri::True)
                .and_then(|i| why(i, req)),
            LogicalOp::Or => Some(Unmet::NoneHolds(
                items.iter().filter_map(|i| why(i, req)).collect(),
            )),
            LogicalOp::Xone => Some(Unmet::NotExactlyOne {
                constraint: c.clone(),
                holding: items
                    .iter()
                    .filter(|i| constraint(i, req) == Tri::True)
                    .count(),
            }),
        },
    }
}

fn assignee_tri(rule: &Rule, req: &Request) -> Tri {
    match (&rule.assignee, &req.recipient) {
        (None, _) => Tri::True,
        (Some(_), None) => Tri::Unknown,
        (Some(a), Some(r)) => Tri::from(a == r),
    }
}

fn target_matches(policy: &Policy, rule: &Rule, req: &Request) -> bool {
    match (rule.target.as_ref().or(policy.target.as_ref()), &req.target) {
        (Some(t), Some(r)) => t == r,
        _ => true,
    }
}

fn and(a: Tri, b: Tri) -> Tri {
    match (a, b) {
        (Tri::False, _) | (_, Tri::False) => Tri::False,
        (Tri::True, Tri::True) => Tri::True,
        _ => Tri::Unknown,
    }
}

/// The rule's condition: its assignee and its constraint together.
pub fn rule_condition(rule: &Rule, req: &Request) -> Tri {
    let c = rule
        .constraint
        .as_ref()
        .map_or(Tri::True, |c| constraint(c, req));
    and(assignee_tri(rule, req), c)
}

/// Why a rule's condition is not true: the assignee if that fails, else the constraint.
fn why_not(rule: &Rule, req: &Request) -> Option<Unmet> {
    match rule.assignee {
        Some(expected) if assignee_tri(rule, req) != Tri::True => Some(Unmet::Assignee {
            expected,
            actual: req.recipient,
        }),
        _ => rule.constraint.as_ref().and_then(|c| why(c, req)),
    }
}

/// Decides `req` under `policy`, explaining every rule considered. This is the reference
/// interpreter: [`crate::CompiledPolicy::decide`] must reach the same decision.
pub fn evaluate(policy: &Policy, req: &Request) -> Decision {
    let mut reasons = Vec::new();
    let mut granted: Vec<usize> = Vec::new();
    let mut prohibited = false;
    let mut covered = false;
    let mut obligations: Vec<usize> = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let name = RuleRef {
            number: i + 1,
            kind: rule.kind,
            action: rule.action,
        };
        if !target_matches(policy, rule, req) {
            reasons.push(Reason::about(ReasonCode::OtherAsset, name));
            continue;
        }
        let cond = rule_condition(rule, req);
        let other_action = || Reason::about(ReasonCode::OtherAction, name).action(req.action);
        match rule.kind {
            RuleKind::Permission => {
                if !rule.action.covers(req.action) {
                    reasons.push(other_action());
                    continue;
                }
                covered = true;
                if cond != Tri::True {
                    reasons.push(
                        Reason::about(ReasonCode::NotGranted, name).unmet(why_not(rule, req)),
                    );
                    continue;
                }
                if let Some(m) = rule.duties.iter().find_map(|d| duty_unmet(d, req)) {
                    reasons.push(
                        Reason::about(ReasonCode::NotGranted, name).unmet(Some(Unmet::Duty(m))),
                    );
                    continue;
                }
                reasons.push(Reason::about(ReasonCode::Granted, name));
                granted.push(i);
            }
            RuleKind::Prohibition => {
                if !rule.action.overlaps(req.action) {
                    reasons.push(other_action());
                    continue;
                }
                match cond {
                    Tri::False => reasons.push(
                        Reason::about(ReasonCode::DoesNotApply, name).unmet(why_not(rule, req)),
                    ),
                    Tri::True => {
                        reasons.push(Reason::about(ReasonCode::Applies, name));
                        prohibited = true;
                    }
                    Tri::Unknown => {
                        reasons.push(
                            Reason::about(ReasonCode::AppliesUnknown, name)
                                .unmet(why_not(rule, req)),
                        );
                        prohibited = true;
                    }
                }
            }
            RuleKind::Obligation => {
                if !rule.action.covers(req.action) {
                    reasons.push(other_action());
                    continue;
                }
                if cond == Tri::False {
                    reasons.push(
                        Reason::about(ReasonCode::DoesNotApply, name).unmet(why_not(rule, req)),
                    );
                } else {
                    reasons.push(Reason::about(ReasonCode::Applies, name));
                    obligations.push(i);
                }
            }
        }
    }
    let deny = |mut reasons: Vec<Reason>, why: Reason| {
        reasons.push(why);
        Decision {
            effect: Effect::Deny,
            duties: Vec::new(),
            reasons,
        }
    };
    if prohibited && !granted.is_empty() {
        match policy.conflict {
            Conflict::Prohibit => return deny(reasons, Reason::new(ReasonCode::ConflictProhibit)),
            Conflict::Invalid => return deny(reasons, Reason::new(ReasonCode::ConflictInvalid)),
            Conflict::Permit => reasons.push(Reason::new(ReasonCode::ConflictPermit)),
        }
    } else if prohibited {
        return deny(reasons, Reason::new(ReasonCode::Prohibited));
    }
    if granted.is_empty() {
        if covered {
            return deny(reasons, Reason::new(ReasonCode::NoneGranted));
        }
        reasons.push(Reason::new(ReasonCode::NotApplicable).action(req.action));
        return Decision {
            effect: Effect::NotApplicable,
            duties: Vec::new(),
            reasons,
        };
    }
    let mut duties: Vec<Duty> = Vec::new();
    for &i in granted.iter().chain(&obligations) {
        let Some(rule) = policy.rules.get(i) else {
            continue;
        };
        for d in &rule.duties {
            if let Some(m) = duty_unmet(d, req) {
                let name = RuleRef {
                    number: i + 1,
                    kind: rule.kind,
                    action: rule.action,
                };
                return deny(
                    reasons,
                    Reason::about(ReasonCode::ObligationUnmet, name).unmet(Some(Unmet::Duty(m))),
                );
            }
            if !duties.contains(d) {
                duties.push(d.clone());
            }
        }
    }
    reasons.push(Reason::new(ReasonCode::Permitted));
    Decision {
        effect: Effect::Permit,
        duties,
        reasons,
    }
}

fn rule_word(k: RuleKind) -> &'static str {
    match k {
        RuleKind::Permission => "permission",
        RuleKind::Prohibition => "prohibition",
        RuleKind::Obligation => "obligation",
    }
}
