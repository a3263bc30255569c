//! The compiled evaluation form: interned terms and bitsets.
//!
//! [`CompiledPolicy::compile`] interns every purpose, region, sector, role, currency and
//! participant the policy names into small per-operand tables. [`CompiledPolicy::decide`]
//! first binds the request to those tables once (which constants its purpose lies
//! within, which roles it holds, as bitsets), then evaluates every rule with bit tests
//! and integer comparisons only: no allocation, no string work after binding.
//!
//! The semantics are exactly those of [`crate::eval::evaluate`] (the reference
//! interpreter); a property test checks that the two agree. The compiled form does not
//! explain itself: call [`CompiledPolicy::explain`] when the reasons are wanted.
//!
//! A `CompiledPolicy` is also the proof that its policy is valid: [`CompiledPolicy::new`]
//! and [`Policy::validate`] check every bound and type first, and nothing else makes one.

use tds_core::Hash256;

use crate::error::PolicyError;
use crate::eval::{Decision, Effect, Request};
use crate::model::*;

/// Most distinct values per operand a compiled policy holds.
pub const MAX_INTERNED: usize = 256;

/// A set of up to 256 small integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bits([u64; 4]);

impl Bits {
    /// Adds `i` (numbers from 256 on are ignored: the set holds 0 to 255).
    #[inline]
    pub fn set(&mut self, i: u16) {
        if let Some(w) = self.0.get_mut(usize::from(i >> 6)) {
            *w |= 1 << (i & 63);
        }
    }

    /// Whether `i` is in the set.
    #[inline]
    pub fn has(&self, i: u16) -> bool {
        self.0
            .get(usize::from(i >> 6))
            .is_some_and(|w| w & (1 << (i & 63)) != 0)
    }

    #[inline]
    fn intersects(&self, o: &Bits) -> bool {
        self.0.iter().zip(&o.0).any(|(a, b)| a & b != 0)
    }

    #[inline]
    fn contains_all(&self, o: &Bits) -> bool {
        self.0.iter().zip(&o.0).all(|(a, b)| a & b == *b)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The members, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0
            .iter()
            .zip((0u16..).step_by(64))
            .flat_map(|(word, base)| SetBits { word: *word, base })
    }
}

/// The set bits of one word, lowest first (one step per member, not per bit).
struct SetBits {
    word: u64,
    base: u16,
}

impl Iterator for SetBits {
    type Item = u16;

    #[inline]
    fn next(&mut self) -> Option<u16> {
        if self.word == 0 {
            return None;
        }
        let low = self.word.trailing_zeros() as u16;
        self.word &= self.word - 1;
        Some(self.base + low)
    }
}

const MISSING: u16 = u16::MAX;
const OTHER: u16 = u16::MAX - 1;

/// A hierarchical request field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HierDim {
    Purpose,
    Spatial,
}

/// A request field compared for equality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EqDim {
    Industry,
    Currency,
    Recipient,
}

/// An ordered request field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OrdDim {
    Time,
    Elapsed,
    Count,
    Volume,
    Pay,
    Class,
    Pi,
}

/// A presence field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PresentDim {
    Consent,
    Export,
}

fn ord_dim(o: Operand) -> Option<OrdDim> {
    Some(match o {
        Operand::DateTime => OrdDim::Time,
        Operand::ElapsedTime => OrdDim::Elapsed,
        Operand::Count => OrdDim::Count,
        Operand::Volume => OrdDim::Volume,
        Operand::PayAmount => OrdDim::Pay,
        Operand::Classification => OrdDim::Class,
        Operand::PersonalInfo => OrdDim::Pi,
        _ => return None,
    })
}

#[derive(Debug, Clone)]
enum Atom {
    HierEq {
        d: HierDim,
        c: u16,
        neg: bool,
    },
    HierWithin {
        d: HierDim,
        c: u16,
    },
    HierContains {
        d: HierDim,
        c: u16,
    },
    HierAny {
        d: HierDim,
        mask: Bits,
        neg: bool,
    },
    Ord {
        d: OrdDim,
        op: Operator,
        v: u64,
    },
    OrdAny {
        d: OrdDim,
        vals: Box<[u64]>,
        neg: bool,
    },
    EqEq {
        d: EqDim,
        c: u16,
        neg: bool,
    },
    EqAny {
        d: EqDim,
        mask: Bits,
        neg: bool,
    },
    RoleHas {
        c: u16,
        neg: bool,
    },
    RoleAny {
        mask: Bits,
        neg: bool,
    },
    RoleAll {
        mask: Bits,
    },
    Present {
        d: PresentDim,
        want: bool,
    },
}

