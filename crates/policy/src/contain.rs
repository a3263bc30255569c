//! Containment: does every use a request policy permits stay within an offer?
//!
//! `contains(offer, request_policy)` answers yes, or no with a concrete request that the
//! request policy permits and the offer does not.
//!
//! The method is exhaustive over a finite set of representative requests. For every
//! request field a policy looks at, the constants both policies name split the field's
//! values into classes that no constraint can tell apart (for an ordered field: each
//! constant, one below and one above; for a hierarchy: each constant, its ancestors, a
//! fresh child of each, and an unrelated value; for roles: every subset of the named
//! roles; for everything: "not given"). Two requests whose fields fall in the same
//! classes get the same decision from both policies, so checking one request per
//! combination of classes checks them all. The search assigns one field at a time and
//! stops early when the request policy can no longer permit or the offer must permit,
//! whatever the remaining fields are. A counterexample is always re-checked with
//! [`crate::eval::evaluate`] before it is returned.
//!
//! The work is bounded by a [`Budget`]: every search step costs one unit per rule and per
//! atomic constraint of the two policies (what the step's bounds look at), and the
//! search gives up with [`ContainmentLimit::Budget`] (never with a wrong yes) when the
//! budget is spent. A caller facing untrusted policies (a provider checking a contract
//! request) passes a budget that caps the CPU one request can cost.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::str::FromStr;

use tds_core::{Hash256, Timestamp};

use crate::compiled::CompiledPolicy;
use crate::error::{ContainmentLimit, PolicyError};
use crate::eval::{self, Effect, Request, Tri};
use crate::model::*;

/// The budget [`contains`] uses, in units of work (one unit per rule and per atomic
/// constraint of the two policies, per search step). Realistic policies need well under
/// a million; this many take about ten seconds of one core (some 40 million units a
/// second), and decide all but about 1% of the random policy pairs of the property tests.
pub const DEFAULT_BUDGET: u64 = 400_000_000;
/// Most distinct roles the search will split into subsets.
pub const MAX_ROLES: usize = 10;

/// Work allowed for containment checks; one budget may be shared by several checks (a
/// contract request's containment and purpose checks draw on one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    limit: u64,
    spent: u64,
}

impl Budget {
    /// A budget of `limit` units.
    pub const fn new(limit: u64) -> Budget {
        Budget { limit, spent: 0 }
    }

    /// The units allowed.
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The units used so far.
    pub const fn spent(&self) -> u64 {
        self.spent
    }

    /// Takes `units`, or refuses once the limit is passed.
    fn take(&mut self, units: u64) -> Result<(), ContainmentLimit> {
        self.spent = self.spent.saturating_add(units);
        if self.spent > self.limit {
            return Err(ContainmentLimit::Budget { limit: self.limit });
        }
        Ok(())
    }
}

/// Parses a value the search made from a valid constant or a fixed valid word.
#[expect(
    clippy::expect_used,
    reason = "representatives are built from constants of valid policies and fixed words that satisfy the value syntax; a failure is a bug in this module, and skipping the value would make the search unsound"
)]
fn valid<T: FromStr>(s: &str) -> T
where
    T::Err: Debug,
{
    s.parse().expect("a representative value is valid")
}

/// The first of `candidates` not in `taken`. Callers offer more candidates than `taken`
/// can hold, so one is always free.
#[expect(
    clippy::expect_used,
    reason = "every caller offers more distinct candidates than there are taken values"
)]
fn first_free<T: Ord>(taken: &BTreeSet<T>, candidates: impl Iterator<Item = T>) -> T {
    candidates
        .take(taken.len().saturating_add(1))
        .find(|c| !taken.contains(c))
        .expect("more candidates than taken values")
}

/// The answer of [`contains`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Containment {
    /// Every request the request policy permits, the offer permits.
    Contained,
    /// This request is permitted by the request policy and not by the offer.
    NotContained(Box<Request>),
}

