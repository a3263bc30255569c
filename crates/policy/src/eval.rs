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
    /// One line per rule considered, and the conclusion.
    pub reasons: Vec<String>,
}

/// Whether a duty can be met by this request, and why not.
pub fn duty_unmet(d: &Duty, req: &Request) -> Option<String> {
    match d {
        Duty::ObtainConsent(scheme) if req.consent_ref.is_none() => Some(format!(
            "duty obtain-consent({scheme}) cannot be met: the request presents no consent reference"
        )),
        Duty::Pay { currency, .. } => match &req.currency {
            Some(c) if c != currency => Some(format!(
                "duty pay cannot be met: payment is due in {currency}, the request pays in {c}"
            )),
            _ => None,
        },
        _ => None,
    }
}

fn describe_actual(operand: Operand, req: &Request) -> String {
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
    .unwrap_or_else(|| "not given in the request".into())
}

/// Explains why a constraint is not true (or, with `want_false`, not false).
fn why(c: &Constraint, req: &Request) -> String {
    match c {
        Constraint::Atom {
            operand,
            operator,
            value,
        } => format!(
            "{operand} must be {} {}, actual: {}",
            operator.words(),
            crate::text::format_value(value),
            describe_actual(*operand, req)
        ),
        Constraint::Logical { op, items } => match op {
            LogicalOp::And | LogicalOp::AndSequence => items
                .iter()
                .find(|i| constraint(i, req) != Tri::True)
                .map(|i| why(i, req))
                .unwrap_or_default(),
            LogicalOp::Or => {
                let parts: Vec<String> = items.iter().map(|i| why(i, req)).collect();
                format!("none of these holds: {}", parts.join("; "))
            }
            LogicalOp::Xone => {
                let n = items
                    .iter()
                    .filter(|i| constraint(i, req) == Tri::True)
                    .count();
                format!(
                    "exactly one of ({}) must hold, {n} do",
                    crate::text::format_constraint(c)
                )
            }
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

/// Decides `req` under `policy`, explaining every rule considered.
pub fn evaluate(policy: &Policy, req: &Request) -> Decision {
    let mut reasons = Vec::new();
    let mut granted: Vec<usize> = Vec::new();
    let mut prohibited = false;
    let mut covered = false;
    let mut obligations: Vec<usize> = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let name = format!("{} {} ({})", rule_word(rule.kind), i + 1, rule.action);
        if !target_matches(policy, rule, req) {
            reasons.push(format!("{name}: is about another asset"));
            continue;
        }
        let cond = rule_condition(rule, req);
        let why_not = |req: &Request| -> String {
            if assignee_tri(rule, req) != Tri::True {
                format!(
                    "it is for assignee {}, the recipient is {}",
                    rule.assignee.map(|a| a.to_string()).unwrap_or_default(),
                    req.recipient
                        .map_or("not given in the request".into(), |r| r.to_string())
                )
            } else {
                rule.constraint
                    .as_ref()
                    .map(|c| why(c, req))
                    .unwrap_or_default()
            }
        };
        match rule.kind {
            RuleKind::Permission => {
                if !rule.action.covers(req.action) {
                    reasons.push(format!("{name}: does not cover action {}", req.action));
                    continue;
                }
                covered = true;
                if cond != Tri::True {
                    reasons.push(format!("{name}: not granted: {}", why_not(req)));
                    continue;
                }
                if let Some(m) = rule.duties.iter().find_map(|d| duty_unmet(d, req)) {
                    reasons.push(format!("{name}: not granted: {m}"));
                    continue;
                }
                reasons.push(format!("{name}: granted"));
                granted.push(i);
            }
            RuleKind::Prohibition => {
                if !rule.action.overlaps(req.action) {
                    reasons.push(format!("{name}: does not concern action {}", req.action));
                    continue;
                }
                match cond {
                    Tri::False => reasons.push(format!("{name}: does not apply: {}", why_not(req))),
                    Tri::True => {
                        reasons.push(format!("{name}: applies"));
                        prohibited = true;
                    }
                    Tri::Unknown => {
                        reasons.push(format!(
                            "{name}: applies because the request does not rule it out: {}",
                            why_not(req)
                        ));
                        prohibited = true;
                    }
                }
            }
            RuleKind::Obligation => {
                if !rule.action.covers(req.action) {
                    reasons.push(format!("{name}: does not cover action {}", req.action));
                    continue;
                }
                if cond == Tri::False {
                    reasons.push(format!("{name}: does not apply: {}", why_not(req)));
                } else {
                    reasons.push(format!("{name}: applies"));
                    obligations.push(i);
                }
            }
        }
    }
    let rules = &policy.rules;
    let deny = |mut reasons: Vec<String>, why: String| {
        reasons.push(why);
        Decision {
            effect: Effect::Deny,
            duties: Vec::new(),
            reasons,
        }
    };
    if prohibited && !granted.is_empty() {
        match policy.conflict {
            Conflict::Prohibit => {
                return deny(
                    reasons,
                    "denied: a prohibition applies and prohibitions override permissions (conflict prohibit)".into(),
                )
            }
            Conflict::Invalid => {
                return deny(
                    reasons,
                    "denied: a permission and a prohibition both apply and the policy is void on conflict (conflict invalid)".into(),
                )
            }
            Conflict::Permit => {
                reasons.push("a prohibition applies but permissions override it (conflict permit)".into())
            }
        }
    } else if prohibited {
        return deny(reasons, "denied: a prohibition applies".into());
    }
    if granted.is_empty() {
        if covered {
            return deny(reasons, "denied: no permission is granted".into());
        }
        reasons.push(format!(
            "not applicable: no permission covers action {}",
            req.action
        ));
        return Decision {
            effect: Effect::NotApplicable,
            duties: Vec::new(),
            reasons,
        };
    }
    let mut duties: Vec<Duty> = Vec::new();
    for &i in granted.iter().chain(&obligations) {
        for d in rules
            .get(i)
            .map(|r| r.duties.as_slice())
            .unwrap_or_default()
        {
            if let Some(m) = duty_unmet(d, req) {
                return deny(reasons, format!("denied: obligation {}: {m}", i + 1));
            }
            if !duties.contains(d) {
                duties.push(d.clone());
            }
        }
    }
    reasons.push("permitted".into());
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
