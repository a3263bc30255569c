#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod compiled;
pub mod contain;
pub mod contract;
pub mod error;
pub mod eval;
pub mod json;
pub mod licence;
pub mod lint;
pub mod model;
pub mod odrl;
pub mod templates;
pub mod text;

pub use compiled::CompiledPolicy;
pub use contain::{contains, contains_within, Budget, Containment};
pub use error::{ContainmentLimit, OdrlError, PolicyError, RequestError};
pub use eval::{evaluate, Decision, Effect, Reason, ReasonCode, Request};
pub use lint::{lint, Lint};
pub use model::{
    Action, Amount, Classification, Conflict, Constraint, Currency, Duty, LogicalOp, Operand,
    Operator, PayUnit, PersonalInfo, Policy, PolicyKind, Purpose, Region, Rule, RuleKind, Text,
    Token, Value,
};
pub use text::{format, parse};