// Field 0 is the action.
const D_CONSENT: usize = 1;
const D_EXPORT: usize = 2;
const D_CURRENCY: usize = 3;
const D_TARGET: usize = 4;
const D_RECIPIENT: usize = 5;
const D_SECTOR: usize = 6;
const D_ROLES: usize = 7;
const D_PURPOSE: usize = 8;
const D_LOCATION: usize = 9;
const D_TIME: usize = 10;
const D_ELAPSED: usize = 11;
const D_USES: usize = 12;
const D_VOLUME: usize = 13;
const D_PAY: usize = 14;
const D_CLASS: usize = 15;
const D_PI: usize = 16;
const DIMS: usize = 17;

fn dim(o: Operand) -> usize {
    match o {
        Operand::Purpose => D_PURPOSE,
        Operand::DateTime => D_TIME,
        Operand::ElapsedTime => D_ELAPSED,
        Operand::Count => D_USES,
        Operand::Spatial => D_LOCATION,
        Operand::Industry => D_SECTOR,
        Operand::Recipient => D_RECIPIENT,
        Operand::RecipientRole => D_ROLES,
        Operand::Classification => D_CLASS,
        Operand::PersonalInfo => D_PI,
        Operand::PayAmount => D_PAY,
        Operand::Currency => D_CURRENCY,
        Operand::Volume => D_VOLUME,
        Operand::ConsentRef => D_CONSENT,
        Operand::ExportAssessmentRef => D_EXPORT,
    }
}

/// One way to set a field of the request.
#[derive(Clone, Debug)]
enum Rep {
    Action(Action),
    Consent(bool),
    Export(bool),
    Currency(Option<Currency>),
    Target(Option<Text>),
    Recipient(Option<Hash256>),
    Sector(Option<Token>),
    Roles(Vec<Token>),
    Purpose(Option<Purpose>),
    Location(Option<Region>),
    Time(Option<u64>),
    Elapsed(Option<u64>),
    Uses(Option<u64>),
    Volume(Option<u64>),
    Pay(Option<u64>),
    Class(Option<Classification>),
    Pi(Option<PersonalInfo>),
}

fn apply(req: &mut Request, rep: &Rep) {
    match rep {
        Rep::Action(a) => req.action = *a,
        Rep::Consent(b) => req.consent_ref = b.then(|| valid("ref")),
        Rep::Export(b) => req.export_assessment_ref = b.then(|| valid("ref")),
        Rep::Currency(c) => req.currency = c.clone(),
        Rep::Target(t) => req.target = t.clone(),
        Rep::Recipient(r) => req.recipient = *r,
        Rep::Sector(s) => req.sector = s.clone(),
        Rep::Roles(r) => req.roles = r.clone(),
        Rep::Purpose(p) => req.purpose = p.clone(),
        Rep::Location(l) => req.location = l.clone(),
        Rep::Time(t) => req.time = t.map(Timestamp::from_millis),
        Rep::Elapsed(e) => req.elapsed = *e,
        Rep::Uses(u) => req.uses = *u,
        Rep::Volume(v) => req.volume = *v,
        Rep::Pay(p) => req.pay_amount = p.map(Amount),
        Rep::Class(c) => req.classification = *c,
        Rep::Pi(p) => req.personal_info = *p,
    }
}

#[derive(Default)]
struct Constants {
    /// The fields some rule looks at, as bits (bit `d` for field `d`).
    used: u32,
    targets: BTreeSet<String>,
    recipients: BTreeSet<Hash256>,
    sectors: BTreeSet<String>,
    currencies: BTreeSet<String>,
    roles: BTreeSet<String>,
    purposes: BTreeSet<String>,
    regions: BTreeSet<String>,
    /// The constants of each ordered field.
    ords: BTreeMap<usize, BTreeSet<u64>>,
    actions: BTreeSet<Action>,
}

impl Constants {
    fn mark(&mut self, d: usize) {
        self.used |= 1 << d;
    }

    fn used(&self, d: usize) -> bool {
        self.used & (1 << d) != 0
    }

    /// The constants of ordered field `d` (none if no rule names one).
    fn ords(&self, d: usize) -> &BTreeSet<u64> {
        static NONE: BTreeSet<u64> = BTreeSet::new();
        self.ords.get(&d).unwrap_or(&NONE)
    }