#[derive(Debug, Clone)]
enum Node {
    Atom(Atom),
    Logic(LogicalOp, Box<[Node]>),
}

#[derive(Debug, Clone)]
struct CRule {
    kind: RuleKind,
    applies: u16,
    target: Option<Text>,
    assignee: Option<u16>,
    cond: Option<Node>,
    needs_consent: bool,
    pay_currency: Option<u16>,
}

/// A valid policy compiled for fast decisions. Only [`CompiledPolicy::new`] (and
/// [`CompiledPolicy::compile`], [`Policy::validate`]) make one, after checking the policy,
/// so holding one proves the policy valid.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    policy: Policy,
    purposes: Vec<String>,
    regions: Vec<String>,
    sectors: Vec<String>,
    currencies: Vec<String>,
    recipients: Vec<Hash256>,
    roles: Vec<String>,
    rules: Vec<CRule>,
    duties: Vec<Vec<Duty>>,
    conflict: Conflict,
    target: Option<Text>,
}

/// A decision without explanations: what [`CompiledPolicy::decide`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Permit, deny or not applicable.
    pub effect: Effect,
    /// The permissions granted (rule indexes).
    pub granted: Bits,
    /// The obligations that apply (rule indexes).
    pub obligations: Bits,
}

const T: u8 = 1;
const F: u8 = 0;
const U: u8 = 2;

#[inline]
fn tri(b: bool) -> u8 {
    u8::from(b)
}

/// A hierarchical field bound to its table: the constant it equals (or `OTHER`, or
/// `MISSING`), the constants it lies within, and those within it.
#[derive(Clone, Copy, Default)]
struct HierBound {
    exact: u16,
    within: Bits,
    contains: Bits,
}

/// The request bound to one compiled policy's tables.
struct Bound {
    purpose: HierBound,
    spatial: HierBound,
    industry: u16,
    currency: u16,
    recipient: u16,
    roles: Bits,
    time: Option<u64>,
    elapsed: Option<u64>,
    count: Option<u64>,
    volume: Option<u64>,
    pay: Option<u64>,
    class: Option<u64>,
    pi: Option<u64>,
    consent: bool,
    export: bool,
}

impl Bound {
    #[inline]
    fn hier(&self, d: HierDim) -> &HierBound {
        match d {
            HierDim::Purpose => &self.purpose,
            HierDim::Spatial => &self.spatial,
        }
    }

    #[inline]
    fn eq(&self, d: EqDim) -> u16 {
        match d {
            EqDim::Industry => self.industry,
            EqDim::Currency => self.currency,
            EqDim::Recipient => self.recipient,
        }
    }

    #[inline]
    fn ord(&self, d: OrdDim) -> Option<u64> {
        match d {
            OrdDim::Time => self.time,
            OrdDim::Elapsed => self.elapsed,
            OrdDim::Count => self.count,
            OrdDim::Volume => self.volume,
            OrdDim::Pay => self.pay,
            OrdDim::Class => self.class,
            OrdDim::Pi => self.pi,
        }
    }

    #[inline]
    fn present(&self, d: PresentDim) -> bool {
        match d {
            PresentDim::Consent => self.consent,
            PresentDim::Export => self.export,
        }
    }
}

fn intern<T: PartialEq + Clone>(table: &mut Vec<T>, v: &T) -> Result<u16, PolicyError> {
    if let Some(i) = table.iter().position(|x| x == v) {
        return u16::try_from(i).map_err(|_| too_many());
    }
    if table.len() >= MAX_INTERNED {
        return Err(too_many());
    }
    table.push(v.clone());
    u16::try_from(table.len() - 1).map_err(|_| too_many())
}

