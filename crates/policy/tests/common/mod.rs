//! Random policies and requests for the property tests.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap, expect or index is a failed test"
)]

use proptest::prelude::*;
use tds_policy::model::*;
use tds_policy::Request;

// ---------------------------------------------------------------------------------
// Random policies and requests.

pub fn purpose() -> impl Strategy<Value = Purpose> {
    prop::sample::select(vec![
        "grid",
        "grid/planning",
        "grid/planning/load",
        "research",
        "research/medical",
        "marketing",
    ])
    .prop_map(|s| s.parse().unwrap())
}
pub fn region() -> impl Strategy<Value = Region> {
    prop::sample::select(vec!["CN", "CN-SX", "CN-BJ", "HK", "DE"]).prop_map(|s| s.parse().unwrap())
}
pub fn token() -> impl Strategy<Value = Token> {
    prop::sample::select(vec!["power", "finance", "consumer", "provider", "operator"])
        .prop_map(|s| s.parse().unwrap())
}
pub fn participant() -> impl Strategy<Value = tds_core::Hash256> {
    (0u8..3).prop_map(|i| tds_core::Domain::PARTICIPANT.hash(&[i]))
}
pub fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["CNY", "USD"]).prop_map(|s| s.parse().unwrap())
}

pub fn value_for(o: Operand) -> BoxedStrategy<Value> {
    match o {
        Operand::Purpose => purpose().prop_map(Value::Purpose).boxed(),
        Operand::Spatial => region().prop_map(Value::Region).boxed(),
        Operand::DateTime => (0u64..5)
            .prop_map(|d| {
                Value::Time(tds_core::Timestamp::from_millis(
                    1_800_000_000_000 + d * 86_400_000,
                ))
            })
            .boxed(),
        Operand::ElapsedTime => (0u64..5)
            .prop_map(|d| Value::Duration(d * 86_400_000))
            .boxed(),
        Operand::Count => (0u64..6).prop_map(Value::Count).boxed(),
        Operand::Volume => (0u64..6).prop_map(|v| Value::Bytes(v << 20)).boxed(),
        Operand::PayAmount => (0u64..6)
            .prop_map(|v| Value::Amount(Amount(v * 5000)))
            .boxed(),
        Operand::Classification => prop::sample::select(Classification::ALL.to_vec())
            .prop_map(Value::Classification)
            .boxed(),
        Operand::PersonalInfo => prop::sample::select(PersonalInfo::ALL.to_vec())
            .prop_map(Value::PersonalInfo)
            .boxed(),
        Operand::Industry | Operand::RecipientRole => token().prop_map(Value::Token).boxed(),
        Operand::Recipient => participant().prop_map(Value::Participant).boxed(),
        Operand::Currency => currency().prop_map(Value::Currency).boxed(),
        Operand::ConsentRef | Operand::ExportAssessmentRef => {
            any::<bool>().prop_map(Value::Present).boxed()
        }
    }
}

pub fn atom() -> impl Strategy<Value = Constraint> {
    (
        prop::sample::select(Operand::ALL.to_vec()),
        prop::sample::select(Operator::ALL.to_vec()),
    )
        .prop_filter("supported", |(o, op)| o.supports(*op))
        .prop_flat_map(|(o, op)| {
            let v = if op.takes_list() {
                prop::collection::vec(value_for(o), 1..4)
                    .prop_map(Value::List)
                    .boxed()
            } else {
                value_for(o)
            };
            v.prop_map(move |v| Constraint::atom(o, op, v))
        })
}

pub fn constraint() -> impl Strategy<Value = Constraint> {
    atom().prop_recursive(3, 16, 4, |inner| {
        (
            prop::sample::select(LogicalOp::ALL.to_vec()),
            prop::collection::vec(inner, 2..4),
        )
            .prop_map(|(op, items)| Constraint::Logical { op, items })
    })
}

pub fn text() -> impl Strategy<Value = Text> {
    prop::sample::select(vec!["urn:a", "State \"Grid\" \\ Shanxi", "x"])
        .prop_map(|s| s.parse().unwrap())
}

pub fn duty() -> impl Strategy<Value = Duty> {
    prop_oneof![
        text().prop_map(Duty::Attribute),
        (0u64..100_000_000).prop_map(|w| Duty::Delete { within: w }),
        Just(Duty::Anonymize),
        text().prop_map(Duty::Notify),
        (
            0u64..100_000,
            currency(),
            prop::sample::select(PayUnit::ALL.to_vec())
        )
            .prop_map(|(a, c, per)| Duty::Pay {
                amount: Amount(a),
                currency: c,
                per
            }),
        (1u64..100_000_000).prop_map(|e| Duty::ReportUsage { every: e }),
        text().prop_map(Duty::ObtainConsent),
    ]
}

pub fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::sample::select(RuleKind::ALL.to_vec()),
        prop::sample::select(Action::ALL.to_vec()),
        prop::option::weighted(0.1, text()),
        prop::option::weighted(0.1, text()),
        prop::option::weighted(0.1, participant()),
        prop::option::weighted(0.8, constraint()),
        prop::collection::vec(duty(), 0..3),
    )
        .prop_map(
            |(kind, action, target, assigner, assignee, constraint, mut duties)| {
                if kind == RuleKind::Obligation && duties.is_empty() {
                    duties.push(Duty::Anonymize);
                }
                if kind == RuleKind::Prohibition {
                    duties.clear();
                }
                Rule {
                    kind,
                    action,
                    target,
                    assigner,
                    assignee,
                    constraint,
                    duties,
                }
            },
        )
}

pub fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(PolicyKind::ALL.to_vec()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::sample::select(Conflict::ALL.to_vec()),
        prop::collection::vec(rule(), 0..5),
    )
        .prop_map(|(kind, uid, target, assigner, conflict, rules)| Policy {
            kind,
            uid,
            target,
            assigner,
            conflict,
            rules,
        })
}

pub fn request() -> impl Strategy<Value = Request> {
    (
        (
            prop::sample::select(Action::ALL.to_vec()),
            prop::option::weighted(0.2, text()),
            prop::option::of(purpose()),
            prop::option::of((0u64..6).prop_map(|d| {
                tds_core::Timestamp::from_millis(1_800_000_000_000 + d * 86_400_000 - 1)
            })),
            prop::option::of((0u64..6).prop_map(|d| d * 86_400_000)),
            prop::option::of(participant()),
        ),
        (
            prop::option::of(token()),
            prop::collection::vec(token(), 0..3),
            prop::option::of(region()),
            prop::option::of(0u64..7),
            prop::option::of((0u64..7).prop_map(|v| v << 20)),
        ),
        (
            prop::option::of(prop::sample::select(Classification::ALL.to_vec())),
            prop::option::of(prop::sample::select(PersonalInfo::ALL.to_vec())),
            prop::option::of((0u64..7).prop_map(|v| Amount(v * 5000))),
            prop::option::of(currency()),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
    )
        .prop_map(
            |(
                (action, target, purpose, time, elapsed, recipient),
                (sector, roles, location, uses, volume),
                (
                    classification,
                    personal_info,
                    pay_amount,
                    currency,
                    consent_ref,
                    export_assessment_ref,
                ),
            )| Request {
                action,
                target,
                purpose,
                time,
                elapsed,
                recipient,
                sector,
                roles,
                jurisdiction: None,
                location,
                uses,
                volume,
                classification,
                personal_info,
                pay_amount,
                currency,
                consent_ref,
                export_assessment_ref,
            },
        )
}