    fn add_policy(&mut self, p: &Policy) {
        if let Some(t) = &p.target {
            self.mark(D_TARGET);
            self.targets.insert(t.to_string());
        }
        for r in &p.rules {
            self.actions.insert(r.action);
            if let Some(t) = &r.target {
                self.mark(D_TARGET);
                self.targets.insert(t.to_string());
            }
            if let Some(a) = &r.assignee {
                self.mark(D_RECIPIENT);
                self.recipients.insert(*a);
            }
            for d in &r.duties {
                match d {
                    Duty::ObtainConsent(_) => self.mark(D_CONSENT),
                    Duty::Pay { currency, .. } => {
                        self.mark(D_CURRENCY);
                        self.currencies.insert(currency.to_string());
                    }
                    _ => {}
                }
            }
            if let Some(c) = &r.constraint {
                c.for_each_atom(&mut |operand, _, value| self.add_atom(operand, value));
            }
        }
    }

    fn add_atom(&mut self, operand: Operand, value: &Value) {
        let d = dim(operand);
        self.mark(d);
        for v in value.items() {
            match v {
                Value::Purpose(p) => {
                    self.purposes.insert(p.to_string());
                }
                Value::Region(r) => {
                    self.regions.insert(r.to_string());
                }
                Value::Token(t) if operand == Operand::Industry => {
                    self.sectors.insert(t.to_string());
                }
                Value::Token(t) => {
                    self.roles.insert(t.to_string());
                }
                Value::Currency(c) => {
                    self.currencies.insert(c.to_string());
                }
                Value::Participant(h) => {
                    self.recipients.insert(*h);
                }
                other => {
                    if let Some(n) = other.ordinal() {
                        self.ords.entry(d).or_default().insert(n);
                    }
                }
            }
        }
    }
}

fn fresh_token(taken: &BTreeSet<String>, prefix: &str) -> String {
    first_free(taken, (0u32..).map(|i| format!("{prefix}{i}")))
}

/// Two-letter codes `AA`..`ZZ` after `prefix` (676 of them; a policy pair names at most
/// 512 distinct values per operand).
fn letter_pairs(prefix: &'static str) -> impl Iterator<Item = String> {
    (b'A'..=b'Z').flat_map(move |a| {
        (b'A'..=b'Z').map(move |b| format!("{prefix}{}{}", a as char, b as char))
    })
}

fn ordered_reps(consts: &BTreeSet<u64>, max: u64) -> Vec<u64> {
    let mut out: BTreeSet<u64> = BTreeSet::new();
    out.insert(0);
    out.insert(max);
    for &c in consts {
        out.insert(c.saturating_sub(1));
        out.insert(c.min(max));
        out.insert(c.saturating_add(1).min(max));
    }
    out.into_iter().collect()
}

