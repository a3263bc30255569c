//! Lint: conflicts, unsatisfiable constraints, and duties that contradict constraints.

use std::fmt;

use crate::contain::{contains, Containment};
use crate::model::*;

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lint {
    /// The rule (1-based), if the finding is about one.
    pub rule: Option<usize>,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Some(r) => write!(f, "warning: rule {r}: {}", self.message),
            None => write!(f, "warning: {}", self.message),
        }
    }
}

/// A request `p` permits, if any (`None` when it permits nothing, or the search gave up).
fn permits_something(p: &Policy) -> Option<bool> {
    match contains(&Policy::default(), p) {
        Ok(Containment::NotContained(_)) => Some(true),
        Ok(Containment::Contained) => Some(false),
        Err(_) => None,
    }
}

fn always_false_atom(operand: Operand, operator: Operator, value: &Value) -> bool {
    let Some(n) = value.ordinal() else {
        return false;
    };
    // Count is at least 1 (uses so far + 1); everything else at least 0.
    let min = u64::from(operand == Operand::Count);
    let max = match operand {
        Operand::Classification | Operand::PersonalInfo => 2,
        _ => u64::MAX,
    };
    match operator {
        Operator::Lt => n <= min,
        Operator::Lteq => n < min,
        Operator::Gt => n >= max,
        _ => false,
    }
}

/// Lints a policy.
pub fn lint(policy: &Policy) -> Vec<Lint> {
    let mut out = Vec::new();
    let mut push = |rule: Option<usize>, message: String| out.push(Lint { rule, message });
    if policy.kind == PolicyKind::Offer && policy.assigner.is_none() {
        push(None, "offer has no assigner".into());
    }
    if !policy.rules.iter().any(|r| r.kind == RuleKind::Permission) {
        push(None, "policy has no permission: it permits nothing".into());
    }
    for (i, r) in policy.rules.iter().enumerate() {
        let n = Some(i + 1);
        if let Some(c) = &r.constraint {
            c.for_each_atom(&mut |o, op, v| {
                if always_false_atom(o, op, v) {
                    push(
                        n,
                        format!(
                            "constraint `{}` can never hold",
                            crate::text::format_constraint(&Constraint::atom(o, op, v.clone()))
                        ),
                    );
                }
            });
        }
        // Duties against constraints.
        let mut atoms: Vec<(Operand, Operator, Value)> = Vec::new();
        if let Some(Constraint::Logical {
            op: LogicalOp::And | LogicalOp::AndSequence,
            items,
        }) = &r.constraint
        {
            for c in items {
                if let Constraint::Atom {
                    operand,
                    operator,
                    value,
                } = c
                {
                    atoms.push((*operand, *operator, value.clone()));
                }
            }
        } else if let Some(Constraint::Atom {
            operand,
            operator,
            value,
        }) = &r.constraint
        {
            atoms.push((*operand, *operator, value.clone()));
        }
        let mut pay_currencies: Vec<&Currency> = Vec::new();
        for d in &r.duties {
            match d {
                Duty::Delete { within } => {
                    for (o, op, v) in &atoms {
                        if *o == Operand::ElapsedTime
                            && matches!(op, Operator::Gt | Operator::Gteq)
                            && v.ordinal().is_some_and(|x| x >= *within)
                        {
                            push(
                                n,
                                format!(
                                    "duty delete(within {}) contradicts `elapsedTime {op} {}`: the data must be gone before use is allowed",
                                    crate::text::format_duration(*within),
                                    crate::text::format_value(v)
                                ),
                            );
                        }
                    }
                }
                Duty::Pay { currency, .. } => {
                    pay_currencies.push(currency);
                    for (o, op, v) in &atoms {
                        if *o != Operand::Currency {
                            continue;
                        }
                        let listed = v
                            .items()
                            .iter()
                            .any(|x| matches!(x, Value::Currency(c) if c == currency));
                        let contradicts = match op {
                            Operator::Eq | Operator::IsAnyOf => !listed,
                            Operator::Neq | Operator::IsNoneOf => listed,
                            _ => false,
                        };
                        if contradicts {
                            push(
                                n,
                                format!(
                                    "duty pay in {currency} contradicts `currency {op} {}`",
                                    crate::text::format_value(v)
                                ),
                            );
                        }
                    }
                }
                Duty::ObtainConsent(_) => {
                    for (o, op, v) in &atoms {
                        if *o == Operand::ConsentRef
                            && ((*op == Operator::Eq && *v == Value::Present(false))
                                || (*op == Operator::Neq && *v == Value::Present(true)))
                        {
                            push(
                                n,
                                "duty obtain-consent contradicts `consentRef eq absent`".into(),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        if pay_currencies.windows(2).any(|w| w.first() != w.get(1)) {
            push(
                n,
                "pay duties in different currencies can never all be met".into(),
            );
        }
        if r.kind != RuleKind::Permission {
            continue;
        }
        // Unsatisfiable permission, or voided by a prohibition.
        let alone = Policy {
            rules: vec![r.clone()],
            conflict: Conflict::Prohibit,
            ..policy.clone()
        };
        match permits_something(&alone) {
            Some(false) => {
                push(
                    n,
                    "permission can never be granted: its constraints and duties cannot all hold"
                        .into(),
                );
                continue;
            }
            None => continue,
            Some(true) => {}
        }
        if policy.conflict == Conflict::Permit {
            continue;
        }
        for (j, q) in policy.rules.iter().enumerate() {
            if q.kind != RuleKind::Prohibition || !q.action.overlaps(r.action) {
                continue;
            }
            let pair = Policy {
                rules: vec![r.clone(), q.clone()],
                conflict: Conflict::Prohibit,
                ..policy.clone()
            };
            if permits_something(&pair) == Some(false) {
                push(
                    n,
                    format!("prohibition {} voids this permission entirely", j + 1),
                );
            }
        }
    }
    out
}