fn too_many() -> PolicyError {
    PolicyError::TooLarge {
        what: "distinct values for one operand",
        limit: MAX_INTERNED,
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Purpose(p) => p.to_string(),
        Value::Region(r) => r.to_string(),
        Value::Token(t) => t.to_string(),
        Value::Currency(c) => c.to_string(),
        other => format!("{other:?}"),
    }
}

impl CompiledPolicy {
    /// Checks and compiles a policy (a copy of it is kept).
    pub fn compile(policy: &Policy) -> Result<CompiledPolicy, PolicyError> {
        CompiledPolicy::new(policy.clone())
    }

    /// Checks every bound and type of `policy` (see [`Policy::validate`]) and compiles it.
    pub fn new(policy: Policy) -> Result<CompiledPolicy, PolicyError> {
        policy.check()?;
        let mut c = CompiledPolicy {
            policy: Policy::default(),
            purposes: Vec::new(),
            regions: Vec::new(),
            sectors: Vec::new(),
            currencies: Vec::new(),
            recipients: Vec::new(),
            roles: Vec::new(),
            rules: Vec::new(),
            duties: Vec::new(),
            conflict: policy.conflict,
            target: policy.target.clone(),
        };
        for r in &policy.rules {
            let applies = match r.kind {
                RuleKind::Prohibition => Action::ALL
                    .iter()
                    .filter(|b| r.action.overlaps(**b))
                    .fold(0, |m, b| m | b.bit()),
                _ => r.action.includes(),
            };
            let assignee = match &r.assignee {
                Some(a) => Some(intern(&mut c.recipients, a)?),
                None => None,
            };
            let cond = match &r.constraint {
                Some(k) => Some(c.node(k)?),
                None => None,
            };
            let mut pay_currency = None;
            let mut needs_consent = false;
            for d in &r.duties {
                match d {
                    // Two pay duties in different currencies can never both be met; the
                    // first decides here, the second pass below marks the pair.
                    Duty::Pay { currency, .. } if pay_currency.is_none() => {
                        pay_currency = Some(intern(&mut c.currencies, &currency.to_string())?);
                    }
                    Duty::ObtainConsent(_) => needs_consent = true,
                    _ => {}
                }
            }
            c.rules.push(CRule {
                kind: r.kind,
                applies,
                target: r.target.clone(),
                assignee,
                cond,
                needs_consent,
                pay_currency,
            });
            c.duties.push(r.duties.clone());
        }
        // Two pay duties with different currencies on one rule: the compiled form must
        // refuse exactly as the reference does, so check every pay duty at decision
        // time through a second pass only when needed.
        for (i, r) in policy.rules.iter().enumerate() {
            let currencies: Vec<&Currency> = r
                .duties
                .iter()
                .filter_map(|d| match d {
                    Duty::Pay { currency, .. } => Some(currency),
                    _ => None,
                })
                .collect();
            if currencies.windows(2).any(|w| w.first() != w.get(1)) {
                // No currency meets both: mark the rule as needing an impossible one.
                if let Some(cr) = c.rules.get_mut(i) {
                    cr.pay_currency = Some(MISSING);
                }
            }
        }
        c.policy = policy;
        Ok(c)
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The policy, consuming the compiled form.
    pub fn into_policy(self) -> Policy {
        self.policy
    }

    /// Decides `req` with the reference interpreter, explaining every rule
    /// ([`crate::eval::evaluate`]); the same decision as [`CompiledPolicy::decide`].
    pub fn explain(&self, req: &Request) -> Decision {
        crate::eval::evaluate(&self.policy, req)
    }

    fn node(&mut self, k: &Constraint) -> Result<Node, PolicyError> {
        Ok(match k {
            Constraint::Logical { op, items } => Node::Logic(
                *op,
                items
                    .iter()
                    .map(|i| self.node(i))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_boxed_slice(),
            ),
            Constraint::Atom {
                operand,
                operator,
                value,
            } => Node::Atom(self.atom(*operand, *operator, value)?),
        })
    }

    fn mask(&mut self, table: Table, items: &[Value]) -> Result<Bits, PolicyError> {
        let mut m = Bits::default();
        for v in items {
            m.set(self.id(table, v)?);
        }
        Ok(m)
    }

    fn id(&mut self, table: Table, v: &Value) -> Result<u16, PolicyError> {
        match table {
            Table::Hier(HierDim::Purpose) => intern(&mut self.purposes, &value_text(v)),
            Table::Hier(HierDim::Spatial) => intern(&mut self.regions, &value_text(v)),
            Table::Eq(EqDim::Recipient) => match v {
                Value::Participant(h) => intern(&mut self.recipients, h),
                // A valid policy compares recipients with participant ids only.
                _ => Err(wrong_type(Operand::Recipient, v)),
            },
            Table::Eq(EqDim::Industry) => intern(&mut self.sectors, &value_text(v)),
            Table::Eq(EqDim::Currency) => intern(&mut self.currencies, &value_text(v)),
            Table::Roles => intern(&mut self.roles, &value_text(v)),
        }
    }

    fn atom(&mut self, operand: Operand, op: Operator, v: &Value) -> Result<Atom, PolicyError> {
        let items = v.items();
        Ok(match operand.kind() {
            OperandKind::Hierarchy => {
                let d = if operand == Operand::Purpose {
                    HierDim::Purpose
                } else {
                    HierDim::Spatial
                };
                let t = Table::Hier(d);
                match op {
                    Operator::Eq | Operator::Neq => Atom::HierEq {
                        d,
                        c: self.id(t, v)?,
                        neg: op == Operator::Neq,
                    },
                    Operator::IsA | Operator::IsPartOf => Atom::HierWithin {
                        d,
                        c: self.id(t, v)?,
                    },
                    Operator::HasPart => Atom::HierContains {
                        d,
                        c: self.id(t, v)?,
                    },
                    _ => Atom::HierAny {
                        d,
                        mask: self.mask(t, items)?,
                        neg: op == Operator::IsNoneOf,
                    },
                }
            }
            OperandKind::Ordered => {
                let d = ord_dim(operand).ok_or_else(|| wrong_type(operand, v))?;
                let ordinal = |x: &Value| x.ordinal().ok_or_else(|| wrong_type(operand, x));
                match op {
                    Operator::IsAnyOf | Operator::IsNoneOf => Atom::OrdAny {
                        d,
                        vals: items.iter().map(ordinal).collect::<Result<_, _>>()?,
                        neg: op == Operator::IsNoneOf,
                    },
                    _ => Atom::Ord {
                        d,
                        op,
                        v: ordinal(v)?,
                    },
                }
            }
            OperandKind::Equality => {
                let d = match operand {
                    Operand::Industry => EqDim::Industry,
                    Operand::Currency => EqDim::Currency,
                    _ => EqDim::Recipient,
                };
                let t = Table::Eq(d);
                match op {
                    Operator::Eq | Operator::Neq => Atom::EqEq {
                        d,
                        c: self.id(t, v)?,
                        neg: op == Operator::Neq,
                    },
                    _ => Atom::EqAny {
                        d,
                        mask: self.mask(t, items)?,
                        neg: op == Operator::IsNoneOf,
                    },
                }
            }
            OperandKind::Set => match op {
                Operator::Eq | Operator::Neq | Operator::HasPart => Atom::RoleHas {
                    c: self.id(Table::Roles, v)?,
                    neg: op == Operator::Neq,
                },
                Operator::IsAllOf => Atom::RoleAll {
                    mask: self.mask(Table::Roles, items)?,
                },
                _ => Atom::RoleAny {
                    mask: self.mask(Table::Roles, items)?,
                    neg: op == Operator::IsNoneOf,
                },
            },
            OperandKind::Presence => Atom::Present {
                d: if operand == Operand::ExportAssessmentRef {
                    PresentDim::Export
                } else {
                    PresentDim::Consent
                },
                want: matches!(v, Value::Present(true)) == (op == Operator::Eq),
            },
        })
    }

    fn bind_hier(table: &[String], actual: Option<&str>, sep: char) -> HierBound {
        let Some(a) = actual else {
            return HierBound {
                exact: MISSING,
                ..HierBound::default()
            };
        };
        let mut b = HierBound {
            exact: OTHER,
            ..HierBound::default()
        };
        for (i, c) in table.iter().enumerate() {
            let i = i as u16;
            if a == c {
                b.exact = i;
                b.within.set(i);
                b.contains.set(i);
            } else {
                if hier_within(a, c, sep) {
                    b.within.set(i);
                }
                if hier_within(c, a, sep) {
                    b.contains.set(i);
                }
            }
        }
        b
    }

    fn bind(&self, req: &Request) -> Bound {
        let lookup = |table: &[String], v: Option<&str>| match v {
            None => MISSING,
            Some(v) => table
                .iter()
                .position(|c| c == v)
                .map_or(OTHER, |i| i as u16),
        };
        let mut roles = Bits::default();
        for role in &req.roles {
            if let Some(i) = self.roles.iter().position(|c| c == role.as_str()) {
                roles.set(i as u16);
            }
        }
        Bound {
            purpose: Self::bind_hier(
                &self.purposes,
                req.purpose.as_ref().map(Purpose::as_str),
                '/',
            ),
            spatial: Self::bind_hier(
                &self.regions,
                req.location.as_ref().map(Region::as_str),
                '-',
            ),
            industry: lookup(&self.sectors, req.sector.as_ref().map(Token::as_str)),
            currency: lookup(
                &self.currencies,
                req.currency.as_ref().map(Currency::as_str),
            ),
            recipient: match &req.recipient {
                None => MISSING,
                Some(r) => self
                    .recipients
                    .iter()
                    .position(|c| c == r)
                    .map_or(OTHER, |i| i as u16),
            },
            roles,
            time: req.time.map(|t| t.as_millis()),
            elapsed: req.elapsed,
            count: req.uses.map(|u| u.saturating_add(1)),
            volume: req.volume,
            pay: req.pay_amount.map(|a| a.0),
            class: req.classification.map(|c| c as u64),
            pi: req.personal_info.map(|c| c as u64),
            consent: req.consent_ref.is_some(),
            export: req.export_assessment_ref.is_some(),
        }
    }

    /// Decides a request (the same decision as [`crate::eval::evaluate`], without reasons).
    pub fn decide(&self, req: &Request) -> Outcome {
        let b = self.bind(req);
        let bit = req.action.bit();
        let mut granted = Bits::default();
        let mut obligations = Bits::default();
        let mut prohibited = false;
        let mut covered = false;
        let mut any_granted = false;
        for (i, r) in self.rules.iter().enumerate() {
            if r.applies & bit == 0 {
                continue;
            }
            let target = r.target.as_ref().or(self.target.as_ref());
            if let (Some(t), Some(rt)) = (target, &req.target) {
                if t != rt {
                    continue;
                }
            }
            let assignee = match r.assignee {
                None => T,
                Some(a) => match b.recipient {
                    MISSING => U,
                    x => tri(x == a),
                },
            };
            let cond = if assignee == F {
                F
            } else {
                let c = r.cond.as_ref().map_or(T, |n| eval(n, &b));
                if c == F {
                    F
                } else if assignee == T && c == T {
                    T
                } else {
                    U
                }
            };
            let i = i as u16;
            match r.kind {
                RuleKind::Permission => {
                    covered = true;
                    if cond == T && self.duties_met(r, &b, req) {
                        granted.set(i);
                        any_granted = true;
                    }
                }
                RuleKind::Prohibition => {
                    if cond != F {
                        prohibited = true;
                    }
                }
                RuleKind::Obligation => {
                    if cond != F {
                        obligations.set(i);
                    }
                }
            }
        }
        let effect = if prohibited && (!any_granted || self.conflict != Conflict::Permit) {
            Effect::Deny
        } else if !any_granted {
            if covered {
                Effect::Deny
            } else {
                Effect::NotApplicable
            }
        } else if obligations.iter().all(|i| {
            // The bits come from this loop's rule numbers; a missing rule would be a bug,
            // and it denies rather than skip a duty.
            self.rules
                .get(usize::from(i))
                .is_some_and(|r| self.duties_met(r, &b, req))
        }) {
            Effect::Permit
        } else {
            Effect::Deny
        };
        if effect != Effect::Permit {
            return Outcome {
                effect,
                granted: Bits::default(),
                obligations: Bits::default(),
            };
        }
        Outcome {
            effect,
            granted,
            obligations,
        }
    }

    #[inline]
    fn duties_met(&self, r: &CRule, b: &Bound, req: &Request) -> bool {
        if r.needs_consent && req.consent_ref.is_none() {
            return false;
        }
        match r.pay_currency {
            None => true,
            Some(c) => {
                let have = b.currency;
                have == MISSING || have == c
            }
        }
    }

    /// The duties a permit carries (granted permissions' duties, then obligations',
    /// without repeats), as [`crate::eval::evaluate`] lists them. `outcome` is one
    /// [`CompiledPolicy::decide`] returned; rule numbers this policy does not have are
    /// ignored.
    pub fn duties(&self, outcome: &Outcome) -> Vec<Duty> {
        let mut out: Vec<Duty> = Vec::new();
        let rules = outcome.granted.iter().chain(outcome.obligations.iter());
        for duties in rules.filter_map(|i| self.duties.get(usize::from(i))) {
            for d in duties {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
        out
    }
}

#[derive(Clone, Copy)]
enum Table {
    Hier(HierDim),
    Eq(EqDim),
    Roles,
}

fn wrong_type(operand: Operand, v: &Value) -> PolicyError {
    PolicyError::BadValueType {
        operand,
        value: format!("{v:?}"),
    }
}

#[inline]
fn eval(n: &Node, b: &Bound) -> u8 {
    match n {
        Node::Atom(a) => eval_atom(a, b),
        Node::Logic(op, kids) => match op {
            LogicalOp::And | LogicalOp::AndSequence => {
                let mut r = T;
                for k in kids.iter() {
                    match eval(k, b) {
                        F => return F,
                        U => r = U,
                        _ => {}
                    }
                }
                r
            }
            LogicalOp::Or => {
                let mut r = F;
                for k in kids.iter() {
                    match eval(k, b) {
                        T => return T,
                        U => r = U,
                        _ => {}
                    }
                }
                r
            }
            LogicalOp::Xone => {
                let mut n = 0;
                for k in kids.iter() {
                    match eval(k, b) {
                        U => return U,
                        T => n += 1,
                        _ => {}
                    }
                }
                tri(n == 1)
            }
        },
    }
}

#[inline]
fn eval_atom(a: &Atom, b: &Bound) -> u8 {
    match a {
        Atom::HierEq { d, c, neg } => match b.hier(*d).exact {
            MISSING => U,
            x => tri((x == *c) != *neg),
        },
        Atom::HierWithin { d, c } => {
            let h = b.hier(*d);
            match h.exact {
                MISSING => U,
                _ => tri(h.within.has(*c)),
            }
        }
        Atom::HierContains { d, c } => {
            let h = b.hier(*d);
            match h.exact {
                MISSING => U,
                _ => tri(h.contains.has(*c)),
            }
        }
        Atom::HierAny { d, mask, neg } => match b.hier(*d).exact {
            MISSING => U,
            x => tri(mask.has(x) != *neg),
        },
        Atom::Ord { d, op, v } => match b.ord(*d) {
            None => U,
            Some(n) => tri(match op {
                Operator::Eq => n == *v,
                Operator::Neq => n != *v,
                Operator::Lt => n < *v,
                Operator::Lteq => n <= *v,
                Operator::Gt => n > *v,
                _ => n >= *v,
            }),
        },
        Atom::OrdAny { d, vals, neg } => match b.ord(*d) {
            None => U,
            Some(n) => tri(vals.contains(&n) != *neg),
        },
        Atom::EqEq { d, c, neg } => match b.eq(*d) {
            MISSING => U,
            x => tri((x == *c) != *neg),
        },
        Atom::EqAny { d, mask, neg } => match b.eq(*d) {
            MISSING => U,
            x => tri(mask.has(x) != *neg),
        },
        Atom::RoleHas { c, neg } => tri(b.roles.has(*c) != *neg),
        Atom::RoleAny { mask, neg } => tri(b.roles.intersects(mask) != *neg),
        Atom::RoleAll { mask } => tri(b.roles.contains_all(mask)),
        Atom::Present { d, want } => tri(b.present(*d) == *want),
    }
}