fn representatives(k: &Constants) -> Result<Vec<Vec<Rep>>, PolicyError> {
    let mut dims: Vec<Vec<Rep>> = Vec::with_capacity(DIMS);
    // Actions: one per class of actions that every rule action treats alike (covers
    // and overlaps the same way).
    let mut seen: Vec<Vec<(bool, bool)>> = Vec::new();
    let mut actions = Vec::new();
    for b in Action::ALL {
        let sig: Vec<(bool, bool)> = k
            .actions
            .iter()
            .map(|a| (a.covers(*b), a.overlaps(*b)))
            .collect();
        if !seen.contains(&sig) {
            seen.push(sig);
            actions.push(Rep::Action(*b));
        }
    }
    dims.push(actions);
    let used = |d: usize| k.used(d);
    dims.push(if used(D_CONSENT) {
        vec![Rep::Consent(false), Rep::Consent(true)]
    } else {
        vec![Rep::Consent(false)]
    });
    dims.push(if used(D_EXPORT) {
        vec![Rep::Export(false), Rep::Export(true)]
    } else {
        vec![Rep::Export(false)]
    });
    let eq_reps = |d: usize, consts: &BTreeSet<String>, fresh: String| -> Vec<Option<String>> {
        if !used(d) {
            return vec![None];
        }
        let mut v = vec![None];
        v.extend(consts.iter().cloned().map(Some));
        v.push(Some(fresh));
        v
    };
    let currencies = eq_reps(
        D_CURRENCY,
        &k.currencies,
        first_free(&k.currencies, letter_pairs("X")),
    );
    dims.push(
        currencies
            .into_iter()
            .map(|c| Rep::Currency(c.map(|c| valid(&c))))
            .collect(),
    );
    let targets = eq_reps(
        D_TARGET,
        &k.targets,
        fresh_token(&k.targets, "urn:tds:other:"),
    );
    dims.push(
        targets
            .into_iter()
            .map(|t| Rep::Target(t.map(|t| valid(&t))))
            .collect(),
    );
    let mut recips = vec![Rep::Recipient(None)];
    if used(D_RECIPIENT) {
        recips.extend(k.recipients.iter().map(|r| Rep::Recipient(Some(*r))));
        let fresh = first_free(
            &k.recipients,
            (0u32..).map(|i| tds_core::Domain::PARTICIPANT.hash(format!("fresh-{i}").as_bytes())),
        );
        recips.push(Rep::Recipient(Some(fresh)));
    }
    dims.push(recips);
    let sectors = eq_reps(D_SECTOR, &k.sectors, fresh_token(&k.sectors, "other"));
    dims.push(
        sectors
            .into_iter()
            .map(|s| Rep::Sector(s.map(|s| valid(&s))))
            .collect(),
    );
    // Roles: every subset of the named roles.
    let roles: Vec<Token> = k.roles.iter().map(|r| valid(r)).collect();
    if roles.len() > MAX_ROLES {
        return Err(ContainmentLimit::Roles { limit: MAX_ROLES }.into());
    }
    let mut role_reps = Vec::new();
    for mask in 0u32..(1 << roles.len()) {
        role_reps.push(Rep::Roles(
            roles
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, r)| r.clone())
                .collect(),
        ));
    }
    dims.push(role_reps);
    // Purposes: constants, their ancestors, a fresh child of each, a fresh root.
    let mut purposes: BTreeSet<String> = BTreeSet::new();
    if used(D_PURPOSE) {
        let segs: BTreeSet<String> = k
            .purposes
            .iter()
            .flat_map(|p| p.split('/').map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let fresh = fresh_token(&segs, "other");
        purposes.insert(fresh.clone());
        for p in &k.purposes {
            purposes.insert(p.clone());
            purposes.insert(format!("{p}/{fresh}"));
            let mut acc = String::new();
            for s in p.split('/') {
                if !acc.is_empty() {
                    acc.push('/');
                }
                acc.push_str(s);
                purposes.insert(acc.clone());
            }
        }
    }
    // A fresh child of a constant at the depth or length limit is not a purpose at all:
    // no request can name it, so leaving that class out keeps the search complete.
    let mut p_reps = vec![Rep::Purpose(None)];
    p_reps.extend(
        purposes
            .iter()
            .filter_map(|p| p.parse().ok())
            .map(|p| Rep::Purpose(Some(p))),
    );
    dims.push(p_reps);
    // Regions: constants, countries, a fresh subdivision of each country, a fresh country.
    let mut regions: BTreeSet<String> = BTreeSet::new();
    if used(D_LOCATION) {
        let countries: BTreeSet<String> = k
            .regions
            .iter()
            .map(|r| r.split_once('-').map_or(r.as_str(), |(c, _)| c).to_owned())
            .collect();
        regions.insert(first_free(&countries, letter_pairs("")));
        for c in &countries {
            regions.insert(c.clone());
            // Subdivisions `Z00`..`ZZZ` (1,296 of them, all valid region syntax).
            const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
            let subs = DIGITS.iter().flat_map(|a| {
                DIGITS
                    .iter()
                    .map(move |b| format!("{c}-Z{}{}", *a as char, *b as char))
            });
            regions.insert(first_free(&k.regions, subs));
        }
        regions.extend(k.regions.iter().cloned());
    }
    let mut l_reps = vec![Rep::Location(None)];
    l_reps.extend(regions.iter().map(|r| Rep::Location(Some(valid(r)))));
    dims.push(l_reps);
    let ord = |d: usize, f: fn(Option<u64>) -> Rep| -> Vec<Rep> {
        let mut v = vec![f(None)];
        if used(d) {
            // Times stay within RFC 3339's years so a counterexample can be printed.
            let max = if d == D_TIME {
                MAX_TIME_MS + 1
            } else {
                u64::MAX
            };
            v.extend(ordered_reps(k.ords(d), max).into_iter().map(|n| f(Some(n))));
        }
        v
    };
    dims.push(ord(D_TIME, Rep::Time));
    dims.push(ord(D_ELAPSED, Rep::Elapsed));
    // Count compares uses + 1; shift the representatives down by one.
    let mut uses = vec![Rep::Uses(None)];
    if used(D_USES) {
        let mut set: BTreeSet<u64> = BTreeSet::new();
        for n in ordered_reps(k.ords(D_USES), u64::MAX) {
            set.insert(n.saturating_sub(1));
        }
        uses.extend(set.into_iter().map(|n| Rep::Uses(Some(n))));
    }
    dims.push(uses);
    dims.push(ord(D_VOLUME, Rep::Volume));
    dims.push(ord(D_PAY, Rep::Pay));
    let mut class = vec![Rep::Class(None)];
    if used(D_CLASS) {
        class.extend(Classification::ALL.iter().map(|c| Rep::Class(Some(*c))));
    }
    dims.push(class);
    let mut pi = vec![Rep::Pi(None)];
    if used(D_PI) {
        pi.extend(PersonalInfo::ALL.iter().map(|c| Rep::Pi(Some(*c))));
    }
    dims.push(pi);
    Ok(dims)
}

