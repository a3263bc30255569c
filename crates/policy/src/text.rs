//! The text syntax: a hand-written parser with `file:line:col` errors, and the formatter.
//!
//! ```text
//! policy offer
//!   target "urn:tds:asset:meter-load"
//!   conflict prohibit;
//!
//! permit use
//!   when purpose isA grid/planning
//!     and industry eq power
//!     and count lteq 100
//!   duty anonymize, attribute("State Grid Shanxi");
//!
//! prohibit distribute;
//! ```
//!
//! The grammar is in `spec/policy.md`. Comments (`//` to the end of the line) are
//! dropped by the formatter. `format(parse(t))` parses back to the same policy, and
//! formatting is idempotent.

use std::fmt::Write as _;

use tds_core::{Hash256, Timestamp};

use crate::error::PolicyError;
use crate::model::*;

/// Largest accepted text, in bytes.
pub const MAX_INPUT: usize = 1024 * 1024;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Semi,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{}`", w.chars().take(40).collect::<String>()),
            Tok::Str(s) => format!("string {}", quote(s)),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Semi => "`;`".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

struct Lexed {
    tok: Tok,
    line: usize,
    col: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '+' | '-' | '@')
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    col: usize,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next();
        if c == Some('\n') {
            self.line += 1;
            self.col = 1;
        } else if c.is_some() {
            self.col += 1;
        }
        c
    }
}

fn lex(file: &str, src: &str) -> Result<Vec<Lexed>, PolicyError> {
    let err = |line, col, message: String| PolicyError::Syntax {
        file: file.to_owned(),
        line,
        col,
        message,
    };
    if src.len() > MAX_INPUT {
        return Err(err(1, 1, format!("input larger than {MAX_INPUT} bytes")));
    }
    let mut out = Vec::new();
    let mut cur = Cursor {
        chars: src.chars().peekable(),
        line: 1,
        col: 1,
    };
    while let Some(c) = cur.peek() {
        let (tl, tc) = (cur.line, cur.col);
        if c.is_whitespace() {
            cur.bump();
            continue;
        }
        let simple = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            ';' => Some(Tok::Semi),
            _ => None,
        };
        if let Some(t) = simple {
            cur.bump();
            out.push(Lexed {
                tok: t,
                line: tl,
                col: tc,
            });
            continue;
        }
        if c == '"' {
            cur.bump();
            let mut s = String::new();
            loop {
                let (l, cc) = (cur.line, cur.col);
                match cur.bump() {
                    None => return Err(err(tl, tc, "unterminated string".into())),
                    Some('"') => break,
                    Some('\\') => match cur.bump() {
                        Some('"') => s.push('"'),
                        Some('\\') => s.push('\\'),
                        _ => {
                            return Err(err(
                                l,
                                cc,
                                "unknown escape in string (only \\\" and \\\\)".into(),
                            ))
                        }
                    },
                    Some(ch) if ch.is_control() => {
                        return Err(err(l, cc, "control character in string".into()))
                    }
                    Some(ch) => s.push(ch),
                }
                if s.len() > MAX_TEXT * 4 {
                    return Err(err(tl, tc, "string too long".into()));
                }
            }
            out.push(Lexed {
                tok: Tok::Str(s),
                line: tl,
                col: tc,
            });
            continue;
        }
        if is_word_char(c) {
            let mut w = String::new();
            while let Some(c) = cur.peek() {
                if !is_word_char(c) {
                    break;
                }
                w.push(c);
                cur.bump();
                if w.ends_with("//") {
                    // A comment starts, even right after a word.
                    w.truncate(w.len() - 2);
                    while let Some(c) = cur.peek() {
                        if c == '\n' {
                            break;
                        }
                        cur.bump();
                    }
                    break;
                }
            }
            if !w.is_empty() {
                out.push(Lexed {
                    tok: Tok::Word(w),
                    line: tl,
                    col: tc,
                });
            }
            continue;
        }
        return Err(err(tl, tc, format!("unexpected character {c:?}")));
    }
    out.push(Lexed {
        tok: Tok::Eof,
        line: cur.line,
        col: cur.col,
    });
    Ok(out)
}

struct Parser<'a> {
    file: &'a str,
    toks: Vec<Lexed>,
    pos: usize,
    atoms: usize,
}

/// Parses a policy in the text syntax. `file` names the input in error messages.
pub fn parse(file: &str, src: &str) -> Result<Policy, PolicyError> {
    let toks = lex(file, src)?;
    let mut p = Parser {
        file,
        toks,
        pos: 0,
        atoms: 0,
    };
    let policy = p.policy()?;
    policy.validate().map_err(|e| p.err_at(0, e.to_string()))?;
    Ok(policy)
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn err_at(&self, pos: usize, message: String) -> PolicyError {
        let (line, col) = self
            .toks
            .get(pos)
            .or(self.toks.last())
            .map_or((1, 1), |t| (t.line, t.col));
        PolicyError::Syntax {
            file: self.file.to_owned(),
            line,
            col,
            message,
        }
    }

    fn err(&self, message: String) -> PolicyError {
        self.err_at(self.pos, message)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, t: Tok) -> Result<(), PolicyError> {
        if *self.peek() == t {
            self.next();
            Ok(())
        } else {
            Err(self.err(format!(
                "expected {}, found {}",
                t.describe(),
                self.peek().describe()
            )))
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x == w)
    }

    fn word(&mut self, what: &str) -> Result<String, PolicyError> {
        match self.peek().clone() {
            Tok::Word(w) => {
                self.next();
                Ok(w)
            }
            other => Err(self.err(format!("expected {what}, found {}", other.describe()))),
        }
    }

    /// A word or a string.
    fn scalar(&mut self, what: &str) -> Result<String, PolicyError> {
        match self.peek().clone() {
            Tok::Word(w) | Tok::Str(w) => {
                self.next();
                Ok(w)
            }
            other => Err(self.err(format!("expected {what}, found {}", other.describe()))),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, PolicyError> {
        match self.peek().clone() {
            Tok::Str(w) => {
                self.next();
                Ok(w)
            }
            other => Err(self.err(format!(
                "expected {what} (a quoted string), found {}",
                other.describe()
            ))),
        }
    }

    fn text(&mut self, what: &str) -> Result<Text, PolicyError> {
        let at = self.pos;
        let s = self.string(what)?;
        s.parse()
            .map_err(|e: PolicyError| self.err_at(at, e.to_string()))
    }

    fn policy(&mut self) -> Result<Policy, PolicyError> {
        let mut policy = Policy::default();
        if self.is_word("policy") {
            self.next();
            if let Tok::Word(w) = self.peek() {
                if let Some(k) = PolicyKind::from_word(w) {
                    policy.kind = k;
                    self.next();
                }
            }
            loop {
                let at = self.pos;
                match self.next() {
                    Tok::Semi => break,
                    Tok::Word(w) => match w.as_str() {
                        "uid" => set_once(&mut policy.uid, self.text("uid")?, self, at, "uid")?,
                        "target" => {
                            set_once(&mut policy.target, self.text("target")?, self, at, "target")?
                        }
                        "assigner" => set_once(
                            &mut policy.assigner,
                            self.text("assigner")?,
                            self,
                            at,
                            "assigner",
                        )?,
                        "conflict" => {
                            let at = self.pos;
                            let w = self.word("a conflict strategy")?;
                            policy.conflict = Conflict::from_word(&w).ok_or_else(|| {
                                self.err_at(
                                    at,
                                    format!(
                                        "unknown conflict strategy `{w}` (prohibit, permit or invalid)"
                                    ),
                                )
                            })?;
                        }
                        _ => {
                            return Err(self.err_at(
                                at,
                                format!(
                                "unknown policy attribute `{w}` (uid, target, assigner, conflict)"
                            ),
                            ))
                        }
                    },
                    other => {
                        return Err(self.err_at(
                            at,
                            format!(
                                "expected a policy attribute or `;`, found {}",
                                other.describe()
                            ),
                        ))
                    }
                }
            }
        }
        while *self.peek() != Tok::Eof {
            if policy.rules.len() >= MAX_RULES {
                return Err(self.err(format!("more than {MAX_RULES} rules")));
            }
            let r = self.rule()?;
            policy.rules.push(r);
        }
        Ok(policy)
    }

    fn rule(&mut self) -> Result<Rule, PolicyError> {
        let at = self.pos;
        let w = self.word("`permit`, `prohibit` or `obligation`")?;
        let kind = RuleKind::from_word(&w).ok_or_else(|| {
            self.err_at(
                at,
                format!("expected `permit`, `prohibit` or `obligation`, found `{w}`"),
            )
        })?;
        let at = self.pos;
        let a = self.word("an action")?;
        let action = Action::from_word(&a)
            .ok_or_else(|| self.err_at(at, format!("unknown action `{a}`")))?;
        let mut rule = Rule::new(kind, action);
        loop {
            let at = self.pos;
            match self.next() {
                Tok::Semi => break,
                Tok::Word(w) => match w.as_str() {
                    "target" => set_once(&mut rule.target, self.text("target")?, self, at, "target")?,
                    "assigner" => set_once(
                        &mut rule.assigner,
                        self.text("assigner")?,
                        self,
                        at,
                        "assigner",
                    )?,
                    "assignee" => {
                        let vat = self.pos;
                        let s = self.scalar("a participant id")?;
                        let id: Hash256 = s.parse().map_err(|e| {
                            self.err_at(vat, format!("assignee {}: {e}", quote(&s)))
                        })?;
                        set_once(&mut rule.assignee, id, self, at, "assignee")?;
                    }
                    "when" => {
                        let c = self.expr(1)?;
                        set_once(&mut rule.constraint, c, self, at, "when")?;
                    }
                    "duty" => loop {
                        if rule.duties.len() >= MAX_DUTIES {
                            return Err(self.err(format!("more than {MAX_DUTIES} duties")));
                        }
                        let d = self.duty()?;
                        rule.duties.push(d);
                        if *self.peek() == Tok::Comma {
                            self.next();
                        } else {
                            break;
                        }
                    },
                    _ => {
                        return Err(self.err_at(
                            at,
                            format!(
                                "unknown rule clause `{w}` (target, assigner, assignee, when, duty) or missing `;`"
                            ),
                        ))
                    }
                },
                other => {
                    return Err(self.err_at(
                        at,
                        format!("expected a rule clause or `;`, found {}", other.describe()),
                    ))
                }
            }
        }
        if kind == RuleKind::Obligation && rule.duties.is_empty() {
            return Err(self.err_at(at, "an obligation must name at least one duty".into()));
        }
        if kind == RuleKind::Prohibition && !rule.duties.is_empty() {
            return Err(self.err_at(at, "a prohibition cannot carry duties".into()));
        }
        Ok(rule)
    }

    fn expr(&mut self, depth: usize) -> Result<Constraint, PolicyError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("constraints nest deeper than {MAX_DEPTH}")));
        }
        let first = self.term(depth)?;
        let op = match self.peek() {
            Tok::Word(w) => match w.as_str() {
                "and" => LogicalOp::And,
                "or" => LogicalOp::Or,
                "xone" => LogicalOp::Xone,
                "then" => LogicalOp::AndSequence,
                _ => return Ok(first),
            },
            _ => return Ok(first),
        };
        let mut items = vec![first];
        while let Tok::Word(w) = self.peek() {
            let this = match w.as_str() {
                "and" => LogicalOp::And,
                "or" => LogicalOp::Or,
                "xone" => LogicalOp::Xone,
                "then" => LogicalOp::AndSequence,
                _ => break,
            };
            if this != op {
                return Err(self.err(format!(
                    "`{}` cannot follow `{}` without parentheses",
                    this.text_word(),
                    op.text_word()
                )));
            }
            self.next();
            if items.len() >= MAX_LIST {
                return Err(self.err(format!("more than {MAX_LIST} constraints in one group")));
            }
            items.push(self.term(depth)?);
        }
        Ok(Constraint::Logical { op, items })
    }

    fn term(&mut self, depth: usize) -> Result<Constraint, PolicyError> {
        if *self.peek() == Tok::LParen {
            self.next();
            let c = self.expr(depth + 1)?;
            self.expect(Tok::RParen)?;
            return Ok(c);
        }
        let at = self.pos;
        let w = self.word("an operand")?;
        let operand = Operand::from_word(&w)
            .ok_or_else(|| self.err_at(at, format!("unknown operand `{w}`")))?;
        let at = self.pos;
        let o = self.word("an operator")?;
        let operator = Operator::from_word(&o)
            .ok_or_else(|| self.err_at(at, format!("unknown operator `{o}`")))?;
        if !operand.supports(operator) {
            return Err(self.err_at(
                at,
                format!("operator {operator} cannot be used with operand {operand}"),
            ));
        }
        self.atoms += 1;
        if self.atoms > MAX_CONSTRAINTS {
            return Err(self.err_at(at, format!("more than {MAX_CONSTRAINTS} constraints")));
        }
        let value = if operator.takes_list() {
            self.expect(Tok::LBracket)?;
            let mut items = Vec::new();
            loop {
                if items.len() >= MAX_LIST {
                    return Err(self.err(format!("more than {MAX_LIST} values in a list")));
                }
                items.push(self.value(operand)?);
                match self.next() {
                    Tok::Comma => continue,
                    Tok::RBracket => break,
                    other => {
                        self.pos -= 1;
                        return Err(
                            self.err(format!("expected `,` or `]`, found {}", other.describe()))
                        );
                    }
                }
            }
            Value::List(items)
        } else {
            self.value(operand)?
        };
        Ok(Constraint::Atom {
            operand,
            operator,
            value,
        })
    }

    fn value(&mut self, operand: Operand) -> Result<Value, PolicyError> {
        let at = self.pos;
        let s = self.scalar(&format!("a value for {operand}"))?;
        parse_value(operand, &s).map_err(|m| self.err_at(at, m))
    }

    fn duty(&mut self) -> Result<Duty, PolicyError> {
        let at = self.pos;
        let w = self.word("a duty")?;
        let d = match w.as_str() {
            "anonymize" => return Ok(Duty::Anonymize),
            "attribute" => {
                self.expect(Tok::LParen)?;
                Duty::Attribute(self.text("attribution text")?)
            }
            "notify" => {
                self.expect(Tok::LParen)?;
                Duty::Notify(self.text("the party to notify")?)
            }
            "obtain-consent" => {
                self.expect(Tok::LParen)?;
                Duty::ObtainConsent(self.text("the consent reference")?)
            }
            "delete" => {
                self.expect(Tok::LParen)?;
                if !self.is_word("within") {
                    return Err(self.err("expected `within`".into()));
                }
                self.next();
                Duty::Delete {
                    within: self.duration()?,
                }
            }
            "report-usage" => {
                self.expect(Tok::LParen)?;
                if !self.is_word("every") {
                    return Err(self.err("expected `every`".into()));
                }
                self.next();
                Duty::ReportUsage {
                    every: self.duration()?,
                }
            }
            "pay" => {
                self.expect(Tok::LParen)?;
                let vat = self.pos;
                let a = self.word("an amount")?;
                let amount: Amount = a
                    .parse()
                    .map_err(|e: PolicyError| self.err_at(vat, e.to_string()))?;
                let vat = self.pos;
                let c = self.word("a currency")?;
                let currency: Currency = c
                    .parse()
                    .map_err(|e: PolicyError| self.err_at(vat, e.to_string()))?;
                if !self.is_word("per") {
                    return Err(self.err("expected `per`".into()));
                }
                self.next();
                let vat = self.pos;
                let u = self.word("a unit")?;
                let per = PayUnit::from_word(&u).ok_or_else(|| {
                    self.err_at(
                        vat,
                        format!("unknown unit `{u}` (use, mib, gib, day, month, year, once)"),
                    )
                })?;
                Duty::Pay {
                    amount,
                    currency,
                    per,
                }
            }
            _ => return Err(self.err_at(at, format!("unknown duty `{w}`"))),
        };
        self.expect(Tok::RParen)?;
        Ok(d)
    }

    fn duration(&mut self) -> Result<u64, PolicyError> {
        let at = self.pos;
        let w = self.word("a duration such as 30d")?;
        parse_duration(&w).map_err(|m| self.err_at(at, m))
    }
}

fn set_once<T>(
    slot: &mut Option<T>,
    v: T,
    p: &Parser<'_>,
    at: usize,
    what: &str,
) -> Result<(), PolicyError> {
    if slot.is_some() {
        return Err(p.err_at(at, format!("`{what}` given twice")));
    }
    *slot = Some(v);
    Ok(())
}

/// Parses a duration: a whole number followed by `ms`, `s`, `m`, `h` or `d` (`30d`).
pub fn parse_duration(w: &str) -> Result<u64, String> {
    let digits = w.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = w.split_at(digits);
    let mult: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{} is not a duration (a number followed by ms, s, m, h or d)",
                quote(w)
            ))
        }
    };
    if n.is_empty() || n.len() > 20 {
        return Err(format!("{} is not a duration", quote(w)));
    }
    n.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("duration {} is too long", quote(w)))
}

/// The shortest text form of a duration in milliseconds.
pub fn format_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    for (m, u) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ] {
        if ms.is_multiple_of(m) {
            return format!("{}{u}", ms / m);
        }
    }
    format!("{ms}ms")
}

const BYTE_UNITS: [(u64, &str); 4] = [
    (1 << 40, "TiB"),
    (1 << 30, "GiB"),
    (1 << 20, "MiB"),
    (1 << 10, "KiB"),
];

fn parse_bytes(w: &str) -> Result<u64, String> {
    let digits = w.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = w.split_at(digits);
    let mult = match unit {
        "" | "B" => 1,
        u => BYTE_UNITS
            .iter()
            .find(|(_, name)| *name == u)
            .map(|(m, _)| *m)
            .ok_or_else(|| {
                format!(
                    "{} is not a size (a number, optionally with B, KiB, MiB, GiB or TiB)",
                    quote(w)
                )
            })?,
    };
    if n.is_empty() || n.len() > 20 {
        return Err(format!("{} is not a size", quote(w)));
    }
    n.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("size {} is too large", quote(w)))
}

fn format_bytes(b: u64) -> String {
    if b != 0 {
        for (m, u) in BYTE_UNITS {
            if b.is_multiple_of(m) {
                return format!("{}{u}", b / m);
            }
        }
    }
    b.to_string()
}

/// Parses a time: RFC 3339 (`2027-03-01T00:00:00Z`) or a date (`2027-03-01`, midnight UTC).
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    let t = if s.len() == 10 {
        Timestamp::parse_rfc3339(&format!("{s}T00:00:00Z"))
    } else {
        Timestamp::parse_rfc3339(s)
    }
    .map_err(|e| e.to_string())?;
    if t.as_millis() > MAX_TIME_MS {
        return Err(format!("time {} is after the year 9999", quote(s)));
    }
    Ok(t)
}

/// Parses one (non-list) value for `operand` from its text.
pub fn parse_value(operand: Operand, s: &str) -> Result<Value, String> {
    let e = |e: PolicyError| e.to_string();
    Ok(match operand {
        Operand::Purpose => Value::Purpose(s.parse().map_err(e)?),
        Operand::Spatial => Value::Region(s.parse().map_err(e)?),
        Operand::DateTime => Value::Time(parse_time(s)?),
        Operand::ElapsedTime => Value::Duration(parse_duration(s)?),
        Operand::Count => Value::Count(
            s.parse()
                .ok()
                .filter(|_| s.bytes().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| format!("{} is not a count (a whole number)", quote(s)))?,
        ),
        Operand::Volume => Value::Bytes(parse_bytes(s)?),
        Operand::PayAmount => Value::Amount(s.parse().map_err(e)?),
        Operand::Classification => {
            Value::Classification(Classification::from_word(s).ok_or_else(|| {
                format!(
                    "{} is not a classification (general, important, core)",
                    quote(s)
                )
            })?)
        }
        Operand::PersonalInfo => {
            Value::PersonalInfo(PersonalInfo::from_word(s).ok_or_else(|| {
                format!(
                    "{} is not a personal information level (none, personal, sensitive)",
                    quote(s)
                )
            })?)
        }
        Operand::Industry | Operand::RecipientRole => Value::Token(s.parse().map_err(e)?),
        Operand::Recipient => Value::Participant(
            s.parse()
                .map_err(|err| format!("{} is not a participant id: {err}", quote(s)))?,
        ),
        Operand::Currency => Value::Currency(s.parse().map_err(e)?),
        Operand::ConsentRef | Operand::ExportAssessmentRef => match s {
            "present" => Value::Present(true),
            "absent" => Value::Present(false),
            _ => return Err(format!("{} is not `present` or `absent`", quote(s))),
        },
    })
}

/// The text form of one (non-list) value.
pub fn format_value(v: &Value) -> String {
    match v {
        Value::Purpose(p) => p.to_string(),
        Value::Region(r) => r.to_string(),
        Value::Time(t) => t.to_rfc3339(),
        Value::Duration(d) => format_duration(*d),
        Value::Count(c) => c.to_string(),
        Value::Bytes(b) => format_bytes(*b),
        Value::Amount(a) => a.to_string(),
        Value::Classification(c) => c.to_string(),
        Value::PersonalInfo(p) => p.to_string(),
        Value::Token(t) => t.to_string(),
        Value::Participant(h) => h.to_string(),
        Value::Currency(c) => c.to_string(),
        Value::Present(true) => "present".into(),
        Value::Present(false) => "absent".into(),
        Value::List(items) => {
            let parts: Vec<String> = items.iter().map(format_value).collect();
            format!("[{}]", parts.join(", "))
        }
    }
}

fn string_lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The text form of a constraint on one line (nested groups in parentheses).
pub fn format_constraint(c: &Constraint) -> String {
    match c {
        Constraint::Atom {
            operand,
            operator,
            value,
        } => format!("{operand} {operator} {}", format_value(value)),
        Constraint::Logical { op, items } => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Constraint::Logical { .. } => format!("({})", format_constraint(i)),
                    a => format_constraint(a),
                })
                .collect();
            parts.join(&format!(" {} ", op.text_word()))
        }
    }
}

/// The text form of a duty.
pub fn format_duty(d: &Duty) -> String {
    match d {
        Duty::Attribute(t) => format!("attribute({})", string_lit(t.as_str())),
        Duty::Delete { within } => format!("delete(within {})", format_duration(*within)),
        Duty::Anonymize => "anonymize".into(),
        Duty::Notify(t) => format!("notify({})", string_lit(t.as_str())),
        Duty::Pay {
            amount,
            currency,
            per,
        } => format!("pay({amount} {currency} per {per})"),
        Duty::ReportUsage { every } => format!("report-usage(every {})", format_duration(*every)),
        Duty::ObtainConsent(t) => format!("obtain-consent({})", string_lit(t.as_str())),
    }
}

/// The canonical text form of a policy.
pub fn format(p: &Policy) -> String {
    let mut out = String::new();
    let _ = write!(out, "policy {}", p.kind);
    if let Some(u) = &p.uid {
        let _ = write!(out, "\n  uid {}", string_lit(u.as_str()));
    }
    if let Some(t) = &p.target {
        let _ = write!(out, "\n  target {}", string_lit(t.as_str()));
    }
    if let Some(a) = &p.assigner {
        let _ = write!(out, "\n  assigner {}", string_lit(a.as_str()));
    }
    let _ = writeln!(out, "\n  conflict {};", p.conflict);
    for r in &p.rules {
        out.push('\n');
        let _ = write!(out, "{} {}", r.kind, r.action);
        if let Some(t) = &r.target {
            let _ = write!(out, "\n  target {}", string_lit(t.as_str()));
        }
        if let Some(a) = &r.assigner {
            let _ = write!(out, "\n  assigner {}", string_lit(a.as_str()));
        }
        if let Some(a) = &r.assignee {
            let _ = write!(out, "\n  assignee {a}");
        }
        match &r.constraint {
            None => {}
            Some(Constraint::Logical { op, items }) => {
                for (i, c) in items.iter().enumerate() {
                    let text = match c {
                        Constraint::Logical { .. } => format!("({})", format_constraint(c)),
                        a => format_constraint(a),
                    };
                    if i == 0 {
                        let _ = write!(out, "\n  when {text}");
                    } else {
                        let _ = write!(out, "\n    {} {text}", op.text_word());
                    }
                }
            }
            Some(c) => {
                let _ = write!(out, "\n  when {}", format_constraint(c));
            }
        }
        if !r.duties.is_empty() {
            let parts: Vec<String> = r.duties.iter().map(format_duty).collect();
            let _ = write!(out, "\n  duty {}", parts.join(", "));
        }
        out.push_str(";\n");
    }
    out
}