// Possible-value sets of a three-valued truth: bit 0 false, bit 1 true, bit 2 unknown.
const PF: u8 = 1;
const PT: u8 = 2;
const PU: u8 = 4;
const PALL: u8 = 7;

fn bit(t: Tri) -> u8 {
    match t {
        Tri::False => PF,
        Tri::True => PT,
        Tri::Unknown => PU,
    }
}

fn tri_of(b: u8) -> Tri {
    match b {
        PF => Tri::False,
        PT => Tri::True,
        _ => Tri::Unknown,
    }
}

fn combine(a: u8, b: u8, f: impl Fn(Tri, Tri) -> Tri) -> u8 {
    let mut out = 0;
    for x in [PF, PT, PU] {
        for y in [PF, PT, PU] {
            if a & x != 0 && b & y != 0 {
                out |= bit(f(tri_of(x), tri_of(y)));
            }
        }
    }
    out
}

fn and3(a: Tri, b: Tri) -> Tri {
    match (a, b) {
        (Tri::False, _) | (_, Tri::False) => Tri::False,
        (Tri::True, Tri::True) => Tri::True,
        _ => Tri::Unknown,
    }
}

fn or3(a: Tri, b: Tri) -> Tri {
    match (a, b) {
        (Tri::True, _) | (_, Tri::True) => Tri::True,
        (Tri::False, Tri::False) => Tri::False,
        _ => Tri::Unknown,
    }
}

/// The truth values `c` may take over every completion of the assigned fields.
fn possible(c: &Constraint, req: &Request, assigned: u32) -> u8 {
    match c {
        Constraint::Atom {
            operand,
            operator,
            value,
        } => {
            if assigned & (1 << dim(*operand)) == 0 {
                PALL
            } else {
                bit(eval::atom(*operand, *operator, value, req))
            }
        }
        Constraint::Logical { op, items } => {
            let sets: Vec<u8> = items.iter().map(|i| possible(i, req, assigned)).collect();
            match op {
                // Folded from each connective's identity (true for and, false for or).
                LogicalOp::And | LogicalOp::AndSequence => {
                    sets.iter().fold(PT, |a, b| combine(a, *b, and3))
                }
                LogicalOp::Or => sets.iter().fold(PF, |a, b| combine(a, *b, or3)),
                LogicalOp::Xone => {
                    // States: (trues so far capped at 2) x (any unknown).
                    let mut states: u8 = 1; // bit (cnt + 3 * unk)
                    for s in sets {
                        let mut next = 0u8;
                        for st in 0..6u8 {
                            if states & (1 << st) == 0 {
                                continue;
                            }
                            let (cnt, unk) = (st % 3, st / 3);
                            if s & PF != 0 {
                                next |= 1 << (cnt + 3 * unk);
                            }
                            if s & PT != 0 {
                                next |= 1 << ((cnt + 1).min(2) + 3 * unk);
                            }
                            if s & PU != 0 {
                                next |= 1 << (cnt + 3);
                            }
                        }
                        states = next;
                    }
                    let mut out = 0;
                    for st in 0..6u8 {
                        if states & (1 << st) != 0 {
                            out |= if st >= 3 {
                                PU
                            } else if st == 1 {
                                PT
                            } else {
                                PF
                            };
                        }
                    }
                    out
                }
            }
        }
    }
}

/// The truth values a rule's condition (target, assignee and constraint) may take.
fn rule_possible(p: &Policy, r: &Rule, req: &Request, assigned: u32) -> u8 {
    let target = match r.target.as_ref().or(p.target.as_ref()) {
        None => PT,
        Some(_) if assigned & (1 << D_TARGET) == 0 => PT | PF,
        Some(t) => match &req.target {
            Some(rt) if rt != t => PF,
            _ => PT,
        },
    };
    let assignee = match &r.assignee {
        None => PT,
        Some(_) if assigned & (1 << D_RECIPIENT) == 0 => PALL,
        Some(a) => bit(match &req.recipient {
            None => Tri::Unknown,
            Some(x) => {
                if x == a {
                    Tri::True
                } else {
                    Tri::False
                }
            }
        }),
    };
    let c = r
        .constraint
        .as_ref()
        .map_or(PT, |c| possible(c, req, assigned));
    // A target mismatch makes the rule not apply at all: treat as false.
    let mut out = combine(assignee, c, and3);
    if target & PT == 0 {
        out = PF;
    } else if target & PF != 0 {
        out |= PF;
    }
    out
}

/// (may be met, must be met) for a rule's duties.
fn duties_possible(r: &Rule, req: &Request, assigned: u32) -> (bool, bool) {
    let mut may = true;
    let mut must = true;
    for d in &r.duties {
        let dim = match d {
            Duty::ObtainConsent(_) => D_CONSENT,
            Duty::Pay { .. } => D_CURRENCY,
            _ => continue,
        };
        if assigned & (1 << dim) == 0 {
            must = false;
        } else if eval::duty_unmet(d, req).is_some() {
            may = false;
            must = false;
        }
    }
    (may, must)
}

/// (may permit, must permit) over every completion of the assigned fields.
fn permit_bounds(p: &Policy, req: &Request, assigned: u32) -> (bool, bool) {
    let mut may_grant = false;
    let mut must_grant = false;
    let mut may_clear = true; // no prohibition applies, possibly
    let mut must_clear = true;
    let mut obl_may = true;
    let mut obl_must = true;
    for r in &p.rules {
        let relevant = match r.kind {
            RuleKind::Prohibition => r.action.overlaps(req.action),
            _ => r.action.covers(req.action),
        };
        if !relevant {
            continue;
        }
        let cond = rule_possible(p, r, req, assigned);
        let (dmay, dmust) = duties_possible(r, req, assigned);
        match r.kind {
            RuleKind::Permission => {
                if cond & PT != 0 && dmay {
                    may_grant = true;
                }
                if cond == PT && dmust {
                    must_grant = true;
                }
            }
            RuleKind::Prohibition => {
                if cond & (PT | PU) != 0 {
                    must_clear = false;
                }
                if cond & PF == 0 {
                    may_clear = false;
                }
            }
            RuleKind::Obligation => {
                if cond & (PT | PU) != 0 && !dmust {
                    obl_must = false;
                }
                if cond & PF == 0 && !dmay {
                    obl_may = false;
                }
            }
        }
    }
    let permit_over = p.conflict == Conflict::Permit;
    let may = may_grant && (permit_over || may_clear) && obl_may;
    let must = must_grant && (permit_over || must_clear) && obl_must;
    (may, must)
}

/// Whether every request `request_policy` permits is permitted by `offer`, within
/// [`DEFAULT_BUDGET`].
///
/// A request policy that names no target is about the offer's asset: it takes the
/// offer's target before the comparison. Both policies must be valid.
pub fn contains(offer: &Policy, request_policy: &Policy) -> Result<Containment, PolicyError> {
    contains_within(offer, request_policy, &mut Budget::new(DEFAULT_BUDGET))
}

/// [`contains`] drawing on `budget`; gives up with [`ContainmentLimit::Budget`] when it is
/// spent (what is left of it stays in `budget` for the next check).
pub fn contains_within(
    offer: &Policy,
    request_policy: &Policy,
    budget: &mut Budget,
) -> Result<Containment, PolicyError> {
    let defaulted;
    let request_policy = if request_policy.target.is_none() && offer.target.is_some() {
        defaulted = Policy {
            target: offer.target.clone(),
            ..request_policy.clone()
        };
        &defaulted
    } else {
        request_policy
    };
    let compiled_offer = CompiledPolicy::compile(offer)?;
    let compiled_asked = CompiledPolicy::compile(request_policy)?;
    let mut k = Constants::default();
    k.add_policy(offer);
    k.add_policy(request_policy);
    let dims = representatives(&k)?;
    let mut req = Request::new(Action::Use);
    let s = Search {
        offer,
        asked: request_policy,
        compiled_offer: &compiled_offer,
        compiled_asked: &compiled_asked,
        dims: &dims,
        step_cost: step_cost(offer).saturating_add(step_cost(request_policy)),
    };
    let found = s.search(0, 0, &mut req, budget)?;
    match found {
        None => Ok(Containment::Contained),
        Some(r) => Ok(Containment::NotContained(Box::new(r))),
    }
}

/// What one search step costs for one policy: its rules and atomic constraints (what
/// the step's bounds and the final decision look at), at least 1.
fn step_cost(p: &Policy) -> u64 {
    let mut atoms = 0u64;
    for r in &p.rules {
        if let Some(c) = &r.constraint {
            c.for_each_atom(&mut |_, _, _| atoms += 1);
        }
    }
    atoms.saturating_add(p.rules.len() as u64).max(1)
}

struct Search<'a> {
    offer: &'a Policy,
    asked: &'a Policy,
    compiled_offer: &'a CompiledPolicy,
    compiled_asked: &'a CompiledPolicy,
    dims: &'a [Vec<Rep>],
    step_cost: u64,
}

impl Search<'_> {
    fn search(
        &self,
        d: usize,
        assigned: u32,
        req: &mut Request,
        budget: &mut Budget,
    ) -> Result<Option<Request>, PolicyError> {
        budget.take(self.step_cost)?;
        if d > 0 {
            let (asked_may, _) = permit_bounds(self.asked, req, assigned);
            if !asked_may {
                return Ok(None);
            }
            let (_, offer_must) = permit_bounds(self.offer, req, assigned);
            if offer_must {
                return Ok(None);
            }
        }
        let Some(reps) = self.dims.get(d) else {
            // Every field is set: decide exactly (the compiled form for speed), and
            // confirm a counterexample with the reference interpreter.
            if self.compiled_asked.decide(req).effect == Effect::Permit
                && self.compiled_offer.decide(req).effect != Effect::Permit
                && eval::evaluate(self.asked, req).effect == Effect::Permit
                && eval::evaluate(self.offer, req).effect != Effect::Permit
            {
                return Ok(Some(req.clone()));
            }
            return Ok(None);
        };
        for rep in reps {
            apply(req, rep);
            if let Some(found) = self.search(d + 1, assigned | (1 << d), req, budget)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}
